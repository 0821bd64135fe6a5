"""How often an attentive sampler trains each kind of subnet, against a random pick.

BestUp (``attentive-best``) trains the candidate with the lowest minibatch loss. Where one
kind of subnet starts with a higher loss (in fmnist, the subnets with a pool-only residual
path at a stride-2 stage: :mod:`nastools.space.residual`), it is seldom picked, so seldom
trained, so keeps its higher loss: one of two 2-epoch fmnist runs trained such subnets 1 time
in 16 that a random pick would have, and lost 4-17 points on them; another, at 0.5-0.6 of
the random rate, half a point more on them than on the rest (docs/results/training.md). :class:`KindCoverage`
counts, per kind, the middles trained and the middles a random pick among the same
candidates would have trained (a kind's share of each slot's candidates, summed), so a run
tells its user when a kind is being left behind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from nastools.space import Arch, SearchSpace
from nastools.space.residual import residual_kind

#: a kind trained at under this fraction of the random rate is reported as left behind ...
LEFT_BEHIND_RATIO = 0.5
#: ... once a random pick would have trained it at least this many times
LEFT_BEHIND_MIN_EXPECTED = 10.0


@dataclass
class KindCoverage:
    """Per residual kind: middles trained (``picked``) and the middles a random pick among the
    offered candidates would have trained (``expected``), over the run so far."""

    picked: dict[str, int] = field(default_factory=dict)
    expected: dict[str, float] = field(default_factory=dict)

    def offer(self, space: SearchSpace, candidates: Sequence[Arch], chosen: Arch) -> None:
        """Count one middle slot: ``chosen`` trained among ``candidates``."""
        share = 1.0 / len(candidates)
        for c in candidates:
            k = residual_kind(space, c)
            self.expected[k] = self.expected.get(k, 0.0) + share
            self.picked.setdefault(k, 0)
        k = residual_kind(space, chosen)
        self.picked[k] = self.picked.get(k, 0) + 1

    def left_behind(self, ratio: float = LEFT_BEHIND_RATIO, min_expected: float = LEFT_BEHIND_MIN_EXPECTED) -> list[tuple[str, int, float]]:
        """``(kind, picked, expected)`` of each kind trained at under ``ratio`` times the random
        rate, once that rate would have trained it ``min_expected`` times or more."""
        return [
            (k, self.picked.get(k, 0), e)
            for k, e in sorted(self.expected.items())
            if e >= min_expected and self.picked.get(k, 0) < ratio * e
        ]

    def to_dict(self) -> dict:
        """``{kind: [picked, expected]}``, expected rounded to 0.01 (log and checkpoint)."""
        return {k: [self.picked.get(k, 0), round(e, 2)] for k, e in sorted(self.expected.items())}

    @classmethod
    def from_dict(cls, d: dict | None) -> "KindCoverage":
        """Inverse of :meth:`to_dict` (``None``: empty, as in a checkpoint made without it)."""
        cov = cls()
        for k, (p, e) in (d or {}).items():
            cov.picked[k], cov.expected[k] = int(p), float(e)
        return cov


def left_behind_message(sampler: str, kind: str, picked: int, expected: float) -> str:
    """The one-line warning for a kind :meth:`KindCoverage.left_behind` reports."""
    return (
        f"warning: {sampler} has trained subnets with {kind} (a residual path of an average pool alone) "
        f"{picked} {'time' if picked == 1 else 'times'} where a random pick among its candidates would have trained about {expected:.0f}: "
        "such subnets fall behind the others (docs/train.md, sampling); --sampler uniform trains every kind alike"
    )


__all__ = ["LEFT_BEHIND_MIN_EXPECTED", "LEFT_BEHIND_RATIO", "KindCoverage", "left_behind_message"]
