"""The PNG plots nastools writes (Pareto fronts, learning curves): one figure size, the
non-interactive backend, atomic writes."""

from __future__ import annotations

from pathlib import Path


def figure():
    """A new ``(figure, axes)`` of the size every nastools plot has, on matplotlib's Agg
    backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(6.4, 4.2), dpi=110)


def save_png(fig, path: str | Path) -> Path:
    """Lay ``fig`` out, write it to ``path`` as a PNG atomically, and close it."""
    import io

    import matplotlib.pyplot as plt

    from nastools.io import atomic_write

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return atomic_write(path, lambda f: f.write(buf.getvalue()), mode="wb")
