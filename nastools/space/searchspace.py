"""The :class:`SearchSpace`: the set of choices an :class:`~nastools.space.Arch` makes, its
identity (canonical definition and fingerprint), and the decoding of an arch into
:class:`~nastools.space.Block` records. Sampling and cost live in their own modules; the
space's methods are the public door to them."""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from typing import Any, Iterator

from nastools.errors import NastoolsError
from nastools.space import cost as _cost
from nastools.space import sampling as _sampling
from nastools.space.arch import Arch, Block, StageArch, make_divisible, parse_arch
from nastools.space.units import choices_text


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
        """The most expanded channels any MBConv block of the space has."""
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
        return _sampling.extreme_arch(self, min)

    def max_arch(self) -> Arch:
        """The largest subnet: the last (largest) value of every choice."""
        return _sampling.extreme_arch(self, max)

    def sample(self, rng: "random.Random | int | None" = None) -> Arch:
        """A uniformly random arch (each choice independent and uniform)."""
        return _sampling.sample(self, rng)

    def mutate(self, arch: Arch, prob: float, rng: "random.Random | int | None" = None) -> Arch:
        """Resample each choice of ``arch`` independently with probability ``prob``."""
        return _sampling.mutate(self, self.validate(arch), prob, rng)

    def crossover(self, a: Arch, b: Arch, rng: "random.Random | int | None" = None) -> Arch:
        """Uniform crossover: each choice taken from ``a`` or ``b`` with equal odds."""
        self.validate(a)
        self.validate(b)
        return _sampling.crossover(self, a, b, rng)

    def sample_near_flops(
        self,
        target: float | str,
        rng: "random.Random | int | None" = None,
        *,
        tolerance: float = 0.05,
        max_tries: int = 500,
    ) -> Arch:
        """An arch whose FLOPs lie within ``tolerance`` (relative) of ``target`` (a number, or
        a count such as ``'20M'``), drawn with ``rng`` (a seed or a ``random.Random``).

        Rejection sampling from the uniform distribution, as AttentiveNAS does. Targets in
        the tails of the FLOPs distribution rarely get a hit, so after ``max_tries // 5``
        misses the closest sample is walked towards the target by random single-gene
        mutations that reduce the error; the closest arch seen is returned if the window
        is still missed after ``max_tries`` steps in all.
        """
        return _sampling.sample_near_flops(self, target, rng, tolerance=tolerance, max_tries=max_tries)

    def validate(self, arch: Arch) -> Arch:
        """Check every choice of ``arch`` against this space; return it unchanged.

        Raises :class:`NastoolsError` naming the bad field and the allowed values.
        """
        if not isinstance(arch, Arch):
            raise NastoolsError(f"expected an Arch, got {type(arch).__name__}")
        if arch.space != self.name:
            raise NastoolsError(f"arch.space: got {arch.space!r}, expected {self.name!r} (this arch belongs to another search space)")

        def check(where, value, options):
            if value not in options:
                raise NastoolsError(f"{where}: got {choices_text([value])}, expected one of {choices_text(options)}")

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

    # ------------------------------------------------------------------ decoding

    def stem_block(self, resolution: int, width: int) -> Block:
        """The stem block at input ``resolution`` with ``width`` output channels."""
        return Block("stem", resolution, self.input_channels, width, self.stem_kernel, self.stem_stride, act=self.act)

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

    def head_block(self, in_chs: int, size: int, width: int) -> Block:
        """The head block (1x1 expansion, global pooling, feature mix, classifier) on an in_chs x size x size input."""
        return Block("head", size, in_chs, width, act=self.act, mid_chs=in_chs * self.head_expand, num_classes=self.num_classes)

    def blocks(self, arch: Arch) -> list[Block]:
        """Decode an arch into its blocks, in order: stem, every MBConv block, head."""
        if not isinstance(arch, Arch) or arch.space != self.name:
            self.validate(arch)  # a one-line error (an arch of another space, not an Arch)
        stem = self.stem_block(arch.resolution, arch.stem)
        out = [stem]
        size, chs = stem.out_size, arch.stem
        for i, st in enumerate(arch.stages):
            stage_blocks = self.stage_blocks(i, chs, size, st)
            out.extend(stage_blocks)
            size, chs = stage_blocks[-1].out_size, st.width
        out.append(self.head_block(chs, size, arch.head))
        return out

    def all_blocks(self) -> Iterator[Block]:
        """Every distinct block any subnet of this space can contain (for latency tables)."""
        seen: set[Block] = set()

        def new(b: Block) -> bool:
            if b in seen:
                return False
            seen.add(b)
            return True

        feeds = set()  # (size, in_chs) pairs that can feed the next stage
        for res in self.resolutions:
            for w in self.stem_widths:
                b = self.stem_block(res, w)
                feeds.add((b.out_size, w))
                if new(b):
                    yield b
        for i, spec in enumerate(self.stages):
            nxt = set()
            for size, cin in sorted(feeds):
                for w in spec.widths:
                    for k in spec.kernels:
                        for e in spec.expands:
                            blocks = self.stage_blocks(i, cin, size, StageArch(w, max(spec.depths), k, e))
                            # first block, then one repeated block (all later ones are equal)
                            yield from (b for b in blocks[: min(2, len(blocks))] if new(b))
                            nxt.add((blocks[0].out_size, w))
            feeds = nxt
        for size, cin in sorted(feeds):
            for h in self.head_widths:
                b = self.head_block(cin, size, h)
                if new(b):
                    yield b

    # ------------------------------------------------------------------ cost

    def cost(self, arch: Arch) -> tuple[int, int]:
        """(FLOPs as multiply-accumulates, parameters) of ``arch``, analytically."""
        if not isinstance(arch, Arch) or arch.space != self.name:
            self.validate(arch)  # a one-line error (an arch of another space, not an Arch)
        return _cost.arch_cost(self, arch, self._stage_cache)

    def flops(self, arch: Arch) -> int:
        """Multiply-accumulates of ``arch`` (convolutions and linear layers)."""
        return self.cost(arch)[0]

    def params(self, arch: Arch) -> int:
        """Trainable parameters of ``arch``'s extracted subnet."""
        return self.cost(arch)[1]

    def cost_breakdown(self, arch: Arch) -> list[dict[str, Any]]:
        """Per-stage summary: name, blocks, output size and channels, FLOPs and params."""
        return _cost.cost_breakdown(self, self.validate(arch))


__all__ = ["SearchSpace", "StageSpec"]
