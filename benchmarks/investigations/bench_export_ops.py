"""Investigation: where int8 gains and where it loses on this CPU. The fp32 and int8 run time
of the trained fmnist subnet (``runs/bench-export``, from ``benchmarks/bench_export.py train``)
split by kind of operator, from ONNX Runtime's profiler after its graph optimizations, one
thread, batch 1 and 32.

Usage: python benchmarks/investigations/bench_export_ops.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tempfile  # noqa: E402

from _common import table, write_result  # noqa: E402
from _export import RUN, need_run, op_times, quiet  # noqa: E402


def op_breakdown(batches=(1, 32), runs: int = 100) -> dict:
    """Per-operator-kind time of the trained subnet in fp32 and int8 (ORT CPU, 1 thread)."""
    from nastools.export import export_subnet

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        paths = {
            p: export_subnet(RUN, RUN / "arch.json", precision=p, out=Path(tmp) / f"{p}.onnx", progress=False).path
            for p in ("fp32", "int8")
        }
        for b in batches:
            out[str(b)] = {p: op_times(path, b, runs) for p, path in paths.items()}
    return out


def main() -> None:
    need_run(RUN, "bench_export.py")
    quiet()
    res = op_breakdown()
    for b, r in res.items():
        print(f"\nbatch {b}: ms per run by operator kind (ONNX Runtime profiler, 1 thread)")
        rows = [(k, f"{v:.3f}") for k, v in r["fp32"].items()]
        print(table(rows, ["fp32 operator", "ms"]))
        print(f"fp32 total {sum(r['fp32'].values()):.3f} ms")
        rows = [(k, f"{v:.3f}") for k, v in r["int8"].items()]
        print(table(rows, ["int8 operator", "ms"]))
        print(f"int8 total {sum(r['int8'].values()):.3f} ms, int8/fp32 {sum(r['int8'].values()) / sum(r['fp32'].values()):.2f}")
    write_result("bench_export_ops", {"threads": 1, "by_batch": res})


if __name__ == "__main__":
    main()
