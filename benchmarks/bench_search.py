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

4. ``--eval-speed N``: only the time per evaluated arch, the search's scorer (BN recalibrated
   on the extracted channels-last static subnet, then folded, scored in inference mode)
   against recalibrating and scoring the supernet itself, on the same N archs (interleaved,
   same images): the ratio and whether every top-1 is identical.

5. ``--vs-random-pool N`` (issue 26 item 6): on the shipped supernet (``--run``), at 5 FLOPs
   budgets (10/25/40/55/70% of the space's FLOPs range; FLOPs, not latency, so that the
   result holds on any machine): the search ``nastools search --flops <the 5 budgets>`` runs
   with its defaults (archive strategy with predictor screening, population 16, 6
   generations, BN recalibration on 1,000 training images, top-1 on 2,000 validation images),
   random search with as many evaluations, and for each budget a pool of N random archs that
   fit it (rejection sampling from the space's sampler, one seeded stream, so the pools
   overlap), scored on validation. Every contender then chooses as ``nastools search`` does
   (``--rerank``, default the search's 4): its 4 best archs within a budget are scored again
   on the whole validation split (5,000 images) and the best of them by that score is its
   pick. Each pick, and each contender's pick by the 2,000-image score alone (for what
   re-ranking changed), is then scored on all 10,000 test images after BN recalibration on 2,000 training images, as
   bench_pretrained.py scores; every pool arch too when the measured time per test
   evaluation makes that affordable (``--pool-test``), for the best of the pool by test
   top-1. Goals: evolution's test top-1 >= random search's at 5/5 budgets, and within 0.3
   points of the best of >= 300 random archs (picked by validation). All accuracies are
   cached on disk as they are measured (``--cache-dir``; a killed run resumes), in one cache
   per split shared by all contenders, so no arch is scored twice; ``--workers`` scores them
   in that many processes (the evolution in one of them).

6. ``--pooled`` (``--rerank 0``: of those picks): this CPU's ``--vs-random-pool`` results with
   the claim's settings, the newest per seed, pooled: per budget and over all budget-seed
   pairs, evolution's test top-1 minus random search's and minus the pool pick's (mean, SE,
   wins and losses, sign test).

Usage: python benchmarks/bench_search.py --run runs/bench-attentive-best [--metric latency|flops]
       python benchmarks/bench_search.py --run fmnist-attentive --eval-speed 16 --calib-images 1000 --eval-images 2000
       python benchmarks/bench_search.py --vs-random-pool 300 [--run fmnist-attentive] [--workers 2] [--seed N]
       python benchmarks/bench_search.py --pooled [--rerank 0]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import torch  # noqa: E402
from _common import latest_result, result_path, table, write_result  # noqa: E402

from nastools.checkpoint import checkpoint_path, load_supernet  # noqa: E402
from nastools.data import load_splits  # noqa: E402
from nastools.search import Candidate, EvolutionSearch, SearchConfig, best_under, random_search  # noqa: E402
from nastools.search.evaluator import CALIB_IMAGES, SubnetEvaluator  # noqa: E402
from nastools.search.rerank import finalists, rerank_images  # noqa: E402


def top1_under(cands, limits) -> float:
    """Best top-1 within ``limits``; 0 when a search found nothing that fits."""
    best = best_under(cands, limits)
    return best.top1 if best else 0.0


def eval_speed(args) -> None:
    """Time per evaluated arch: the search's fast scorer vs the supernet itself (same archs,
    same images, interleaved so that machine noise hits both alike), in wall-clock seconds and
    in this process's CPU seconds (which other work on the machine does not stretch)."""
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
        c0 = time.process_time()
        tf = fast(a)
        c1 = time.process_time()
        tp = plain(a)
        cpu = {"fast_cpu_s": c1 - c0, "plain_cpu_s": time.process_time() - c1}
        f, p = fast.timing(), plain.timing()
        fast_s.append(f["recalibration_s"] + f["evaluation_s"])
        plain_s.append(p["recalibration_s"] + p["evaluation_s"])
        rows.append({"id": a.id, "flops": space.flops(a), "top1_fast": tf, "top1_plain": tp, "fast": f, "plain": p, **cpu})
    ratio = sum(fast_s) / sum(plain_s)
    cpu_ratio = sum(r["fast_cpu_s"] for r in rows) / sum(r["plain_cpu_s"] for r in rows)
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
        f"ratio {ratio:.3f} (target <= 0.33), in CPU seconds {cpu_ratio:.3f}; top-1 identical on {sum(r['top1_fast'] == r['top1_plain'] for r in rows)}/{len(rows)} archs"
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
            "plain_cpu_s_per_arch": statistics.mean(r["plain_cpu_s"] for r in rows),
            "fast_cpu_s_per_arch": statistics.mean(r["fast_cpu_s"] for r in rows),
            "cpu_ratio": cpu_ratio,
            "top1_identical": same,
            "rows": rows,
        },
    )


# --------------------------------------------------------------------------------------------
# --vs-random-pool N: evolution and random search against the best of N random archs, on test

SHIPPED = "fmnist-attentive"  # the supernet shipped in nastools/pretrained/
QUANTILES = (0.1, 0.25, 0.4, 0.55, 0.7)  # the FLOPs budgets, as fractions of the space's range
POOL_CLAIM = 300  # the goal's pool size: a result with another is a variant
CONTENDERS = ("evolution", "random", "pool")
GOAL_GAP = 0.3  # evolution's pick within this many test points of the best of the pool
POOL_SEED = 1_000_003  # the pool's stream of archs: independent of random search's (same --seed)
KINDS = ("val", "final", "test")  # the search's score, its finalists' score, the test set's
_CTX = None  # this process's _PoolContext (a worker's, or the main process's when inline)


@dataclass
class _PoolContext:
    """One process's view: the space, a validation evaluator (as ``nastools search`` scores)
    and a test evaluator (as bench_pretrained scores) over the shared supernet, each with its
    own cache file in ``folder`` and the other processes' files read in, and the time of each
    arch it evaluated itself."""

    space: Any
    folder: Path
    make: dict  # kind -> (cache path -> SubnetEvaluator)
    evaluators: dict = field(default_factory=dict)
    timing: dict = field(default_factory=lambda: {k: {} for k in KINDS})


def _pool_context(spec: dict, own: str = "") -> _PoolContext:
    """Load the supernet of ``spec['run']`` and make the evaluators; ``own`` tells this
    process's cache files (``val-cache<own>.json``, ``test-cache<own>.json``) apart."""
    from nastools.checkpoint import find_checkpoint, load_checkpoint, run_splits

    ckpt, data, net = find_checkpoint(spec["run"]), load_checkpoint(spec["run"]), load_supernet(spec["run"])
    splits = run_splits(data)
    on_test = type(splits)(**{**splits.__dict__, "val": splits.test})  # score on the test set
    # a replaced checkpoint (another mtime or size) or other data invalidates the caches
    st = ckpt.stat()
    base = f"{ckpt.resolve()}:{st.st_mtime_ns}:{st.st_size}:{splits.name}:{splits.seed}:batch={spec['batch_size']}"
    val_kw = dict(
        calib_images=spec["calib_images"], eval_images=spec["eval_images"], seed=spec["seed"], tag=f"{base}:val={len(splits.val)}"
    )
    test_kw = dict(calib_images=spec["test_calib_images"], eval_images=len(splits.test), seed=0, tag=f"{base}:test={len(splits.test)}")
    final_kw = {**val_kw, "eval_images": rerank_images(spec["rerank_images"], spec["eval_images"], len(splits.val)) or spec["eval_images"]}
    make = {
        "val": lambda path: SubnetEvaluator(net, splits, batch_size=spec["batch_size"], cache_path=path, **val_kw),
        "final": lambda path: SubnetEvaluator(net, splits, batch_size=spec["batch_size"], cache_path=path, **final_kw),
        "test": lambda path: SubnetEvaluator(net, on_test, batch_size=spec["batch_size"], cache_path=path, **test_kw),
    }
    ctx = _PoolContext(net.space, Path(spec["cache_dir"]), make)
    ctx.folder.mkdir(parents=True, exist_ok=True)
    for kind in make:
        ctx.evaluators[kind] = make[kind](ctx.folder / f"{kind}-cache{own}.json")
        _refresh(ctx, kind)
    return ctx


def _refresh(ctx: _PoolContext, kind: str) -> None:
    """Read the accuracies the other processes have written into this process's cache."""
    ev = ctx.evaluators[kind]
    for path in sorted(ctx.folder.glob(f"{kind}-cache*.json")):
        if path != ev.cache_path:
            for arch_id, top1 in ctx.make[kind](path).cache.items():
                ev.cache.setdefault(arch_id, top1)


def _score(ctx: _PoolContext, kind: str, arch) -> float:
    """Top-1 of ``arch`` on ``kind`` ('val' or 'test'), from any process's cache when there;
    the time of an evaluation made here goes to ``ctx.timing``."""
    ev = ctx.evaluators[kind]
    if arch.id not in ev.cache:
        _refresh(ctx, kind)
    calls, wall, cpu = ev.calls, time.perf_counter(), time.process_time()
    top1 = ev(arch)
    if ev.calls > calls:
        ctx.timing[kind][arch.id] = [time.perf_counter() - wall, time.process_time() - cpu]
    return top1


def _pool_costs(space) -> dict:
    return {"flops": space.flops, "params": space.params}


def _pool_evolve(ctx: _PoolContext, spec: dict, budgets: list[float], progress=None):
    """The search ``nastools search --flops <budgets>`` runs, with its default settings."""
    from nastools.search.runner import ridge_screen

    cfg = SearchConfig(
        population=spec["population"],
        generations=spec["generations"],
        mutate_prob=spec["mutate_prob"],
        strategy=spec["strategy"],
        seed=spec["seed"],
        predictor_factor=spec["predictor_factor"],
    )
    screen = ridge_screen(ctx.space) if cfg.predictor_factor else None
    return EvolutionSearch(
        ctx.space,
        lambda a: _score(ctx, "val", a),
        _pool_costs(ctx.space),
        {"flops": max(budgets)},
        "flops",
        cfg,
        targets=budgets,
        predictor=screen,
        progress=progress,
    ).run(resume=False)


def _pool_random(ctx: _PoolContext, spec: dict, budgets: list[float], evaluations: int, accuracy=None):
    """Random search with ``evaluations`` evaluations under the loosest budget (its archs do not
    depend on the accuracies: with ``accuracy=lambda a: 0.0`` it lists them)."""
    acc = accuracy or (lambda a: _score(ctx, "val", a))
    return random_search(ctx.space, acc, _pool_costs(ctx.space), {"flops": max(budgets)}, "flops", evaluations, spec["seed"])


def _pools(space, budgets: list[float], n: int, seed: int) -> tuple[list[list], int]:
    """For each budget, the first ``n`` distinct archs of one seeded stream of the space's
    sampler that fit it (rejection sampling; the pools overlap, so fewer archs are evaluated);
    and how many archs were drawn."""
    rng = random.Random(POOL_SEED + seed)
    pools: list[list] = [[] for _ in budgets]
    seen: list[set] = [set() for _ in budgets]
    drawn = 0
    while any(len(p) < n for p in pools):
        if drawn > 2000 * n:
            raise SystemExit(f"fewer than {n} of {drawn} sampled archs fit {min(budgets) / 1e6:.2f}M FLOPs")
        arch = space.sample(rng)
        drawn += 1
        flops = space.flops(arch)
        for pool, ids, b in zip(pools, seen, budgets):
            if flops <= b and len(pool) < n and arch.id not in ids:
                pool.append(arch)
                ids.add(arch.id)
    return pools, drawn


def _init_worker(spec: dict) -> None:
    global _CTX
    torch.set_num_threads(spec["threads"])
    _CTX = _pool_context(spec, own=f".w{os.getpid()}")


def _task(kind: str, payload, spec: dict | None = None, progress=None) -> tuple[str, dict]:
    """One unit of work in this process's context: 'evolve' (payload: the budgets) fills the
    validation cache with the evolution's archs; 'val' / 'final' / 'test' (payload: an arch's
    dict) scores one arch. Returns the kind and the times of the evaluations made here."""
    ctx = _CTX
    before = {k: set(v) for k, v in ctx.timing.items()}
    if kind == "evolve":
        _pool_evolve(ctx, spec, payload, progress)
    else:
        _score(ctx, kind, ctx.space.arch_from_dict(payload))
    new = {k: {i: t for i, t in v.items() if i not in before[k]} for k, v in ctx.timing.items()}
    return kind, new


class _Pool:
    """Runs tasks in this process (``workers`` 1) or in worker processes, with a progress bar,
    and keeps every evaluation's time in ``<cache_dir>/timing.json`` (across resumed runs)."""

    def __init__(self, spec: dict, workers: int, keys: dict):
        self.spec, self.workers, self.ex = spec, workers, None
        self.path = Path(spec["cache_dir"]) / "timing.json"
        saved = json.loads(self.path.read_text()) if self.path.is_file() else {}
        # the times of the archs in the caches, per evaluator key (runs with other seeds or
        # settings share the folder, each kind's times under its own key)
        self.store = saved if isinstance(saved.get("by_key"), dict) else {"by_key": {}}
        self.timing = {k: self.store["by_key"].setdefault(keys[k], {}) for k in KINDS}

    def run(self, tasks: list[tuple[str, Any]], desc: str) -> None:
        from tqdm import tqdm

        if not tasks:
            return
        with tqdm(total=len(tasks), desc=desc, unit="task", dynamic_ncols=True) as bar:
            if self.workers == 1:
                tick = lambda gen, total, msg: bar.set_postfix_str(f"evolution: generation {gen}/{total}, {msg}")  # noqa: E731
                for kind, payload in tasks:
                    self._record(*_task(kind, payload, self.spec, tick), bar)
                return
            import concurrent.futures as cf
            import multiprocessing

            if self.ex is None:
                ctx = multiprocessing.get_context("spawn")
                self.ex = cf.ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_init_worker, initargs=(self.spec,))
            futures = [self.ex.submit(_task, kind, payload, self.spec) for kind, payload in tasks]
            for fut in cf.as_completed(futures):
                self._record(*fut.result(), bar)

    def _record(self, kind: str, new: dict, bar) -> None:
        for k, v in new.items():
            self.timing[k].update(v)
        if any(new.values()):
            from nastools.io import atomic_write_json

            atomic_write_json(self.path, self.store, indent=None)
        bar.update(1)

    def mean(self, kind: str) -> dict:
        """Mean wall and CPU seconds of an evaluation of ``kind`` (all runs of this cache)."""
        t = list(self.timing[kind].values())
        return {
            "archs": len(t),
            "wall_s": statistics.mean(w for w, _ in t) if t else None,
            "cpu_s": statistics.mean(c for _, c in t) if t else None,
        }

    def close(self) -> None:
        if self.ex is not None:
            self.ex.shutdown(wait=False, cancel_futures=True)
            self.ex = None


def _pool_spec(args) -> dict:
    """Everything a worker needs: the run, the cache folder and the settings of
    ``nastools search`` (its defaults unless overridden), of the pool and of the test."""
    from nastools.checkpoint import RUNS_DIR
    from nastools.search.runner import SearchOptions

    o = SearchOptions()
    folder = Path(args.cache_dir) if args.cache_dir else RUNS_DIR / "bench_search_vs_random" / _slug(args.run)
    return {
        "run": args.run,
        "cache_dir": str(folder),
        "threads": args.threads,
        "seed": args.seed,
        "population": args.population or o.population,
        "generations": o.generations if args.generations is None else args.generations,
        "strategy": o.strategy,
        "mutate_prob": o.mutate_prob,
        "predictor_factor": o.predictor_factor if o.predictor else 0,
        "calib_images": args.calib_images or o.calib_images or CALIB_IMAGES,
        "eval_images": args.eval_images or o.eval_images,
        "batch_size": o.batch_size,
        "rerank": o.rerank if args.rerank is None else args.rerank,
        "rerank_images": o.rerank_images,
        "test_calib_images": args.test_calib_images,
    }


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")


def _pool_variant(args, spec: dict) -> str | None:
    """The result's variant: what differs from the claim's settings (the shipped supernet,
    ``nastools search``'s defaults, a pool of 300, seed 0); threads and workers do not."""
    from nastools.search.runner import SearchOptions

    o = SearchOptions()
    parts = [
        (args.run != SHIPPED, _slug(args.run)),
        (args.vs_random_pool != POOL_CLAIM, f"pool{args.vs_random_pool}"),
        (spec["population"] != o.population, f"pop{spec['population']}"),
        (spec["generations"] != o.generations, f"gen{spec['generations']}"),
        (
            (spec["calib_images"], spec["eval_images"]) != (o.calib_images or CALIB_IMAGES, o.eval_images),
            f"calib{spec['calib_images']}-eval{spec['eval_images']}",
        ),
        (args.test_calib_images != 2000, f"testcalib{args.test_calib_images}"),
        (spec["rerank"] != o.rerank, f"rerank{spec['rerank']}"),
        (args.seed != 0, f"seed{args.seed}"),
    ]
    return "-".join(p for on, p in parts if on) or None


def _pending(ctx: _PoolContext, kind: str, archs) -> list:
    """The distinct ``archs`` no process has scored on ``kind`` yet, in order."""
    _refresh(ctx, kind)
    cache = ctx.evaluators[kind].cache
    return list({a.id: a for a in archs if a.id not in cache}.values())


def _pool_rows(ctx: _PoolContext, budgets, evolved, randoms, pools) -> list[dict]:
    """Per budget: each contender's candidates within it (``<contender>_cands``) and the arch it
    picks by the search's validation top-1 (None: nothing fits); :func:`_pool_rerank` sets the
    final picks."""
    val = ctx.evaluators["val"].cache
    rows = []
    for b, pool in zip(budgets, pools):
        lim = {"flops": b}
        scored = [Candidate(a, val[a.id], {"flops": ctx.space.flops(a)}) for a in pool]
        row = {"budget": b, "pool_archs": pool}
        for name, cands in zip(CONTENDERS, (evolved, randoms, scored)):
            row[f"{name}_cands"] = [c for c in cands if c.costs["flops"] <= b]
            row[name] = row[f"{name}_search"] = best_under(cands, lim)
        rows.append(row)
    return rows


def _pool_rerank(ctx: _PoolContext, spec: dict, rows: list[dict], runner: "_Pool") -> None:
    """As ``nastools search`` chooses (:mod:`nastools.search.rerank`): each contender's
    ``spec['rerank']`` best archs within a budget by the search's score are scored on the
    'final' evaluator (more validation images) and its pick becomes the best of them by that
    score. Without re-ranking, the picks stay the search's."""
    if not spec["rerank"] or ctx.evaluators["final"].eval_images <= spec["eval_images"]:
        return
    for row in rows:
        for name in CONTENDERS:
            row[f"{name}_finalists"] = finalists(row[f"{name}_cands"], [{"flops": row["budget"]}], spec["rerank"])
    todo = _pending(ctx, "final", [c.arch for row in rows for name in CONTENDERS for c in row[f"{name}_finalists"]])
    runner.run([("final", a.to_dict()) for a in todo], "finalists")
    _refresh(ctx, "final")
    final = ctx.evaluators["final"].cache
    for row in rows:
        for name in CONTENDERS:
            fin = row[f"{name}_finalists"]
            row[name] = max(fin, key=lambda c: (final[c.arch.id], -c.costs["flops"])) if fin else None


def _pool_test_plan(args, runner: _Pool, ctx: _PoolContext, pools) -> tuple[dict, list]:
    """Whether to score every pool arch on the test set too (for the best of the pool by test
    top-1): ``--pool-test all``, or ``auto`` when the time measured per test evaluation says
    it takes at most ``--pool-test-max-s``."""
    untested = _pending(ctx, "test", [a for p in pools for a in p])
    per = runner.mean("test")["wall_s"]
    est = per * len(untested) / args.workers if per else None
    done = not untested or args.pool_test == "all" or (args.pool_test == "auto" and est is not None and est <= args.pool_test_max_s)
    plan = {"mode": args.pool_test, "untested": len(untested), "estimate_s": est, "max_s": args.pool_test_max_s, "done": done}
    print(
        f"test set for every pool arch: {len(untested)} to score, about {est or 0:.0f} s at {per or 0:.1f} s each"
        f" on {args.workers} worker(s): {'scoring them' if done and untested else 'done' if done else 'skipped'}"
        + ("" if done or args.pool_test == "none" else f" (over --pool-test-max-s {args.pool_test_max_s:.0f})")
    )
    return plan, untested if done else []


def vs_random(args) -> None:
    """Evolution (``nastools search --flops`` with its defaults) and random search with as many
    evaluations, against the best by validation of ``--vs-random-pool`` random archs that fit
    each of 5 FLOPs budgets; all picks scored on the whole test set. Resumable: every
    accuracy is cached on disk as it is measured."""
    global _CTX
    t0 = time.perf_counter()
    spec = _pool_spec(args)
    if args.fresh:
        for path in [*Path(spec["cache_dir"]).glob("*-cache*.json"), Path(spec["cache_dir"]) / "timing.json"]:
            path.unlink(missing_ok=True)
    _CTX = ctx = _pool_context(spec)
    space = ctx.space
    lo, hi = space.flops(space.min_arch()), space.flops(space.max_arch())
    budgets = [lo + (hi - lo) * q for q in QUANTILES]
    most = spec["population"] * (spec["generations"] + 1)  # an evolution evaluates at most this many
    listed = [c.arch for c in _pool_random(ctx, spec, budgets, most, accuracy=lambda a: 0.0)]
    pools, drawn = _pools(space, budgets, args.vs_random_pool, args.seed)
    todo = _pending(ctx, "val", listed + [a for p in pools for a in p])
    distinct = len({a.id for a in listed} | {a.id for p in pools for a in p})
    print(
        f"{args.run}: FLOPs budgets {', '.join(f'{b / 1e6:.2f}M' for b in budgets)}; pools of {args.vs_random_pool} "
        f"({drawn} archs drawn), {distinct} distinct pool and random-search archs, {len(todo)} not scored yet; "
        f"caches in {spec['cache_dir']}"
    )
    runner = _Pool(spec, args.workers, {k: ev.key for k, ev in ctx.evaluators.items()})
    try:
        runner.run([("evolve", budgets)] + [("val", a.to_dict()) for a in todo], "validation")
        _refresh(ctx, "val")
        res = _pool_evolve(ctx, spec, budgets)  # a replay from the cache
        rnd = _pool_random(ctx, spec, budgets, res.evaluations)
        rows = _pool_rows(ctx, budgets, res.candidates, rnd, pools)
        _pool_rerank(ctx, spec, rows, runner)
        picks = [r[k].arch for r in rows for k in (*CONTENDERS, *(f"{c}_search" for c in CONTENDERS)) if r.get(k) is not None]
        runner.run([("test", a.to_dict()) for a in _pending(ctx, "test", picks)], "test")
        plan, more = _pool_test_plan(args, runner, ctx, pools)
        runner.run([("test", a.to_dict()) for a in more], "test, pool")
    finally:
        runner.close()
    _refresh(ctx, "test")
    _pool_report(args, spec, ctx, runner, rows, plan, {"evaluations": res.evaluations, "drawn": drawn, "distinct": distinct, "t0": t0})


def _pool_figures(ctx: _PoolContext, rows: list[dict], oracle: bool) -> list[dict]:
    """Per budget: each pick's id, FLOPs, validation top-1 (the search's score, and the
    finalists' score when re-ranked) and test top-1; the search's own picks before re-ranking
    and what re-ranking changed on test; the differences; the goals."""
    val, final, test = (ctx.evaluators[k].cache for k in ("val", "final", "test"))

    def pick(c, reranked: bool):
        if c is None:
            return None
        out = {"id": c.arch.id, "flops": c.costs["flops"], "val_top1": c.top1, "test_top1": test.get(c.arch.id)}
        return {**out, "final_top1": final[c.arch.id]} if reranked else out

    out = []
    for r in rows:
        re = "evolution_finalists" in r  # set by _pool_rerank
        f = {"budget_flops": r["budget"], "pool_size": len(r["pool_archs"])}
        f.update({k: pick(r[k], re) for k in CONTENDERS})
        f["search_picks"] = {k: pick(r[f"{k}_search"], re) for k in CONTENDERS}
        f["rerank_gain"] = {
            k: None if r[k] is None or r[f"{k}_search"] is None else test[r[k].arch.id] - test[r[f"{k}_search"].arch.id] for k in CONTENDERS
        }
        best = max(r["pool_archs"], key=lambda a: (test[a.id], -ctx.space.flops(a))) if oracle else None
        f["pool_by_test"] = (
            None if best is None else {"id": best.id, "flops": ctx.space.flops(best), "val_top1": val[best.id], "test_top1": test[best.id]}
        )
        evo = f["evolution"]["test_top1"] if f["evolution"] else None
        for k in ("random", "pool", "pool_by_test"):
            f[f"evo_minus_{k}"] = None if evo is None or f[k] is None else evo - f[k]["test_top1"]
        # random search that found nothing under a budget loses there
        f["evo_ge_random"] = evo is not None and (f["random"] is None or f["evo_minus_random"] >= 0)
        f["evo_within_pool"] = evo is not None and f["evo_minus_pool"] is not None and f["evo_minus_pool"] >= -GOAL_GAP
        f["evo_within_pool_by_test"] = None if f["evo_minus_pool_by_test"] is None else f["evo_minus_pool_by_test"] >= -GOAL_GAP
        out.append(f)
    return out


def _score_scatter(ctx: _PoolContext, pools: list[list], images: int) -> dict:
    """How far the search's score tells archs of one cost apart: the SD of the pool archs'
    validation top-1 around a cubic fit in log FLOPs, against the binomial SE of a top-1 on
    ``images`` images (the root of the mean p(1-p)/n over those archs)."""
    import numpy as np

    val = ctx.evaluators["val"].cache
    archs = list({a.id: a for p in pools for a in p if a.id in val}.values())
    x = np.log([ctx.space.flops(a) for a in archs])
    y = np.array([val[a.id] for a in archs])
    resid = y - np.polyval(np.polyfit(x, y, 3), x)
    p = y / 100
    return {"archs": len(archs), "residual_sd": float(resid.std()), "binomial_se": float(100 * np.sqrt(np.mean(p * (1 - p)) / images))}


def _val_test_agreement(ctx: _PoolContext, pools: list[list]) -> dict | None:
    """How much of an arch's validation score says about its test top-1, over the pool archs
    scored on both (None unless every pool arch was): the correlation of the two scores, and
    of their residuals around each one's cubic fit in log FLOPs (what is left to tell archs
    of one cost apart)."""
    import numpy as np

    val, test = ctx.evaluators["val"].cache, ctx.evaluators["test"].cache
    archs = list({a.id: a for p in pools for a in p}.values())
    if not archs or any(a.id not in val or a.id not in test for a in archs):
        return None
    x = np.log([ctx.space.flops(a) for a in archs])
    v, t = np.array([val[a.id] for a in archs]), np.array([test[a.id] for a in archs])
    rv, rt = (y - np.polyval(np.polyfit(x, y, 3), x) for y in (v, t))
    return {
        "archs": len(archs),
        "corr": float(np.corrcoef(v, t)[0, 1]),
        "residual_corr": float(np.corrcoef(rv, rt)[0, 1]),
        "test_residual_sd": float(rt.std()),
    }


def _arch_records(ctx: _PoolContext, rows: list[dict]) -> list[list]:
    """Every arch this run scored (the pools, random search's and the evolution's within the
    loosest budget) as ``[key, FLOPs, validation top-1, finalists' top-1 or None, test top-1 or
    None]``: what later analyses need once the caches are gone."""
    val, final, test = (ctx.evaluators[k].cache for k in ("val", "final", "test"))
    archs = {a.id: a for r in rows for a in r["pool_archs"]}
    for r in rows:
        for name in ("evolution", "random"):
            archs.update({c.arch.id: c.arch for c in r[f"{name}_cands"]})
    return [[a.key, ctx.space.flops(a), val[i], final.get(i), test.get(i)] for i, a in archs.items() if i in val]


def _print_rerank_gain(spec: dict, figs: list[dict], images: int) -> None:
    """What re-ranking changed: each contender's test top-1 of its final pick minus its pick by
    the search's score alone, per budget, and the mean over all picks."""
    gains = {k: [f["rerank_gain"][k] for f in figs] for k in CONTENDERS}
    flat = [g for v in gains.values() for g in v if g is not None]
    changed = sum(1 for g in flat if g != 0)
    print(
        f"re-ranking (the {spec['rerank']} best by the search's score scored again on {images} validation images) changed "
        f"{changed} of {len(flat)} picks; test top-1 of the final pick minus the search's pick: "
        + "; ".join(f"{k} " + " ".join("-" if g is None else f"{g:+.2f}" for g in v) for k, v in gains.items())
        + (f"; mean {statistics.mean(flat):+.3f}" if flat else "")
    )


def _pool_report(args, spec: dict, ctx: _PoolContext, runner: _Pool, rows: list[dict], plan: dict, info: dict) -> None:
    figs = _pool_figures(ctx, rows, plan["done"])
    n = args.vs_random_pool

    def cell(p):
        return "none fits" if p is None else f"{p['test_top1']:.2f} / {p.get('final_top1', p['val_top1']):.2f} ({p['flops'] / 1e6:.1f}M)"

    def diff(v):
        return "-" if v is None else f"{v:+.2f}"

    reranked = any(f[k] and "final_top1" in f[k] for f in figs for k in CONTENDERS)
    seen = ctx.evaluators["final" if reranked else "val"].eval_images
    print(
        f"\ntest top-1 / validation top-1 on {seen} images (%) of each pick (its FLOPs); "
        f"test: all {len(ctx.evaluators['test'].splits.val)} test images"
    )
    print(
        table(
            [
                (
                    f"{f['budget_flops'] / 1e6:.2f}M",
                    cell(f["evolution"]),
                    cell(f["random"]),
                    cell(f["pool"]),
                    cell(f["pool_by_test"]) if plan["done"] else "not scored",
                    diff(f["evo_minus_random"]),
                    diff(f["evo_minus_pool"]),
                    "pass" if f["evo_ge_random"] else "FAIL",
                    "pass" if f["evo_within_pool"] else "FAIL",
                )
                for f in figs
            ],
            [
                "FLOPs budget",
                "evolution",
                "random search",
                f"best of {n} (val)",
                f"best of {n} (test)",
                "evo-random",
                "evo-pool",
                "evo>=random",
                f"evo>=pool-{GOAL_GAP}",
            ],
        )
    )
    wins, near = sum(f["evo_ge_random"] for f in figs), sum(f["evo_within_pool"] for f in figs)
    print(f"evolution >= random search on test top-1 at {wins}/{len(figs)} budgets (goal 5/5): {'pass' if wins == len(figs) else 'FAIL'}")
    print(
        f"evolution within {GOAL_GAP} points of the best of {n} random archs (picked by validation) at {near}/{len(figs)} "
        f"(goal 5/5): {'pass' if near == len(figs) else 'FAIL'}"
    )
    oracle = sum(bool(f["evo_within_pool_by_test"]) for f in figs)
    if plan["done"]:
        print(f"(evolution within {GOAL_GAP} points of the best of {n} picked by test top-1, an oracle: at {oracle}/{len(figs)})")
    if reranked:
        _print_rerank_gain(spec, figs, seen)
    scatter = _score_scatter(ctx, [r["pool_archs"] for r in rows], spec["eval_images"])
    print(
        f"validation top-1 of the {scatter['archs']} pool archs scatters {scatter['residual_sd']:.2f} points (SD) around a cubic "
        f"fit in log FLOPs; the binomial SE of a {spec['eval_images']}-image top-1 alone: {scatter['binomial_se']:.2f} points"
    )
    agree = _val_test_agreement(ctx, [r["pool_archs"] for r in rows])
    if agree:
        print(
            f"over the {agree['archs']} pool archs, validation and test top-1 correlate {agree['corr']:.2f}; their residuals "
            f"around a cubic fit in log FLOPs {agree['residual_corr']:.2f} (test residual SD {agree['test_residual_sd']:.2f} points)"
        )
    timing = {k: runner.mean(k) for k in KINDS}
    seconds = time.perf_counter() - info["t0"]
    print(
        f"{info['evaluations']} evaluations per search; per evaluated arch: validation {timing['val']['wall_s'] or 0:.2f} s wall, "
        f"{timing['val']['cpu_s'] or 0:.2f} s CPU ({timing['val']['archs']} archs), test {timing['test']['wall_s'] or 0:.2f} s wall, "
        f"{timing['test']['cpu_s'] or 0:.2f} s CPU ({timing['test']['archs']} archs); this run {seconds:.0f} s"
    )
    write_result(
        "bench_search_vs_random",
        {
            "run": args.run,
            "metric": "flops",
            "budgets": [f["budget_flops"] for f in figs],
            "settings": {k: v for k, v in spec.items() if k not in ("cache_dir", "run", "threads")},
            "pool": {"size": n, "drawn": info["drawn"], "distinct_with_random": info["distinct"], "seed": POOL_SEED + args.seed},
            "evaluations_per_search": info["evaluations"],
            "goal_gap": GOAL_GAP,
            "rows": figs,
            "evo_ge_random": wins,
            "evo_within_pool": near,
            "evo_within_pool_by_test": oracle if plan["done"] else None,
            "score_scatter": scatter,
            "val_test": agree,
            "pool_test": plan,
            "archs": _arch_records(ctx, rows),
            "timing": timing,
            "threads": args.threads,
            "workers": args.workers,
            "seconds": round(seconds, 1),
        },
        variant=_pool_variant(args, spec),
    )


_SEED_FILE = re.compile(r"\d{4}-\d\d-\d\d(-rerank0)?(?:-seed(\d+))?")


def _seed_results(rerank0: bool) -> dict[int, dict]:
    """This CPU's newest ``--vs-random-pool`` result per seed with the claim's settings
    (re-ranked picks, or ``--rerank 0`` ones): {seed: record}."""
    newest: dict[int, Path] = {}
    for path in sorted(result_path("bench_search_vs_random").parent.glob("*.json")):
        m = _SEED_FILE.fullmatch(path.stem)
        if m and bool(m[1]) == rerank0:
            newest[int(m[2] or 0)] = path  # sorted by date: the last one wins
    return {seed: json.loads(path.read_text()) for seed, path in sorted(newest.items())}


def _print_pooled(args, records: dict, per_budget: list[dict], overall: dict, seeds: dict) -> None:
    n = len(records)
    print(f"{n} seeds ({', '.join(map(str, records))}), picks {'by the 2,000-image score' if args.rerank == 0 else 're-ranked'}")
    print(
        table(
            [
                (
                    f"{x['budget_flops'] / 1e6:.2f}M",
                    f"{x['evo_minus_random']['mean']:+.2f} +- {x['evo_minus_random']['se']:.2f}",
                    f"{x['evo_minus_random']['wins']}/{x['evo_minus_random']['losses']}",
                    f"{x['evo_minus_pool']['mean']:+.2f} +- {x['evo_minus_pool']['se']:.2f}",
                    f"{x['evo_within_pool']}/{n}",
                )
                for x in per_budget
            ],
            ["FLOPs budget", "evo-random (mean +- SE)", "wins/losses", "evo-pool (mean +- SE)", f"within {GOAL_GAP} of pool"],
        )
    )
    for k, v in overall.items():
        print(
            f"all {v['n']} budget-seed pairs, evolution - {k}: {v['mean']:+.2f} +- {v['se']:.2f}, {v['wins']} up / {v['losses']} down, sign test p = {v['sign_p']:.2f}"
        )
    for s, v in seeds.items():
        print(f"seed {s}: evolution >= random at {v['evo_ge_random']}/5, within {GOAL_GAP} of the pool at {v['evo_within_pool']}/5")


def pooled(args) -> None:
    """``--pooled``: the ``--vs-random-pool`` results of every seed run on this CPU, pooled:
    per budget and over all budget-seed pairs, evolution's test top-1 minus random search's
    and minus the pool's pick's (mean, SE, wins and losses, sign test), and per seed the
    budgets where each goal holds."""
    from _stats import paired

    records = _seed_results(args.rerank == 0)
    if len(records) < 2:
        raise SystemExit(f"--pooled: {len(records)} seed(s) of --vs-random-pool on this CPU; run at least 2 (--seed N)")
    budgets = next(iter(records.values()))["budgets"]
    if any(r["budgets"] != budgets or r["pool"]["size"] != POOL_CLAIM for r in records.values()):
        raise SystemExit("--pooled: the seeds' budgets or pool sizes differ")

    def test(row, who):
        return row[who]["test_top1"] if row[who] else float("nan")

    per_budget, pairs = [], {"random": ([], []), "pool": ([], [])}
    for i, b in enumerate(budgets):
        rows = [r["rows"][i] for r in records.values()]
        cmp = {}
        for other in ("random", "pool"):
            evo, oth = [test(x, "evolution") for x in rows], [test(x, other) for x in rows]
            cmp[other] = paired(evo, oth)
            pairs[other][0].extend(evo)
            pairs[other][1].extend(oth)
        within = sum(x["evo_within_pool"] for x in rows)
        per_budget.append({"budget_flops": b, "evo_minus_random": cmp["random"], "evo_minus_pool": cmp["pool"], "evo_within_pool": within})
    overall = {k: paired(*v) for k, v in pairs.items()}
    seeds = {s: {"evo_ge_random": r["evo_ge_random"], "evo_within_pool": r["evo_within_pool"]} for s, r in records.items()}
    _print_pooled(args, records, per_budget, overall, seeds)
    fig = {"run": SHIPPED, "rerank": args.rerank, "seeds": seeds, "budgets": budgets, "per_budget": per_budget, "overall": overall}
    write_result("bench_search_vs_random", fig, variant=("rerank0-" if args.rerank == 0 else "") + "pooled")


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default=None, help=f"run folder or name with supernet.pt (--eval-speed, --vs-random-pool: default {SHIPPED})")
    ap.add_argument("--metric", choices=["latency", "flops"], default=None, help="default: latency (--vs-random-pool: flops, the only one)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--population", type=int, default=None, help="default 10 (--vs-random-pool: nastools search's, 16)")
    ap.add_argument("--generations", type=int, default=None, help="default 5 (--vs-random-pool: nastools search's, 6)")
    ap.add_argument("--calib-images", type=int, default=None, help="default 500 (--vs-random-pool: nastools search's, 1000)")
    ap.add_argument("--eval-images", type=int, default=None, help="default 1000 (--vs-random-pool: nastools search's, 2000)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (per worker with --workers)")
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
    pool = ap.add_argument_group("--vs-random-pool: evolution and random search against the best of N random archs, on test")
    pool.add_argument("--vs-random-pool", type=int, default=0, metavar="N", help=f"random archs per FLOPs budget (the goal: {POOL_CLAIM})")
    pool.add_argument("--seed", type=int, default=0, help="of the search, the random search and the pool")
    pool.add_argument("--rerank", type=int, default=None, help="finalists per budget scored again (default: nastools search's; 0: none)")
    pool.add_argument("--workers", type=int, default=1, help="processes scoring archs (the evolution runs in one of them)")
    pool.add_argument(
        "--test-calib-images", type=int, default=2000, help="BN recalibration images before the test set (as bench_pretrained)"
    )
    pool.add_argument(
        "--pool-test",
        choices=["auto", "all", "none"],
        default="auto",
        help="score every pool arch on the test set too (the best of the pool by test top-1); auto: when that "
        "takes at most --pool-test-max-s by the time measured per test evaluation",
    )
    pool.add_argument("--pool-test-max-s", type=float, default=1800.0)
    pool.add_argument("--cache-dir", default=None, help="accuracy caches (default runs/bench_search_vs_random/<run>); resumes from them")
    pool.add_argument("--fresh", action="store_true", help="delete the caches in --cache-dir first")
    pool.add_argument(
        "--pooled", action="store_true", help="pool this CPU's --vs-random-pool results over their seeds (with --rerank 0: those)"
    )
    pool.add_argument("--results-dir", default=None, help="write the result under this folder instead of benchmarks/results (smoke runs)")
    args = ap.parse_args()
    if args.results_dir:
        import _common

        _common.RESULTS = Path(args.results_dir)
    if args.pooled:
        return args
    if args.vs_random_pool:
        args.run = args.run or SHIPPED
        if args.metric == "latency":
            ap.error("--vs-random-pool budgets are in FLOPs (machine-independent): drop --metric latency")
        if args.workers < 1 or args.vs_random_pool < 1:
            ap.error("--vs-random-pool and --workers: at least 1")
        return args
    if args.run is None and not args.eval_speed:
        ap.error("--run is required (the supernet of the search benchmark)")
    args.run = args.run or SHIPPED
    defaults = {"metric": "latency", "population": 10, "generations": 5, "calib_images": 500, "eval_images": 1000}
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    return args


def main() -> None:
    args = _args()
    torch.set_num_threads(args.threads)
    if args.pooled:
        return pooled(args)
    if args.vs_random_pool:
        return vs_random(args)
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
        from nastools.search.latency_cost import LatencyCost, drift_message, resolve_table

        cost = LatencyCost(resolve_table(space, "cpu", {}), "cpu")
        measure = cost.measurer()  # picks timed with the table's reference subnets, as nastools search times them
        primary = "latency:cpu"
        print(f"latency table: {cost.table.path}")
        if measure is not None and not args.no_drift:  # what `nastools search` does with a table made here
            drift = cost.settle_drift()
            if drift is not None:
                print(drift_message("cpu", cost.factor) + f" (ratios {drift['ratios']})")
        costs["latency:cpu"] = cost.predict
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
