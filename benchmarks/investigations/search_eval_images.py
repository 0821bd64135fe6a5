"""Investigation: would scoring every evaluation on more validation images make evolution
beat random search reliably?

`nastools search` scores each evaluated arch on 2,000 validation images and re-scores the 4
best of each budget on all 5,000 before it picks. Against random search with as many
evaluations, evolution's picks won at the two largest of 5 FLOPs budgets in every resampled
random search and at the smaller ones in 24-74% (`search_selection.py`): there the archs that
fit differ less than a 2,000-image score tells apart. This reruns the search of one
``bench_search.py --vs-random-pool 300 --pool-test all`` result (same supernet, seed,
budgets and settings) with every evaluation on ``--eval-images`` images (no re-ranking:
the finalists would be scored on as many), scores the loosest budget's pool of 300 random
archs the same way, and replays 10 x ``--draws`` random searches of as many evaluations from
that pool, each picking by its score, on the same draws as with the result's 2,000-image
scores: per budget how often evolution's pick matches or beats the random one on the test
set, and at all five at once. Test top-1 comes from the result (BN recalibrated on 2,000
training images, all 10,000 test images); picks it lacks are scored here the same way.

Writes ``results/search_eval_images/<cpu>/<date>-seed<N>.json``.

Usage: python benchmarks/investigations/search_eval_images.py RESULT.json [--eval-images 5000] [--workers 2] [--draws 300]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_search  # noqa: E402
from _common import write_result  # noqa: E402
from bench_search import _pending, _Pool, _pool_context, _pool_evolve, _pools, _refresh, _score  # noqa: E402
from search_selection import against_random, print_against_random, read_result  # noqa: E402

from nastools.checkpoint import RUNS_DIR  # noqa: E402
from nastools.search.evolution import best_under  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("result", help="a bench_search_vs_random result with per-arch scores")
    ap.add_argument("--eval-images", type=int, default=5000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--draws", type=int, default=300, help="10x this many random searches are resampled")
    ap.add_argument("--cache-dir", default=None, help="accuracy caches (default runs/search_eval_images/seed<N>); resumes from them")
    args = ap.parse_args()
    t0 = time.perf_counter()
    res, val_search, test = read_result(Path(args.result))
    seed, budgets = res["settings"]["seed"], res["budgets"]
    folder = Path(args.cache_dir) if args.cache_dir else RUNS_DIR / "search_eval_images" / f"seed{seed}"
    spec = {**res["settings"], "run": res["run"], "cache_dir": str(folder), "threads": 1, "eval_images": args.eval_images}
    ctx = bench_search._CTX = _pool_context(spec)  # the context of in-process tasks (--workers 1)
    pools, _ = _pools(ctx.space, budgets, res["pool"]["size"], seed)
    runner = _Pool(spec, args.workers, {k: ev.key for k, ev in ctx.evaluators.items()})
    try:
        todo = _pending(ctx, "val", pools[-1])
        print(
            f"seed {seed}: the evolution and {len(todo)} of the loosest pool's {len(pools[-1])} archs to score on {args.eval_images} images"
        )
        runner.run([("evolve", budgets)] + [("val", a.to_dict()) for a in todo], f"validation, {args.eval_images} images")
    finally:
        runner.close()
    _refresh(ctx, "val")
    evo = _pool_evolve(ctx, spec, budgets)  # a replay from the cache
    ctx.evaluators["test"].cache.update(test)
    picks = [best_under(evo.candidates, {"flops": b}) for b in budgets]
    tests = [None if c is None else _score(ctx, "test", c.arch) for c in picks]
    val = ctx.evaluators["val"].cache
    more = {
        "evaluations_per_search": evo.evaluations,
        "budgets": budgets,
        "rows": [{"budget_flops": b, "evolution": None if t is None else {"test_top1": t}} for b, t in zip(budgets, tests)],
    }
    draws = 10 * args.draws
    vs_more, every_more = against_random(more, val, test, ctx.space, pools, draws, seed)
    vs_search, every_search = against_random(res, val_search, test, ctx.space, pools, draws, seed)
    for name, vs, every, n in (
        ("2,000 images + re-rank (nastools search's default, the result's)", vs_search, every_search, res["evaluations_per_search"]),
        (f"{args.eval_images} images", vs_more, every_more, evo.evaluations),
    ):
        print(f"\nscoring on {name}:")
        print_against_random(vs, draws, n)
        if every is not None:
            print(f"  at every budget at once: {100 * every:.0f}% of the random searches")
    write_result(
        "search_eval_images",
        {
            "source": str(Path(args.result)),
            "seed": seed,
            "budgets": budgets,
            "eval_images": args.eval_images,
            "draws": draws,
            "evolution": [
                None if c is None else {"id": c.arch.id, "key": c.arch.key, "flops": c.costs["flops"], "val_top1": c.top1, "test_top1": t}
                for c, t in zip(picks, tests)
            ],
            "pool_scored": [[a.key, val[a.id]] for a in pools[-1]],
            "evolution_scored": [[c.arch.key, c.top1] for c in evo.candidates],
            "more_images": {"budgets": vs_more, "evo_ge_random_at_every_budget_share": every_more},
            "search_default": {"budgets": vs_search, "evo_ge_random_at_every_budget_share": every_search},
            "seconds": round(time.perf_counter() - t0, 1),
        },
        variant=f"seed{seed}",
    )


if __name__ == "__main__":
    main()
