"""Static (ordinary) layers: what an extracted subnet is made of.

Every module here is built from one :class:`~nastools.space.Block` record with plain
``Conv2d``, ``BatchNorm2d`` and ``Linear`` layers, no slicing. The latency profiler times
these same modules one block at a time, and the exporter writes them to ONNX.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from nastools.space import Arch, Block

#: activation modules by a space's ``act`` name (:data:`nastools.space.ACTIVATIONS`)
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {"swish": nn.SiLU, "relu": nn.ReLU, "hswish": nn.Hardswish}
#: SE gate modules by a space's ``se.gate`` name (:data:`nastools.space.GATES`)
GATES: dict[str, Callable[[], nn.Module]] = {"hsigmoid": nn.Hardsigmoid, "sigmoid": nn.Sigmoid}


def _lookup(registry: dict[str, Callable[[], nn.Module]], name: str, what: str) -> nn.Module:
    if name not in registry:
        raise ValueError(f"unknown {what} {name!r}: expected one of {', '.join(registry)}")
    return registry[name]()


def make_act(name: str) -> nn.Module:
    """The activation module for a space's ``act`` name."""
    return _lookup(ACTIVATIONS, name, "activation")


def make_gate(name: str) -> nn.Module:
    """The SE gate module for a space's ``se.gate`` name."""
    return _lookup(GATES, name, "gate")


def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Drop-connect: zero whole samples of a residual branch, rescaling the rest."""
    if rate <= 0.0 or not training:
        return x
    keep = 1.0 - rate
    mask = torch.empty((x.shape[0], 1, 1, 1), dtype=x.dtype, device=x.device).bernoulli_(keep)
    return x * mask / keep


class DropPath(nn.Module):
    """:func:`drop_path` as a module: on an identity residual, in training mode only."""

    def __init__(self, rate: float = 0.0) -> None:
        super().__init__()
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.rate, self.training)

    def extra_repr(self) -> str:
        return f"rate={self.rate:g}"


class SqueezeExcite(nn.Module):
    """SE: global pool, 1x1 reduce (ReLU), 1x1 expand, gate (h-sigmoid), rescale."""

    def __init__(self, chs: int, se_chs: int, gate: str = "hsigmoid") -> None:
        super().__init__()
        self.reduce = nn.Conv2d(chs, se_chs, 1, bias=True)
        self.act = nn.ReLU()
        self.expand = nn.Conv2d(se_chs, chs, 1, bias=True)
        self.gate = make_gate(gate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.expand(self.act(self.reduce(s))))


class Stem(nn.Module):
    """conv kxk / stride, BN, act."""

    def __init__(self, block: Block) -> None:
        super().__init__()
        self.block = block
        k = block.kernel
        self.conv = nn.Conv2d(block.in_chs, block.out_chs, k, block.stride, k // 2, bias=False)
        self.bn = nn.BatchNorm2d(block.out_chs)
        self.act = make_act(block.act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class Shortcut(nn.Module):
    """The residual path of an MBConv block: identity, or avg-pool and/or 1x1 conv when the
    stride or the channels change (as AttentiveNAS does). Absent parts are ``nn.Identity``."""

    def __init__(self, block: Block) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(block.stride, block.stride, padding=block.size % 2) if block.stride > 1 else nn.Identity()
        self.conv = nn.Conv2d(block.in_chs, block.out_chs, 1, bias=False) if block.has_shortcut_conv else nn.Identity()
        self.is_identity = block.stride == 1 and not block.has_shortcut_conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.pool(x))


class MBConv(nn.Module):
    """Inverted residual: [1x1 expand, BN, act], kxk depthwise, BN, act, [SE], 1x1 project,
    BN, plus the shortcut. Absent parts (no expansion, no SE) are ``nn.Identity``; drop-connect
    applies on an identity shortcut only."""

    def __init__(self, block: Block, drop_connect: float = 0.0) -> None:
        super().__init__()
        self.block = block
        mid, k = block.mid_chs, block.kernel
        expand = block.expand != 1
        self.expand_conv = nn.Conv2d(block.in_chs, mid, 1, bias=False) if expand else nn.Identity()
        self.expand_bn = nn.BatchNorm2d(mid) if expand else nn.Identity()
        self.expand_act = make_act(block.act) if expand else nn.Identity()
        self.dw_conv = nn.Conv2d(mid, mid, k, block.stride, k // 2, groups=mid, bias=False)
        self.dw_bn = nn.BatchNorm2d(mid)
        self.dw_act = make_act(block.act)
        self.se = SqueezeExcite(mid, block.se_chs, block.gate) if block.se else nn.Identity()
        self.project_conv = nn.Conv2d(mid, block.out_chs, 1, bias=False)
        self.project_bn = nn.BatchNorm2d(block.out_chs)
        self.shortcut = Shortcut(block)
        self.drop_path = DropPath(drop_connect) if self.shortcut.is_identity else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand_act(self.expand_bn(self.expand_conv(x)))
        y = self.se(self.dw_act(self.dw_bn(self.dw_conv(y))))
        y = self.project_bn(self.project_conv(y))
        return self.shortcut(x) + self.drop_path(y)


class Head(nn.Module):
    """MobileNetV3 head: 1x1 conv to ``mid_chs`` (BN, act), global pool, linear mix to
    ``out_chs`` (bias, act), dropout, linear classifier."""

    def __init__(self, block: Block, dropout: float = 0.0) -> None:
        super().__init__()
        self.block = block
        self.conv = nn.Conv2d(block.in_chs, block.mid_chs, 1, bias=False)
        self.bn = nn.BatchNorm2d(block.mid_chs)
        self.act = make_act(block.act)
        self.mix = nn.Linear(block.mid_chs, block.out_chs, bias=True)
        self.mix_act = make_act(block.act)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(block.out_chs, block.num_classes, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn(self.conv(x)))
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        x = self.mix_act(self.mix(x))
        return self.classifier(self.dropout(x))


#: the static module of each block kind, built from its record
BLOCKS: dict[str, Callable[..., nn.Module]] = {
    "stem": lambda block, dropout, drop_connect: Stem(block),
    "mbconv": lambda block, dropout, drop_connect: MBConv(block, drop_connect),
    "head": lambda block, dropout, drop_connect: Head(block, dropout),
}


def build_block(block: Block, *, dropout: float = 0.0, drop_connect: float = 0.0) -> nn.Module:
    """A freshly initialised static module for one block record."""
    if block.kind not in BLOCKS:
        raise ValueError(f"unknown block kind {block.kind!r}: expected one of {', '.join(BLOCKS)}")
    return BLOCKS[block.kind](block, dropout, drop_connect)


class StaticSubnet(nn.Module):
    """A stand-alone subnet: stem, MBConv blocks, head, made of ordinary layers.

    Its input is a batch at ``arch.resolution``; it holds no reference to the supernet.
    """

    def __init__(self, arch: Arch, stem: Stem, blocks: Sequence[MBConv], head: Head) -> None:
        super().__init__()
        self.arch = arch
        self.stem = stem
        self.blocks = nn.Sequential(*blocks)
        self.head = head

    @classmethod
    def build(cls, arch: Arch, blocks: Sequence[Block], *, dropout: float = 0.0, drop_connect: float = 0.0) -> "StaticSubnet":
        """A freshly initialised subnet from its block records (``SearchSpace.blocks(arch)``)."""
        n = len(blocks) - 2
        return cls(
            arch,
            Stem(blocks[0]),
            [MBConv(b, drop_connect * (i + 1) / max(n, 1)) for i, b in enumerate(blocks[1:-1])],
            Head(blocks[-1], dropout),
        )

    @property
    def input_shape(self) -> tuple[int, int, int]:
        b = self.stem.block
        return (b.in_chs, b.size, b.size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))

    def extra_repr(self) -> str:
        return f"arch={self.arch.id}"
