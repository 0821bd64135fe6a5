"""Analyses of ``bench_train.py quality --runs`` results: subnets grouped by the kind of
residual path they have at their stride-2 stages (:func:`nastools.space.residual.residual_kind`:
a sampler that rarely trains one kind can leave every subnet of that kind behind, and the
groups make that visible), and several results (seeds) pooled.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

from _stats import paired, sign_test_p


def family_paired(families: Sequence[str], top1: dict[str, list[float]], pairs: Sequence[tuple[str, str]]) -> dict:
    """Per family (one label per arch, as :func:`shortcut_family`): its arch count and the
    paired statistics (:func:`_stats.paired`) of each ``(a, b)`` in ``pairs`` over its archs."""
    out = {}
    for fam in sorted(set(families), key=lambda f: (f != "conv everywhere", f)):
        idx = [i for i, f in enumerate(families) if f == fam]
        out[fam] = {
            "archs": len(idx),
            "paired": {f"{a} - {b}": paired([top1[a][i] for i in idx], [top1[b][i] for i in idx]) for a, b in pairs},
        }
    return out


def _pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson's correlation of ``x`` and ``y`` (NaN when either is constant or too short)."""
    n = len(x)
    if n < 3:
        return math.nan
    mx, my = sum(x) / n, sum(y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx, syy = sum((a - mx) ** 2 for a in x), sum((b - my) ** 2 for b in y)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else math.nan


def pool_results(results: Sequence[dict], family_of: Callable[[str], str], pairs: Sequence[tuple[str, str]]) -> dict:
    """Several ``quality --runs`` results over the same archs, pooled. For each comparison
    ``a - b`` of ``pairs``: each result's paired statistics, the statistics over archs of the
    difference averaged over the results (the sign test counts archs, not arch-result pairs,
    which are not independent), the same per family (``family_of(arch id)``), and how far the
    results agree on which archs gain (Pearson's r of their per-arch differences; for more
    than two results, the mean over pairs of results)."""
    ids = [a["id"] for a in results[0]["archs"]]
    for r in results[1:]:
        if [a["id"] for a in r["archs"]] != ids:
            raise ValueError("the results scored different archs: pool only results of the same --archs, --bins and --seed")
    top = [{a["id"]: a["top1"] for a in r["archs"]} for r in results]
    fams = [family_of(i) for i in ids]
    out: dict = {"archs": len(ids), "results": len(results), "comparisons": {}}
    for a, b in pairs:
        diffs = [[t[i][a] - t[i][b] for i in ids] for t in top]
        mean_d = [sum(col) / len(col) for col in zip(*diffs)]
        rs = [_pearson(diffs[i], diffs[j]) for i in range(len(diffs)) for j in range(i + 1, len(diffs))]
        per_family = {}
        for fam in sorted(set(fams), key=lambda f: (f != "conv everywhere", f)):
            idx = [k for k, f in enumerate(fams) if f == fam]
            per_family[fam] = {
                "archs": len(idx),
                "each": [paired([d[k] for k in idx], [0.0] * len(idx)) for d in diffs],
                "pooled": paired([mean_d[k] for k in idx], [0.0] * len(idx)),
            }
        out["comparisons"][f"{a} - {b}"] = {
            "each": [paired(d, [0.0] * len(d)) for d in diffs],
            "pooled": paired(mean_d, [0.0] * len(mean_d)),
            "agreement_r": sum(rs) / len(rs) if rs else math.nan,
            "families": per_family,
        }
    return out


def sign_summary(p: dict) -> str:
    """``mean +- SE (wins / losses, p)`` of a :func:`_stats.paired` record, in points."""
    se = "-" if math.isnan(p["se"]) else f"{p['se']:.2f}"
    return f"{p['mean']:+.2f} +- {se} ({p['wins']} / {p['losses']}, p = {sign_test_p(p['wins'], p['losses']):.2g})"
