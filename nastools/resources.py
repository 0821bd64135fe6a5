"""Data shipped inside the nastools package (search spaces and their published archs,
latency tables, pretrained supernets), found through :mod:`importlib.resources` wherever nastools is installed."""

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


def shipped_arch(name: str, space: str | None = None) -> Path | None:
    """The shipped arch file called ``name`` (``a0`` or ``a0.json``) in
    ``nastools/spaces/archs/<space>/`` (any space when ``space`` is None), or None."""
    stem = name[:-5] if name.endswith(".json") else name
    if not stem or "/" in stem or "\\" in stem or stem.startswith("."):
        return None
    try:
        root = package_dir("spaces") / "archs"
    except NastoolsError:
        return None
    spaces = [space] if space else sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    for sp in spaces:
        path = root / sp / f"{stem}.json"
        if path.is_file():
            return path
    return None


def shipped_arch_names(space: str) -> list[str]:
    """The names of the arch files shipped for ``space`` (``a0`` ...)."""
    try:
        folder = package_dir("spaces") / "archs" / space
    except NastoolsError:
        return []
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


__all__ = ["package_dir", "shipped_arch", "shipped_arch_names"]
