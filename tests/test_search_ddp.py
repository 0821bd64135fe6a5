"""Distributed search: ``torchrun --nproc-per-node 2 -m nastools -- search ...`` with 2 CPU
processes (gloo) finds exactly what one process finds with the same seed, each process
scoring about half the archs; it resumes, and an error of rank 0 ends both processes."""

import json
import os
import subprocess
import sys

import pytest
from conftest import synthetic_table, train_tiny_run

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A tiny supernet trained for a few sandwich steps on Fashion-MNIST (accuracies differ)."""
    run = tmp_path_factory.mktemp("runs") / "tiny"
    return run, train_tiny_run(run, steps=20)


def _search(run, space, out, generations, nproc=1, eval_images=128):
    lo, hi = space.flops(space.min_arch()), space.flops(space.max_arch())
    args = ["search", "--run", str(run), "--flops", f"{lo + 0.4 * (hi - lo):.0f},{hi:.0f}", "--out", str(out)]
    args += ["--population", "4", "--generations", str(generations), "--calib-images", "64", "--eval-images", str(eval_images), "--json"]
    if nproc == 1:
        cmd = [sys.executable, "-m", "nastools", *args]
    else:  # "--": torchrun would take --run for its own --run-path
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc), "-m", "nastools", "--", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300)


def _found(out):
    """What a search found: its picks, front and every evaluated arch with its top-1."""
    pareto = json.loads((out / "pareto.json").read_text())
    picks = [(p["id"], p["top1"], p["costs"]) for p in pareto["picks"]]
    return picks, pareto["front"], [(e["id"], e["top1"]) for e in pareto["evaluated"]]


def test_two_processes_find_what_one_finds_and_share_the_evaluations(tiny_run, tmp_path):
    run, space = tiny_run
    one = _search(run, space, tmp_path / "one", 2)
    assert one.returncode == 0, one.stderr[-3000:]
    # two processes: one generation, then resumed for a second (as after an interruption)
    first = _search(run, space, tmp_path / "two", 1, nproc=2)
    assert first.returncode == 0, first.stderr[-3000:]
    timing = json.loads(first.stdout)["timing"]  # only rank 0 prints
    assert timing["world_size"] == 2 and timing["archs"] == timing["evaluations"] == 8
    assert [r["archs"] for r in timing["ranks"]] == [4, 4]  # the initial 4 and 4 offspring, 2 + 2 each
    two = _search(run, space, tmp_path / "two", 2, nproc=2)
    assert two.returncode == 0, two.stderr[-3000:]
    assert "resumed the saved search at generation 1 of 2" in two.stderr
    timing = json.loads(two.stdout)["timing"]
    assert [r["archs"] for r in timing["ranks"]] == [2, 2]  # only the second generation's 4
    assert _found(tmp_path / "two") == _found(tmp_path / "one")
    # one writer: rank 0's accuracy cache holds what both processes scored
    evaluated = {i for i, _ in _found(tmp_path / "two")[2]}
    assert set(json.loads((tmp_path / "two" / "accuracy_cache.json").read_text())["top1"]) == evaluated
    # the finalists, re-scored on the whole validation split by both processes, pick what one process picks
    pareto = json.loads((tmp_path / "two" / "pareto.json").read_text())
    rescored = json.loads((tmp_path / "two" / "rerank_cache.json").read_text())["top1"]
    alone = json.loads((tmp_path / "one" / "rerank_cache.json").read_text())["top1"]
    assert pareto["timing"]["rerank_archs"] == len(alone) > 0
    assert all(rescored[i] == top1 for i, top1 in alone.items())  # (the one-generation run's finalists are there too)
    assert all(p["top1"] == rescored[p["id"]] and p["search_top1"] is not None for p in pareto["picks"])
    state = json.loads((tmp_path / "two" / "state.json").read_text())
    assert state == json.loads((tmp_path / "one" / "state.json").read_text())  # the same generations, random state included


def test_an_error_of_rank_0_ends_every_process_with_it(tiny_run, tmp_path):
    run, space = tiny_run
    out = tmp_path / "o"
    out.mkdir()
    (out / "state.json").write_text("[1, 2]")  # JSON, but not a search state: rank 0 refuses it
    p = _search(run, space, out, 1, nproc=2)
    assert p.returncode != 0
    assert "not a nastools search state" in p.stderr and "(rank 0 of the distributed search)" in p.stderr


@pytest.mark.parametrize("strategy", ["archive", "nsga2"])
def test_evaluating_each_generation_as_one_batch_changes_nothing(fmnist, strategy):
    from test_search import synthetic_accuracy

    from nastools.search import EvolutionSearch, SearchConfig

    acc, costs, batches = synthetic_accuracy(fmnist), {"flops": fmnist.flops, "params": fmnist.params}, []

    def batch(archs):
        batches.append(len(archs))
        return [acc(a) for a in archs]

    cfg = SearchConfig(population=6, generations=3, strategy=strategy, seed=2)
    one = EvolutionSearch(fmnist, acc, costs, {"flops": 15e6}, "flops", cfg).run()
    batched = EvolutionSearch(fmnist, acc, costs, {"flops": 15e6}, "flops", cfg, batch_accuracy=batch).run()
    assert [(c.arch.id, c.top1) for c in batched.candidates] == [(c.arch.id, c.top1) for c in one.candidates]
    assert len(batches) == 4 and sum(batches) == one.evaluations  # one call per generation


def test_a_state_of_another_evaluation_is_started_over_by_every_process(tiny_run, tmp_path):
    """Rank 0 judges the saved state and every process follows it: a state whose accuracies
    were measured on other --eval-images is started over (one note, from rank 0) and every
    arch is scored again, shared out over both processes."""
    run, space = tiny_run
    first = _search(run, space, tmp_path, 1)
    assert first.returncode == 0, first.stderr[-3000:]
    again = _search(run, space, tmp_path, 1, nproc=2, eval_images=96)
    assert again.returncode == 0, again.stderr[-3000:]
    note = f"the saved state in {tmp_path / 'state.json'} belongs to another search (--eval-images 128, now 96): started over"
    assert again.stderr.count(note) == 1 and "resumed the saved search" not in again.stderr
    timing = json.loads(again.stdout)["timing"]
    assert timing["archs"] == timing["evaluations"] == 8 and [r["archs"] for r in timing["ranks"]] == [4, 4]
    assert json.loads((tmp_path / "state.json").read_text())["accuracy_key"].endswith("|eval=96|seed=0")


#: ``nastools`` with this machine's speed given by the test (``DRIFT_FACTOR``; each check_drift
#: call logged with its rank in ``DRIFT_LOG``) and picks "measured" at their predictions
DRIFT_SCRIPT = """
import os, sys

import nastools.latency
from nastools.search.latency_cost import LatencyCost


def check_drift(table, *args, **kwargs):
    with open(os.environ["DRIFT_LOG"], "a") as f:
        f.write(os.environ.get("RANK", "0") + "\\n")
    return {"factor": float(os.environ["DRIFT_FACTOR"]), "ratios": []}


nastools.latency.check_drift = check_drift
LatencyCost.measurer = lambda self: lambda archs: [self.predict(a) for a in archs]
from nastools.cli import main

main(sys.argv[1:], prog_name="nastools")
"""


def test_a_search_started_over_measures_the_drift_anew_on_rank_0_and_a_resumed_one_keeps_it(tiny_run, tmp_path):
    """Rank 0 judges the saved state before the drift check: a distributed search that starts
    another search's state over measures this machine's speed anew (rank 0, once), rewrites
    drift.json and every process predicts with the new factor; one that resumes keeps the
    held record (a synthetic table, the speed given: nothing timed)."""
    run, space = tiny_run
    table = synthetic_table(space, tmp_path / "table.json")
    script, log, out = tmp_path / "fake_drift.py", tmp_path / "drift.log", tmp_path / "search"
    script.write_text(DRIFT_SCRIPT)
    args = ["search", "--run", str(run), "--latency", f"{3 * table.predict(space.max_arch()):.4f}ms", "--table", f"default={table.path}"]
    args += ["--out", str(out), "--population", "4", "--calib-images", "64", "--rerank", "0", "--json"]

    def search(factor, nproc, *more):
        cmd = [sys.executable, str(script), *args, *more]
        if nproc > 1:
            cmd[1:2] = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc), str(script), "--"]
        p = subprocess.run(
            cmd, capture_output=True, text=True, env={**ENV, "DRIFT_LOG": str(log), "DRIFT_FACTOR": str(factor)}, timeout=300
        )
        assert p.returncode == 0, p.stderr[-3000:]
        evaluated = json.loads((out / "state.json").read_text())["evaluated"]
        scales = {round(e["costs"]["latency:default"] / table.predict(space.arch_from_dict(e["arch"])), 6) for e in evaluated}
        drift = json.loads((out / "drift.json").read_text())["latency:default"]["factor"]
        return p.stderr, drift, scales, log.read_text().split()

    assert search(1.5, 1, "--generations", "1", "--eval-images", "128")[1:] == (1.5, {1.5}, ["0"])
    said, drift, scales, calls = search(2.0, 2, "--generations", "1", "--eval-images", "96")
    assert said.count("belongs to another search (--eval-images 128, now 96): started over") == 1
    assert (drift, scales, calls) == (2.0, {2.0}, ["0", "0"])  # measured anew, by rank 0 alone
    # resumed for a second generation: the held speed, in every process (they breed alike)
    said, drift, scales, calls = search(3.0, 2, "--generations", "2", "--eval-images", "96")
    assert "resumed the saved search at generation 1 of 2" in said and (drift, scales, calls) == (2.0, {2.0}, ["0", "0"])
