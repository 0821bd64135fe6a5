"""Accuracy of a subnet, straight from the trained supernet, cached by arch id.

For each arch: BN statistics are recalibrated on a fixed sample of training images, then
top-1 is measured on the first images of the validation split. Results are cached in memory
and, when a cache file is given, on disk (atomically), keyed by arch id together with the
checkpoint and the evaluation sizes, so a resumed or repeated search never evaluates an arch
twice.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from nastools.io import atomic_write_json
from nastools.space import Arch

CACHE_FORMAT = "nastools.accuracy-cache/1"


class SubnetEvaluator:
    """``evaluator(arch) -> top-1 %`` on the validation split after BN recalibration."""

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
    ) -> None:
        self.net, self.splits = supernet, splits
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
        try:
            data = json.loads(self.cache_path.read_text())
            if isinstance(data, dict) and data.get("format") == CACHE_FORMAT and data.get("key") == self.key:
                self.cache = {str(k): float(v) for k, v in dict(data.get("top1") or {}).items()}
        except (OSError, ValueError, TypeError):  # ValueError covers json.JSONDecodeError
            self.cache = {}  # a broken cache is only lost work, never wrong results

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
        recalibrate_bn(self.net, calibration_batches(self.splits.train, min(self.batch_size, 250), self.calib_images, self.seed))
        t1 = time.perf_counter()
        top1 = 100.0 * evaluate_top1(self.net, self.splits.val, batch_size=self.batch_size, max_images=self.eval_images)
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
