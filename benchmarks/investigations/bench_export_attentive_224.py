"""Investigation: does int8 still pay at ImageNet resolution? int8/fp32 ONNX Runtime CPU
latency of eight untrained subnets of the packaged AttentiveNAS space at 224 px, batch 1, one
thread (int8 calibrated on 64 training images: 500 at 224 px run out of memory).

Usage: python benchmarks/investigations/bench_export_attentive_224.py   (~15 min)
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import write_result  # noqa: E402
from _export import int8_by_size, print_sizes, quiet  # noqa: E402


def main() -> None:
    """int8/fp32 latency of eight untrained subnets of the packaged AttentiveNAS space at
    224 px, batch 1: does int8 still pay at ImageNet resolution?"""
    quiet()
    res = int8_by_size(batches=(1,), space="attentivenas", resolution=224, calib=64)  # 500 at 224 px: out of memory
    print_sizes(res["rows"])
    write_result("bench_export_attentive_224", {"threads": 1, "resolution": 224, **res})


if __name__ == "__main__":
    main()
