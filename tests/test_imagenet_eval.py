"""Image-folder evaluation as the AttentiveNAS/AlphaNet reference does it (image recipes),
and the published A0-A6 shipped as arch files.

The reference's evaluation, written here with plain torchvision: resize the shorter side to
256 (bilinear in AttentiveNAS's evaluation config, the bicubic default in AlphaNet's), centre
crop 224, ToTensor, normalise with the ImageNet pixel mean/std (given there in 0-255 units),
then the model resizes the batch to the arch's resolution (``interpolate``, bicubic). BN is
recalibrated on 64 batches of 256 training images through the training-time transform
(random-resized crop 224, flip, AutoAugment).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms

from nastools.checkpoint import save_checkpoint
from nastools.data import IMAGE_RECIPES, ImageSet, calibration_transform, eval_transform, image_recipe, iter_batches, load_splits
from nastools.errors import NastoolsError
from nastools.importers import attentivenas as an
from nastools.resources import shipped_arch, shipped_arch_names
from nastools.space import load_arch, load_space, space_from_dict
from nastools.supernet import Supernet
from nastools.train.evaluate import calibration_batches, calibration_set, evaluate_subnet, recalibrate_bn

SIZES = [(300, 260), (257, 400), (512, 384), (224, 224), (180, 200)]


def _reference_eval(resolution: int, interpolation) -> transforms.Compose:
    """The reference's evaluation preprocessing of one image, batch resize included."""
    mean = torch.tensor([123.675, 116.280, 103.530]) / 255.0
    std = torch.tensor([58.395, 57.12, 57.375]) / 255.0
    tf = transforms.Compose(
        [
            transforms.Resize(256, interpolation=interpolation),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize(mean, std),
        ]
    )

    def run(img):
        x = tf(img)[None]
        if x.shape[-1] != resolution:
            x = F.interpolate(x, size=resolution, mode="bicubic")
        return x[0]

    return run


def _image(w: int, h: int, seed: int) -> Image.Image:
    g = torch.Generator().manual_seed(seed)
    base = torch.randint(0, 256, (h // 8 + 1, w // 8 + 1, 3), generator=g, dtype=torch.uint8)
    # smooth-ish content so that interpolation modes give clearly different pixels
    big = F.interpolate(base.permute(2, 0, 1)[None].float(), size=(h, w), mode="bilinear", align_corners=False)[0]
    noise = torch.randint(0, 40, (3, h, w), generator=g).float()
    return Image.fromarray((big + noise).clamp(0, 255).byte().permute(1, 2, 0).numpy())


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """ImageNet layout: train/<class>/*.png (12 per class) and val/<class>/*.png (3 per class)."""
    root = tmp_path_factory.mktemp("imagenet")
    n = 0
    for split, count in (("train", 12), ("val", 3)):
        for cls in ("n01", "n02"):
            (root / split / cls).mkdir(parents=True)
            for i in range(count):
                w, h = SIZES[n % len(SIZES)]
                _image(w, h, n).save(root / split / cls / f"{i}.png")
                n += 1
    return root


def _images(folder: Path):
    return [Image.open(p).convert("RGB") for p in sorted((folder / "val").rglob("*.png"))]


@pytest.mark.parametrize("resolution", [192, 224, 288])
@pytest.mark.parametrize(
    "recipe, interpolation", [("attentivenas", transforms.InterpolationMode.BILINEAR), ("alphanet", transforms.InterpolationMode.BICUBIC)]
)
def test_reference_recipes_equal_the_reference_pipeline(folder, recipe, interpolation, resolution):
    ours, theirs = eval_transform(resolution, recipe), _reference_eval(resolution, interpolation)
    for img in _images(folder):
        x, y = ours(img), theirs(img)
        assert x.shape == (3, resolution, resolution)
        assert torch.allclose(x, y, atol=1e-5), float((x - y).abs().max())


def test_the_recipes_differ_where_the_references_do(folder):
    img = _images(folder)[0]
    bilinear, bicubic = eval_transform(192, "attentivenas")(img), eval_transform(192, "alphanet")(img)
    assert float((bilinear - bicubic).abs().max()) > 1e-2  # the interpolation is not ignored
    # bicubic batch resize, not bilinear (a different image at 192)
    crop = _reference_eval(224, transforms.InterpolationMode.BILINEAR)(img)
    bilinear_resize = F.interpolate(crop[None], size=192, mode="bilinear", align_corners=False)[0]
    assert float((bilinear - bilinear_resize).abs().max()) > 1e-2


def test_nastools_recipe_crops_at_the_resolution(folder):
    img = _images(folder)[1]
    want = transforms.Compose(
        [
            transforms.Resize(int(192 * 1.14)),
            transforms.CenterCrop(192),
            transforms.ToTensor(),
            transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ]
    )
    assert torch.equal(eval_transform(192)(img), want(img))
    assert image_recipe(None) is IMAGE_RECIPES["nastools"] and not IMAGE_RECIPES["nastools"].calib_augment
    with pytest.raises(NastoolsError, match="unknown image recipe 'timm'"):
        image_recipe("timm")


def test_reference_calibration_transform_is_the_training_transform(folder):
    tf = calibration_transform(256, "attentivenas")
    kinds = [type(t).__name__ for t in tf.transforms]
    assert kinds[:3] == ["RandomResizedCrop", "RandomHorizontalFlip", "AutoAugment"]
    crop = tf.transforms[0]
    assert crop.size == (224, 224) and crop.interpolation == transforms.InterpolationMode.BILINEAR
    assert calibration_transform(256, "alphanet").transforms[0].interpolation == transforms.InterpolationMode.BICUBIC
    img = _images(folder)[2]
    assert tf(img).shape == (3, 256, 256)
    r = IMAGE_RECIPES["attentivenas"]
    assert (r.calib_images, r.calib_batch) == (64 * 256, 256)  # post_bn_calibration_batch_num x batch_size


def test_imagefolder_splits_at_the_arch_resolution(folder):
    s = load_splits("imagefolder", folder, val_size=4, image_size=288, image_recipe="attentivenas")
    assert s.image_size == 288 and len(s.test) == 6 and len(s.train) == 20
    x, label = s.test[0]
    assert x.shape == (3, 288, 288) and label == 0
    calib, batch = calibration_set(s, image_recipe("attentivenas"), 288)
    assert batch == 256 and isinstance(calib, ImageSet) and len(calib) == len(s.train)
    a, b = calib[3][0], calib[3][0]
    assert a.shape == (3, 288, 288) and torch.equal(a, b)  # seeded per image: repeatable statistics
    assert not torch.equal(a, s.train[3][0])  # augmented, not the evaluation image
    plain, _ = calibration_set(load_splits("imagefolder", folder, val_size=4, image_size=64), image_recipe(None), 64)
    assert plain[0][0].shape == (3, 64, 64)


def _small_space():
    return space_from_dict(
        {
            "name": "tiny-rgb",
            "input_channels": 3,
            "num_classes": 2,
            "resolutions": [32, 48],
            "act": "swish",
            "stem": {"widths": [8], "kernel": 3, "stride": 2},
            "stages": [{"name": "mb1", "widths": [8], "depths": [1], "kernels": [3], "expands": [1], "stride": 1, "se": False}],
            "head": {"widths": [32], "expand": 2},
        }
    )


def _spy_load_splits(monkeypatch) -> list:
    """The ``(image_size, image_recipe)`` of each load_splits call from here on."""
    seen = []
    real = load_splits

    def spy(*args, **kwargs):
        seen.append((kwargs["image_size"], kwargs["image_recipe"]))
        return real(*args, **kwargs)

    monkeypatch.setattr("nastools.data.load_splits", spy)
    return seen


@pytest.mark.parametrize("recipe", [None, "attentivenas"])
def test_eval_reads_the_folder_as_the_runs_recipe_says(folder, tmp_path, monkeypatch, recipe):
    space = _small_space()
    torch.manual_seed(0)
    config = {"dataset": "imagefolder", "data": str(folder), "val_size": 4}
    if recipe:
        config["image_recipe"] = recipe
    save_checkpoint(tmp_path / "supernet.pt", Supernet(space), trained={"config": config})
    seen = _spy_load_splits(monkeypatch)
    arch = space.max_arch()
    assert arch.resolution == 48
    res = evaluate_subnet(arch, tmp_path / "supernet.pt")
    assert seen == [(arch.resolution, recipe)]
    m = res["meta"]
    assert m["image_recipe"] == (recipe or "nastools") and m["images"] == 6 and m["calib_images"] == 20
    assert 0 <= res["top1"] <= 1


# ---------------------------------------------------------------------------- shipped archs


def test_published_archs_ship_and_load_by_name(tmp_path, monkeypatch):
    assert {f"a{i}" for i in range(7)} <= set(shipped_arch_names("attentivenas"))
    sp = load_space("attentivenas")
    for name, cfg in an.PARETO.items():
        path = shipped_arch(name, "attentivenas")
        assert path is not None and json.loads(path.read_text()) == an.reference_arch(cfg, sp).to_dict(), name
    for mflops, name in zip(an.PUBLISHED_MFLOPS.values(), an.PUBLISHED_MFLOPS):
        assert sp.flops(load_arch(name, sp)) / 1e6 == pytest.approx(mflops, rel=0.01), name
    monkeypatch.chdir(tmp_path)
    assert load_arch("a0.json", sp) == load_arch("a0", "attentivenas") == an.reference_arch(an.PARETO["a0"], sp)
    assert load_arch("a6.json").resolution == 288  # the space the file names
    sp.min_arch().save(tmp_path / "a0.json")
    assert load_arch("a0.json", sp) == sp.min_arch()  # a file of that name comes first
    for bad in ("a9.json", "../a0.json", ".json"):
        with pytest.raises(NastoolsError):
            load_arch(bad, sp)


def test_eval_cli_with_workers_gives_the_same_top1(folder, tmp_path):
    from click.testing import CliRunner

    from nastools.cli import main

    space = _small_space()
    torch.manual_seed(1)
    config = {"dataset": "imagefolder", "data": str(folder), "val_size": 4, "image_recipe": "alphanet"}
    save_checkpoint(tmp_path / "supernet.pt", Supernet(space), trained={"config": config})
    space.min_arch().save(tmp_path / "arch.json")
    base = ["eval", "--run", str(tmp_path / "supernet.pt"), "--arch", str(tmp_path / "arch.json"), "--json"]
    r0 = CliRunner().invoke(main, base)
    r1 = CliRunner().invoke(main, [*base, "--workers", "1"])
    assert r0.exit_code == 0 and r1.exit_code == 0, r0.output + r1.output
    a, b = json.loads(r0.stdout), json.loads(r1.stdout)
    assert a["top1"] == b["top1"] and a["meta"]["image_recipe"] == "alphanet" and a["meta"]["calib_images"] == 20


# ------------------------------------------------------- search and export follow the recipe


def _recipe_run(folder: Path, path: Path, recipe: str | None, centre=None):
    """A random supernet of the tiny RGB space saved as a run on ``folder`` with image recipe
    ``recipe`` (None: nastools'), 12 of its 24 training images held out for validation.

    With ``centre`` (a function of the space giving an arch), the classifier's bias puts that
    arch's decision boundary halfway between the 6th and 7th of its logit margins over the
    validation images as ``nastools eval`` reads them: its top-1 then turns on small changes
    of the images or of the BN statistics (a random net otherwise gives every image one class)."""
    space = _small_space()
    torch.manual_seed(2)
    net = Supernet(space)
    if centre is not None:
        arch = centre(space)
        splits = load_splits("imagefolder", folder, val_size=12, image_size=arch.resolution, image_recipe=recipe)
        calib, batch = calibration_set(splits, image_recipe(recipe), arch.resolution)
        net.set_active(arch)
        recalibrate_bn(net, calibration_batches(calib, batch, len(calib)))
        with torch.no_grad():
            logits = torch.cat([net.eval()(x) for x, _ in iter_batches(splits.val, 100)])
        margins = (logits[:, 0] - logits[:, 1]).sort().values
        net.head.classifier.bias.data[0] -= float(margins[5] + margins[6]) / 2
    config = {"dataset": "imagefolder", "data": str(folder), "val_size": 12}
    if recipe:
        config["image_recipe"] = recipe
    save_checkpoint(path, net, trained={"config": config})
    return space


@pytest.mark.parametrize("recipe", [None, "attentivenas"])
def test_search_scores_an_arch_as_eval_does(folder, tmp_path, recipe):
    from nastools.checkpoint import load_checkpoint, load_supernet
    from nastools.search.evaluator import SubnetEvaluator
    from nastools.search.runner import SearchOptions, _evaluator

    ckpt = tmp_path / "supernet.pt"
    space = _recipe_run(folder, ckpt, recipe, centre=lambda sp: sp.max_arch())
    evaluator = _evaluator(load_supernet(ckpt), ckpt, load_checkpoint(ckpt), SearchOptions(), None)
    assert evaluator.key.endswith(f"|recipe={recipe or 'nastools'}")  # a cache of another recipe is not reused
    assert evaluator.calib_images == image_recipe(recipe).calib_images  # the recipe's by default
    plain = SubnetEvaluator(load_supernet(ckpt), evaluator.splits, recipe=evaluator.recipe, fast=False)
    arch = space.max_arch()  # 48 px: images read at that size, not at 224 and resized
    want = 100 * evaluate_subnet(arch, ckpt, split="val")["top1"]
    assert evaluator(arch) == want and plain(arch) == want


def test_search_workers_decode_the_same_images(folder, tmp_path, monkeypatch):
    """``search --workers N``: image-folder images are decoded in N processes, with the same scores."""
    import torch.utils.data

    from nastools.checkpoint import load_checkpoint, load_supernet
    from nastools.search.runner import SearchOptions, _evaluator

    ckpt = tmp_path / "supernet.pt"
    space = _recipe_run(folder, ckpt, "attentivenas", centre=lambda sp: sp.max_arch())
    loader, seen = torch.utils.data.DataLoader, []

    def spy(*args, num_workers=0, **kw):
        seen.append(num_workers)
        return loader(*args, num_workers=num_workers, **kw)

    monkeypatch.setattr(torch.utils.data, "DataLoader", spy)
    scores = [
        _evaluator(load_supernet(ckpt), ckpt, load_checkpoint(ckpt), SearchOptions(workers=w), None)(space.max_arch()) for w in (0, 2)
    ]
    assert seen and set(seen) == {0, 2} and seen.count(2) == seen.count(0)  # calibration and validation both
    assert scores[0] == scores[1] == 100 * evaluate_subnet(space.max_arch(), ckpt, split="val")["top1"]


def test_search_keeps_the_in_memory_path():
    from nastools.data import DataSplits, TensorImages
    from nastools.search.evaluator import SubnetEvaluator

    images = TensorImages(torch.zeros(4, 1, 28, 28, dtype=torch.uint8), torch.zeros(4, dtype=torch.long), (0.5,), (0.5,))
    evaluator = SubnetEvaluator(None, DataSplits("fashion-mnist", images, images, images, 10, 1, 28), tag="t", recipe="alphanet")
    assert evaluator.recipe is None and evaluator.key == "t|calib=1000|eval=2000|seed=0"
    assert evaluator._sets(28) == (images, 250, images)


@pytest.mark.parametrize("recipe", [None, "attentivenas"])
def test_export_recalibrates_and_scores_as_eval_does(folder, tmp_path, monkeypatch, recipe):
    from nastools.export import export_subnet

    ckpt = tmp_path / "supernet.pt"
    arch = _recipe_run(folder, ckpt, recipe).min_arch()
    seen = _spy_load_splits(monkeypatch)
    res = export_subnet(ckpt, arch, format="torchscript", out=tmp_path / "m.pt", progress=False)
    assert seen == [(arch.resolution, recipe)]  # read at the arch's resolution (32), not 224
    want = evaluate_subnet(arch, ckpt)  # the test set, the recipe's calibration
    s = res.sidecar
    assert res.passed and s["input"]["shape"] == ["batch", 3, 32, 32]
    assert s["accuracy"]["torch_top1"] == s["accuracy"]["model_top1"] == want["top1"]
    assert s["batchnorm"]["recalibration_images"] == want["meta"]["calib_images"] == 12
    assert s["input"]["preprocessing"].startswith(f"image recipe {recipe or 'nastools'}:")
