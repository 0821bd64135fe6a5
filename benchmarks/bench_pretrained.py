"""The shipped supernet's front: test top-1 of its subnets against FLOPs and this CPU's latency.

Every subnet is scored as nastools search scores it (BN recalibrated on 2,000 training
images, inherited weights, no fine-tuning), here on all 10,000 Fashion-MNIST test images:
the min and max subnets, ``--archs`` random subnets, and the subnet ``nastools search``
picks under ``--flops 10M`` (validation top-1) — the issue's targets are max >= 93.0%,
best <= 10M FLOPs >= 92.0%, min >= 89.0%. Latency is this CPU's prediction from the latency
table search would use (ORT CPU, 1 thread, batch 1). Writes the result JSON and plots beside it.

Usage: python benchmarks/bench_pretrained.py [--run fmnist-attentive] [--archs 40]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import torch  # noqa: E402
from _common import result_path, table, write_result  # noqa: E402

from nastools.checkpoint import load_checkpoint, load_supernet, run_splits  # noqa: E402
from nastools.search.evaluator import SubnetEvaluator  # noqa: E402

TARGETS = {"max": 93.0, "best_le_10M": 92.0, "min": 89.0}


def plot(path: Path, rows: list[dict], key: str, xlabel: str, scale: float) -> None:
    from nastools.plotting import figure, save_png

    fig, ax = figure()
    for kind, style in (
        ("random", dict(s=12, c="0.6", label="random subnets")),
        ("min", dict(s=60, c="tab:green", marker="v", label="min")),
        ("max", dict(s=60, c="tab:red", marker="^", label="max")),
        ("search", dict(s=140, c="tab:orange", marker="*", label="search pick, <= 10M FLOPs")),
    ):
        pts = [r for r in rows if r["kind"] == kind and r.get(key) is not None]
        ax.scatter([r[key] * scale for r in pts], [r["test_top1"] for r in pts], zorder=3, **style)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test top-1 (%), 10,000 images")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    save_png(fig, path)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default="fmnist-attentive")
    ap.add_argument("--archs", type=int, default=40)
    ap.add_argument("--calib-images", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--population", type=int, default=16)
    ap.add_argument("--generations", type=int, default=6)
    ap.add_argument(
        "--variant", default=None, help="another supernet than the shipped one: results/bench_pretrained/<cpu>/<date>-<variant>.json"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    ckpt = load_checkpoint(args.run)
    net = load_supernet(args.run)
    space = net.space
    splits = run_splits(ckpt)
    test_view = type(splits)(**{**splits.__dict__, "val": splits.test})  # score on the test set
    on_test = SubnetEvaluator(net, test_view, calib_images=args.calib_images, eval_images=len(splits.test), seed=args.seed)

    from nastools.latency.table import LatencyTable  # noqa: F401
    from nastools.search.runner import resolve_table

    try:
        tab = resolve_table(space, "cpu", {})
        latency, table_path = tab.predict, str(tab.path)
    except Exception as exc:  # noqa: BLE001 - no table of this CPU: FLOPs only
        print(f"no latency table for this CPU ({exc}); plotting FLOPs only")
        latency, table_path = (lambda a: None), None

    rng = random.Random(args.seed)
    archs = [("min", space.min_arch()), ("max", space.max_arch())] + [("random", space.sample(rng)) for _ in range(args.archs)]
    # the subnet search picks under 10M FLOPs (validation top-1, as nastools search scores)
    from nastools.search import EvolutionSearch, SearchConfig, best_under

    on_val = SubnetEvaluator(net, splits, calib_images=1000, eval_images=2000, seed=args.seed)
    costs = {"flops": space.flops, "params": space.params}
    res = EvolutionSearch(
        space,
        on_val,
        costs,
        {"flops": 10e6},
        "flops",
        SearchConfig(population=args.population, generations=args.generations, seed=args.seed),
    ).run()
    pick = best_under(res.candidates, {"flops": 10e6})
    archs.append(("search", pick.arch))
    rows = []
    for kind, a in archs:
        rows.append(
            {
                "kind": kind,
                "id": a.id,
                "flops": space.flops(a),
                "params": space.params(a),
                "latency_ms": latency(a),
                "test_top1": on_test(a),
                "val_top1": pick.top1 if kind == "search" else None,
            }
        )
        print(f"{kind:7s} {a.id} {rows[-1]['flops'] / 1e6:6.1f}M  test top-1 {rows[-1]['test_top1']:.2f}%", flush=True)
    le10 = [r for r in rows if r["flops"] <= 10e6]
    got = {"max": rows[1]["test_top1"], "min": rows[0]["test_top1"], "best_le_10M": max(r["test_top1"] for r in le10)}
    print()
    print(
        table(
            [(k, f"{got[k]:.2f}", f">= {TARGETS[k]:.1f}", "met" if got[k] >= TARGETS[k] else "not met") for k in TARGETS],
            ["subnet", "test top-1 %", "target", ""],
        )
    )
    print(
        f"search pick under 10M FLOPs: {pick.arch.id}, {pick.costs['flops'] / 1e6:.1f}M FLOPs, validation {pick.top1:.2f}%, "
        f"test {rows[-1]['test_top1']:.2f}% ({res.evaluations} evaluations)"
    )
    out = result_path("bench_pretrained", args.variant)  # the plots go beside the result file: <date>-front-flops.png
    out.parent.mkdir(parents=True, exist_ok=True)
    plot(out.with_name(f"{out.stem}-front-flops.png"), rows, "flops", "FLOPs (M, multiply-accumulates)", 1e-6)
    if table_path:
        plot(
            out.with_name(f"{out.stem}-front-latency.png"),
            rows,
            "latency_ms",
            "predicted latency on this CPU (ms, ORT, 1 thread, batch 1)",
            1.0,
        )
    from nastools.train.curve import learning_curve, plot_curves, run_log

    plot_curves(out.with_name(f"{out.stem}-curve.png"), {args.run: learning_curve(run_log(args.run))})  # validation top-1 vs epochs
    trained = ckpt.get("trained") or ckpt.get("train") or {}
    write_result(
        "bench_pretrained",
        {
            "run": args.run,
            "fingerprint": ckpt.get("fingerprint"),
            "trained_steps": trained.get("step"),
            "history": trained.get("history"),
            "calib_images": args.calib_images,
            "test_images": len(splits.test),
            "targets": TARGETS,
            "top1": got,
            "search_pick": {"id": pick.arch.id, "flops": pick.costs["flops"], "val_top1": pick.top1, "evaluations": res.evaluations},
            "latency_table": table_path,
            "rows": rows,
            "seconds": round(time.perf_counter() - t0, 1),
        },
        variant=args.variant,
    )


if __name__ == "__main__":
    main()
