"""The records an arch is made of, and its JSON.

An :class:`Arch` is the immutable genotype: one value per choice of its space. A
:class:`Block` is one fully specified layer group of a decoded arch: what the supernet builds,
the static subnet holds, FLOPs count and the latency table keys on.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from nastools.errors import NastoolsError
from nastools.space.cost import block_cost
from nastools.space.units import fmt_number, int_field, num_field

if TYPE_CHECKING:
    from nastools.space.searchspace import SearchSpace

ARCH_FORMAT = "nastools.arch/1"
ACTIVATIONS = ("swish", "relu", "hswish")
GATES = ("hsigmoid", "sigmoid")
_GATE_ABBR = {"hsigmoid": "hsig", "sigmoid": "sig"}
#: a space name: it becomes a folder of latency tables and the prefix of every arch key
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def check_name(name: Any, where: str = "space name") -> str:
    """``name`` if it is a valid space name (letters, digits, ``_``, ``.``, ``-``, at most 64,
    starting with a letter or digit, no ``..``), else a one-line :class:`NastoolsError`: space
    names become folder names of latency tables, so no ``/`` and no path tricks."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise NastoolsError(
            f"{where}: got {name!r}, expected a name of letters, digits, '_', '.' and '-' (at most 64, no '/' or '..'), e.g. 'fmnist'"
        )
    return name


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``value`` to a multiple of ``divisor``, never more than 10% below it."""
    min_value = min_value or divisor
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


def conv_out(size: int, kernel: int, stride: int) -> int:
    """Spatial size after a 'same'-padded convolution (padding kernel // 2)."""
    pad = kernel // 2
    return (size + 2 * pad - kernel) // stride + 1


# --------------------------------------------------------------------------- blocks


@dataclass(frozen=True)
class Block:
    """One layer group of a subnet, fully specified: what the supernet builds and the
    latency table times. ``size`` is the input height (= width)."""

    kind: str  # "stem" | "mbconv" | "head"
    size: int
    in_chs: int
    out_chs: int
    kernel: int = 1
    stride: int = 1
    expand: float = 1
    se: bool = False
    act: str = "swish"
    gate: str = "hsigmoid"  # SE gate
    mid_chs: int = 0  # mbconv: expanded channels; head: expanded feature channels
    se_chs: int = 0  # mbconv with SE: squeeze channels
    num_classes: int = 0  # head only

    @property
    def out_size(self) -> int:
        """Output height (= width): 1 for the head, which pools."""
        if self.kind == "head":
            return 1
        return conv_out(self.size, self.kernel, self.stride)

    @property
    def key(self) -> str:
        """A canonical, human-readable key: type, input HxWxC, output C and every option."""
        base = f"{self.kind}_i{self.size}x{self.size}x{self.in_chs}_o{self.out_chs}"
        if self.kind == "stem":
            return f"{base}_k{self.kernel}_s{self.stride}_{self.act}"
        if self.kind == "head":
            return f"{base}_m{self.mid_chs}_c{self.num_classes}_{self.act}"
        se = f"_se{self.se_chs}{_GATE_ABBR[self.gate]}" if self.se else ""
        return f"{base}_k{self.kernel}_s{self.stride}_e{fmt_number(self.expand)}_m{self.mid_chs}{se}_{self.act}"

    @property
    def has_shortcut_conv(self) -> bool:
        """Whether an MBConv block's residual path needs a 1x1 conv (its channels change)."""
        return self.kind == "mbconv" and self.in_chs != self.out_chs

    def cost(self) -> tuple[int, int]:
        """(MACs of convolutions and linear layers, parameters incl. BN affine)."""
        return block_cost(self)


# --------------------------------------------------------------------------- genotype


@dataclass(frozen=True)
class StageArch:
    """One stage of an arch: its width, depth, kernel and expand ratio."""

    width: int
    depth: int
    kernel: int
    expand: int | float

    def to_dict(self) -> dict[str, Any]:
        """The stage's choices as a plain dict (the Arch JSON's per-stage entry)."""
        return {"width": self.width, "depth": self.depth, "kernel": self.kernel, "expand": self.expand}


@dataclass(frozen=True)
class Arch:
    """An immutable, hashable genotype: one value for every choice of its space.

    Build one with :meth:`SearchSpace.sample` & co, or read one with :func:`load_arch` /
    :meth:`SearchSpace.arch_from_dict` (which validate it).
    """

    space: str
    resolution: int
    stem: int
    stages: tuple[StageArch, ...]
    head: int

    @property
    def key(self) -> str:
        """The canonical encoding, e.g. ``fmnist:r28-s16-16.1.3.1-...-h512``."""
        stages = "-".join(f"{s.width}.{s.depth}.{s.kernel}.{fmt_number(s.expand)}" for s in self.stages)
        return f"{self.space}:r{self.resolution}-s{self.stem}-{stages}-h{self.head}"

    @property
    def id(self) -> str:
        """A short stable id: the first 10 hex digits of the SHA-1 of :attr:`key`."""
        return hashlib.sha1(self.key.encode()).hexdigest()[:10]

    def to_dict(self) -> dict[str, Any]:
        """The arch as the JSON-ready dict that :meth:`save` writes (format ``nastools.arch/1``)."""
        return {
            "format": ARCH_FORMAT,
            "space": self.space,
            "resolution": self.resolution,
            "stem": self.stem,
            "stages": [s.to_dict() for s in self.stages],
            "head": self.head,
        }

    def to_json(self, **extra: Any) -> str:
        """One JSON line; ``extra`` fields (id, flops, ...) are appended for information."""
        return json.dumps({**self.to_dict(), **extra})

    def save(self, path: str | Path, **extra: Any) -> None:
        """Write the arch as JSON, atomically."""
        from nastools.io import atomic_write_text

        atomic_write_text(path, json.dumps({**self.to_dict(), **extra}, indent=2) + "\n")

    def replace(self, **changes: Any) -> "Arch":
        """A copy of the arch with the given fields changed (``dataclasses.replace``)."""
        from dataclasses import replace

        return replace(self, **changes)

    def __str__(self) -> str:
        return f"{self.id} ({self.key})"


# --------------------------------------------------------------------------- JSON

# fields a reader tolerates beside the genotype: written by nastools for information
_INFO_FIELDS = {"id", "flops", "params", "top1", "search_top1", "latency_ms", "meta"}
_ARCH_FIELDS = ("format", "space", "resolution", "stem", "stages", "head")
_STAGE_FIELDS = ("width", "depth", "kernel", "expand")


def _fields(data: Any, fields: tuple[str, ...], where: str, what: str, tolerated: set[str] | frozenset[str] = frozenset()) -> Mapping:
    """``data`` if it is ``what`` (a mapping) with exactly ``fields`` (and perhaps
    ``tolerated`` ones), else a :class:`NastoolsError` naming the first unknown or missing field."""
    expected = ", ".join(fields)
    if not isinstance(data, Mapping):
        raise NastoolsError(f"{where}: got {type(data).__name__}, expected {what} with fields {expected}")
    unknown = sorted(str(k) for k in data if k not in fields and k not in tolerated)
    if unknown:
        raise NastoolsError(f"{where}: unknown field {unknown[0]!r}, expected only {expected}")
    for name in fields:
        if name not in data:
            raise NastoolsError(f"{where}.{name}: missing, expected fields {expected}")
    return data


def _parse_stage(data: Any, where: str) -> StageArch:
    st = _fields(data, _STAGE_FIELDS, where, "an object")
    return StageArch(
        width=int_field(f"{where}.width", st["width"]),
        depth=int_field(f"{where}.depth", st["depth"]),
        kernel=int_field(f"{where}.kernel", st["kernel"]),
        expand=num_field(f"{where}.expand", st["expand"]),
    )


def parse_arch(data: Any) -> Arch:
    """Decode an arch from a JSON object without checking it against a space.

    Raises :class:`NastoolsError` naming the first bad field.
    """
    data = _fields(data, _ARCH_FIELDS, "arch", "a JSON object", _INFO_FIELDS)
    fmt = data["format"]
    if fmt != ARCH_FORMAT:
        raise NastoolsError(f"arch.format: got {fmt!r}, expected {ARCH_FORMAT!r}")
    space = check_name(data["space"], "arch.space")
    stages_raw = data["stages"]
    if not isinstance(stages_raw, list):
        raise NastoolsError(f"arch.stages: got {type(stages_raw).__name__}, expected a list of stage objects")
    stages = tuple(
        _parse_stage(st, f"arch.stages[{i}]") for i, st in enumerate(stages_raw)
    )  # before resolution: the error named first stays
    return Arch(
        space=space,
        resolution=int_field("arch.resolution", data["resolution"]),
        stem=int_field("arch.stem", data["stem"]),
        stages=stages,
        head=int_field("arch.head", data["head"]),
    )


def load_arch(source: "str | Path | Mapping", space: "SearchSpace | str | None" = None) -> Arch:
    """Read an arch from a JSON file path, a JSON string or a dict, and validate it.

    A name that is no file but names an arch shipped with nastools (``a0`` or ``a0.json``:
    ``nastools/spaces/archs/<space>/``, the published archs of a space) reads that one.
    The space is the one given, else the one the arch names.
    """
    from nastools.io import parse_json, read_json
    from nastools.resources import shipped_arch
    from nastools.space.schema import load_space

    if isinstance(source, Mapping):
        data = source
    else:
        text = str(source)
        if text.lstrip().startswith("{"):
            data = parse_json(text, "arch JSON")
        else:
            if not Path(text).exists():
                name = space if isinstance(space, str) or space is None else space.name
                found = shipped_arch(text, name)
                other = shipped_arch(text) if found is None and name is not None else None
                if other is not None:
                    raise NastoolsError(
                        f"arch {text!r}: no such file, and the shipped arch of that name is of the {other.parent.name!r} space, not {name!r}"
                    )
                text = str(found or text)
            data = read_json(text, "arch file", hint="expected the path of an Arch JSON file")
    arch = parse_arch(data)
    sp = load_space(space if space is not None else arch.space)
    return sp.validate(arch)


__all__ = [
    "ACTIVATIONS",
    "ARCH_FORMAT",
    "GATES",
    "Arch",
    "Block",
    "StageArch",
    "check_name",
    "conv_out",
    "load_arch",
    "make_divisible",
    "parse_arch",
]
