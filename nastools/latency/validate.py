"""How good a latency table is: error metrics of predicted against measured end-to-end
latencies, beside a FLOPs-only linear model fitted on the same data, and a scatter plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b between two sequences (ties counted as neither concordant nor discordant)."""
    a, b = np.asarray(x, float), np.asarray(y, float)
    if len(a) < 2:
        return float("nan")
    dx = np.sign(a[:, None] - a[None, :])
    dy = np.sign(b[:, None] - b[None, :])
    iu = np.triu_indices(len(a), 1)
    dx, dy = dx[iu], dy[iu]
    denom = np.sqrt(np.count_nonzero(dx) * np.count_nonzero(dy))
    return float(np.sum(dx * dy) / denom) if denom else float("nan")


def error_metrics(predicted: Sequence[float], measured: Sequence[float]) -> dict[str, float]:
    """MAPE (%), RMSE (ms), share within ±5% and ±10% (%), Kendall tau."""
    p, m = np.asarray(predicted, float), np.asarray(measured, float)
    rel = np.abs(p - m) / m
    return {
        "mape_pct": float(100 * rel.mean()),
        "rmse_ms": float(np.sqrt(np.mean((p - m) ** 2))),
        "within_5_pct": float(100 * np.mean(rel <= 0.05)),
        "within_10_pct": float(100 * np.mean(rel <= 0.10)),
        "kendall_tau": kendall_tau(p, m),
        "n": int(len(m)),
    }


def flops_fit(flops: Sequence[float], measured: Sequence[float]) -> tuple[float, float]:
    """Least-squares ``measured ≈ a * flops + b`` (the FLOPs-only baseline)."""
    f, m = np.asarray(flops, float), np.asarray(measured, float)
    a, b = np.polyfit(f, m, 1)
    return float(a), float(b)


def loo_scaled_vs_refit(predicted: Sequence[float], block_sums: Sequence[float], measured: Sequence[float]) -> dict[str, float]:
    """Leave-one-out MAPE (%) on a few end-to-end runs of this machine of two ways to carry a
    table made elsewhere over to it: ``scaled``, the table's predictions (``predicted``)
    times the median ratio measured / predicted of the other runs (what the drift check
    does); ``refit``, a scale and an offset on the block sums (``block_sums``) fitted on the
    other runs by least squares on relative error (what
    :meth:`~nastools.latency.table.LatencyTable.fit_calibration` fits on so few runs; a scale
    that is not positive falls back to the mean offset). Each run is predicted from the
    others only, so the two are compared on runs neither was fitted on."""
    p, x, y = (np.asarray(v, float) for v in (predicted, block_sums, measured))
    n = len(y)
    if n < 3 or len(p) != n or len(x) != n:
        raise ValueError(f"expected at least 3 runs with a prediction and a block sum each, got {len(p)}, {len(x)}, {n}")
    scaled, refit = [], []
    for i in range(n):
        rest = np.arange(n) != i
        scaled.append(abs(np.median(y[rest] / p[rest]) * p[i] - y[i]) / y[i])
        (a, b), *_ = np.linalg.lstsq(np.column_stack([x[rest], np.ones(n - 1)]) / y[rest, None], np.ones(n - 1), rcond=None)
        if a <= 0:
            a, b = 1.0, float(np.mean(y[rest] - x[rest]))
        refit.append(abs(a * x[i] + b - y[i]) / y[i])
    return {"scaled": float(100 * np.mean(scaled)), "refit": float(100 * np.mean(refit))}


def pass_tau(runs: Sequence[Mapping[str, Any]]) -> float | None:
    """Median Kendall tau between two repeated measurement passes of the same subnets
    (``pass_ms`` of each run), over every pair of passes: how far the measured order itself
    is reproducible, which bounds the tau any predictor can reach against one measurement.
    None without at least two passes of every run."""
    passes = [r.get("pass_ms") or [] for r in runs]
    k = min((len(p) for p in passes), default=0)
    if k < 2 or len(runs) < 2:
        return None
    cols = np.array([p[:k] for p in passes], float)
    return float(np.median([kendall_tau(cols[:, i], cols[:, j]) for i in range(k) for j in range(i + 1, k)]))


def summarize(runs: Sequence[Mapping[str, Any]], calibration: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """Metrics of ``runs`` (each with predicted_ms, measured_ms, flops) for the table and for
    FLOPs-only linear models: ``flops_linear`` fitted on these very runs (in-sample, the
    strongest form of the baseline) and, given the ``calibration`` runs the table's overhead
    was fitted on, ``flops_linear_calibration`` fitted on those (held out, like the table)."""
    pred = [r["predicted_ms"] for r in runs]
    meas = [r["measured_ms"] for r in runs]
    flops = [r["flops"] for r in runs]
    a, b = flops_fit(flops, meas)
    base = [a * f + b for f in flops]
    spreads = [r["spread_pct"] for r in runs if "spread_pct" in r]
    noise = {"median_spread_pct": float(np.median(spreads)), "p90_spread_pct": float(np.percentile(spreads, 90))} if spreads else {}
    tau = pass_tau(runs)
    if tau is not None:
        noise["pass_kendall_tau"] = tau
    out = {
        "noise": noise,
        "table": error_metrics(pred, meas),
        "flops_linear": {**error_metrics(base, meas), "ms_per_mflop": a * 1e6, "offset_ms": b},
    }
    if len(calibration) >= 2:
        ca, cb = flops_fit([r["flops"] for r in calibration], [r["measured_ms"] for r in calibration])
        out["flops_linear_calibration"] = {**error_metrics([ca * f + cb for f in flops], meas), "ms_per_mflop": ca * 1e6, "offset_ms": cb}
    return out


def scatter_plot(runs: Sequence[Mapping[str, Any]], path: str | Path, title: str = "") -> Path:
    """Predicted-vs-measured scatter (table and FLOPs model) with the ±10% band, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nastools.io import atomic_write

    meas = np.array([r["measured_ms"] for r in runs])
    pred = np.array([r["predicted_ms"] for r in runs])
    flops = np.array([r["flops"] for r in runs], float)
    a, b = flops_fit(flops, meas)
    fig, ax = plt.subplots(figsize=(5, 5), dpi=110)
    lo, hi = 0.9 * min(meas.min(), pred.min()), 1.1 * max(meas.max(), pred.max())
    xs = np.linspace(lo, hi, 2)
    ax.fill_between(xs, 0.9 * xs, 1.1 * xs, color="0.9", label="±10%")
    ax.plot(xs, xs, color="0.5", lw=1)
    ax.scatter(meas, a * flops + b, s=10, marker="x", color="tab:orange", label="FLOPs linear")
    ax.scatter(meas, pred, s=12, color="tab:blue", label="latency table")
    ax.set_xlabel("measured (ms)")
    ax.set_ylabel("predicted (ms)")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    out = atomic_write(path, lambda f: fig.savefig(f, format="png"), mode="wb")
    plt.close(fig)
    return out
