"""Export benchmark, AttentiveNAS space: int8 against fp32 ONNX in the AttentiveNAS space on
Fashion-MNIST (``benchmarks/spaces/attentivenas_fmnist.yaml``: the packaged space with a
1-channel 32 px input and 10 classes). One trained subnet (latency and top-1) and eight
untrained subnets across the space (latency), one thread.

    taskset -c 0 python benchmarks/bench_export_attentive.py train   # the subnet, runs/bench-export-attentive (~17 min)
    flock /tmp/nastools-core1.lock taskset -c 1 python benchmarks/bench_export_attentive.py measure

With no phase it trains when the run is missing, then measures. Target: int8 <= 0.7 x fp32
latency with <= 1 point of top-1 lost.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import write_result  # noqa: E402
from _export import AN_RUN, AN_SPACE, AN_TRAIN_FLOPS, RECIPE, int8_by_size, int8_vs_fp32, need_run, print_int8, print_sizes, quiet, train  # noqa: E402


def measure() -> None:
    """int8 against fp32 in the AttentiveNAS space on Fashion-MNIST (``AN_SPACE``): the subnet
    trained by ``train-attentive`` (latency and top-1) and eight untrained subnets across the
    space's FLOPs range (latency)."""
    from nastools.checkpoint import load_checkpoint
    from nastools.space import load_arch

    quiet()
    trained = load_arch(AN_RUN / "arch.json", AN_SPACE)
    t0 = time.time()
    print(f"int8 vs fp32, trained subnet {trained.id}:", flush=True)
    q = int8_vs_fp32(run=AN_RUN)
    print("int8 vs fp32 across the space (untrained supernet):", flush=True)
    by_size = int8_by_size(space=AN_SPACE)
    print()
    print_int8(q)
    print_sizes(by_size["rows"])
    recipe = load_checkpoint(AN_RUN)["recipe"]
    write_result(
        "bench_export_attentive",
        {
            "space": AN_SPACE.name,
            "trained_subnet": {
                "arch": trained.to_dict(),
                "id": trained.id,
                "recipe": f"{RECIPE}, inside the supernet (only this arch active)",
                "train_seconds": recipe.get("seconds"),
            },
            "threads": 1,
            "int8_vs_fp32": q,
            "by_size": by_size,
            "seconds": time.time() - t0,
        },
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("phase", choices=("train", "measure", "all"), nargs="?", default="all")
    args = ap.parse_args()
    if args.phase == "train" or (args.phase == "all" and not (AN_RUN / "supernet.pt").is_file()):
        train(AN_SPACE, AN_RUN, AN_TRAIN_FLOPS)
    if args.phase in ("measure", "all"):
        need_run(AN_RUN, "bench_export_attentive.py")
        measure()


if __name__ == "__main__":
    main()
