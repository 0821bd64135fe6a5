"""Supernet checkpoints: ``runs/<name>/supernet.pt``.

A checkpoint is a ``torch.save`` of a plain dict (loadable with ``weights_only=True``)::

    {"format": "nastools.checkpoint/1", "space": <space definition>, "fingerprint": "...",
     "model": <supernet state_dict>, ...training state (optimizer, schedule, RNG, epoch)...}

Writes are atomic. Loading validates the whole file before any use: its format, its space
(a valid definition, the one asked for), every weight tensor its space's supernet has, with
the right shape and finite values, and (for a resume) the training state. A checkpoint of
another space, a corrupted, foreign or diverged one is a one-line error naming the file and
what is wrong, and nothing is overwritten.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Mapping

from nastools.errors import NastoolsError, brief
from nastools.space import SearchSpace, load_space, space_from_dict

CHECKPOINT_FORMAT = "nastools.checkpoint/1"
CHECKPOINT_NAME = "supernet.pt"
RUNS_DIR = Path("runs")


def run_dir(run: str | Path) -> Path:
    """A run's folder: a name means ``runs/<name>``; a path (with a slash) is used as is."""
    run = str(run)
    if not run.strip():
        raise NastoolsError("--run: empty run name; give a name (runs/NAME) or a folder")
    if "/" in run or run.startswith("."):
        return Path(run)
    return RUNS_DIR / run


def checkpoint_path(run_or_path: str | Path) -> Path:
    """The checkpoint file of a run name, a run folder or a checkpoint file."""
    p = Path(run_or_path)
    if p.suffix == ".pt":
        return p
    d = run_dir(run_or_path)
    return d / CHECKPOINT_NAME


def find_checkpoint(run_or_path: str | Path) -> Path:
    """The checkpoint to read for a run name, folder or file: ``checkpoint_path``, or, for a
    bare name whose ``runs/<name>/supernet.pt`` does not exist, the shipped supernet of that
    name (:mod:`nastools.pretrained`) when there is one."""
    path = checkpoint_path(run_or_path)
    if path.exists() or not isinstance(run_or_path, str) or path != RUNS_DIR / run_or_path / CHECKPOINT_NAME:
        return path
    from nastools.pretrained import pretrained_checkpoint

    return pretrained_checkpoint(run_or_path) or path


def run_arg(path: str | Path) -> str:
    """The ``--run`` value naming the run folder that holds the file ``path`` (a checkpoint),
    for messages that tell the user what to run: the run's name when the folder is
    ``runs/<name>``, else the folder itself (``--run tmp`` would mean runs/tmp, not /tmp).

    >>> run_arg("runs/fmnist/supernet.pt"), run_arg("/tmp/supernet.pt")
    ('fmnist', '/tmp')
    """
    folder = Path(path).parent
    return folder.name if folder == RUNS_DIR / folder.name else str(folder)


def save_checkpoint(path: str | Path, supernet, **state: Any) -> Path:
    """Atomically write the supernet's weights, its space and any extra ``state``."""
    import torch

    from nastools.io import atomic_write

    sp: SearchSpace = supernet.space
    data = {
        "format": CHECKPOINT_FORMAT,
        "space": sp.definition(),
        "fingerprint": sp.fingerprint,
        "model": supernet.state_dict(),
        **state,
    }
    buf = io.BytesIO()
    torch.save(data, buf)
    return atomic_write(path, lambda f: f.write(buf.getvalue()), mode="wb")


def load_checkpoint(
    run_or_path: str | Path, space: SearchSpace | str | None = None, map_location: str = "cpu", *, train: bool = False
) -> dict:
    """Read a checkpoint (``weights_only=True``) and validate it: its format, its space (the
    one given, if any), its weights (:func:`check_weights`) and training record and, with
    ``train`` (a resume), its training state (:func:`check_train_state`). Every problem is
    one :class:`NastoolsError` line naming the file. A bare run name without a checkpoint of
    its own reads the shipped supernet of that name, if any."""
    import torch

    path = find_checkpoint(run_or_path)
    if path.is_dir():
        raise NastoolsError(f"checkpoint {str(path)!r} is a folder, not a checkpoint file")
    if not path.exists():
        raise NastoolsError(f"no checkpoint at {str(path)!r}: train a supernet first (nastools train --run {run_arg(path)}) or pass --run")
    if not path.is_file():
        raise NastoolsError(f"checkpoint {str(path)!r} is not a regular file (a device or a pipe?): give the path of a checkpoint file")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch's legacy unpickler raises KeyError, struct.error, ... on junk
        raise NastoolsError(f"checkpoint {str(path)!r} is corrupted or not a nastools checkpoint ({brief(exc, 160)})") from None
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        got = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise NastoolsError(f"checkpoint {str(path)!r}: format {brief(repr(got), 80)}, expected {CHECKPOINT_FORMAT!r}")
    where = f"checkpoint {str(path)!r}"
    for key in ("space", "model"):
        if key not in data:
            raise NastoolsError(f"{where} has no {key!r} entry: a damaged or foreign file; train again or pass another --run")
    try:
        stored = space_from_dict(data["space"], source="its space")
    except NastoolsError as exc:
        raise NastoolsError(f"{where}: {exc}") from None
    if space is not None:
        sp = load_space(space)
        if stored.fingerprint != sp.fingerprint:
            raise NastoolsError(
                f"checkpoint {str(path)!r} was trained on space {stored.name!r} "
                f"(fingerprint {stored.fingerprint}), not on {sp.name!r} ({sp.fingerprint}); "
                f"pass the matching --space or another --run"
            )
    check_weights(data["model"], stored, where)
    for key in ("train", "trained"):  # a run's training state; a shipped supernet's training record
        if key in data:
            check_train_state(data[key], data["model"], stored, where, resume=train and key == "train")
    if train and "train" not in data:
        raise NastoolsError(f"{where} holds no training state, so it cannot be resumed")
    return data


def _meta_supernet(space: SearchSpace):
    """The supernet of ``space`` on torch's meta device: its tensors' names and shapes, no memory."""
    import torch

    from nastools.supernet import Supernet

    with torch.device("meta"):
        return Supernet(space)


def _shape(t) -> str:
    return "[" + ", ".join(str(d) for d in t.shape) + "]"


def check_weights(state: Any, space: SearchSpace, where: str = "checkpoint") -> None:
    """Check that ``state`` holds exactly the tensors of ``space``'s supernet (the unused
    shortcut weights of older versions aside), each of its shape and kind, all values finite;
    one :class:`NastoolsError` line naming ``where`` and the first problem otherwise. Run
    before ``load_state_dict``, so a damaged file never surfaces as a torch error, and a
    diverged (NaN) one is not evaluated to 0% accuracy."""
    import torch

    from nastools.supernet.model import legacy_keys

    if not isinstance(state, Mapping):
        raise NastoolsError(f"{where}: 'model' is a {type(state).__name__}, expected the supernet's weights (a state_dict)")
    expected = _meta_supernet(space).state_dict()
    missing = [k for k in expected if k not in state]
    if missing:
        raise NastoolsError(
            f"{where}: {len(missing)} of the {len(expected)} weight tensors of space {space.name!r} are missing "
            f"(first: {missing[0]!r}): a damaged or foreign checkpoint; train again or pass another --run"
        )
    legacy = set(legacy_keys([k for k in state if isinstance(k, str)]))
    extra = [k for k in state if k not in expected and k not in legacy]
    if extra:
        raise NastoolsError(f"{where}: unexpected weight tensor {str(extra[0])!r}, which space {space.name!r}'s supernet does not have")
    bad = []
    for key, ref in expected.items():
        t = state[key]
        if not isinstance(t, torch.Tensor) or t.layout != torch.strided or t.device.type == "meta":
            raise NastoolsError(f"{where}: weight {key!r} is a {type(t).__name__}, expected a tensor of shape {_shape(ref)}")
        if t.shape != ref.shape:
            raise NastoolsError(f"{where}: weight {key!r} has shape {_shape(t)}, expected {_shape(ref)} for space {space.name!r}")
        if t.is_floating_point() != ref.is_floating_point() or t.is_complex():
            raise NastoolsError(f"{where}: weight {key!r} is {t.dtype}, expected {ref.dtype}")
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad.append(key)
    if bad:
        raise NastoolsError(
            f"{where}: {len(bad)} of {len(expected)} weight tensors hold NaN or infinite values (first: {bad[0]!r}): "
            f"the training diverged or the file is damaged; train again (a lower --lr) or use another checkpoint"
        )


def check_train_state(state: Any, model: Mapping, space: SearchSpace, where: str = "checkpoint", *, resume: bool = True) -> None:
    """Check a checkpoint's training state: a mapping whose ``config`` says how the run was
    trained (read by ``eval``/``search``/``export`` for its dataset and validation slice)
    and, for a ``resume``, the step, the optimizer state (one entry per weight, each of its
    weight's shape) and the random-generator states a resumed run restores."""
    import torch

    from nastools.supernet.model import legacy_keys

    if not isinstance(state, Mapping):
        raise NastoolsError(f"{where}: its training state is a {type(state).__name__}, expected a mapping")
    cfg = state.get("config", None if resume else {})
    if not isinstance(cfg, Mapping):
        raise NastoolsError(f"{where}: its training state has no valid config (got {type(cfg).__name__}): a damaged checkpoint")
    for key, kinds, text in (
        ("dataset", str, "a dataset name"),
        ("data", (str, type(None)), "a folder"),
        ("val_size", int, "an integer"),
        ("seed", int, "an integer"),
        ("image_recipe", str, "an image recipe name"),
    ):
        if key in cfg and (not isinstance(cfg[key], kinds) or isinstance(cfg[key], bool)):
            raise NastoolsError(f"{where}: training config {key} is {cfg[key]!r}, expected {text}")
    if not resume:
        return

    def fail(what: str) -> NastoolsError:
        return NastoolsError(f"{where}: its training state {what}, so the run cannot be resumed; train again or pass another --run")

    step = state.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise fail(f"has step {step!r}, expected a count >= 0")
    opt = state.get("optimizer")
    if not isinstance(opt, Mapping) or not isinstance(opt.get("state"), Mapping) or not isinstance(opt.get("param_groups"), list):
        raise fail("has no optimizer state")
    groups = opt["param_groups"]
    if not all(isinstance(g, Mapping) and isinstance(g.get("params"), list) for g in groups):
        raise fail("has a malformed optimizer parameter group")
    rng = state.get("sampler_rng")
    if not (
        isinstance(rng, (list, tuple)) and len(rng) == 3 and isinstance(rng[1], (list, tuple)) and all(isinstance(v, int) for v in rng[1])
    ):
        raise fail("has no valid sampler random state")
    trng = state.get("torch_rng")
    if not isinstance(trng, torch.Tensor) or trng.dtype != torch.uint8 or trng.ndim != 1:
        raise fail("has no valid torch random state")
    if legacy_keys(model):
        return  # renumbered on resume (upgrade_optimizer_state), which checks it
    # the parameters in optimizer order (trainer.param_groups): weights (ndim > 1), then BN and biases
    params = list(_meta_supernet(space).parameters())
    params = [p for p in params if p.ndim > 1] + [p for p in params if p.ndim <= 1]
    indices = [i for g in groups for i in g["params"]]
    if not all(type(i) is int for i in indices) or sorted(indices) != list(range(len(params))):
        raise fail(f"covers {len(indices)} weights, expected the supernet's {len(params)}")
    for i, entry in opt["state"].items():
        if not isinstance(i, int) or not 0 <= i < len(params) or not isinstance(entry, Mapping):
            raise fail(f"has an optimizer entry for {i!r}, expected weights 0 to {len(params) - 1}")
        for name, value in entry.items():
            if isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape != params[i].shape:
                raise fail(f"has a {name} of shape {_shape(value)} for a weight of shape {_shape(params[i])}")


def checkpoint_space(data: dict) -> SearchSpace:
    """The search space stored in a loaded checkpoint."""
    return space_from_dict(data["space"], source="checkpoint space")


def run_config(data: dict) -> dict:
    """The training config stored in a loaded checkpoint (empty when it has none)."""
    return (data.get("train") or data.get("trained") or {}).get("config") or {}


def run_splits(data: dict, dataset: str | None = None, data_dir: str | Path | None = None, *, image_size: int = 224):
    """The dataset splits of the run whose loaded checkpoint is ``data``: its dataset and
    folder unless ``dataset``/``data_dir`` say otherwise, and its validation slice (the
    run's ``val_size`` and ``seed``), so that no "val" image is one the supernet trained on.
    Image folders are read at ``image_size`` with the run's ``image_recipe``
    (:class:`nastools.data.ImageRecipe`), as grayscale or RGB as the run's space's
    ``input_channels`` say (:func:`nastools.data.load_splits`). Images whose channels or
    classes do not fit the run's space are a one-line error (:func:`nastools.data.check_fits`),
    and so are class folders not named by ImageNet's class ids for an imported supernet."""
    from nastools.data import check_fits, load_splits

    cfg = run_config(data)
    name = dataset or cfg.get("dataset") or "fashion-mnist"
    folder = data_dir or (cfg.get("data") if name == (cfg.get("dataset") or "fashion-mnist") else None)
    if not data_dir and folder and not Path(folder).exists():
        raise NastoolsError(
            f"the run's dataset folder {str(folder)!r} (its --data when trained"
            + (f", relative to the folder the command runs in: {str(Path.cwd())!r}" if not Path(folder).is_absolute() else "")
            + ") is not there: pass --data DIR"
        )
    space = checkpoint_space(data)
    splits = load_splits(
        name,
        folder,
        val_size=cfg.get("val_size", 5000),
        seed=int(cfg.get("seed", 0)),
        image_size=image_size,
        image_recipe=cfg.get("image_recipe"),
        channels=space.input_channels,
        hold_out_hint="; an imported supernet's run holds out that many (ImageNet's train/ has 1.28 million images)"
        if data.get("imported")
        else None,
    )
    check_fits(splits, space, folder)
    if data.get("imported") and splits.name == "imagefolder":  # labels are ImageNet's, in WordNet-id order
        from nastools.importers.attentivenas import check_imagenet_classes

        check_imagenet_classes(splits.classes, folder)
    return splits


def load_supernet(run_or_path: str | Path, space: SearchSpace | str | None = None, map_location: str = "cpu"):
    """A :class:`~nastools.supernet.Supernet` with the weights of a run's checkpoint."""
    from nastools.supernet import Supernet

    data = load_checkpoint(run_or_path, space, map_location)
    net = Supernet(checkpoint_space(data))
    net.load_state_dict(data["model"])
    return net.to(map_location)
