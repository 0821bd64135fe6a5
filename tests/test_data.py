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
