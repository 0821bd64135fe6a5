"""An accuracy predictor for ``--rank-by predictor`` (AttentiveNAS's second variant).

The search's ridge regression (:class:`nastools.predictor.RidgePredictor`), fitted on archs with a
measured top-1 (Arch JSON lines carrying a ``top1`` field, as ``nastools search`` and
``nastools eval --json`` write them). Attentive sampling then ranks candidates by predicted
accuracy instead of by their minibatch loss, which costs no forward pass at all.
"""

from __future__ import annotations

import math
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
        """Fit on a file of Arch JSON lines (or a JSON list) that carry ``top1`` (a fraction
        or a percentage); any unreadable file or record is a one-line :class:`NastoolsError`
        naming the file and the record."""
        return cls.fit(space, *read_measured_archs(path, space))

    def predict(self, arch: Arch) -> float:
        return float(self.model.predict([arch])[0])


def read_measured_archs(path: str | Path, space: SearchSpace) -> tuple[list[Arch], list[float]]:
    """The archs of ``space`` and their measured top-1 in a predictor file: Arch JSON values
    one after another (JSON lines, or ``nastools eval --json`` outputs appended to one file),
    or one JSON list, with a ``top1`` field, a finite number from 0 to 100. Every problem (a
    missing, binary or empty file, malformed JSON, a record that is no arch of ``space`` or
    has no usable ``top1``) is one :class:`NastoolsError` line naming the file and record."""
    from nastools.io import parse_json, parse_json_values, read_text

    where = f"predictor file {str(Path(path))!r}"
    text = read_text(path, "predictor file", hint="expected Arch JSON lines with a top1 field")
    if text.lstrip().startswith("["):
        numbered = list(enumerate(parse_json(text, where), 1))
    else:  # JSON lines, or `nastools eval --json` outputs appended one after another
        numbered = list(enumerate(parse_json_values(text, where), 1))
    archs, accs = [], []
    for i, r in numbered:
        if not isinstance(r, dict) or "top1" not in r:
            raise NastoolsError(f"{where}, record {i}: no top1 field, expected Arch JSON with top1")
        top1 = r["top1"]
        if isinstance(top1, bool) or not isinstance(top1, (int, float)) or not math.isfinite(top1) or not 0 <= top1 <= 100:
            raise NastoolsError(f"{where}, record {i}: top1 is {top1!r}, expected a number from 0 to 100")
        try:
            archs.append(space.arch_from_dict(r))
        except NastoolsError as exc:
            raise NastoolsError(f"{where}, record {i}: {exc}") from None
        accs.append(float(top1))
    return archs, accs


__all__ = ["AccuracyPredictor", "read_measured_archs"]
