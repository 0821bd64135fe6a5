"""A search's final choice: each budget's finalists scored again on more validation images.

The search scores every arch on a sample of the validation split (``--eval-images``, 2,000 by
default): cheap, but a sample's top-1 is off by about half a point either way (the binomial
standard error at 90%), which is as much as the archs near one budget differ. The most
accurate arch by that score is then partly the luckiest (the winner's curse). So, as a last
step, the ``k`` best archs within each budget by the search's score are scored again on the
whole validation split (the same BN recalibration, more images: ``--rerank-images``) and each
budget's pick is the best by that score. The Pareto front and the evaluated archs keep the
search's scores; the picks carry both.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

from nastools.search.evolution import Candidate


def finalists(cands: Sequence[Candidate], budgets: Sequence[Mapping[str, float]], k: int) -> list[Candidate]:
    """The ``k`` most accurate of ``cands`` within each of ``budgets`` (cost name -> limit;
    ties: the cheaper by the first cost), each once, in order of first appearance."""
    out: dict[str, Candidate] = {}
    for lim in budgets:
        first = next(iter(lim), None)
        ok = [c for c in cands if all(c.costs[name] <= v for name, v in lim.items())]
        ok.sort(key=lambda c: (-c.top1, c.costs[first] if first else 0.0))
        for c in ok[:k]:
            out.setdefault(c.arch.id, c)
    return list(out.values())


def rescore(cands: Sequence[Candidate], score: Callable, progress: Callable[[int, int], None] | None = None) -> list[Candidate]:
    """Copies of ``cands`` with ``top1 = score(arch)`` (their costs copied too);
    ``progress(done, total)`` after each."""
    out = []
    for i, c in enumerate(cands):
        out.append(Candidate(c.arch, float(score(c.arch)), dict(c.costs)))
        if progress:
            progress(i + 1, len(cands))
    return out


def rerank_images(requested: int | None, search_images: int, available: int) -> int:
    """How many validation images finalists are scored on: ``requested`` (None: all
    ``available``) at most ``available``; 0 when that is no more than the search scored on
    (re-scoring would only repeat its scores)."""
    n = available if requested is None else min(requested, available)
    return n if n > min(search_images, available) else 0
