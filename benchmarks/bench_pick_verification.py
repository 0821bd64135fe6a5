"""How closely does a search's end-to-end check of its picks agree with their predictions,
as timed and referenced to the machine's speed? (issue: deployment truth)

`nastools search` predicts latency at the machine speed it measures when it starts (the
drift factor of `check_drift`) and, at the end, times its picks end to end to hold them to
their budgets. On a VM whose speed swings within minutes, a pick timed a minute later can
read slower or faster than its prediction only because the machine changed in between.
`PickVerifier` times the picks together with 6 of the table's calibration subnets and
scales each pick's time by the speed those show in the very same rounds.

This times `--archs` random subnets that the table never saw (seed 4000; calibration uses
1000, validation 2000) the way the search verifies a pick, `--rounds` times a few seconds
to a minute apart, after one drift check as a search makes, and compares each figure with
its prediction at the speed the drift check found: as timed (what a verification without
references holds to the budget) and referenced (what `PickVerifier` holds to it). It
reports the spread of both ratios, how many are within 5% and 10%, and how often an arch
would be rejected at a budget 5% or 10% above its prediction, where it fits by its
prediction.

    flock /tmp/nastools-core1.lock taskset -c 1 .venv/bin/python benchmarks/bench_pick_verification.py
Usage: python benchmarks/bench_pick_verification.py [--space fmnist] [--archs 8] [--rounds 16] [--gap 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import table, write_result  # noqa: E402

from nastools.latency.profiler import sample_archs  # noqa: E402
from nastools.search.latency_cost import LatencyCost, PickVerifier, find_table  # noqa: E402
from nastools.space import load_space  # noqa: E402

SEED = 4000  # calibration subnets are drawn with 1000, validation subnets with 2000, aging's with 3000


def _stats(ratios: list[float]) -> dict:
    """Spread of figure / prediction ratios and how often a budget a little above the
    prediction would reject the arch."""
    return {
        "mean": round(statistics.mean(ratios), 4),
        "sd": round(statistics.stdev(ratios), 4),
        "min": round(min(ratios), 4),
        "max": round(max(ratios), 4),
        "mean_abs_error_pct": round(100 * statistics.mean(abs(r - 1) for r in ratios), 2),
        "within_5_pct": round(100 * sum(abs(r - 1) <= 0.05 for r in ratios) / len(ratios), 1),
        "within_10_pct": round(100 * sum(abs(r - 1) <= 0.10 for r in ratios) / len(ratios), 1),
        "over_budget_1.05_pct": round(100 * sum(r > 1.05 for r in ratios) / len(ratios), 1),
        "over_budget_1.10_pct": round(100 * sum(r > 1.10 for r in ratios) / len(ratios), 1),
    }


def run(space_name: str, n: int, rounds: int, gap: float) -> dict:
    sp = load_space(space_name)
    tab = find_table(sp, "default")
    if tab is None or not tab.calibration.get("runs"):
        raise SystemExit(f"no calibrated latency table of {space_name} for this CPU: run nastools profile --space {space_name}")
    seen = {r["arch"] for r in tab.calibration["runs"]} | {r["arch"] for r in tab.validation.get("runs", [])}
    archs = sample_archs(sp, n, SEED, tab.meta["resolutions"], seen)
    cost = LatencyCost(tab)
    drift = cost.settle_drift()  # as nastools search does when it starts
    print(f"table {tab.path}; drift check: {drift['factor']:.3f}x the recorded time; predictions at {cost.assumed_speed:.3f}x")
    predicted = {a.id: cost.predict(a) for a in archs}
    records, timed, held = [], [], []
    start = time.time()
    for i in range(rounds):
        if i:
            time.sleep(gap)
        verifier = PickVerifier(cost)
        figures = verifier(archs)
        d = next(iter(verifier.details.values()))
        rt = [verifier.details[a.id]["timed_ms"] / predicted[a.id] for a in archs]
        rh = [f / predicted[a.id] for a, f in zip(archs, figures)]
        timed += rt
        held += rh
        records.append({"t_s": round(time.time() - start, 1), "speed": round(d["speed"], 4), "timed_ratio": rt, "referenced_ratio": rh})
        print(
            f"round {i + 1:2d} at {records[-1]['t_s']:6.0f} s: machine at {d['speed']:.3f}x the recorded time; figure / prediction "
            f"as timed {statistics.median(rt):.3f}, referenced {statistics.median(rh):.3f} (medians of {n})",
            flush=True,
        )
    res = {"as_timed": _stats(timed), "referenced": _stats(held)}
    res["abs_error_ratio"] = round(res["as_timed"]["mean_abs_error_pct"] / res["referenced"]["mean_abs_error_pct"], 2)
    return {
        "space": space_name,
        "table": str(tab.path.name),
        "archs": [a.key for a in archs],
        "predicted_ms": [round(predicted[a.id], 6) for a in archs],
        "drift": {k: drift[k] for k in ("factor", "ratios")},
        "assumed_speed": cost.assumed_speed,
        "settings": {"archs": n, "rounds": rounds, "gap_s": gap, "seed": SEED, "references": len(drift["archs"])},
        "seconds": round(time.time() - start, 1),
        **res,
        "rounds": records,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--space", default="fmnist")
    ap.add_argument("--archs", type=int, default=8, help="random subnets verified in each round")
    ap.add_argument("--rounds", type=int, default=16)
    ap.add_argument("--gap", type=float, default=10.0, help="seconds between rounds")
    ap.add_argument("--variant", default=None)
    args = ap.parse_args()
    res = run(args.space, args.archs, args.rounds, args.gap)
    rows = [
        [k, *(res[k][f] for f in ("mean", "sd", "min", "max", "mean_abs_error_pct", "within_5_pct", "within_10_pct"))]
        + [res[k]["over_budget_1.05_pct"], res[k]["over_budget_1.10_pct"]]
        for k in ("as_timed", "referenced")
    ]
    heads = ["figure", "mean", "SD", "min", "max", "mean |err| %", "within 5%", "within 10%", "over 1.05x %", "over 1.10x %"]
    print(table(rows, heads))
    print(f"mean |figure / prediction - 1| as timed / referenced: {res['abs_error_ratio']:.2f}x")
    write_result("bench_pick_verification", res, args.variant)


if __name__ == "__main__":
    main()
