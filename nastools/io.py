"""Atomic file writes: a temp file in the same folder, fsync, then rename.

An interrupted write leaves either the old file or the new one, never half of either.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

from nastools.errors import NastoolsError


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
        with os.fdopen(fd, mode) as f:
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
