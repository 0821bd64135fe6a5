"""Paired comparisons for the benchmarks: mean difference, its standard error, a sign test.

Pure standard library (no scipy), so that tests can check it without the benchmarks' deps.
"""

from __future__ import annotations

import math
from typing import Sequence

TIE = 1e-9  # |difference| at most this is a tie (accuracies are multiples of 0.01 points)


def sign_test_p(wins: int, losses: int) -> float:
    """Two-sided exact binomial sign test: the probability, under a fair coin, of a split of
    ``wins + losses`` at least as uneven as this one (ties already dropped); 1.0 for none."""
    if wins < 0 or losses < 0:
        raise ValueError("wins and losses must be non-negative")
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(wins, losses) + 1))
    return min(1.0, 2 * tail / 2**n)


def paired(a: Sequence[float], b: Sequence[float]) -> dict:
    """``a`` against ``b`` over the same items: n, mean of ``a - b``, its sample standard
    deviation and standard error (sd / sqrt(n); NaN for fewer than 2 items), wins (a > b),
    losses, ties (dropped from the sign test) and the sign test's two-sided p-value."""
    if len(a) != len(b):
        raise ValueError(f"paired samples of different lengths: {len(a)} and {len(b)}")
    d = [x - y for x, y in zip(a, b)]
    n = len(d)
    mean = sum(d) / n if n else math.nan
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1)) if n > 1 else math.nan
    wins = sum(x > TIE for x in d)
    losses = sum(x < -TIE for x in d)
    return {
        "n": n,
        "mean": mean,
        "sd": sd,
        "se": sd / math.sqrt(n) if n > 1 else math.nan,
        "wins": wins,
        "losses": losses,
        "ties": n - wins - losses,
        "sign_p": sign_test_p(wins, losses),
    }
