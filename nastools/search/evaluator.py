"""Accuracy of a subnet, straight from the trained supernet, cached by arch id.

For each arch: BN statistics are recalibrated on a fixed sample of training images, then
top-1 is measured on the first images of the validation split. Image folders are read at the
arch's resolution as the run's image recipe says (:class:`nastools.data.ImageRecipe`), BN
recalibrated on the recipe's images in its batches, as ``nastools eval`` does
(:func:`~nastools.train.evaluate.evaluate_subnet`); the in-memory datasets are resized to
the arch's resolution (bilinear). Results are cached in memory and, when a cache file is
given, on disk (atomically), keyed by arch id together with the checkpoint, the evaluation
sizes and (image folders) the recipe, so a resumed or repeated search never evaluates an
arch twice.

The search's scorer (``SubnetEvaluator(fast=True)``, the default) does both on the arch
extracted from the supernet as a static subnet of contiguous weights, channels-last: BN
recalibrated there (the same batches and cumulative average as on the supernet, so the same
statistics up to float rounding), then folded into the convolutions, and scored in inference
mode in batches small enough for the CPU's caches. The images, resized and in that memory
format, are prepared once per resolution, and large tensors come from the heap
(:func:`heap_allocations`). The supernet itself is left as it is. ``fast=False`` recalibrates
and scores the supernet (sliced weights), the baseline of ``benchmarks/bench_search.py
--eval-speed``; both read the same images and give the same top-1.
"""

from __future__ import annotations

import functools
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from nastools.errors import NastoolsError
from nastools.io import atomic_write_json
from nastools.space import Arch

CACHE_FORMAT = "nastools.accuracy-cache/1"
#: pixels in a scoring batch on a CPU (128 images of 32x32): its activations stay in the caches
SCORE_PIXELS = 128 * 32 * 32
#: prepared images an evaluator keeps per resolution, at most (bytes); larger samples are streamed
DATA_CACHE_BYTES = 256 << 20
#: images in a recalibration batch of an in-memory dataset, at most (BN statistics depend on
#: it: both paths use it; image folders use their recipe's ``calib_batch``)
CALIB_BATCH = 250
#: recalibration images per arch of an in-memory dataset when none are asked for
CALIB_IMAGES = 1000
#: pixels per chunk over which recalibration sums a channels-last batch's BN statistics
STATS_ROWS = 4096
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
_heap_depth = 0  # heap_allocations() contexts open


@functools.lru_cache(maxsize=None)
def _glibc():
    """The GNU C library (for ``mallopt``), or None on other C libraries and systems."""
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version, libc.mallopt, libc.malloc_trim  # noqa: B018 - glibc's own symbols
    except (OSError, AttributeError):
        return None
    return libc


@contextmanager
def heap_allocations() -> Iterator[None]:
    """Inside, large CPU tensors come from glibc's heap and their memory is reused when freed,
    instead of being mapped afresh for each tensor and unmapped after it (the page faults and
    zeroing cost a forward pass at batch 250 about as much as its arithmetic). After, glibc's
    thresholds are set to where its dynamic threshold settles (32 MiB maps, 64 MiB trim) and
    the freed memory is given back. Does nothing off glibc; nested, only the outermost acts."""
    global _heap_depth
    libc = _glibc()
    if libc is None or _heap_depth:
        yield
        return
    if not libc.mallopt(_M_MMAP_THRESHOLD, 1 << 30):  # glibc before 2.35 caps it at 32 MiB
        libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)
    libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30)
    _heap_depth += 1
    try:
        yield
    finally:
        _heap_depth -= 1
        libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)
        libc.mallopt(_M_TRIM_THRESHOLD, 64 << 20)
        libc.malloc_trim(0)


class _ChunkStatsBatchNorm2d(nn.BatchNorm2d):
    """A BatchNorm2d whose training-mode statistics of a channels-last CPU batch are gathered
    by PyTorch's kernel over chunks of about :data:`STATS_ROWS` pixels and combined in float64.
    Over a whole batch of 250 images its channels-last kernel's float accumulators are off by
    up to about 1e-3 of a channel's variance (the contiguous kernel that recalibrates the
    supernet, and these chunks: about 1e-6), at the same speed. Running statistics are updated
    as ``BatchNorm2d`` updates them (unbiased variance; ``momentum`` or, when None, the
    cumulative average)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and x.device.type == "cpu" and x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)):
            return super().forward(x)
        chunks = x.split(max(1, STATS_ROWS // (x.shape[2] * x.shape[3])))
        stats = [torch.ops.aten.batch_norm_update_stats(c, None, None, 0.0) for c in chunks]
        weight = torch.tensor([len(c) for c in chunks], dtype=torch.float64).div_(len(x)).unsqueeze(1)
        means = torch.stack([m for m, _ in stats]).double()
        mean = (means * weight).sum(0)
        var = ((torch.stack([v for _, v in stats]).double() + (means - mean).square()) * weight).sum(0)
        mean, var = mean.float(), var.float()
        n = x.numel() // x.shape[1]
        self.num_batches_tracked.add_(1)
        f = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        self.running_mean.mul_(1 - f).add_(mean, alpha=f)
        self.running_var.mul_(1 - f).add_(var, alpha=f * n / max(n - 1, 1))
        return F.batch_norm(x, mean, var, self.weight, self.bias, False, 0.0, self.eps)


def recalibrated_subnet(supernet, arch: Arch, batches):
    """The supernet's ``arch`` extracted as a channels-last static subnet, its BN statistics
    recalibrated on ``batches`` in inference mode (:func:`~nastools.train.evaluate.recalibrate_bn`,
    each batch's statistics summed in chunks: the statistics that recalibrating the supernet
    on the same batches gives, up to float rounding). The supernet is not changed."""
    from nastools.train.evaluate import recalibrate_bn

    sub = supernet.extract(arch).to(memory_format=torch.channels_last)
    bns = [m for m in sub.modules() if type(m) is nn.BatchNorm2d]
    for m in bns:
        m.__class__ = _ChunkStatsBatchNorm2d
    try:
        with torch.inference_mode():
            recalibrate_bn(sub, batches)
    finally:
        for m in bns:
            m.__class__ = nn.BatchNorm2d
    return sub


def inference_subnet(supernet, arch: Arch, batches=None):
    """The fastest CPU form of the supernet's ``arch`` for scoring: extracted as a static
    subnet (contiguous weights instead of slices), channels-last, BN recalibrated on
    ``batches`` when given (:func:`recalibrated_subnet`; else the supernet's statistics as
    they are) and folded into the convolutions, in eval mode."""
    from nastools.export.fold import fold_batchnorm

    sub = recalibrated_subnet(supernet, arch, batches) if batches is not None else supernet.extract(arch)
    return fold_batchnorm(sub, inplace=True).to(memory_format=torch.channels_last)


def _prepare(images: torch.Tensor, resolution: int, device: torch.device) -> torch.Tensor:
    """Images as :func:`~nastools.train.evaluate.prepare_input` gives them to a channels-last
    subnet at ``resolution``: on ``device``, resized (bilinear) unless read at that
    resolution already (image folders), channels-last."""
    x = images.to(device, non_blocking=True)
    if x.shape[-1] != resolution or x.shape[-2] != resolution:
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False)
    return x.contiguous(memory_format=torch.channels_last)


@torch.inference_mode()
def _top1(model, batches) -> float:
    """Top-1 (%) of an eval-mode ``model`` on prepared ``(images, labels)`` batches, computed
    as ``100 * evaluate_top1`` computes it."""
    correct = total = 0
    for x, labels in batches:
        correct += int((model(x).argmax(1).cpu() == labels).sum())
        total += len(labels)
    if total == 0:
        raise ValueError("no validation images to score")
    return 100.0 * (correct / total)


class SubnetEvaluator:
    """``evaluator(arch) -> top-1 %`` on the validation split after BN recalibration.

    ``fast`` (default) recalibrates and scores the :func:`inference_subnet` and leaves the
    supernet as it is; ``fast=False`` recalibrates and scores the supernet itself, leaving
    ``arch`` active with its BN statistics recalibrated (the baseline of
    ``benchmarks/bench_search.py --eval-speed``). Both give the same top-1.

    ``recipe`` (image folders; default ``nastools``): the run's image recipe
    (:func:`~nastools.train.evaluate.run_recipe`). ``calib_images`` defaults to the recipe's
    for image folders, to 1000 for the in-memory datasets. ``workers``: data loader processes
    that decode image-folder images (results do not depend on it)."""

    def __init__(
        self,
        supernet,
        splits,
        *,
        calib_images: int | None = None,
        eval_images: int = 2000,
        batch_size: int = 500,
        seed: int = 0,
        cache_path: str | Path | None = None,
        tag: str = "",
        fast: bool = True,
        recipe=None,
        workers: int = 0,
    ) -> None:
        from nastools.data import ImageSet, image_recipe

        self.net, self.splits, self.fast, self.workers, self.tag = supernet, splits, fast, workers, tag
        self.recipe = image_recipe(recipe) if isinstance(splits.train, ImageSet) else None  # None: in memory
        if calib_images is None:
            calib_images = self.recipe.calib_images if self.recipe else CALIB_IMAGES
        self.calib_images, self.eval_images, self.batch_size, self.seed = calib_images, eval_images, batch_size, seed
        self.cache_path = Path(cache_path) if cache_path else None
        self.key = f"{tag}|calib={calib_images}|eval={eval_images}|seed={seed}" + (f"|recipe={self.recipe.name}" if self.recipe else "")
        self.cache: dict[str, float] = {}
        self.calib_s = 0.0
        self.eval_s = 0.0
        self.calls = 0
        self._prepared: dict[tuple, list] = {}
        self._load()

    def sibling(self, eval_images: int, cache_path: str | Path | None = None) -> "SubnetEvaluator":
        """An evaluator of the same supernet, images, BN recalibration and scorer that scores
        the first ``eval_images`` validation images instead (with its own cache)."""
        return SubnetEvaluator(
            self.net,
            self.splits,
            calib_images=self.calib_images,
            eval_images=eval_images,
            batch_size=self.batch_size,
            seed=self.seed,
            cache_path=cache_path,
            tag=self.tag,
            fast=self.fast,
            recipe=self.recipe,
            workers=self.workers,
        )

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
        t0 = time.perf_counter()
        top1, t1 = self._fast(arch) if self.fast else self._plain(arch)
        t2 = time.perf_counter()
        self.calib_s += t1 - t0
        self.eval_s += t2 - t1
        self.calls += 1
        self.cache[arch.id] = top1
        self._save()
        return top1

    def _plain(self, arch: Arch) -> tuple[float, float]:
        """Top-1 of the supernet with ``arch`` active, and when its recalibration ended."""
        from nastools.train.evaluate import calibration_batches, evaluate_top1, recalibrate_bn

        calib, calib_batch, val = self._sets(arch.resolution)
        self.net.set_active(arch)
        with torch.inference_mode():
            recalibrate_bn(self.net, calibration_batches(calib, calib_batch, self.calib_images, self.seed, workers=self.workers))
        t = time.perf_counter()
        return 100.0 * evaluate_top1(self.net, val, batch_size=self.batch_size, max_images=self.eval_images, workers=self.workers), t

    def _sets(self, resolution: int):
        """The recalibration images, their batch size and the validation images of an arch at
        ``resolution``: an image folder's read at that resolution as the recipe says
        (:func:`~nastools.data.splits_at`, :func:`~nastools.train.evaluate.calibration_set`);
        an in-memory dataset's as they are, in batches of at most :data:`CALIB_BATCH`."""
        if self.recipe is None:
            return self.splits.train, min(self.batch_size, CALIB_BATCH), self.splits.val
        from nastools.data import splits_at
        from nastools.train.evaluate import calibration_set

        splits = splits_at(self.splits, resolution, self.recipe)
        calib, calib_batch = calibration_set(splits, self.recipe, resolution, self.seed)
        return calib, calib_batch, splits.val

    def _fast(self, arch: Arch) -> tuple[float, float]:
        """Top-1 of the :func:`inference_subnet` recalibrated on the same batches as
        :meth:`_plain`, and when its recalibration ended."""
        from nastools.export.fold import fold_batchnorm

        with heap_allocations():
            sub = recalibrated_subnet(self.net, arch, self._data("calib", arch.resolution))
            t = time.perf_counter()
            model = fold_batchnorm(sub, inplace=True).to(memory_format=torch.channels_last)
            return _top1(model, self._data("val", arch.resolution)), t

    def _data(self, kind: str, resolution: int):
        """``(images, labels)`` batches prepared for a channels-last subnet at ``resolution``
        on the supernet's device: ``calib``, the recalibration sample in the supernet path's
        batches; ``val``, the first ``eval_images`` validation images in scoring batches (on
        a CPU, :data:`SCORE_PIXELS` pixels at most). Kept for the next arch at this
        resolution when they take at most :data:`DATA_CACHE_BYTES`."""
        from nastools.data import iter_batches
        from nastools.train.evaluate import calibration_batches, model_device

        device = model_device(self.net)
        key = (kind, resolution, str(device))
        if key in self._prepared:
            return self._prepared[key]
        calib, calib_batch, val = self._sets(resolution)
        if kind == "calib":
            dataset, n = calib, self.calib_images
            source = calibration_batches(dataset, calib_batch, n, self.seed, workers=self.workers)
        else:
            dataset, n = val, self.eval_images
            batch = self.batch_size if device.type != "cpu" else max(1, min(self.batch_size, SCORE_PIXELS // resolution**2))
            source = iter_batches(dataset, batch, max_images=n, workers=self.workers)
        batches = ((_prepare(x, resolution, device), y) for x, y in source)
        if min(n, len(dataset)) * self.net.space.input_channels * resolution**2 * 4 > DATA_CACHE_BYTES:
            return batches
        self._prepared[key] = list(batches)
        return self._prepared[key]

    def timing(self) -> dict[str, float]:
        """Mean seconds per evaluated arch, split into BN recalibration and evaluation."""
        n = max(self.calls, 1)
        return {"archs": self.calls, "recalibration_s": self.calib_s / n, "evaluation_s": self.eval_s / n}
