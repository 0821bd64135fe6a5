"""Bad dataset folders give one-line NastoolsErrors that name the file, never a traceback.

The Fashion-MNIST folders are built from the real Debian files: a "mini" copy (the first
few images and labels of each file, re-headed) keeps the loads fast, and the sweep's
broken files are the real ones truncated or replaced.
"""

import gzip
import os
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from nastools.data import FMNIST_DIR, FMNIST_FILES, load_splits
from nastools.errors import NastoolsError

MINI = {"train": 120, "t10k": 40}  # images per split in the mini copy


def _mini_idx(name: str, n: int) -> bytes:
    """The first ``n`` items of a real Fashion-MNIST IDX file, as an IDX file of ``n`` items."""
    nd, item = (3, 28 * 28) if "images" in name else (1, 1)
    with gzip.open(FMNIST_DIR / f"{name}.gz") as fh:
        head = fh.read(4 + 4 * nd)
        body = fh.read(n * item)
    return head[:4] + n.to_bytes(4, "big") + head[8:] + body


@pytest.fixture(scope="module")
def mini_source(tmp_path_factory):
    src = tmp_path_factory.mktemp("mini-fmnist")
    for name in FMNIST_FILES:
        (src / f"{name}.gz").write_bytes(gzip.compress(_mini_idx(name, MINI[name.split("-")[0]])))
    return src


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    path = tmp_path / "cache"
    monkeypatch.setenv("NASTOOLS_CACHE", str(path))
    return path


@pytest.fixture
def mini(tmp_path, mini_source):
    """A fresh, writable copy of the mini Fashion-MNIST folder (.gz files)."""
    return Path(shutil.copytree(mini_source, tmp_path / "D"))


def _load(folder):
    return load_splits("fashion-mnist", folder, val_size=20)


def _error(folder, match):
    with pytest.raises(NastoolsError, match=match) as info:
        _load(folder)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_mini_copy_loads(mini):
    s = _load(mini)
    assert (len(s.train), len(s.val), len(s.test)) == (100, 20, 40)
    assert s.test.images.shape[1:] == (1, 28, 28)


def test_truncated_gz_is_named_and_leaves_no_temp_file(mini, cache):
    # the sweep's case: the real train images cut after 5000 bytes
    (mini / "train-images-idx3-ubyte.gz").write_bytes((FMNIST_DIR / "train-images-idx3-ubyte.gz").read_bytes()[:5000])
    msg = _error(mini, r"Fashion-MNIST file '.*/D/train-images-idx3-ubyte\.gz' is truncated or corrupt")
    assert "replace it" in msg
    assert not [p.name for p in cache.rglob(".*.tmp*")]
    # and it stays an error (no half-written file is taken for a good one next time)
    _error(mini, r"train-images-idx3-ubyte\.gz' is truncated or corrupt")


def test_truncated_gz_through_the_cli_is_one_error_line_not_aborted(mini, tmp_path):
    from nastools.cli import main

    (mini / "t10k-images-idx3-ubyte.gz").write_bytes((FMNIST_DIR / "t10k-images-idx3-ubyte.gz").read_bytes()[:5000])
    args = ["train", "--data", str(mini), "--run", str(tmp_path / "run"), "--steps", "1", "--no-progress"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 1, r.output
    assert "Aborted" not in r.output and "Traceback" not in r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: Fashion-MNIST file ") and "t10k-images-idx3-ubyte.gz' is truncated" in lines[0]


def test_garbage_gz_is_not_an_idx_file(mini):
    (mini / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"garbage\n"))  # echo garbage | gzip
    _error(mini, r"Fashion-MNIST file '.*/t10k-images-idx3-ubyte\.gz' is not an IDX file")


def test_a_file_that_is_not_gzip_is_named(mini):
    (mini / "train-labels-idx1-ubyte.gz").write_text("not gzip\n")
    _error(mini, r"'.*/train-labels-idx1-ubyte\.gz' is truncated or corrupt \(Not a gzipped file")


def test_idx_files_are_checked_against_their_headers(mini):
    good = _mini_idx("t10k-images-idx3-ubyte", MINI["t10k"])
    path = mini / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(good[:5000]))  # a whole gzip stream of a cut IDX file
    _error(mini, r"t10k-images-idx3-ubyte\.gz' is truncated: its header says 40 images \(31376 bytes unpacked\) but it holds 5000 bytes")
    path.write_bytes(gzip.compress(good + b"x"))
    _error(mini, r"t10k-images-idx3-ubyte\.gz' is longer than its header says")
    path.write_bytes(gzip.compress(_mini_idx("t10k-labels-idx1-ubyte", 40)))  # labels where images belong
    _error(mini, r"t10k-images-idx3-ubyte\.gz' is an IDX file of type 0x08 with 1 dimension\(s\), not of unsigned bytes with 3")
    path.write_bytes(gzip.compress(good[:10]))
    _error(mini, r"t10k-images-idx3-ubyte\.gz' is truncated: it ends inside its IDX header")
    path.write_bytes(gzip.compress(good))
    (mini / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_mini_idx("t10k-labels-idx1-ubyte", 39)))
    _error(mini, r"t10k-images-idx3-ubyte\.gz' and '.*t10k-labels-idx1-ubyte\.gz' do not match: 40 images but 39 labels")


def test_a_fixed_file_replaces_the_stale_cache_entry(mini, cache):
    path = mini / "t10k-images-idx3-ubyte.gz"
    good = path.read_bytes()
    path.write_bytes(gzip.compress(b"garbage\n"))
    _error(mini, "is not an IDX file")
    path.write_bytes(good)  # the good .gz copied back: a new size
    first = _load(mini)
    assert len(first.test) == 40
    cached = next(cache.rglob("t10k-labels-idx1-ubyte"))
    before = cached.stat().st_mtime_ns
    _load(mini)  # nothing changed: the cache is reused, not unpacked again
    assert cached.stat().st_mtime_ns == before
    # same size, another mtime (a label changed in place): unpacked again
    labels = mini / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(_mini_idx("t10k-labels-idx1-ubyte", 40))
    raw[8] = (raw[8] + 1) % 10
    st = labels.stat()
    labels.write_bytes(gzip.compress(bytes(raw), mtime=0))
    os.utime(labels, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    again = _load(mini)
    assert int(again.test.labels[0]) == raw[8] != int(first.test.labels[0])
    assert torch.equal(again.test.labels[1:], first.test.labels[1:])


def test_unpacked_files_are_checked_too(tmp_path, mini):
    plain = tmp_path / "P" / "FashionMNIST" / "raw"
    plain.mkdir(parents=True)
    for name in FMNIST_FILES:
        (plain / name).write_bytes(gzip.decompress((mini / f"{name}.gz").read_bytes()))
    assert len(_load(tmp_path / "P").test) == 40
    (plain / "train-images-idx3-ubyte").write_bytes(b"garbage\n")
    _error(tmp_path / "P", r"'.*/P/FashionMNIST/raw/train-images-idx3-ubyte' is not an IDX file")


def test_a_missing_file_is_named(mini):
    (mini / "t10k-labels-idx1-ubyte.gz").unlink()
    msg = _error(mini, r"Fashion-MNIST in '.*/D' is incomplete: t10k-labels-idx1-ubyte\(\.gz\) missing")
    assert "not found" not in msg
    (mini / "train-images-idx3-ubyte.gz").unlink()
    _error(mini, r"incomplete: train-images-idx3-ubyte\(\.gz\), t10k-labels-idx1-ubyte\(\.gz\) missing")


def test_mixed_gz_and_unpacked_files(mini):
    gz = mini / "t10k-labels-idx1-ubyte.gz"
    (mini / "t10k-labels-idx1-ubyte").write_bytes(gzip.decompress(gz.read_bytes()))
    gz.unlink()
    _error(mini, r"mixes unpacked and \.gz files \(train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte only as \.gz\)")


def test_empty_or_missing_folder(tmp_path):
    _error(tmp_path, r"Fashion-MNIST not found in '.*': pass the folder holding train-images-idx3-ubyte\(\.gz\)$")
    _error(tmp_path / "nope", r"not found in '.*/nope' \(no such folder\)")


def test_corrupt_cifar_folder_names_missing_and_corrupt_files(tmp_path):
    batches = tmp_path / "C" / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    (batches / "data_batch_1").write_text("x\n")  # the sweep's case
    with pytest.raises(NastoolsError) as info:
        load_splits("cifar10", tmp_path / "C")
    msg = str(info.value)
    assert msg.startswith(
        f"CIFAR-10 in {str(batches)!r} is incomplete and corrupt: missing data_batch_2, data_batch_3, data_batch_4, data_batch_5, test_batch, batches.meta; corrupt (checksum mismatch) data_batch_1;"
    )
    assert "download=True" not in msg and "nastools never downloads" in msg
    for name in ("data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch", "batches.meta"):
        (batches / name).write_text("x\n")
    with pytest.raises(
        NastoolsError,
        match=r"is corrupt: corrupt \(checksum mismatch\) data_batch_1, .*, batches\.meta; unpack the original cifar-10-python\.tar\.gz",
    ) as info:
        load_splits("cifar10", tmp_path / "C")
    assert "download" not in str(info.value).replace("never downloads", "")


def test_image_folder_too_small_for_the_validation_split(tmp_path):
    from PIL import Image

    for c in range(10):
        (tmp_path / "I" / "train" / f"c{c}").mkdir(parents=True)
        Image.new("RGB", (8, 8), (20 * c, 0, 0)).save(tmp_path / "I" / "train" / f"c{c}" / "a.png")
    with pytest.raises(NastoolsError) as info:
        load_splits("imagefolder", tmp_path / "I")
    msg = str(info.value)
    assert "too small" in msg and "holds out 5000" in msg and "has only 10" in msg and "at least 5001 images" in msg
    assert "validation size" not in msg and str(tmp_path / "I" / "train") in msg
    s = load_splits("imagefolder", tmp_path / "I", val_size=2, image_size=8)  # the library call can ask for fewer
    assert (len(s.train), len(s.val)) == (8, 2)


def test_validation_size_must_be_a_number(mini):
    for bad in (float("nan"), "5", True):
        with pytest.raises(NastoolsError, match="validation size .*: expected a number of images or a fraction below 1"):
            load_splits("fashion-mnist", mini, val_size=bad)
