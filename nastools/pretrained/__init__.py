"""Trained supernets that ship with nastools, addressed by name like a run.

Each lives in a folder of this package, ``nastools/pretrained/<name>/``:

- ``supernet.pt``: a weights-only checkpoint (``nastools.checkpoint/1`` with the space, its
  fingerprint, the weights and a ``trained`` record: the training config, steps and per-epoch
  validation top-1; no optimizer or RNG state), loadable with ``torch.load(weights_only=True)``;
- ``train.jsonl``: the training run's log;
- ``card.json``: how it was trained (the exact command, the nastools commit, machine, dates)
  and what it scores;
- ``README.md``: the same for people.

``nastools search/eval/export --run <name>`` read a shipped supernet in place (nothing is
copied) when ``runs/<name>/supernet.pt`` does not exist; their outputs go to ``runs/<name>/``
as for any run.
"""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path
from typing import Any

from nastools.errors import NastoolsError

WEIGHTS = "supernet.pt"
CARD = "card.json"
#: the supernet ``nastools demo`` searches unless it trains its own
DEMO_SUPERNET = "fmnist-attentive"


def pretrained_dir() -> Path:
    """The folder of the shipped supernets (inside the installed package)."""
    return Path(str(resources.files(__name__)))


def list_pretrained() -> list[str]:
    """Names of the shipped supernets."""
    return sorted(p.name for p in pretrained_dir().iterdir() if p.is_dir() and (p / CARD).is_file())


def pretrained_checkpoint(name: str) -> Path | None:
    """The checkpoint file of shipped supernet ``name``, or None when no such supernet ships.
    A shipped supernet whose weights file is missing is a one-line error."""
    if not name or "/" in name or name.startswith(".") or name.endswith(".pt"):
        return None
    folder = pretrained_dir() / name
    if not (folder / CARD).is_file():
        return None
    path = folder / WEIGHTS
    if not path.is_file():
        raise NastoolsError(f"shipped supernet {name!r} has no weights file {str(path)!r}: reinstall nastools")
    return path


def card(name: str) -> dict[str, Any]:
    """The card of shipped supernet ``name``: how it was trained and what it scores."""
    from nastools.io import read_json

    path = pretrained_dir() / name / CARD
    data = read_json(path, f"shipped supernet {name!r}: card", hint="reinstall nastools")
    if not isinstance(data, dict):
        raise NastoolsError(f"shipped supernet {name!r}: its card {str(path)!r} is not a JSON object; reinstall nastools")
    return data


def describe(name: str) -> str:
    """One line on how shipped supernet ``name`` was trained."""
    c = card(name)
    return f"{name} (shipped: {c.get('summary', 'a trained supernet')})"


def weights_only(checkpoint: dict) -> dict:
    """A training checkpoint reduced to what search, eval and export need: the space, the
    weights and a ``trained`` record (config, step, per-epoch validation top-1)."""
    train = checkpoint.get("train") or {}
    trained = {"config": train.get("config"), "step": train.get("step"), "history": train.get("history", [])}
    keep = {k: checkpoint[k] for k in ("format", "space", "fingerprint", "model")}
    return {**keep, "trained": trained}


def package(run: str | Path, dest: str | Path, card_data: dict[str, Any]) -> Path:
    """Write the shipped-supernet folder ``dest`` from training run ``run``: the weights-only
    checkpoint, the run's ``train.jsonl``, ``card.json`` (``card_data``) and a README."""
    import io

    import torch

    from nastools.checkpoint import checkpoint_path, load_checkpoint
    from nastools.io import atomic_write, atomic_write_json, atomic_write_text

    data = weights_only(load_checkpoint(run))
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(data, buf)
    atomic_write(dest / WEIGHTS, lambda f: f.write(buf.getvalue()), mode="wb")
    log = checkpoint_path(run).parent / "train.jsonl"
    if log.is_file():
        shutil.copyfile(log, dest / "train.jsonl")
    atomic_write_json(dest / CARD, card_data)
    atomic_write_text(dest / "README.md", _readme(dest.name, card_data))
    return dest


def _readme(name: str, c: dict[str, Any]) -> str:
    lines = [f"# {name}", "", c.get("summary", ""), "", "Trained with:", "", "```", c.get("command", ""), "```", ""]
    for key, title in (("test_top1", "Test top-1 (all 10,000 Fashion-MNIST test images, BN recalibrated)"),):
        if isinstance(c.get(key), dict):
            lines += [f"{title}:", ""] + [f"- {k}: {v:.2f}%" for k, v in c[key].items()] + [""]
    for key in ("machine", "dates", "nastools_commit"):
        if c.get(key):
            lines.append(f"- {key.replace('_', ' ')}: {c[key]}")
    lines += ["", "Use it: `nastools search --run " + name + " --latency 0.5ms`, `nastools eval --run " + name + " --arch A.json`.", ""]
    return "\n".join(lines)


__all__ = ["DEMO_SUPERNET", "card", "describe", "list_pretrained", "package", "pretrained_checkpoint", "pretrained_dir", "weights_only"]
