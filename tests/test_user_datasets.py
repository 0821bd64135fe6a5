"""A user's own image folder, end to end through the command line: small folders, bad
images, class lists that differ between train and val, and what an export tells a
deployment. The folders are built in tmp_path (a few 16 px images per class)."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from nastools.cli import main
from nastools.data import iter_batches, load_splits
from nastools.errors import NastoolsError

SPACE = """
name: tiny-user
input_channels: 3
num_classes: 3
resolutions: [16]
act: relu
stem: {widths: [8], kernel: 3, stride: 2}
stages:
  - {name: mb1, widths: [8], depths: [1], kernels: [3], expands: [1], stride: 1, se: false}
head: {widths: [16], expand: 2}
"""


def make_folder(root: Path, classes=("ant", "bee", "cat"), per_class=6, val=2, size=16, mode="RGB") -> Path:
    """``root/train/<class>/*.png`` (and ``root/val`` when ``val``), each class its own colour."""
    from PIL import Image

    for split, n in (("train", per_class), ("val", val)):
        for c, name in enumerate(classes):
            d = root / split / name
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.new("RGB", (size, size), (80 * c, 10 * i, 40)).convert(mode).save(d / f"{i}.png")
    return root


def _cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _space(tmp_path: Path) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(SPACE)
    return path


def test_train_a_small_image_folder_with_val_size(tmp_path):
    data = make_folder(tmp_path / "data")
    base = ("train", "--space", _space(tmp_path), "--dataset", "imagefolder", "--data", data, "--batch-size", 4)
    r = _cli(*base, "--run", tmp_path / "a", "--steps", 1)
    assert r.exit_code == 1 and "too small" in r.output and "--val-size 1" in r.output and "Traceback" not in r.output
    r = _cli(*base, "--run", tmp_path / "b", "--steps", 1, "--val-size", 6, "--eval-images", 6, "--no-progress")
    assert r.exit_code == 0, r.output
    from nastools.checkpoint import load_checkpoint, run_config

    assert run_config(load_checkpoint(tmp_path / "b"))["val_size"] == 6


@pytest.mark.parametrize("workers", [0, 1])
@pytest.mark.parametrize("damage", ["junk", "truncated"])
def test_an_unreadable_image_is_one_line_naming_the_file(tmp_path, workers, damage):
    data = make_folder(tmp_path / "data")
    bad = data / "train" / "bee" / "3.png"
    raw = bad.read_bytes()
    bad.write_bytes(b"not an image" if damage == "junk" else raw[: len(raw) // 2])
    s = load_splits("imagefolder", data, val_size=2, image_size=16)
    with pytest.raises(NastoolsError) as info:
        for _ in iter_batches(s.train, 4, workers=workers):
            pass
    msg = str(info.value)
    assert repr(str(bad)) in msg and "replace or remove the file" in msg and "Traceback" not in msg, msg


def test_test_split_labels_follow_the_training_class_folders(tmp_path):
    import shutil

    data = make_folder(tmp_path / "data")
    shutil.rmtree(data / "val" / "ant")  # a val folder without the first class
    s = load_splits("imagefolder", data, val_size=2, image_size=16)
    labels = sorted({label for _, label in s.test})
    assert s.num_classes == 3 and labels == [1, 2]  # bee and cat keep the training indices
    (data / "val" / "cat").rename(data / "val" / "cow")
    with pytest.raises(NastoolsError, match=r"has classes that .*train' lacks: 'cow'; the class folders of the test split"):
        load_splits("imagefolder", data, val_size=2, image_size=16)


def _untrained_run(tmp_path: Path, data: Path) -> Path:
    """A run folder with an untrained supernet of the tiny space, trained (says its config) on ``data``."""
    from nastools.checkpoint import save_checkpoint
    from nastools.space import load_space
    from nastools.supernet import Supernet

    run = tmp_path / "run"
    config = {"dataset": "imagefolder", "data": str(data), "val_size": 2}
    save_checkpoint(run / "supernet.pt", Supernet(load_space(_space(tmp_path))), trained={"config": config})
    return run


def test_a_dataset_that_does_not_fit_the_space_is_one_line_in_every_command(tmp_path):
    data = make_folder(tmp_path / "data")
    four = make_folder(tmp_path / "four", classes=("ant", "bee", "cat", "dog"))
    run = _untrained_run(tmp_path, data)
    arch = tmp_path / "arch.json"
    arch.write_text(_cli("space", "sample", _space(tmp_path), "-n", 1).output)
    for args in (
        ("search", "--run", run, "--flops", "1G", "--data", four, "--no-measure"),
        ("eval", "--run", run, "--arch", arch, "--data", four),
        ("export", "--run", run, "--arch", arch, "--data", four),
    ):
        r = _cli(*args)
        assert r.exit_code == 1 and "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1, r.output
        assert f"dataset 'imagefolder' in {str(four)!r} does not fit space 'tiny-user': 4 classes (class folders)" in r.output
    r = _cli("search", "--run", run, "--flops", "1G", "--dataset", "fashion-mnist", "--no-measure")
    assert r.exit_code == 1 and "1-channel images, the space input_channels: 3; 10 classes" in r.output, r.output
    four_ch = tmp_path / "four.yaml"
    four_ch.write_text(SPACE.replace("input_channels: 3", "input_channels: 4"))
    r = _cli("train", "--space", four_ch, "--dataset", "imagefolder", "--data", data, "--run", tmp_path / "g", "--val-size", 2)
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    assert "3-channel images (image folders are read as grayscale for input_channels: 1, else as RGB)" in r.output, r.output


def test_image_folders_train_at_the_spaces_largest_resolution(tmp_path):
    import torch

    from nastools.checkpoint import checkpoint_path, load_checkpoint, run_config
    from nastools.train.trainer import TrainConfig, Trainer, train_image_size

    data = make_folder(tmp_path / "data", size=40)
    space = _space(tmp_path)
    config = TrainConfig(space=str(space), dataset="imagefolder", data=str(data), val_size=2, batch_size=4, eval_images=2)
    t = Trainer(config, tmp_path / "run")
    images, _ = next(t.batches(0, 0))
    assert images.shape == (4, 3, 16, 16) and t.config.image_size == 16 == train_image_size(t.space)
    t.fit(max_steps=1, progress=False)
    assert run_config(load_checkpoint(tmp_path / "run"))["image_size"] == 16
    # a run whose config predates image_size read the folder at 224, and resumes so
    ckpt = torch.load(checkpoint_path(tmp_path / "run"), weights_only=True)
    del ckpt["train"]["config"]["image_size"]
    torch.save(ckpt, checkpoint_path(tmp_path / "run"))
    assert Trainer.resume(tmp_path / "run").splits.image_size == 224


def test_a_relative_data_folder_is_found_from_any_folder(tmp_path, monkeypatch):
    from nastools.checkpoint import load_checkpoint, run_config

    make_folder(tmp_path / "data")
    space = _space(tmp_path)
    monkeypatch.chdir(tmp_path)
    r = _cli("train", "--space", space, "--dataset", "imagefolder", "--data", "data", "--run", tmp_path / "run",
             "--steps", 1, "--batch-size", 4, "--val-size", 2, "--eval-images", 2, "--no-progress")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert run_config(load_checkpoint(tmp_path / "run"))["data"] == str(tmp_path / "data")
    arch = tmp_path / "arch.json"
    arch.write_text(_cli("space", "sample", space, "-n", 1).output)
    monkeypatch.chdir(tmp_path / "data")  # elsewhere
    r = _cli("eval", "--run", tmp_path / "run", "--arch", arch, "--calib-images", 4)
    assert r.exit_code == 0 and "top-1" in r.output, r.output
    # a run that recorded a relative folder: the error says whose folder it is and where it was looked for
    run = _untrained_run(tmp_path, Path("data"))
    r = _cli("eval", "--run", run, "--arch", arch)
    assert r.exit_code == 1 and "the run's dataset folder 'data' (its --data when trained, relative to" in r.output
    assert "pass --data DIR" in r.output, r.output


def test_the_export_sidecar_says_how_to_feed_the_model(tmp_path):
    import numpy as np
    import onnxruntime as ort
    from PIL import Image

    from nastools.data import IMAGENET_MEAN, IMAGENET_STD, eval_transform
    from nastools.export import export_subnet
    from nastools.space import load_space

    data = make_folder(tmp_path / "data", size=20)
    run = _untrained_run(tmp_path, data)
    arch = load_space(_space(tmp_path)).max_arch()
    res = export_subnet(run, arch, calib_images=8, out=tmp_path / "m.onnx", progress=False)
    side = json.loads(Path(res.sidecar_path).read_text())
    inp = side["input"]
    assert side["classes"] == ["ant", "bee", "cat"] and inp["shape"] == ["batch", 3, 16, 16]
    assert inp["color"] == "RGB" and inp["layout"] == "NCHW"
    assert inp["mean"] == list(IMAGENET_MEAN) and inp["std"] == list(IMAGENET_STD)
    # a deployment following the sidecar: resize the shorter side, centre crop, scale, normalise
    img = Image.open(data / "val" / "bee" / "0.png").convert(inp["color"])
    x = (np.asarray(img.resize((18, 18), Image.BILINEAR).crop((1, 1, 17, 17)), np.float32) / 255 - inp["mean"]) / inp["std"]
    assert np.allclose(x.transpose(2, 0, 1), eval_transform(16)(img).numpy(), atol=1e-6)  # what eval and export read
    logits = ort.InferenceSession(str(res.path)).run(None, {inp["name"]: x.transpose(2, 0, 1)[None].astype(np.float32)})[0]
    assert logits.shape == (1, len(side["classes"]))


def test_the_epoch_evaluation_decodes_with_the_runs_workers(tmp_path, monkeypatch):
    import torch.utils.data

    from nastools.train.trainer import TrainConfig, Trainer

    data = make_folder(tmp_path / "data")
    config = TrainConfig(
        space=str(_space(tmp_path)), dataset="imagefolder", data=str(data), val_size=2, workers=2, eval_images=2, batch_size=4
    )
    t = Trainer(config, tmp_path / "run")
    seen = []
    real = torch.utils.data.DataLoader

    def spy(*args, num_workers=0, **kwargs):
        seen.append(num_workers)
        return real(*args, num_workers=0, **kwargs)  # the count is what matters here

    monkeypatch.setattr(torch.utils.data, "DataLoader", spy)
    t.evaluate()
    assert seen and set(seen) == {2}


def test_without_a_test_folder_reports_name_the_validation_slice(tmp_path):
    import shutil

    data = make_folder(tmp_path / "data")
    shutil.rmtree(data / "val")
    run = _untrained_run(tmp_path, data)
    arch = tmp_path / "arch.json"
    arch.write_text(_cli("space", "sample", _space(tmp_path), "-n", 1).output)
    r = _cli("eval", "--run", run, "--arch", arch, "--calib-images", 4)
    assert r.exit_code == 0 and "on 2 val images of imagefolder" in r.output and "note: the image folder has no val/" in r.output
    r = _cli("export", "--run", run, "--arch", arch, "--calib-images", 4, "--out", tmp_path / "m.onnx")
    assert r.exit_code == 0 and "top-1 on 2 val images" in r.output and "stands in for the test set" in r.output, r.output
    assert json.loads((tmp_path / "m.onnx.json").read_text())["accuracy"]["split"] == "val"
    r = _cli("eval", "--run", run, "--arch", arch, "--calib-images", 4, "--split", "val")
    assert r.exit_code == 0 and "note:" not in r.output


def _grey_space(tmp_path: Path) -> Path:
    path = tmp_path / "grey.yaml"
    grey = SPACE.replace("name: tiny-user", "name: tiny-grey").replace("input_channels: 3", "input_channels: 1")
    path.write_text(grey.replace("resolutions: [16]", "resolutions: [12, 16]"))
    return path


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_image_folders_are_read_as_grayscale_for_a_one_channel_space(tmp_path, mode):
    import pickle

    import torch
    from PIL import Image

    from nastools.augment import train_transform
    from nastools.data import GRAY_MEAN, GRAY_STD, normalisation, splits_at
    from nastools.train.trainer import TrainConfig, Trainer

    assert GRAY_MEAN == (round(0.299 * 0.485 + 0.587 * 0.456 + 0.114 * 0.406, 6),)
    assert GRAY_STD == (round(0.299 * 0.229 + 0.587 * 0.224 + 0.114 * 0.225, 6),)
    assert normalisation("imagefolder", 1) == (GRAY_MEAN, GRAY_STD)
    data = make_folder(tmp_path / "data", size=20, mode=mode)  # each image one colour: every pixel is its luma

    def expected(path) -> float:  # PIL's luma of the image, normalised as documented
        return (Image.open(path).convert("L").getpixel((0, 0)) / 255 - GRAY_MEAN[0]) / GRAY_STD[0]

    s = load_splits("imagefolder", data, val_size=2, image_size=16, channels=1)
    assert s.channels == 1
    for ds, side in ((s.train, 16), (s.val, 16), (s.test, 16), (splits_at(s, 12).val, 12)):  # eval, search at 12 px
        x, _ = ds[0]
        assert x.shape == (1, side, side)
        want = expected(ds.folder.samples[ds.indices[0]][0])
        assert torch.allclose(x, torch.full_like(x, want), atol=1e-5)
    # training: the trainer's augmented images, through a worker process, and the set pickles
    config = TrainConfig(
        space=str(_grey_space(tmp_path)), dataset="imagefolder", data=str(data), val_size=2, batch_size=4,
        augment="crop-flip", workers=1,
    )  # fmt: skip
    t = Trainer(config, tmp_path / "run")
    images, labels = next(t.batches(0, 0))
    assert images.shape == (4, 1, 16, 16)
    for x, i in zip(images, t.epoch_order(0)[:4].tolist()):
        want = expected(t.splits.train.folder.samples[t.splits.train.indices[i]][0])
        assert torch.allclose(x, torch.full_like(x, want), atol=1e-5)  # crop and flip keep a one-colour image
    for recipe in ("crop-flip-erase", "autoaugment", "randaugment"):
        aug = s.train.augmented(train_transform(recipe, "imagefolder", 16, 1), 0, 3)
        again = pickle.loads(pickle.dumps(aug))
        batch, _ = next(iter_batches(aug, 4, workers=1))
        assert batch.shape == (4, 1, 16, 16) and torch.equal(batch[0], again[0][0]), recipe


def test_a_one_channel_space_trains_evaluates_and_exports_on_an_image_folder(tmp_path):
    import numpy as np
    from PIL import Image

    from nastools.data import GRAY_MEAN, GRAY_STD, eval_transform

    data = make_folder(tmp_path / "data", size=20, mode="L")
    space, run = _grey_space(tmp_path), tmp_path / "run"
    r = _cli("train", "--space", space, "--dataset", "imagefolder", "--data", data, "--run", run, "--steps", 2,
             "--batch-size", 4, "--val-size", 2, "--eval-images", 2, "--workers", 1, "--no-progress")  # fmt: skip
    assert r.exit_code == 0, r.output
    r = _cli("search", "--run", run, "--flops", "1G", "--no-measure", "--population", 2, "--generations", 1,
             "--calib-images", 4, "--eval-images", 2, "--workers", 1)  # fmt: skip
    assert r.exit_code == 0, r.output
    arch = run / "search" / "best.json"
    r = _cli("eval", "--run", run, "--arch", arch, "--calib-images", 4, "--workers", 1)
    assert r.exit_code == 0 and "top-1" in r.output, r.output
    r = _cli("export", "--run", run, "--arch", arch, "--calib-images", 4, "--out", tmp_path / "m.onnx")
    assert r.exit_code == 0, r.output
    side = json.loads((tmp_path / "m.onnx.json").read_text())
    inp, acc = side["input"], side["accuracy"]
    res = inp["shape"][-1]
    assert inp["shape"] == ["batch", 1, res, res] and inp["color"] == "grayscale"
    assert inp["mean"] == list(GRAY_MEAN) and inp["std"] == list(GRAY_STD)
    assert "converted to grayscale" in inp["preprocessing"] and "weighted by luminance" in inp["preprocessing"]
    assert side["parity"]["passed"] and acc["model_top1"] == acc["torch_top1"], side
    # a deployment following the sidecar (docs/export.md) feeds the model what eval and export read
    img = Image.open(data / "val" / "bee" / "0.png").convert("L" if inp["color"] == "grayscale" else "RGB")
    short = int(1.14 * res)
    left = round((short - res) / 2)
    px = np.asarray(img.resize((short, short), Image.BILINEAR).crop((left, left, left + res, left + res)), np.float32)
    x = (px[..., None] / 255 - inp["mean"]) / inp["std"]
    assert np.allclose(x.transpose(2, 0, 1), eval_transform(res, channels=1)(img).numpy(), atol=1e-6)


def test_a_flat_folder_with_a_val_folder_asks_for_the_layout(tmp_path):
    """``DIR/<class>/`` beside ``DIR/val/`` is ambiguous (a test split, or a class named
    val): one line asks for ``DIR/train/``, not a split read both as a class and as the test set."""
    from nastools.data import load_splits

    flat = make_folder(tmp_path / "d", val=2)
    for c in ("ant", "bee", "cat"):
        (flat / "train" / c).rename(flat / c)
    (flat / "train").rmdir()
    with pytest.raises(NastoolsError, match=r"has a val/ folder but no train/ folder: put the training classes in .*train"):
        load_splits("imagefolder", flat, val_size=2, image_size=16)
    (flat / "val").rename(flat / "other")  # a flat folder alone is the training split
    assert load_splits("imagefolder", flat, val_size=2, image_size=16).num_classes == 4
