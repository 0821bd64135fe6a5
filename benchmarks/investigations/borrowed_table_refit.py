"""Investigation: a latency table of another CPU generation, on this machine: one drift factor,
or the overhead model re-fitted on a few end-to-end runs of this machine?

Times, together and round-robin (``measure_end_to_end``: the table's protocol and statistic),
the first 12 calibration subnets of the borrowed table and ``--held`` of its held-out
validation subnets, then scores three predictors on the held-out ones: the table scaled by the
median ratio on 6 calibration subnets (what ``check_drift`` and the demo do), the overhead
model re-fitted on those 6 runs (scale and offset), and re-fitted on 12 (scale, per block,
per weight, offset).

Writes ``benchmarks/results/borrowed_table_refit/<cpu>/<date>[-variant].json`` (the table, its CPU, the
drift factor, per predictor MAPE, bias and share within ±10%, the choice nastools demo makes on
the same 6 runs by leave-one-out, and every run's time).

Usage: python benchmarks/investigations/borrowed_table_refit.py TABLE.json [--held 30] [--variant NAME]   (~2 min for fmnist)
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import write_result  # noqa: E402

from nastools.latency import LatencyTable, measure_end_to_end  # noqa: E402
from nastools.latency.profiler import CALIBRATION_SEED, sample_archs, with_features  # noqa: E402
from nastools.latency.table import arch_of_key  # noqa: E402
from nastools.latency.validate import loo_scaled_vs_refit  # noqa: E402


def score(pred: list[float], meas: list[float]) -> dict:
    """MAPE, mean signed error and share within ±10% (all %) of predictions ``pred`` of ``meas``."""
    err = [100 * (p - m) / m for p, m in zip(pred, meas)]
    within = 100 * sum(abs(e) <= 10 for e in err) / len(err)
    return {"mape": round(statistics.mean(abs(e) for e in err), 2), "bias": round(statistics.mean(err), 2), "within_10": round(within, 1)}


def show(name: str, s: dict) -> dict:
    print(f"  {name:22s}MAPE {s['mape']:4.1f}%, bias {s['bias']:+5.1f}%, within ±10% {s['within_10']:5.1f}%")
    return s


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("table")
    ap.add_argument("--held", type=int, default=30)
    ap.add_argument("--variant", default=None, help="result file suffix (e.g. the table's space)")
    args = ap.parse_args()
    table = LatencyTable.load(args.table)
    recorded = {r["arch"]: r for r in table.calibration["runs"]}
    cal = [a for a in sample_archs(table.space, len(recorded), CALIBRATION_SEED, table.meta["resolutions"]) if a.key in recorded][:12]
    held = [arch_of_key(r["arch"]) for r in table.validation["runs"][: args.held]]
    now = measure_end_to_end(table, cal + held, progress=True)
    cal_ms, held_ms = now[: len(cal)], now[len(cal) :]
    factor = statistics.median(m / float(recorded[a.key]["measured_ms"]) for a, m in zip(cal[:6], cal_ms))
    print(f"{table.meta['device']} {table.meta.get('cpu_id')} table on this machine: drift factor {factor:.3f}")
    scores = {
        "as_profiled": show("as profiled", score([table.predict(a) for a in held], held_ms)),
        "drift_scaled_6": show("drift-scaled (6 runs)", score([factor * table.predict(a) for a in held], held_ms)),
    }
    for n in (6, 12):
        fitted = LatencyTable(dict(table.meta), table.entries, {}, {}, table.path, table.space)
        runs = with_features(fitted, [{"arch": a.key, "measured_ms": m} for a, m in zip(cal[:n], cal_ms)], cal[:n])
        fitted.fit_calibration(runs)
        scores[f"refit_{n}"] = show(f"re-fitted on {n:2d} runs", score([fitted.predict(a) for a in held], held_ms))
    # what nastools demo decides on the same 6 runs (LatencyCost.refitted): each predicted from the other five
    loo = loo_scaled_vs_refit([table.predict(a) for a in cal[:6]], [table.block_sum(a) for a in cal[:6]], cal_ms[:6])
    chosen = "refit_6" if loo["refit"] < loo["scaled"] else "drift_scaled_6"
    print(f"  leave-one-out on the 6 runs: re-fitted MAPE {loo['refit']:.1f}%, scaled {loo['scaled']:.1f}%: the demo takes {chosen}")
    table_cpu = {k: table.meta.get(k) for k in ("device", "cpu_id", "cpu_isa", "space")}
    figures = {"table": table.path.name, "table_cpu": table_cpu, "held": len(held), "drift_factor": round(factor, 4), "scores": scores}
    figures["leave_one_out_6"] = {"scaled": round(loo["scaled"], 2), "refit": round(loo["refit"], 2), "chosen": chosen}
    figures["runs"] = {"calibration": dict(zip((a.key for a in cal), cal_ms)), "held": dict(zip((a.key for a in held), held_ms))}
    write_result("borrowed_table_refit", figures, variant=args.variant)


if __name__ == "__main__":
    main()
