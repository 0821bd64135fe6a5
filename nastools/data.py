"""Datasets, splits and loaders. Nothing here downloads.

- ``fashion-mnist`` (default): ``torchvision.datasets.FashionMNIST`` over the IDX files of
  Debian's ``dataset-fashion-mnist`` package (``/usr/share/datasets/fashion-mnist``) or
  ``--data DIR``; the ``.gz`` files are unpacked once into a cache folder.
- ``cifar10``: ``torchvision.datasets.CIFAR10`` from local ``cifar-10-batches-py`` files.
- ``imagefolder``: ImageNet-style ``DIR/train/<class>/*.jpg`` (and ``DIR/val`` for the test
  set when present), resized to ``image_size``.

The training set is split into ``train`` and a held-out ``val`` slice (for BN recalibration
and search); ``test`` is only for final reports. Small datasets are held in memory as
uint8 tensors and normalised batch-wise, which is much faster than per-image PIL transforms.
"""

from __future__ import annotations

import gzip
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nastools.errors import NastoolsError

DATASETS = ("fashion-mnist", "cifar10", "imagefolder")
FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FMNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
# per-channel statistics of the training sets
STATS = {"fashion-mnist": ((0.2860,), (0.3530,)), "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))}


def cache_dir() -> Path:
    """Where nastools caches decoded datasets: ``$NASTOOLS_CACHE`` or ``~/.cache/nastools``."""
    return Path(os.environ.get("NASTOOLS_CACHE", Path.home() / ".cache" / "nastools"))


class TensorImages:
    """An in-memory image dataset: uint8 ``images`` (N, C, H, W) and int64 ``labels``.

    Indexing returns normalised float images, so it also works with a plain DataLoader.
    """

    def __init__(self, images, labels, mean, std) -> None:
        import torch

        self.images = images
        self.labels = labels
        self.mean = torch.tensor(mean).view(1, -1, 1, 1)
        self.std = torch.tensor(std).view(1, -1, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def normalise(self, images_u8):
        """uint8 images to normalised float tensors (the dataset's mean and std)."""
        return (images_u8.float().div_(255.0) - self.mean) / self.std

    def __getitem__(self, i):
        return self.normalise(self.images[i : i + 1])[0], self.labels[i]

    def subset(self, index) -> "TensorImages":
        """The images and labels at ``index``, as a new dataset sharing the normalisation."""
        out = TensorImages.__new__(TensorImages)
        out.images, out.labels, out.mean, out.std = self.images[index], self.labels[index], self.mean, self.std
        return out


@dataclass
class DataSplits:
    """train / val (held out of the training set) / test, with what a model needs to know."""

    name: str
    train: Any
    val: Any
    test: Any
    num_classes: int
    channels: int
    image_size: int
    seed: int = 0  # of the train/val split


def _fmnist_root(data: str | Path | None) -> Path:
    """A folder torchvision's FashionMNIST can read (``<root>/FashionMNIST/raw``)."""
    src = Path(data) if data else FMNIST_DIR
    for base in (src, src / "FashionMNIST" / "raw", src / "raw"):
        if all((base / f).is_file() for f in FMNIST_FILES):
            return base.parent.parent if base.name == "raw" and base.parent.name == "FashionMNIST" else _link_raw(base)
        if all((base / f"{f}.gz").is_file() for f in FMNIST_FILES):
            return _unpack(base)
    hint = "install it with: sudo apt-get install dataset-fashion-mnist" if not data else "pass the folder holding train-images-idx3-ubyte(.gz)"
    raise NastoolsError(f"Fashion-MNIST not found in {str(src)!r}: {hint} (or pass --data DIR)")


def _unpack(src: Path) -> Path:
    root = cache_dir() / "fashion-mnist" / src.resolve().as_posix().strip("/").replace("/", "_")
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for f in FMNIST_FILES:
        out = raw / f
        if not out.is_file():
            tmp = raw / f".{f}.tmp{os.getpid()}"
            with gzip.open(src / f"{f}.gz", "rb") as fi, open(tmp, "wb") as fo:
                shutil.copyfileobj(fi, fo)
            os.replace(tmp, out)
    return root


def _link_raw(base: Path) -> Path:
    root = cache_dir() / "fashion-mnist" / ("plain_" + base.resolve().as_posix().strip("/").replace("/", "_"))
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for f in FMNIST_FILES:
        if not (raw / f).exists():
            os.symlink((base / f).resolve(), raw / f)
    return root


def _fashion_mnist(data):
    from torchvision.datasets import FashionMNIST

    root = _fmnist_root(data)
    mean, std = STATS["fashion-mnist"]
    out = []
    for train in (True, False):
        ds = FashionMNIST(str(root), train=train, download=False)
        out.append(TensorImages(ds.data.unsqueeze(1).contiguous(), ds.targets.long(), mean, std))
    return out[0], out[1], 10, 1, 28


def _cifar10(data):
    import torch
    from torchvision.datasets import CIFAR10

    if not data:
        raise NastoolsError("--dataset cifar10 needs --data DIR, the folder holding cifar-10-batches-py")
    root = Path(data)
    if not (root / "cifar-10-batches-py").is_dir():
        raise NastoolsError(f"CIFAR-10 not found in {str(root)!r}: expected {str(root / 'cifar-10-batches-py')!r} (nastools never downloads)")
    mean, std = STATS["cifar10"]
    out = []
    for train in (True, False):
        ds = CIFAR10(str(root), train=train, download=False)
        images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
        out.append(TensorImages(images, torch.tensor(ds.targets, dtype=torch.long), mean, std))
    return out[0], out[1], 10, 3, 32


def _imagefolder(data, image_size: int):
    from torchvision import transforms
    from torchvision.datasets import ImageFolder

    if not data:
        raise NastoolsError("--dataset imagefolder needs --data DIR (DIR/train/<class>/*.jpg, optional DIR/val)")
    root = Path(data)
    train_dir = root / "train" if (root / "train").is_dir() else root
    if not train_dir.is_dir():
        raise NastoolsError(f"image folder {str(root)!r} not found")
    tf = transforms.Compose(
        [
            transforms.Resize(int(image_size * 1.14)),
            transforms.CenterCrop(image_size),
            transforms.ToTensor(),
            transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ]
    )
    try:
        train = ImageFolder(str(train_dir), transform=tf)
        test_dir = next((root / d for d in ("val", "test") if (root / d).is_dir()), None)
        test = ImageFolder(str(test_dir), transform=tf) if test_dir else None
    except (FileNotFoundError, RuntimeError) as exc:
        raise NastoolsError(f"cannot read image folder {str(root)!r}: {exc}") from None
    return train, test, len(train.classes), 3, image_size


def load_splits(
    name: str = "fashion-mnist",
    data: str | Path | None = None,
    *,
    val_size: int | float = 5000,
    seed: int = 0,
    image_size: int = 224,
) -> DataSplits:
    """Load a dataset and split a validation slice off its training set.

    ``val_size``: number of training images held out (or a fraction when < 1).
    ``image_size`` only applies to ``imagefolder``.
    """
    import torch
    from torch.utils.data import Subset

    if name not in DATASETS:
        raise NastoolsError(f"unknown dataset {name!r}: expected one of {', '.join(DATASETS)}")
    if name == "fashion-mnist":
        train_all, test, classes, chs, size = _fashion_mnist(data)
    elif name == "cifar10":
        train_all, test, classes, chs, size = _cifar10(data)
    else:
        train_all, test, classes, chs, size = _imagefolder(data, image_size)
    n = len(train_all)
    n_val = int(round(val_size * n)) if isinstance(val_size, float) and val_size < 1 else int(val_size)
    if not 0 < n_val < n:
        raise NastoolsError(f"validation size {val_size!r}: expected between 1 and {n - 1} images of the {n} in the training set")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    val_idx, train_idx = perm[:n_val].sort().values, perm[n_val:].sort().values
    if isinstance(train_all, TensorImages):
        train, val = train_all.subset(train_idx), train_all.subset(val_idx)
    else:
        train, val = Subset(train_all, train_idx.tolist()), Subset(train_all, val_idx.tolist())
    if test is None:
        test = val
    return DataSplits(name, train, val, test, classes, chs, size, seed)


def iter_batches(
    dataset,
    batch_size: int,
    *,
    order=None,
    max_images: int | None = None,
    workers: int = 0,
    drop_last: bool = False,
):
    """Yield ``(images, labels)`` batches of ``dataset`` as normalised float tensors.

    ``order``: a 1-D index tensor (e.g. a seeded permutation) to read the images in; default
    the dataset's own order. ``max_images`` stops after that many images. An in-memory
    :class:`TensorImages` is sliced directly (no per-image work); any other dataset goes
    through a ``DataLoader`` with ``workers`` processes.
    """
    import torch

    n = len(dataset)
    idx = torch.arange(n) if order is None else torch.as_tensor(order)
    if max_images is not None:
        idx = idx[: max(0, int(max_images))]
    total = len(idx)
    stop = total - total % batch_size if drop_last else total
    if isinstance(dataset, TensorImages):
        contiguous = order is None
        for start in range(0, stop, batch_size):
            end = min(start + batch_size, stop)
            if contiguous:
                yield dataset.normalise(dataset.images[start:end]), dataset.labels[start:end]
            else:
                sel = idx[start:end]
                yield dataset.normalise(dataset.images[sel]), dataset.labels[sel]
        return
    from torch.utils.data import DataLoader, Subset

    loader = DataLoader(Subset(dataset, idx[:stop].tolist()), batch_size=batch_size, shuffle=False, num_workers=workers)
    for images, labels in loader:
        yield images, torch.as_tensor(labels)
