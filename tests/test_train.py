"""Supernet training: samplers, KD loss, the sandwich step, exact resume, bad input.

A tiny search space (2 stages, 16-20 px) keeps each step well under a second on real
Fashion-MNIST images.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from nastools.cli import main
from nastools.data import load_splits
from nastools.errors import NastoolsError
from nastools.space import load_space, space_from_dict
from nastools.supernet import Supernet
from nastools.train.evaluate import calibration_batches, evaluate_subnet, evaluate_top1, recalibrate_bn
from nastools.train.losses import kd_loss, smoothed_ce
from nastools.train.samplers import AttentiveSampler, FlopsDistribution, UniformSampler, make_sampler
from nastools.train.trainer import TrainConfig, Trainer, lr_at, parse_duration

torch.set_num_threads(1)  # tiny nets: one thread is faster than two competing ones

TINY = """
name: tiny
input_channels: 1
num_classes: 10
resolutions: [16, 20]
act: swish
se: {ratio: 0.25, gate: hsigmoid, divisor: 8}
stem: {widths: [8, 16], kernel: 3, stride: 2}
stages:
  - {name: mb1, widths: [8, 16], depths: [1, 2], kernels: [3, 5], expands: [1], stride: 1, se: false}
  - {name: mb2, widths: [16, 24], depths: [1, 2], kernels: [3, 5], expands: [2, 4], stride: 2, se: true}
head: {widths: [32, 64], expand: 2}
dropout: 0.1
drop_connect: 0.1
"""


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    p = tmp_path_factory.mktemp("space") / "tiny.yaml"
    p.write_text(TINY)
    return str(p)


@pytest.fixture(scope="module")
def splits():
    s = load_splits("fashion-mnist")
    # a small training split: 5 steps of 32 per epoch, so runs cross epoch boundaries
    s.train = s.train.subset(torch.arange(160))
    return s


def tiny_config(space, **kw):
    base = dict(space=space, batch_size=32, epochs=2, eval_images=50, calib_images=50, log_every=1, warmup_epochs=0.2)
    return TrainConfig(**{**base, **kw})


# --------------------------------------------------------------------------- losses


def test_kd_loss_is_soft_cross_entropy_with_the_kl_gradient():
    torch.manual_seed(0)
    s = torch.randn(6, 10, requires_grad=True)
    t = torch.randn(6, 10, requires_grad=True)
    loss = kd_loss(s, t)
    p = F.softmax(t, 1)
    expected = -(p * F.log_softmax(s, 1)).sum(1).mean()
    torch.testing.assert_close(loss, expected)
    # = KL(p || q) + H(p)
    kl = F.kl_div(F.log_softmax(s, 1), p, reduction="batchmean")
    entropy = -(p * p.log()).sum(1).mean()
    torch.testing.assert_close(loss, kl + entropy)
    loss.backward()
    torch.testing.assert_close(s.grad, (F.softmax(s, 1) - p).detach() / 6)
    assert t.grad is None  # the teacher is detached
    # a student equal to its teacher gets no gradient
    s2 = t.detach().clone().requires_grad_(True)
    kd_loss(s2, t).backward()
    assert s2.grad.abs().max() < 1e-7


def test_smoothed_ce_spreads_0_1_over_the_classes():
    logits = torch.zeros(1, 10)
    logits[0, 3] = 5.0
    y = torch.tensor([3])
    logp = F.log_softmax(logits, 1)[0]
    expected = -(0.9 * logp[3] + 0.1 * logp.mean())
    torch.testing.assert_close(smoothed_ce(logits, y, 0.1), expected)


# --------------------------------------------------------------------------- samplers


def test_flops_targets_follow_the_space_distribution(fmnist):
    dist = FlopsDistribution.estimate(fmnist, samples=4000, bins=10, seed=1)
    assert abs(sum(dist.probs) - 1) < 1e-9 and len(dist.edges) == 11
    # the histogram is what uniform sampling gives (an independent sample agrees)
    rng = random.Random(2)
    counts = [0] * 10
    for _ in range(4000):
        counts[dist.bin_of(fmnist.flops(fmnist.sample(rng)))] += 1
    assert max(abs(c / 4000 - p) for c, p in zip(counts, dist.probs)) < 0.03
    # the drawn targets follow the histogram, not a uniform spread over the FLOPs range
    rng = random.Random(3)
    drawn = [0] * 10
    for _ in range(20000):
        drawn[dist.bin_of(dist.sample(rng))] += 1
    assert max(abs(d / 20000 - p) for d, p in zip(drawn, dist.probs)) < 0.01
    assert max(dist.probs) > 2 * min(dist.probs)  # a real (non-uniform) distribution


def test_a_space_whose_subnets_all_cost_the_same_has_one_flops_bin():
    # (width 0 bins once divided by zero in the default attentive sampler)
    from conftest import TINY_SPACE

    one = space_from_dict(
        {
            **TINY_SPACE,
            "stem": {"widths": [8], "kernel": 3, "stride": 2},
            "head": {"widths": [32], "expand": 2},
            "stages": [{"name": "mb1", "widths": [8], "depths": [1], "kernels": [3], "expands": [1], "stride": 1, "se": False}],
        }
    )
    dist = FlopsDistribution.estimate(one, samples=50)
    assert dist.probs == (1.0,) and dist.sample(random.Random(0)) == one.flops(one.min_arch())


def test_attentive_picks_the_best_or_worst_scoring_candidate(fmnist):
    dist = FlopsDistribution.estimate(fmnist, samples=2000)
    score = lambda cands: [fmnist.flops(a) for a in cands]  # noqa: E731
    for worst in (False, True):
        s = AttentiveSampler(fmnist, worst=worst, candidates=3, flops_dist=dist)
        for seed in range(5):
            rng = random.Random(seed)
            cands = s.propose(random.Random(seed))
            picked = s.middle(rng, score)
            flops = [fmnist.flops(a) for a in cands]
            assert fmnist.flops(picked) == (max(flops) if worst else min(flops))


def test_uniform_sandwich_is_max_middles_min_and_seeded(fmnist):
    s = UniformSampler(fmnist)
    a = s.step_archs(5, random.Random(7))
    b = s.step_archs(5, random.Random(7))
    assert a == b and len(a) == 5
    assert a[0] == fmnist.max_arch() and a[-1] == fmnist.min_arch()
    assert len({x.key for x in a[1:-1]}) == 3
    with pytest.raises(NastoolsError, match="unknown sampler 'best'.*uniform, attentive-best, attentive-worst"):
        make_sampler("best", fmnist)


@pytest.mark.parametrize("worst", [False, True])
def test_attentive_step_trains_the_candidate_with_the_lowest_loss(tiny_path, splits, worst):
    """Recompute each candidate's KD loss on a copy of the pre-step weights: the trained middle
    is the argmin (BestUp) or argmax (WorstUp) of those losses."""
    cfg = tiny_config(tiny_path, sampler="attentive-worst" if worst else "attentive-best", score_images=16)
    t = Trainer(cfg, "/nonexistent-run", splits=splits)
    x, y = next(t.batches(0, 0))
    before = {k: v.clone() for k, v in t.model.state_dict().items()}
    rng_state = torch.get_rng_state()
    proposals = []
    propose = t.sampler.propose
    t.sampler.propose = lambda rng: proposals.append(propose(rng)) or proposals[-1]
    res = t.train_step(x, y)
    assert len(proposals) == 2 and len(res.archs) == 4
    ref = Supernet(t.space).to(memory_format=torch.channels_last)
    ref.load_state_dict(before)
    ref.train()
    xx = x.contiguous(memory_format=torch.channels_last)
    torch.set_rng_state(rng_state)  # the same dropout masks for the teacher
    ref.set_active(t.space.max_arch(), dropout=t.space.dropout, drop_connect=t.space.drop_connect)
    with torch.no_grad():
        soft = ref(xx)
        for cands, chosen, scores in zip(proposals, res.archs[1:3], res.scores):
            losses = []
            for a in cands:
                ref.set_active(a)
                losses.append(float(kd_loss(ref(xx[:16]), soft[:16])))
            assert losses == pytest.approx(scores, rel=1e-4)
            pick = max if worst else min
            assert chosen == cands[losses.index(pick(losses))]
            assert len(set(round(v, 6) for v in losses)) > 1  # the choice was not a tie
    # the step changed the weights
    assert any(not torch.equal(before[k], v) for k, v in t.model.state_dict().items())


def test_rank_by_predictor_picks_the_highest_predicted_accuracy(tiny_path, splits, tmp_path):
    space = load_space(tiny_path)
    rng = random.Random(0)
    lines = []
    for _ in range(30):  # accuracy that grows with FLOPs
        a = space.sample(rng)
        lines.append(json.dumps({**a.to_dict(), "top1": space.flops(a) / 1e6}))
    pred = tmp_path / "measured.jsonl"
    pred.write_text("\n".join(lines) + "\n")
    t = Trainer(tiny_config(tiny_path, rank_by="predictor", predictor=str(pred)), tmp_path / "r", splits=splits)
    x, y = next(t.batches(0, 0))
    proposals = []
    propose = t.sampler.propose
    t.sampler.propose = lambda rng: proposals.append(propose(rng)) or proposals[-1]
    res = t.train_step(x, y)
    middles = t.config.num_archs - 2  # max, the middles, min
    assert middles == 2 and len(proposals) == middles and len(res.archs) == t.config.num_archs
    assert all(len(cands) == t.config.candidates > 1 for cands in proposals)  # a real choice each time
    for cands, chosen in zip(proposals, res.archs[1 : 1 + middles]):
        preds = [t.predictor.predict(a) for a in cands]
        assert chosen == cands[preds.index(max(preds))]
    with pytest.raises(NastoolsError, match="--rank-by predictor needs --predictor"):
        tiny_config(tiny_path, rank_by="predictor").check()


# --------------------------------------------------------------------------- schedule


def test_lr_warms_up_then_follows_a_cosine():
    lrs = [lr_at(s, 100, 10, 0.1) for s in range(100)]
    assert lrs[0] == pytest.approx(0.01) and lrs[9] == pytest.approx(0.1)
    assert lrs[10] == pytest.approx(0.1) and lrs[55] == pytest.approx(0.05)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:])) and lrs[-1] < 0.001
    assert parse_duration("10m") == 600 and parse_duration("1.5h") == 5400 and parse_duration("90s") == 90
    assert parse_duration("10min") == 600 and parse_duration(" 2 min ") == 120  # bench's spelling too
    for bad in ("ten", "infm", "nan", "0s", "-5m"):
        with pytest.raises(NastoolsError, match=f"duration '{bad}'"):
            parse_duration(bad)


@pytest.mark.parametrize("bad", [0, -5, float("nan"), float("inf"), True])
def test_a_python_number_as_duration_is_checked_like_text(bad):
    with pytest.raises(NastoolsError, match="duration"):
        parse_duration(bad)
    assert parse_duration(90) == 90.0 and parse_duration(1.5) == 1.5


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("eval_images", 0, "--eval-images 0"),
        ("calib_images", 0, "--calib-images 0"),
        ("log_every", 0, "--log-every 0"),
        ("score_images", 0, "--score-images 0"),
        ("workers", -1, "--workers -1"),
        ("sampler", "bogus", "--sampler 'bogus'"),
        ("lr", float("inf"), "--lr inf"),
        ("epochs", "1", "--epochs '1'"),
        ("batch_size", 8.5, "--batch-size 8.5"),
    ],
)
def test_train_config_refuses_what_the_command_line_would(field, value, match):
    # a library caller gets the one-line error before any data is read or step is taken
    with pytest.raises(NastoolsError, match=match):
        TrainConfig(**{field: value}).check()


def test_no_weight_decay_on_bn_and_biases(tiny_path, splits):
    t = Trainer(tiny_config(tiny_path), "/nonexistent-run", splits=splits)
    decay, no_decay = t.optimizer.param_groups
    assert decay["weight_decay"] > 0 and no_decay["weight_decay"] == 0
    bn = t.model.stem.bn
    ids = {id(p) for p in no_decay["params"]}
    assert id(bn.weight) in ids and id(bn.bias) in ids and id(t.model.head.classifier.bias) in ids
    assert id(t.model.stem.conv.weight) not in ids and id(t.model.head.classifier.weight) not in ids
    assert decay["nesterov"] is True


# --------------------------------------------------------------------------- resume


def _weights(run_dir):
    data = torch.load(Path(run_dir) / "supernet.pt", weights_only=True)
    return data["model"], data["train"]


@pytest.mark.parametrize("sampler", ["attentive-best", "uniform"])
def test_interrupted_and_resumed_run_ends_with_the_same_weights(tiny_path, splits, tmp_path, sampler):
    cfg = tiny_config(tiny_path, sampler=sampler)  # 5 steps per epoch, 10 in all
    a = Trainer(cfg, tmp_path / "a", splits=splits)
    sa = a.fit(max_steps=8, progress=False)
    assert sa["step"] == 8 and sa["stopped"] == "steps"
    b = Trainer(cfg, tmp_path / "b", splits=splits)
    s1 = b.fit(max_steps=3, progress=False)  # stops mid-epoch (evaluates, checkpoints)
    first_s = _weights(tmp_path / "b")[1]["trained_s"]
    assert 0 < first_s and s1["trained_s"] == round(b.trained_s, 1) >= first_s - 0.1
    del b
    torch.manual_seed(1234)  # the global RNG state must come from the checkpoint
    b2 = Trainer.resume(tmp_path / "b", splits=splits)
    assert b2.step == 3 and b2.trained_s == first_s
    s2 = b2.fit(max_steps=8, progress=False)  # crosses the epoch boundary at step 5
    # the seconds trained add up over the calls, in the checkpoint and the summary
    assert _weights(tmp_path / "b")[1]["trained_s"] > first_s and s2["trained_s"] >= first_s + s2["seconds"] - 0.2
    wa, ta = _weights(tmp_path / "a")
    wb, tb = _weights(tmp_path / "b")
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    assert ta["step"] == tb["step"] == 8 and ta["arch_hash"] == tb["arch_hash"]
    sa_opt, sb_opt = ta["optimizer"]["state"], tb["optimizer"]["state"]
    assert all(torch.equal(sa_opt[i]["momentum_buffer"], sb_opt[i]["momentum_buffer"]) for i in sa_opt)
    # the log has one record per step (the resumed run continued it) and the epoch records
    log = [json.loads(ln) for ln in (tmp_path / "b" / "train.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if r["type"] == "step"] == list(range(1, 9))
    epochs = [r for r in log if r["type"] == "epoch"]
    assert [r["step"] for r in epochs] == [3, 5, 8] and all(0 <= r["top1_max"] <= 1 for r in epochs)
    # and the run folder's learning-curve plot was redrawn from them
    assert (tmp_path / "b" / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _old_layout_supernet(space):
    """A supernet laid out as before 2026-12-03: a 1x1 shortcut convolution in every block
    of a stage with several widths (only a stage's first block can use one)."""
    from nastools.supernet.dynamic import DynamicConv2d

    net = Supernet(space)
    for spec, stage in zip(net.space.stages, net.stages):
        for block in list(stage)[1:]:
            if len(spec.widths) > 1:
                block.shortcut_conv = DynamicConv2d(max(spec.widths), max(spec.widths), 1)
    return net


def test_a_run_checkpointed_by_the_old_layout_resumes_with_its_weights_and_momentum(tiny_path, splits, tmp_path, monkeypatch):
    import nastools.train.trainer as trainer_module
    from nastools.supernet.model import legacy_keys
    from nastools.train.trainer import param_groups

    monkeypatch.setattr(trainer_module, "Supernet", _old_layout_supernet)
    a = Trainer(tiny_config(tiny_path), tmp_path / "run", splits=splits)
    a.fit(max_steps=2, progress=False, evaluate=False)
    old_names = {id(p): n for n, p in a.model.named_parameters()}
    old_index = {old_names[id(p)]: i for i, p in enumerate(p for g in param_groups(a.model, 0.0) for p in g["params"])}
    monkeypatch.undo()
    old_model, old_train = _weights(tmp_path / "run")
    assert len(legacy_keys(old_model)) == 2  # blocks 1 of mb1 (widths 8|16) and mb2 (16|24)

    b = Trainer.resume(tmp_path / "run", splits=splits)
    assert b.step == 2 and legacy_keys(b.model.state_dict()) == []
    for name, p in b.model.named_parameters():
        assert torch.equal(p.detach(), old_model[name]), name
        saved = old_train["optimizer"]["state"].get(old_index[name])  # None: not trained in 2 steps
        assert (p in b.optimizer.state) == (saved is not None), name
        if saved is not None:
            assert torch.equal(b.optimizer.state[p]["momentum_buffer"], saved["momentum_buffer"]), name
    b.fit(max_steps=3, progress=False, evaluate=False)
    assert legacy_keys(_weights(tmp_path / "run")[0]) == []


def test_an_optimizer_state_that_does_not_match_its_weights_is_a_one_line_error():
    from nastools.train.trainer import upgrade_optimizer_state

    model = {"a.weight": torch.zeros(2, 2, 1, 1), "stages.0.1.shortcut_conv.weight": torch.zeros(2, 2, 1, 1), "a.bias": torch.zeros(2)}
    good = {"state": {0: {"m": 0}, 1: {"m": 1}, 2: {"m": 2}}, "param_groups": [{"params": [0, 1], "lr": 1}, {"params": [2], "lr": 1}]}
    up = upgrade_optimizer_state(good, model)
    assert up["param_groups"] == [{"params": [0], "lr": 1}, {"params": [1], "lr": 1}]
    assert up["state"] == {0: {"m": 0}, 1: {"m": 2}}
    bad = {**good, "param_groups": [{"params": [0], "lr": 1}, {"params": [2], "lr": 1}]}
    with pytest.raises(NastoolsError, match="does not match its weights"):
        upgrade_optimizer_state(bad, model)


def test_resume_uses_the_checkpoints_space_and_survives_a_torn_log_line(tiny_path, splits, tmp_path):
    space_file = tmp_path / "edited.yaml"
    space_file.write_text(Path(tiny_path).read_text())
    a = Trainer(tiny_config(str(space_file)), tmp_path / "run", splits=splits)
    a.fit(max_steps=2, progress=False, evaluate=False)
    trained_on = a.space.fingerprint
    del a
    # the YAML is edited after training (a wider head, which once crashed the resume with a
    # size mismatch), and the run was killed in the middle of appending a log record
    space_file.write_text(Path(tiny_path).read_text().replace("widths: [32, 64]", "widths: [32, 96]"))
    assert load_space(str(space_file)).fingerprint != trained_on
    with open(tmp_path / "run" / "train.jsonl", "a") as f:
        f.write('{"type": "step", "st')
    b = Trainer.resume(tmp_path / "run", splits=splits)
    assert b.space.fingerprint == trained_on and b.step == 2
    b.fit(max_steps=3, progress=False, evaluate=False)
    steps = [json.loads(ln)["step"] for ln in (tmp_path / "run" / "train.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]


def test_search_and_eval_use_the_validation_slice_the_run_held_out(tiny_path, tmp_path):
    from nastools.checkpoint import load_checkpoint, run_splits

    t = Trainer(tiny_config(tiny_path, seed=3, val_size=2000), tmp_path / "run")
    t.fit(max_steps=1, progress=False, evaluate=False)
    held_out = t.splits.val.images
    got = run_splits(load_checkpoint(tmp_path / "run"))  # what search and eval --split val score on
    assert torch.equal(got.val.images, held_out) and len(got.train) == len(t.splits.train)
    default = load_splits("fashion-mnist")  # seed 0, 5000 images: mostly images this run trained on
    assert not torch.equal(default.val.images[:2000], held_out)


def test_a_stop_checkpoints_before_its_evaluation(tiny_path, splits, tmp_path, monkeypatch):
    # a second Ctrl-C during the (slow) evaluation at a stop must not lose the steps trained
    t = Trainer(tiny_config(tiny_path), tmp_path / "run", splits=splits)

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(t, "evaluate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        t.fit(max_steps=3, progress=False)
    assert _weights(tmp_path / "run")[1]["step"] == 3


def test_training_learns(tiny_path, splits):
    """A few dozen steps lift the max subnet well above chance (10%)."""
    s = load_splits("fashion-mnist")
    s.train = s.train.subset(torch.arange(2560))
    t = Trainer(tiny_config(tiny_path, batch_size=64, epochs=1, lr=0.2, sampler="uniform", num_archs=3), "/nonexistent-run", splits=s)
    t.fit(max_steps=40, progress=False, evaluate=False)
    top1 = t.evaluate()
    assert top1["max"] > 0.45 and top1["min"] > 0.3, top1


# --------------------------------------------------------------------------- CLI and bad input


def _cli(*args, cwd=None):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_cli_train_stops_on_steps_and_resumes(tiny_path, tmp_path):
    run = str(tmp_path / "cli")
    r = _cli(
        "train",
        "--space",
        tiny_path,
        "--run",
        run,
        "--batch-size",
        "64",
        "--epochs",
        "0.02",
        "--steps",
        "2",
        "--eval-images",
        "100",
        "--no-progress",
        "--json",
    )
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["step"] == 2 and out["stopped"] == "steps" and Path(out["checkpoint"]).is_file()
    # the same run again without --resume: refused, nothing overwritten
    before = (tmp_path / "cli" / "supernet.pt").read_bytes()
    r = _cli("train", "--space", tiny_path, "--run", run, "--steps", "3")
    assert r.exit_code == 1 and "already has a checkpoint" in r.output and "--resume" in r.output
    # --resume may not change the configuration: the values that differ are named, one line
    r = _cli("train", "--run", run, "--resume", "--batch-size", "8", "--lr", "0.1", "--seed", "1")
    assert r.exit_code == 1 and "--batch-size 8 (the run's: 64), --seed 1 (the run's: 0) cannot change" in r.output, r.output
    assert "--lr" not in r.output and r.output.count("\n") == 1
    assert (tmp_path / "cli" / "supernet.pt").read_bytes() == before
    r = _cli("train", "--run", run, "--resume", "--steps", "3", "--no-progress", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["step"] == 3
    # nothing left to do: no training and no second evaluation of the same weights
    log = (tmp_path / "cli" / "train.jsonl").read_text()
    r = _cli("train", "--run", run, "--resume", "--steps", "3", "--no-progress", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["step"] == 3
    assert (tmp_path / "cli" / "train.jsonl").read_text() == log
    r = _cli("train", "--run", run, "--resume", "--epochs", "0.001")
    assert r.exit_code == 1 and "has already trained" in r.output and "(3 steps)" in r.output, r.output


def test_checkpoint_of_another_space_or_corrupted_is_a_clear_error(tiny_path, tmp_path):
    run = tmp_path / "bad"
    r = _cli(
        "train",
        "--space",
        tiny_path,
        "--run",
        str(run),
        "--batch-size",
        "64",
        "--epochs",
        "0.01",
        "--steps",
        "1",
        "--eval-images",
        "50",
        "--no-progress",
    )
    assert r.exit_code == 0, r.output
    ckpt = run / "supernet.pt"
    good = ckpt.read_bytes()
    r = _cli("train", "--run", str(run), "--resume", "--space", "fmnist")
    assert r.exit_code == 1 and "was trained on space 'tiny'" in r.output and "not on 'fmnist'" in r.output
    assert ckpt.read_bytes() == good
    corrupted = good[: len(good) // 2]
    ckpt.write_bytes(corrupted)
    r = _cli("train", "--run", str(run), "--resume")
    assert r.exit_code == 1 and "corrupted or not a nastools checkpoint" in r.output
    assert "Traceback" not in r.output and r.output.count("\n") == 1
    assert ckpt.read_bytes() == corrupted  # nothing overwritten
    arch = tmp_path / "a.json"
    load_space("fmnist").min_arch().save(arch)
    r = _cli("eval", "--arch", str(arch), "--run", str(run))
    assert r.exit_code == 1 and "corrupted" in r.output
    ckpt.write_bytes(b"junk\n")  # torch's legacy unpickler raised KeyError on this one
    for args in (("eval", "--arch", str(arch), "--run", str(run)), ("train", "--run", str(run), "--resume")):
        r = _cli(*args)
        assert r.exit_code == 1 and "corrupted or not a nastools checkpoint" in r.output and r.output.count("\n") == 1, r.output


def test_missing_dataset_says_how_to_install_it(tiny_path, tmp_path, monkeypatch):
    import nastools.data

    monkeypatch.setattr(nastools.data, "FMNIST_DIR", tmp_path / "not-installed")
    r = _cli("train", "--space", tiny_path, "--run", str(tmp_path / "x"))
    assert r.exit_code == 1 and "apt-get install dataset-fashion-mnist" in r.output
    r = _cli("train", "--space", tiny_path, "--run", str(tmp_path / "x"), "--data", str(tmp_path / "nowhere"))
    assert r.exit_code == 1 and "Fashion-MNIST not found" in r.output and "(no such folder)" in r.output
    r = _cli("train", "--run", str(tmp_path / "x"), "--dataset", "cifar10")
    assert r.exit_code == 1 and "needs --data DIR" in r.output
    r = _cli("train", "--space", tiny_path, "--run", str(tmp_path / "y"), "--resume")
    assert r.exit_code == 1 and "no checkpoint at" in r.output
    assert not (tmp_path / "x").exists()


def test_sigterm_checkpoints_and_the_run_resumes(tiny_path, tmp_path):
    run = tmp_path / "sig"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "nastools",
        "train",
        "--space",
        tiny_path,
        "--run",
        str(run),
        "--batch-size",
        "64",
        "--epochs",
        "1",
        "--eval-images",
        "50",
        "--no-progress",
        "--json",
    ]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    log = run / "train.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline and not (log.is_file() and log.read_text().count('"step"') >= 3):
        time.sleep(0.2)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=60)
    # checkpointed, but not done: 128 + SIGTERM, so that `nastools train && nastools search` stops there
    assert p.returncode == 143, err
    assert "continue with nastools train --run" in err and "--resume" in err
    summary = json.loads(out)
    assert summary["stopped"] == "signal SIGTERM" and 3 <= summary["step"] < summary["total_steps"]
    _, state = _weights(run)
    assert state["step"] == summary["step"]


def test_eval_cli_matches_the_extracted_subnet(tiny_path, tmp_path):
    run = tmp_path / "ev"
    r = _cli(
        "train",
        "--space",
        tiny_path,
        "--run",
        str(run),
        "--batch-size",
        "64",
        "--epochs",
        "0.01",
        "--steps",
        "2",
        "--eval-images",
        "50",
        "--no-progress",
    )
    assert r.exit_code == 0, r.output
    space = load_space(tiny_path)
    arch = space.sample(5)
    arch.save(tmp_path / "arch.json")
    s = load_splits("fashion-mnist")
    res = evaluate_subnet(tmp_path / "arch.json", run, calib_images=300, max_images=400, splits=s)
    # the same by hand, on the extracted static subnet
    net = Supernet(space)
    net.load_state_dict(torch.load(run / "supernet.pt", weights_only=True)["model"])
    sub = net.extract(arch)
    recalibrate_bn(sub, calibration_batches(s.train, 250, 300))
    assert res["top1"] == evaluate_top1(sub, s.test, max_images=400)
    assert res["id"] == arch.id and res["meta"]["images"] == 400
    r = _cli("eval", "--arch", str(tmp_path / "arch.json"), "--run", str(run), "--max-images", "200", "--calib-images", "100", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert 0 <= out["top1"] <= 1 and out["meta"]["split"] == "test" and out["meta"]["images"] == 200
    other = tmp_path / "other.json"
    load_space("fmnist").min_arch().save(other)
    r = _cli("eval", "--arch", str(other), "--run", str(run))
    assert r.exit_code == 1 and "arch.space: got 'fmnist', expected 'tiny'" in r.output
    for device, needle in (("gpu", "--device 'gpu': expected cpu or cuda"), ("cuda:x", "expected cpu or cuda")) + (
        (("cuda", "no CUDA device is available here"),) if not torch.cuda.is_available() else ()
    ):
        r = _cli("eval", "--arch", str(tmp_path / "arch.json"), "--run", str(run), "--device", device)
        assert r.exit_code == 1 and needle in r.output and r.output.count("\n") == 1, r.output


@pytest.mark.parametrize("cmd", ["train", "eval", "curve"])
def test_help(cmd):
    r = CliRunner().invoke(main, [cmd, "--help"])
    assert r.exit_code == 0 and "Example" in r.output and "--json" in r.output


def test_train_refuses_unwritable_or_odd_runs_and_bad_numbers_before_training(tiny_path, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    base = ["train", "--space", tiny_path, "--steps", "1", "--no-progress"]
    for args, match in (
        (["--run", str(afile / "sub")], "cannot write there"),
        (["--run", str(afile)], "is a file, not a folder"),
        (["--run", str(tmp_path / "x.pt")], "not a .pt file"),
        (["--run", ""], "empty run name"),
        (["--run", str(tmp_path / "r"), "--epochs", "inf"], "Invalid value for '--epochs'"),
        (["--run", str(tmp_path / "r"), "--lr", "inf"], "Invalid value for '--lr'"),
        (["--run", str(tmp_path / "r"), "--time-budget", ""], "--time-budget: empty"),
        (["--run", str(tmp_path / "r"), "--checkpoint-every", "0s"], "--checkpoint-every: duration '0s': expected a positive"),
        (["--run", str(tmp_path / "r"), "--checkpoint-every", "soon"], "--checkpoint-every: duration 'soon'"),
        # a bare number is refused as bench and search refuse it, rather than read as seconds
        (["--run", str(tmp_path / "r"), "--time-budget", "10"], "--time-budget: duration '10': add a unit"),
        (["--run", str(tmp_path / "r"), "--checkpoint-every", "10"], "--checkpoint-every: duration '10': add a unit"),
        (["--run", str(tmp_path / "r"), "--time-budget", "10parsecs"], "--time-budget: duration '10parsecs'"),
        (["--run", str(tmp_path / "r"), "--predictor", str(afile)], "only used with --rank-by predictor"),
        # the missing checkpoint is the error, not the option a resume may not change
        (["--run", str(tmp_path / "nothing"), "--resume", "--batch-size", "8"], "has no checkpoint at"),
    ):
        r = _cli(*base, *args)
        assert r.exit_code in (1, 2) and match in r.output, (args, r.output)
        assert len(r.output.strip().splitlines()) == 1, r.output
        if "duration" in match:  # a bad option value: exit 2, naming the command's --help
            assert r.exit_code == 2 and "train --help)" in r.output, r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]  # nothing trained, no folder made


# --------------------------------------------------------------------------- kills, locks, repeated commands


def test_the_same_command_plus_resume_is_accepted_and_steps_is_the_bar_target(tiny_path, tmp_path):
    run = str(tmp_path / "r")
    cmd = [
        "train",
        "--space",
        tiny_path,
        "--run",
        run,
        "--batch-size",
        "64",
        "--epochs",
        "0.05",
        "--sampler",
        "uniform",
        "--seed",
        "0",
        "--augment",
        "auto",
        "--eval-images",
        "50",
    ]
    r = _cli(*cmd, "--steps", "2", "--no-progress")
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, [*cmd, "--resume", "--steps", "4"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "steps: step 4/43" in r.stdout  # 0.05 of 859 steps per epoch
    assert "4/4 " in r.stderr and "/43 " not in r.stderr, r.stderr  # the bar counts to --steps
    assert _weights(run)[1]["step"] == 4


@pytest.mark.slow
def test_a_sigkilled_run_resumes_from_its_mid_epoch_checkpoint_to_the_same_weights(tiny_path, tmp_path):
    """A run killed outright (SIGKILL: no handler runs) resumes from its last time-based
    checkpoint, written within the first epoch, and ends where an uninterrupted run ends.
    While it runs, a second process training the same run is refused; after the kill its lock
    is taken over."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    target = 24  # steps; an epoch is 1718 steps of 32, so every checkpoint here is mid-epoch
    base = [
        sys.executable,
        "-m",
        "nastools",
        "train",
        "--space",
        tiny_path,
        "--batch-size",
        "32",
        "--epochs",
        "1",
        "--eval-images",
        "50",
        "--log-every",
        "1",
        "--no-progress",
    ]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    a = subprocess.Popen(
        [*base, "--run", str(whole), "--steps", str(target)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    b = subprocess.Popen(
        [*base, "--run", str(killed), "--checkpoint-every", "0.3s"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        log = killed / "train.jsonl"
        deadline = time.time() + 120
        while time.time() < deadline and b.poll() is None and not (log.is_file() and '"checkpoint"' in log.read_text()):
            time.sleep(0.05)
        assert b.poll() is None, b.communicate()[1]
        r = _cli("train", "--space", tiny_path, "--run", str(killed), "--steps", "3")  # a second writer
        assert r.exit_code == 1 and f"run '{killed}' is in use by pid {b.pid} on " in r.output, r.output
        assert r.output.count("\n") == 1
        b.send_signal(signal.SIGKILL)
        b.wait(timeout=60)
    finally:
        b.kill()
    _, state = _weights(killed)
    done = state["step"]
    assert 0 < done < target, done
    # the same command line again, plus --resume and the step to stop at
    resumed = subprocess.run(
        [*base, "--run", str(killed), "--checkpoint-every", "0.3s", "--resume", "--steps", str(target)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"taking over the lock of pid {b.pid}" in resumed.stderr
    out, err = a.communicate(timeout=300)
    assert a.returncode == 0, err
    wa, ta = _weights(whole)
    wb, tb = _weights(killed)
    assert ta["step"] == tb["step"] == target and ta["arch_hash"] == tb["arch_hash"]
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    sa, sb = ta["optimizer"]["state"], tb["optimizer"]["state"]
    assert sa.keys() == sb.keys() and all(torch.equal(sa[i]["momentum_buffer"], sb[i]["momentum_buffer"]) for i in sa)
    records = [json.loads(ln) for ln in log.read_text().splitlines()]
    assert [r["step"] for r in records if r["type"] == "step"] == list(range(1, target + 1))  # the lost steps redone once
    assert any(r["type"] == "checkpoint" and r["step"] == done for r in records)
    assert not (killed / ".nastools.lock").exists() and not (whole / ".nastools.lock").exists()


def test_a_run_killed_while_writing_its_checkpoint_leaves_no_temp_file_after_the_rerun(tiny_path, tmp_path):
    """SIGKILL in the middle of the checkpoint's write (a real process): the partial temp file
    (as large as a checkpoint) is removed by the next run of the folder."""
    run = tmp_path / "run"
    args = ["train", "--space", tiny_path, "--run", str(run), "--batch-size", "32", "--steps", "1", "--eval-images", "50", "--no-progress"]
    code = (
        "import os, signal, sys\n"
        "import nastools.io as io\n"
        "real = io.atomic_write\n"
        "def dying(path, write, mode='w'):\n"
        "    def half(f):\n"
        "        f.write(b'x' * 4096 if 'b' in mode else 'x'); f.flush(); os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return real(path, half, mode)\n"
        "io.atomic_write = dying\n"
        "from nastools.cli import main\n"
        "main(sys.argv[1:])\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    temps = [p.name for p in run.iterdir() if p.name.startswith(".supernet.pt.") and p.name.endswith(".tmp")]
    assert len(temps) == 1 and not (run / "supernet.pt").exists()
    (run / ".supernet.pt.mine.tmp").write_text("not a temp file of nastools")
    again = subprocess.run([sys.executable, "-m", "nastools", *args], env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "taking over the lock" in again.stderr
    assert sorted(p.name for p in run.iterdir()) == [".supernet.pt.mine.tmp", "curve.png", "supernet.pt", "train.jsonl"]


def test_train_sends_its_epoch_lines_to_log_not_stderr(tiny_path, tmp_path, capsys):
    """A library user's ``log`` takes the epoch lines (the command line's go to stderr)."""
    from nastools.train.trainer import train

    lines: list[str] = []
    summary = train(tiny_config(tiny_path), tmp_path / "r", max_steps=2, checkpoint_every=None, progress=False, log=lines.append)
    assert summary["step"] == 2 and len(lines) == 1
    assert lines[0].startswith("epoch ") and "(step 2): val top-1 min" in lines[0]
    assert "val top-1" not in capsys.readouterr().err
