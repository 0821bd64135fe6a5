"""Supernet training benchmarks (issue 4).

(a) cost:    one attentive-best (K=3) step vs one uniform sandwich step on the same batch
             (target ratio <= 1.15). The candidates are scored on a slice of the batch in
             inference mode. Each pair trains the SAME archs (the attentive pick is replayed as
             the uniform step's middles), so the ratio is the price of attentive sampling itself
             and not luck in which archs were drawn; the natural uniform step is shown too.
(b) quality: uniform vs attentive-best vs attentive-worst supernets, same seed and the SAME
             number of steps on Fashion-MNIST; then the best validation top-1 (after BN
             recalibration) in each of 5 FLOPs bins, over the same archs for every supernet.
             With ``--runs A,B,C``: the same comparison of supernets already trained by
             ``nastools train`` (same config but the sampler, or the field ``--by`` names,
             e.g. ``--by precision``; same step count; refused otherwise) on all 10,000 test images: the min, the max and ``--archs`` random
             archs spread over 5 FLOPs bins, each BN-recalibrated on training images as search
             does; per bin the best and the mean; paired differences over the same archs (mean,
             standard error, exact sign test), also per group of archs by their residual
             paths at stride-2 stages (``nastools.space.residual.residual_kind``); and what ``nastools
             search`` picks under 3 budgets (this CPU's latency table, else FLOPs),
             test-evaluated. Resumable: the accuracies and the searches are cached under
             ``--workdir``. With ``--pooled A.json,B.json``: results of ``--runs`` over the
             same archs (other seeds) pooled, per arch and per group; nothing is scored.
(c) ddp:     training images/s of 2 processes (torchrun, gloo) vs 1 on the same budget.
(d) throughput: images/s of ``nastools train``'s step (data and augmentation included) at its
             defaults, at the demo's batch, in bf16 mixed precision and at other settings,
             timed round-robin, as a
             ratio to the defaults; and where the default step's time goes (phases and ops).

Run on one core for (b): ``taskset -c 0 python benchmarks/bench_train.py quality``, or for
trained runs ``... quality --runs runs/q-uniform,runs/q-attentive-best,runs/q-attentive-worst
--archs 50``; the timing parts under the core-1 lock: ``flock /tmp/nastools-core1.lock
taskset -c 1 ...``.
"""

from __future__ import annotations

import argparse
import hashlib
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
from _quality import family_paired, pool_results, sign_summary  # noqa: E402
from _stats import paired  # noqa: E402

from nastools.data import load_splits  # noqa: E402
from nastools.space import load_space  # noqa: E402
from nastools.space.residual import residual_kind  # noqa: E402
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


# --------------------------------------------------------------------------- (b) quality of trained runs


def flops_bin(flops: float, lo: float, hi: float, bins: int) -> int:
    """Which of ``bins`` equal-width bins of [lo, hi] ``flops`` falls in (the top edge in the last)."""
    return min(bins - 1, max(0, int((flops - lo) / (hi - lo) * bins)))


def draw_archs(space, n: int, bins: int = 5, seed: int = 0) -> list[tuple[str, object]]:
    """(kind, arch): the min and max archs and ``n`` random ones spread evenly over ``bins``
    equal-width FLOPs bins (``n // bins`` each, the first ``n % bins`` bins one more), drawn
    near a uniform FLOPs target in the bin as AttentiveNAS samples. Uniform sampling alone puts
    none in the top bin of fmnist (0 of 2,000 archs). Seeded: every supernet gets the same."""
    rng = random.Random(seed)
    lo, hi = space.flops(space.min_arch()), space.flops(space.max_arch())
    out = {a.id: (kind, a) for kind, a in (("min", space.min_arch()), ("max", space.max_arch()))}
    for b in range(bins):
        want, tries = n // bins + (b < n % bins), 0
        got = 0
        while got < want and tries < 50 * want:
            tries += 1
            a = space.sample_near_flops(lo + (hi - lo) * (b + rng.random()) / bins, rng, tolerance=0.05)
            if a.id not in out and flops_bin(space.flops(a), lo, hi, bins) == b:
                out[a.id] = ("random", a)
                got += 1
    return sorted(out.values(), key=lambda ka: space.flops(ka[1]))


def check_comparable(runs: dict, allow_unequal_steps: bool = False, by: str = "sampler") -> None:
    """Raise SystemExit (one line) unless ``runs`` (value of the config field ``by`` -> {"path",
    "config" without ``by``, "space", "step"}) differ in ``by`` alone and stopped at the same step."""
    if len(runs) < 2:
        raise SystemExit(f"quality --runs: give at least 2 runs, comma-separated, trained with different {by} values")
    (s0, a), *rest = runs.items()
    for s, b in rest:
        diff = sorted(k for k in {*a["config"], *b["config"]} if a["config"].get(k) != b["config"].get(k))
        what = [f"{k} ({a['config'].get(k)!r} vs {b['config'].get(k)!r})" for k in diff]
        if a["space"] != b["space"]:
            what.insert(0, f"space ({a['space']} vs {b['space']})")
        if what:
            raise SystemExit(f"quality: runs {a['path']} and {b['path']} differ in more than the {by}: {'; '.join(what)}")
        if a["step"] != b["step"] and not allow_unequal_steps:
            raise SystemExit(
                f"quality: run {a['path']} ({s0}) stopped at step {a['step']}, {b['path']} ({s}) at step {b['step']}: "
                "compare runs of the same budget (--allow-unequal-steps only to test this script)"
            )


def load_runs(paths: list[str], allow_unequal_steps: bool = False, by: str = "sampler") -> dict[str, dict]:
    """The value of the config field ``by`` (the sampler, the precision, ...) -> the run: its
    path, checkpoint file and mtime, checkpoint data (weights moved into ``net``), config
    without ``by``, space fingerprint and step; checked by :func:`check_comparable`."""
    from nastools.checkpoint import checkpoint_space, find_checkpoint, load_checkpoint, run_config
    from nastools.errors import NastoolsError
    from nastools.supernet import Supernet

    runs: dict[str, dict] = {}
    for path in paths:
        ckpt = find_checkpoint(path)
        if not ckpt.is_file():
            raise SystemExit(f"quality: no checkpoint at {ckpt}")
        mtime = ckpt.stat().st_mtime_ns  # before reading: a checkpoint rewritten meanwhile gets a new cache key next time
        try:
            data = load_checkpoint(ckpt)
        except NastoolsError as exc:
            raise SystemExit(f"quality: {exc}") from None
        cfg = dict(run_config(data))
        if by not in cfg:
            raise SystemExit(f"quality --by {by}: run {path} has no config field {by!r}")
        sampler = str(cfg.pop(by))
        if sampler in runs:
            raise SystemExit(f"quality: runs {runs[sampler]['path']} and {path} were both trained with {by} {sampler!r}")
        net = Supernet(checkpoint_space(data))
        net.load_state_dict(data.pop("model"))
        state = data.get("train") or data.get("trained") or {}
        runs[sampler] = {
            "path": path,
            "ckpt": ckpt.resolve(),
            "mtime_ns": mtime,
            "data": data,
            "net": net.eval(),
            "config": cfg,
            "space": net.space.fingerprint,
            "step": state.get("step"),
        }
    check_comparable(runs, allow_unequal_steps, by)
    return runs


def search_budgets(space, spec: str | None):
    """(budgets, cost of an arch in the budgets' unit, latency table path or None): the
    values of ``spec`` (comma-separated: times such as ``0.3ms,0.5ms,0.7ms`` are latency
    budgets, counts such as ``10M,20M,30M`` FLOPs budgets), else 3 latency budgets on the
    table ``nastools search --latency`` finds for this CPU (else 3 FLOPs budgets) at 25/50/75%
    of the way from the min to the max subnet's cost, to 2 significant digits."""
    from nastools.errors import NastoolsError
    from nastools.search import Budget, parse_latency, resolve_table
    from nastools.space.units import parse_count

    values = [v.strip() for v in spec.split(",")] if spec else []
    try:
        limits = [parse_latency(v) for v in values]
    except NastoolsError:
        limits = [parse_count(v) for v in values]
        return [Budget("flops", v) for v in limits], space.flops, None
    try:
        tab = resolve_table(space, "cpu", {})
    except NastoolsError as exc:
        if values:
            raise SystemExit(f"quality: latency budgets {spec}: {exc}") from None
        print(f"no latency table of this CPU ({exc}): FLOPs budgets instead", flush=True)
        lo, hi = space.flops(space.min_arch()), space.flops(space.max_arch())
        return [Budget("flops", float(f"{lo + q * (hi - lo):.2g}")) for q in (0.25, 0.5, 0.75)], space.flops, None
    from nastools.machine import machine_info

    here, made = machine_info().get("cpu_id"), tab.meta.get("cpu_id")
    if made != here:
        print(
            f"note: latency table {tab.path.name} was made on {made}, this CPU is {here}: its costs, the same for every supernet",
            flush=True,
        )
    if not values:
        lo, hi = tab.predict(space.min_arch()), tab.predict(space.max_arch())
        limits = [float(f"{lo + q * (hi - lo):.2g}") for q in (0.25, 0.5, 0.75)]
    return [Budget("latency", v, "cpu") for v in limits], tab.predict, str(tab.path)


def search_picks(sampler: str, run: dict, budgets, evaluate, args, work: Path) -> list[dict]:
    """What ``nastools search`` (its defaults but ``--population``, ``--generations``,
    ``--seed``) picks on ``run``'s supernet under each budget, with the pick's test top-1 by
    ``evaluate``. Picks go by the table's prediction, not measured here, so every supernet is
    searched under the same costs. Resumable: the search keeps its state in ``work``."""
    from tqdm import tqdm

    from nastools.search.runner import SearchOptions, run_search

    opts = SearchOptions(
        population=args.population,
        generations=args.generations,
        seed=args.seed,
        calib_images=args.search_calib_images,
        eval_images=args.search_eval_images,
        measure=False,
    )
    key = repr((str(run["ckpt"]), run["mtime_ns"], [str(b) for b in budgets], opts))
    out = work / f"search-{sampler}-{hashlib.sha1(key.encode()).hexdigest()[:10]}"
    report = run_search(run["path"], budgets, options=opts, out_dir=out, log=lambda m: tqdm.write(f"  {sampler}: {m}"))
    picks = []
    for b, p in zip(budgets, report.picks):
        c = p.candidate
        picks.append(
            {
                "budget": b.limit,
                "id": c.arch.id if c else None,
                "flops": c.costs["flops"] if c else None,
                "latency_ms": c.costs.get("latency:cpu") if c else None,
                "val_top1": c.top1 if c else None,
                "test_top1": evaluate(c.arch) if c else None,
                "arch": c.arch.to_dict() if c else None,
            }
        )
    return picks


def comparisons(samplers) -> list[tuple[str, str]]:
    """The paired comparisons: each sampler against uniform, and best against worst."""
    out = [(s, "uniform") for s in samplers if s != "uniform" and "uniform" in samplers]
    if {"attentive-best", "attentive-worst"} <= set(samplers):
        out.append(("attentive-best", "attentive-worst"))
    return out or [(a, b) for i, a in enumerate(samplers) for b in list(samplers)[i + 1 :]]


def quality_summary(space, archs, top1: dict[str, list[float]], bins: int) -> dict:
    """Per FLOPs bin the archs, best and mean test top-1 per sampler and mean paired
    differences; over all archs the paired statistics (:func:`_stats.paired`)."""
    lo, hi = space.flops(space.min_arch()), space.flops(space.max_arch())
    where = [flops_bin(space.flops(a), lo, hi, bins) for _, a in archs]
    pairs = comparisons(list(top1))
    out_bins = []
    for b in range(bins):
        idx = [i for i, w in enumerate(where) if w == b]
        acc = {s: [v[i] for i in idx] for s, v in top1.items()}
        out_bins.append(
            {
                "flops": [lo + (hi - lo) * b / bins, lo + (hi - lo) * (b + 1) / bins],
                "archs": len(idx),
                "best": {s: max(v, default=None) for s, v in acc.items()},
                "mean": {s: statistics.fmean(v) if v else None for s, v in acc.items()},
                "paired_mean": {f"{x} - {y}": paired(acc[x], acc[y])["mean"] if idx else None for x, y in pairs},
            }
        )
    families = [residual_kind(space, a) for _, a in archs]
    return {
        "bins": out_bins,
        "paired": {f"{x} - {y}": paired(top1[x], top1[y]) for x, y in pairs},
        "shortcuts": family_paired(families, top1, pairs),
    }


def _f(v, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)


def print_quality(summary: dict, picks: dict[str, list[dict]], metric: str) -> None:
    samplers = list(picks)
    rows = [
        (
            f"{b['flops'][0] / 1e6:.1f}-{b['flops'][1] / 1e6:.1f}M",
            b["archs"],
            *(f"{_f(b['best'][s])} / {_f(b['mean'][s])}" for s in samplers),
        )
        for b in summary["bins"]
    ]
    print(table(rows, ["FLOPs bin", "archs", *(f"{s} best / mean" for s in samplers)]))
    rows = [
        (k, p["n"], f"{p['mean']:+.3f}", _f(p["se"], ".3f"), f"{p['wins']} / {p['losses']} / {p['ties']}", f"{p['sign_p']:.3g}")
        for k, p in summary["paired"].items()
    ]
    print(table(rows, ["paired difference (points)", "archs", "mean", "SE", "wins / losses / ties", "sign test p"]))
    comps = list(summary["paired"])
    rows = [(fam, f["archs"], *(sign_summary(f["paired"][k]) for k in comps)) for fam, f in summary["shortcuts"].items()]
    print(table(rows, ["residual paths at stride 2", "archs", *comps]))
    unit = (lambda v: f"{v:.3g} ms") if metric == "latency" else (lambda v: f"{v / 1e6:.3g}M FLOPs")
    rows = []
    for i, p0 in enumerate(picks[samplers[0]]):
        cells = [picks[s][i] for s in samplers]
        rows.append((unit(p0["budget"]), *(f"{_f(c['test_top1'])} ({_f(c['flops'] and c['flops'] / 1e6, '.1f')}M)" for c in cells)))
    print(table(rows, ["search budget", *(f"{s} test top-1 (FLOPs)" for s in samplers)]))


def _evaluate_all(runs: dict, evals: dict, archs) -> dict[str, list[float]]:
    """Test top-1 of every arch on every supernet (cached ones at once), with a progress bar."""
    from tqdm import tqdm

    top1: dict[str, list[float]] = {s: [] for s in runs}
    with tqdm(total=len(archs) * len(runs), desc="test top-1", unit="subnet", dynamic_ncols=True) as bar:
        for kind, a in archs:
            for s in runs:
                top1[s].append(evals[s](a))
                bar.update()
            bar.set_postfix_str(f"{kind} {a.id}: " + " ".join(f"{v[-1]:.2f}" for v in top1.values()))
    return top1


def bench_quality_runs(args) -> dict:
    """(b) on trained runs: see the module docstring."""
    from nastools.checkpoint import run_splits
    from nastools.search.evaluator import SubnetEvaluator

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    runs = load_runs([p.strip() for p in args.runs.split(",")], args.allow_unequal_steps, args.by)
    first = next(iter(runs.values()))
    space = first["net"].space
    splits = run_splits(first["data"])  # the same for all: the same config
    test = type(splits)(**{**splits.__dict__, "val": splits.test})  # score on the test set, as bench_pretrained
    n_test = min(args.test_images or len(splits.test), len(splits.test))
    total = max(1, round(first["config"]["epochs"] * (len(splits.train) // first["config"]["batch_size"])))
    if any(r["step"] != total for r in runs.values()):
        print(f"note: runs stopped at step {', '.join(str(r['step']) for r in runs.values())} of {total}: unfinished", flush=True)
    work = Path(args.workdir) / "quality-runs"
    work.mkdir(parents=True, exist_ok=True)
    evals = {
        s: SubnetEvaluator(
            r["net"],
            test,
            calib_images=args.calib_images,
            eval_images=n_test,
            seed=args.seed,
            cache_path=work / f"test-{s}.json",
            tag=f"{r['ckpt']}:{r['mtime_ns']}:{splits.name}:test={len(splits.test)}",
        )
        for s, r in runs.items()
    }
    archs = draw_archs(space, args.archs, args.bins, args.seed)
    budgets, cost, table_path = search_budgets(space, args.budgets)
    print(f"{len(archs)} archs x {len(runs)} supernets on {n_test} test images; search budgets: {', '.join(map(str, budgets))}", flush=True)
    top1 = _evaluate_all(runs, evals, archs)
    picks = {s: search_picks(s, r, budgets, evals[s], args, work) for s, r in runs.items()}
    summary = quality_summary(space, archs, top1, args.bins)
    print_quality(summary, picks, budgets[0].metric)
    return {
        "mode": "runs",
        "by": args.by,
        "runs": {
            s: {
                "path": r["path"],
                "step": r["step"],
                "total_steps": total,
                "history": (r["data"].get("train") or r["data"].get("trained") or {}).get("history"),
            }
            for s, r in runs.items()
        },
        "config": first["config"],
        "eval": {
            "test_images": n_test,
            "calib_images": args.calib_images,
            "seed": args.seed,
            "random_archs": args.archs,
            "bins": args.bins,
            "unequal_steps_allowed": args.allow_unequal_steps,
        },
        "archs": [
            {
                "kind": k,
                "id": a.id,
                "flops": space.flops(a),
                "latency_ms": cost(a) if table_path else None,
                "top1": {s: top1[s][i] for s in runs},
            }
            for i, (k, a) in enumerate(archs)
        ],
        **summary,
        "search": {
            "budgets": [str(b) for b in budgets],
            "cost": budgets[0].cost_name,
            "latency_table": table_path,
            "population": args.population,
            "generations": args.generations,
            "calib_images": args.search_calib_images,
            "val_images": args.search_eval_images,
            "picks": picks,
        },
        "seconds": round(time.perf_counter() - t0, 1),
    }


def bench_quality_pooled(paths: list[str]) -> dict:
    """Several ``quality --runs`` results (supernets trained with other seeds, or on other
    machines) over the same archs, pooled: :func:`_quality.pool_results`, printed."""
    results = []
    for path in paths:
        try:
            r = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise SystemExit(f"quality --pooled: {path}: {exc}") from None
        if r.get("mode") != "runs":
            raise SystemExit(f"quality --pooled: {path} is not a result of quality --runs")
        results.append(r)
    first = results[0]
    for r in results[1:]:
        if r.get("by", "sampler") != first.get("by", "sampler") or list(r["runs"]) != list(first["runs"]):
            raise SystemExit("quality --pooled: the results compare different runs (--by or its values differ)")
        same = ("random_archs", "bins", "seed", "test_images", "calib_images")
        if any(r["eval"].get(k) != first["eval"].get(k) for k in same):
            raise SystemExit(f"quality --pooled: the results were scored differently ({', '.join(same)} must match)")
    space = load_space(first["config"]["space"])
    ev = first["eval"]
    family = {a.id: residual_kind(space, a) for _, a in draw_archs(space, ev["random_archs"], ev["bins"], ev["seed"])}
    if any(a["id"] not in family for a in first["archs"]):
        raise SystemExit(f"quality --pooled: the archs are not those of space {first['config']['space']!r} drawn with seed {ev['seed']}")
    pairs = [tuple(k.split(" - ")) for k in first["paired"]]
    out = pool_results(results, family.__getitem__, pairs)
    for key, c in out["comparisons"].items():
        print(f"\n{key} (points; mean +- SE over archs, wins / losses, sign test p); per-arch agreement r = {c['agreement_r']:.2f}")
        rows = [("all", out["archs"], *(sign_summary(p) for p in c["each"]), sign_summary(c["pooled"]))]
        rows += [(fam, f["archs"], *(sign_summary(p) for p in f["each"]), sign_summary(f["pooled"])) for fam, f in c["families"].items()]
        names = [f"seed {r['config']['seed']} ({r['machine'].get('cpu_id', '?')})" for r in results]
        print(table(rows, ["residual paths at stride 2", "archs", *names, "averaged over the results"]))
    return {
        "mode": "pooled",
        "by": first.get("by", "sampler"),
        "inputs": [
            {"path": p, "machine": r["machine"], "seed": r["config"]["seed"], "runs": {k: v["path"] for k, v in r["runs"].items()}}
            for p, r in zip(paths, results)
        ],
        "config": {k: v for k, v in first["config"].items() if k != "seed"},
        "eval": ev,
        "families": {i: family[i] for i in (a["id"] for a in first["archs"])},
        **out,
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


# --------------------------------------------------------------------------- (d) throughput

#: training settings compared with ``nastools train``'s defaults (batch 128, channels-last,
#: attentive-best with K=3 candidates scored on 16 images, fp32)
THROUGHPUT_VARIANTS = {
    "default": {},
    "demo": {"batch_size": 32},  # nastools demo --train
    "bf16": {"precision": "bf16"},  # mixed precision (nastools.train.precision)
    "demo-bf16": {"batch_size": 32, "precision": "bf16"},
    "nchw": {"channels_last": False},  # channels-last's share (the trainer's default in every version)
    "batch-64": {"batch_size": 64},
    "batch-256": {"batch_size": 256},
    "uniform": {"sampler": "uniform"},  # no candidate scoring
}


def _op_kind(event) -> str | None:
    """The category of a profiled aten op for the breakdown (None: other)."""
    name = event.name
    if name == "aten::convolution_backward":
        w = event.input_shapes[2] if len(event.input_shapes) > 2 else []
        return f"conv backward {w[-1]}x{w[-1]} {'depthwise' if w[1] == 1 else 'dense'}" if len(w) == 4 else "conv backward"
    if name in ("aten::mkldnn_convolution", "aten::_convolution", "aten::convolution"):
        return "conv forward" if name == "aten::mkldnn_convolution" else None
    if name == "aten::copy_":
        return "copies and dtype casts"
    if "batch_norm" in name:
        return "batchnorm backward" if "backward" in name else "batchnorm forward"
    if name in (
        "aten::silu",
        "aten::silu_backward",
        "aten::relu",
        "aten::threshold_backward",
        "aten::hardswish",
        "aten::hardswish_backward",
    ):
        return "activations"
    return None


def _profile_step(t: Trainer, batches, steps: int) -> dict:
    """Where a training step's time goes: the phases ``Trainer.train_step`` names (max,
    candidate scoring and sampling, middles, min, optimizer) and the aten ops by kind, in ms
    per step, profiled over ``steps`` steps."""
    from collections import defaultdict

    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        t0 = time.perf_counter()
        for _ in range(steps):
            t.train_step(*next(batches))
        wall = time.perf_counter() - t0
    phases, ops = defaultdict(float), defaultdict(float)
    for e in prof.events():
        if e.name.startswith("step."):
            phases[e.name[5:]] += e.cpu_time_total / 1e3 / steps
        elif (kind := _op_kind(e)) is not None:
            ops[kind] += e.self_cpu_time_total / 1e3 / steps
    return {"steps": steps, "step_ms": 1e3 * wall / steps, "phases_ms": dict(phases), "ops_ms": dict(sorted(ops.items()))}


def bench_throughput(args) -> dict:
    """Images/s of the training step (data and augmentation included) for each of
    :data:`THROUGHPUT_VARIANTS`, timed round-robin on the same machine state; the ratio of
    each to the default; and the default step's breakdown (:func:`_profile_step`)."""
    torch.set_num_threads(args.threads)
    splits = load_splits("fashion-mnist")
    trainers, feeds = {}, {}
    for name, kw in THROUGHPUT_VARIANTS.items():
        t = Trainer(TrainConfig(**kw), Path(args.workdir) / f"throughput-{name}", splits=splits)
        trainers[name], feeds[name] = t, t.batches(0, 0)
        for _ in range(2):  # warm-up: oneDNN primitives of the max and min subnets
            t.train_step(*next(feeds[name]))
    times = {name: {"data": [], "step": []} for name in trainers}
    for _ in range(args.tp_steps):
        for name, t in trainers.items():
            t0 = time.perf_counter()
            x, y = next(feeds[name])
            t1 = time.perf_counter()
            t.train_step(x, y)
            times[name]["data"].append(t1 - t0)
            times[name]["step"].append(time.perf_counter() - t1)
    med = statistics.median
    out = {"threads": args.threads, "steps": args.tp_steps, "variants": {}}
    for name, t in trainers.items():
        d, s = med(times[name]["data"]), med(times[name]["step"])
        out["variants"][name] = {
            "settings": THROUGHPUT_VARIANTS[name],
            "batch_size": t.config.batch_size,
            "precision": t.config.precision,
            "data_ms": 1e3 * d,
            "step_ms": 1e3 * s,
            "images_per_s": t.config.batch_size / (d + s),
        }
    base = out["variants"]["default"]["images_per_s"]
    for v in out["variants"].values():
        v["ratio_to_default"] = v["images_per_s"] / base
    ips = {k: v["images_per_s"] for k, v in out["variants"].items()}
    out["bf16_vs_fp32"] = {"default": ips["bf16"] / ips["default"], "demo": ips["demo-bf16"] / ips["demo"]}
    out["channels_last_vs_nchw"] = ips["default"] / ips["nchw"]
    out["breakdown"] = _profile_step(trainers["default"], feeds["default"], args.profile_steps)
    _print_throughput(out)
    return out


def _print_throughput(out: dict) -> None:
    rows = [
        (
            k,
            v["batch_size"],
            v["precision"],
            f"{v['data_ms']:.0f}",
            f"{v['step_ms']:.0f}",
            f"{v['images_per_s']:.1f}",
            f"{v['ratio_to_default']:.2f}",
        )
        for k, v in out["variants"].items()
    ]
    print(table(rows, ["variant", "batch", "precision", "data ms", "step ms", "images/s", "x default"]))
    sp = out["bf16_vs_fp32"]
    print(f"bf16 mixed precision vs fp32: defaults {sp['default']:.2f}x, demo {sp['demo']:.2f}x")
    print(f"channels-last vs NCHW (batch 128): {out['channels_last_vs_nchw']:.2f}x")
    b = out["breakdown"]
    print(f"default step, profiled over {b['steps']} steps: {b['step_ms']:.0f} ms")
    print(
        table(
            [(k, f"{v:.0f}", f"{100 * v / b['step_ms']:.0f}%") for k, v in {**b["phases_ms"], **b["ops_ms"]}.items()],
            ["phase / op kind", "ms", "share"],
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("part", choices=["cost", "quality", "ddp", "throughput"])
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--score-images", type=int, default=16)
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--per-bin", type=int, default=6)
    ap.add_argument("--val-images", type=int, default=1000)
    ap.add_argument("--calib-images", type=int, default=None, help="BN recalibration images (quality: 500; with --runs: 2000)")
    q = ap.add_argument_group("quality of trained runs (quality --runs)")
    q.add_argument("--runs", default=None, help="comma-separated runs trained alike but for --by: compare them, train nothing")
    q.add_argument("--by", default="sampler", help="the config field the --runs differ in (sampler, precision, ...)")
    q.add_argument("--archs", type=int, default=50, help="random archs besides the min and max, spread over the FLOPs bins")
    q.add_argument("--bins", type=int, default=5)
    q.add_argument("--test-images", type=int, default=None, help="score on the first N test images (default: all 10,000)")
    q.add_argument("--budgets", default=None, help="search budgets, e.g. 0.3ms,0.5ms,0.7ms (default: 25/50/75%% of the range)")
    q.add_argument("--population", type=int, default=16, help="nastools search's default")
    q.add_argument("--generations", type=int, default=6, help="nastools search's default")
    q.add_argument("--search-calib-images", type=int, default=1000, help="nastools search's default")
    q.add_argument(
        "--search-eval-images", type=int, default=2000, help="validation images per search evaluation: nastools search's default"
    )
    q.add_argument("--seed", type=int, default=0, help="of the archs, BN recalibration images and search")
    q.add_argument("--pooled", default=None, help="comma-separated results of quality --runs over the same archs: pool them, score nothing")
    q.add_argument("--allow-unequal-steps", action="store_true", help="compare runs stopped at different steps (to test this script)")
    ap.add_argument("--ddp-steps", type=int, default=12)
    ap.add_argument("--tp-steps", type=int, default=8, help="throughput: timed steps of each variant")
    ap.add_argument("--profile-steps", type=int, default=3, help="throughput: profiled steps of the default")
    ap.add_argument("--workdir", default="/tmp/nastools-bench-train")
    ap.add_argument(
        "--variant",
        default=None,
        help="a run with other settings: results/bench_train_<part>/<cpu>/<date>-<variant>.json (quality --runs: default <epochs>ep, e.g. 2ep)",
    )
    args = ap.parse_args()
    if (args.runs or args.pooled) and args.part != "quality":
        ap.error("--runs and --pooled are for the quality part")
    if args.part == "cost":
        args.batch_size = args.batch_size or 128
        fig = bench_cost(args)
    elif args.part == "quality" and args.pooled:
        fig = bench_quality_pooled([p.strip() for p in args.pooled.split(",")])
        args.variant = args.variant or f"{fig['config']['epochs']:g}ep".replace(".", "p") + "-pooled"
    elif args.part == "quality" and args.runs:
        args.calib_images = args.calib_images or 2000
        fig = bench_quality_runs(args)
        args.variant = args.variant or f"{fig['config']['epochs']:g}ep".replace(".", "p") + ("" if args.by == "sampler" else f"-{args.by}")
    elif args.part == "quality":
        args.batch_size = args.batch_size or 32
        args.calib_images = args.calib_images or 500
        fig = bench_quality(args)
    elif args.part == "throughput":
        fig = bench_throughput(args)
    else:
        args.batch_size = args.batch_size or 64
        fig = bench_ddp(args)
    write_result(f"bench_train_{args.part}", fig, variant=args.variant)


if __name__ == "__main__":
    main()
