"""Published AttentiveNAS and AlphaNet supernets as nastools runs.

facebookresearch/AttentiveNAS and facebookresearch/AlphaNet publish supernets of the space
that nastools calls ``attentivenas`` (same stages, choices, SE and head). Their files are
legacy ``torch.save`` pickles of ``{"state_dict": ..., "args": <config object>, ...}`` with
the "module." prefix of DistributedDataParallel. :func:`import_attentivenas` reads one
without running code from it (:mod:`nastools.importers.safe_pickle`), maps every tensor by
name and shape onto nastools' :class:`~nastools.supernet.Supernet` and writes
``runs/<name>/supernet.pt``.

How the two supernets correspond:

- module names differ (``blocks.<i>.mobile_inverted_conv.depth_conv.conv.conv.weight`` is
  ``stages.<s>.<j>.dw_conv.weight``); blocks are numbered through all stages there, per
  stage here;
- the head's feature mix is a bias-free 1x1 convolution there and a ``Linear`` with a bias
  here: the weight is reshaped and the bias set to zero, which computes the same function;
- the reference keeps tensors that no subnet uses: two BatchNorm "tracking" buffers per
  BatchNorm and a 1x1 shortcut convolution in every block, of which only a stage's first
  block can ever use one (later blocks map the stage's width onto itself). They are listed
  in the report and not imported.

Everything is checked before anything is written: a missing tensor, one of another shape or
kind, a tensor that neither model has, or a training config of another space is one
:class:`~nastools.errors.NastoolsError` line naming it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from nastools.errors import NastoolsError

SPACE = "attentivenas"
_STAGE_NAMES = ("mb1", "mb2", "mb3", "mb4", "mb5", "mb6", "mb7")

#: nastools name inside a block -> reference name inside ``blocks.<i>.``
_BLOCK = {
    "expand_conv.weight": "mobile_inverted_conv.inverted_bottleneck.conv.conv.weight",
    "expand_bn.": "mobile_inverted_conv.inverted_bottleneck.bn.bn.",
    "dw_conv.weight": "mobile_inverted_conv.depth_conv.conv.conv.weight",
    "dw_bn.": "mobile_inverted_conv.depth_conv.bn.bn.",
    "se.reduce.": "mobile_inverted_conv.depth_conv.se.fc.reduce.",
    "se.expand.": "mobile_inverted_conv.depth_conv.se.fc.expand.",
    "project_conv.weight": "mobile_inverted_conv.point_linear.conv.conv.weight",
    "project_bn.": "mobile_inverted_conv.point_linear.bn.bn.",
    "shortcut_conv.weight": "shortcut.conv.conv.weight",
}
#: nastools name outside the blocks -> reference name
_OUTER = {
    "stem.conv.weight": "first_conv.conv.conv.weight",
    "stem.bn.": "first_conv.bn.bn.",
    "head.conv.weight": "last_conv.final_expand_layer.conv.conv.weight",
    "head.bn.": "last_conv.final_expand_layer.bn.bn.",
    "head.mix.weight": "last_conv.feature_mix_layer.conv.conv.weight",
    "head.classifier.": "classifier.linear.linear.",
}
#: nastools tensors the reference does not have, and the value that makes them compute
#: what the reference computes
ZEROED = ("head.mix.bias",)
#: reference tensors that no subnet uses
_UNUSED_TRACKING = re.compile(r".+\.bn_tracking\.[01]\.(running_mean|running_var|num_batches_tracked)")
_SHORTCUT = re.compile(r"blocks\.(\d+)\.shortcut\.conv\.conv\.weight")

#: the Pareto models of the reference evaluation configs (AttentiveNAS; AlphaNet's A0-A4 and
#: A6 are the same, its A5 differs): resolution, widths (stem, 7 stages, head), depths,
#: kernels, expand ratios, as the reference writes them
PARETO: dict[str, dict[str, Any]] = {
    "a0": {
        "resolution": 192,
        "width": [16, 16, 24, 32, 64, 112, 192, 216, 1792],
        "kernel_size": [3, 3, 3, 3, 3, 3, 3],
        "expand_ratio": [1, 4, 4, 4, 4, 6, 6],
        "depth": [1, 3, 3, 3, 3, 3, 1],
    },
    "a1": {
        "resolution": 224,
        "width": [16, 16, 24, 32, 64, 112, 192, 216, 1984],
        "kernel_size": [3, 3, 3, 5, 3, 5, 3],
        "expand_ratio": [1, 4, 4, 4, 4, 6, 6],
        "depth": [1, 3, 3, 3, 3, 3, 1],
    },
    "a2": {
        "resolution": 224,
        "width": [16, 16, 24, 32, 64, 112, 200, 224, 1984],
        "kernel_size": [3, 3, 3, 3, 3, 5, 3],
        "expand_ratio": [1, 4, 5, 4, 4, 6, 6],
        "depth": [1, 3, 3, 3, 3, 4, 1],
    },
    "a3": {
        "resolution": 224,
        "width": [16, 16, 24, 32, 64, 112, 208, 224, 1984],
        "kernel_size": [3, 3, 3, 5, 3, 3, 3],
        "expand_ratio": [1, 4, 4, 4, 4, 6, 6],
        "depth": [2, 3, 3, 4, 3, 5, 1],
    },
    "a4": {
        "resolution": 256,
        "width": [16, 16, 24, 32, 64, 112, 192, 216, 1984],
        "kernel_size": [3, 3, 3, 5, 3, 5, 3],
        "expand_ratio": [1, 4, 4, 5, 4, 6, 6],
        "depth": [1, 3, 3, 4, 3, 5, 1],
    },
    "a5": {
        "resolution": 256,
        "width": [16, 16, 24, 32, 72, 112, 192, 216, 1792],
        "kernel_size": [3, 3, 3, 5, 3, 3, 3],
        "expand_ratio": [1, 4, 5, 4, 4, 6, 6],
        "depth": [1, 3, 3, 3, 4, 6, 1],
    },
    "a6": {
        "resolution": 288,
        "width": [16, 16, 24, 32, 64, 112, 216, 224, 1984],
        "kernel_size": [3, 3, 3, 3, 3, 5, 3],
        "expand_ratio": [1, 4, 6, 5, 4, 6, 6],
        "depth": [1, 3, 3, 4, 4, 6, 1],
    },
    "alphanet-a5": {
        "resolution": 256,
        "width": [16, 16, 24, 32, 64, 112, 208, 216, 1984],
        "kernel_size": [3, 3, 3, 3, 3, 5, 3],
        "expand_ratio": [1, 4, 4, 5, 4, 6, 6],
        "depth": [1, 3, 3, 4, 4, 5, 1],
    },
    "alphanet-a5-1": {
        "resolution": 288,
        "width": [16, 16, 24, 32, 64, 112, 200, 216, 1984],
        "kernel_size": [3, 3, 5, 5, 3, 3, 3],
        "expand_ratio": [1, 4, 4, 4, 5, 6, 6],
        "depth": [2, 3, 4, 3, 3, 5, 1],
    },
}
#: MFLOPs the AttentiveNAS README gives for A0-A6
PUBLISHED_MFLOPS = {"a0": 203, "a1": 279, "a2": 317, "a3": 357, "a4": 444, "a5": 491, "a6": 709}


@dataclass
class ImportReport:
    """What an import read, mapped, left out and wrote."""

    source: str
    layout: str  # the entry that held the weights: "state_dict", "model" or "" (a bare state_dict)
    prefix: str  # the prefix removed from every name ("module." or "")
    mapped: int  # reference tensors imported
    unused: list[str]  # reference tensors that no subnet uses, not imported
    zeroed: list[str]  # nastools tensors the reference lacks, set to zero
    config: dict[str, Any] | None = None  # the reference's training config, as plain data
    checkpoint: str | None = None
    archs: list[str] = field(default_factory=list)
    image_recipe: str | None = None  # how eval reads image folders for the run

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "layout": self.layout,
            "prefix": self.prefix,
            "mapped": self.mapped,
            "unused": self.unused,
            "zeroed": self.zeroed,
            "checkpoint": self.checkpoint,
            "archs": self.archs,
            "image_recipe": self.image_recipe,
        }


def _space(space=None):
    from nastools.space import load_space

    return load_space(space or SPACE)


def _stage_offsets(space) -> list[int]:
    """Reference block number of each stage's first block (blocks are numbered through all
    stages at their largest depth)."""
    out, n = [], 0
    for spec in space.stages:
        out.append(n)
        n += max(spec.depths)
    return out


def reference_name(key: str, offsets: list[int]) -> str | None:
    """The reference name of nastools supernet tensor ``key`` (None: the reference lacks it)."""
    if key in ZEROED:
        return None
    m = re.fullmatch(r"stages\.(\d+)\.(\d+)\.(.+)", key)
    table, rest, base = (_BLOCK, m.group(3), f"blocks.{offsets[int(m.group(1))] + int(m.group(2))}.") if m else (_OUTER, key, "")
    for ours, theirs in table.items():
        if rest == ours or (ours.endswith(".") and rest.startswith(ours)):
            return base + theirs + rest[len(ours) :]
    raise KeyError(key)  # a supernet tensor this table does not know: a nastools bug


def name_map(space=None) -> dict[str, str | None]:
    """nastools supernet tensor name -> reference name, for the ``attentivenas`` space."""
    import torch

    from nastools.supernet import Supernet

    sp = _space(space)
    with torch.device("meta"):
        keys = list(Supernet(sp).state_dict())
    offsets = _stage_offsets(sp)
    return {k: reference_name(k, offsets) for k in keys}


def _unused(name: str, first_blocks: set[int]) -> bool:
    if _UNUSED_TRACKING.fullmatch(name):
        return True
    m = _SHORTCUT.fullmatch(name)
    return bool(m) and int(m.group(1)) not in first_blocks


def find_state_dict(data: Any, where: str) -> tuple[Mapping[str, Any], str]:
    """The weights in a loaded file: its ``state_dict`` or ``model`` entry, or the file
    itself when it is a bare state_dict; with the name of the entry. A nastools checkpoint
    is a one-line error (it needs no import)."""
    import torch

    from nastools.checkpoint import CHECKPOINT_FORMAT
    from nastools.importers.safe_pickle import Foreign

    if isinstance(data, Foreign):
        raise NastoolsError(
            f"{where} holds a pickled {data.qualname} object, not a state_dict: save the model's state_dict() and import that"
        )
    if not isinstance(data, Mapping):
        raise NastoolsError(f"{where} holds a {type(data).__name__}, expected a dict with a 'state_dict' or 'model' entry")
    if data.get("format") == CHECKPOINT_FORMAT:
        raise NastoolsError(
            f"{where} is a nastools checkpoint already: eval, search and export take it as it is (--run with its path "
            "or folder); import reads the files AttentiveNAS and AlphaNet publish"
        )
    for layout in ("state_dict", "model"):
        if isinstance(data.get(layout), Mapping):
            return data[layout], layout
    if data and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in data.items()):
        return data, ""
    keys = ", ".join(repr(k) for k in list(data)[:8])
    raise NastoolsError(f"{where} has no 'state_dict' or 'model' entry (it has {keys}): not a supernet checkpoint")


def strip_prefix(state: Mapping[str, Any], where: str) -> tuple[dict[str, Any], str]:
    """``state`` without the "module." prefix of DistributedDataParallel (on any name that
    has it), and the prefix removed."""
    prefix = "module."
    if not any(isinstance(k, str) and k.startswith(prefix) for k in state):
        return dict(state), ""
    out: dict[str, Any] = {}
    for k, v in state.items():
        name = k[len(prefix) :] if isinstance(k, str) and k.startswith(prefix) else k
        if name in out:
            raise NastoolsError(f"{where}: tensor {name!r} is there both with and without the {prefix!r} prefix")
        out[name] = v
    return out, prefix


#: an ImageNet class folder's name: a WordNet id ("n01440764")
WNID = re.compile(r"n\d{8}")


def check_imagenet_classes(classes, data) -> None:
    """Raise a one-line :class:`NastoolsError` unless every class folder name in ``classes``
    (of the image folder ``data``) is an ImageNet WordNet id: the published classifiers'
    output ``i`` is the ``i``-th ImageNet class in sorted id order, which folders named
    otherwise do not follow (their labels would not be the model's)."""
    bad = [str(c) for c in classes if not WNID.fullmatch(str(c))]
    if not bad:
        return
    shown = ", ".join(repr(c) for c in bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
    raise NastoolsError(
        f"image folder {str(data)!r}: class folders {shown} are not ImageNet class ids (WordNet ids such as "
        f"'n01440764'); an imported supernet's output i is the i-th ImageNet class in sorted id order, so name "
        f"each class folder by its id, as ImageNet's train/ and val/ folders are"
    )


def _config_value(cfg: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(cfg, Mapping) or part not in cfg:
            return None
        cfg = cfg[part]
    return cfg


def check_config(config: Any, where: str, space=None) -> None:
    """Check the reference training config stored with the weights (as :func:`plain` data),
    where it has a ``supernet_config``: its choices must be those of the ``attentivenas``
    space. A config without one is not checked (the tensor shapes still are)."""
    sp = _space(space)
    sc = _config_value(config, "supernet_config")
    if not isinstance(sc, Mapping):
        return
    expect: dict[str, Any] = {
        "resolutions": list(sp.resolutions),
        "first_conv.c": list(sp.stem_widths),
        "first_conv.s": sp.stem_stride,
        "last_conv.c": list(sp.head_widths),
        "use_v3_head": True,
    }
    for name, spec in zip(_STAGE_NAMES, sp.stages):
        expect.update(
            {
                f"{name}.c": list(spec.widths),
                f"{name}.d": list(spec.depths),
                f"{name}.k": list(spec.kernels),
                f"{name}.t": [int(e) if float(e).is_integer() else e for e in spec.expands],
                f"{name}.s": spec.stride,
                f"{name}.se": spec.se,
            }
        )
    for key, want in expect.items():
        got = _config_value(sc, key)
        if isinstance(want, list) and not isinstance(got, list):
            got = [got] if got is not None else None
        if got != want:
            raise NastoolsError(
                f"{where}: its training config has supernet_config.{key} = {got!r}, the {sp.name!r} space has {want!r}: "
                f"a supernet of another space, which nastools cannot import"
            )
    n_classes = _config_value(config, "n_classes")
    if n_classes is not None and int(n_classes) != sp.num_classes:
        raise NastoolsError(f"{where}: its training config has n_classes = {n_classes!r}, the {sp.name!r} space has {sp.num_classes}")


def _shape(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def map_state(state: Mapping[str, Any], where: str, space=None) -> tuple[dict[str, Any], list[str]]:
    """The nastools supernet state_dict for reference tensors ``state`` (names without a
    prefix), and the reference tensors that no subnet uses (left out). A missing tensor,
    one of another shape or kind, non-finite values or a tensor the reference supernet
    does not have is a one-line :class:`NastoolsError` naming it."""
    import torch

    from nastools.supernet import Supernet

    sp = _space(space)
    with torch.device("meta"):
        expected = Supernet(sp).state_dict()
    offsets = _stage_offsets(sp)
    names = {k: reference_name(k, offsets) for k in expected}
    out: dict[str, Any] = {}
    for key, ref in expected.items():
        theirs = names[key]
        if theirs is None:
            out[key] = torch.zeros(ref.shape, dtype=ref.dtype)
            continue
        if theirs not in state:
            raise NastoolsError(
                f"{where}: tensor {theirs!r} is missing (nastools {key!r}): not an AttentiveNAS/AlphaNet supernet of "
                f"the {sp.name!r} space, or a damaged file"
            )
        t = state[theirs]
        want = tuple(ref.shape) + ((1, 1) if key == "head.mix.weight" else ())
        if not isinstance(t, torch.Tensor):
            raise NastoolsError(f"{where}: {theirs!r} is a {type(t).__name__}, expected a tensor of shape {_shape(want)}")
        if tuple(t.shape) != want:
            raise NastoolsError(
                f"{where}: tensor {theirs!r} has shape {_shape(t.shape)}, expected {_shape(want)} (nastools {key!r} of "
                f"the {sp.name!r} space): a supernet of another space"
            )
        if t.is_floating_point() != ref.is_floating_point() or t.is_complex() or t.layout != torch.strided:
            raise NastoolsError(f"{where}: tensor {theirs!r} is {t.dtype} ({t.layout}), expected {ref.dtype}")
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise NastoolsError(f"{where}: tensor {theirs!r} holds NaN or infinite values: a damaged or diverged checkpoint")
        out[key] = t.detach().reshape(ref.shape).to(ref.dtype)
    used = {v for v in names.values() if v is not None}
    first = set(offsets)
    unused, extra = [], []
    for name in state:
        if name in used:
            continue
        (unused if isinstance(name, str) and _unused(name, first) else extra).append(name)
    if extra:
        raise NastoolsError(
            f"{where}: tensor {str(extra[0])!r} is not part of an AttentiveNAS supernet of the {sp.name!r} space "
            f"({len(extra)} such tensors): a checkpoint of another model"
        )
    return out, unused


def reference_arch(cfg: Mapping[str, Any], space=None):
    """The nastools :class:`~nastools.space.Arch` of a reference subnet setting
    (``resolution``, ``width`` of stem, stages and head, per-stage ``depth``,
    ``kernel_size`` and ``expand_ratio``), as the reference's configs write them."""
    sp = _space(space)
    try:
        width, n = list(cfg["width"]), len(sp.stages)
        if len(width) != n + 2 or any(len(cfg[k]) != n for k in ("depth", "kernel_size", "expand_ratio")):
            raise ValueError(f"expected {n + 2} widths and {n} depths, kernel sizes and expand ratios")
        data = {
            "format": "nastools.arch/1",
            "space": sp.name,
            "resolution": cfg["resolution"],
            "stem": width[0],
            "stages": [
                {"width": w, "depth": d, "kernel": k, "expand": e}
                for w, d, k, e in zip(width[1:-1], cfg["depth"], cfg["kernel_size"], cfg["expand_ratio"])
            ],
            "head": width[-1],
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise NastoolsError(f"reference subnet setting {dict(cfg)!r}: {exc}") from None
    return sp.arch_from_dict(data)


def read_reference(path: str | Path, space=None) -> tuple[dict[str, Any], ImportReport]:
    """Read a reference checkpoint file and map it: the nastools supernet state_dict and
    the report (nothing written)."""
    from nastools.importers.safe_pickle import plain, safe_torch_load

    where = f"checkpoint {str(path)!r}"
    data = safe_torch_load(path)
    state, layout = find_state_dict(data, where)
    state, prefix = strip_prefix(state, where)
    config = plain(data.get("args")) if isinstance(data, Mapping) and "args" in data else None
    if config is not None:
        check_config(config, where, space)
    mapped, unused = map_state(state, where, space)
    report = ImportReport(
        source=str(path), layout=layout, prefix=prefix, mapped=len(state) - len(unused), unused=unused, zeroed=list(ZEROED), config=config
    )
    return mapped, report


def detect_recipe(config: Mapping[str, Any] | None) -> str:
    """The image recipe (:data:`nastools.data.IMAGE_RECIPES`) of the reference evaluation
    that goes with a checkpoint's training config: ``alphanet`` for AlphaNet's (its
    alpha-divergence settings or experiment name), else ``attentivenas``."""
    cfg = config if isinstance(config, Mapping) else {}
    if any(k in cfg for k in ("alpha_min", "alpha_max", "iw_clip")) or "alphanet" in str(cfg.get("exp_name", "")).lower():
        return "alphanet"
    return "attentivenas"


def import_attentivenas(
    path: str | Path, run: str | Path = SPACE, *, force: bool = False, arch_files: bool = True, image_recipe: str | None = None
) -> ImportReport:
    """Turn a published AttentiveNAS or AlphaNet supernet checkpoint into the nastools run
    ``run``: ``runs/<run>/supernet.pt`` (``nastools search/eval/export --run <run>`` take
    it) and, with ``arch_files``, the reference's Pareto models as arch files in
    ``runs/<run>/archs/``. Nothing is written unless every tensor maps; the checkpoint is
    written last, so an import stopped midway (Ctrl-C) leaves no ``supernet.pt`` and runs
    again without ``force``; an existing checkpoint of the run is replaced only with ``force``.

    The run's training config names ``image_recipe``, how ``nastools eval`` reads image
    folders for it (``attentivenas`` or ``alphanet``, the reference evaluations; default:
    :func:`detect_recipe` of the checkpoint's training config)."""
    from nastools.checkpoint import checkpoint_path, run_dir, save_checkpoint
    from nastools.io import writable_dir
    from nastools.lock import OutputLock
    from nastools.supernet import Supernet

    folder = run_dir(run)
    out = checkpoint_path(folder)
    if out.exists() and not force:
        raise NastoolsError(f"run {str(run)!r} already has a supernet ({str(out)!r}): pass --force to replace it, or another --run")
    writable_dir(folder, "--run")  # before the checkpoint is read and converted
    from nastools.data import image_recipe as find_recipe

    if image_recipe is not None:
        find_recipe(image_recipe)  # an unknown name fails before the file is read
    sp = _space()
    state, report = read_reference(path, sp)
    report.image_recipe = image_recipe or detect_recipe(report.config)
    net = Supernet(sp)
    net.load_state_dict(state)
    archs = {name: reference_arch(cfg, sp) for name, cfg in PARETO.items()} if arch_files else {}
    # eval/search/export read ImageNet from --data, as the reference evaluation does
    trained = {"config": {"dataset": "imagefolder", "data": None, "image_recipe": report.image_recipe}}
    imported = {
        "from": str(path),
        "layout": report.layout,
        "prefix": report.prefix,
        "unused": report.unused,
        "zeroed": report.zeroed,
        "config": report.config,
    }
    with OutputLock(folder, "run", elsewhere="pass another --run"):
        for name, arch in archs.items():
            p = folder / "archs" / f"{name}.json"
            p.parent.mkdir(parents=True, exist_ok=True)
            arch.save(p)
            report.archs.append(str(p))
        # the checkpoint last: an import stopped before it leaves no run that looks complete
        save_checkpoint(out, net, trained=trained, imported=imported)
    report.checkpoint = str(out)
    return report
