"""The arithmetic of training steps: fp32 (the default), or bf16 mixed precision.

``bf16`` runs the forward passes of a training step under ``torch.autocast`` with bfloat16:
convolutions, linear layers, BatchNorm and activations take bf16 tensors; the weights, the
optimizer, the losses, evaluation and BN recalibration stay fp32. On CPUs the depthwise
convolutions are the exception (:class:`~nastools.supernet.dynamic.DynamicConv2d` runs them
in fp32): oneDNN's bf16 weight gradient of a 5x5 depthwise convolution is several times
slower than its fp32 one, even on CPUs with AMX, and it is the largest single cost of a step.

What it is worth, measured (docs/results/training.md, mixed precision): on a CPU with AMX
the bf16 step is about 1.1x as fast as fp32's, and a 2-epoch bf16 supernet scored lower on
the test set than its fp32 twin. So fp32 is the default and bf16 is asked for by name.
"""

from __future__ import annotations

import contextlib

import torch

PRECISIONS = ("fp32", "bf16")


def autocast(precision: str, device: torch.device):
    """The context a training step's forward passes run in: bf16 autocast, or nothing."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
