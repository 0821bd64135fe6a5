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


def precision_note(precision: str, device: torch.device) -> str | None:
    """A one-line note for a bf16 run on an x86 CPU without AMX-BF16, where bf16 is likely
    slower than fp32: measured 1.1x as fast as fp32 on an Intel Xeon with AMX and 4.3x as slow
    on an AMD EPYC Zen 3 without any bf16 instructions (docs/results/training.md). None for
    fp32, a GPU, a CPU with AMX-BF16, or one whose extensions are not known (not x86 Linux)."""
    from nastools.machine import cpu_flags

    flags = cpu_flags()
    if precision != "bf16" or device.type != "cpu" or "sse4_2" not in flags or "amx_bf16" in flags:
        return None
    what = "AVX-512 BF16 but no AMX" if "avx512_bf16" in flags else "no bf16 instructions (no AVX-512 BF16, no AMX)"
    return (
        f"note: this CPU has {what}: bf16 training steps ran 4.3x slower than fp32 on a CPU without bf16 "
        "instructions and 1.1x faster only with AMX (docs/results/training.md); --precision fp32 is likely faster here"
    )
