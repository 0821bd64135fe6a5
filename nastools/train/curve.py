"""Learning curves: a training run's validation top-1 (min and max subnet) against epochs.

``nastools train`` logs one ``epoch`` record per evaluation (every epoch end, and at a stop
mid-epoch) and a ``step`` record every ``--log-every`` steps with the learning rate. This
module reads them back from a run's ``train.jsonl`` and draws them, several runs on one
plot, so that runs can be compared and a run's progress judged (is it still rising?).
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Mapping

from nastools.errors import NastoolsError


def learning_curve(log: str | Path) -> dict:
    """The evaluations and learning rates logged in the ``train.jsonl`` file ``log``.

    Returns ``{"points": [{"epoch", "step", "top1_min", "top1_max", "partial"}, ...],
    "lr": [[epoch, lr], ...]}``, each in step order; where two evaluations share a step
    (a run stopped and resumed at it) the later is kept; torn lines (a kill mid-append) are
    skipped. Top-1 is in percent. A step record's epoch is its step over the run's steps
    per epoch (known from its evaluations). A log with no evaluation is a one-line error."""
    from nastools.io import parse_json, read_text

    points: dict[int, dict] = {}
    lrs: list[tuple[int, float]] = []
    for line in read_text(log, "training log").splitlines():
        try:
            rec = parse_json(line, "log line")
        except NastoolsError:
            continue
        if not isinstance(rec, dict) or not isinstance(rec.get("step"), int):
            continue
        if rec.get("type") == "epoch" and _number(rec.get("top1_min")) and _number(rec.get("top1_max")):
            points[rec["step"]] = {
                "epoch": float(rec.get("epoch", 0.0)),
                "step": rec["step"],
                "top1_min": round(100 * rec["top1_min"], 2),
                "top1_max": round(100 * rec["top1_max"], 2),
                "partial": bool(rec.get("partial", False)),
            }
        elif rec.get("type") == "step" and _number(rec.get("lr")):
            lrs.append((rec["step"], float(rec["lr"])))
    if not points:
        raise NastoolsError(f"training log {str(Path(log))!r} holds no evaluation yet (one is logged at each epoch's end)")
    per_epoch = [p["step"] / p["epoch"] for p in points.values() if p["epoch"] > 0]
    spe = statistics.median(per_epoch) if per_epoch else None
    lr = [[round(s / spe, 4), v] for s, v in sorted(lrs)] if spe else []
    return {"points": [points[s] for s in sorted(points)], "lr": lr}


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def run_log(run: str | Path) -> Path:
    """The ``train.jsonl`` of a run name, run folder, checkpoint file or shipped supernet
    (the file beside the checkpoint :func:`nastools.checkpoint.find_checkpoint` finds)."""
    from nastools.checkpoint import find_checkpoint

    log = find_checkpoint(run).parent / "train.jsonl"
    if not log.is_file():
        raise NastoolsError(f"run {str(run)!r}: no training log at {str(log)!r}")
    return log


def plot_curves(path: str | Path, curves: Mapping[str, dict]) -> Path:
    """Write a PNG of validation top-1 against epochs: per run (label -> :func:`learning_curve`)
    the max subnet (solid) and the min subnet (dashed) in one colour, and the learning rate
    (thin, right axis). Atomic."""
    from nastools.plotting import figure, save_png

    fig, ax = figure()
    lr_ax = ax.twinx()
    for i, (label, c) in enumerate(curves.items()):
        col = f"C{i % 10}"
        x = [p["epoch"] for p in c["points"]]
        ax.plot(x, [p["top1_max"] for p in c["points"]], "-o", ms=3, c=col, label=f"{label}: max subnet")
        ax.plot(x, [p["top1_min"] for p in c["points"]], "--o", ms=3, c=col, label=f"{label}: min subnet")
        if c["lr"]:
            lr_ax.plot([e for e, _ in c["lr"]], [v for _, v in c["lr"]], lw=0.7, alpha=0.5, c=col)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation top-1 (%)")
    lr_ax.set_ylabel("learning rate (thin lines)")
    lr_ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return save_png(fig, path)
