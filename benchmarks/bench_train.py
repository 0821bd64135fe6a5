"""Supernet training benchmarks (issue 4).

(a) cost:    one attentive-best (K=3) step vs one uniform sandwich step on the same batch
             (target ratio <= 1.15). The candidates are scored on a slice of the batch in
             inference mode. Each pair trains the SAME archs (the attentive pick is replayed as
             the uniform step's middles), so the ratio is the price of attentive sampling itself
             and not luck in which archs were drawn; the natural uniform step is shown too.
(b) quality: uniform vs attentive-best vs attentive-worst supernets, same seed and the SAME
             number of steps on Fashion-MNIST; then the best validation top-1 (after BN
             recalibration) in each of 5 FLOPs bins, over the same archs for every supernet.
(c) ddp:     training images/s of 2 processes (torchrun, gloo) vs 1 on the same budget.

Run on one core for (b): ``taskset -c 0 python benchmarks/bench_train.py quality``; the
timing parts under the core-1 lock: ``flock /tmp/nastools-core1.lock taskset -c 1 ...``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table, write_result  # noqa: E402

from nastools.data import load_splits  # noqa: E402
from nastools.space import load_space  # noqa: E402
from nastools.train.evaluate import calibration_batches, evaluate_top1, recalibrate_bn  # noqa: E402
from nastools.train.losses import kd_loss, smoothed_ce  # noqa: E402
from nastools.train.trainer import TrainConfig, Trainer  # noqa: E402

SAMPLERS = ("uniform", "attentive-best", "attentive-worst")


# --------------------------------------------------------------------------- (a) cost


def _train_archs(t: Trainer, x, y, archs) -> None:
    """The sandwich's training part for given archs (max first): what a uniform step does."""
    m = t.model
    t.optimizer.zero_grad(set_to_none=True)
    m.set_active(archs[0], dropout=t.space.dropout, drop_connect=t.space.drop_connect)
    logits = m(x)
    smoothed_ce(logits, y).backward()
    soft = logits.detach()
    for a in archs[1:]:
        m.set_active(a)
        kd_loss(m(x), soft).backward()
    torch.nn.utils.clip_grad_value_(t.params, 1.0)
    t.optimizer.step()


def bench_cost(args) -> dict:
    torch.set_num_threads(args.threads)
    splits = load_splits("fashion-mnist")
    t = Trainer(
        TrainConfig(batch_size=args.batch_size, sampler="attentive-best", candidates=3, score_images=args.score_images),
        "/tmp/bench-cost",
        splits=splits,
    )
    tu = Trainer(TrainConfig(batch_size=args.batch_size, sampler="uniform"), "/tmp/bench-cost-u", splits=splits)
    tu.model.load_state_dict(t.model.state_dict())
    batches = t.batches(0, 0)
    x0, y0 = next(batches)
    x, y = t._to_device(x0, y0)
    # warm up both paths (oneDNN primitive creation)
    t.train_step(x0, y0)
    _train_archs(tu, x, y, tu.sampler.step_archs(4, random.Random(0)))
    att, same, nat = [], [], []
    for i in range(args.pairs):
        t0 = time.perf_counter()
        res = t.train_step(x0, y0)
        att.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        _train_archs(tu, x, y, res.archs)  # the same archs, no scoring
        same.append(time.perf_counter() - t0)
        archs = tu.sampler.step_archs(4, tu.rng)
        t0 = time.perf_counter()
        _train_archs(tu, x, y, archs)  # a natural uniform step
        nat.append(time.perf_counter() - t0)
    ratios = [a / s for a, s in zip(att, same)]
    med = statistics.median
    out = {
        "batch_size": args.batch_size,
        "score_images": args.score_images,
        "candidates": 3,
        "pairs": args.pairs,
        "threads": args.threads,
        "attentive_step_s": med(att),
        "uniform_same_archs_step_s": med(same),
        "uniform_random_archs_step_s": med(nat),
        "ratio_median": med(ratios),
        "ratio_of_medians": med(att) / med(same),
        "target": 1.15,
    }
    print(
        table(
            [
                ("attentive-best K=3", f"{1000 * med(att):.0f}", f"{out['ratio_median']:.3f}"),
                ("uniform, same archs", f"{1000 * med(same):.0f}", "1.000"),
                ("uniform, random archs", f"{1000 * med(nat):.0f}", f"{med(att) / med(nat):.3f}"),
            ],
            ["step", "median ms", "attentive / this"],
        )
    )
    return out


# --------------------------------------------------------------------------- (b) quality


def bin_archs(space, n_bins: int, per_bin: int, seed: int = 0):
    """``per_bin`` archs in each of ``n_bins`` equal-width FLOPs bins (min arch in the first,
    max arch in the last), the same for every supernet."""
    rng = random.Random(seed)
    lo, hi = space.flops(space.min_arch()), space.flops(space.max_arch())
    w = (hi - lo) / n_bins
    bins = []
    for b in range(n_bins):
        archs = {}
        if b == 0:
            archs[space.min_arch().key] = space.min_arch()
        if b == n_bins - 1:
            archs[space.max_arch().key] = space.max_arch()
        tries = 0
        while len(archs) < per_bin and tries < 200:
            tries += 1
            target = lo + w * (b + 0.1 + 0.8 * rng.random())
            a = space.sample_near_flops(target, rng, tolerance=0.05)
            if lo + w * b <= space.flops(a) <= lo + w * (b + 1):
                archs[a.key] = a
        bins.append((lo + w * b, lo + w * (b + 1), list(archs.values())))
    return bins


def bench_quality(args) -> dict:
    torch.set_num_threads(1)
    splits = load_splits("fashion-mnist")
    space = load_space("fmnist")
    spe = len(splits.train) // args.batch_size
    root = Path(args.workdir)
    runs = {}
    for name in SAMPLERS:
        cfg = TrainConfig(
            batch_size=args.batch_size,
            lr=args.lr,
            sampler=name,
            seed=0,
            epochs=args.steps / spe,
            warmup_epochs=0.1 * args.steps / spe,
            log_every=10,
        )
        rd = root / name
        t0 = time.perf_counter()
        if (rd / "supernet.pt").exists():
            t = Trainer.resume(rd, splits=splits)
        else:
            t = Trainer(cfg, rd, splits=splits)
        assert t.total_steps == args.steps, (t.total_steps, args.steps)
        summary = t.fit(max_steps=args.steps, progress=False, evaluate=False)
        runs[name] = {"trainer": t, "train_s": round(time.perf_counter() - t0, 1), "summary": summary}
        print(f"{name}: {summary['step']} steps in {runs[name]['train_s']} s", flush=True)
    bins = bin_archs(space, 5, args.per_bin)
    results = {name: [] for name in SAMPLERS}
    for lo, hi, archs in bins:
        for name in SAMPLERS:
            m = runs[name]["trainer"].model
            accs = []
            for a in archs:
                m.set_active(a)
                recalibrate_bn(m, calibration_batches(splits.train, 250, args.calib_images, seed=0))
                accs.append(evaluate_top1(m, splits.val, max_images=args.val_images))
            results[name].append({"flops": [lo, hi], "archs": [a.id for a in archs], "top1": accs, "best": max(accs)})
        print(f"bin {lo / 1e6:.1f}-{hi / 1e6:.1f}M: " + ", ".join(f"{n} {100 * results[n][-1]['best']:.2f}%" for n in SAMPLERS), flush=True)
    rows = []
    for i, (lo, hi, archs) in enumerate(bins):
        rows.append((f"{lo / 1e6:.1f}-{hi / 1e6:.1f}M", len(archs), *(f"{100 * results[n][i]['best']:.2f}" for n in SAMPLERS)))
    print(table(rows, ["FLOPs bin", "archs", *SAMPLERS]))
    return {
        "budget": {
            "steps": args.steps,
            "batch_size": args.batch_size,
            "images": args.steps * args.batch_size,
            "epochs": round(args.steps / spe, 3),
            "lr": args.lr,
            "threads": 1,
        },
        "eval": {"val_images": args.val_images, "calib_images": args.calib_images, "archs_per_bin": args.per_bin},
        "train_seconds": {n: runs[n]["train_s"] for n in SAMPLERS},
        "bins": results,
    }


# --------------------------------------------------------------------------- (c) ddp


def bench_ddp(args) -> dict:
    out = {}
    space = Path(args.workdir) / "ddp"
    for n, threads in ((1, 1), (1, 2), (2, 1)):
        run = space / f"np{n}t{threads}"
        subprocess.run(["rm", "-rf", str(run)], check=True)
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={n}",
            "-m",
            "nastools",
            "--",
            "train",
            "--run",
            str(run),
            "--batch-size",
            str(args.batch_size),
            "--steps",
            str(args.ddp_steps),
            "--sampler",
            "uniform",
            "--no-progress",
            "--json",
            "--eval-images",
            "100",
            "--log-every",
            "1",
        ]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        t0 = time.perf_counter()
        p = subprocess.run(cmd, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - t0
        if p.returncode != 0:
            raise SystemExit(f"ddp run with {n} processes failed:\n{p.stderr[-3000:]}")
        log = [json.loads(ln) for ln in (run / "train.jsonl").read_text().splitlines()]
        steps = [r for r in log if r["type"] == "step"]
        # one training step of each process per record: steady state after 2 warm-up steps
        steps = steps[2:]
        ips = (steps[-1]["step"] - steps[0]["step"]) * args.batch_size / (steps[-1]["time"] - steps[0]["time"])
        out[f"np{n}t{threads}"] = {"processes": n, "threads_per_process": threads, "images_per_s": round(ips, 1), "wall_s": round(wall, 1)}
    out["speedup_vs_1proc_2threads"] = out["np2t1"]["images_per_s"] / out["np1t2"]["images_per_s"]
    out["speedup_vs_1proc_1thread"] = out["np2t1"]["images_per_s"] / out["np1t1"]["images_per_s"]
    print(
        table(
            [(v["processes"], v["threads_per_process"], v["images_per_s"]) for k, v in out.items() if k.startswith("np")],
            ["processes", "threads each", "images/s"],
        )
    )
    print(f"2 processes vs 1 (2 threads): {out['speedup_vs_1proc_2threads']:.2f}x; vs 1 (1 thread): {out['speedup_vs_1proc_1thread']:.2f}x")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("part", choices=["cost", "quality", "ddp"])
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--score-images", type=int, default=16)
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--per-bin", type=int, default=6)
    ap.add_argument("--val-images", type=int, default=1000)
    ap.add_argument("--calib-images", type=int, default=500)
    ap.add_argument("--ddp-steps", type=int, default=12)
    ap.add_argument("--workdir", default="/tmp/nastools-bench-train")
    ap.add_argument("--variant", default=None, help="a run with other settings: results/bench_train_<part>/<cpu>/<date>-<variant>.json")
    args = ap.parse_args()
    if args.part == "cost":
        args.batch_size = args.batch_size or 128
        fig = bench_cost(args)
    elif args.part == "quality":
        args.batch_size = args.batch_size or 32
        fig = bench_quality(args)
    else:
        args.batch_size = args.batch_size or 64
        fig = bench_ddp(args)
    write_result(f"bench_train_{args.part}", fig, variant=args.variant)


if __name__ == "__main__":
    main()
