"""Fold BatchNorm into the preceding convolution of a static subnet (exact algebra).

An eval-mode ``BN(conv(x))`` equals a single convolution with weight
``w * gamma / sqrt(var + eps)`` (per output channel) and bias
``beta + (b - mean) * gamma / sqrt(var + eps)``. Folding before export leaves no
``BatchNormalization`` node for a runtime to handle, whatever exporter is used.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn


@torch.no_grad()
def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new ``Conv2d`` (with bias) equal to ``bn(conv(x))`` in eval mode."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        bias=True,
        padding_mode=conv.padding_mode,
    ).to(conv.weight.device, conv.weight.dtype)
    fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused.bias.copy_(bn.bias + (bias - bn.running_mean) * scale)
    return fused


# (conv attribute, bn attribute) pairs of the static blocks (nastools.supernet.static)
_PAIRS = (("conv", "bn"), ("expand_conv", "expand_bn"), ("dw_conv", "dw_bn"), ("project_conv", "project_bn"))


def fold_batchnorm(model: nn.Module, *, inplace: bool = False) -> nn.Module:
    """An eval-mode copy of ``model`` with every conv+BN pair of its blocks folded.

    BN modules are replaced by ``nn.Identity``; ``model`` itself is not changed, unless
    ``inplace`` (then ``model`` is folded and returned: no copy, for a model of one's own).
    Raises ``ValueError`` if a BatchNorm is left over (a module layout this function does not know).
    """
    out = (model if inplace else copy.deepcopy(model)).eval()
    for module in out.modules():
        for conv_name, bn_name in _PAIRS:
            conv, bn = getattr(module, conv_name, None), getattr(module, bn_name, None)
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                setattr(module, conv_name, fold_conv_bn(conv, bn))
                setattr(module, bn_name, nn.Identity())
    left = [name for name, m in out.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if left:
        raise ValueError(f"BatchNorm layers left after folding: {', '.join(left)}")
    return out
