"""An accuracy predictor for ``--rank-by predictor`` (AttentiveNAS's second variant).

The search's ridge regression (:class:`nastools.predictor.RidgePredictor`), fitted on archs with a
measured top-1 (Arch JSON lines carrying a ``top1`` field, as ``nastools search`` and
``nastools eval --json`` write them). Attentive sampling then ranks candidates by predicted
accuracy instead of by their minibatch loss, which costs no forward pass at all.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from nastools.errors import NastoolsError
from nastools.predictor import RidgePredictor
from nastools.space import Arch, SearchSpace


class AccuracyPredictor:
    """Predicts top-1 of an arch from measured ones."""

    def __init__(self, model: RidgePredictor) -> None:
        self.model = model

    @classmethod
    def fit(cls, space: SearchSpace, archs: Sequence[Arch], top1: Sequence[float]) -> "AccuracyPredictor":
        if len(archs) < 2:
            raise NastoolsError(f"accuracy predictor: got {len(archs)} measured archs, expected at least 2")
        return cls(RidgePredictor(space).fit(archs, top1))

    @classmethod
    def fit_file(cls, path: str | Path, space: SearchSpace) -> "AccuracyPredictor":
        """Fit on a file of Arch JSON lines (or a JSON list) that carry ``top1``."""
        p = Path(path)
        if not p.is_file():
            raise NastoolsError(f"predictor file {str(p)!r} not found: expected Arch JSON lines with a top1 field")
        text = p.read_text()
        try:
            records = json.loads(text) if text.lstrip().startswith("[") else [json.loads(ln) for ln in text.splitlines() if ln.strip()]
        except json.JSONDecodeError as exc:
            raise NastoolsError(f"predictor file {str(p)!r} is not JSON lines: {exc}") from None
        archs, accs = [], []
        for i, r in enumerate(records):
            if not isinstance(r, dict) or "top1" not in r:
                raise NastoolsError(f"predictor file {str(p)!r}, record {i + 1}: no top1 field, expected Arch JSON with top1")
            archs.append(space.arch_from_dict(r))
            accs.append(float(r["top1"]))
        return cls.fit(space, archs, accs)

    def predict(self, arch: Arch) -> float:
        return float(self.model.predict([arch])[0])


__all__ = ["AccuracyPredictor"]
