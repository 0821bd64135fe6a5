"""The paired statistics of the benchmarks (benchmarks/_stats.py): SE and the sign test."""

from __future__ import annotations

import importlib
import json
import math
import statistics
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def _bench_module(name: str):
    """The module ``benchmarks/<name>.py``, imported as the scripts import each other."""
    sys.path.insert(0, str(BENCH))
    try:
        yield importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCH))


@pytest.fixture(scope="module")
def stats():
    """benchmarks/_stats.py, imported as the scripts import it."""
    yield from _bench_module("_stats")


@pytest.mark.parametrize(
    "wins, losses, p",
    [
        (10, 0, 2 / 2**10),  # all one way: 2 * 0.5^10
        (0, 10, 2 / 2**10),
        (8, 2, 2 * (1 + 10 + 45) / 2**10),  # 0.109375
        (5, 0, 0.0625),
        (15, 5, 2 * (1 + 20 + 190 + 1140 + 4845 + 15504) / 2**20),  # 0.0413895, the textbook 15 of 20
        (3, 3, 1.0),  # capped at 1
        (0, 0, 1.0),  # nothing to test
        (1, 0, 1.0),
    ],
)
def test_sign_test_matches_the_exact_binomial(stats, wins, losses, p):
    assert stats.sign_test_p(wins, losses) == pytest.approx(p, rel=1e-12)


def test_sign_test_against_a_direct_sum_of_the_binomial(stats):
    n = 53
    for k in range(n + 1):
        pk = [math.comb(n, i) / 2**n for i in range(n + 1)]
        extreme = sum(q for q in pk if q <= pk[k] * (1 + 1e-12))  # two-sided: as unlikely or less (symmetric)
        assert stats.sign_test_p(k, n - k) == pytest.approx(min(1.0, extreme), rel=1e-9)
    with pytest.raises(ValueError):
        stats.sign_test_p(-1, 3)


def test_paired_mean_se_and_ties(stats):
    a = [91.0, 92.0, 93.0, 94.0, 90.0]
    b = [90.0, 90.0, 90.0, 90.0, 90.0]  # differences 1, 2, 3, 4 and a tie
    r = stats.paired(a, b)
    d = [1.0, 2.0, 3.0, 4.0, 0.0]
    assert r["n"] == 5
    assert r["mean"] == pytest.approx(2.0)
    assert r["sd"] == pytest.approx(statistics.stdev(d))
    assert r["se"] == pytest.approx(statistics.stdev(d) / math.sqrt(5))  # sqrt(2.5 / 5)
    assert (r["wins"], r["losses"], r["ties"]) == (4, 0, 1)
    assert r["sign_p"] == pytest.approx(2 / 2**4)  # the tie dropped: 4 of 4
    flipped = stats.paired(b, a)
    assert flipped["mean"] == pytest.approx(-2.0) and flipped["se"] == pytest.approx(r["se"])
    assert (flipped["wins"], flipped["losses"]) == (0, 4)


def test_paired_accuracies_that_differ_only_by_float_rounding_tie(stats):
    r = stats.paired([100 * 0.9123], [91.23])
    assert r["ties"] == 1 and r["sign_p"] == 1.0 and math.isnan(r["se"])


def test_paired_refuses_unequal_lengths(stats):
    with pytest.raises(ValueError, match="lengths"):
        stats.paired([1.0], [1.0, 2.0])


@pytest.fixture(scope="module")
def bench_train():
    """benchmarks/bench_train.py (its quality-of-trained-runs helpers)."""
    yield from _bench_module("bench_train")


def _run(path, step=100, **cfg):
    return {"path": path, "space": "e64629efe687", "step": step, "config": {"epochs": 2.0, "lr": 0.1, **cfg}}


def test_quality_runs_must_differ_in_the_sampler_alone(bench_train):
    check = bench_train.check_comparable
    check({"uniform": _run("u"), "attentive-best": _run("b")})
    with pytest.raises(SystemExit, match=r"^quality: runs u and b differ in more than the sampler: lr \(0.1 vs 0.05\)$"):
        check({"uniform": _run("u"), "attentive-best": _run("b", lr=0.05)})
    with pytest.raises(SystemExit, match="stopped at step 100, b .attentive-best. at step 90"):
        check({"uniform": _run("u"), "attentive-best": _run("b", step=90)})
    check({"uniform": _run("u"), "attentive-best": _run("b", step=90)}, allow_unequal_steps=True)
    with pytest.raises(SystemExit, match="at least 2 runs"):
        check({"uniform": _run("u")})
    # runs that differ in another field: --by names it
    check({"fp32": _run("f"), "bf16": _run("b")}, by="precision")
    with pytest.raises(SystemExit, match=r"^quality: runs f and b differ in more than the precision: lr \(0.1 vs 0.05\)$"):
        check({"fp32": _run("f"), "bf16": _run("b", lr=0.05)}, by="precision")
    assert bench_train.comparisons(["fp32", "bf16"]) == [("fp32", "bf16")]
    assert bench_train.comparisons(["uniform", "attentive-best", "attentive-worst"]) == [
        ("attentive-best", "uniform"),
        ("attentive-worst", "uniform"),
        ("attentive-best", "attentive-worst"),
    ]


def test_quality_archs_are_seeded_and_fill_every_flops_bin(bench_train):
    from nastools.space import load_space

    space = load_space("fmnist")
    archs = bench_train.draw_archs(space, 10, bins=5, seed=0)
    assert [a.id for _, a in archs] == [a.id for _, a in bench_train.draw_archs(space, 10, bins=5, seed=0)]
    assert len({a.id for _, a in archs}) == 12
    assert archs[0] == ("min", space.min_arch()) and archs[-1] == ("max", space.max_arch())
    lo, hi = space.flops(space.min_arch()), space.flops(space.max_arch())
    where = [bench_train.flops_bin(space.flops(a), lo, hi, 5) for kind, a in archs if kind == "random"]
    assert sorted(where) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]


def test_throughput_profile_names_every_phase_of_a_step(bench_train, tmp_path):
    """bench_train.py throughput: the phases Trainer.train_step names, and the aten ops by kind."""
    from nastools.data import load_splits
    from nastools.train.trainer import TrainConfig, Trainer

    t = Trainer(TrainConfig(batch_size=8, val_size=100), tmp_path / "run", splits=load_splits("fashion-mnist", val_size=100))
    feed = t.batches(0, 0)
    t.train_step(*next(feed))
    b = bench_train._profile_step(t, feed, 1)
    assert set(b["phases_ms"]) == {"max", "sample", "middle", "min", "optimizer"}
    assert all(v > 0 for v in b["phases_ms"].values())
    assert sum(b["phases_ms"].values()) <= b["step_ms"] * 1.05  # the phases lie inside the step
    assert {"conv forward", "batchnorm backward", "conv backward 1x1 dense"} <= set(b["ops_ms"])
    assert any(k.startswith("conv backward 5x5 depthwise") or k.startswith("conv backward 3x3 depthwise") for k in b["ops_ms"])
    assert t.step == 2  # the profiled step trained


@pytest.fixture(scope="module")
def bench_search():
    """benchmarks/bench_search.py (its evolution-vs-random helpers)."""
    yield from _bench_module("bench_search")


def test_vs_random_contenders_choose_as_nastools_search_does(bench_search, tmp_path):
    """Every contender's pick: the best by the finalists' score among its 2 best by the
    search's score within the budget; its pick by the search's score alone is kept beside."""
    import random
    from types import SimpleNamespace

    from nastools.search import Candidate
    from nastools.space import load_space

    space = load_space("fmnist")
    rng = random.Random(0)
    archs = list({a.id: a for a in (space.sample(rng) for _ in range(60))}.values())
    val = {a.id: round(rng.uniform(80, 90), 2) for a in archs}
    final = {a.id: round(rng.uniform(80, 90), 2) for a in archs}
    ev = lambda cache, n: SimpleNamespace(cache=cache, eval_images=n)  # noqa: E731
    ctx = bench_search._PoolContext(space, tmp_path, {}, {"val": ev(val, 2000), "final": ev(final, 5000)})
    cands = lambda xs: [Candidate(a, val[a.id], {"flops": space.flops(a)}) for a in xs]  # noqa: E731
    budget = sorted(space.flops(a) for a in archs)[40]
    rows = bench_search._pool_rows(ctx, [budget], cands(archs[:20]), cands(archs[20:40]), [archs[30:]])
    ran = []
    runner = SimpleNamespace(run=lambda tasks, desc: ran.extend(tasks))
    bench_search._pool_rerank(ctx, {"rerank": 2, "eval_images": 2000}, rows, runner)
    assert ran == []  # every finalist's score was in the cache already
    for name, pool in zip(bench_search.CONTENDERS, (archs[:20], archs[20:40], archs[30:])):
        within = sorted((a for a in pool if space.flops(a) <= budget), key=lambda a: (-val[a.id], space.flops(a)))
        assert rows[0][f"{name}_search"].arch.id == within[0].id
        assert rows[0][name].arch.id == max(within[:2], key=lambda a: final[a.id]).id
    rows = bench_search._pool_rows(ctx, [budget], [], [], [archs])
    bench_search._pool_rerank(ctx, {"rerank": 0, "eval_images": 2000}, rows, runner)
    assert rows[0]["pool"] is rows[0]["pool_search"]  # no re-ranking: the search's pick stands


def test_vs_random_records_every_scored_arch_for_later_analyses(bench_search, tmp_path):
    """The result lists each arch the run scored once, by its key (which rebuilds the arch),
    with FLOPs and the scores it has: an arch not scored on validation is left out."""
    import random
    from types import SimpleNamespace

    from nastools.latency.table import arch_of_key
    from nastools.search import Candidate
    from nastools.space import load_space

    space = load_space("fmnist")
    rng = random.Random(2)
    archs = list({a.id: a for a in (space.sample(rng) for _ in range(30))}.values())
    val = {a.id: 90.0 + i / 10 for i, a in enumerate(archs[:-1])}  # the last one never scored
    final, test = {archs[0].id: 91.5}, {archs[0].id: 92.5, archs[1].id: 92.0}
    ev = {k: SimpleNamespace(cache=c) for k, c in (("val", val), ("final", final), ("test", test))}
    ctx = bench_search._PoolContext(space, tmp_path, {}, ev)
    cands = [Candidate(a, val.get(a.id, 0.0), {"flops": space.flops(a)}) for a in archs[:10]]
    rows = [{"pool_archs": archs[5:], "evolution_cands": cands, "random_cands": cands[:3]}]
    recs = bench_search._arch_records(ctx, rows)
    assert len(recs) == len(archs) - 1 and len({r[0] for r in recs}) == len(recs)
    by_id = {arch_of_key(r[0]).id: r for r in recs}
    assert set(by_id) == set(val)
    assert by_id[archs[0].id][1:] == [space.flops(archs[0]), val[archs[0].id], 91.5, 92.5]
    assert by_id[archs[1].id][3:] == [None, 92.0] and by_id[archs[2].id][3:] == [None, None]


def test_vs_random_pooled_combines_the_newest_result_of_each_seed(bench_search, tmp_path, monkeypatch, capsys):
    """--pooled: per seed the newest result with the claim's settings (re-ranked, or
    --rerank 0 ones apart); paired differences over all budget-seed pairs."""
    import json

    import _common

    monkeypatch.setattr(_common, "RESULTS", tmp_path)
    folder = _common.result_path("bench_search_vs_random").parent
    folder.mkdir(parents=True)
    budgets = [1e6, 2e6]

    def record(evo, rnd, pool, within):
        def pick(t):
            return {"test_top1": t}

        rows = [
            {"evolution": pick(e), "random": pick(r), "pool": pick(p), "evo_within_pool": w} for e, r, p, w in zip(evo, rnd, pool, within)
        ]
        ge = sum(e >= r for e, r in zip(evo, rnd))
        return {"budgets": budgets, "pool": {"size": 300}, "rows": rows, "evo_ge_random": ge, "evo_within_pool": sum(within)}

    files = {
        "2026-01-01.json": record([90, 91], [89, 92], [90, 91], [True, True]),  # seed 0, superseded
        "2026-01-02.json": record([90, 92], [89, 91], [91, 92], [False, True]),  # seed 0
        "2026-01-02-seed3.json": record([91, 93], [90, 93], [91, 93.5], [True, False]),
        "2026-01-02-rerank0-seed3.json": record([80, 80], [99, 99], [99, 99], [False, False]),  # other setting
        "2026-01-02-pooled.json": {"budgets": budgets},  # not a seed's result
    }
    for name, rec in files.items():
        (folder / name).write_text(json.dumps(rec))
    bench_search.pooled(type("A", (), {"rerank": None})())
    out = json.loads((folder / f"{_common.machine_info()['date']}-pooled.json").read_text())
    assert set(out["seeds"]) == {"0", "3"}
    rnd = out["overall"]["random"]  # differences 1, 1, 1, 0
    assert rnd["n"] == 4 and rnd["mean"] == pytest.approx(0.75) and (rnd["wins"], rnd["losses"], rnd["ties"]) == (3, 0, 1)
    pool = out["overall"]["pool"]  # differences -1, 0, 0, -0.5
    assert pool["mean"] == pytest.approx(-0.375) and (pool["wins"], pool["losses"]) == (0, 2)
    assert [b["evo_within_pool"] for b in out["per_budget"]] == [1, 1]
    assert "2 seeds (0, 3)" in capsys.readouterr().out
    (folder / "2026-01-02-seed3.json").unlink()
    with pytest.raises(SystemExit, match="1 seed"):
        bench_search.pooled(type("A", (), {"rerank": None})())


def test_val_test_agreement_separates_a_shared_deviation_from_noise(bench_search, tmp_path):
    """Residuals around the FLOPs trend that validation and test share correlate fully;
    independent ones hardly; without every pool arch's test score there is no figure."""
    import math
    import random
    from types import SimpleNamespace

    from nastools.space import load_space

    space = load_space("fmnist")
    rng = random.Random(1)
    archs = list({a.id: a for a in (space.sample(rng) for _ in range(300))}.values())
    trend = {a.id: 88 + math.log(space.flops(a)) / 4 for a in archs}
    own = {a.id: rng.gauss(0, 0.4) for a in archs}

    def agreement(val, test):
        ev = {"val": SimpleNamespace(cache=val), "test": SimpleNamespace(cache=test)}
        return bench_search._val_test_agreement(bench_search._PoolContext(space, tmp_path, {}, ev), [archs[:200], archs[100:]])

    shared = agreement({i: trend[i] + own[i] for i in trend}, {i: trend[i] + own[i] for i in trend})
    assert shared["archs"] == len(archs) and shared["residual_corr"] > 0.99
    noise = agreement({i: trend[i] + own[i] for i in trend}, {i: trend[i] + rng.gauss(0, 0.4) for i in trend})
    assert abs(noise["residual_corr"]) < 0.25 and noise["test_residual_sd"] > 0.3
    partial = {i: trend[i] for i in list(trend)[1:]}  # one pool arch without a test score
    assert agreement(dict(trend), partial) is None


def _investigation(name: str):
    """The module ``benchmarks/investigations/<name>.py``."""
    sys.path.insert(0, str(BENCH / "investigations"))
    try:
        yield from _bench_module(name)
    finally:
        sys.path.remove(str(BENCH / "investigations"))


@pytest.fixture(scope="module")
def search_selection():
    """benchmarks/investigations/search_selection.py."""
    yield from _investigation("search_selection")


def test_selection_leave_one_out_predictions_equal_refits_without_the_arch(search_selection):
    """The closed-form leave-one-out predictions (ridge with an unshrunk intercept, and the cubic
    FLOPs trend) are what fitting on all other archs and predicting the left-out one gives."""
    import numpy as np

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(25, 6)), rng.normal(size=25)
    mu, sd = x.mean(0), x.std(0) + 1e-9  # the standardisation uses all rows, as the closed form does
    loo = search_selection.loo_ridge_fit(x, y)
    for i in (0, 7, 24):
        keep = np.arange(25) != i
        z = np.hstack([(x - mu) / sd, np.ones((25, 1))])
        reg = np.eye(7)
        reg[-1, -1] = 0.0
        coef = np.linalg.solve(z[keep].T @ z[keep] + reg, z[keep].T @ y[keep])
        assert loo[i] == pytest.approx(z[i] @ coef)
    logf = np.log(rng.uniform(5e6, 4e7, size=25))
    trend = search_selection.loo_trend(logf, y)
    for i in (3, 12):
        keep = np.arange(25) != i
        c = np.polyfit(logf[keep] - logf.mean(), y[keep], 3)
        assert trend[i] == pytest.approx(np.polyval(c, logf[i] - logf.mean()))


def test_selection_evolution_against_resampled_random_searches(search_selection):
    """Each resampled random search picks its best-scored arch within a budget; evolution's pick
    matches or beats it in the share of searches counted; a search with nothing under the
    budget counts as beaten."""
    import random

    from nastools.space import load_space

    space = load_space("fmnist")
    rng = random.Random(3)
    archs = list({a.id: a for a in (space.sample(rng) for _ in range(40))}.values())[:30]
    val = {a.id: float(i) for i, a in enumerate(archs)}  # the last arch scores best
    test = {a.id: 90.0 + (i % 2) for i, a in enumerate(archs)}  # odd-numbered archs score 91 on test
    big = max(space.flops(a) for a in archs)
    tiny = min(space.flops(a) for a in archs) - 1
    res = {
        "evaluations_per_search": 30,  # every search draws every arch: its pick is always the last arch
        "budgets": [big, tiny],
        "rows": [{"budget_flops": big, "evolution": {"test_top1": 90.5}}, {"budget_flops": tiny, "evolution": {"test_top1": 80.0}}],
    }
    out, every = search_selection.against_random(res, val, test, space, [archs, archs], 20, 0)
    last = test[archs[-1].id]
    assert out[0]["random_mean"] == last and out[0]["random_none"] == 0
    assert out[0]["evo_ge_random_share"] == (1.0 if 90.5 >= last else 0.0)
    assert out[1]["random_mean"] is None and out[1]["random_none"] == 20 and out[1]["evo_ge_random_share"] == 1.0
    assert every == out[0]["evo_ge_random_share"]  # the second budget is always won


def test_pick_verification_counts_errors_and_rejections_of_figure_to_prediction_ratios():
    """bench_pick_verification's summary of figure / prediction ratios: the shares within 5% and
    10% of the prediction and over a budget 5% and 10% above it."""
    (mod,) = list(_bench_module("bench_pick_verification"))
    s = mod._stats([1.0, 1.04, 1.06, 1.12, 0.9])
    assert (s["within_5_pct"], s["within_10_pct"]) == (40.0, 80.0)
    assert (s["over_budget_1.05_pct"], s["over_budget_1.10_pct"]) == (40.0, 20.0)
    assert s["mean_abs_error_pct"] == pytest.approx(6.4) and (s["min"], s["max"]) == (0.9, 1.12)


@pytest.fixture(scope="module")
def quality():
    """benchmarks/_quality.py."""
    yield from _bench_module("_quality")


def test_pooled_quality_averages_each_archs_difference_over_the_results(quality):
    """pool_results: the pooled statistics are over the per-arch differences averaged across
    the results; agreement is +1 / -1 for identical / opposite per-arch differences; results
    over other archs are refused."""

    def result(diffs):
        return {"archs": [{"id": i, "top1": {"a": 80.0 + d, "b": 80.0}} for i, d in zip("pqrs", diffs)]}

    fam = {"p": "conv everywhere", "q": "conv everywhere", "r": "pool at mb3", "s": "pool at mb3"}.__getitem__
    out = quality.pool_results([result([1, 2, -4, -6]), result([3, 2, -2, -6])], fam, [("a", "b")])
    c = out["comparisons"]["a - b"]
    assert c["pooled"]["mean"] == pytest.approx((2 + 2 - 3 - 6) / 4)
    assert [e["mean"] for e in c["each"]] == pytest.approx([-7 / 4, -3 / 4])
    assert c["families"]["pool at mb3"]["pooled"]["mean"] == pytest.approx(-4.5)
    assert (c["families"]["conv everywhere"]["pooled"]["wins"], c["families"]["pool at mb3"]["pooled"]["losses"]) == (2, 2)
    assert list(c["families"]) == ["conv everywhere", "pool at mb3"]
    assert 0.8 < c["agreement_r"] < 1
    same = quality.pool_results([result([1, 2, -4, -6])] * 2, fam, [("a", "b")])["comparisons"]["a - b"]
    assert same["agreement_r"] == pytest.approx(1.0)
    flip = quality.pool_results([result([1, 2, -4, -6]), result([-1, -2, 4, 6])], fam, [("a", "b")])
    assert flip["comparisons"]["a - b"]["agreement_r"] == pytest.approx(-1.0)
    other = result([1, 2, 3, 4])
    other["archs"][0]["id"] = "x"
    with pytest.raises(ValueError, match="different archs"):
        quality.pool_results([result([1, 2, 3, 4]), other], fam, [("a", "b")])


@pytest.fixture(scope="module")
def attentive_picks():
    """benchmarks/investigations/attentive_picks.py."""
    yield from _investigation("attentive_picks")


def test_a_runs_attentive_candidates_are_replayed_from_its_seed(attentive_picks, tmp_path):
    """Scoring the candidates draws nothing from the sampler's generator, so replaying a run's
    seed draws the candidates it scored: every arch train.jsonl logs is among them (another
    seed's candidates miss them), and the summary's shares add up."""
    from nastools.train.trainer import TrainConfig, train

    cfg = TrainConfig(batch_size=8, val_size=100, eval_images=20, calib_images=16, log_every=1, score_images=4, seed=3)
    train(cfg, tmp_path / "run", max_steps=5, progress=False, log=lambda m: None)
    rep = attentive_picks.replay(tmp_path / "run")
    assert (rep["sampler"], rep["seed"], rep["missed"], len(rep["slots"])) == ("attentive-best", 3, 0, 10)
    assert all(s["trained"] in s["offered"] and len(s["offered"]) == 3 for s in rep["slots"])
    assert attentive_picks.replay(tmp_path / "run", seed=4)["missed"] > 5
    rows = attentive_picks.summarise(rep, quarters=1)
    assert sum(r["offered_share"] for r in rows) == pytest.approx(1.0)
    assert sum(r["trained_share"] for r in rows) == pytest.approx(1.0)
    assert all(1 / 3 - 1e-9 <= r["random_pick_would"] <= 1 for r in rows)  # one of 3 candidates at least


def test_family_residuals_find_a_family_below_the_flops_trend(attentive_picks, fmnist, tmp_path):
    """family_residuals: archs on a smooth FLOPs trend, those with a pool-only residual path at
    mb3 set 0.5 points lower on validation and 0.3 on test: their mean residuals say so, the
    others' lie near zero."""
    import math
    import random

    from nastools.space.residual import residual_kind

    rng = random.Random(0)
    archs = list({a.id: a for a in (fmnist.sample(rng) for _ in range(400))}.values())
    rows = []
    for a in archs:
        trend = 90 + 2 * math.log(fmnist.flops(a) / 1e6)
        low = residual_kind(fmnist, a) == "pool at mb3"
        rows.append([a.key, fmnist.flops(a), trend - 0.5 * low + rng.gauss(0, 0.05), None, trend - 0.3 * low + rng.gauss(0, 0.05)])
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"run": "x", "archs": rows}))
    fams = attentive_picks.family_residuals(path)["families"]
    low, rest = fams.pop("pool at mb3"), fams.pop("conv everywhere")
    assert low["archs"] > 20 and rest["archs"] > 200
    assert low["val"]["mean"] - rest["val"]["mean"] == pytest.approx(-0.5, abs=0.05)
    assert low["test"]["mean"] - rest["test"]["mean"] == pytest.approx(-0.3, abs=0.05)
    assert abs(rest["test"]["mean"]) < 0.05
