import json
import math
import random
import statistics

import pytest
from click.testing import CliRunner
from conftest import TINY_SPACE, synthetic_table, train_tiny_run

from nastools.cli import main
from nastools.errors import NastoolsError
from nastools.search import Candidate, EvolutionSearch, SearchConfig, best_under, parse_budgets, parse_latency, random_search

TINY = TINY_SPACE


def synthetic_accuracy(space):
    """A deterministic, structured stand-in for supernet accuracy: grows with log-FLOPs, and
    each gene helps or hurts by a fixed amount, so that archs of equal cost differ."""
    from nastools.predictor import arch_features

    weights = [random.Random(i).uniform(-1.5, 1.5) for i in range(64)]

    def acc(arch):
        genes = arch_features(space, arch)[:-2]
        return 40 + 4 * math.log(space.flops(arch)) + sum(w * g for w, g in zip(weights, genes))

    return acc


def test_parse_budgets():
    assert parse_latency("10ms") == 10 and parse_latency("800us") == pytest.approx(0.8) and parse_latency("0.5s") == 500
    bs = parse_budgets(("2ms,4ms", "gpu=1ms"), ("300M",), ("5M",))
    assert [(b.metric, b.limit, b.device) for b in bs] == [
        ("latency", 2, "default"),
        ("latency", 4, "default"),
        ("latency", 1, "gpu"),
        ("flops", 3e8, None),
        ("params", 5e6, None),
    ]
    for bad in ("10", "ms", "-3ms", "10 parsecs", "=3ms"):
        with pytest.raises(NastoolsError, match=repr(bad)):
            parse_budgets((bad,))
    from nastools.search.budget import format_latency

    assert [format_latency(x) for x in (0.8, 0.9996, 1.0, 12.345)] == ["800us", "1ms", "1ms", "12.3ms"]
    with pytest.raises(NastoolsError, match="'-1ms': expected a positive time"):
        parse_latency("-1ms")


def test_parse_budgets_takes_one_string_or_numbers_from_python():
    # a string is one item, not a sequence of one-character items ('1', 'm', 's')
    assert parse_budgets("1ms") == parse_budgets(("1ms",))
    assert parse_budgets(flops="10M,20M") == parse_budgets(flops=(10e6, "20M"))
    assert [b.limit for b in parse_budgets(params=1.5e6)] == [1.5e6]
    with pytest.raises(NastoolsError, match="'1': add a unit"):
        parse_budgets(latency=1)  # a latency needs its unit, as on the command line
    with pytest.raises(NastoolsError, match="flops budget None"):
        parse_budgets(flops=[None])


@pytest.mark.parametrize(
    "options, budgets, match",
    [
        (dict(eval_images=0), None, "--eval-images 0"),
        (dict(calib_images=0), None, "--calib-images 0"),
        (dict(batch_size=0), None, "--batch-size 0"),
        (dict(population=1), None, "--population 1"),
        (dict(rerank=-1), None, "--rerank -1"),
        (dict(mutate_prob=2.0), None, "mutate_prob 2.0"),
        (dict(statistic="mean"), None, "--statistic: got 'mean'"),
        ({}, "1ms", "budgets: got '1ms' \\(str\\), expected Budget objects"),
        ({}, ["20M"], "budgets: got '20M'"),
    ],
)
def test_run_search_checks_its_arguments_before_any_work(tmp_path, options, budgets, match):
    from nastools.search.runner import SearchOptions, run_search

    budgets = parse_budgets(flops=("20M",)) if budgets is None else budgets
    with pytest.raises(NastoolsError, match=match):  # refused before the (missing) run is looked up
        run_search(tmp_path / "no-run", budgets, options=SearchOptions(**options), progress=False, log=lambda m: None)


def _engine(space, limits, cfg, **kw):
    costs = {"flops": space.flops, "params": space.params}
    return EvolutionSearch(space, kw.pop("acc", synthetic_accuracy(space)), costs, limits, "flops", cfg, **kw)


@pytest.mark.parametrize("strategy", ["archive", "nsga2"])
def test_evolution_respects_limits_and_is_deterministic(fmnist, strategy):
    limits = {"flops": 15e6, "params": 1.5e6}
    runs = []
    for _ in range(2):
        res = _engine(fmnist, limits, SearchConfig(population=10, generations=4, strategy=strategy, seed=3)).run()
        assert res.evaluations == 50
        assert all(c.costs["flops"] <= 15e6 and c.costs["params"] <= 1.5e6 for c in res.candidates)
        runs.append([c.arch.id for c in res.candidates])
    assert runs[0] == runs[1]
    other = _engine(fmnist, limits, SearchConfig(population=10, generations=4, strategy=strategy, seed=4)).run()
    assert [c.arch.id for c in other.candidates] != runs[0]


@pytest.mark.parametrize("strategy", ["archive", "nsga2"])
def test_evolution_beats_random_on_a_known_objective(fmnist, strategy):
    # with the same number of evaluations, evolution must find better archs near the budget
    limits = {"flops": 20e6}
    acc = synthetic_accuracy(fmnist)
    wins = 0
    for seed in range(5):
        evo = _engine(fmnist, limits, SearchConfig(population=12, generations=5, seed=seed, strategy=strategy)).run()
        rnd = random_search(fmnist, acc, {"flops": fmnist.flops, "params": fmnist.params}, limits, "flops", evo.evaluations, seed)
        wins += best_under(evo.candidates, limits).top1 > best_under(rnd, limits).top1
    assert wins >= 4


def test_bands_spend_evaluations_near_each_budget(fmnist):
    # several budgets: with cost bands, each budget's offspring cost more than the middle of
    # the next lower budget's band, so more evaluations land just under the looser budgets
    # (where their best archs lie) than when offspring may be as cheap as they like
    lo, hi = fmnist.flops(fmnist.min_arch()), fmnist.flops(fmnist.max_arch())
    targets = [lo + (hi - lo) * q for q in (0.1, 0.25, 0.4, 0.55, 0.7)]
    limits = {"flops": targets[-1]}
    upper = {}
    for band in (True, False):
        n = 0
        for seed in range(3):
            res = _engine(fmnist, limits, SearchConfig(population=10, generations=3, seed=seed, band=band), targets=targets).run()
            assert all(c.costs["flops"] <= targets[-1] for c in res.candidates)
            n += sum(c.costs["flops"] > targets[2] for c in res.candidates)
        upper[band] = n
    assert upper[True] > 1.5 * upper[False]
    engine = _engine(fmnist, limits, SearchConfig(band=True), targets=targets)
    assert engine._floor(0) is None
    assert engine._floor(1) == pytest.approx((lo + targets[0]) / 2)
    assert engine._floor(4) == pytest.approx((targets[2] + targets[3]) / 2)


def test_resume_continues_without_re_evaluating(fmnist, tmp_path):
    calls = []
    base = synthetic_accuracy(fmnist)

    def counted(arch):
        calls.append(arch.id)
        return base(arch)

    limits = {"flops": 20e6}
    full = _engine(fmnist, limits, SearchConfig(population=8, generations=4, seed=1), acc=counted).run()
    n_full = len(calls)
    calls.clear()
    state = tmp_path / "state.json"
    _engine(fmnist, limits, SearchConfig(population=8, generations=2, seed=1), acc=counted, state_path=state).run()
    assert json.loads(state.read_text())["generation"] == 2
    first = len(calls)
    resumed = _engine(fmnist, limits, SearchConfig(population=8, generations=4, seed=1), acc=counted, state_path=state)
    res = resumed.run()
    assert resumed.resumed_generation == 2
    assert len(calls) == n_full and len(calls) - first == n_full - first  # nothing evaluated twice
    assert [c.arch.id for c in res.candidates] == [c.arch.id for c in full.candidates]


def test_a_state_of_other_accuracies_or_more_generations_is_started_over_with_a_note(fmnist, tmp_path):
    """The saved state is resumed only by the search that saved it: the same accuracy key
    (checkpoint and evaluation settings) and no more generations done than asked; any other
    state is started over, and the note says what differs."""
    limits, state = {"flops": 20e6}, tmp_path / "state.json"

    def engine(generations=2, key="ckpt-a|calib=60|eval=100|seed=1"):
        notes = []
        e = _engine(
            fmnist,
            limits,
            SearchConfig(population=4, generations=generations, seed=1),
            state_path=state,
            accuracy_key=key,
            note=notes.append,
        )
        return e, notes

    def run(**kw):
        e, notes = engine(**kw)
        res = e.run()
        return e, notes, [c.arch.id for c in res.candidates]

    first, notes, ids2 = run()
    assert notes == [] and first.resumed_generation is None
    assert json.loads(state.read_text())["accuracy_key"] == "ckpt-a|calib=60|eval=100|seed=1"
    same, notes, _ = run()
    assert same.resumed_generation == 2 and notes == [] and same.started_over is None
    for key, why in (
        ("ckpt-a|calib=60|eval=200|seed=1", "--eval-images 100, now 200"),
        ("ckpt-a|calib=128|eval=100|seed=1", "--calib-images 60, now 128"),
        ("ckpt-b|calib=60|eval=100|seed=1", "accuracies of another checkpoint or data"),
    ):
        other, notes, _ = run(key=key)
        assert other.resumed_generation is None and other.started_over == why
        assert notes == [f"the saved state in {state} belongs to another search ({why}): started over"]
        run()  # back to the first key (itself started over)
    # more generations done than asked: the search asked for, its first generations again
    fewer, notes, ids1 = run(generations=1)
    assert fewer.resumed_generation is None and notes[0].endswith("(2 generations done, 1 asked): started over")
    assert json.loads(state.read_text())["generation"] == 1 and ids1 == ids2[: len(ids1)] and len(ids1) < len(ids2)
    # an older nastools's state (no key), or one that is no search state at all
    old = json.loads(state.read_text())
    del old["accuracy_key"]
    state.write_text(json.dumps(old))
    e, notes, _ = run(generations=1)
    assert e.resumed_generation is None and "saved by an older nastools" in notes[0]
    state.write_text('{"format": 1}')
    e, notes, _ = run(generations=1)
    assert e.resumed_generation is None and "format 1, not nastools.search-state/1" in notes[0]
    e, notes, _ = run(generations=1, key=None)  # a key of None neither matches a saved key nor resumes it
    assert e.resumed_generation is None and notes


@pytest.mark.parametrize("strategy", ["archive", "nsga2"])
@pytest.mark.parametrize("slack", [1.002, 1.045])
def test_budget_just_above_the_cheapest_subnet_ends_with_the_few_archs_it_admits(fmnist, strategy, slack):
    # 2.78M FLOPs admits only a handful of fmnist subnets: the search used to loop forever
    # looking for 16 distinct ones (initial population) or for new offspring
    limit = fmnist.flops(fmnist.min_arch()) * slack
    res = _engine(fmnist, {"flops": limit}, SearchConfig(population=16, generations=3, strategy=strategy, seed=0)).run()
    ids = [c.arch.id for c in res.candidates]
    assert len(ids) == len(set(ids)) and 1 <= len(ids) < 16 * 4
    assert all(c.costs["flops"] <= limit for c in res.candidates)
    assert res.generations_done == 3


def test_budget_below_cheapest_names_cheapest(fmnist):
    with pytest.raises(NastoolsError, match="below the cheapest subnet"):
        _engine(fmnist, {"flops": 1e6}, SearchConfig())


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A tiny supernet trained for a few sandwich steps on real Fashion-MNIST."""
    run = tmp_path_factory.mktemp("runs") / "tiny"
    return run, train_tiny_run(run, steps=40)


def _search(run, *args):
    base = ["search", "--run", str(run), "--population", "4", "--generations", "2", "--calib-images", "128", "--eval-images", "256"]
    base += ["--rerank-images", "512"]
    return CliRunner().invoke(main, base + list(args))


def test_search_table_shows_every_budget_a_pick_meets(tiny_run, tmp_path):
    run, space = tiny_run
    lo, hi = space.flops(space.min_arch()), space.flops(space.max_arch())
    p_hi = space.params(space.max_arch())
    result = _search(run, "--flops", f"{(lo + hi) / 2:.0f}", "--params", f"{0.8 * p_hi:.0f}", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if line.startswith("flops <= "))
    assert ", params <= " in row  # the params limit applies to the pick too, and the table says so


def test_search_no_progress_drops_the_bars_not_the_table(tiny_run, tmp_path):
    run, space = tiny_run
    flops = f"{space.flops(space.max_arch()):.0f}"
    shown = _search(run, "--flops", flops, "--out", str(tmp_path / "a"))
    quiet = _search(run, "--flops", flops, "--out", str(tmp_path / "b"), "--no-progress")
    assert shown.exit_code == 0 and quiet.exit_code == 0, shown.output + quiet.output
    assert "gen/s" in shown.output and "gen/s" not in quiet.output and "arch/s" not in quiet.output
    assert any(line.startswith("flops <= ") for line in quiet.output.splitlines())


def test_search_cli_multi_budget(tiny_run):
    run, space = tiny_run
    lo, hi = space.flops(space.min_arch()), space.flops(space.max_arch())
    budgets = [lo * 1.5, (lo + hi) / 2, hi]
    result = _search(run, "--flops", ",".join(f"{b:.0f}" for b in budgets), "--rerank", "0", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output[result.output.index("{") :])
    picks = out["picks"]
    assert len(picks) == 3
    assert all("search_top1" not in p for p in picks)  # picked by the search's own scores
    pareto = json.loads((run / "search" / "pareto.json").read_text())
    evaluated = {e["id"]: e for e in pareto["evaluated"]}
    for budget, pick in zip(budgets, picks):
        assert pick["costs"]["flops"] <= budget
        # the pick is the most accurate evaluated arch within its budget
        assert pick["top1"] == max(e["top1"] for e in evaluated.values() if e["costs"]["flops"] <= budget)
    tops = [p["top1"] for p in picks]
    assert tops == sorted(tops)  # a larger budget never picks a worse arch
    best = json.loads((run / "search" / "best.json").read_text())
    assert space.arch_from_dict(best).id == picks[0]["id"]
    assert (run / "search" / "pareto.png").stat().st_size > 1000


def test_search_picks_the_finalist_best_on_more_validation_images(tiny_run, tmp_path):
    from nastools.checkpoint import run_splits
    from nastools.search.evaluator import SubnetEvaluator
    from nastools.search.runner import _load_supernet

    run, space = tiny_run
    lo, hi = space.flops(space.min_arch()), space.flops(space.max_arch())
    budgets = [lo + 0.3 * (hi - lo), hi]
    args = ["--flops", ",".join(f"{b:.0f}" for b in budgets), "--rerank", "3", "--out", str(tmp_path)]
    result = _search(run, *args, "--json")
    assert result.exit_code == 0, result.output
    picks = json.loads(result.output[result.output.index("{") :])["picks"]
    pareto = json.loads((tmp_path / "pareto.json").read_text())
    rescored = json.loads((tmp_path / "rerank_cache.json").read_text())["top1"]
    evaluated = pareto["evaluated"]
    assert pareto["timing"]["rerank_images"] == 512 and pareto["timing"]["rerank_archs"] == len(rescored)
    for budget, pick in zip(budgets, picks):
        within = sorted((e for e in evaluated if e["costs"]["flops"] <= budget), key=lambda e: (-e["top1"], e["costs"]["flops"]))
        finalists = {e["id"]: e["top1"] for e in within[:3]}
        assert set(finalists) <= set(rescored)
        assert pick["id"] in finalists and pick["search_top1"] == finalists[pick["id"]]
        assert pick["top1"] == max(rescored[i] for i in finalists)  # the best finalist by the new score
    # the new score is a real evaluation on the first 512 validation images, same recalibration
    ckpt, data, net = _load_supernet(run)
    scorer = SubnetEvaluator(net, run_splits(data), calib_images=128, eval_images=512)
    assert scorer(space.arch_from_dict(picks[-1]["arch"])) == picks[-1]["top1"]
    assert json.loads((tmp_path / "best.json").read_text())["search_top1"] == picks[0]["search_top1"]
    again = _search(run, *args)  # resumed: the finalists' scores come from the cache
    assert again.exit_code == 0, again.output
    assert "finalists scored again on 512 validation images" in again.output


def test_finalists_are_the_k_best_within_each_budget_once(fmnist):
    from nastools.search.rerank import finalists

    rng = random.Random(1)
    archs = list({a.id: a for a in (fmnist.sample(rng) for _ in range(40))}.values())
    cands = [Candidate(a, float(i % 7), {"flops": fmnist.flops(a), "params": fmnist.params(a)}) for i, a in enumerate(archs)]
    flops = sorted(c.costs["flops"] for c in cands)
    budgets = [{"flops": flops[10]}, {"flops": flops[-1], "params": 1e12}]
    got = finalists(cands, budgets, 3)
    assert len({c.arch.id for c in got}) == len(got)  # each once, though both budgets admit the cheap ones
    for lim in budgets:
        within = [c for c in cands if all(c.costs[k] <= v for k, v in lim.items())]
        best = sorted(within, key=lambda c: (-c.top1, c.costs["flops"]))[:3]
        assert {c.arch.id for c in best} <= {c.arch.id for c in got}
    assert len(got) <= 6 and finalists(cands, budgets, 0) == []


def test_rerank_images_no_more_than_the_search_saw_is_a_one_line_error(tiny_run):
    run, space = tiny_run
    result = _search(run, "--flops", f"{space.flops(space.max_arch()):.0f}", "--rerank-images", "256")
    assert result.exit_code == 1
    assert "--rerank-images 256 is not more than --eval-images 256" in result.output
    assert "Traceback" not in result.output


def test_rerank_images_only_when_more_than_the_search_saw():
    from nastools.search.rerank import rerank_images

    assert rerank_images(None, 2000, 5000) == 5000
    assert rerank_images(3000, 2000, 5000) == 3000
    assert rerank_images(9000, 2000, 5000) == 5000
    assert rerank_images(None, 5000, 5000) == 0  # the search scored every validation image already
    assert rerank_images(1000, 2000, 5000) == 0


def test_search_cli_resumes_and_caches(tiny_run):
    run, space = tiny_run
    budget = f"{space.flops(space.max_arch()):.0f}"
    first = _search(run, "--flops", budget, "--params", "1M", "--fresh", "--json")
    assert first.exit_code == 0, first.output
    again = _search(run, "--flops", budget, "--params", "1M", "--json")
    a = json.loads(first.output[first.output.index("{") :])
    b = json.loads(again.output[again.output.index("{") :])
    assert a["picks"] == b["picks"]
    assert b["timing"]["archs"] == 0  # everything came from the saved state and cache
    assert a["picks"][0]["costs"]["params"] <= 1e6


def test_a_search_removes_the_temp_files_a_killed_search_left(tiny_run, tmp_path):
    """A search killed while writing its state, cache or outputs leaves
    ``.<name>.<random>.tmp`` files; the next search in that folder removes them."""
    run, space = tiny_run
    stale = [tmp_path / f".{name}.k1ll3d_x.tmp" for name in ("state.json", "accuracy_cache.json", "pareto.json", "best-1.json")]
    kept = tmp_path / ".notes.json.k1ll3d_x.tmp"
    for p in stale + [kept]:
        p.write_text("{")
    result = _search(run, "--flops", f"{space.flops(space.max_arch()):.0f}", "--rerank", "0", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert not any(p.exists() for p in stale) and kept.exists()


@pytest.fixture(scope="module")
def other_run(tmp_path_factory):
    """Another tiny supernet of the same space, trained for fewer steps (other accuracies)."""
    run = tmp_path_factory.mktemp("runs") / "other"
    train_tiny_run(run, steps=5)
    return run


def test_search_cli_starts_over_a_state_of_another_supernet_or_evaluation(tiny_run, other_run, tmp_path):
    """A state saved by a search of another supernet, or of other --eval-images or
    --calib-images, is not resumed (its accuracies are not this search's): the search starts
    over, says why, and reports what a fresh search reports."""
    run, space = tiny_run
    args = ["--flops", f"{space.flops(space.max_arch()):.0f}", "--rerank", "0", "--json"]

    def search(r, out, *more):
        result = _search(r, *args, "--out", str(out), *more)
        assert result.exit_code == 0, result.output
        return result, json.loads(result.stdout)

    def found(out):
        return [(e["id"], e["top1"]) for e in json.loads((out / "pareto.json").read_text())["evaluated"]]

    shared, fresh = tmp_path / "shared", tmp_path / "fresh"
    search(run, shared)
    state = shared / "state.json"
    for r, more, why in (
        (other_run, [], "accuracies of another checkpoint or data"),
        (other_run, ["--eval-images", "200"], "--eval-images 256, now 200"),
        (other_run, ["--eval-images", "200", "--calib-images", "100"], "--calib-images 128, now 100"),
    ):
        again, out = search(r, shared, *more)
        assert f"the saved state in {state} belongs to another search ({why}): started over" in again.stderr
        assert "resumed the saved search" not in again.stderr
        assert out["timing"]["archs"] == out["timing"]["evaluations"] > 0  # all scored anew
        search(r, fresh, "--fresh", *more)
        assert found(shared) == found(fresh)  # what a fresh search of that supernet finds
    # more generations done than asked: started over, every accuracy from the cache
    again, out = search(other_run, shared, "--eval-images", "200", "--calib-images", "100", "--generations", "1")
    assert "(2 generations done, 1 asked): started over" in again.stderr
    assert out["timing"]["archs"] == 0 and out["timing"]["reused"] == out["timing"]["evaluations"] < len(found(fresh))
    assert json.loads(state.read_text())["generation"] == 1


def test_search_cli_screens_offspring_with_the_predictor_unless_told_not_to(tiny_run, tmp_path):
    run, space = tiny_run
    budget = f"{space.flops(space.max_arch()):.0f}"
    evaluated = {}
    for flag in ("", "--no-predictor"):
        out = tmp_path / (flag or "default")
        result = _search(run, "--flops", budget, "--generations", "3", "--out", str(out), *([flag] if flag else []))
        assert result.exit_code == 0, result.output
        state = json.loads((out / "state.json").read_text())
        assert state["config"]["predictor_factor"] == (0 if flag else 4)
        evaluated[flag] = [e["arch"] for e in state["evaluated"]]
    # the same seed and initial population; offspring differ once the predictor ranks a 4x pool
    assert evaluated[""][:4] == evaluated["--no-predictor"][:4]
    assert evaluated[""] != evaluated["--no-predictor"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--flops", "1K"], "below the cheapest subnet"),
        (["--latency", "fast"], "expected a number with a unit"),
        ([], "no budget given"),
        (["--flops", "1M,2M", "--params", "1M,2M"], "sweep one cost at a time"),
        (["--latency", "5ms", "--table", "default=/no/such/table.json"], "nastools profile"),
        (["--latency", "5ms", "--table", "cpu=/no/such/table.json"], "nastools profile"),  # cpu is the default device
        (["--latency", "5ms", "--table", "/no/such/table.json"], "nastools profile"),
        (["--latency", "5ms", "--table", "gpu=/no/such/table.json"], "no --latency budget on 'gpu' uses it"),
        (["--flops", "5M", "--table", "cpu=/no/such/table.json"], "budgets on: none"),
    ],
)
def test_search_cli_bad_budgets(tiny_run, args, message):
    run, _ = tiny_run
    result = _search(run, *args)
    assert result.exit_code == (2 if "fast" in args else 1)  # a malformed budget is a bad option value
    out = result.output.strip().splitlines()[-1]
    assert out.startswith("Error: ") and message in out


def test_search_missing_checkpoint(tmp_path):
    result = CliRunner().invoke(main, ["search", "--run", str(tmp_path / "nope"), "--flops", "10M"])
    assert result.exit_code == 1 and "nastools train" in result.output


@pytest.fixture(scope="module")
def tiny_tables(tiny_run, tmp_path_factory):
    """Real latency tables of the tiny space: ORT CPU and torch eager (two 'devices')."""
    from nastools.latency import OrtCpuBackend, Protocol, TorchBackend, profile

    _, space = tiny_run
    out = tmp_path_factory.mktemp("tables")
    quick = Protocol.quick()
    ort = profile(space, OrtCpuBackend(threads=1), out=out / "ort.json", protocol=quick, calibration_runs=6, progress=False)
    eager = profile(space, TorchBackend(threads=1), out=out / "torch.json", protocol=quick, calibration_runs=6, progress=False)
    return ort, eager


def test_search_cli_latency_on_two_devices(tiny_run, tiny_tables):
    run, space = tiny_run
    ort, eager = tiny_tables
    lim_a = (ort.predict(space.min_arch()) + ort.predict(space.max_arch())) / 2
    lim_b = (eager.predict(space.min_arch()) + eager.predict(space.max_arch())) / 2
    result = _search(
        run,
        "--latency",
        f"cpu={lim_a:.4f}ms",
        "--latency",
        f"eager={lim_b:.4f}ms",
        "--table",
        f"cpu={ort.path}",
        "--table",
        f"eager={eager.path}",
        "--no-measure",
        "--rerank",
        "0",
        "--fresh",
        "--json",
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.output[result.output.index("{") :])
    (pick,) = out["picks"]  # two devices constrain one pick jointly
    arch = space.arch_from_dict(pick["arch"])
    assert ort.predict(arch) <= lim_a and eager.predict(arch) <= lim_b
    assert pick["costs"]["latency:cpu"] == pytest.approx(ort.predict(arch))
    pareto = json.loads((run / "search" / "pareto.json").read_text())
    feasible = [e for e in pareto["evaluated"] if e["costs"]["latency:cpu"] <= lim_a and e["costs"]["latency:eager"] <= lim_b]
    assert pick["top1"] == max(e["top1"] for e in feasible)


@pytest.mark.parametrize("table_arg", ["cpu={}", "{}"])
def test_a_plain_latency_budget_uses_the_table_given_for_the_cpu(tiny_run, tiny_tables, tmp_path, table_arg):
    run, space = tiny_run
    ort, _ = tiny_tables
    mine = tmp_path / "mine.json"
    mine.write_text(ort.path.read_text())
    lim = (ort.predict(space.min_arch()) + ort.predict(space.max_arch())) / 2
    result = _search(
        run, "--latency", f"{lim:.4f}ms", "--table", table_arg.format(mine), "--no-measure", "--fresh", "--out", str(tmp_path / "search")
    )
    assert result.exit_code == 0, result.output
    assert f"table {mine} " in result.output  # not the newest table of latency_tables/


def test_search_measures_latency_picks_end_to_end(tiny_run, tiny_tables):
    run, space = tiny_run
    ort, _ = tiny_tables
    # a budget every subnet fits whatever this machine's speed now (quick-protocol tables drift a lot)
    hi = 3 * ort.predict(space.max_arch())
    result = _search(run, "--latency", f"{hi:.4f}ms", "--table", f"default={ort.path}", "--fresh", "--json")
    assert result.exit_code == 0, result.output
    (pick,) = json.loads(result.output[result.output.index("{") :])["picks"]
    # the table was profiled on this machine, so the pick was timed end to end through ORT
    assert 0 < pick["costs"]["measured:latency:default"] <= hi
    assert pick["replaced"] == []  # every subnet fits this budget (replacement: test_pick_measured_*)
    # and the machine's speed now was compared with the table's calibration runs first:
    # predictions are the table's scaled by that factor (unless it is within 3% of 1)
    from nastools.search.runner import DRIFT_TOLERANCE

    drift = json.loads((run / "search" / "pareto.json").read_text())["latency_drift"]["latency:default"]
    assert drift["factor"] == pytest.approx(statistics.median(drift["ratios"]), rel=1e-3)
    assert json.loads((run / "search" / "drift.json").read_text())["latency:default"]["factor"] == drift["factor"]
    arch = space.arch_from_dict(pick["arch"])
    scale = drift["factor"] if abs(drift["factor"] - 1) > DRIFT_TOLERANCE else 1.0
    assert pick["costs"]["latency:default"] == pytest.approx(scale * ort.predict(arch))
    # the pick was timed with the table's reference subnets and held to the budget at the
    # speed its prediction assumes: as timed, scaled by the assumed / the measured speed
    v = pick["verification"]["latency:default"]
    assert v["assumed_speed"] == pytest.approx(scale) and v["speed"] > 0
    assert pick["costs"]["measured:latency:default"] == pytest.approx(v["timed_ms"] * scale / v["speed"], rel=1e-4)
    saved = json.loads((run / "search" / "pareto.json").read_text())["picks"][0]
    assert saved["verification"] == pick["verification"]


def test_search_resume_keeps_its_drift_and_no_drift_uses_the_table_as_profiled(tiny_run, tiny_tables, monkeypatch):
    import nastools.latency

    run, space = tiny_run
    ort, _ = tiny_tables
    hi = 3 * ort.predict(space.max_arch())
    args = ("--latency", f"{hi:.4f}ms", "--table", f"default={ort.path}", "--json")
    first = _search(run, *args, "--fresh")
    assert first.exit_code == 0, first.output
    factor = json.loads((run / "search" / "drift.json").read_text())["latency:default"]["factor"]

    def no_measuring(*a, **k):
        raise AssertionError("a resumed search must not measure the drift again")

    monkeypatch.setattr(nastools.latency, "check_drift", no_measuring)
    again = _search(run, *args)  # resumes: the candidates' costs were scaled by the held factor
    assert again.exit_code == 0, again.output
    assert json.loads((run / "search" / "pareto.json").read_text())["latency_drift"]["latency:default"]["factor"] == factor
    plain = _search(run, *args, "--fresh", "--no-drift")
    assert plain.exit_code == 0, plain.output
    (pick,) = json.loads(plain.output[plain.output.index("{") :])["picks"]
    assert pick["costs"]["latency:default"] == pytest.approx(ort.predict(space.arch_from_dict(pick["arch"])))
    assert json.loads((run / "search" / "pareto.json").read_text())["latency_drift"] == {}


def test_a_search_that_starts_another_searchs_state_over_measures_the_drift_anew(tiny_run, tmp_path, monkeypatch):
    """drift.json holds the speed measured when the search whose state lies beside it began:
    a resumed search keeps it (its saved candidates' costs were scaled by it); a search that
    starts another search's state over (here of other --calib-images) measures the speed
    anew, as a fresh search does, and rewrites the record; one that measures none then
    leaves no record of the other search's speed (synthetic table, nothing timed)."""
    import nastools.latency
    from nastools.search.latency_cost import LatencyCost

    run, space = tiny_run
    table = synthetic_table(space, tmp_path / "table.json")
    speeds = []  # what check_drift gives, one factor per call expected

    def check_drift(t, *a, **k):
        f = speeds.pop(0)  # an unexpected call finds none: the search fails
        return {"factor": f, "ratios": [f]}

    monkeypatch.setattr(nastools.latency, "check_drift", check_drift)
    monkeypatch.setattr(LatencyCost, "measurer", lambda self: lambda archs: [self.predict(a) for a in archs])
    out = tmp_path / "search"
    args = ("--latency", f"{3 * table.predict(space.max_arch()):.4f}ms", "--table", f"default={table.path}", "--rerank", "0")

    def search(*more, speed=None):
        speeds[:] = [] if speed is None else [speed]
        result = _search(run, *args, "--out", str(out), *more)
        assert result.exit_code == 0, result.output
        assert speeds == []  # measured (once) where a speed was expected
        drift = json.loads((out / "drift.json").read_text())["latency:default"]["factor"] if (out / "drift.json").exists() else None
        evaluated = json.loads((out / "state.json").read_text())["evaluated"]
        scales = {round(e["costs"]["latency:default"] / table.predict(space.arch_from_dict(e["arch"])), 6) for e in evaluated}
        return result.output, drift, scales

    assert search(speed=1.5)[1:] == (1.5, {1.5})
    said, drift, scales = search()
    assert "resumed the saved search at generation 2 of 2" in said and (drift, scales) == (1.5, {1.5})
    said, drift, scales = search("--calib-images", "100", speed=2.0)
    assert "belongs to another search (--calib-images 128, now 100): started over" in said and (drift, scales) == (2.0, {2.0})
    said, drift, scales = search("--calib-images", "100")
    assert "resumed the saved search" in said and (drift, scales) == (2.0, {2.0})
    said, drift, scales = search("--calib-images", "100", "--population", "6", "--no-drift")
    assert "(population 4, now 6): started over" in said and (drift, scales) == (None, {1.0})


def test_a_verdict_judged_before_the_search_is_the_engines_and_the_search_follows_it(fmnist, tmp_path):
    """SearchIdentity judges a saved state by the engine's own rules before any cost model
    exists (the drift factor a resumed search keeps depends on the verdict), and a search
    handed that verdict follows it instead of judging the state again."""
    from nastools.search.evolution import SavedState, SearchIdentity

    limits, state = {"flops": 20e6}, tmp_path / "state.json"
    _engine(fmnist, limits, SearchConfig(population=4, generations=1, seed=1), state_path=state, accuracy_key="a|eval=9").run()
    ident = SearchIdentity.of(fmnist, limits, "flops", SearchConfig(population=4, generations=2, seed=1), accuracy_key="a|eval=9")
    engine = _engine(fmnist, limits, SearchConfig(population=4, generations=2, seed=1), state_path=state, accuracy_key="a|eval=9")
    assert engine.identity == ident
    saved = ident.judge(state)
    assert saved == SavedState(json.loads(state.read_text()), None)
    other = SearchIdentity.of(fmnist, limits, "flops", SearchConfig(population=4, generations=2, seed=1), accuracy_key="a|eval=8")
    assert other.judge(state) == SavedState(None, "--eval-images 9, now 8")
    assert ident.judge(tmp_path / "none.json") == SavedState(None, None)
    state.unlink()  # the search resumes from the verdict, not from the file
    engine.run(saved=saved)
    assert engine.resumed_generation == 1 and engine.started_over is None
    told = _engine(fmnist, limits, SearchConfig(population=4, generations=2, seed=1), state_path=state, accuracy_key="a|eval=9")
    told.run(saved=SavedState(None, "told so"))  # the file is this search's, the verdict says not
    assert told.resumed_generation is None and told.started_over == "told so"


def test_search_notes_a_table_of_another_cpu_generation(tiny_run, tiny_tables, tmp_path):
    from nastools.latency import LatencyTable

    run, space = tiny_run
    ort, _ = tiny_tables
    hi = 3 * ort.predict(space.max_arch())
    other = LatencyTable.load(ort.path, space)
    other.meta["cpu_id"] = "GenuineIntel family 6 model 85"  # same model name, another generation
    other.path = tmp_path / "other-generation.json"
    other.save()
    notes = []
    for table in (ort.path, other.path):
        result = _search(run, "--latency", f"{hi:.4f}ms", "--table", f"default={table}", "--fresh", "--no-drift")
        assert result.exit_code == 0, result.output
        notes.append(
            "profiled on another generation of this CPU model" in result.output
            and "GenuineIntel family 6 model 85; this one:" in result.output
        )
    assert notes == [False, True]


def test_pick_measured_replaces_over_budget_archs_at_the_measured_slowdown(fmnist):
    from nastools.search.evolution import Candidate
    from nastools.search.runner import pick_measured

    # twelve archs, the more accurate the costlier, predicted 0.5-1.6 ms; the device runs
    # everything 1.3x slower than predicted
    rng = random.Random(0)
    cands = [Candidate(fmnist.sample(rng), 70.0 + i, {"latency:cpu": 0.5 + 0.1 * i}) for i in range(12)]
    calls = []

    def measure(archs):
        calls.append([a.id for a in archs])
        return [1.3 * next(c.costs["latency:cpu"] for c in cands if c.arch.id == a.id) for a in archs]

    (pick,) = pick_measured(cands, "latency:cpu", [{"latency:cpu": 1.55}], {"latency:cpu": measure}, retries=2)
    # the best under 1.55 predicts 1.5 and measures 1.95 (twice: interference is ruled out);
    # the replacement must fit 1.55 / 1.3 = 1.19 ms predicted: the 1.1 ms arch, which measures 1.43
    assert [r["id"] for r in pick.replaced] == [cands[10].arch.id]
    assert pick.candidate is cands[6] and pick.measured_ms == pytest.approx(1.43)
    assert calls == [[cands[10].arch.id], [cands[10].arch.id], [cands[6].arch.id]]
    # nothing measured: the plain best under the budget
    (plain,) = pick_measured(cands, "latency:cpu", [{"latency:cpu": 1.55}], {})
    assert plain.candidate is cands[10] and plain.measured_ms is None and not plain.replaced


def test_a_pick_timed_slow_only_because_the_machine_slowed_is_kept(fmnist, monkeypatch):
    from types import SimpleNamespace

    import nastools.latency
    from nastools.search.evolution import Candidate
    from nastools.search.latency_cost import PickVerifier
    from nastools.search.runner import _attach_verification, pick_measured

    # as in the test above: predicted 0.5-1.6 ms, and every arch is timed at 1.3x its prediction,
    # but here the table's reference subnets ran 1.3x slower in the same rounds too
    rng = random.Random(0)
    cands = [Candidate(fmnist.sample(rng), 70.0 + i, {"latency:cpu": 0.5 + 0.1 * i}) for i in range(12)]
    pred = {c.arch.id: c.costs["latency:cpu"] for c in cands}
    monkeypatch.setattr(
        nastools.latency, "measure_referenced", lambda table, archs, **kw: ([1.3 * pred[a.id] for a in archs], {"factor": 1.3})
    )
    verifier = PickVerifier(SimpleNamespace(table=None, assumed_speed=1.0))
    (pick,) = _attach_verification(
        pick_measured(cands, "latency:cpu", [{"latency:cpu": 1.55}], {"latency:cpu": verifier}), {"latency:cpu": verifier}
    )
    # the best under 1.55 ms (1.5 predicted) is timed at 1.95 ms, 1.5 ms at the speed the search assumed: kept
    assert pick.candidate is cands[10] and not pick.replaced and pick.measured_ms == pytest.approx(1.5)
    assert pick.verification == {"latency:cpu": pytest.approx({"timed_ms": 1.95, "speed": 1.3, "assumed_speed": 1.0})}


def test_pick_measured_measures_the_picks_of_all_budgets_together(fmnist):
    from nastools.search.evolution import Candidate
    from nastools.search.runner import pick_measured

    rng = random.Random(1)
    cands = [Candidate(fmnist.sample(rng), 70.0 + i, {"latency:cpu": 0.5 + 0.1 * i}) for i in range(12)]
    pred = {c.arch.id: c.costs["latency:cpu"] for c in cands}
    # the two costliest archs measure 1.5x their prediction the first time, then 1.02x
    # (a burst of interference); every other arch measures as predicted
    seen: dict[str, int] = {}
    calls = []

    def measure(archs):
        calls.append(sorted(a.id for a in archs))
        out = []
        for a in archs:
            seen[a.id] = seen.get(a.id, 0) + 1
            burst = pred[a.id] >= 1.5 and seen[a.id] == 1
            out.append(pred[a.id] * (1.5 if burst else 1.02))
        return out

    budgets = [{"latency:cpu": v} for v in (0.75, 1.25, 1.65)]
    picks = pick_measured(cands, "latency:cpu", budgets, {"latency:cpu": measure})
    # one call measures the three picks; only the one over its budget is measured again,
    # keeps its smaller figure, and fits: nothing is replaced
    assert calls[0] == sorted(c.arch.id for c in (cands[2], cands[7], cands[11]))
    assert calls[1:] == [[cands[11].arch.id]]
    assert [p.candidate for p in picks] == [cands[2], cands[7], cands[11]]
    assert picks[2].measured_ms == pytest.approx(1.6 * 1.02) and not any(p.replaced for p in picks)
    # the 0.75 ms budget's pick measures 0.714 and keeps it; a budget of 0.7 would replace it
    (tight,) = pick_measured(cands, "latency:cpu", [{"latency:cpu": 0.71}], {"latency:cpu": measure})
    assert tight.replaced and tight.replaced[0]["id"] == cands[2].arch.id and tight.candidate is cands[1]


def test_default_table_is_this_cpu_generations_before_a_newer_one_of_another(tiny_run, tiny_tables, tmp_path, monkeypatch):
    import os

    import nastools.latency.table as tb
    import nastools.machine as m
    from nastools.latency import LatencyTable
    from nastools.search.runner import resolve_table

    _, space = tiny_run
    ort, _ = tiny_tables
    monkeypatch.setattr(tb, "TABLES_DIR", tmp_path)
    monkeypatch.setattr(m, "cpu_name", lambda: "AMD EPYC")
    monkeypatch.setattr(m, "cpu_isa", lambda: "avx512_vnni")
    monkeypatch.setattr(m, "cpu_id", lambda: "AuthenticAMD family 26 model 2")
    (tmp_path / space.name).mkdir()

    def put(name, mtime, **meta):
        t = LatencyTable.load(ort.path, space)
        for k in ("cpu_isa", "cpu_id"):  # as profiled on the CPU the test says, not this one
            t.meta.pop(k, None)
        t.meta.update({"device": "AMD EPYC", **meta})
        t.path = tmp_path / space.name / name
        t.save()
        os.utime(t.path, (mtime, mtime))
        return t.path

    mine = put("mine.json", 1000, cpu_isa="avx512_vnni", cpu_id="AuthenticAMD family 26 model 2")
    zen4 = put("zen4.json", 2000, cpu_isa="avx512_vnni", cpu_id="AuthenticAMD family 25 model 17")  # newer
    avx2 = put("avx2.json", 2500, cpu_isa="avx2")  # newer still, and another vector extension
    put("other-cpu.json", 3000, device="Intel Xeon")
    assert resolve_table(space, "default", {}).path == mine
    mine.unlink()
    assert resolve_table(space, "default", {}).path == zen4  # the same vector extension before another
    zen4.unlink()
    assert resolve_table(space, "default", {}).path == avx2  # the same model name before none


def test_search_refuses_unwritable_out_unknown_devices_and_foreign_state_with_one_line(tiny_run, tmp_path):
    run, space = tiny_run
    afile = tmp_path / "afile"
    afile.write_text("x")
    budget = f"{space.flops(space.max_arch()):.0f}"
    for args, match in (
        (["--flops", budget, "--out", str(afile)], "is a file, not a folder"),
        (["--flops", budget, "--out", str(afile / "sub")], "cannot write there"),
        (["--flops", budget, "--out", ""], "--out: empty path"),
        # a device name no table is given for is not silently this CPU's table
        (["--latency", "cuda=2ms"], "no table given for it (did you mean gpu?)"),
        (["--latency", "jetson=2ms"], "needs --table jetson=PATH"),
    ):
        r = _search(run, *args)
        assert r.exit_code == 1 and match in r.output and r.output.count("\n") == 1, (args, r.output)
    out = tmp_path / "o"
    out.mkdir()
    (out / "state.json").write_text("[1, 2]")  # JSON, but not a search state
    r = _search(run, "--flops", budget, "--out", str(out))
    assert r.exit_code == 1 and "not a nastools search state" in r.output and "--fresh" in r.output


@pytest.mark.slow
def test_a_sigkilled_search_reuses_every_accuracy_it_measured(tiny_run, tmp_path):
    """A search killed outright in the middle of a generation resumes from the state of the
    generation before, and the accuracies measured since come from the cache: the rerun
    measures only what was never measured, and says how many it reused."""
    import os
    import signal
    import subprocess
    import sys
    import time

    run, space = tiny_run
    out = tmp_path / "out"
    args = [
        "search",
        "--run",
        str(run),
        "--flops",
        f"{space.flops(space.max_arch()):.0f}",
        "--population",
        "4",
        "--generations",
        "3",
        "--calib-images",
        "250",
        "--eval-images",
        "2000",
        "--out",
        str(out),
    ]
    p = subprocess.Popen(
        [sys.executable, "-m", "nastools", *args],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )

    def counts():
        try:
            state = json.loads((out / "state.json").read_text())
            cache = json.loads((out / "accuracy_cache.json").read_text())
        except (OSError, ValueError):
            return 0, 0
        return len(state["evaluated"]), len(cache["top1"])

    try:
        deadline = time.time() + 180
        while time.time() < deadline and p.poll() is None:
            saved, cached = counts()
            if saved and cached > saved:  # within a generation: measured, not yet in the state
                break
            time.sleep(0.02)
        assert p.poll() is None, p.communicate()[1]
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=60)
    finally:
        p.kill()
    saved, cached = counts()
    assert 0 < saved < cached
    state = json.loads((out / "state.json").read_text())
    r = CliRunner().invoke(main, [*args, "--json"])
    assert r.exit_code == 0, r.output
    assert f"taking over the lock of pid {p.pid}" in r.stderr
    assert f"resumed the saved search at generation {state['generation']} of 3; {cached - saved} cached accuracies reused" in r.stderr
    timing = json.loads(r.stdout)["timing"]
    assert timing["reused"] == cached - saved  # nothing measured before the kill is measured again
    assert timing["archs"] == timing["evaluations"] - cached


def _table_at(space, resolutions, path, drop: int = 0, calibrated: bool = True):
    """A synthetic CPU table of ``space`` at ``resolutions`` (:func:`conftest.synthetic_table`)."""
    return synthetic_table(space, path, resolutions=resolutions, drop=drop, calibrated=calibrated)


def test_a_table_of_some_resolutions_keeps_the_search_to_them(tmp_path):
    from nastools.search.latency_cost import LatencyCost
    from nastools.search.runner import table_space
    from nastools.space import space_from_dict

    space = space_from_dict({**TINY_SPACE, "resolutions": [24, 28]})
    lines = []
    both = LatencyCost(_table_at(space, [24, 28], tmp_path / "both.json"))
    assert table_space(space, [both], lines.append) is space and lines == []
    one = LatencyCost(_table_at(space, [28], tmp_path / "one.json"))
    kept = table_space(space, [both, one], lines.append)
    assert kept.resolutions == (28,) and kept.stages == space.stages and kept.name == space.name
    assert lines == ["latency tables cover resolution 28 of tiny's 24, 28: the search keeps to it"]
    assert {kept.sample(i).resolution for i in range(20)} == {28}
    assert all(one.predict(kept.sample(i)) > 0 for i in range(20))  # every sample has its blocks in the table
    # a table cut short is an error naming what to do, before any search or drift check
    cut = LatencyCost(_table_at(space, [28], tmp_path / "cut.json", drop=3))
    with pytest.raises(NastoolsError, match=r"cut.json is incomplete: 3 of its \d+ blocks at resolutions 28 are not profiled"):
        table_space(space, [cut], lines.append)
    # every block, but stopped before the end-to-end runs were fitted: its figures are raw block sums
    raw = LatencyCost(_table_at(space, [28], tmp_path / "raw.json", calibrated=False))
    with pytest.raises(NastoolsError, match="raw.json is incomplete: it has no calibration"):
        table_space(space, [raw], lines.append)
    other = LatencyCost(_table_at(space, [24], tmp_path / "other.json"))
    with pytest.raises(NastoolsError, match="no resolution in common"):
        table_space(space, [one, other], lines.append)


def test_a_missing_block_names_the_profile_command_that_fills_it(tmp_path):
    from nastools.space import space_from_dict

    space = space_from_dict({**TINY_SPACE, "resolutions": [24, 28]})
    one = _table_at(space, [28], tmp_path / "one.json")
    arch24 = next(a for a in (space.sample(i) for i in range(50)) if a.resolution == 24)
    with pytest.raises(
        NastoolsError,
        match=rf"profile that resolution into it with: nastools profile --space tiny --resolutions 24 --out {tmp_path / 'one.json'}",
    ):
        one.predict(arch24)
    cut = _table_at(space, [24, 28], tmp_path / "cut.json", drop=1)
    head = [a for a in (space.sample(i) for i in range(200))]
    with pytest.raises(
        NastoolsError,
        match=rf"the table is incomplete .*rerun the nastools profile command that made it, with --out {tmp_path / 'cut.json'}",
    ):
        for a in head:
            cut.predict(a)


def test_a_saved_search_of_the_space_at_other_resolutions_says_so(fmnist, tmp_path):
    """A search that cannot resume another's state names how the spaces differ: the same
    space at other resolutions (a search keeps to those its latency tables cover), or another
    version of the space (an edited YAML file)."""
    from nastools.search.evolution import SearchIdentity
    from nastools.space import space_from_dict

    d = fmnist.definition()
    d["resolutions"] = [28]
    only28, state = space_from_dict(d), tmp_path / "state.json"
    cfg, limits = SearchConfig(population=4, generations=1, seed=1), {"flops": 20e6}
    _engine(only28, limits, cfg, state_path=state).run()
    assert json.loads(state.read_text())["resolutions"] == [28]
    assert SearchIdentity.of(fmnist, limits, "flops", cfg).judge(state).why == "resolutions 28, now 28|32"
    d = fmnist.definition()
    d["resolutions"], d["dropout"] = [28], 0.2
    edited = space_from_dict(d)
    assert SearchIdentity.of(edited, limits, "flops", cfg).judge(state).why == "another version of space 'fmnist'"
