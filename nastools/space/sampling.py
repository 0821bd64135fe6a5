"""Drawing archs from a space: the extremes, uniform sampling, mutation, crossover and
sampling near a FLOPs target. :class:`~nastools.space.SearchSpace` exposes each as a method."""

from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING, Any, Callable, Sequence

from nastools.errors import NastoolsError
from nastools.space.arch import Arch, StageArch
from nastools.space.units import format_count, parse_count

if TYPE_CHECKING:
    from nastools.space.searchspace import SearchSpace


def as_rng(seed: "random.Random | int | None") -> random.Random:
    """A ``random.Random`` from a seed, an existing generator, or ``None`` (fresh entropy)."""
    if isinstance(seed, random.Random):
        return seed
    return random.Random(seed)


def extreme_arch(space: "SearchSpace", pick: Callable[[Sequence[Any]], Any]) -> Arch:
    """The arch that takes ``pick`` (``min`` or ``max``) of every choice."""
    return Arch(
        space=space.name,
        resolution=pick(space.resolutions),
        stem=pick(space.stem_widths),
        stages=tuple(StageArch(pick(s.widths), pick(s.depths), pick(s.kernels), pick(s.expands)) for s in space.stages),
        head=pick(space.head_widths),
    )


def sample(space: "SearchSpace", rng: "random.Random | int | None" = None) -> Arch:
    """A uniformly random arch (each choice independent and uniform)."""
    choice = as_rng(rng).choice
    return Arch(
        space.name,
        choice(space.resolutions),
        choice(space.stem_widths),
        tuple(StageArch(choice(s.widths), choice(s.depths), choice(s.kernels), choice(s.expands)) for s in space.stages),
        choice(space.head_widths),
    )


def mutate(space: "SearchSpace", arch: Arch, prob: float, rng: "random.Random | int | None" = None) -> Arch:
    """Resample each choice of a validated ``arch`` independently with probability ``prob``."""
    r = as_rng(rng)

    def gene(value, options):
        return r.choice(options) if r.random() < prob else value

    return Arch(
        space.name,
        gene(arch.resolution, space.resolutions),
        gene(arch.stem, space.stem_widths),
        tuple(
            StageArch(gene(a.width, s.widths), gene(a.depth, s.depths), gene(a.kernel, s.kernels), gene(a.expand, s.expands))
            for a, s in zip(arch.stages, space.stages)
        ),
        gene(arch.head, space.head_widths),
    )


def crossover(space: "SearchSpace", a: Arch, b: Arch, rng: "random.Random | int | None" = None) -> Arch:
    """Uniform crossover of two validated archs: each choice taken from ``a`` or ``b`` with equal odds."""
    r = as_rng(rng)

    def pick(x, y):
        return x if r.random() < 0.5 else y

    return Arch(
        space.name,
        pick(a.resolution, b.resolution),
        pick(a.stem, b.stem),
        tuple(
            StageArch(pick(x.width, y.width), pick(x.depth, y.depth), pick(x.kernel, y.kernel), pick(x.expand, y.expand))
            for x, y in zip(a.stages, b.stages)
        ),
        pick(a.head, b.head),
    )


def sample_near_flops(
    space: "SearchSpace", target: float | str, rng: "random.Random | int | None" = None, *, tolerance: float = 0.05, max_tries: int = 500
) -> Arch:
    """An arch whose FLOPs lie within ``tolerance`` (relative) of ``target`` (a number or a
    count such as ``'20M'``); see :meth:`SearchSpace.sample_near_flops`."""
    if isinstance(target, str):
        target = parse_count(target)
    elif isinstance(target, bool) or not isinstance(target, (int, float)):
        raise NastoolsError(f"FLOPs target {target!r}: expected a number or a count such as 20M")
    lo_f, hi_f = space.flops(space.min_arch()), space.flops(space.max_arch())
    if not lo_f * (1 - tolerance) <= target <= hi_f * (1 + tolerance):
        raise NastoolsError(
            f"FLOPs target {format_count(target)} is outside space {space.name!r}, which spans {format_count(lo_f)} to {format_count(hi_f)}"
        )
    r = as_rng(rng)
    best, best_err = None, math.inf
    rejection = max(1, max_tries // 5)
    for _ in range(rejection):
        arch = space.sample(r)
        err = abs(space.flops(arch) - target) / target
        if err <= tolerance:
            return arch
        if err < best_err:
            best, best_err = arch, err
    genes = 3 + 4 * len(space.stages)
    for _ in range(max_tries - rejection):
        cand = space.mutate(best, 1.5 / genes, r)
        err = abs(space.flops(cand) - target) / target
        if err < best_err:
            best, best_err = cand, err
            if err <= tolerance:
                break
    return best


__all__ = ["as_rng", "crossover", "extreme_arch", "mutate", "sample", "sample_near_flops"]
