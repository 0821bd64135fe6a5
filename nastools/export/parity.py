"""Parity of an exported model with its PyTorch source, and top-1 through a runtime.

The reference is the PyTorch subnet itself (BN not folded) in eval mode; the exported model
runs through a :class:`nastools.runtime.Runner` (ONNX Runtime, TensorRT, TorchScript)
on the same real, preprocessed images.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from nastools.runtime import Runner

#: default pass criteria per precision: (max abs logit diff, min top-1 agreement)
TOLERANCES = {"fp32": (1e-3, 0.999), "fp16": (5e-2, 0.99), "int8": (float("inf"), 0.9)}


def run_batched(runner: Runner, x: np.ndarray, batch: int = 256) -> np.ndarray:
    """Outputs of ``runner`` on all of ``x``, in chunks; pads the last chunk for a static batch."""
    static = runner.static_batch()
    size = static or batch
    outs = []
    for start in range(0, len(x), size):
        chunk = x[start : start + size]
        n = len(chunk)
        if static and n < static:
            chunk = np.concatenate([chunk, np.zeros((static - n, *chunk.shape[1:]), chunk.dtype)])
        outs.append(runner.infer(np.ascontiguousarray(chunk))[:n])
    return np.concatenate(outs)


def parity(reference: np.ndarray, logits: np.ndarray, precision: str = "fp32") -> dict[str, Any]:
    """Max/mean absolute logit difference and top-1 agreement of ``logits`` with ``reference``."""
    diff = np.abs(reference.astype(np.float64) - logits.astype(np.float64))
    agree = float((reference.argmax(1) == logits.argmax(1)).mean())
    max_diff, min_agree = TOLERANCES[precision]
    return {
        "images": int(len(reference)),
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "top1_agreement": agree,
        "tolerance": {"max_abs_diff": None if max_diff == float("inf") else max_diff, "top1_agreement": min_agree},
        "passed": bool(diff.max() <= max_diff and agree >= min_agree),
    }


def describe_parity(p: dict[str, Any]) -> str:
    """One line for a :func:`parity` result: the figures, passed or FAILED, and the tolerance."""
    tol = p.get("tolerance") or {}
    limits = ([f"max |diff| <= {tol['max_abs_diff']:g}"] if tol.get("max_abs_diff") is not None else []) + (
        [f"agreement >= {100 * tol['top1_agreement']:g}%"] if tol.get("top1_agreement") is not None else []
    )
    verdict = "passed" if p.get("passed") else "FAILED"
    return (
        f"max |diff| {p['max_abs_diff']:.3g}, top-1 agreement {100 * p['top1_agreement']:.2f}% "
        f"({verdict}; tolerance {', '.join(limits) or 'none'})"
    )


def top1(runner: Runner, batches: Iterable[tuple[np.ndarray, np.ndarray]], batch: int = 500) -> tuple[float, int]:
    """Top-1 accuracy of ``runner`` over ``(inputs, labels)`` batches; returns (accuracy, images)."""
    correct = total = 0
    for x, labels in batches:
        pred = run_batched(runner, x, batch).argmax(1)
        correct += int((pred == np.asarray(labels)).sum())
        total += len(labels)
    if total == 0:
        raise ValueError("top1 got no images")
    return correct / total, total
