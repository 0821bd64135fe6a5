"""Datasets, splits and loaders. Nothing here downloads.

- ``fashion-mnist`` (default): ``torchvision.datasets.FashionMNIST`` over the IDX files of
  Debian's ``dataset-fashion-mnist`` package (``/usr/share/datasets/fashion-mnist``) or
  ``--data DIR``; the ``.gz`` files are unpacked once into a cache folder.
- ``cifar10``: ``torchvision.datasets.CIFAR10`` from local ``cifar-10-batches-py`` files.
- ``imagefolder``: ImageNet-style ``DIR/train/<class>/*.jpg`` (and ``DIR/val`` for the test
  set when present), read as RGB, or as grayscale for a 1-channel space (``channels``),
  resized and centre-cropped to ``image_size`` as an :class:`ImageRecipe` says (nastools'
  own, or the AttentiveNAS/AlphaNet evaluation of imported runs).

The training set is split into ``train`` and a held-out ``val`` slice (for BN recalibration
and search); ``test`` is only for final reports. Small datasets are held in memory as
uint8 tensors and normalised batch-wise, which is much faster than per-image PIL transforms.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NoReturn

from nastools.errors import NastoolsError, brief
from nastools.io import atomic_write, atomic_write_text

DATASETS = ("fashion-mnist", "cifar10", "imagefolder")
FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FMNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
FMNIST_SHAPES = {"images": (28, 28), "labels": ()}  # of one item, after the count
CIFAR_ARCHIVE = "cifar-10-python.tar.gz"
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
    classes: tuple[str, ...] = ()  # class names in label order (image folders: the class folders, sorted)
    test_split: str = "test"  # "val" where the dataset has no test split and ``test`` is ``val``


def _fmnist_root(data: str | Path | None) -> Path:
    """A folder torchvision's FashionMNIST can read (``<root>/FashionMNIST/raw``), its files checked."""
    src = Path(data) if data else FMNIST_DIR
    for base in (src, src / "FashionMNIST" / "raw", src / "raw"):
        plain = [f for f in FMNIST_FILES if (base / f).is_file()]
        packed = [f for f in FMNIST_FILES if (base / f"{f}.gz").is_file()]
        if len(plain) == len(FMNIST_FILES):
            root = base.parent.parent if base.name == "raw" and base.parent.name == "FashionMNIST" else _link_raw(base)
            shown = {f: base / f for f in FMNIST_FILES}
        elif len(packed) == len(FMNIST_FILES):
            root = _unpack(base)
            shown = {f: base / f"{f}.gz" for f in FMNIST_FILES}
        elif plain or packed:
            _incomplete_fmnist(base, plain, packed)
        else:
            continue
        _check_fmnist(root / "FashionMNIST" / "raw", shown)
        return root
    hint = (
        "install it with: sudo apt-get install dataset-fashion-mnist (or pass --data DIR)"
        if not data
        else "pass the folder holding train-images-idx3-ubyte(.gz)"
    )
    where = f"{str(src)!r}" if src.is_dir() else f"{str(src)!r} (no such folder)"
    raise NastoolsError(f"Fashion-MNIST not found in {where}: {hint}")


def _incomplete_fmnist(base: Path, plain: list[str], packed: list[str]) -> NoReturn:
    """Raise for a folder holding some of the Fashion-MNIST files: name the missing ones."""
    missing = [f for f in FMNIST_FILES if f not in plain and f not in packed]
    if missing:
        names = ", ".join(f"{f}(.gz)" for f in missing)
        raise NastoolsError(
            f"Fashion-MNIST in {str(base)!r} is incomplete: {names} missing (it needs all four of {', '.join(FMNIST_FILES)}, each optionally .gz)"
        )
    only = [f for f in FMNIST_FILES if f not in plain]
    raise NastoolsError(
        f"Fashion-MNIST in {str(base)!r} mixes unpacked and .gz files ({', '.join(only)} only as .gz): "
        "unpack those or gzip the others, so that all four are alike"
    )


def _cache_key(src: Path) -> str:
    return src.resolve().as_posix().strip("/").replace("/", "_")


def _unpack(src: Path) -> Path:
    """Unpack the ``.gz`` files of ``src`` into the cache, again whenever a source changed.

    Beside each unpacked file a stamp ``.<name>.source`` records the size and mtime of the
    ``.gz`` it came from; a file whose stamp differs (or is missing) is unpacked anew.
    """
    root = cache_dir() / "fashion-mnist" / _cache_key(src)
    raw = root / "FashionMNIST" / "raw"
    try:
        raw.mkdir(parents=True, exist_ok=True)
        for f in FMNIST_FILES:
            gz, out, stamp = src / f"{f}.gz", raw / f, raw / f".{f}.source"
            st = gz.stat()
            want = f"{st.st_size} {st.st_mtime_ns}\n"
            if out.is_file() and stamp.is_file() and stamp.read_text() == want:
                continue
            stamp.unlink(missing_ok=True)  # no stale stamp beside a half-replaced file
            _gunzip(gz, out)
            atomic_write_text(stamp, want)
    except OSError as exc:
        raise NastoolsError(
            f"cannot unpack Fashion-MNIST from {str(src)!r} into the cache {str(raw)!r}: {brief(exc)} "
            "(set NASTOOLS_CACHE to a writable folder)"
        ) from None
    return root


def _gunzip(src: Path, out: Path) -> None:
    """Decompress ``src`` to ``out`` atomically (:func:`nastools.io.atomic_write`: ``out`` is
    never left torn, nor is a temporary file). A truncated or corrupt ``src`` raises a
    NastoolsError."""
    try:
        packed = open(src, "rb")
    except OSError as exc:
        raise NastoolsError(f"cannot read Fashion-MNIST file {str(src)!r}: {brief(exc)}") from None

    def copy(fo) -> None:
        with packed, gzip.GzipFile(fileobj=packed, mode="rb") as fi:
            while True:
                try:
                    chunk = fi.read(1 << 20)
                except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
                    raise NastoolsError(
                        f"Fashion-MNIST file {str(src)!r} is truncated or corrupt ({brief(exc)}): replace it with the original .gz file"
                    ) from None
                if not chunk:
                    break
                fo.write(chunk)

    atomic_write(out, copy, mode="wb")


def _link_raw(base: Path) -> Path:
    root = cache_dir() / "fashion-mnist" / ("plain_" + _cache_key(base))
    raw = root / "FashionMNIST" / "raw"
    try:
        raw.mkdir(parents=True, exist_ok=True)
        for f in FMNIST_FILES:
            target = (base / f).resolve()
            if os.path.realpath(raw / f) != str(target):  # missing, dangling or pointing elsewhere
                tmp = raw / f".{f}.tmp{os.getpid()}"
                tmp.unlink(missing_ok=True)
                os.symlink(target, tmp)
                os.replace(tmp, raw / f)
    except OSError as exc:
        raise NastoolsError(
            f"cannot link Fashion-MNIST from {str(base)!r} into the cache {str(raw)!r}: {brief(exc)} "
            "(set NASTOOLS_CACHE to a writable folder)"
        ) from None
    return root


def _idx_count(path: Path, shown: Path, kind: str) -> int:
    """The number of items in an (unpacked) IDX file of unsigned bytes, after checking its
    header (magic number, dimensions) against ``kind`` (images / labels) and its length.

    ``shown`` is the file the user gave (perhaps the ``.gz``), for the messages.
    """
    item = FMNIST_SHAPES[kind]
    nd = 1 + len(item)
    fix = "replace it with the original Fashion-MNIST file"
    try:
        with open(path, "rb") as fh:
            head = fh.read(4 + 4 * nd)
        length = os.path.getsize(path)
    except OSError as exc:
        raise NastoolsError(f"cannot read Fashion-MNIST file {str(shown)!r}: {brief(exc)}") from None
    if len(head) < 4 or head[:2] != b"\0\0" or not 8 <= head[2] <= 14 or not 1 <= head[3] <= 3:
        raise NastoolsError(f"Fashion-MNIST file {str(shown)!r} is not an IDX file (no IDX magic number at its start): {fix}")
    if head[2] != 0x08 or head[3] != nd:
        raise NastoolsError(
            f"Fashion-MNIST file {str(shown)!r} is an IDX file of type 0x{head[2]:02x} with {head[3]} dimension(s), "
            f"not of unsigned bytes with {nd} as {kind} need: {fix}"
        )
    if len(head) < 4 + 4 * nd:
        raise NastoolsError(f"Fashion-MNIST file {str(shown)!r} is truncated: it ends inside its IDX header; {fix}")
    dims = tuple(int.from_bytes(head[4 + 4 * i : 8 + 4 * i], "big") for i in range(nd))
    if dims[1:] != item:
        got = "x".join(map(str, dims[1:]))
        raise NastoolsError(f"Fashion-MNIST file {str(shown)!r} holds {kind} of {got}, not of {'x'.join(map(str, item))}: {fix}")
    expected = 4 + 4 * nd + math.prod(dims)
    if length != expected:
        what = "truncated" if length < expected else "longer than its header says"
        raise NastoolsError(
            f"Fashion-MNIST file {str(shown)!r} is {what}: its header says {dims[0]} {kind} "
            f"({expected} bytes unpacked) but it holds {length} bytes; {fix}"
        )
    return dims[0]


def _check_fmnist(raw: Path, shown: dict[str, Path]) -> None:
    """Check the four IDX files in ``raw`` (headers, lengths, images matching labels)."""
    count = {f: _idx_count(raw / f, shown[f], "images" if "images" in f else "labels") for f in FMNIST_FILES}
    for split in ("train", "t10k"):
        images, labels = f"{split}-images-idx3-ubyte", f"{split}-labels-idx1-ubyte"
        if count[images] != count[labels]:
            raise NastoolsError(
                f"Fashion-MNIST files {str(shown[images])!r} and {str(shown[labels])!r} do not match: "
                f"{count[images]} images but {count[labels]} labels"
            )


def _fashion_mnist(data):
    from torchvision.datasets import FashionMNIST

    root = _fmnist_root(data)
    mean, std = STATS["fashion-mnist"]
    out = []
    for train in (True, False):
        try:
            ds = FashionMNIST(str(root), train=train, download=False)
        except (RuntimeError, AssertionError, ValueError, OSError) as exc:  # checked above; a last resort
            raise NastoolsError(f"cannot read Fashion-MNIST from {str(data or FMNIST_DIR)!r}: {brief(exc)}") from None
        labels = ds.targets.long()
        if len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < 10:
            split = "train" if train else "t10k"
            raise NastoolsError(
                f"Fashion-MNIST labels in {str(data or FMNIST_DIR)!r} ({split}-labels-idx1-ubyte) are outside 0..9 "
                f"(found {int(labels.min())}..{int(labels.max())}): replace the file with the original"
            )
        out.append(TensorImages(ds.data.unsqueeze(1).contiguous(), labels, mean, std))
    return out[0], out[1], list(FashionMNIST.classes), 1, 28


def _cifar10(data):
    import torch
    from torchvision.datasets import CIFAR10

    if not data:
        raise NastoolsError("--dataset cifar10 needs --data DIR, the folder holding cifar-10-batches-py")
    root = Path(data)
    folder = root / "cifar-10-batches-py"
    if not folder.is_dir():
        raise NastoolsError(f"CIFAR-10 not found in {str(root)!r}: expected {str(folder)!r} (nastools never downloads)")
    if any(not (folder / name).is_file() for name, _ in _cifar_files()):
        _bad_cifar(root, folder)
    mean, std = STATS["cifar10"]
    out = []
    for train in (True, False):
        try:
            ds = CIFAR10(str(root), train=train, download=False)
        except Exception as exc:  # torchvision: RuntimeError (checksums); unpickling: anything
            _bad_cifar(root, folder, exc)
        images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
        out.append(TensorImages(images, torch.tensor(ds.targets, dtype=torch.long), mean, std))
    return out[0], out[1], list(ds.classes), 3, 32


def _cifar_files() -> list[tuple[str, str]]:
    """``(name, md5)`` of the files torchvision's CIFAR10 reads from ``cifar-10-batches-py``."""
    from torchvision.datasets import CIFAR10

    return [(n, md5) for n, md5 in CIFAR10.train_list + CIFAR10.test_list] + [(CIFAR10.meta["filename"], CIFAR10.meta["md5"])]


def _bad_cifar(root: Path, folder: Path, exc: BaseException | None = None) -> NoReturn:
    """Raise for a CIFAR-10 folder torchvision cannot read: name the missing and corrupt files."""
    from torchvision.datasets.utils import check_integrity

    files = _cifar_files()
    missing = [n for n, _ in files if not (folder / n).is_file()]
    corrupt = [n for n, md5 in files if n not in missing and not check_integrity(str(folder / n), md5)]
    problems = ([f"missing {', '.join(missing)}"] if missing else []) + (
        [f"corrupt (checksum mismatch) {', '.join(corrupt)}"] if corrupt else []
    )
    if not problems:
        raise NastoolsError(f"cannot read CIFAR-10 in {str(folder)!r}: {brief(exc or 'unknown error')}")
    what = " and ".join(w for w, bad in (("incomplete", missing), ("corrupt", corrupt)) if bad)
    raise NastoolsError(
        f"CIFAR-10 in {str(folder)!r} is {what}: {'; '.join(problems)}; "
        f"unpack the original {CIFAR_ARCHIVE} into {str(root)!r} again (nastools never downloads)"
    )


class ImageSet:
    """Images of an ImageFolder at ``indices``, each read (PIL) and passed through ``transform``.

    The train, validation and test splits of an image folder are ImageSets over one scan of
    the folder; :meth:`augmented` gives the training view with a seeded training transform.
    """

    def __init__(self, folder, indices, transform, *, seed_of=None) -> None:
        self.folder, self.indices, self.transform, self.seed_of = folder, list(indices), transform, seed_of

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def root(self) -> str:
        """The folder the images were read from."""
        return self.folder.root

    def __getitem__(self, i):
        from nastools.augment import seeded

        path, label = self.folder.samples[self.indices[i]]
        tf = self.transform if self.seed_of is None else seeded(self.transform, self.seed_of(self.indices[i]))
        try:
            image = self.folder.loader(path)
        except Exception as exc:  # PIL: UnidentifiedImageError, truncated files, decompression bombs, ...
            raise NastoolsError(f"cannot read image {path!r} ({brief(exc)}): replace or remove the file") from None
        return tf(image), label

    def subset(self, index) -> "ImageSet":
        """The images at ``index`` (positions in this set), with the same transform."""
        return ImageSet(self.folder, [self.indices[int(i)] for i in index], self.transform, seed_of=self.seed_of)

    def augmented(self, transform, seed: int, epoch: int) -> "ImageSet":
        """This set read through ``transform``, each image's randomness seeded by
        (``seed``, ``epoch``, its index in the folder)."""
        from functools import partial

        from nastools.augment import image_seed

        # a partial, not a lambda: DataLoader worker processes may need to pickle the set
        return ImageSet(self.folder, self.indices, transform, seed_of=partial(image_seed, seed, epoch))


#: ImageNet per-channel statistics (image folders read as RGB)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
#: PIL's luma weights of R, G and B (ITU-R 601-2), with which it converts images to "L"
LUMA = (0.299, 0.587, 0.114)
#: the statistics of image folders read as grayscale (1-channel spaces): ImageNet's, weighted
#: as PIL weighs the channels it converts to "L" (the std a weighted sum too, which the
#: luminance's std would be were the channels fully correlated, as they nearly are); rounded
#: to the 6 decimals the weighted sums of the 3-decimal values have
GRAY_MEAN = (round(sum(w * m for w, m in zip(LUMA, IMAGENET_MEAN)), 6),)
GRAY_STD = (round(sum(w * s for w, s in zip(LUMA, IMAGENET_STD)), 6),)


def folder_mode(channels: int | None) -> str:
    """The PIL mode image folders are read in for a space of ``channels`` input channels:
    ``L`` (grayscale) for 1, ``RGB`` otherwise (None: RGB)."""
    return "L" if channels == 1 else "RGB"


class ImageLoader:
    """Reads an image file with PIL, converted to ``mode`` (``RGB`` or ``L``); the loader of
    image folders (a class, not a closure, so that DataLoader workers can pickle it)."""

    def __init__(self, mode: str = "RGB") -> None:
        self.mode = mode

    def __call__(self, path: str):
        from PIL import Image

        with open(path, "rb") as fh:
            return Image.open(fh).convert(self.mode)

    def __repr__(self) -> str:
        return f"ImageLoader({self.mode!r})"


@dataclass(frozen=True)
class ImageRecipe:
    """How the images of an image folder become model inputs, for evaluation and for BN
    recalibration. A run's recipe is ``image_recipe`` in its training config (default
    ``nastools``); see :data:`IMAGE_RECIPES`.

    - ``interpolation``: of the resize (and of the random-resized crop when calibrating);
    - ``resize`` / ``crop``: the shorter side is resized to ``resize`` and the centre
      ``crop`` x ``crop`` kept; ``None`` means at the arch's resolution ``r``
      (``crop = r``, ``resize = int(r * 1.14)``);
    - ``resample``: with a fixed ``crop``, the normalised crop is then resized to ``r`` by
      this tensor interpolation (``torch.nn.functional.interpolate``, no antialiasing);
    - ``calib_images`` / ``calib_batch``: BN recalibration images and batch size;
    - ``calib_augment``: recalibrate on training-time images (random-resized crop at
      ``crop``, horizontal flip, AutoAugment) rather than on evaluation images.
    """

    name: str
    interpolation: str = "bilinear"
    resize: int | None = None
    crop: int | None = None
    resample: str | None = None
    calib_images: int = 2000
    calib_batch: int = 250
    calib_augment: bool = False


#: ``nastools``: its own recipe. ``attentivenas`` / ``alphanet``: what the evaluation scripts
#: of facebookresearch/AttentiveNAS and AlphaNet do (resize 256, centre crop 224, ImageNet
#: mean/std, bicubic resize of the crop to the arch's resolution inside the model; BN
#: recalibrated on 64 training batches of 256 augmented images); AttentiveNAS's evaluation
#: config resizes bilinearly, AlphaNet's keeps the bicubic default.
IMAGE_RECIPES = {
    "nastools": ImageRecipe("nastools"),
    "attentivenas": ImageRecipe("attentivenas", "bilinear", 256, 224, "bicubic", 64 * 256, 256, True),
    "alphanet": ImageRecipe("alphanet", "bicubic", 256, 224, "bicubic", 64 * 256, 256, True),
}


def image_recipe(name: "str | ImageRecipe | None" = None) -> ImageRecipe:
    """The :class:`ImageRecipe` called ``name`` (None: ``nastools``)."""
    if isinstance(name, ImageRecipe):
        return name
    recipe = IMAGE_RECIPES.get(name or "nastools")
    if recipe is None:
        raise NastoolsError(f"unknown image recipe {name!r}: expected one of {', '.join(IMAGE_RECIPES)}")
    return recipe


class Resample:
    """Resize a (C, H, W) float tensor to ``size`` x ``size`` with ``mode`` (as a model
    resizes its input batch: ``interpolate``, ``align_corners=False``)."""

    def __init__(self, size: int, mode: str) -> None:
        self.size, self.mode = size, mode

    def __call__(self, x):
        import torch.nn.functional as F

        if x.shape[-2:] == (self.size, self.size):
            return x
        return F.interpolate(x[None], size=(self.size, self.size), mode=self.mode, align_corners=False)[0]

    def __repr__(self) -> str:
        return f"Resample(size={self.size}, mode={self.mode!r})"


def _tail(recipe: ImageRecipe, image_size: int, channels: int | None = None) -> list:
    """To tensor, normalise (:func:`normalisation` of image folders of ``channels``), and the
    recipe's resample to ``image_size`` (if any)."""
    from torchvision import transforms

    ops = [transforms.ToTensor(), transforms.Normalize(*normalisation("imagefolder", channels))]
    if recipe.crop is not None and recipe.crop != image_size:
        ops.append(Resample(image_size, recipe.resample or recipe.interpolation))
    return ops


def eval_transform(image_size: int, recipe: "str | ImageRecipe | None" = None, channels: int | None = None):
    """The deterministic transform of image-folder images for a model input of
    ``image_size`` (the arch's resolution): resize, centre crop, normalise (and resample),
    as ``recipe`` says (:class:`ImageRecipe`; default ``nastools``). ``channels``: of the
    images (1: grayscale, else RGB), which picks the mean and std (:func:`normalisation`)."""
    from torchvision import transforms

    r = image_recipe(recipe)
    mode = transforms.InterpolationMode(r.interpolation)
    crop = r.crop or image_size
    resize = r.resize or int(image_size * 1.14)
    ops = [transforms.Resize(resize, interpolation=mode), transforms.CenterCrop(crop)]
    return transforms.Compose([*ops, *_tail(r, image_size, channels)])


def calibration_transform(image_size: int, recipe: "str | ImageRecipe | None" = None, channels: int | None = None):
    """The transform of the training images that recalibrate BN under ``recipe``: its
    :func:`eval_transform`, or with ``calib_augment`` a random-resized crop at the recipe's
    crop size, a horizontal flip and AutoAugment (torchvision's ImageNet policy), then the
    same normalisation (of ``channels``, as :func:`eval_transform`) and resample. Random: wrap it with :func:`nastools.augment.seeded`
    (:meth:`ImageSet.augmented`) for repeatable statistics."""
    from torchvision import transforms

    r = image_recipe(recipe)
    if not r.calib_augment:
        return eval_transform(image_size, r, channels)
    mode = transforms.InterpolationMode(r.interpolation)
    crop = r.crop or image_size
    ops = [
        transforms.RandomResizedCrop(crop, interpolation=mode),
        transforms.RandomHorizontalFlip(),
        transforms.AutoAugment(transforms.AutoAugmentPolicy.IMAGENET, interpolation=mode),
    ]
    return transforms.Compose([*ops, *_tail(r, image_size, channels)])


def _imagefolder(data, image_size: int, recipe=None, channels: int | None = None):
    from torchvision.datasets import ImageFolder

    if not data:
        raise NastoolsError("--dataset imagefolder needs --data DIR (DIR/train/<class>/*.jpg, optional DIR/val)")
    root = Path(data)
    train_dir = root / "train" if (root / "train").is_dir() else root
    if not train_dir.is_dir():
        raise NastoolsError(f"image folder {str(root)!r} not found")
    split = next((d for d in ("val", "test") if (root / d).is_dir()), None)
    if train_dir == root and split is not None:  # a test split, or a class named so? ask for the layout
        raise NastoolsError(
            f"image folder {str(root)!r} has a {split}/ folder but no train/ folder: put the training "
            f"classes in {str(root / 'train')!r}/<class>/ beside {split}/ (the test split), or rename a "
            f"class folder called {split!r}"
        )
    mode = folder_mode(channels)
    tf = eval_transform(image_size, recipe, len(mode))
    try:
        folder = ImageFolder(str(train_dir), loader=ImageLoader(mode))
        test_dir = next((root / d for d in ("val", "test") if (root / d).is_dir()), None)
        test_folder = ImageFolder(str(test_dir), loader=ImageLoader(mode)) if test_dir else None
    except (FileNotFoundError, RuntimeError) as exc:
        raise NastoolsError(f"cannot read image folder {str(root)!r}: {exc}") from None
    if test_folder is not None:
        _align_classes(folder, test_folder, train_dir, test_dir)
    train = ImageSet(folder, range(len(folder)), tf)
    test = ImageSet(test_folder, range(len(test_folder)), tf) if test_folder else None
    return train, test, list(folder.classes), len(mode), image_size


def _align_classes(train, test, train_dir: Path, test_dir: Path) -> None:
    """Label ``test``'s images with ``train``'s class indices (a class is a folder name):
    a test folder may lack some classes, but a class it has and ``train`` lacks is an error."""
    extra = sorted(set(test.classes) - set(train.classes))
    if extra:
        shown = ", ".join(repr(c) for c in extra[:5]) + (f" and {len(extra) - 5} more" if len(extra) > 5 else "")
        raise NastoolsError(
            f"image folder {str(test_dir)!r} has classes that {str(train_dir)!r} lacks: {shown}; "
            "the class folders of the test split must be among the training split's (same names)"
        )
    if test.classes == train.classes:
        return
    index = [train.class_to_idx[c] for c in test.classes]
    test.samples = test.imgs = [(path, index[t]) for path, t in test.samples]
    test.targets = [t for _, t in test.samples]
    test.classes, test.class_to_idx = list(train.classes), dict(train.class_to_idx)


def load_splits(
    name: str = "fashion-mnist",
    data: str | Path | None = None,
    *,
    val_size: int | float = 5000,
    seed: int = 0,
    image_size: int = 224,
    image_recipe: "str | ImageRecipe | None" = None,
    channels: int | None = None,
    hold_out_hint: str | None = None,
) -> DataSplits:
    """Load a dataset and split a validation slice off its training set.

    ``val_size``: number of training images held out (or a fraction when < 1).
    ``image_size``, ``image_recipe`` (:func:`eval_transform`) and ``channels`` only apply to
    ``imagefolder``: ``channels`` is the space's ``input_channels``, 1 reading the images as
    grayscale (PIL ``L``), anything else (default) as RGB. ``hold_out_hint``: how to hold out
    fewer, in the error on an image folder too small for ``val_size`` (default: ``nastools
    train --val-size``).
    """
    import torch

    if name not in DATASETS:
        raise NastoolsError(f"unknown dataset {name!r}: expected one of {', '.join(DATASETS)}")
    if name == "fashion-mnist":
        train_all, test, classes, chs, size = _fashion_mnist(data)
    elif name == "cifar10":
        train_all, test, classes, chs, size = _cifar10(data)
    else:
        train_all, test, classes, chs, size = _imagefolder(data, image_size, image_recipe, channels)
    n = len(train_all)
    n_val = _val_count(val_size, n)
    if n_val >= n and name == "imagefolder":
        train_dir = getattr(train_all, "root", data)
        fewer = f", or hold out fewer: nastools train --val-size {max(1, n // 10)}" if hold_out_hint is None else hold_out_hint
        raise NastoolsError(
            f"image folder {str(data)!r} is too small: nastools holds out {n_val} of its training images for "
            f"validation (BN recalibration and search) and trains on the rest, but {str(train_dir)!r} has only {n}; "
            f"put at least {n_val + 1} images there (a val folder beside it is the test set and does not count){fewer}"
        )
    if not 0 < n_val < n:
        raise NastoolsError(
            f"validation size {val_size!r}: expected between 1 and {n - 1} images of the {n} in the training set "
            f"(nastools train --val-size N; e.g. --val-size {max(1, n // 10)})"
        )
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    val_idx, train_idx = perm[:n_val].sort().values, perm[n_val:].sort().values
    train, val = train_all.subset(train_idx), train_all.subset(val_idx)
    test, test_split = (test, "test") if test is not None else (val, "val")
    return DataSplits(name, train, val, test, len(classes), chs, size, seed, tuple(map(str, classes)), test_split)


#: what a report says where an image folder has no test split (:attr:`DataSplits.test_split`)
NO_TEST_SPLIT = (
    "the image folder has no val/ or test/ folder, so the validation slice held out of train/ (on which "
    "search scores archs) stands in for the test set"
)
#: the same for an imported supernet, whose training used every image of ImageNet's train/
NO_TEST_SPLIT_IMPORTED = (
    "the image folder has no val/ folder, so the top-1 is on images of train/, which the imported supernet was "
    "trained on: not a test accuracy; put ImageNet's validation images in DIR/val/<class id>/ for one"
)


def normalisation(name: str, channels: int | None = None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The per-channel ``(mean, std)`` that dataset ``name``'s images, scaled to [0, 1], are
    normalised with. Image folders: ImageNet's when read as RGB, :data:`GRAY_MEAN` and
    :data:`GRAY_STD` when read as grayscale (``channels`` 1, as :func:`folder_mode`)."""
    if name != "imagefolder":
        return STATS[name]
    return (GRAY_MEAN, GRAY_STD) if folder_mode(channels) == "L" else (IMAGENET_MEAN, IMAGENET_STD)


def check_fits(splits: DataSplits, space, data: str | Path | None = None) -> None:
    """Raise a one-line :class:`NastoolsError` unless the images of ``splits`` have the
    channels and the classes the ``space`` (a :class:`~nastools.space.SearchSpace`)
    expects; ``data`` is the folder they were read from, for the message."""
    if splits.channels == space.input_channels and splits.num_classes == space.num_classes:
        return
    where = f" in {str(data)!r}" if data else ""
    problems = []
    if splits.channels != space.input_channels:
        read = " (image folders are read as grayscale for input_channels: 1, else as RGB)" if splits.name == "imagefolder" else ""
        problems.append(f"{splits.channels}-channel images{read}, the space input_channels: {space.input_channels}")
    if splits.num_classes != space.num_classes:
        what = " (class folders)" if splits.name == "imagefolder" else ""
        problems.append(f"{splits.num_classes} classes{what}, the space num_classes: {space.num_classes}")
    raise NastoolsError(
        f"dataset {splits.name!r}{where} does not fit space {space.name!r}: {'; '.join(problems)}; "
        f"use a space made for this data (a copy of the space YAML with input_channels: {splits.channels} "
        f"and num_classes: {splits.num_classes}) or the dataset the space was made for (--dataset, --data)"
    )


def splits_at(splits: DataSplits, image_size: int, recipe: "str | ImageRecipe | None" = None) -> DataSplits:
    """``splits`` read at ``image_size``: the image-folder sets (:class:`ImageSet`) through
    :func:`eval_transform` (``image_size``, ``recipe``, their channels), as :func:`load_splits` would read
    them, without scanning the folder again; in-memory datasets are returned as they are."""
    if not isinstance(splits.train, ImageSet):
        return splits
    tf = eval_transform(image_size, recipe, splits.channels)
    train, val, test = (ImageSet(s.folder, s.indices, tf, seed_of=s.seed_of) for s in (splits.train, splits.val, splits.test))
    return replace(splits, train=train, val=val, test=test, image_size=image_size)


def _val_count(val_size, n: int) -> int:
    """The number of training images ``val_size`` holds out (a count, or a fraction when < 1)."""
    if isinstance(val_size, bool) or not isinstance(val_size, (int, float)) or not math.isfinite(val_size):
        raise NastoolsError(f"validation size {val_size!r}: expected a number of images or a fraction below 1")
    return int(round(val_size * n)) if isinstance(val_size, float) and val_size < 1 else int(val_size)


def iter_batches(
    dataset,
    batch_size: int,
    *,
    order=None,
    max_images: int | None = None,
    workers: int = 0,
    drop_last: bool = False,
    augment=None,
):
    """Yield ``(images, labels)`` batches of ``dataset`` as normalised float tensors.

    ``order``: a 1-D index tensor (e.g. a seeded permutation) to read the images in; default
    the dataset's own order. ``max_images`` stops after that many images. An in-memory
    :class:`TensorImages` is sliced directly (no per-image work); any other dataset goes
    through a ``DataLoader`` with ``workers`` processes.

    ``augment(images_u8, indices)``: applied to each batch of a :class:`TensorImages` before
    normalising (``indices``: the images' positions in ``dataset``); other datasets augment in
    their own transform (:meth:`ImageSet.augmented`).
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
            if contiguous and augment is None:
                yield dataset.normalise(dataset.images[start:end]), dataset.labels[start:end]
            else:
                sel = idx[start:end]
                images = dataset.images[sel]
                if augment is not None:
                    images = augment(images, sel)
                yield dataset.normalise(images), dataset.labels[sel]
        return
    from torch.utils.data import DataLoader, Subset

    loader = DataLoader(Subset(dataset, idx[:stop].tolist()), batch_size=batch_size, shuffle=False, num_workers=workers)
    try:
        for images, labels in loader:
            yield images, torch.as_tensor(labels)
    except NastoolsError as exc:  # from a worker process: its message follows the worker's traceback
        raise NastoolsError(str(exc).rsplit("NastoolsError: ", 1)[-1]) from None
