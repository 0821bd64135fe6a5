"""Residual kinds (nastools.space.residual) and how often an attentive sampler trains each
(nastools.train.coverage): the counts, the warning, the record in train.jsonl and the resume."""

import json
import random
from pathlib import Path

import pytest
import torch
from torch import nn

from nastools.data import load_splits
from nastools.space import load_space, space_from_dict
from nastools.space.residual import CONV_EVERYWHERE, has_pool_only_kinds, pool_only_stages, residual_kind
from nastools.supernet import Supernet
from nastools.supernet.static import Shortcut
from nastools.train.coverage import KindCoverage, left_behind_message
from nastools.train.trainer import TrainConfig, Trainer

torch.set_num_threads(1)

TINY = {
    "name": "tinykinds",
    "input_channels": 1,
    "num_classes": 10,
    "resolutions": [16],
    "stem": {"widths": [8, 16], "kernel": 3, "stride": 2},
    "stages": [
        {"name": "mb1", "widths": [8, 16], "depths": [1, 2], "kernels": [3, 5], "expands": [1], "stride": 1, "se": False},
        {"name": "mb2", "widths": [16, 24], "depths": [1, 2], "kernels": [3, 5], "expands": [2, 4], "stride": 2, "se": False},
    ],
    "head": {"widths": [32, 64], "expand": 2},
}


def _arch(space, widths, stem):
    d = space.min_arch().to_dict()
    d["stem"] = stem
    for st, w in zip(d["stages"], widths):
        st["width"] = w
    return space.arch_from_dict(d)


def test_pool_only_stages_are_the_stride_2_stages_whose_residual_path_has_no_convolution(fmnist, attentivenas):
    """The kind names exactly the stages whose extracted first block adds an average pool
    alone on its residual path (no 1x1 convolution)."""
    cases = {
        (8, 16, 32, 64, 96): (),  # the min arch: every stride-2 stage widens
        (16, 16, 32, 64, 96): ("mb2",),
        (8, 32, 32, 64, 96): ("mb3",),
        (24, 24, 32, 64, 96): ("mb2",),
    }
    net = Supernet(fmnist)
    for widths, want in cases.items():
        arch = _arch(fmnist, widths, stem=8)
        assert pool_only_stages(fmnist, arch) == want
        assert residual_kind(fmnist, arch) == (f"pool at {', '.join(want)}" if want else CONV_EVERYWHERE)
        pool_only = [
            m
            for m in net.extract(arch).modules()
            if isinstance(m, Shortcut) and not isinstance(m.pool, nn.Identity) and isinstance(m.conv, nn.Identity)
        ]
        assert len(pool_only) == len(want)
    a0 = attentivenas.arch_from_dict(json.loads((Path(__file__).parent.parent / "nastools/spaces/archs/attentivenas/a0.json").read_text()))
    assert residual_kind(attentivenas, a0) == CONV_EVERYWHERE


def test_a_space_has_pool_only_kinds_exactly_when_its_subnets_do(fmnist, attentivenas):
    """has_pool_only_kinds agrees with 3,000 sampled subnets, and is False for a space whose
    stride-2 stages always change the width."""
    rng = random.Random(0)
    for space in (fmnist, attentivenas, space_from_dict(TINY)):
        seen = any(pool_only_stages(space, space.sample(rng)) for _ in range(3000))
        assert has_pool_only_kinds(space) is seen is True
    d = json.loads(json.dumps(TINY))
    d["stages"][1]["widths"] = [24, 32]
    assert has_pool_only_kinds(space_from_dict(d)) is False


def test_coverage_counts_each_kinds_share_of_the_candidates_and_flags_a_kind_left_behind(fmnist):
    conv, pool = _arch(fmnist, (8, 16, 32, 64, 96), 8), _arch(fmnist, (8, 32, 32, 64, 96), 8)
    cov = KindCoverage()
    for _ in range(30):  # one pool candidate in three, never trained: expected 10, picked 0
        cov.offer(fmnist, [conv, pool, conv], conv)
    assert cov.to_dict() == {CONV_EVERYWHERE: [30, 20.0], "pool at mb3": [0, 10.0]}
    assert cov.left_behind() == [("pool at mb3", 0, pytest.approx(10.0))]
    assert cov.left_behind(min_expected=11) == []  # too few offers to tell
    for _ in range(9):
        cov.offer(fmnist, [pool, pool, pool], pool)
    assert cov.left_behind() == [("pool at mb3", 9, pytest.approx(19.0))]  # under half the random rate
    cov.offer(fmnist, [pool, pool, pool], pool)
    assert cov.left_behind() == []  # 10 of 20: half, no longer under it
    again = KindCoverage.from_dict(json.loads(json.dumps(cov.to_dict())))
    assert again.to_dict() == cov.to_dict() and KindCoverage.from_dict(None).to_dict() == {}
    msg = left_behind_message("attentive-best", "pool at mb3", 1, 16.4)
    assert "\n" not in msg and "pool at mb3" in msg and "1 time where" in msg and "about 16" in msg and "--sampler uniform" in msg


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("space") / "tinykinds.yaml"
    path.write_text(json.dumps(TINY))  # JSON is YAML
    splits = load_splits("fashion-mnist")
    splits.train = splits.train.subset(torch.arange(160))
    cfg = dict(space=str(path), batch_size=8, epochs=2, eval_images=50, calib_images=50, log_every=5, warmup_epochs=0.2)
    return cfg, splits


def _penalise(trainer, penalised_kind: str | None):
    """Score candidates by kind alone: the penalised kind 1, the others 0 (BestUp avoids it)."""

    def score_fn(x, soft):
        return lambda cands: [float(residual_kind(trainer.space, c) == penalised_kind) for c in cands]

    trainer.score_fn = score_fn
    return trainer


def test_training_warns_once_about_a_kind_the_sampler_leaves_behind_and_logs_the_counts(tiny_run, tmp_path):
    """A scorer that ranks the pool kind last: attentive-best trains it only when all 3
    candidates are of it, the warning comes once, and every epoch record carries the counts.
    Ranking the other kind last instead (so the pool kind is preferred) warns of nothing."""
    cfg, splits = tiny_run
    lines: list[str] = []
    t = _penalise(Trainer(TrainConfig(**cfg), tmp_path / "a", splits=splits), "pool at mb2")
    t.log = lines.append
    t.fit(progress=False)
    warnings = [ln for ln in lines if ln.startswith("warning:")]
    assert len(warnings) == 1 and "pool at mb2" in warnings[0]
    picked, expected = t.coverage.to_dict()["pool at mb2"]
    assert expected >= 10 and picked < 0.5 * expected
    assert sum(p for p, _ in t.coverage.to_dict().values()) == 2 * t.step  # 2 middles a step
    records = [json.loads(ln) for ln in (tmp_path / "a" / "train.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r["type"] == "epoch"]
    assert len(epochs) == 2 and epochs[-1]["kinds"] == t.coverage.to_dict()
    lines.clear()
    t = _penalise(Trainer(TrainConfig(**cfg), tmp_path / "b", splits=splits), CONV_EVERYWHERE)
    t.log = lines.append
    t.fit(progress=False)
    assert not [ln for ln in lines if ln.startswith("warning:")]
    picked, expected = t.coverage.to_dict()["pool at mb2"]
    assert picked > expected


def test_the_counts_survive_a_resume_and_other_samplers_keep_none(tiny_run, tmp_path):
    cfg, splits = tiny_run
    whole = _penalise(Trainer(TrainConfig(**cfg), tmp_path / "whole", splits=splits), "pool at mb2")
    whole.log = lambda line: None
    whole.fit(progress=False, evaluate=False)
    part = _penalise(Trainer(TrainConfig(**cfg), tmp_path / "part", splits=splits), "pool at mb2")
    part.log = lambda line: None
    part.fit(max_steps=13, progress=False, evaluate=False)
    rest = _penalise(Trainer.resume(tmp_path / "part", splits=splits), "pool at mb2")
    rest.log = lambda line: None
    assert rest.coverage.to_dict() == part.coverage.to_dict() != {}
    rest.fit(progress=False, evaluate=False)
    assert rest.step == whole.step and rest.coverage.to_dict() == whole.coverage.to_dict()
    uniform = Trainer(TrainConfig(**{**cfg, "sampler": "uniform"}), tmp_path / "u", splits=splits)
    assert uniform.coverage is None and uniform.state_dict()["kind_coverage"] is None
    plain = Trainer(TrainConfig(**{**cfg, "space": "fmnist"}), tmp_path / "f", splits=load_splits("fashion-mnist"))
    assert plain.coverage is not None  # fmnist has pool-only kinds
    assert load_space("fmnist").name == "fmnist"
