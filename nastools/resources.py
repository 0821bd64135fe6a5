"""Data shipped inside the nastools package (search spaces, latency tables, pretrained
supernets), found through :mod:`importlib.resources` wherever nastools is installed."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from nastools.errors import NastoolsError


def package_dir(name: str) -> Path:
    """The shipped folder ``nastools/<name>`` as a file-system path."""
    ref = files("nastools") / name
    if not isinstance(ref, Path):  # e.g. a zipped install: the data are not files on disk
        raise NastoolsError(
            f"nastools' shipped data {name!r} are not files on disk here ({ref}); install nastools unpacked, e.g. with: pip install nastools"
        )
    return ref


__all__ = ["package_dir"]
