"""Weight-sliced layers: full-size parameters, used in part.

A call uses the leading input/output channels and the centre of the largest kernel
(a 3x3 kernel is the centre of the 5x5). Layers take the active sizes as call arguments;
they hold no "active" state of their own.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class DynamicConv2d(nn.Module):
    """A convolution whose calls use ``weight[:out_chs, :in_chs]`` and the centred kernel."""

    def __init__(self, in_chs: int, out_chs: int, kernel: int = 1, stride: int = 1, *, depthwise: bool = False, bias: bool = False) -> None:
        super().__init__()
        self.in_chs, self.out_chs, self.kernel, self.stride = in_chs, out_chs, kernel, stride
        self.depthwise = depthwise
        self.weight = nn.Parameter(torch.empty(out_chs, 1 if depthwise else in_chs, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_chs)) if bias else None
        nn.init.kaiming_normal_(self.weight, mode="fan_out")

    def active_weight(self, in_chs: int, out_chs: int, kernel: int | None = None) -> torch.Tensor:
        w = self.weight
        if out_chs != self.out_chs:
            w = w[:out_chs]
        if not self.depthwise and in_chs != self.in_chs:
            w = w[:, :in_chs]
        if kernel is not None and kernel != self.kernel:
            s = (self.kernel - kernel) // 2
            w = w[:, :, s : s + kernel, s : s + kernel]
        return w

    def active_bias(self, out_chs: int) -> torch.Tensor | None:
        if self.bias is None or out_chs == self.out_chs:
            return self.bias
        return self.bias[:out_chs]

    def forward(self, x: torch.Tensor, out_chs: int, kernel: int | None = None) -> torch.Tensor:
        in_chs = x.shape[1]
        k = kernel or self.kernel
        w = self.active_weight(in_chs, out_chs, k)
        if self.depthwise and x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            # oneDNN's bf16 depthwise weight gradient is several times slower than its fp32 one
            # (nastools.train.precision): run this convolution in fp32, hand on bf16
            with torch.autocast("cpu", enabled=False):
                y = F.conv2d(x.float(), w, self.active_bias(out_chs), self.stride, k // 2, 1, in_chs)
            return y.to(torch.get_autocast_dtype("cpu"))
        return F.conv2d(x, w, self.active_bias(out_chs), self.stride, k // 2, 1, in_chs if self.depthwise else 1)

    def extra_repr(self) -> str:
        dw = ", depthwise" if self.depthwise else ""
        return f"{self.in_chs}, {self.out_chs}, kernel={self.kernel}, stride={self.stride}{dw}"


class DynamicBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm over the leading ``x.shape[1]`` channels of full-size statistics.

    In training mode the running statistics of those channels are updated in place;
    ``momentum=None`` gives a cumulative average, as BN recalibration uses.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        if c == self.num_features:
            return super().forward(x)
        factor = 0.0
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        use_batch_stats = self.training or not self.track_running_stats
        return F.batch_norm(
            x,
            self.running_mean[:c] if self.running_mean is not None else None,
            self.running_var[:c] if self.running_var is not None else None,
            self.weight[:c],
            self.bias[:c],
            use_batch_stats,
            factor,
            self.eps,
        )


class DynamicLinear(nn.Module):
    """A linear layer whose calls use ``weight[:out_features, :in_features]``."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        bound = 1.0 / math.sqrt(in_features)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def active_weight(self, in_features: int, out_features: int) -> torch.Tensor:
        w = self.weight
        if out_features != self.out_features:
            w = w[:out_features]
        if in_features != self.in_features:
            w = w[:, :in_features]
        return w

    def active_bias(self, out_features: int) -> torch.Tensor | None:
        if self.bias is None or out_features == self.out_features:
            return self.bias
        return self.bias[:out_features]

    def forward(self, x: torch.Tensor, out_features: int) -> torch.Tensor:
        return F.linear(x, self.active_weight(x.shape[-1], out_features), self.active_bias(out_features))

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}"


class DynamicSE(nn.Module):
    """Squeeze-excite over the leading channels: reduce to ``se_chs`` (ReLU), expand, gate."""

    def __init__(self, chs: int, se_chs: int, gate: nn.Module) -> None:
        super().__init__()
        self.reduce = DynamicConv2d(chs, se_chs, 1, bias=True)
        self.expand = DynamicConv2d(se_chs, chs, 1, bias=True)
        self.gate = gate

    def forward(self, x: torch.Tensor, se_chs: int) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        s = F.relu(self.reduce(s, se_chs))
        return x * self.gate(self.expand(s, x.shape[1]))


def copy_bn(dst: nn.BatchNorm2d, src: nn.BatchNorm2d) -> None:
    """Copy the leading channels of ``src`` (weights and running statistics) into ``dst``."""
    c = dst.num_features
    with torch.no_grad():
        dst.weight.copy_(src.weight[:c])
        dst.bias.copy_(src.bias[:c])
        dst.running_mean.copy_(src.running_mean[:c])
        dst.running_var.copy_(src.running_var[:c])
        dst.num_batches_tracked.copy_(src.num_batches_tracked)
    dst.momentum, dst.eps = src.momentum, src.eps
