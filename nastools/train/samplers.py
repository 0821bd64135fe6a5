"""Which subnets a training step trains: the sandwich rule with uniform or attentive middles.

Every step trains the max subnet, ``num_archs - 2`` middle subnets and the min subnet.
A sampler only decides the middles:

- ``uniform`` (BigNAS): each middle is a uniformly random arch.
- ``attentive-best`` / ``attentive-worst`` (AttentiveNAS BestUp / WorstUp): each middle
  draws a FLOPs target from the space's FLOPs distribution (estimated once by sampling,
  then discretised), samples ``candidates`` archs near that target, scores them with a
  ``score`` callback (the loss on the current minibatch, or a predictor's predicted error)
  and trains the best (lowest score) or the worst (highest).

Samplers draw only from the ``random.Random`` they are given, so every DDP rank with the
same seed samples the same archs, and a resumed run continues the same sequence.
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass
from typing import Callable, Sequence

from nastools.errors import NastoolsError
from nastools.space import Arch, SearchSpace

#: score(candidates) -> one number per candidate, lower = better (e.g. the minibatch loss)
Scorer = Callable[[Sequence[Arch]], Sequence[float]]


@dataclass(frozen=True)
class FlopsDistribution:
    """A discretised FLOPs distribution of a space's uniformly sampled archs.

    ``edges`` are ``len(probs) + 1`` bin edges (MACs); a draw picks a bin by its probability,
    then a target uniformly inside it.
    """

    edges: tuple[float, ...]
    probs: tuple[float, ...]

    @classmethod
    def estimate(cls, space: SearchSpace, samples: int = 20000, bins: int = 25, seed: int = 0) -> "FlopsDistribution":
        """Sample ``samples`` archs uniformly and histogram their FLOPs into ``bins`` equal bins
        between the min and max subnet's FLOPs."""
        rng = random.Random(seed)
        lo, hi = float(space.flops(space.min_arch())), float(space.flops(space.max_arch()))
        if hi <= lo:  # every subnet costs the same (e.g. a space that only varies kernels of a 1x1 grid)
            return cls((lo, hi), (1.0,))
        width = (hi - lo) / bins
        counts = [0] * bins
        for _ in range(samples):
            f = space.flops(space.sample(rng))
            counts[min(bins - 1, int((f - lo) / width))] += 1
        total = sum(counts)
        return cls(tuple(lo + i * width for i in range(bins + 1)), tuple(c / total for c in counts))

    def sample(self, rng: random.Random) -> float:
        """A FLOPs target drawn from the distribution."""
        u = rng.random()
        cum = 0.0
        i = len(self.probs) - 1
        for j, p in enumerate(self.probs):
            cum += p
            if u < cum:
                i = j
                break
        return self.edges[i] + rng.random() * (self.edges[i + 1] - self.edges[i])

    def bin_of(self, flops: float) -> int:
        """The bin index of a FLOPs value (clamped to the first/last bin)."""
        return min(len(self.probs) - 1, max(0, bisect.bisect_right(self.edges, flops) - 1))

    def to_dict(self) -> dict:
        return {"edges": list(self.edges), "probs": list(self.probs)}

    @classmethod
    def from_dict(cls, d: dict) -> "FlopsDistribution":
        return cls(tuple(float(x) for x in d["edges"]), tuple(float(x) for x in d["probs"]))


class Sampler:
    """Base: the sandwich rule. Subclasses pick the middle archs."""

    name = "base"

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        self.max_arch = space.max_arch()
        self.min_arch = space.min_arch()

    def middle(self, rng: random.Random, score: Scorer | None) -> Arch:
        raise NotImplementedError

    def step_archs(self, num_archs: int, rng: random.Random, score: Scorer | None = None) -> list[Arch]:
        """The archs one step trains, in order: max, ``num_archs - 2`` middles, min."""
        if num_archs < 2:
            raise NastoolsError(f"--num-archs {num_archs}: expected at least 2 (the max and the min subnet)")
        return [self.max_arch, *(self.middle(rng, score) for _ in range(num_archs - 2)), self.min_arch]


class UniformSampler(Sampler):
    """BigNAS sandwich: the middles are uniformly random archs."""

    name = "uniform"

    def middle(self, rng: random.Random, score: Scorer | None) -> Arch:
        return self.space.sample(rng)


class AttentiveSampler(Sampler):
    """AttentiveNAS: a FLOPs target from the space's distribution, ``candidates`` archs near
    it, the best (``worst=False``) or worst scoring one trained."""

    def __init__(
        self,
        space: SearchSpace,
        *,
        worst: bool = False,
        candidates: int = 3,
        flops_dist: FlopsDistribution | None = None,
        tolerance: float = 0.05,
    ) -> None:
        super().__init__(space)
        if candidates < 1:
            raise NastoolsError(f"--candidates {candidates}: expected at least 1")
        self.worst = worst
        self.name = "attentive-worst" if worst else "attentive-best"
        self.candidates = candidates
        self.tolerance = tolerance
        self.flops_dist = flops_dist or FlopsDistribution.estimate(space)
        self.last_scores: list[float] = []
        self.last_candidates: list[Arch] = []  # the candidates of the last middle, for KindCoverage

    def propose(self, rng: random.Random) -> list[Arch]:
        """``candidates`` archs near one FLOPs target drawn from the distribution."""
        target = self.flops_dist.sample(rng)
        return [self.space.sample_near_flops(target, rng, tolerance=self.tolerance) for _ in range(self.candidates)]

    def middle(self, rng: random.Random, score: Scorer | None) -> Arch:
        cands = self.propose(rng)
        self.last_candidates = cands
        if len(cands) == 1:
            return cands[0]
        if score is None:
            raise ValueError("an attentive sampler needs a score callback")
        scores = [float(s) for s in score(cands)]
        self.last_scores = scores
        pick = max if self.worst else min
        return cands[scores.index(pick(scores))]


SAMPLERS = ("uniform", "attentive-best", "attentive-worst")


def make_sampler(name: str, space: SearchSpace, *, candidates: int = 3, flops_dist: FlopsDistribution | None = None) -> Sampler:
    """A sampler by name: one of :data:`SAMPLERS`."""
    if name == "uniform":
        return UniformSampler(space)
    if name in ("attentive-best", "attentive-worst"):
        return AttentiveSampler(space, worst=name.endswith("worst"), candidates=candidates, flops_dist=flops_dist)
    raise NastoolsError(f"unknown sampler {name!r}: expected one of {', '.join(SAMPLERS)}")


__all__ = ["SAMPLERS", "AttentiveSampler", "FlopsDistribution", "Sampler", "UniformSampler", "make_sampler"]
