"""Search quality and cost on a supernet trained on Fashion-MNIST (issue: search).

1. Evolution vs random search with the same number of accuracy evaluations, at 5 budgets
   x N seeds (target: evolution's best validation top-1 >= random's at >= 4 of 5 budgets,
   comparing the mean over seeds). Both strategies (per-budget elites "archive" and
   "nsga2") are measured, and the archive search with predictor screening (--predictor:
   4x the offspring bred, the ones a ridge predictor fitted on the evaluated archs ranks
   best are evaluated); the default is the strategy that wins more budgets.
2. Every arch returned under a latency budget is measured end to end through the table's
   backend: measured / budget (target <= 1.05).
3. Time per evaluated arch, split into BN recalibration and evaluation; and the speed-up
   the accuracy predictor gives: evaluations needed to reach the final best top-1 of the
   search without it.

All searches share one accuracy cache (same supernet, same evaluation sizes), so an arch
is evaluated once however many searches meet it; the evaluation counts are per search.

4. ``--eval-speed N``: only the time per evaluated arch, the search's scorer (the extracted,
   BN-folded, channels-last static subnet in inference mode) against scoring the supernet
   itself, on the same N archs (interleaved, same images): the ratio and whether every top-1
   is identical.

Usage: python benchmarks/bench_search.py --run runs/bench-attentive-best [--metric latency|flops]
       python benchmarks/bench_search.py --run fmnist-attentive --eval-speed 20
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import torch  # noqa: E402
from _common import latest_result, table, write_result  # noqa: E402

from nastools.checkpoint import checkpoint_path, load_supernet  # noqa: E402
from nastools.data import load_splits  # noqa: E402
from nastools.search import EvolutionSearch, SearchConfig, best_under, random_search  # noqa: E402
from nastools.search.evaluator import SubnetEvaluator  # noqa: E402


def top1_under(cands, limits) -> float:
    """Best top-1 within ``limits``; 0 when a search found nothing that fits."""
    best = best_under(cands, limits)
    return best.top1 if best else 0.0


def eval_speed(args) -> None:
    """Time per evaluated arch: the search's fast scorer vs the supernet itself (same archs,
    same images, interleaved so that machine noise hits both alike)."""
    import random

    net = load_supernet(args.run)
    space = net.space
    splits = load_splits()
    kw = dict(calib_images=args.calib_images, eval_images=args.eval_images)
    rng = random.Random(0)
    archs = [space.min_arch(), space.max_arch()] + [space.sample(rng) for _ in range(args.eval_speed - 2)]
    SubnetEvaluator(net, splits, **kw)(archs[0])  # warm-up (oneDNN primitives, first-touch)
    SubnetEvaluator(net, splits, fast=False, **kw)(archs[0])
    rows, fast_s, plain_s = [], [], []
    for a in archs:
        fast, plain = SubnetEvaluator(net, splits, **kw), SubnetEvaluator(net, splits, fast=False, **kw)
        tf, tp = fast(a), plain(a)
        f, p = fast.timing(), plain.timing()
        fast_s.append(f["recalibration_s"] + f["evaluation_s"])
        plain_s.append(p["recalibration_s"] + p["evaluation_s"])
        rows.append({"id": a.id, "flops": space.flops(a), "top1_fast": tf, "top1_plain": tp, "fast": f, "plain": p})
    ratio = sum(fast_s) / sum(plain_s)
    same = all(r["top1_fast"] == r["top1_plain"] for r in rows)
    print(
        table(
            [
                (
                    r["id"],
                    f"{r['flops'] / 1e6:.1f}M",
                    f"{r['top1_plain']:.2f}",
                    f"{r['top1_fast']:.2f}",
                    f"{r['plain']['recalibration_s']:.3f}+{r['plain']['evaluation_s']:.3f}",
                    f"{r['fast']['recalibration_s']:.3f}+{r['fast']['evaluation_s']:.3f}",
                )
                for r in rows
            ],
            ["arch", "FLOPs", "top-1 plain", "top-1 fast", "plain s (recal+eval)", "fast s (recal+eval)"],
        )
    )
    print(
        f"\nper evaluated arch ({args.calib_images} recalibration + {args.eval_images} validation images, "
        f"{args.threads} thread(s)): plain {statistics.mean(plain_s):.3f} s, fast {statistics.mean(fast_s):.3f} s, "
        f"ratio {ratio:.3f} (target <= 0.33); top-1 identical on {sum(r['top1_fast'] == r['top1_plain'] for r in rows)}/{len(rows)} archs"
    )
    write_result(
        "bench_search_eval_speed",
        {
            "run": args.run,
            "archs": len(rows),
            "calib_images": args.calib_images,
            "eval_images": args.eval_images,
            "threads": args.threads,
            "plain_s_per_arch": statistics.mean(plain_s),
            "fast_s_per_arch": statistics.mean(fast_s),
            "ratio": ratio,
            "top1_identical": same,
            "rows": rows,
        },
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", required=True, help="run folder or name with supernet.pt")
    ap.add_argument("--metric", choices=["latency", "flops"], default="latency")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--population", type=int, default=10)
    ap.add_argument("--generations", type=int, default=5)
    ap.add_argument("--calib-images", type=int, default=500)
    ap.add_argument("--eval-images", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-drift", action="store_true", help="use the table as profiled (nastools search --no-drift)")
    ap.add_argument(
        "--reuse-cache",
        action="store_true",
        help="keep the accuracy cache of the previous run (same supernet and sizes): the searches replay "
        "exactly, only the latency checks are measured anew, and the timing comes from that run",
    )
    ap.add_argument(
        "--eval-speed",
        type=int,
        default=0,
        metavar="N",
        help="only compare the time per evaluated arch of the fast and the plain scorer on N archs",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.eval_speed:
        return eval_speed(args)

    net = load_supernet(args.run)
    space = net.space
    splits = load_splits()
    cache = checkpoint_path(args.run).parent / "bench_search_cache.json"
    if not args.reuse_cache:
        cache.unlink(missing_ok=True)  # time every evaluation afresh
    ev = SubnetEvaluator(net, splits, calib_images=args.calib_images, eval_images=args.eval_images, cache_path=cache, tag="bench")
    costs = {"flops": space.flops, "params": space.params}
    measure, drift = None, None
    if args.metric == "latency":
        from nastools.search.latency_cost import resolve_table, table_measurer

        tab = resolve_table(space, "cpu", {})
        costs["latency:cpu"] = tab.predict
        measure = table_measurer(tab)
        primary = "latency:cpu"
        print(f"latency table: {tab.path}")
        if measure is not None and not args.no_drift:  # what `nastools search` does with a table made here
            from nastools.latency import check_drift
            from nastools.search.latency_cost import drift_message, drifted

            drift = check_drift(tab)
            costs["latency:cpu"] = drifted(tab.predict, drift["factor"])
            print(drift_message("cpu", drift["factor"]) + f" (ratios {drift['ratios']})")
    else:
        primary = "flops"
    lo = costs[primary](space.min_arch())
    hi = costs[primary](space.max_arch())
    budgets = [lo + (hi - lo) * q for q in (0.1, 0.25, 0.4, 0.55, 0.7)]
    limits = {primary: max(budgets)}

    def run_evo(seed, strategy, predictor=False):
        from nastools.search.runner import ridge_screen

        screen = ridge_screen(space) if predictor else None
        cfg = SearchConfig(
            population=args.population, generations=args.generations, strategy=strategy, seed=seed, predictor_factor=4 if predictor else 0
        )
        return EvolutionSearch(space, ev, costs, limits, primary, cfg, targets=budgets, predictor=screen).run()

    t0 = time.perf_counter()
    per = {"archive": [], "nsga2": [], "archive+predictor": [], "random": []}
    for seed in range(args.seeds):
        for name in ("archive", "nsga2", "archive+predictor"):
            res = run_evo(seed, name.split("+")[0], predictor=name.endswith("predictor"))
            per[name].append([top1_under(res.candidates, {primary: b}) for b in budgets])
            n_evals = res.evaluations
        rnd = random_search(space, ev, costs, limits, primary, n_evals, seed)
        per["random"].append([top1_under(rnd, {primary: b}) for b in budgets])
        print(
            f"seed {seed}: {n_evals} evaluations per search, {ev.calls} distinct archs evaluated so far, {time.perf_counter() - t0:.0f} s"
        )
    mean = {k: [statistics.mean(r[i] for r in v) for i in range(len(budgets))] for k, v in per.items()}
    evos = ("archive", "nsga2", "archive+predictor")
    wins = {k: sum(mean[k][i] >= mean["random"][i] for i in range(len(budgets))) for k in evos}
    unit = (lambda v: f"{v:.3f}ms") if primary.startswith("latency") else (lambda v: f"{v / 1e6:.1f}M")
    print(f"\nbest validation top-1 (%) under each {primary} budget, mean of {args.seeds} seeds, {n_evals} evaluations each")
    print(
        table(
            [(unit(b), *(f"{mean[k][i]:.2f}" for k in (*evos, "random"))) for i, b in enumerate(budgets)],
            ["budget", "evolution (archive)", "evolution (nsga2)", "archive + predictor", "random"],
        )
    )
    print("budgets where evolution >= random: " + ", ".join(f"{k} {wins[k]}/5" for k in evos) + " (target >= 4)")

    checks = []
    if measure is not None:
        # what `nastools search` returns: the best arch whose end-to-end measurement is
        # within the budget (the picks of all budgets measured together in 3 interleaved
        # passes, as the table's calibration runs are; an arch over its budget is measured
        # again, then replaced); the returned archs are then measured once more, independently
        from nastools.search.runner import pick_measured

        res = run_evo(0, "archive")
        picks = pick_measured(res.candidates, primary, [{primary: b} for b in budgets], {primary: measure})
        back = [p.candidate for p in picks if p.candidate is not None]
        again = dict(zip((c.arch.id for c in back), measure([c.arch for c in back])))
        for b, p in zip(budgets, picks):
            c = p.candidate
            if c is None:  # nothing measured within the budget: the search returns nothing for it
                checks.append({"budget_ms": b, "id": None, "replaced": p.replaced})
                continue
            checks.append(
                {
                    "budget_ms": b,
                    "id": c.arch.id,
                    "predicted_ms": c.costs[primary],
                    "measured_ms": p.measured_ms,
                    "ratio": p.measured_ms / b,
                    "remeasured_ms": again[c.arch.id],
                    "remeasured_ratio": again[c.arch.id] / b,
                    "replaced": p.replaced,
                }
            )
        print(
            "\nreturned archs measured end to end (ORT CPU, the table's statistic, best of 3 interleaved passes), and measured again afterwards:"
        )
        print(
            table(
                [
                    (
                        unit(r["budget_ms"]),
                        r["id"],
                        len(r["replaced"]),
                        f"{r['predicted_ms']:.3f}",
                        f"{r['measured_ms']:.3f}",
                        f"{r['ratio']:.3f}",
                        f"{r['remeasured_ratio']:.3f}",
                    )
                    if r["id"]
                    else (unit(r["budget_ms"]), "none", len(r["replaced"]), "-", "-", "-", "-")
                    for r in checks
                ],
                ["budget", "arch", "replaced", "predicted ms", "measured ms", "measured/budget", "again/budget"],
            )
        )

    # predictor speed-up: evaluations to reach the final best (at the middle budget) of the plain search
    mid = {primary: budgets[2]}
    speed = []
    for seed in range(args.seeds):
        plain = run_evo(seed, "archive")
        pred = run_evo(seed, "archive", predictor=True)
        goal = best_under(plain.candidates, mid).top1

        def evals_to(cands):
            best = -1.0
            for i, c in enumerate(cands, 1):
                if all(c.costs[k] <= v for k, v in mid.items()):
                    best = max(best, c.top1)
                if best >= goal:
                    return i
            return None

        a, b = evals_to(plain.candidates), evals_to(pred.candidates)
        speed.append({"seed": seed, "plain_evals": a, "predictor_evals": b, "speedup": (a / b) if b else None})
    print("\npredictor: evaluations to reach the plain search's final best top-1 at the middle budget")
    print(
        table(
            [
                (s["seed"], s["plain_evals"], s["predictor_evals"] or "not reached", f"{s['speedup']:.2f}x" if s["speedup"] else "-")
                for s in speed
            ],
            ["seed", "plain", "with predictor", "speed-up"],
        )
    )
    timing = ev.timing()
    # a run with other settings than the claim's is a variant of the result
    variant = "-".join(v for v, on in (("flops", args.metric == "flops"), ("no-drift", args.no_drift)) if on) or None
    previous = latest_result("bench_search", variant)
    if args.reuse_cache and timing["archs"] == 0 and previous is not None:
        timing = {**json.loads(previous.read_text())["timing"], "from": "the run that filled the accuracy cache"}
    print(
        f"\nper evaluated arch: BN recalibration {timing['recalibration_s']:.2f} s ({args.calib_images} images), "
        f"evaluation {timing['evaluation_s']:.2f} s ({args.eval_images} images), {timing['archs']} archs"
    )
    write_result(
        "bench_search",
        {
            "run": args.run,
            "metric": primary,
            "budgets": budgets,
            "seeds": args.seeds,
            "evaluations_per_search": n_evals,
            "mean_top1": mean,
            "per_seed": per,
            "wins_vs_random": wins,
            "latency_checks": checks,
            "latency_drift": drift,
            "max_measured_over_budget": max((r["ratio"] for r in checks if r["id"]), default=None),
            "max_remeasured_over_budget": max((r["remeasured_ratio"] for r in checks if r["id"]), default=None),
            "predictor": speed,
            "timing": timing,
            "threads": args.threads,
        },
        variant=variant,
    )


if __name__ == "__main__":
    main()
