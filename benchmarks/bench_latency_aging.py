"""Does a shipped latency table still predict on a later day? (issue 5, a follow-up)

A user profiles once and searches for weeks. This takes this CPU's shipped ORT CPU table of
each space (1 thread, batch 1; nothing is profiled or written to it), measures 100 random
subnets that the table has never seen (neither calibration nor validation subnets, another
seed) end to end with the table's own protocol, and scores the table's predictions against
them twice:

* as stored (the blocks and overhead of the day it was profiled);
* scaled by the drift factor the search applies (``check_drift``: this machine's time now
  for 6 of the table's calibration subnets over the time it recorded for them, measured
  just before, as ``nastools search`` does when it starts);
* scaled by the same ratio for the same 6 subnets timed in the very rounds of the 100 (the
  best a drift factor can be: the host's speed at the moment of the measurement).

Beside them: a FLOPs-only linear model fitted on these very 100 measurements (in-sample, the
strongest form of that baseline) and the measurement noise (spread of the 3 pass medians).
The ranking (Kendall tau) does not depend on the scale; MAPE and the share within ±10% do.

    flock /tmp/nastools-core1.lock taskset -c 1 .venv/bin/python benchmarks/bench_latency_aging.py
Usage: python benchmarks/bench_latency_aging.py [--spaces fmnist attentivenas@224] [-n 100] [--variant NAME]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import table, write_result  # noqa: E402

from nastools.latency import Protocol, make_backend  # noqa: E402
from nastools.latency.profiler import CALIBRATION_SEED, check_drift, measure_archs, open_table, sample_archs  # noqa: E402
from nastools.latency.table import shipped_tables_dir  # noqa: E402
from nastools.latency.validate import error_metrics, summarize  # noqa: E402
from nastools.space import load_space  # noqa: E402

SEED = 3000  # calibration subnets are drawn with 1000, validation subnets with 2000


def run_space(spec: str, n: int) -> dict:
    name, _, res = spec.partition("@")
    sp = load_space(name)
    resolutions = [int(r) for r in res.split(",")] if res else None
    be = make_backend("cpu", "ort", "fp32", 1)
    t = open_table(sp, be, batch=1, resolutions=resolutions, out=None, protocol=Protocol(), root=shipped_tables_dir())
    if not t.path.is_file() or not t.calibration.get("runs"):
        raise SystemExit(f"no calibrated shipped table for this CPU at {t.path}: run benchmarks/bench_latency.py first")
    seen = {r["arch"] for r in t.calibration["runs"]} | {r["arch"] for r in t.validation.get("runs", [])}
    archs = sample_archs(sp, n, SEED, t.meta["resolutions"], seen)
    start = time.time()
    drift = check_drift(t, backend=be)
    then = {r["arch"]: float(r["measured_ms"]) for r in t.calibration["runs"]}
    probes = [a for a in sample_archs(sp, len(then), CALIBRATION_SEED, t.meta["resolutions"]) if a.key in then][:6]
    runs: list[dict] = []
    measure_archs(t, be, archs + probes, runs, protocol=Protocol(**t.meta["protocol"]), desc=f"{spec}: {n} unseen subnets")
    be.close()
    now = {r["arch"]: float(r["measured_ms"]) for r in runs}
    in_run = statistics.median(now[a.key] / then[a.key] for a in probes)
    runs = [r for r in runs if r["arch"] not in then]
    by_key = {a.key: a for a in archs}
    for r in runs:
        r["predicted_ms"] = t.predict(by_key[r["arch"]])
    fig = summarize(runs, t.calibration["runs"])
    meas = [r["measured_ms"] for r in runs]
    scaled = error_metrics([drift["factor"] * r["predicted_ms"] for r in runs], meas)
    scaled_in_run = error_metrics([in_run * r["predicted_ms"] for r in runs], meas)
    return {
        "space": spec,
        "table": str(t.path),
        "profiled": t.meta.get("created"),
        "validated_before": {k: t.validation.get("table", {}).get(k) for k in ("mape_pct", "within_10_pct", "kendall_tau")},
        "measured_s": round(time.time() - start, 1),
        "drift": drift,
        "noise": fig["noise"],
        "table_as_stored": fig["table"],
        "table_drift_scaled": scaled,
        "drift_in_run": in_run,
        "table_in_run_drift_scaled": scaled_in_run,
        "flops_linear_in_sample": fig["flops_linear"],
        "flops_linear_calibration": fig.get("flops_linear_calibration"),
        "runs": runs,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spaces", nargs="+", default=["fmnist", "attentivenas@224"])
    ap.add_argument("-n", type=int, default=100, help="unseen subnets per space")
    ap.add_argument("--variant", default=None, help="a run with other settings: results/bench_latency_aging/<cpu>/<date>-<variant>.json")
    args = ap.parse_args()
    results = [run_space(s, args.n) for s in args.spaces]
    rows = []
    for r in results:
        s, d, i = r["table_as_stored"], r["table_drift_scaled"], r["table_in_run_drift_scaled"]
        f = r["flops_linear_in_sample"]
        rows.append(
            (
                r["space"],
                f"{r['drift']['factor']:.3f} / {r['drift_in_run']:.3f}",
                f"{r['noise']['median_spread_pct']:.1f}%",
                f"{s['mape_pct']:.1f}% / {d['mape_pct']:.1f}% / {i['mape_pct']:.1f}%",
                f"{s['within_10_pct']:.0f}% / {d['within_10_pct']:.0f}% / {i['within_10_pct']:.0f}%",
                f"{s['kendall_tau']:.3f}",
                f"{f['mape_pct']:.1f}%",
                f"{f['kendall_tau']:.3f}",
            )
        )
    print(
        table(
            rows,
            [
                "space",
                "drift before / in run",
                "noise",
                "MAPE stored / x before / x in run",
                "±10% stored / x before / x in run",
                "tau",
                "FLOPs MAPE (in-sample)",
                "FLOPs tau",
            ],
        )
    )
    write_result(
        "bench_latency_aging",
        {"backend": "onnxruntime-cpu", "threads": 1, "batch": 1, "n": args.n, "seed": SEED, "results": results},
        variant=args.variant,
    )


if __name__ == "__main__":
    main()
