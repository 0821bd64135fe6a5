"""The ``nastools`` command line: parse, validate, call the library, print.

Each command group lives in its own module and registers itself on :data:`main`.
User errors (:class:`~nastools.errors.NastoolsError`) print as one line and exit 1.
"""

from __future__ import annotations

import errno
import json
import sys
from typing import Any, Sequence

import click

from nastools import __version__
from nastools.errors import NastoolsError


class NastoolsGroup(click.Group):
    """A group that turns user errors into one-line messages instead of tracebacks."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NastoolsError as exc:
            raise click.ClickException(str(exc)) from None
        except click.UsageError as exc:  # one line, not click's usage + hint + error
            raise _OneLineUsageError(exc) from None
        except OSError as exc:
            if exc.errno == errno.EPIPE:  # a closed pipe (nastools ... | head): click handles it
                raise
            raise click.ClickException(_os_error_line(exc)) from None
        except EOFError:  # click would print "Aborted!", as for Ctrl-C
            raise click.ClickException("unexpected end of a file while reading it (a truncated file?)") from None
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)


class _OneLineUsageError(click.ClickException):
    """A bad option or argument as one line naming the command's ``--help``; exit code 2."""

    exit_code = 2

    def __init__(self, exc: click.UsageError) -> None:
        where = f" (see: {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
        super().__init__(" ".join(exc.format_message().split()) + where)


def _os_error_line(exc: OSError) -> str:
    """An operating-system error (a path that cannot be read or written) as one line."""
    names = " -> ".join(repr(str(f)) for f in (exc.filename, exc.filename2) if f is not None)
    return f"{exc.strerror or exc}{': ' + names if names else ''}"


@click.group(cls=NastoolsGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nastools")
def main() -> None:
    """nastools: train a weight-sharing supernet, profile a device, search under a
    latency budget, and export the chosen subnet."""


def json_option(f):
    """The ``--json`` flag every printing command takes."""
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")(f)


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))


def format_table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    """A plain aligned text table (numbers right-aligned)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    numeric = [all(_is_num(r[i]) for r in cells[1:]) and len(cells) > 1 for i in range(len(headers))]

    def line(r):
        return "  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(r, widths, numeric)).rstrip()

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), sep, *(line(r) for r in cells[1:])])


def _is_num(text: str) -> bool:
    t = text.rstrip("KMGTx%").replace(",", "")
    try:
        float(t)
        return True
    except ValueError:
        return False


# command groups register themselves on import
from nastools.cli import space as _space  # noqa: E402,F401
from nastools.cli import search as _search  # noqa: E402,F401
from nastools.cli import train as _train  # noqa: E402,F401
from nastools.cli import export as _export  # noqa: E402,F401
from nastools.cli import profile as _profile  # noqa: E402,F401
from nastools.cli import demo as _demo  # noqa: E402,F401
