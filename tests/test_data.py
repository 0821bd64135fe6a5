"""Datasets and batches: real Fashion-MNIST from the Debian files, never downloaded."""

import pytest
import torch

from nastools.data import TensorImages, iter_batches, load_splits
from nastools.errors import NastoolsError


@pytest.fixture(scope="module")
def splits():
    return load_splits("fashion-mnist")


def test_fashion_mnist_splits_are_disjoint_and_complete(splits):
    assert (len(splits.train), len(splits.val), len(splits.test)) == (55000, 5000, 10000)
    assert (splits.num_classes, splits.channels, splits.image_size) == (10, 1, 28)
    assert splits.train.images.dtype == torch.uint8 and splits.train.images.shape[1:] == (1, 28, 28)
    # val is held out of the training set: no image appears in both (compare exact bytes)
    train_keys = {bytes(im.numpy()) for im in splits.train.images[:20000]}
    assert not any(bytes(im.numpy()) in train_keys for im in splits.val.images[:500])
    # the split is seeded: the same seed gives the same validation slice
    again = load_splits("fashion-mnist", seed=0, val_size=5000)
    assert torch.equal(again.val.labels, splits.val.labels)
    other = load_splits("fashion-mnist", seed=1, val_size=0.1)
    assert len(other.val) == 6000 and not torch.equal(other.val.labels[:100], splits.val.labels[:100])


def test_iter_batches_reads_in_order_normalised_and_stops(splits):
    ds = splits.test
    batches = list(iter_batches(ds, 300, max_images=1000))
    assert [len(y) for _, y in batches] == [300, 300, 300, 100]
    x = torch.cat([b[0] for b in batches])
    torch.testing.assert_close(x, ds.normalise(ds.images[:1000]))
    # normalised with the training set's statistics: roughly zero mean, unit std
    assert abs(float(x.mean())) < 0.1 and abs(float(x.std()) - 1) < 0.1
    order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))
    got = torch.cat([y for _, y in iter_batches(ds, 256, order=order, drop_last=True)])
    assert len(got) == len(ds) // 256 * 256 and torch.equal(got, ds.labels[order[: len(got)]])


def test_iter_batches_over_a_generic_dataset_matches_the_tensor_path(splits):
    from torch.utils.data import Subset

    generic = Subset(splits.test, list(range(100)))  # a Dataset that is not TensorImages
    assert not isinstance(generic, TensorImages)
    a = torch.cat([x for x, _ in iter_batches(generic, 32)])
    b = torch.cat([x for x, _ in iter_batches(splits.test, 32, max_images=100)])
    torch.testing.assert_close(a, b)


def test_bad_dataset_names_and_sizes(splits, tmp_path):
    with pytest.raises(NastoolsError, match="unknown dataset 'mnist': expected one of fashion-mnist, cifar10, imagefolder"):
        load_splits("mnist")
    with pytest.raises(NastoolsError, match="validation size 60000"):
        load_splits("fashion-mnist", val_size=60000)
    with pytest.raises(NastoolsError, match="CIFAR-10 not found"):
        load_splits("cifar10", tmp_path)


def _write_cifar(root, per_batch: int = 20, test: int = 30):
    """A folder in the layout and pickle format of the original cifar-10-batches-py (Python 2
    pickles: str keys, rows of 3072 bytes, the red plane then green then blue, each row-major),
    with seeded random pixels; its checksums are not the originals'."""
    import pickle

    import numpy as np

    rng = np.random.default_rng(0)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rows = {}
    for name, n in [*((f"data_batch_{i}", per_batch) for i in range(1, 6)), ("test_batch", test)]:
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=n)]
        (folder / name).write_bytes(pickle.dumps({"batch_label": name, "labels": labels, "data": data, "filenames": []}, protocol=2))
        rows[name] = (data, labels)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (folder / "batches.meta").write_bytes(
        pickle.dumps({"label_names": names, "num_cases_per_batch": per_batch, "num_vis": 3072}, protocol=2)
    )
    return rows, names


def test_cifar10_files_load_as_32px_rgb_with_their_labels_and_train(tmp_path, monkeypatch):
    """--dataset cifar10 on files in the original format: every training and test image and
    label as the files hold them (channel c, row y, column x = byte c*1024 + y*32 + x), the
    classes from batches.meta, CIFAR-10's normalisation, a validation slice held out of the
    training batches; and a 3-channel space trains on it and evaluates."""
    import torchvision.datasets.cifar as tv_cifar
    import yaml

    from nastools.data import STATS
    from nastools.space import load_space
    from nastools.train.trainer import TrainConfig, train

    rows, names = _write_cifar(tmp_path / "C")
    monkeypatch.setattr(tv_cifar.CIFAR10, "_check_integrity", lambda self: True)  # the originals' checksums
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda path, md5=None: True)
    s = load_splits("cifar10", tmp_path / "C", val_size=10)
    assert (len(s.train), len(s.val), len(s.test), s.channels, s.image_size, s.classes) == (90, 10, 30, 3, 32, tuple(names))
    data, labels = rows["test_batch"]
    assert torch.equal(s.test.images, torch.from_numpy(data).reshape(-1, 3, 32, 32)) and s.test.labels.tolist() == labels
    every = torch.cat([torch.from_numpy(rows[f"data_batch_{i}"][0]) for i in range(1, 6)]).reshape(-1, 3, 32, 32)
    held = {bytes(im.numpy()) for im in torch.cat([s.train.images, s.val.images])}
    assert held == {bytes(im.numpy()) for im in every}
    mean, std = STATS["cifar10"]
    torch.testing.assert_close(
        s.train.normalise(s.train.images[:2]),
        (s.train.images[:2] / 255 - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None],
    )

    d = load_space("fmnist").definition()
    d.update(name="cifar-small", input_channels=3, resolutions=[32])
    space = tmp_path / "cifar-small.yaml"
    space.write_text(yaml.safe_dump(d))
    cfg = TrainConfig(
        space=str(space), dataset="cifar10", data=str(tmp_path / "C"), batch_size=8, val_size=10, eval_images=10, calib_images=8
    )
    out = train(cfg, tmp_path / "run", max_steps=2, progress=False, log=lambda m: None)
    assert out["step"] == 2 and 0.0 <= out["top1"]["top1_max"] <= 1.0 and out["top1"]["partial"]
