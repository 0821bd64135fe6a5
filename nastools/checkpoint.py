"""Supernet checkpoints: ``runs/<name>/supernet.pt``.

A checkpoint is a ``torch.save`` of a plain dict (loadable with ``weights_only=True``)::

    {"format": "nastools.checkpoint/1", "space": <space definition>, "fingerprint": "...",
     "model": <supernet state_dict>, ...training state (optimizer, schedule, RNG, epoch)...}

Writes are atomic. Loading checks the format and the space's fingerprint, so a checkpoint
of another space, or a corrupted file, is a one-line error and nothing is overwritten.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

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


def _run_arg(run_or_path: str | Path, path: Path) -> str:
    """What to pass as ``--run`` to train into ``path``: the name of a run under runs/, else
    its folder (``--run tmp`` would train into runs/tmp, not /tmp)."""
    folder = path.parent
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


def load_checkpoint(run_or_path: str | Path, space: SearchSpace | str | None = None, map_location: str = "cpu") -> dict:
    """Read a checkpoint (``weights_only=True``) and check its format and space."""
    import torch

    path = checkpoint_path(run_or_path)
    if path.is_dir():
        raise NastoolsError(f"checkpoint {str(path)!r} is a folder, not a checkpoint file")
    if not path.is_file():
        raise NastoolsError(
            f"no checkpoint at {str(path)!r}: train a supernet first (nastools train --run {_run_arg(run_or_path, path)}) or pass --run"
        )
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch's legacy unpickler raises KeyError, struct.error, ... on junk
        raise NastoolsError(f"checkpoint {str(path)!r} is corrupted or not a nastools checkpoint ({brief(exc, 160)})") from None
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        got = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise NastoolsError(f"checkpoint {str(path)!r}: format {got!r}, expected {CHECKPOINT_FORMAT!r}")
    if space is not None:
        sp = load_space(space)
        if data.get("fingerprint") != sp.fingerprint:
            raise NastoolsError(
                f"checkpoint {str(path)!r} was trained on space {data.get('space', {}).get('name')!r} "
                f"(fingerprint {data.get('fingerprint')}), not on {sp.name!r} ({sp.fingerprint}); "
                f"pass the matching --space or another --run"
            )
    return data


def checkpoint_space(data: dict) -> SearchSpace:
    """The search space stored in a loaded checkpoint."""
    return space_from_dict(data["space"], source="checkpoint space")


def run_splits(data: dict, dataset: str | None = None, data_dir: str | Path | None = None):
    """The dataset splits of the run whose loaded checkpoint is ``data``: its dataset and
    folder unless ``dataset``/``data_dir`` say otherwise, and its validation slice (the
    run's ``val_size`` and ``seed``), so that no "val" image is one the supernet trained on."""
    from nastools.data import load_splits

    cfg = (data.get("train") or {}).get("config") or {}
    name = dataset or cfg.get("dataset") or "fashion-mnist"
    folder = data_dir or (cfg.get("data") if name == (cfg.get("dataset") or "fashion-mnist") else None)
    return load_splits(name, folder, val_size=cfg.get("val_size", 5000), seed=int(cfg.get("seed", 0)))


def load_supernet(run_or_path: str | Path, space: SearchSpace | str | None = None, map_location: str = "cpu"):
    """A :class:`~nastools.supernet.Supernet` with the weights of a run's checkpoint."""
    from nastools.supernet import Supernet

    data = load_checkpoint(run_or_path, space, map_location)
    net = Supernet(checkpoint_space(data))
    net.load_state_dict(data["model"])
    return net.to(map_location)
