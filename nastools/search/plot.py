"""The Pareto plot: accuracy vs cost of every evaluated arch, the front, budgets and picks."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence


def plot_pareto(
    path: str | Path,
    evaluated: Sequence,
    front: Sequence,
    cost: str,
    budgets: Sequence[float],
    picks: Sequence = (),
    statistic: str | None = None,
) -> Path:
    """Write a PNG: grey dots (evaluated), a line (Pareto front), dashed budgets, stars (picks);
    a latency axis names its ``statistic`` (median, p10, ...)."""
    from nastools.plotting import figure, save_png

    scale, unit = (1.0, "ms") if cost.startswith("latency") else (1e-6, "M")
    label = f"{cost}, {statistic} ({unit})" if statistic else f"{cost} ({unit})"
    fig, ax = figure()
    ax.scatter([c.costs[cost] * scale for c in evaluated], [c.top1 for c in evaluated], s=10, c="0.7", label="evaluated")
    ax.plot([c.costs[cost] * scale for c in front], [c.top1 for c in front], "-o", ms=4, c="tab:blue", label="Pareto front")
    for i, b in enumerate(budgets):
        ax.axvline(b * scale, ls="--", c="tab:red", lw=1, label="budget" if i == 0 else None)
    pts = [p.candidate for p in picks if getattr(p, "candidate", None) is not None]
    if pts:
        ax.scatter([c.costs[cost] * scale for c in pts], [c.top1 for c in pts], marker="*", s=140, c="tab:orange", zorder=5, label="chosen")
    ax.set_xlabel(label)
    ax.set_ylabel("validation top-1 (%)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return save_png(fig, path)
