"""A light accuracy predictor over arch genotypes (numpy only, no torch).

Each arch becomes a feature vector: every choice scaled to [0, 1] by its position among the
allowed values, plus log-FLOPs and log-params. A ridge regression on archs evaluated so far
ranks new ones; refits are cheap (a few dozen features), so the search refits every
generation. It screens candidates: it never replaces a real evaluation.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from nastools.space import Arch, SearchSpace


def arch_features(space: SearchSpace, arch: Arch) -> np.ndarray:
    """The feature vector of ``arch`` (length ``3 + 4 * stages + 2``)."""

    def pos(value, options):
        return options.index(value) / (len(options) - 1) if len(options) > 1 else 0.0

    f = [pos(arch.resolution, space.resolutions), pos(arch.stem, space.stem_widths), pos(arch.head, space.head_widths)]
    for a, s in zip(arch.stages, space.stages):
        f += [pos(a.width, s.widths), pos(a.depth, s.depths), pos(a.kernel, s.kernels), pos(a.expand, s.expands)]
    flops, params = space.cost(arch)
    f += [math.log(flops), math.log(params)]
    return np.asarray(f, dtype=np.float64)


class RidgePredictor:
    """Ridge regression from :func:`arch_features` to accuracy."""

    def __init__(self, space: SearchSpace, alpha: float = 1.0) -> None:
        self.space, self.alpha = space, alpha
        self.coef: np.ndarray | None = None

    def _x(self, archs: Sequence[Arch]) -> np.ndarray:
        return np.stack([arch_features(self.space, a) for a in archs])

    def fit(self, archs: Sequence[Arch], scores: Sequence[float]) -> "RidgePredictor":
        """Fit the ridge regression of ``scores`` on the archs' features; returns self."""
        x = self._x(archs)
        y = np.asarray(scores, dtype=np.float64)
        self.mu, self.sd = x.mean(0), x.std(0) + 1e-9
        self.y0 = y.mean()
        z = (x - self.mu) / self.sd
        a = z.T @ z + self.alpha * np.eye(z.shape[1])
        self.coef = np.linalg.solve(a, z.T @ (y - self.y0))
        return self

    def predict(self, archs: Sequence[Arch]) -> np.ndarray:
        """Predicted scores of ``archs`` (fit first)."""
        if self.coef is None:
            raise RuntimeError("fit the predictor first")
        return ((self._x(archs) - self.mu) / self.sd) @ self.coef + self.y0
