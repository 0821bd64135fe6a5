"""Investigation: how should a search choose its pick among archs scored on 2,000 validation
images? By the score alone, or by the score shrunk toward what the other archs predict?

Reads the result of one ``bench_search.py --vs-random-pool 300 --pool-test all`` run (its
``archs``: every pool arch scored on 2,000 validation images and on the 10,000 test images),
rebuilds its pools, and replays searches offline by resampling: ``N`` archs drawn from a
pool, per budget the pick by each rule, and the pick's test top-1. The rules:

- ``score``: the best validation top-1 (what ``nastools search`` ranks by);
- ``ridge k``: ``p + k (v - p)``, with ``p`` the leave-one-out prediction of the ridge
  predictor of ``nastools.predictor`` fitted on the drawn archs' scores (``k = 1`` is the score,
  ``k = 0`` the predictor alone);
- ``trend k``: the same with ``p`` a cubic fit of the score in log FLOPs;
- ``oracle``: the best test top-1 among the drawn archs (no search has it), and ``mean``.

Two ways to draw: ``under-max`` draws from the pool of the loosest budget (a uniform sample of
the space under it, as random search samples) and picks at every budget; ``per-budget``
draws from each budget's own pool (archs near and under it, as an evolution concentrates).
The rules are compared paired, on the same draws.

Last, evolution's picks in the result against 10x ``--draws`` random searches with as many
evaluations, resampled from the loosest budget's pool and picking by the search's score (not
re-ranked): how often evolution's pick matches or beats a random search's, per budget, which
one random search (the bench's) cannot tell. Prints the tables and writes
``results/search_selection/<cpu>/<date>-seed<N>.json``.

Usage: python benchmarks/investigations/search_selection.py RESULT.json [--draws 300] [--sizes 22,56,112]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import write_result  # noqa: E402
from bench_search import _pools  # noqa: E402

from nastools.checkpoint import load_supernet  # noqa: E402
from nastools.predictor import arch_features  # noqa: E402

KS = (0.0, 0.25, 0.5, 0.75)


def read_result(path: Path) -> tuple[dict, dict[str, float], dict[str, float]]:
    """The result and its archs' validation and test top-1 by arch id."""
    from nastools.latency.table import arch_of_key

    res = json.loads(path.read_text())
    if "archs" not in res:
        raise SystemExit(f"{path}: no per-arch scores (written by an older bench_search.py)")
    val, test = {}, {}
    for key, _flops, v, _final, t in res["archs"]:
        i = arch_of_key(key).id
        val[i] = v
        if t is not None:
            test[i] = t
    return res, val, test


def loo_trend(logf: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Leave-one-out predictions of a cubic fit of ``y`` in ``logf``."""
    x = np.vander(logf - logf.mean(), 4)
    h = x @ np.linalg.pinv(x)
    fit = h @ y
    return y - (y - fit) / np.clip(1.0 - np.diag(h), 1e-6, None)


def rules(v: np.ndarray, t: np.ndarray, flops: np.ndarray, feats: np.ndarray) -> dict[str, np.ndarray]:
    """Each rule's ranking score over the drawn archs (higher is better)."""
    p_r = loo_ridge_fit(feats, v)
    p_t = loo_trend(np.log(flops), v)
    out = {"score": v}
    for k in KS:
        out[f"ridge {k:g}"] = p_r + k * (v - p_r)
        out[f"trend {k:g}"] = p_t + k * (v - p_t)
    out["oracle"] = t
    return out


def loo_ridge_fit(x: np.ndarray, y: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """Leave-one-out predictions of ``RidgePredictor``'s regression (closed form)."""
    z = (x - x.mean(0)) / (x.std(0) + 1e-9)
    z = np.hstack([z, np.ones((len(z), 1))])
    reg = alpha * np.eye(z.shape[1])
    reg[-1, -1] = 0.0  # the intercept is not shrunk (RidgePredictor centres the target)
    h = z @ np.linalg.solve(z.T @ z + reg, z.T)
    fit = h @ y
    return y - (y - fit) / np.clip(1.0 - np.diag(h), 1e-6, None)


def pick(score: np.ndarray, flops: np.ndarray, ok: np.ndarray) -> int | None:
    """Index of the best ``score`` among ``ok`` (ties: the cheaper)."""
    idx = np.flatnonzero(ok)
    if not len(idx):
        return None
    return int(min(idx, key=lambda i: (-score[i], flops[i])))


def replay(archs, val, test, space, budgets, n: int, draws: int, mode: str, pools, seed: int) -> dict:
    """Mean test top-1 of each rule's pick per budget over ``draws`` resamples of ``n`` archs,
    and each rule's paired difference from ``score`` (mean, SD over draws, ahead / behind)."""
    rng = random.Random(seed)
    table: dict[str, list[list[float]]] = {}
    for bi, b in enumerate(budgets):
        source = pools[-1] if mode == "under-max" else pools[bi]
        source = [a for a in source if a.id in val and a.id in test]
        for _ in range(draws):
            drawn = rng.sample(source, min(n, len(source)))
            v = np.array([val[a.id] for a in drawn])
            t = np.array([test[a.id] for a in drawn])
            f = np.array([float(space.flops(a)) for a in drawn])
            x = np.stack([archs[a.id] for a in drawn])
            scores = rules(v, t, f, x)
            ok = f <= b
            got = {}
            for name, s in scores.items():
                i = pick(s, f, ok)
                got[name] = None if i is None else float(t[i])
            if got["score"] is None:
                continue
            got["mean"] = float(t[ok].mean())
            for name, x_ in got.items():
                table.setdefault(name, [[] for _ in budgets])[bi].append(x_)
    out = {}
    for name, per in table.items():
        base = table["score"]
        diffs = [np.array(p) - np.array(q) for p, q in zip(per, base)]
        out[name] = {
            "mean_test": [float(np.mean(p)) if p else None for p in per],
            "minus_score": [float(d.mean()) if len(d) else None for d in diffs],
            "ahead_behind": [[int((d > 1e-9).sum()), int((d < -1e-9).sum())] for d in diffs],
        }
    return out


def against_random(res: dict, val, test, space, pools, draws: int, seed: int) -> tuple[list[dict], float | None]:
    """Evolution's picks (the bench's, re-ranked as ``nastools search`` re-ranks) against
    ``draws`` random searches with as many evaluations, resampled from the pool of the loosest
    budget (a uniform sample of the space under it) and picking by the search's score: per
    budget the random picks' mean and SD of test top-1, how often none fits, and the share of
    random searches whose pick evolution's matches or beats; and the share it matches or beats
    at every budget at once (None when evolution found nothing under one)."""
    rng = random.Random(seed)
    source = [a for a in pools[-1] if a.id in val and a.id in test]
    n = min(res["evaluations_per_search"], len(source))
    flops = {a.id: float(space.flops(a)) for a in source}
    got: list[list] = [[] for _ in res["budgets"]]
    for _ in range(draws):
        drawn = sorted(rng.sample(source, n), key=lambda a: (-val[a.id], flops[a.id]))
        for bi, b in enumerate(res["budgets"]):
            best = next((a for a in drawn if flops[a.id] <= b), None)
            got[bi].append(None if best is None else test[best.id])
    evos = [row["evolution"]["test_top1"] if row["evolution"] else None for row in res["rows"]]
    beats = [[e is not None and (x is None or e >= x - 1e-9) for x in g] for e, g in zip(evos, got)]
    every = None if None in evos else sum(all(col) for col in zip(*beats)) / draws
    out = []
    for row, g in zip(res["rows"], got):
        evo = row["evolution"]["test_top1"] if row["evolution"] else None
        found = [x for x in g if x is not None]
        out.append(
            {
                "budget": row["budget_flops"],
                "evolution": evo,
                "random_mean": float(np.mean(found)) if found else None,
                "random_sd": float(np.std(found)) if found else None,
                "random_none": len(g) - len(found),
                "evo_ge_random_share": None if evo is None else sum(x is None or evo >= x - 1e-9 for x in g) / len(g),
            }
        )
    return out, every


def print_against_random(vs: list[dict], draws: int, evaluations: int) -> None:
    print(f"\nevolution's picks against {draws} random searches of {evaluations} archs (resampled):")
    for r in vs:
        evo = "none fits" if r["evolution"] is None else f"{r['evolution']:.2f}"
        share = "-" if r["evo_ge_random_share"] is None else f"{100 * r['evo_ge_random_share']:.0f}%"
        mean = "none fits" if r["random_mean"] is None else f"{r['random_mean']:.2f} +- {r['random_sd']:.2f}"
        print(f"  {r['budget'] / 1e6:6.2f}M: evolution {evo}, random {mean} (none in {r['random_none']}), evolution >= random in {share}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("result", help="a bench_search_vs_random result with per-arch scores")
    ap.add_argument("--draws", type=int, default=300)
    ap.add_argument("--sizes", default="22,56,112", help="archs per replayed search")
    args = ap.parse_args()
    res, val, test = read_result(Path(args.result))
    space = load_supernet(res["run"]).space
    budgets, seed = res["budgets"], res["settings"]["seed"]
    pools, _ = _pools(space, budgets, res["pool"]["size"], seed)
    archs = {a.id: arch_features(space, a) for p in pools for a in p}
    have = sum(a.id in val and a.id in test for a in archs_of(pools))
    print(f"{len(archs)} pool archs, {have} scored on validation and test; budgets {', '.join(f'{b / 1e6:.2f}M' for b in budgets)}")
    source = Path(args.result).resolve()
    root = Path(__file__).resolve().parents[2]
    result = {
        "source": str(source.relative_to(root)) if source.is_relative_to(root) else str(source),
        "seed": seed,
        "budgets": budgets,
        "archs": have,
        "draws": args.draws,
        "replays": {},
    }
    for mode in ("under-max", "per-budget"):
        for n in [int(s) for s in args.sizes.split(",")]:
            rep = replay(archs, val, test, space, budgets, n, args.draws, mode, pools, seed)
            result["replays"][f"{mode} n={n}"] = rep
            print(f"\n{mode}, {n} archs per search, {args.draws} draws: mean test top-1 of the pick (minus the score rule's)")
            print(f"{'rule':<12}" + "".join(f"{b / 1e6:>16.2f}M" for b in budgets))
            for name, r in rep.items():
                cells = "".join(
                    f"{m:>9.3f} ({d:+.3f})" if m is not None else f"{'-':>17}" for m, d in zip(r["mean_test"], r["minus_score"])
                )
                print(f"{name:<12}{cells}")
    vs, every = against_random(res, val, test, space, pools, 10 * args.draws, seed)
    result["evolution_vs_resampled_random"] = {"budgets": vs, "evo_ge_random_at_every_budget_share": every}
    print_against_random(vs, 10 * args.draws, res["evaluations_per_search"])
    if every is not None:
        print(f"  at every budget at once: {100 * every:.0f}% of the random searches")
    write_result("search_selection", result, variant=f"seed{seed}")


def archs_of(pools):
    return list({a.id: a for p in pools for a in p}.values())


if __name__ == "__main__":
    main()
