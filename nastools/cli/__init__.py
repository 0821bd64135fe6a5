"""The ``nastools`` command line: parse, validate, call the library, print.

Each command group lives in its own module and registers itself on :data:`main`.
User errors (:class:`~nastools.errors.NastoolsError`) print as one line and exit 1.
"""

from __future__ import annotations

import errno
import json
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import click

from nastools import __version__
from nastools.constants import DEVICES
from nastools.data import DATASETS
from nastools.errors import NastoolsError


class NastoolsGroup(click.Group):
    """A group that turns user errors into one-line messages instead of tracebacks."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NastoolsError as exc:
            raise click.ClickException(str(exc)) from None
        except click.exceptions.NoArgsIsHelpError:  # a group without its command: click prints its help
            raise
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


def end_distributed_process(code: int = 0) -> None:
    """Under torchrun (``WORLD_SIZE`` > 1), end this process now with ``code``, its output
    flushed, without the interpreter's finalization; elsewhere return. After a command's
    process group is destroyed, gloo's worker threads may still be releasing the last
    collective's tensors, which needs the GIL: a worker that asks for it while the interpreter
    finalizes aborts the process (SIGABRT, "terminate called without an active exception"),
    and torchrun then stops the other ranks, rank 0 among them while it writes its outputs.
    Everything a command writes is complete when it returns (atomic writes), so skipping the
    finalization loses nothing."""
    if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more to write there
            pass
    os._exit(code)


def no_progress_option(f):
    """The ``--no-progress`` flag of every command that shows progress bars: without it the
    bars go to stderr; the command's other lines stay."""
    return click.option("--no-progress", is_flag=True, help="No progress bars (for logs); the other lines stay.")(f)


def json_option(f):
    """The ``--json`` flag every printing command takes."""
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")(f)


def run_option(default: str = "default", help: str = "Run name (runs/NAME) or folder holding supernet.pt."):
    """The ``--run`` option: the run a command reads or writes."""
    return click.option("--run", default=default, show_default=True, help=help)


def dataset_option(help: str = "[default: the run's]"):
    """The ``--dataset`` option, one of :data:`nastools.data.DATASETS`."""
    return click.option("--dataset", type=click.Choice(DATASETS), default=None, help=help)


def data_option(help: str = "Dataset folder  [default: the dataset's standard place, see nastools.data]"):
    """The ``--data`` option: the folder a dataset is read from."""
    return click.option("--data", type=click.Path(), default=None, help=help)


def device_option(help: str = "Device to measure on."):
    """The ``--device`` option of commands that measure on this machine: one of
    :data:`nastools.constants.DEVICES`."""
    return click.option("--device", type=click.Choice(DEVICES), default="cpu", show_default=True, help=help)


def echo_json(data: Any) -> None:
    """Print ``data`` as indented JSON on stdout."""
    click.echo(json.dumps(data, indent=2))


@dataclass(frozen=True)
class Output:
    """Where a command's lines go: with ``--json``, stdout holds only the JSON document and
    progress lines go to stderr; without it, everything is text on stdout."""

    as_json: bool = False

    def log(self, message: str) -> None:
        """A progress or narration line."""
        click.echo(message, err=self.as_json)


class Parsed(click.ParamType):
    """A value that a library function parses; its one-line error becomes a usage error
    (exit 2) that names the option. ``keep_text`` passes the text on once it parses (for
    library calls that take the text)."""

    def __init__(self, name: str, parse: Callable[[str], Any], keep_text: bool = False) -> None:
        self.name, self.parse, self.keep_text = name, parse, keep_text

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):  # a default that is already parsed
            return value
        try:
            parsed = self.parse(value)
        except NastoolsError as exc:
            msg, opt = str(exc), param.opts[0] if param is not None and param.opts else None
            raise click.UsageError(msg if opt is None or msg.startswith(opt) else f"{opt}: {msg}", ctx) from None
        return value if self.keep_text else parsed


class IntList(click.ParamType):
    """Integers separated by commas or spaces: ``28,32``, ``28, 32`` or ``28 32``."""

    name = "integers"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> list[int]:
        if isinstance(value, list):
            return value
        try:
            out = [int(v) for v in str(value).replace(",", " ").split()]
        except ValueError:
            out = []
        if not out:
            self.fail(f"got {value!r}, expected comma-separated integers such as 224 or 28,32", param, ctx)
        return out


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
from nastools.cli import demo as _demo  # noqa: E402,F401
from nastools.cli import export as _export  # noqa: E402,F401
from nastools.cli import importer as _importer  # noqa: E402,F401
from nastools.cli import profile as _profile  # noqa: E402,F401
from nastools.cli import search as _search  # noqa: E402,F401
from nastools.cli import space as _space  # noqa: E402,F401
from nastools.cli import train as _train  # noqa: E402,F401
