"""Training-time augmentation: per-image, seeded, training batches only."""

import pytest
import torch
from test_train import TINY  # noqa: F401  (the tiny space YAML)

from nastools.augment import AUGMENTS, BatchAugmenter, image_seed, resolve, train_transform
from nastools.data import iter_batches, load_splits
from nastools.errors import NastoolsError
from nastools.train.trainer import TrainConfig, Trainer


@pytest.fixture(scope="module")
def splits():
    s = load_splits("fashion-mnist")
    s.train = s.train.subset(torch.arange(192))
    return s


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    p = tmp_path_factory.mktemp("space") / "tiny.yaml"
    p.write_text(TINY)
    return str(p)


def test_recipes_per_dataset_and_bad_names():
    assert resolve("auto", "fashion-mnist") == resolve("auto", "cifar10") == "crop-flip"
    assert resolve("auto", "imagefolder") == "autoaugment"
    assert resolve("none", "imagefolder") == "none" and train_transform("none", "fashion-mnist", 28) is None
    with pytest.raises(NastoolsError, match="--augment 'flip': expected one of " + ", ".join(AUGMENTS)):
        resolve("flip", "fashion-mnist")
    with pytest.raises(NastoolsError, match="--augment"):
        TrainConfig(augment="mixup").check()


def test_each_image_gets_its_own_parameters_reproducibly(splits):
    aug = BatchAugmenter("crop-flip", "fashion-mnist", 28, seed=0)
    same = splits.train.images[:1].repeat(64, 1, 1, 1)  # one image 64 times
    idx = torch.arange(64)
    out = aug(same, epoch=0, indices=idx)
    assert out.dtype == torch.uint8 and out.shape == same.shape
    distinct = {bytes(o.numpy()) for o in out}
    assert len(distinct) > 10  # a batched v2 call would give one crop for all 64
    torch.testing.assert_close(aug(same, epoch=0, indices=idx), out, rtol=0, atol=0)  # seeded
    assert not torch.equal(aug(same, epoch=1, indices=idx), out)  # another epoch, other crops
    assert not torch.equal(BatchAugmenter("crop-flip", "fashion-mnist", 28, seed=1)(same, epoch=0, indices=idx), out)
    # an image's augmentation depends on (seed, epoch, index) only, not on its batch
    alone = aug(same[5:6], epoch=0, indices=idx[5:6])
    assert torch.equal(alone[0], out[5])
    # the caller's random state is untouched
    torch.manual_seed(7)
    expect = torch.rand(3)
    torch.manual_seed(7)
    aug(same, epoch=0, indices=idx)
    assert torch.equal(torch.rand(3), expect)


def test_crop_flip_keeps_the_image_content():
    """A padded crop shifts by at most the padding; a flip mirrors: the pixels are the image's."""
    img = torch.arange(28 * 28, dtype=torch.int32).remainder(251).add(1).to(torch.uint8).view(1, 1, 28, 28)
    aug = BatchAugmenter("crop-flip", "fashion-mnist", 28, seed=3)
    for e in range(8):
        out = aug(img, epoch=e, indices=torch.tensor([0]))[0, 0]
        found = False
        for flip in (False, True):
            src = img[0, 0].flip(-1) if flip else img[0, 0]
            padded = torch.nn.functional.pad(src, (2, 2, 2, 2))
            for dy in range(5):
                for dx in range(5):
                    found |= torch.equal(padded[dy : dy + 28, dx : dx + 28], out)
        assert found, e


def test_erasing_and_autoaugment_recipes_run_on_grey_images(splits):
    x = splits.train.images[:16]
    for recipe in ("crop-flip-erase", "autoaugment", "randaugment"):
        out = BatchAugmenter(recipe, "fashion-mnist", 28, seed=0)(x, epoch=0, indices=torch.arange(16))
        assert out.shape == x.shape and out.dtype == torch.uint8 and not torch.equal(out, x), recipe


def test_training_batches_are_augmented_and_none_gives_the_plain_batches(tiny_path, splits, tmp_path):
    plain = Trainer(TrainConfig(space=tiny_path, batch_size=32, augment="none"), tmp_path / "a", splits=splits)
    auto = Trainer(TrainConfig(space=tiny_path, batch_size=32), tmp_path / "b", splits=splits)
    assert auto.config.augment == "auto"
    order = plain.epoch_order(0)[: plain.steps_per_epoch * 32]
    expect = list(iter_batches(splits.train, 32, order=order))  # the batches without augmentation
    got_plain, got_auto = list(plain.batches(0, 0)), list(auto.batches(0, 0))
    assert len(got_plain) == len(got_auto) == len(expect) == 6
    for (xp, yp), (xa, ya), (xe, ye) in zip(got_plain, got_auto, expect):
        assert torch.equal(xp, xe) and torch.equal(yp, ye) and torch.equal(ya, ye)
        assert xa.shape == xe.shape and not torch.equal(xa, xe)
    # a resumed epoch (skip 2 batches) sees the same augmented images as an uninterrupted one
    for (xa, _), (xs, _) in zip(got_auto[2:], auto.batches(0, 2)):
        assert torch.equal(xa, xs)


def test_evaluation_never_augments(tiny_path, splits, tmp_path):
    a = Trainer(
        TrainConfig(space=tiny_path, batch_size=32, augment="none", eval_images=100, calib_images=64), tmp_path / "a", splits=splits
    )
    b = Trainer(
        TrainConfig(space=tiny_path, batch_size=32, augment="crop-flip-erase", eval_images=100, calib_images=64),
        tmp_path / "b",
        splits=splits,
    )
    b.model.load_state_dict(a.model.state_dict())
    assert a.evaluate() == b.evaluate()


def test_a_run_from_before_augmentation_resumes_without_it(tiny_path, splits, tmp_path):
    t = Trainer(
        TrainConfig(space=tiny_path, batch_size=32, epochs=1, augment="none", eval_images=50, calib_images=50),
        tmp_path / "r",
        splits=splits,
    )
    t.fit(max_steps=1, progress=False)
    data = torch.load(tmp_path / "r" / "supernet.pt", weights_only=True)
    del data["train"]["config"]["augment"]  # as written before --augment existed
    torch.save(data, tmp_path / "r" / "supernet.pt")
    assert Trainer.resume(tmp_path / "r", splits=splits).config.augment == "none"


def test_image_folder_training_view_is_seeded_per_image(tmp_path):
    from PIL import Image

    from nastools.augment import AUTO

    for c in ("a", "b"):
        (tmp_path / "train" / c).mkdir(parents=True)
        for i in range(6):
            g = torch.Generator().manual_seed(i + (100 if c == "b" else 0))
            Image.fromarray(torch.randint(0, 255, (40, 40, 3), generator=g, dtype=torch.uint8).numpy()).save(
                tmp_path / "train" / c / f"{i}.png"
            )
    s = load_splits("imagefolder", tmp_path, val_size=2, image_size=32)
    tf = train_transform(AUTO["imagefolder"], "imagefolder", 32)
    view = s.train.augmented(tf, seed=0, epoch=0)
    x0, y0 = view[0]
    assert x0.shape == (3, 32, 32) and x0.dtype == torch.float32 and y0 == s.train[0][1]
    assert torch.equal(view[0][0], x0)  # seeded: the same image, the same augmentation
    assert not torch.equal(s.train.augmented(tf, seed=0, epoch=1)[0][0], x0)
    assert not torch.equal(s.train[0][0], x0)  # the plain split keeps the evaluation transform
    assert torch.equal(s.train[0][0], s.train[0][0])
    assert image_seed(0, 0, 1) != image_seed(0, 1, 0) != image_seed(1, 0, 0)
