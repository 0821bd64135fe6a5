"""Investigation: a latency table of another CPU generation, on this machine: one drift factor,
or the overhead model re-fitted on a few end-to-end runs of this machine?

Times, together and round-robin (``measure_end_to_end``: the table's protocol and statistic),
the first 12 calibration subnets of the borrowed table and ``--held`` of its held-out
validation subnets, then scores three predictors on the held-out ones: the table scaled by the
median ratio on 6 calibration subnets (what ``check_drift`` and the demo do), the overhead
model re-fitted on those 6 runs (scale and offset), and re-fitted on 12 (scale, per block,
per weight, offset).

Usage: python benchmarks/investigations/borrowed_table_refit.py TABLE.json [--held 30]   (~2 min for fmnist)
"""

from __future__ import annotations

import argparse
import statistics

from nastools.latency import LatencyTable, measure_end_to_end
from nastools.latency.profiler import CALIBRATION_SEED, sample_archs, with_features
from nastools.latency.table import arch_of_key


def score(pred: list[float], meas: list[float]) -> str:
    err = [100 * (p - m) / m for p, m in zip(pred, meas)]
    within = 100 * sum(abs(e) <= 10 for e in err) / len(err)
    return f"MAPE {statistics.mean(abs(e) for e in err):4.1f}%, bias {statistics.mean(err):+5.1f}%, within ±10% {within:5.1f}%"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("table")
    ap.add_argument("--held", type=int, default=30)
    args = ap.parse_args()
    table = LatencyTable.load(args.table)
    recorded = {r["arch"]: r for r in table.calibration["runs"]}
    cal = [a for a in sample_archs(table.space, len(recorded), CALIBRATION_SEED, table.meta["resolutions"]) if a.key in recorded][:12]
    held = [arch_of_key(r["arch"]) for r in table.validation["runs"][: args.held]]
    now = measure_end_to_end(table, cal + held, progress=True)
    cal_ms, held_ms = now[: len(cal)], now[len(cal) :]
    factor = statistics.median(m / float(recorded[a.key]["measured_ms"]) for a, m in zip(cal[:6], cal_ms))
    print(f"{table.meta['device']} {table.meta.get('cpu_id')} table on this machine: drift factor {factor:.3f}")
    print(f"  as profiled           {score([table.predict(a) for a in held], held_ms)}")
    print(f"  drift-scaled (6 runs) {score([factor * table.predict(a) for a in held], held_ms)}")
    for n in (6, 12):
        fitted = LatencyTable(dict(table.meta), table.entries, {}, {}, table.path, table.space)
        runs = with_features(fitted, [{"arch": a.key, "measured_ms": m} for a, m in zip(cal[:n], cal_ms)], cal[:n])
        fitted.fit_calibration(runs)
        print(f"  re-fitted on {n:2d} runs  {score([fitted.predict(a) for a in held], held_ms)}")


if __name__ == "__main__":
    main()
