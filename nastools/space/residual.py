"""The kinds of residual path a subnet has at its stride-2 stages.

A stage's first block adds its input to its output through a shortcut. Where the block has
stride > 1 the shortcut average-pools the input; where the stage's width differs from the
width it is fed (the stem's, or the stage before's), a 1x1 convolution follows the pool.
So a stride-2 stage that keeps the width it is fed has a residual path of an average pool
alone, with no weights, and every other stride-2 stage pools and convolves (AttentiveNAS's
``DynamicShortcutLayer`` builds the same two). The two are different functions of the shared
weights: a sampler that rarely trains one kind leaves every subnet of that kind behind
(docs/train.md), which is why :class:`nastools.train.coverage.KindCoverage` counts them.
"""

from __future__ import annotations

from nastools.space.arch import Arch
from nastools.space.searchspace import SearchSpace

#: the kind of a subnet none of whose stride-2 stages keeps its input width
CONV_EVERYWHERE = "conv everywhere"


def pool_only_stages(space: SearchSpace, arch: Arch) -> tuple[str, ...]:
    """The names of ``arch``'s stages whose first block's residual path is an average pool
    alone: stride > 1 and the stage's width equal to the width it is fed."""
    fed, out = arch.stem, []
    for spec, st in zip(space.stages, arch.stages):
        if spec.stride > 1 and st.width == fed:
            out.append(spec.name)
        fed = st.width
    return tuple(out)


def residual_kind(space: SearchSpace, arch: Arch) -> str:
    """A label of :func:`pool_only_stages`: ``'pool at mb3'``, ``'pool at mb2, mb3'``, or
    :data:`CONV_EVERYWHERE`."""
    names = pool_only_stages(space, arch)
    return f"pool at {', '.join(names)}" if names else CONV_EVERYWHERE


def has_pool_only_kinds(space: SearchSpace) -> bool:
    """Whether any subnet of ``space`` has a pool-only residual path: some stride-2 stage
    offers a width that the stem or the stage before it offers too."""
    fed = set(space.stem_widths)
    for spec in space.stages:
        if spec.stride > 1 and fed & set(spec.widths):
            return True
        fed = set(spec.widths)
    return False


__all__ = ["CONV_EVERYWHERE", "has_pool_only_kinds", "pool_only_stages", "residual_kind"]
