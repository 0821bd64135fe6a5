"""File input and output: atomic writes, and checked reads.

Writes go to a temp file in the same folder, fsync, then rename: an interrupted write leaves
either the old file or the new one, never half of either. Reads (:func:`read_text`,
:func:`read_json`) turn every way a file can be unusable (missing, a folder or a device, empty,
binary, malformed, an integer of thousands of digits, nesting too deep, a duplicate key) into
one :class:`NastoolsError` line naming the file.
"""

from __future__ import annotations

import glob
import json
import os
import re
import stat
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

from nastools.errors import NastoolsError


def shown_path(path: str | Path) -> str:
    """``path`` as messages show it: relative to the working directory when it lies under it
    (the packaged files of an editable install), else as it is."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[Any], None], mode: str = "w") -> Path:
    """Call ``write(fileobj)`` on a temp file beside ``path``, then rename it over ``path``.
    The file gets the permissions of the file it replaces, or those a plain ``open`` would
    give it (``0o666`` less the umask; the temp file itself is private until then)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        bits = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        bits = 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with named_os_errors(path), os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, bits)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


@contextmanager
def named_os_errors(path: str | Path) -> Iterator[None]:
    """Give an :class:`OSError` raised without a file name (a full disk, a file size limit,
    an I/O error while writing an open file) the name ``path``, so that its one line says
    which file could not be written."""
    try:
        yield
    except OSError as exc:
        if exc.filename is not None or exc.errno is None:
            raise
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc


def append_text(path: str | Path, text: str) -> None:
    """Append ``text`` to the file ``path`` (a log), an error naming the file."""
    with named_os_errors(path), open(path, "a") as f:
        f.write(text)


def remove_stale_temps(folder: str | Path, names: Iterable[str]) -> list[Path]:
    """Remove the temporary files :func:`atomic_write` left in ``folder`` for each of ``names``
    (``.<name>.<8 random characters>.tmp``) when its process was killed mid-write, which
    nothing else removes (a checkpoint's is as large as the checkpoint). Call it only while
    holding the folder's lock, so that no writer is mid-write. Returns the removed files."""
    removed = []
    for name in names:
        for p in Path(folder).glob(f".{glob.escape(name)}.*.tmp"):
            if re.fullmatch(r"[a-z0-9_]{8}", p.name[len(name) + 2 : -len(".tmp")]) and p.is_file():
                try:
                    p.unlink()
                except FileNotFoundError:
                    continue
                removed.append(p)
    return removed


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (temporary file, then rename)."""
    return atomic_write(path, lambda f: f.write(text))


def atomic_write_json(path: str | Path, data: Any, indent: int | None = 2) -> Path:
    """Write ``data`` as JSON to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(data, indent=indent) + "\n")


def writable_dir(path: str | Path, what: str) -> Path:
    """Check, before any work whose results would go there, that the folder ``path`` can be
    created (if missing) and written to; a one-line :class:`NastoolsError` naming ``what``
    (e.g. ``"--out"``) otherwise. Folders the check creates are removed again."""
    if not str(path).strip():
        raise NastoolsError(f"{what}: empty path")
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise NastoolsError(f"{what} {str(p)!r} is a file, not a folder")
    made = [d for d in (p, *p.parents) if not d.exists()]
    try:
        p.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".nastools-write-check.", dir=p)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise NastoolsError(f"{what} {str(p)!r}: cannot write there ({exc.strerror or exc})") from None
    finally:
        for d in made:  # deepest first
            try:
                d.rmdir()
            except OSError:
                pass
    return p


def writable_file(path: str | Path, what: str) -> Path:
    """Check that the file ``path`` can be written (not a folder, its folder writable: see
    :func:`writable_dir`) before the work that produces it."""
    if not str(path).strip():
        raise NastoolsError(f"{what}: empty path")
    p = Path(path)
    if p.is_dir():
        raise NastoolsError(f"{what} {str(p)!r} is a folder: give a file path")
    try:
        writable_dir(p.parent, "its folder")
    except NastoolsError as exc:
        raise NastoolsError(f"{what} {str(p)!r}: {exc}") from None
    return p


_FILE_KINDS = (
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISSOCK, "a socket"),
)


def read_text(path: str | Path, what: str, *, hint: str = "", allow_empty: bool = False) -> str:
    """The UTF-8 text of the regular file ``path``. A one-line :class:`NastoolsError` that
    names ``what`` (e.g. ``"latency table"``) and the path when it is missing (``hint`` says
    how to make one), a folder, not a regular file (``/dev/null``, a pipe: never read, it
    could block), unreadable, empty (unless ``allow_empty``) or not UTF-8 text."""
    p = Path(path)
    name = f"{what} {str(p)!r}"
    try:
        mode = p.stat().st_mode
    except FileNotFoundError:
        raise NastoolsError(f"{name} not found{': ' + hint if hint else ''}") from None
    except OSError as exc:
        raise NastoolsError(f"{name}: cannot read it ({exc.strerror or exc})") from None
    if stat.S_ISDIR(mode):
        raise NastoolsError(f"{name} is a folder, not a file")
    if not stat.S_ISREG(mode):
        kind = next((k for test, k in _FILE_KINDS if test(mode)), "not a regular file")
        raise NastoolsError(f"{name} is {kind}, not a regular file: give the path of a file")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise NastoolsError(f"{name}: cannot read it ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8-sig")  # an editor's byte-order mark is no error
    except UnicodeDecodeError as exc:
        raise NastoolsError(f"{name} is not UTF-8 text (byte {data[exc.start]:#04x} at offset {exc.start}): a binary file?") from None
    if not allow_empty and not text.strip():
        raise NastoolsError(f"{name} is empty")
    return text


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


class _DuplicateKey(ValueError):
    pass


def parse_json(text: str | bytes, what: str) -> Any:
    """``json.loads`` of ``text`` with one-line :class:`NastoolsError` s naming ``what``:
    malformed JSON (with its line and column), an integer longer than Python converts
    (``sys.get_int_max_str_digits``), nesting deeper than Python's recursion limit, an object
    with the same key twice (JSON keeps the last silently: a typo, not a setting)."""
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise NastoolsError(f"{what} is not UTF-8 text (offset {exc.start}): a binary file?") from None
    if not text.strip():
        raise NastoolsError(f"{what} is empty, expected JSON")
    with _json_errors(what):
        return json.loads(text, object_pairs_hook=_unique_keys)


def parse_json_values(text: str, what: str) -> list[Any]:
    """The JSON values of ``text``, one after another, separated by whitespace: JSON Lines,
    or pretty-printed values such as ``--json`` outputs appended to one file. Errors as
    :func:`parse_json`'s (the line and column of malformed JSON count from the text's start)."""
    decoder = json.JSONDecoder(object_pairs_hook=_unique_keys)
    values: list[Any] = []
    at = 0
    with _json_errors(what):
        while True:
            while at < len(text) and text[at].isspace():
                at += 1
            if at == len(text):
                return values
            value, at = decoder.raw_decode(text, at)
            values.append(value)


@contextmanager
def _json_errors(what: str) -> Iterator[None]:
    """Turn what ``json`` raises while decoding into one-line :class:`NastoolsError` s naming ``what``."""
    try:
        yield
    except json.JSONDecodeError as exc:
        raise NastoolsError(f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except _DuplicateKey as exc:
        raise NastoolsError(f"{what}: the key {exc.args[0]!r} appears twice in one object; keep one") from None
    except ValueError:  # the int-string limit: the only other ValueError json raises
        limit = getattr(sys, "get_int_max_str_digits", lambda: 4300)()
        raise NastoolsError(f"{what}: a number has more than {limit} digits; expected ordinary numbers") from None
    except RecursionError:
        raise NastoolsError(f"{what}: JSON nested too deeply to read") from None


def read_json(path: str | Path, what: str, *, hint: str = "") -> Any:
    """The JSON value in the file ``path``: :func:`read_text` then :func:`parse_json`, each
    failure one :class:`NastoolsError` line naming ``what`` and the path."""
    return parse_json(read_text(path, what, hint=hint), f"{what} {str(Path(path))!r}")
