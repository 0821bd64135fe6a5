"""What gets timed: one block or one whole subnet, as a static module and its ONNX model.

Only static modules (``build_block`` / ``Supernet.extract``) reach a backend. Weights are
random: latency does not depend on their values, only on shapes and operators. BN is folded
into the convolutions by the ONNX exporter (eval mode), as a deployed model runs.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn as nn

from nastools.space import Arch, Block, SearchSpace
from nastools.supernet import StaticSubnet, build_block

ONNX_OPSET = 17


@dataclass
class Workload:
    """A static module with its input shape (batch included) and a name (a block key or an
    arch key). :meth:`onnx` exports it once per precision and caches the bytes."""

    name: str
    module: nn.Module | None  # None: only the cached ONNX exports are left
    input_shape: tuple[int, ...]
    _onnx: dict = field(default_factory=dict, repr=False)

    def example_input(self, dtype: torch.dtype = torch.float32, device: str = "cpu") -> torch.Tensor:
        """A seeded random input of the workload's shape, dtype and device."""
        return torch.randn(self.input_shape, generator=torch.Generator().manual_seed(0)).to(device=device, dtype=dtype)

    def onnx(self, precision: str = "fp32") -> bytes:
        """The workload as an ONNX model (bytes); ``fp16`` exports a half-precision graph
        (half inputs and weights), which is how TensorRT 11 and ORT CUDA take fp16."""
        if precision not in self._onnx:
            if self.module is None:
                raise ValueError(f"workload {self.name}: no module left to export at {precision}")
            self._onnx[precision] = export_onnx(self.module, self.input_shape, half=precision == "fp16")
        return self._onnx[precision]


def export_onnx(module: nn.Module, input_shape: Sequence[int], half: bool = False) -> bytes:
    """Export a static module to ONNX bytes with the TorchScript-based exporter.

    The legacy exporter (``dynamo=False``) needs no extra package, folds BN into convolutions
    in eval mode and takes ~50 ms for a block, against seconds for the dynamo exporter.
    """
    import copy

    m = copy.deepcopy(module).eval()
    x = torch.zeros(tuple(input_shape))
    if half:
        m, x = m.half(), x.half()
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, (x,), buf, dynamo=False, input_names=["input"], output_names=["output"], opset_version=ONNX_OPSET)
    return buf.getvalue()


def block_workload(block: Block, batch: int = 1) -> Workload:
    """One block alone, at its input shape (weights drawn from seed 0; the caller's torch
    RNG is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        module = build_block(block).eval()
    return Workload(block.key, module, (batch, block.in_chs, block.size, block.size))


def subnet_workload(space: SearchSpace, arch: Arch, batch: int = 1) -> Workload:
    """A whole static subnet (end-to-end runs for calibration and validation; weights drawn
    from seed 0, the caller's torch RNG left as it was)."""
    blocks = space.blocks(arch)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = StaticSubnet.build(arch, blocks).eval()
    return Workload(arch.key, net, (batch, *net.input_shape))


def blocks_for(space: SearchSpace, resolutions: Sequence[int] | None = None) -> list[Block]:
    """Every distinct block any subnet of ``space`` at ``resolutions`` (default: all of the
    space's) can contain, in enumeration order: stems, MBConv blocks stage by stage, heads."""
    if resolutions is None or sorted(set(resolutions)) == list(space.resolutions):
        return list(space.all_blocks())
    from nastools.errors import NastoolsError
    from nastools.space import space_from_dict

    bad = [r for r in resolutions if r not in space.resolutions]
    if bad:
        raise NastoolsError(
            f"--resolutions: got {bad[0]}, expected values of space {space.name!r}: {', '.join(map(str, space.resolutions))}"
        )
    d = space.definition()
    d["resolutions"] = sorted(set(resolutions))
    return list(space_from_dict(d, source=space.name).all_blocks())
