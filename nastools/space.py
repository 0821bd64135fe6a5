"""Search spaces and the :class:`Arch` genotype: no torch here.

A search space is data (a YAML file): input size and classes, resolutions, a stem, a list of
MBConv stages and a MobileNetV3 head. An :class:`Arch` picks one value per choice: the
resolution, the stem width, per stage its width, depth, kernel and expand ratio (chosen once
per stage, as AttentiveNAS does), and the head width.

Everything about cost is analytic: :meth:`SearchSpace.blocks` decodes an arch into plain
:class:`Block` records (the same records the supernet builds and the latency table keys on),
and FLOPs (multiply-accumulates of convolutions and linear layers) and parameters follow from
them. Costs are memoised per stage, so sampling with FLOPs runs at tens of thousands of
archs per second.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from nastools.errors import NastoolsError
from nastools.resources import package_dir

ARCH_FORMAT = "nastools.arch/1"
SPACES_DIR = package_dir("spaces")
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


def as_rng(seed: "random.Random | int | None") -> random.Random:
    """A ``random.Random`` from a seed, an existing generator, or ``None`` (fresh entropy)."""
    if isinstance(seed, random.Random):
        return seed
    return random.Random(seed)


def _num(value: float) -> int | float:
    """Integral floats become ints, so 4 and 4.0 encode the same way."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _fmt(value: float) -> str:
    return f"{value:g}"


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
        return (
            f"{base}_k{self.kernel}_s{self.stride}_e{_fmt(self.expand)}"
            f"_m{self.mid_chs}{se}_{self.act}"
        )

    @property
    def has_shortcut_conv(self) -> bool:
        return self.kind == "mbconv" and self.in_chs != self.out_chs

    def cost(self) -> tuple[int, int]:
        """(MACs of convolutions and linear layers, parameters incl. BN affine)."""
        return _block_cost(self)


def _block_cost(b: Block) -> tuple[int, int]:
    out = b.out_size
    hw_in, hw_out = b.size * b.size, out * out
    if b.kind == "stem":
        w = b.in_chs * b.out_chs * b.kernel * b.kernel
        return w * hw_out, w + 2 * b.out_chs
    if b.kind == "head":
        expand = b.in_chs * b.mid_chs
        mix = b.mid_chs * b.out_chs
        fc = b.out_chs * b.num_classes
        macs = expand * hw_in + mix + fc
        params = expand + 2 * b.mid_chs + mix + b.out_chs + fc + b.num_classes
        return macs, params
    macs = params = 0
    mid = b.mid_chs
    if mid != b.in_chs or b.expand != 1:  # inverted bottleneck (1x1 expand)
        macs += b.in_chs * mid * hw_in
        params += b.in_chs * mid + 2 * mid
    macs += mid * b.kernel * b.kernel * hw_out  # depthwise
    params += mid * b.kernel * b.kernel + 2 * mid
    if b.se:
        macs += 2 * mid * b.se_chs
        params += 2 * mid * b.se_chs + mid + b.se_chs
    macs += mid * b.out_chs * hw_out  # pointwise projection
    params += mid * b.out_chs + 2 * b.out_chs
    if b.has_shortcut_conv:  # (avg-pool +) 1x1 conv on the residual path
        macs += b.in_chs * b.out_chs * hw_out
        params += b.in_chs * b.out_chs
    return macs, params


# --------------------------------------------------------------------------- specs


@dataclass(frozen=True)
class StageSpec:
    """The choices of one MBConv stage."""

    name: str
    widths: tuple[int, ...]
    depths: tuple[int, ...]
    kernels: tuple[int, ...]
    expands: tuple[int | float, ...]
    stride: int
    se: bool


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
        stages = "-".join(f"{s.width}.{s.depth}.{s.kernel}.{_fmt(s.expand)}" for s in self.stages)
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


# fields a reader tolerates beside the genotype: written by nastools for information
_INFO_FIELDS = {"id", "flops", "params", "top1", "latency_ms", "meta"}
_ARCH_FIELDS = ("format", "space", "resolution", "stem", "stages", "head")
_STAGE_FIELDS = ("width", "depth", "kernel", "expand")


def _int_field(where: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise NastoolsError(f"{where}: got {value!r}, expected an integer")
    if isinstance(value, float):
        if not value.is_integer():
            raise NastoolsError(f"{where}: got {value!r}, expected an integer")
        value = int(value)
    return value


def _num_field(where: str, value: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise NastoolsError(f"{where}: got {value!r}, expected a number")
    return _num(value)


def _choices(values: Sequence[Any]) -> str:
    return ", ".join(_fmt(v) if isinstance(v, float) else str(v) for v in values)


def parse_arch(data: Any) -> Arch:
    """Decode an arch from a JSON object without checking it against a space.

    Raises :class:`NastoolsError` naming the first bad field.
    """
    if not isinstance(data, Mapping):
        raise NastoolsError(f"arch: got {type(data).__name__}, expected a JSON object with fields {', '.join(_ARCH_FIELDS)}")
    unknown = sorted(str(k) for k in data if k not in _ARCH_FIELDS and k not in _INFO_FIELDS)
    if unknown:
        raise NastoolsError(f"arch: unknown field {unknown[0]!r}, expected only {', '.join(_ARCH_FIELDS)}")
    for name in _ARCH_FIELDS:
        if name not in data:
            raise NastoolsError(f"arch.{name}: missing, expected fields {', '.join(_ARCH_FIELDS)}")
    fmt = data["format"]
    if fmt != ARCH_FORMAT:
        raise NastoolsError(f"arch.format: got {fmt!r}, expected {ARCH_FORMAT!r}")
    space = check_name(data["space"], "arch.space")
    stages_raw = data["stages"]
    if not isinstance(stages_raw, list):
        raise NastoolsError(f"arch.stages: got {type(stages_raw).__name__}, expected a list of stage objects")
    stages = []
    for i, st in enumerate(stages_raw):
        where = f"arch.stages[{i}]"
        if not isinstance(st, Mapping):
            raise NastoolsError(f"{where}: got {type(st).__name__}, expected an object with fields {', '.join(_STAGE_FIELDS)}")
        extra = sorted(str(k) for k in st if k not in _STAGE_FIELDS)
        if extra:
            raise NastoolsError(f"{where}: unknown field {extra[0]!r}, expected only {', '.join(_STAGE_FIELDS)}")
        for name in _STAGE_FIELDS:
            if name not in st:
                raise NastoolsError(f"{where}.{name}: missing, expected fields {', '.join(_STAGE_FIELDS)}")
        stages.append(
            StageArch(
                width=_int_field(f"{where}.width", st["width"]),
                depth=_int_field(f"{where}.depth", st["depth"]),
                kernel=_int_field(f"{where}.kernel", st["kernel"]),
                expand=_num_field(f"{where}.expand", st["expand"]),
            )
        )
    return Arch(
        space=space,
        resolution=_int_field("arch.resolution", data["resolution"]),
        stem=_int_field("arch.stem", data["stem"]),
        stages=tuple(stages),
        head=_int_field("arch.head", data["head"]),
    )


# --------------------------------------------------------------------------- space


@dataclass(frozen=True)
class SearchSpace:
    """A weight-sharing search space: the set of choices an :class:`Arch` makes."""

    name: str
    input_channels: int
    num_classes: int
    resolutions: tuple[int, ...]
    stem_widths: tuple[int, ...]
    stem_kernel: int
    stem_stride: int
    stages: tuple[StageSpec, ...]
    head_widths: tuple[int, ...]
    head_expand: int
    act: str = "swish"
    se_ratio: float = 0.25
    se_gate: str = "hsigmoid"
    se_divisor: int = 8
    dropout: float = 0.0
    drop_connect: float = 0.0
    description: str = ""
    _stage_cache: dict = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    # ------------------------------------------------------------------ identity

    def definition(self) -> dict[str, Any]:
        """The space as plain data (what the YAML says), in canonical form."""
        return {
            "name": self.name,
            "input_channels": self.input_channels,
            "num_classes": self.num_classes,
            "resolutions": list(self.resolutions),
            "act": self.act,
            "se": {"ratio": self.se_ratio, "gate": self.se_gate, "divisor": self.se_divisor},
            "stem": {"widths": list(self.stem_widths), "kernel": self.stem_kernel, "stride": self.stem_stride},
            "stages": [
                {
                    "name": s.name,
                    "widths": list(s.widths),
                    "depths": list(s.depths),
                    "kernels": list(s.kernels),
                    "expands": list(s.expands),
                    "stride": s.stride,
                    "se": s.se,
                }
                for s in self.stages
            ],
            "head": {"widths": list(self.head_widths), "expand": self.head_expand},
            "dropout": self.dropout,
            "drop_connect": self.drop_connect,
        }

    @property
    def fingerprint(self) -> str:
        """SHA-256 (12 hex digits) of the canonical definition: two spaces that build the
        same supernet have the same fingerprint, whatever their file looks like."""
        canon = json.dumps(self.definition(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canon.encode()).hexdigest()[:12]

    @property
    def num_archs(self) -> int:
        """The number of distinct subnets (genotypes)."""
        n = len(self.resolutions) * len(self.stem_widths) * len(self.head_widths)
        for s in self.stages:
            n *= len(s.widths) * len(s.depths) * len(s.kernels) * len(s.expands)
        return n

    @property
    def max_mid_chs(self) -> int:
        return max(self.stage_mid_chs(i, max(self.stage_in_widths(i)), max(s.expands)) for i, s in enumerate(self.stages))

    def stage_in_widths(self, index: int) -> tuple[int, ...]:
        """The widths that can feed stage ``index``."""
        return self.stem_widths if index == 0 else self.stages[index - 1].widths

    def stage_mid_chs(self, index: int, in_chs: int, expand: float) -> int:
        """Expanded channels of an MBConv block (in_chs itself when expand is 1)."""
        if expand == 1:
            return in_chs
        return make_divisible(round(in_chs * expand), 8)

    def se_chs(self, mid_chs: int) -> int:
        """Squeeze-excite bottleneck width for a block of ``mid_chs`` expanded channels."""
        return make_divisible(int(mid_chs * self.se_ratio), self.se_divisor)

    # ------------------------------------------------------------------ archs

    def min_arch(self) -> Arch:
        """The smallest subnet: the first (smallest) value of every choice."""
        return self._extreme(min)

    def max_arch(self) -> Arch:
        """The largest subnet: the last (largest) value of every choice."""
        return self._extreme(max)

    def _extreme(self, pick) -> Arch:
        return Arch(
            space=self.name,
            resolution=pick(self.resolutions),
            stem=pick(self.stem_widths),
            stages=tuple(
                StageArch(pick(s.widths), pick(s.depths), pick(s.kernels), pick(s.expands)) for s in self.stages
            ),
            head=pick(self.head_widths),
        )

    def sample(self, rng: "random.Random | int | None" = None) -> Arch:
        """A uniformly random arch (each choice independent and uniform)."""
        r = as_rng(rng)
        choice = r.choice
        return Arch(
            self.name,
            choice(self.resolutions),
            choice(self.stem_widths),
            tuple(
                StageArch(choice(s.widths), choice(s.depths), choice(s.kernels), choice(s.expands))
                for s in self.stages
            ),
            choice(self.head_widths),
        )

    def mutate(self, arch: Arch, prob: float, rng: "random.Random | int | None" = None) -> Arch:
        """Resample each choice of ``arch`` independently with probability ``prob``."""
        self.validate(arch)
        r = as_rng(rng)

        def gene(value, options):
            return r.choice(options) if r.random() < prob else value

        return Arch(
            self.name,
            gene(arch.resolution, self.resolutions),
            gene(arch.stem, self.stem_widths),
            tuple(
                StageArch(
                    gene(a.width, s.widths),
                    gene(a.depth, s.depths),
                    gene(a.kernel, s.kernels),
                    gene(a.expand, s.expands),
                )
                for a, s in zip(arch.stages, self.stages)
            ),
            gene(arch.head, self.head_widths),
        )

    def crossover(self, a: Arch, b: Arch, rng: "random.Random | int | None" = None) -> Arch:
        """Uniform crossover: each choice taken from ``a`` or ``b`` with equal odds."""
        self.validate(a)
        self.validate(b)
        r = as_rng(rng)

        def pick(x, y):
            return x if r.random() < 0.5 else y

        return Arch(
            self.name,
            pick(a.resolution, b.resolution),
            pick(a.stem, b.stem),
            tuple(
                StageArch(pick(x.width, y.width), pick(x.depth, y.depth), pick(x.kernel, y.kernel), pick(x.expand, y.expand))
                for x, y in zip(a.stages, b.stages)
            ),
            pick(a.head, b.head),
        )

    def sample_near_flops(
        self,
        target: float,
        rng: "random.Random | int | None" = None,
        *,
        tolerance: float = 0.05,
        max_tries: int = 500,
    ) -> Arch:
        """An arch whose FLOPs lie within ``tolerance`` (relative) of ``target``.

        Rejection sampling from the uniform distribution, as AttentiveNAS does. Targets in
        the tails of the FLOPs distribution rarely get a hit, so after ``max_tries // 5``
        misses the closest sample is walked towards the target by random single-gene
        mutations that reduce the error; the closest arch seen is returned if the window
        is still missed after ``max_tries`` steps in all.
        """
        lo_f, hi_f = self.flops(self.min_arch()), self.flops(self.max_arch())
        if not lo_f * (1 - tolerance) <= target <= hi_f * (1 + tolerance):
            raise NastoolsError(
                f"FLOPs target {format_count(target)} is outside space {self.name!r}, which spans "
                f"{format_count(lo_f)} to {format_count(hi_f)}"
            )
        r = as_rng(rng)
        best, best_err = None, math.inf
        rejection = max(1, max_tries // 5)
        for _ in range(rejection):
            arch = self.sample(r)
            err = abs(self.flops(arch) - target) / target
            if err <= tolerance:
                return arch
            if err < best_err:
                best, best_err = arch, err
        genes = 3 + 4 * len(self.stages)
        for _ in range(max_tries - rejection):
            cand = self.mutate(best, 1.5 / genes, r)
            err = abs(self.flops(cand) - target) / target
            if err < best_err:
                best, best_err = cand, err
                if err <= tolerance:
                    break
        return best

    def validate(self, arch: Arch) -> Arch:
        """Check every choice of ``arch`` against this space; return it unchanged.

        Raises :class:`NastoolsError` naming the bad field and the allowed values.
        """
        if not isinstance(arch, Arch):
            raise NastoolsError(f"expected an Arch, got {type(arch).__name__}")
        if arch.space != self.name:
            raise NastoolsError(
                f"arch.space: got {arch.space!r}, expected {self.name!r} (this arch belongs to another search space)"
            )

        def check(where, value, options):
            if value not in options:
                raise NastoolsError(f"{where}: got {_choices([value])}, expected one of {_choices(options)}")

        check("arch.resolution", arch.resolution, self.resolutions)
        check("arch.stem", arch.stem, self.stem_widths)
        if len(arch.stages) != len(self.stages):
            raise NastoolsError(
                f"arch.stages: got {len(arch.stages)} stages, expected {len(self.stages)} "
                f"({', '.join(s.name for s in self.stages)}) for space {self.name!r}"
            )
        for i, (a, s) in enumerate(zip(arch.stages, self.stages)):
            where = f"arch.stages[{i}]"
            check(f"{where}.width (stage {s.name})", a.width, s.widths)
            check(f"{where}.depth (stage {s.name})", a.depth, s.depths)
            check(f"{where}.kernel (stage {s.name})", a.kernel, s.kernels)
            check(f"{where}.expand (stage {s.name})", a.expand, s.expands)
        check("arch.head", arch.head, self.head_widths)
        return arch

    def arch_from_dict(self, data: Any) -> Arch:
        """Decode and validate an arch of this space from a JSON object."""
        return self.validate(parse_arch(data))

    # ------------------------------------------------------------------ decoding & cost

    def stage_blocks(self, index: int, in_chs: int, size: int, stage: StageArch) -> list[Block]:
        """The MBConv blocks of stage ``index`` for one stage choice, fed ``in_chs`` at ``size``."""
        spec = self.stages[index]
        blocks = []
        for j in range(stage.depth):
            cin = in_chs if j == 0 else stage.width
            mid = self.stage_mid_chs(index, cin, stage.expand)
            b = Block(
                kind="mbconv",
                size=size,
                in_chs=cin,
                out_chs=stage.width,
                kernel=stage.kernel,
                stride=spec.stride if j == 0 else 1,
                expand=stage.expand,
                se=spec.se,
                act=self.act,
                gate=self.se_gate,
                mid_chs=mid,
                se_chs=self.se_chs(mid) if spec.se else 0,
            )
            blocks.append(b)
            size = b.out_size
        return blocks

    def blocks(self, arch: Arch) -> list[Block]:
        """Decode an arch into its blocks, in order: stem, every MBConv block, head."""
        stem = Block("stem", arch.resolution, self.input_channels, arch.stem, self.stem_kernel, self.stem_stride, act=self.act)
        out = [stem]
        size, chs = stem.out_size, arch.stem
        for i, st in enumerate(arch.stages):
            stage_blocks = self.stage_blocks(i, chs, size, st)
            out.extend(stage_blocks)
            size, chs = stage_blocks[-1].out_size, st.width
        out.append(self.head_block(chs, size, arch.head))
        return out

    def head_block(self, in_chs: int, size: int, width: int) -> Block:
        """The head block (1x1 expansion, global pooling, feature mix, classifier) on an in_chs x size x size input."""
        return Block(
            "head", size, in_chs, width, act=self.act, mid_chs=in_chs * self.head_expand, num_classes=self.num_classes
        )

    def _stage_cost(self, index: int, in_chs: int, size: int, st: StageArch) -> tuple[int, int, int]:
        key = (index, in_chs, size, st)
        hit = self._stage_cache.get(key)
        if hit is None:
            macs = params = 0
            blocks = self.stage_blocks(index, in_chs, size, st)
            for b in blocks:
                m, p = b.cost()
                macs += m
                params += p
            hit = (macs, params, blocks[-1].out_size)
            self._stage_cache[key] = hit
        return hit

    def cost(self, arch: Arch) -> tuple[int, int]:
        """(FLOPs as multiply-accumulates, parameters) of ``arch``, analytically."""
        cache = self._stage_cache
        key = ("stem", arch.resolution, arch.stem)
        hit = cache.get(key)
        if hit is None:
            b = Block("stem", arch.resolution, self.input_channels, arch.stem, self.stem_kernel, self.stem_stride, act=self.act)
            hit = (*b.cost(), b.out_size)
            cache[key] = hit
        macs, params, size = hit
        chs = arch.stem
        for i, st in enumerate(arch.stages):
            hit = cache.get((i, chs, size, st))
            if hit is None:
                hit = self._stage_cost(i, chs, size, st)
            macs += hit[0]
            params += hit[1]
            size = hit[2]
            chs = st.width
        key = ("head", chs, size, arch.head)
        hit = cache.get(key)
        if hit is None:
            hit = self.head_block(chs, size, arch.head).cost()
            cache[key] = hit
        return macs + hit[0], params + hit[1]

    def flops(self, arch: Arch) -> int:
        """Multiply-accumulates of ``arch`` (convolutions and linear layers)."""
        return self.cost(arch)[0]

    def params(self, arch: Arch) -> int:
        """Trainable parameters of ``arch``'s extracted subnet."""
        return self.cost(arch)[1]

    def cost_breakdown(self, arch: Arch) -> list[dict[str, Any]]:
        """Per-stage summary: name, blocks, output size and channels, FLOPs and params."""
        self.validate(arch)
        blocks = self.blocks(arch)
        rows = []

        def row(name, group):
            macs = sum(b.cost()[0] for b in group)
            params = sum(b.cost()[1] for b in group)
            last = group[-1]
            rows.append(
                {
                    "stage": name,
                    "blocks": len(group),
                    "in": f"{group[0].size}x{group[0].size}x{group[0].in_chs}",
                    "out": f"{last.out_size}x{last.out_size}x{last.out_chs if last.kind != 'head' else self.num_classes}",
                    "flops": macs,
                    "params": params,
                }
            )

        row("stem", blocks[:1])
        start = 1
        for spec, st in zip(self.stages, arch.stages):
            row(spec.name, blocks[start : start + st.depth])
            start += st.depth
        row("head", blocks[-1:])
        return rows

    def all_blocks(self) -> Iterator[Block]:
        """Every distinct block any subnet of this space can contain (for latency tables)."""
        seen: set[Block] = set()
        sizes_stem = {}
        for res in self.resolutions:
            for w in self.stem_widths:
                b = Block("stem", res, self.input_channels, w, self.stem_kernel, self.stem_stride, act=self.act)
                sizes_stem.setdefault(b.out_size, set()).add(w)
                if b not in seen:
                    seen.add(b)
                    yield b
        # (size, in_chs) pairs that can feed each stage
        feeds = {(size, w) for size, ws in sizes_stem.items() for w in ws}
        for i, spec in enumerate(self.stages):
            nxt = set()
            for size, cin in sorted(feeds):
                for w in spec.widths:
                    for k in spec.kernels:
                        for e in spec.expands:
                            st = StageArch(w, max(spec.depths), k, e)
                            blocks = self.stage_blocks(i, cin, size, st)
                            # first block, then one repeated block (all later ones are equal)
                            for b in blocks[: min(2, len(blocks))]:
                                if b not in seen:
                                    seen.add(b)
                                    yield b
                            nxt.add((blocks[0].out_size, w))
            feeds = nxt
        for size, cin in sorted(feeds):
            for h in self.head_widths:
                b = self.head_block(cin, size, h)
                if b not in seen:
                    seen.add(b)
                    yield b


# --------------------------------------------------------------------------- loading


def _get(d: Mapping, key: str, where: str, kind: type | tuple = object, default: Any = ...):
    if key not in d:
        if default is not ...:
            return default
        raise NastoolsError(f"{where}.{key}: missing")
    value = d[key]
    if kind is not object and (not isinstance(value, kind) or isinstance(value, bool) and kind is not bool):
        raise NastoolsError(f"{where}.{key}: got {value!r}, expected {getattr(kind, '__name__', kind)}")
    return value


#: the largest value a space may offer per choice: far beyond any real network, small enough
#: that costs, sizes and the supernet's shapes stay ordinary numbers
LIMITS = {"resolutions": 4096, "widths": 16384, "depths": 64, "kernels": 31, "expands": 64, "stages": 64,
          "input_channels": 1024, "num_classes": 1_000_000, "head.expand": 64, "se.divisor": 1024, "stem.kernel": 31,
          "stem.stride": 8}


def _int_list(d: Mapping, key: str, where: str, positive: bool = True) -> tuple[int, ...]:
    values = _get(d, key, where, list)
    if not values:
        raise NastoolsError(f"{where}.{key}: empty, expected at least one value")
    most = LIMITS.get(key)
    out = []
    for v in values:
        iv = _int_field(f"{where}.{key}", v)
        if positive and iv <= 0:
            raise NastoolsError(f"{where}.{key}: got {v!r}, expected positive integers")
        if most is not None and iv > most:
            raise NastoolsError(f"{where}.{key}: got {v!r}, expected at most {most}")
        out.append(iv)
    if len(set(out)) != len(out):
        raise NastoolsError(f"{where}.{key}: got duplicate values {out}, expected distinct values")
    return tuple(sorted(out))


_SPACE_FIELDS = ("name", "description", "input_channels", "num_classes", "resolutions", "act", "se", "stem", "stages",
                 "head", "dropout", "drop_connect")


def _only(data: Mapping, fields: Sequence[str], where: str) -> None:
    """A misspelt key (``drop_conect``) is an error, not a silently ignored setting."""
    extra = sorted(str(k) for k in data if k not in fields)
    if extra:
        raise NastoolsError(f"{where}: unknown field {extra[0]!r}, expected only {', '.join(fields)}")


def space_from_dict(data: Any, source: str = "space") -> SearchSpace:
    """Build and check a :class:`SearchSpace` from its YAML/JSON definition."""
    if not isinstance(data, Mapping):
        raise NastoolsError(f"{source}: expected a mapping of space fields, got {type(data).__name__}")
    w = source
    _only(data, _SPACE_FIELDS, w)
    name = check_name(_get(data, "name", w, str), f"{w}.name")
    stem = _get(data, "stem", w, Mapping)
    head = _get(data, "head", w, Mapping)
    se = _get(data, "se", w, Mapping, {})
    _only(stem, ("widths", "kernel", "stride"), f"{w}.stem")
    _only(head, ("widths", "expand"), f"{w}.head")
    _only(se, ("ratio", "gate", "divisor"), f"{w}.se")
    act = _get(data, "act", w, str, "swish")
    if act not in ACTIVATIONS:
        raise NastoolsError(f"{w}.act: got {act!r}, expected one of {', '.join(ACTIVATIONS)}")
    gate = _get(se, "gate", f"{w}.se", str, "hsigmoid")
    if gate not in GATES:
        raise NastoolsError(f"{w}.se.gate: got {gate!r}, expected one of {', '.join(GATES)}")
    stages_raw = _get(data, "stages", w, list)
    if not stages_raw:
        raise NastoolsError(f"{w}.stages: empty, expected at least one stage")
    if len(stages_raw) > LIMITS["stages"]:
        raise NastoolsError(f"{w}.stages: got {len(stages_raw)} stages, expected at most {LIMITS['stages']}")
    stages = []
    for i, st in enumerate(stages_raw):
        sw = f"{w}.stages[{i}]"
        if not isinstance(st, Mapping):
            raise NastoolsError(f"{sw}: expected a mapping, got {type(st).__name__}")
        _only(st, ("name", "widths", "depths", "kernels", "expands", "stride", "se"), sw)
        kernels = _int_list(st, "kernels", sw)
        if any(k % 2 == 0 for k in kernels):
            raise NastoolsError(f"{sw}.kernels: got {list(kernels)}, expected odd kernel sizes")
        expands_raw = _get(st, "expands", sw, list)
        expands = tuple(sorted(_num_field(f"{sw}.expands", e) for e in expands_raw))
        if not expands or any(not 1 <= e <= LIMITS["expands"] for e in expands):
            raise NastoolsError(f"{sw}.expands: got {expands_raw!r}, expected numbers from 1 to {LIMITS['expands']}")
        if len(set(expands)) != len(expands):
            raise NastoolsError(f"{sw}.expands: got duplicate values {list(expands)}, expected distinct values")
        stride = _int_field(f"{sw}.stride", _get(st, "stride", sw))
        if stride not in (1, 2):
            raise NastoolsError(f"{sw}.stride: got {stride}, expected 1 or 2")
        stages.append(
            StageSpec(
                name=str(_get(st, "name", sw, str, f"stage{i + 1}")),
                widths=_int_list(st, "widths", sw),
                depths=_int_list(st, "depths", sw),
                kernels=kernels,
                expands=expands,
                stride=stride,
                se=bool(_get(st, "se", sw, bool, False)),
            )
        )
    stem_kernel = _int_field(f"{w}.stem.kernel", _get(stem, "kernel", f"{w}.stem", default=3))
    stem_stride = _int_field(f"{w}.stem.stride", _get(stem, "stride", f"{w}.stem", default=2))
    values = {
        "input_channels": _int_field(f"{w}.input_channels", _get(data, "input_channels", w)),
        "num_classes": _int_field(f"{w}.num_classes", _get(data, "num_classes", w)),
        "head.expand": _int_field(f"{w}.head.expand", _get(head, "expand", f"{w}.head", default=6)),
        "se.ratio": float(_num_field(f"{w}.se.ratio", _get(se, "ratio", f"{w}.se", default=0.25))),
        "se.divisor": _int_field(f"{w}.se.divisor", _get(se, "divisor", f"{w}.se", default=8)),
        "dropout": float(_num_field(f"{w}.dropout", _get(data, "dropout", w, default=0.0))),
        "drop_connect": float(_num_field(f"{w}.drop_connect", _get(data, "drop_connect", w, default=0.0))),
        "stem.kernel": stem_kernel,
        "stem.stride": stem_stride,
    }

    def bounded(key: str, low: int) -> tuple[str, bool, str]:
        v = values[key]
        return (key, low <= v <= LIMITS[key], f"at least {low}" if v < low else f"at most {LIMITS[key]}")

    for key, ok, expected in (
        bounded("input_channels", 1),
        bounded("num_classes", 2),
        bounded("head.expand", 1),
        ("se.ratio", 0 < values["se.ratio"] <= 1, "in (0, 1]"),
        bounded("se.divisor", 1),
        ("dropout", 0 <= values["dropout"] < 1, "in [0, 1)"),
        ("drop_connect", 0 <= values["drop_connect"] < 1, "in [0, 1)"),
        bounded("stem.kernel", 1),
        bounded("stem.stride", 1),
    ):
        if not ok:
            raise NastoolsError(f"{w}.{key}: got {values[key]!r}, expected {expected}")
    return SearchSpace(
        name=name,
        input_channels=values["input_channels"],
        num_classes=values["num_classes"],
        resolutions=_int_list(data, "resolutions", w),
        stem_widths=_int_list(stem, "widths", f"{w}.stem"),
        stem_kernel=stem_kernel,
        stem_stride=stem_stride,
        stages=tuple(stages),
        head_widths=_int_list(head, "widths", f"{w}.head"),
        head_expand=values["head.expand"],
        act=act,
        se_ratio=values["se.ratio"],
        se_gate=gate,
        se_divisor=values["se.divisor"],
        dropout=values["dropout"],
        drop_connect=values["drop_connect"],
        description=str(data.get("description", "")),
    )


def list_spaces() -> list[str]:
    """Names of the packaged search spaces."""
    return sorted(p.stem for p in SPACES_DIR.glob("*.yaml"))


_SPACE_CACHE: dict[str | tuple[str, int, int], SearchSpace] = {}  # packaged name, or (file, mtime, size)


def load_space(name_or_path: "str | Path | SearchSpace") -> SearchSpace:
    """A packaged space by name (``fmnist``, ``attentivenas``) or a space YAML file by path."""
    if isinstance(name_or_path, SearchSpace):
        return name_or_path
    name = str(name_or_path)
    if name in _SPACE_CACHE:  # a packaged space, cached by name
        return _SPACE_CACHE[name]
    packaged = name in list_spaces()
    path = SPACES_DIR / f"{name}.yaml" if packaged else Path(name)
    if not path.exists():
        raise NastoolsError(
            f"unknown search space {name!r}: expected one of {', '.join(list_spaces())} or the path of a space YAML file"
        )
    from nastools.io import read_text

    text = read_text(path, "space file")  # a folder, a device, an empty or binary file: one line each
    st = path.stat()
    key = name if packaged else (str(path.resolve()), st.st_mtime_ns, st.st_size)  # an edited file is read again
    if key in _SPACE_CACHE:
        return _SPACE_CACHE[key]
    data = parse_yaml(text, f"space file {str(path)!r}")
    space = space_from_dict(data, source=path.name)
    if not packaged and space.name in list_spaces() and space.fingerprint != load_space(space.name).fingerprint:
        # archs name their space: they would be checked against the packaged one later
        raise NastoolsError(
            f"space file {str(path)!r} is named {space.name!r} like a packaged space but defines another one: give it its own name"
        )
    _SPACE_CACHE[key] = space
    return space


def _yaml_loader():
    """A ``yaml.SafeLoader`` that refuses a mapping with the same key twice (PyYAML keeps the
    last one silently: a setting typed twice would be half ignored)."""
    global _LOADER
    if _LOADER is None:
        import yaml
        from yaml.constructor import ConstructorError

        class UniqueKeyLoader(yaml.SafeLoader):
            def construct_mapping(self, node, deep=False):
                seen: dict[Any, int] = {}
                if isinstance(node, yaml.MappingNode):
                    for key_node, _ in node.value:
                        if key_node.tag == "tag:yaml.org,2002:merge":
                            continue
                        key = self.construct_object(key_node, deep=True)
                        try:
                            first = seen.get(key)
                        except TypeError:  # a list or mapping as a key
                            raise ConstructorError(None, None, f"unusable key of type {type(key).__name__}", key_node.start_mark) from None
                        if first is not None:
                            raise ConstructorError(
                                None, None, f"duplicate key {key!r} (first at line {first + 1}): keep one", key_node.start_mark
                            )
                        seen[key] = key_node.start_mark.line
                return super().construct_mapping(node, deep)

        _LOADER = UniqueKeyLoader
    return _LOADER


_LOADER = None


def parse_yaml(text: str, what: str) -> Any:
    """The data of a YAML document (safe: no Python objects), with one-line
    :class:`NastoolsError` s naming ``what``: a syntax error, a duplicate key, an integer
    longer than Python converts, nesting too deep."""
    import yaml

    try:
        return yaml.load(text, Loader=_yaml_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise NastoolsError(f"cannot read {what}: {' '.join(str(exc).split())}") from None
    except ValueError as exc:  # the int-string limit, an impossible date
        from nastools.errors import brief

        detail = f"a number has more than {_int_digits()} digits" if "integer string conversion" in str(exc) else brief(exc, 120)
        raise NastoolsError(f"cannot read {what}: {detail}") from None
    except RecursionError:
        raise NastoolsError(f"cannot read {what}: nested too deeply") from None


def _int_digits() -> int:
    import sys

    return getattr(sys, "get_int_max_str_digits", lambda: 4300)()


def load_arch(source: "str | Path | Mapping", space: "SearchSpace | str | None" = None) -> Arch:
    """Read an arch from a JSON file path, a JSON string or a dict, and validate it.

    The space is the one given, else the one the arch names.
    """
    from nastools.io import parse_json, read_json

    if isinstance(source, Mapping):
        data = source
    else:
        text = str(source)
        if text.lstrip().startswith("{"):
            data = parse_json(text, "arch JSON")
        else:
            data = read_json(text, "arch file", hint="expected the path of an Arch JSON file")
    arch = parse_arch(data)
    sp = load_space(space if space is not None else arch.space)
    return sp.validate(arch)


def format_count(value: float, unit: str = "") -> str:
    """1234567 -> '1.23M'."""
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= factor:
            return f"{value / factor:.3g}{suffix}{unit}"
    return f"{value:.3g}{unit}"


def parse_count(text: str) -> float:
    """'300M' -> 3e8, '5.5K' -> 5500, '2e6' -> 2e6."""
    s = str(text).strip()
    mult = {"K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
    factor = 1.0
    if s and s[-1].upper() in mult:
        factor, s = mult[s[-1].upper()], s[:-1]
    try:
        value = float(s) * factor
    except ValueError:
        raise NastoolsError(f"count {text!r}: expected a number with an optional K/M/G suffix, e.g. 300M") from None
    if not math.isfinite(value) or value <= 0:
        raise NastoolsError(f"count {text!r}: expected a positive number")
    return value
