"""Accuracy of a subnet, straight from the trained supernet, cached by arch id.

For each arch: BN statistics are recalibrated on a fixed sample of training images, then
top-1 is measured on the first images of the validation split. Results are cached in memory
and, when a cache file is given, on disk (atomically), keyed by arch id together with the
checkpoint and the evaluation sizes, so a resumed or repeated search never evaluates an arch
twice.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from nastools.errors import NastoolsError
from nastools.io import atomic_write_json
from nastools.space import Arch

CACHE_FORMAT = "nastools.accuracy-cache/1"


def inference_subnet(supernet, arch: Arch):
    """The fastest CPU form of the supernet's ``arch`` for scoring: extracted as a static
    subnet (contiguous weights instead of slices), BatchNorm folded into the convolutions,
    channels-last. Recalibrate the supernet's BN for ``arch`` first: extraction copies the
    statistics."""
    from nastools.export.fold import fold_batchnorm

    return fold_batchnorm(supernet.extract(arch)).to(memory_format=torch.channels_last)


class SubnetEvaluator:
    """``evaluator(arch) -> top-1 %`` on the validation split after BN recalibration.

    ``fast`` (default) scores the :func:`inference_subnet` in inference mode; ``fast=False``
    scores the supernet itself (kept for comparison in ``benchmarks/bench_search.py``)."""

    def __init__(
        self,
        supernet,
        splits,
        *,
        calib_images: int = 1000,
        eval_images: int = 2000,
        batch_size: int = 500,
        seed: int = 0,
        cache_path: str | Path | None = None,
        tag: str = "",
        fast: bool = True,
    ) -> None:
        self.net, self.splits, self.fast = supernet, splits, fast
        self.calib_images, self.eval_images, self.batch_size, self.seed = calib_images, eval_images, batch_size, seed
        self.cache_path = Path(cache_path) if cache_path else None
        self.key = f"{tag}|calib={calib_images}|eval={eval_images}|seed={seed}"
        self.cache: dict[str, float] = {}
        self.calib_s = 0.0
        self.eval_s = 0.0
        self.calls = 0
        self._load()

    def _load(self) -> None:
        if not self.cache_path or not self.cache_path.is_file():
            return
        from nastools.io import read_json

        try:
            data = read_json(self.cache_path, "accuracy cache")
        except NastoolsError:
            return  # a broken cache is only lost work, never wrong results
        top1 = data.get("top1") if isinstance(data, dict) and data.get("format") == CACHE_FORMAT and data.get("key") == self.key else None
        if isinstance(top1, dict):  # only accuracies that can be ones: a finite percentage
            self.cache = {
                str(k): float(v) for k, v in top1.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 100
            }

    def _save(self) -> None:
        if self.cache_path:
            atomic_write_json(self.cache_path, {"format": CACHE_FORMAT, "key": self.key, "top1": self.cache}, indent=None)

    def __call__(self, arch: Arch) -> float:
        hit = self.cache.get(arch.id)
        if hit is not None:
            return hit
        from nastools.train.evaluate import calibration_batches, evaluate_top1, recalibrate_bn

        self.net.set_active(arch)
        t0 = time.perf_counter()
        with torch.inference_mode():
            recalibrate_bn(self.net, calibration_batches(self.splits.train, min(self.batch_size, 250), self.calib_images, self.seed))
        t1 = time.perf_counter()
        model = inference_subnet(self.net, arch) if self.fast else self.net
        top1 = 100.0 * evaluate_top1(model, self.splits.val, batch_size=self.batch_size, max_images=self.eval_images)
        t2 = time.perf_counter()
        self.calib_s += t1 - t0
        self.eval_s += t2 - t1
        self.calls += 1
        self.cache[arch.id] = top1
        self._save()
        return top1

    def timing(self) -> dict[str, float]:
        """Mean seconds per evaluated arch, split into BN recalibration and evaluation."""
        n = max(self.calls, 1)
        return {"archs": self.calls, "recalibration_s": self.calib_s / n, "evaluation_s": self.eval_s / n}
