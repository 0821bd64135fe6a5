"""Export benchmark, fmnist space: ONNX Runtime CPU against PyTorch eager on the same
subnets, int8 against fp32 ONNX (latency and Fashion-MNIST top-1) of a trained subnet, and
ONNX parity over 20 random archs. One thread everywhere.

Two phases, so that training does not hold the timing core:

    taskset -c 0 python benchmarks/bench_export.py train     # the subnet, runs/bench-export (~6 min)
    flock /tmp/nastools-core1.lock taskset -c 1 python benchmarks/bench_export.py measure

With no phase it trains when ``runs/bench-export`` is missing, then measures. Target:
int8 <= 0.7 x fp32 latency with <= 1 point of top-1 lost.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import table, write_result  # noqa: E402
from _export import RECIPE, RUN, int8_vs_fp32, need_run, print_int8, quiet, train  # noqa: E402


def _median_ms(run, warmup_s: float, duration_s: float) -> float:
    from nastools.export.bench import latency_stats, time_callable

    lat, _ = time_callable(run, warmup_s, duration_s)
    return latency_stats(lat)["median_ms"]


def ort_vs_torch(archs, batches=(1, 32), duration=1.0) -> list[dict]:
    """Median latency of the same subnet in PyTorch eager (BN unfolded, as trained) and ORT."""
    from nastools.checkpoint import load_supernet
    from nastools.export import export_onnx, make_runner

    net = load_supernet(RUN)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, arch in archs:
            sub = net.extract(arch).eval()
            path = export_onnx(sub, Path(tmp) / f"{arch.id}.onnx")
            with make_runner(path, "ort", threads=1) as r:
                for b in batches:
                    x = np.random.default_rng(0).standard_normal((b, *sub.input_shape), dtype=np.float32)
                    xt = torch.from_numpy(x)

                    def eager():
                        with torch.inference_mode():
                            sub(xt)

                    r.bind(x)
                    ort_run = r.run
                    # alternate twice to spread drift over both sides
                    t_eager = [_median_ms(eager, 0.2, duration / 2) for _ in range(2)]
                    t_ort = [_median_ms(ort_run, 0.2, duration / 2) for _ in range(2)]
                    te, to = float(np.mean(t_eager)), float(np.mean(t_ort))
                    rows.append(
                        {
                            "arch": name,
                            "id": arch.id,
                            "flops": net.space.flops(arch),
                            "batch": b,
                            "torch_ms": te,
                            "ort_ms": to,
                            "speedup": te / to,
                        }
                    )
                    print(f"  {name} b{b}: torch {te:.3f} ms, ort {to:.3f} ms, x{te / to:.2f}", flush=True)
    return rows


def parity_stats(n: int = 20, images: int = 1000) -> dict:
    """Export n random archs of the run's supernet (BN recalibrated) and check them through ORT."""
    from nastools.checkpoint import load_supernet
    from nastools.data import load_splits
    from nastools.export import export_onnx, make_runner
    from nastools.export.parity import parity, run_batched
    from nastools.train.evaluate import calibration_batches, prepare_input, recalibrate_bn

    net = load_supernet(RUN)
    splits = load_splits()
    raw = splits.test.normalise(splits.test.images[:images])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(n):
            arch = net.space.sample(seed)
            sub = net.extract(arch).eval()
            recalibrate_bn(sub, calibration_batches(splits.train, 250, 500))
            sub.eval()
            x = prepare_input(sub, raw, torch.device("cpu"))
            with torch.no_grad():
                ref = sub(x).numpy()
            path = export_onnx(sub, Path(tmp) / "m.onnx")
            with make_runner(path, threads=1) as r:
                got = run_batched(r, x.numpy(), 500)
            p = parity(ref, got)
            rows.append(
                {
                    "id": arch.id,
                    "flops": net.space.flops(arch),
                    "max_abs_diff": p["max_abs_diff"],
                    "top1_agreement": p["top1_agreement"],
                    "logit_absmax": float(np.abs(ref).max()),
                }
            )
    diffs = np.array([r["max_abs_diff"] for r in rows])
    agree = np.array([r["top1_agreement"] for r in rows])
    return {
        "archs": n,
        "images": images,
        "max_abs_diff": {"max": float(diffs.max()), "median": float(np.median(diffs)), "mean": float(diffs.mean())},
        "top1_agreement": {"min": float(agree.min()), "mean": float(agree.mean())},
        "rows": rows,
    }


def measure() -> None:
    from nastools.space import load_arch, load_space

    quiet()
    sp = load_space("fmnist")
    trained = load_arch(RUN / "arch.json")
    archs = [("trained", trained), ("min", sp.min_arch()), ("near 20M", sp.sample_near_flops(20e6, rng=1)), ("max", sp.max_arch())]
    t0 = time.time()
    print("ORT CPU vs PyTorch eager (1 thread, median latency):", flush=True)
    speed = ort_vs_torch(archs)
    print("int8 vs fp32 (trained subnet):", flush=True)
    q = int8_vs_fp32()
    print("parity over 20 random archs:", flush=True)
    par = parity_stats()

    print()
    print(
        table(
            [
                (r["arch"], f"{r['flops'] / 1e6:.1f}M", r["batch"], f"{r['torch_ms']:.3f}", f"{r['ort_ms']:.3f}", f"{r['speedup']:.2f}x")
                for r in speed
            ],
            ["arch", "FLOPs", "batch", "torch ms", "ort ms", "torch/ort"],
        )
    )
    print()
    print_int8(q)
    print(
        f"parity over {par['archs']} random archs x {par['images']} test images: max |diff| max {par['max_abs_diff']['max']:.2e}, "
        f"median {par['max_abs_diff']['median']:.2e}; top-1 agreement min {100 * par['top1_agreement']['min']:.2f}%"
    )
    write_result(
        "bench_export",
        {
            "trained_subnet": {
                "arch": trained.to_dict(),
                "id": trained.id,
                "recipe": f"{RECIPE}, inside the fmnist supernet (only this arch active)",
            },
            "threads": 1,
            "ort_vs_torch": speed,
            "int8_vs_fp32": q,
            "parity": par,
            "seconds": time.time() - t0,
        },
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("phase", choices=("train", "measure", "all"), nargs="?", default="all")
    args = ap.parse_args()
    if args.phase == "train" or (args.phase == "all" and not (RUN / "supernet.pt").is_file()):
        train()
    if args.phase in ("measure", "all"):
        need_run(RUN, "bench_export.py")
        measure()


if __name__ == "__main__":
    main()
