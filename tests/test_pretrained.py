"""Shipped supernets (nastools.pretrained) and the fast subnet evaluator of search."""

import json
import random
from pathlib import Path

import pytest
import torch
from conftest import TINY_SPACE

from nastools.checkpoint import find_checkpoint, load_checkpoint, save_checkpoint
from nastools.errors import NastoolsError
from nastools.pretrained import DEMO_SUPERNET, list_pretrained, package, pretrained_checkpoint, weights_only
from nastools.space import space_from_dict


@pytest.fixture(scope="module")
def tiny_trained(tmp_path_factory):
    """A tiny supernet trained a few steps by nastools train (BN statistics and weights that
    make subnets differ), as a run folder."""
    from nastools.data import load_splits
    from nastools.train.trainer import TrainConfig, Trainer

    d = tmp_path_factory.mktemp("runs")
    space_file = d / "tiny.yaml"
    import yaml

    space_file.write_text(yaml.safe_dump(TINY_SPACE))
    splits = load_splits("fashion-mnist")
    splits.train = splits.train.subset(torch.arange(2048))
    t = Trainer(TrainConfig(space=str(space_file), batch_size=64, epochs=1, eval_images=200, calib_images=200), d / "run", splits=splits)
    t.fit(progress=False)
    return d / "run", t


def test_inference_subnet_scores_like_the_supernet(tiny_trained, monkeypatch):
    from nastools.checkpoint import load_supernet
    from nastools.data import load_splits
    from nastools.search import evaluator as ev
    from nastools.search.evaluator import SubnetEvaluator, inference_subnet

    run, _ = tiny_trained
    net = load_supernet(run)
    splits = load_splits("fashion-mnist")
    fast = SubnetEvaluator(net, splits, calib_images=256, eval_images=600)
    slow = SubnetEvaluator(net, splits, calib_images=256, eval_images=600, fast=False)
    rng = random.Random(0)
    archs = [net.space.min_arch(), net.space.max_arch()] + [net.space.sample(rng) for _ in range(4)]
    scores = [(fast(a), slow(a)) for a in archs]
    assert all(f == s for f, s in scores), scores
    assert len({f for f, _ in scores}) > 1 and max(f for f, _ in scores) > 20  # trained: subnets differ, above chance (10%)
    # images too many to keep prepared are streamed: the same top-1
    monkeypatch.setattr(ev, "DATA_CACHE_BYTES", 0)
    streamed = SubnetEvaluator(net, splits, calib_images=256, eval_images=600)
    assert [streamed(a) for a in archs[:3]] == [f for f, _ in scores[:3]]
    assert not streamed._prepared
    # the folded, channels-last static subnet computes the supernet's logits
    a = archs[2]
    net.set_active(a)
    x = torch.randn(8, 1, 28, 28)
    from nastools.train.evaluate import prepare_input

    with torch.no_grad():
        ref = net.eval()(prepare_input(net, x))
        sub = inference_subnet(net, a)
        got = sub(prepare_input(sub, x))
    assert sub.stem.conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in sub.modules())
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)


def test_fast_scorer_recalibrates_the_extracted_subnet_as_the_supernet_and_leaves_it_alone(tiny_trained):
    from nastools.checkpoint import load_supernet
    from nastools.data import load_splits
    from nastools.search.evaluator import SubnetEvaluator, heap_allocations, inference_subnet, recalibrated_subnet
    from nastools.train.evaluate import calibration_batches, prepare_input, recalibrate_bn

    run, _ = tiny_trained
    net = load_supernet(run)
    splits = load_splits("fashion-mnist")
    arch = net.space.sample(random.Random(3))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    active = net.active_arch
    top1 = SubnetEvaluator(net, splits, calib_images=500, eval_images=300)(arch)
    with heap_allocations():
        sub = recalibrated_subnet(net, arch, calibration_batches(splits.train, 250, 500))
        scorer = inference_subnet(net, arch, calibration_batches(splits.train, 250, 500))
    # the fast path changes nothing in the supernet: weights, statistics, active arch
    assert net.active_arch == active
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    # recalibrating the supernet on the same batches gives the same statistics...
    net.set_active(arch)
    recalibrate_bn(net, calibration_batches(splits.train, 250, 500))
    ref = net.extract(arch)
    bns = [(m, r) for m, r in zip(sub.modules(), ref.modules()) if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) > 5
    for got, want in bns:
        torch.testing.assert_close(got.running_mean, want.running_mean, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(got.running_var, want.running_var, atol=1e-4, rtol=1e-4)
    # ...the same logits and the same top-1
    x, _ = next(iter(calibration_batches(splits.val, 64, 64)))
    with torch.no_grad():
        torch.testing.assert_close(scorer(prepare_input(scorer, x)), net.eval()(prepare_input(net, x)), atol=1e-4, rtol=1e-4)
    assert top1 == SubnetEvaluator(net, splits, calib_images=500, eval_images=300, fast=False)(arch)


def test_weights_only_checkpoint_loads_safely_and_keeps_what_search_needs(tiny_trained, tmp_path):
    run, t = tiny_trained
    dest = package(run, tmp_path / "ship", {"summary": "tiny test supernet", "command": "nastools train ..."})
    data = torch.load(dest / "supernet.pt", weights_only=True)
    assert set(data) == {"format", "space", "fingerprint", "model", "trained"}
    assert "optimizer" not in json.dumps(list(data["trained"]))
    assert data["fingerprint"] == t.space.fingerprint and data["trained"]["step"] == t.step
    for k, v in t.model.state_dict().items():
        assert torch.equal(data["model"][k], v), k
    assert (dest / "train.jsonl").read_text() == (run / "train.jsonl").read_text()
    assert "nastools train ..." in (dest / "README.md").read_text()
    # the run's data config comes along: search and eval use the run's validation slice
    from nastools.checkpoint import run_splits

    assert run_splits(data).seed == t.config.seed
    assert weights_only(load_checkpoint(run))["trained"]["history"] == t.history


def test_a_bare_run_name_reads_the_shipped_supernet_unless_the_user_has_one(tmp_path, monkeypatch):
    import nastools.pretrained as P

    space = space_from_dict(TINY_SPACE)
    from nastools.supernet import Supernet

    ship = tmp_path / "pkg"
    (ship / "tiny-shipped").mkdir(parents=True)
    save_checkpoint(ship / "tiny-shipped" / "supernet.pt", Supernet(space))
    (ship / "tiny-shipped" / "card.json").write_text(json.dumps({"summary": "test"}))
    monkeypatch.setattr(P, "pretrained_dir", lambda: ship)
    monkeypatch.chdir(tmp_path)
    assert list_pretrained() == ["tiny-shipped"]
    assert find_checkpoint("tiny-shipped") == ship / "tiny-shipped" / "supernet.pt"
    assert load_checkpoint("tiny-shipped")["fingerprint"] == space.fingerprint
    assert pretrained_checkpoint("nothing") is None and find_checkpoint("nothing") == Path("runs/nothing/supernet.pt")
    # the user's own run of that name comes first
    save_checkpoint(tmp_path / "runs" / "tiny-shipped" / "supernet.pt", Supernet(space))
    assert find_checkpoint("tiny-shipped") == Path("runs/tiny-shipped/supernet.pt")
    (tmp_path / "runs" / "tiny-shipped" / "supernet.pt").unlink()
    # a shipped folder without its weights, or with a corrupt file, is one line
    (ship / "tiny-shipped" / "supernet.pt").unlink()
    with pytest.raises(NastoolsError, match="shipped supernet 'tiny-shipped' has no weights file .*reinstall nastools"):
        load_checkpoint("tiny-shipped")
    (ship / "tiny-shipped" / "supernet.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(NastoolsError, match="corrupted or not a nastools checkpoint"):
        load_checkpoint("tiny-shipped")


def test_the_shipped_fmnist_supernet_is_trained():
    """The shipped supernet loads with weights_only=True, is of the fmnist space, and its max
    subnet scores >= 90% on the first 1,000 test images after BN recalibration."""
    from nastools.space import load_space
    from nastools.train.evaluate import evaluate_subnet

    assert DEMO_SUPERNET in list_pretrained()
    path = pretrained_checkpoint(DEMO_SUPERNET)
    data = torch.load(path, weights_only=True)
    fmnist = load_space("fmnist")
    assert data["fingerprint"] == fmnist.fingerprint
    assert path.stat().st_size <= 25 * 2**20
    res = evaluate_subnet(fmnist.max_arch(), DEMO_SUPERNET, max_images=1000, calib_images=1000)
    assert res["top1"] >= 0.90, res
