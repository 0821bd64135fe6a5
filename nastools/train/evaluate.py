"""BatchNorm recalibration and top-1 evaluation of a subnet.

A weight-sharing supernet's BatchNorm running statistics belong to no subnet in particular
(every subnet trains on batch statistics), so before a subnet is evaluated its statistics
are recomputed on training images: reset, then a cumulative average (``momentum=None``)
over some batches, in training mode for BN only (dropout and drop-connect stay off).

Both functions take either a :class:`~nastools.supernet.Supernet` with an arch active or an
extracted :class:`~nastools.supernet.StaticSubnet`; images are resized to the subnet's
resolution as the supernet does (bilinear).
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

from nastools.data import NO_TEST_SPLIT, NO_TEST_SPLIT_IMPORTED, check_fits, image_recipe, iter_batches

#: images used for BN recalibration unless told otherwise (AttentiveNAS uses a few thousand)
RECALIBRATION_IMAGES = 2000


def model_resolution(model: nn.Module) -> int | None:
    """The input resolution of a StaticSubnet or of a Supernet's active arch (None if unknown)."""
    arch = getattr(model, "active_arch", None) or getattr(model, "arch", None)
    return getattr(arch, "resolution", None)


def model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def prepare_input(model: nn.Module, images: torch.Tensor, device: torch.device | None = None) -> torch.Tensor:
    """Move ``images`` to the model's device and resize them to its resolution."""
    device = device or model_device(model)
    x = images.to(device, non_blocking=True)
    res = model_resolution(model)
    if res is not None and (x.shape[-1] != res or x.shape[-2] != res):
        x = F.interpolate(x, size=(res, res), mode="bilinear", align_corners=False)
    w = next((p for p in model.parameters() if p.ndim == 4), None)
    if w is not None and w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous():
        x = x.contiguous(memory_format=torch.channels_last)  # a channels-last model
    return x


def _bn_modules(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Iterable, *, max_batches: int | None = None) -> int:
    """Recompute the BatchNorm running statistics of ``model`` on ``batches``.

    ``batches`` yields image tensors or ``(images, labels)`` pairs (labels are ignored),
    e.g. ``calibration_batches(splits.train)``. Statistics are reset and then averaged over
    all batches (``momentum=None``); the model's mode and the BN momenta are restored after.
    For a Supernet only the channels its active arch uses are updated. Returns the number
    of images seen.
    """
    bns = _bn_modules(model)
    was_training = {m: m.training for m in model.modules()}
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.eval()
    for m in bns:
        m.train()
    device = model_device(model)
    seen = 0
    try:
        for i, batch in enumerate(batches):
            if max_batches is not None and i >= max_batches:
                break
            images = batch[0] if isinstance(batch, (tuple, list)) else batch
            model(prepare_input(model, images, device))
            seen += len(images)
    finally:
        for m, mom in zip(bns, momenta):
            m.momentum = mom
        for m, t in was_training.items():
            m.training = t
    if seen == 0 and bns:
        raise ValueError("recalibrate_bn got no batches")
    return seen


def calibration_batches(dataset, batch_size: int = 200, num_images: int = RECALIBRATION_IMAGES, seed: int = 0, *, workers: int = 0):
    """A fixed, seeded random sample of ``num_images`` training images in batches
    (``workers``: data loader processes, for image folders)."""
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(dataset), generator=g)[: min(num_images, len(dataset))]
    return iter_batches(dataset, batch_size, order=order, workers=workers)


@torch.inference_mode()
def evaluate_top1(
    model: nn.Module,
    dataset,
    batch_size: int = 500,
    max_images: int | None = None,
    *,
    workers: int = 0,
    progress: Callable[[int], None] | None = None,
) -> float:
    """Top-1 accuracy (a fraction in [0, 1]) of ``model`` on ``dataset``, in eval mode.

    Reads the first ``max_images`` images (all by default) in order. Recalibrate BN first
    (:func:`recalibrate_bn`) when the model comes from a supernet. The model's mode is restored.
    ``progress(n)`` is called after each batch with its number of images.
    """
    was_training = model.training
    model.eval()
    device = model_device(model)
    correct = total = 0
    try:
        for images, labels in iter_batches(dataset, batch_size, max_images=max_images, workers=workers):
            logits = model(prepare_input(model, images, device))
            correct += int((logits.argmax(1).cpu() == labels).sum())
            total += len(labels)
            if progress is not None:
                progress(len(labels))
    finally:
        model.train(was_training)
    if total == 0:
        raise ValueError("evaluate_top1 got an empty dataset")
    return correct / total


def recalibrate_and_evaluate(
    model: nn.Module,
    train_set,
    eval_set,
    *,
    calib_images: int = RECALIBRATION_IMAGES,
    batch_size: int = 500,
    max_images: int | None = None,
    seed: int = 0,
) -> float:
    """:func:`recalibrate_bn` on ``calib_images`` training images, then :func:`evaluate_top1`."""
    recalibrate_bn(model, calibration_batches(train_set, min(batch_size, 250), calib_images, seed))
    return evaluate_top1(model, eval_set, batch_size=batch_size, max_images=max_images)


def evaluate_subnet(
    arch,
    run="default",
    *,
    dataset: str | None = None,
    data=None,
    split: str = "test",
    calib_images: int | None = None,
    max_images: int | None = None,
    device: str = "cpu",
    splits=None,
    workers: int = 0,
    progress: bool = False,
) -> dict:
    """Top-1 of one subnet of a run's supernet: BN recalibration on training images, then
    ``split`` (the test set by default). ``arch``: an Arch, a dict, an Arch JSON path or the
    name of a shipped arch (``a0``). Image folders are read at the arch's resolution as the
    run's image recipe says (:class:`nastools.data.ImageRecipe`: imported AttentiveNAS/AlphaNet
    runs preprocess and recalibrate as the reference evaluation does); ``calib_images``
    defaults to the recipe's (2000; 16384 for the reference recipes). ``workers``: data
    loader processes that decode image-folder images. ``progress``: a bar on stderr, in images
    recalibrated and evaluated.
    Returns the arch's JSON fields with ``id``, ``flops``, ``top1`` and what was measured."""
    from tqdm import tqdm

    from nastools.checkpoint import checkpoint_space, load_checkpoint, run_splits
    from nastools.machine import check_torch_device
    from nastools.space import Arch, load_arch
    from nastools.supernet import Supernet

    check_torch_device(device)
    ckpt = load_checkpoint(run, map_location="cpu")
    space = checkpoint_space(ckpt)
    if isinstance(arch, Arch):
        arch = space.validate(arch)
    else:
        arch = load_arch(arch, space)  # an arch of another space is a one-line error
    net = Supernet(space)
    net.load_state_dict(ckpt["model"])
    net = net.to(device)
    net.set_active(arch)
    splits = splits if splits is not None else run_splits(ckpt, dataset, data, image_size=arch.resolution)  # the run's val slice
    check_fits(splits, space)  # splits given by the caller (run_splits checks its own)
    target = splits.test if split == "test" else splits.val
    recipe = run_recipe(ckpt, splits)
    calib_images = recipe.calib_images if calib_images is None else calib_images
    calib_set, calib_batch = calibration_set(splits, recipe, arch.resolution)
    n, n_calib = len(target) if max_images is None else min(max_images, len(target)), min(calib_images, len(calib_set))
    bar = tqdm(total=n_calib + n, desc="BN recalibration", unit="img", disable=not progress, leave=False)
    try:
        recalibrate_bn(net, _counted(calibration_batches(calib_set, calib_batch, calib_images, workers=workers), bar.update))
        bar.set_description_str(f"top-1 on {split}")
        top1 = evaluate_top1(net, target, max_images=max_images, workers=workers, progress=bar.update)
    finally:  # an error or Ctrl-C prints on its own line, not after the bar
        bar.close()
    meta = {"run": str(run), "dataset": splits.name, "split": split, "images": n, "calib_images": n_calib}
    if split == "test" and splits.test_split != "test":
        meta.update(split=splits.test_split, note=NO_TEST_SPLIT_IMPORTED if ckpt.get("imported") else NO_TEST_SPLIT)
    if splits.name == "imagefolder":
        meta["image_recipe"] = recipe.name
    return {**arch.to_dict(), "id": arch.id, "flops": space.flops(arch), "params": space.params(arch), "top1": top1, "meta": meta}


def _counted(batches: Iterable, progress: Callable[[int], None]):
    """``batches`` of ``(images, labels)``, calling ``progress(n)`` once each batch of n
    images has been used."""
    for batch in batches:
        yield batch
        progress(len(batch[0]))


def run_recipe(ckpt: dict, splits):
    """The :class:`~nastools.data.ImageRecipe` that evaluates the run whose loaded
    checkpoint is ``ckpt`` on ``splits``: its training config's ``image_recipe`` for image
    folders, ``nastools`` for the in-memory datasets."""
    from nastools.checkpoint import run_config

    return image_recipe(run_config(ckpt).get("image_recipe") if splits.name == "imagefolder" else None)


def calibration_set(splits, recipe, resolution: int, seed: int = 0):
    """The training images that recalibrate BN under image recipe ``recipe``, and the batch
    size: the training split as it is, or (``calib_augment``, image folders) read through
    the recipe's training-time transform, each image's randomness seeded."""
    from nastools.data import ImageSet, calibration_transform

    if recipe.calib_augment and isinstance(splits.train, ImageSet):
        return splits.train.augmented(calibration_transform(resolution, recipe, splits.channels), seed, 0), recipe.calib_batch
    return splits.train, recipe.calib_batch


__all__ = [
    "calibration_set",
    "run_recipe",
    "evaluate_subnet",
    "RECALIBRATION_IMAGES",
    "calibration_batches",
    "evaluate_top1",
    "prepare_input",
    "recalibrate_and_evaluate",
    "recalibrate_bn",
]
