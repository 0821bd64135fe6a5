"""Search spaces and the :class:`Arch` genotype: no torch here.

A search space is data (a YAML file): input size and classes, resolutions, a stem, a list of
MBConv stages and a MobileNetV3 head. An :class:`Arch` picks one value per choice: the
resolution, the stem width, per stage its width, depth, kernel and expand ratio (chosen once
per stage, as AttentiveNAS does), and the head width.

Everything about cost is analytic: :meth:`SearchSpace.blocks` decodes an arch into plain
:class:`Block` records (the same records the supernet builds and the latency table keys on),
and FLOPs (multiply-accumulates of convolutions and linear layers) and parameters follow from
them. Costs are memoised per stage, so sampling with FLOPs runs at tens of thousands of
archs per second.

Modules: :mod:`~nastools.space.arch` (the ``Arch``, ``StageArch`` and ``Block`` records, arch
JSON), :mod:`~nastools.space.searchspace` (``SearchSpace``: identity, validation, decoding),
:mod:`~nastools.space.cost` (FLOPs and params), :mod:`~nastools.space.sampling` (sampling,
mutation, crossover), :mod:`~nastools.space.schema` (space YAML, the packaged spaces) and
:mod:`~nastools.space.units` (counts and numbers as people write them).
"""

from nastools.space.arch import (
    ACTIVATIONS,
    ARCH_FORMAT,
    GATES,
    Arch,
    Block,
    StageArch,
    check_name,
    conv_out,
    load_arch,
    make_divisible,
    parse_arch,
)
from nastools.space.sampling import as_rng
from nastools.space.schema import LIMITS, SPACES_DIR, list_spaces, load_space, parse_yaml, space_from_dict
from nastools.space.searchspace import SearchSpace, StageSpec
from nastools.space.units import format_count, parse_count, parse_time

__all__ = [
    "ACTIVATIONS",
    "ARCH_FORMAT",
    "GATES",
    "LIMITS",
    "SPACES_DIR",
    "Arch",
    "Block",
    "SearchSpace",
    "StageArch",
    "StageSpec",
    "as_rng",
    "check_name",
    "conv_out",
    "format_count",
    "list_spaces",
    "load_arch",
    "load_space",
    "make_divisible",
    "parse_arch",
    "parse_count",
    "parse_time",
    "parse_yaml",
    "space_from_dict",
]
