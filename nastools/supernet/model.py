"""The weight-sharing supernet of a search space.

``Supernet(space)`` holds the largest block of every position. ``set_active(arch)`` decodes
the arch into :class:`~nastools.space.Block` records (the same ones that cost FLOPs and key
latency tables) and hands each position its record; ``forward`` then runs the active
blocks, slicing weights as needed. ``extract(arch)`` builds a :class:`StaticSubnet` of
ordinary layers from the same records and copies the shared weights in.
"""

from __future__ import annotations

import re
from typing import Any, Iterator, Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

from nastools.space import Arch, Block, SearchSpace, load_space
from nastools.supernet.dynamic import DynamicBatchNorm2d, DynamicConv2d, DynamicLinear, DynamicSE, copy_bn
from nastools.supernet.static import Head, MBConv, StaticSubnet, Stem, drop_path, make_act, make_gate

_LEGACY_SHORTCUT = re.compile(r"stages\.\d+\.[1-9]\d*\.shortcut_conv\.weight")


def legacy_keys(state_dict: Mapping[str, Any]) -> list[str]:
    """Keys of a supernet ``state_dict`` that only older checkpoints (before 2026-12-03) hold:
    a 1x1 shortcut convolution in every block of a stage with several widths, where only the
    first block can ever use one. :meth:`Supernet.load_state_dict` drops them."""
    return [k for k in state_dict if _LEGACY_SHORTCUT.fullmatch(k)]


def _copy(dst: torch.Tensor, src: torch.Tensor) -> None:
    with torch.no_grad():
        dst.copy_(src)


class DynamicStem(nn.Module):
    def __init__(self, in_chs: int, out_chs: int, kernel: int, stride: int, act: str) -> None:
        super().__init__()
        self.conv = DynamicConv2d(in_chs, out_chs, kernel, stride)
        self.bn = DynamicBatchNorm2d(out_chs)
        self.act = make_act(act)
        self.active: Block | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x, self.active.out_chs)))

    def extract(self, block: Block) -> Stem:
        m = Stem(block)
        _copy(m.conv.weight, self.conv.active_weight(block.in_chs, block.out_chs, block.kernel))
        copy_bn(m.bn, self.bn)
        return m


class DynamicMBConv(nn.Module):
    """One MBConv position of a stage, at its largest size."""

    def __init__(
        self,
        *,
        in_chs: int,
        mid_chs: int,
        out_chs: int,
        kernel: int,
        stride: int,
        se_chs: int,
        act: str,
        gate: str,
        expand: bool,
        shortcut_conv: bool,
    ) -> None:
        super().__init__()
        if expand:
            self.expand_conv = DynamicConv2d(in_chs, mid_chs, 1)
            self.expand_bn = DynamicBatchNorm2d(mid_chs)
            self.expand_act = make_act(act)
        else:
            self.expand_conv = None
        self.dw_conv = DynamicConv2d(mid_chs, mid_chs, kernel, stride, depthwise=True)
        self.dw_bn = DynamicBatchNorm2d(mid_chs)
        self.dw_act = make_act(act)
        self.se = DynamicSE(mid_chs, se_chs, make_gate(gate)) if se_chs else None
        self.project_conv = DynamicConv2d(mid_chs, out_chs, 1)
        self.project_bn = DynamicBatchNorm2d(out_chs)
        self.stride = stride
        self.shortcut_conv = DynamicConv2d(in_chs, out_chs, 1) if shortcut_conv else None
        self.active: Block | None = None
        self.drop_connect = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.active
        y = x
        if b.expand != 1:
            y = self.expand_act(self.expand_bn(self.expand_conv(y, b.mid_chs)))
        y = self.dw_act(self.dw_bn(self.dw_conv(y, b.mid_chs, b.kernel)))
        if b.se:
            y = self.se(y, b.se_chs)
        y = self.project_bn(self.project_conv(y, b.out_chs))
        if self.stride == 1 and b.in_chs == b.out_chs:
            return x + drop_path(y, self.drop_connect, self.training)
        if self.stride > 1:
            x = F.avg_pool2d(x, self.stride, self.stride, padding=x.shape[-1] % 2)
        if b.in_chs != b.out_chs:
            x = self.shortcut_conv(x, b.out_chs)
        return x + y

    def extract(self, block: Block) -> MBConv:
        m = MBConv(block, self.drop_connect)
        if block.expand != 1:  # else the static block's expansion is nn.Identity
            _copy(m.expand_conv.weight, self.expand_conv.active_weight(block.in_chs, block.mid_chs))
            copy_bn(m.expand_bn, self.expand_bn)
        _copy(m.dw_conv.weight, self.dw_conv.active_weight(block.mid_chs, block.mid_chs, block.kernel))
        copy_bn(m.dw_bn, self.dw_bn)
        if block.se:
            _copy(m.se.reduce.weight, self.se.reduce.active_weight(block.mid_chs, block.se_chs))
            _copy(m.se.reduce.bias, self.se.reduce.active_bias(block.se_chs))
            _copy(m.se.expand.weight, self.se.expand.active_weight(block.se_chs, block.mid_chs))
            _copy(m.se.expand.bias, self.se.expand.active_bias(block.mid_chs))
        _copy(m.project_conv.weight, self.project_conv.active_weight(block.mid_chs, block.out_chs))
        copy_bn(m.project_bn, self.project_bn)
        if block.has_shortcut_conv:
            _copy(m.shortcut.conv.weight, self.shortcut_conv.active_weight(block.in_chs, block.out_chs))
        return m


class DynamicHead(nn.Module):
    def __init__(self, in_chs: int, mid_chs: int, out_chs: int, num_classes: int, act: str) -> None:
        super().__init__()
        self.conv = DynamicConv2d(in_chs, mid_chs, 1)
        self.bn = DynamicBatchNorm2d(mid_chs)
        self.act = make_act(act)
        self.mix = DynamicLinear(mid_chs, out_chs)
        self.mix_act = make_act(act)
        self.classifier = DynamicLinear(out_chs, num_classes)
        self.active: Block | None = None
        self.dropout = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.active
        x = self.act(self.bn(self.conv(x, b.mid_chs)))
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        x = self.mix_act(self.mix(x, b.out_chs))
        x = F.dropout(x, self.dropout, self.training)
        return self.classifier(x, b.num_classes)

    def extract(self, block: Block) -> Head:
        m = Head(block, self.dropout)
        _copy(m.conv.weight, self.conv.active_weight(block.in_chs, block.mid_chs))
        copy_bn(m.bn, self.bn)
        _copy(m.mix.weight, self.mix.active_weight(block.mid_chs, block.out_chs))
        _copy(m.mix.bias, self.mix.active_bias(block.out_chs))
        _copy(m.classifier.weight, self.classifier.active_weight(block.out_chs, block.num_classes))
        _copy(m.classifier.bias, self.classifier.active_bias(block.num_classes))
        return m


class Supernet(nn.Module):
    """All subnets of ``space`` in one module, sharing weights.

    >>> net = Supernet("fmnist")
    >>> net.set_active(net.space.sample(0))
    >>> logits = net(images)               # runs the active subnet
    >>> subnet = net.extract()             # a plain nn.Module of the active subnet
    """

    def __init__(self, space: SearchSpace | str) -> None:
        super().__init__()
        self.space = sp = load_space(space)
        self.stem = DynamicStem(sp.input_channels, max(sp.stem_widths), sp.stem_kernel, sp.stem_stride, sp.act)
        self.stages = nn.ModuleList()
        for i, spec in enumerate(sp.stages):
            in_widths, stage = sp.stage_in_widths(i), nn.ModuleList()
            for j in range(max(spec.depths)):
                ins = in_widths if j == 0 else spec.widths
                mid = max(sp.stage_mid_chs(i, c, e) for c in ins for e in spec.expands)
                stage.append(
                    DynamicMBConv(
                        in_chs=max(ins),
                        mid_chs=mid,
                        out_chs=max(spec.widths),
                        kernel=max(spec.kernels),
                        stride=spec.stride if j == 0 else 1,
                        se_chs=sp.se_chs(mid) if spec.se else 0,
                        act=sp.act,
                        gate=sp.se_gate,
                        expand=any(e != 1 for e in spec.expands),
                        # only a stage's first block can change width; later blocks map
                        # the stage's width onto itself and always take the identity
                        shortcut_conv=j == 0 and any(c != w for c in ins for w in spec.widths),
                    )
                )
            self.stages.append(stage)
        last = max(sp.stages[-1].widths)
        self.head = DynamicHead(last, last * sp.head_expand, max(sp.head_widths), sp.num_classes, sp.act)
        self._active_blocks: tuple[nn.Module, ...] = ()
        self.active_arch: Arch | None = None
        self.set_active(sp.max_arch())

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):
        """``nn.Module.load_state_dict``; also reads checkpoints of older versions, whose
        never-used shortcut weights (:func:`legacy_keys`) it drops."""
        own = self.state_dict(keep_vars=True)
        legacy = {k for k in legacy_keys(state_dict) if k not in own}
        if legacy:
            state_dict = {k: v for k, v in state_dict.items() if k not in legacy}
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def set_active(self, arch: Arch, *, dropout: float = 0.0, drop_connect: float = 0.0) -> None:
        """Make ``arch`` the subnet that ``forward`` runs.

        ``dropout`` (before the classifier) and ``drop_connect`` (on residual branches,
        scaled linearly with depth) act in training mode only.
        """
        blocks = self.space.blocks(self.space.validate(arch))
        self.stem.active = blocks[0]
        mods: list[nn.Module] = []
        for stage, st in zip(self.stages, arch.stages):
            mods.extend(stage[: st.depth])
        n = len(mods)
        for i, (m, b) in enumerate(zip(mods, blocks[1:-1])):
            m.active = b
            m.drop_connect = drop_connect * (i + 1) / max(n, 1)
        for stage, st in zip(self.stages, arch.stages):
            for m in stage[st.depth :]:
                m.active = None
        self.head.active = blocks[-1]
        self.head.dropout = dropout
        self._active_blocks = tuple(mods)
        self.active_arch = arch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = self.active_arch.resolution
        if x.shape[-1] != res or x.shape[-2] != res:
            x = F.interpolate(x, size=(res, res), mode="bilinear", align_corners=False)
        x = self.stem(x)
        for m in self._active_blocks:
            x = m(x)
        return self.head(x)

    def active_modules(self) -> Iterator[nn.Module]:
        """The positions the active subnet uses, in order."""
        yield self.stem
        yield from self._active_blocks
        yield self.head

    def extract(self, arch: Arch | None = None) -> StaticSubnet:
        """A stand-alone copy of a subnet (default: the active one) made of ordinary
        ``Conv2d``/``BatchNorm2d``/``Linear`` layers, in the supernet's mode and device."""
        if arch is not None and arch != self.active_arch:
            previous = self.active_arch
            self.set_active(arch)
            try:
                return self.extract()
            finally:
                self.set_active(previous)
        arch = self.active_arch
        blocks = self.space.blocks(arch)
        net = StaticSubnet(
            arch,
            self.stem.extract(blocks[0]),
            [m.extract(b) for m, b in zip(self._active_blocks, blocks[1:-1])],
            self.head.extract(blocks[-1]),
        )
        device = self.head.classifier.weight.device
        return net.to(device).train(self.training)
