"""Investigation: does int8 pay on bigger subnets? int8/fp32 ONNX Runtime CPU latency of eight
subnets from the smallest (2.8M FLOPs) to the largest (51.4M) of an untrained fmnist supernet
(BatchNorm recalibrated, int8 calibrated on training images; speed does not depend on the
weights' values), and the operator split of the largest. No trained run needed; one thread.

Usage: python benchmarks/investigations/bench_export_sizes.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import table, write_result  # noqa: E402
from _export import int8_by_size, print_sizes, quiet  # noqa: E402


def main() -> None:
    quiet()
    res = int8_by_size()
    print_sizes(res["rows"])
    ops = res["max_arch_ops"]
    kinds = sorted(set(ops["fp32"]) | set(ops["int8"]), key=lambda k: -(ops["fp32"].get(k, 0) + ops["int8"].get(k, 0)))
    print(f"largest subnet, batch {ops['batch']}, ms per run by operator kind:")
    print(table([(k, f"{ops['fp32'].get(k, 0):.3f}", f"{ops['int8'].get(k, 0):.3f}") for k in kinds], ["operator", "fp32", "int8"]))
    write_result("bench_export_sizes", {"threads": 1, **res})


if __name__ == "__main__":
    main()
