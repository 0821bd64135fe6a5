"""The supernet training loop (AttentiveNAS stage 1).

One step on a minibatch, one optimizer step:

1. the max subnet, with the space's dropout / drop-connect, on label-smoothed CE (0.1);
   its detached logits are the soft labels of the others (inplace distillation);
2. ``num_archs - 2`` middle subnets from the sampler (attentive: candidates scored by their
   KD loss on a slice of the batch, without gradients), each on the KD loss;
3. the min subnet on the KD loss;

gradients are summed over the subnets, clipped by value, then SGD (Nesterov) steps with
warm-up + cosine learning rate and no weight decay on BN and biases.

Every epoch and when training stops (``max_steps``, ``time_budget``, SIGINT/SIGTERM) the
min and max subnets are evaluated on the validation split after BN recalibration, and a
checkpoint is written atomically; within an epoch one is also written every
``checkpoint_every`` (default 10 minutes), for the kills no handler sees (SIGKILL, OOM).
A checkpoint holds everything a resume needs to continue exactly: weights and BN buffers,
optimizer, step, sampler RNG, torch RNG; the data order of an epoch is a permutation seeded
by (seed, epoch) and each image's augmentation is seeded by (seed, epoch, image), so a
resume skips the batches it did, mid-epoch too.
"""

from __future__ import annotations

import json
import math
import random
import signal
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn
from torch.autograd.profiler import record_function

from nastools.augment import BatchAugmenter, train_transform
from nastools.augment import resolve as resolve_augment
from nastools.checkpoint import checkpoint_path, checkpoint_space, load_checkpoint, save_checkpoint
from nastools.data import TensorImages, check_fits, iter_batches, load_splits
from nastools.errors import NastoolsError
from nastools.io import append_text, remove_stale_temps, writable_dir
from nastools.machine import check_torch_device
from nastools.space import Arch, SearchSpace, load_space, parse_time
from nastools.space.residual import has_pool_only_kinds
from nastools.supernet import Supernet
from nastools.supernet.model import legacy_keys
from nastools.train import distributed as D
from nastools.train.coverage import KindCoverage, left_behind_message
from nastools.train.evaluate import calibration_batches, evaluate_top1, recalibrate_bn
from nastools.train.losses import kd_loss, smoothed_ce
from nastools.train.precision import PRECISIONS, autocast, precision_note
from nastools.train.samplers import SAMPLERS, AttentiveSampler, FlopsDistribution, make_sampler

LOG_NAME = "train.jsonl"
#: the learning-curve plot a run folder holds (redrawn after each evaluation)
CURVE_NAME = "curve.png"
RANK_BY = ("loss", "predictor")
#: seconds between the checkpoints written during an epoch (``fit(checkpoint_every=...)``)
CHECKPOINT_EVERY = 600.0
#: config fields a resumed run may change (the rest would break the exact continuation)
RESUME_OVERRIDES = ("epochs", "device", "workers", "log_every", "eval_images", "calib_images", "data")


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in its checkpoint)."""

    space: str = "fmnist"
    dataset: str = "fashion-mnist"
    data: str | None = None
    epochs: float = 5
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-5
    warmup_epochs: float = 0.5
    grad_clip: float = 1.0
    label_smoothing: float = 0.1
    sampler: str = "attentive-best"
    candidates: int = 3
    rank_by: str = "loss"
    predictor: str | None = None
    num_archs: int = 4
    score_images: int = 16
    seed: int = 0
    val_size: int = 5000
    eval_images: int = 2000
    calib_images: int = 1000
    log_every: int = 10
    device: str = "cpu"
    workers: int = 0
    channels_last: bool = True
    augment: str = "auto"
    precision: str = "fp32"  # or bf16: mixed precision (nastools.train.precision)
    image_size: int | None = None  # image folders: training images' size (None: train_image_size of the space)

    def check(self) -> "TrainConfig":
        def need(ok: bool, what: str) -> None:
            if not ok:
                raise NastoolsError(what)

        def number(name: str, integer: bool = False) -> float:
            value = getattr(self, name)
            kinds = int if integer else (int, float)
            if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value):
                raise NastoolsError(f"--{name.replace('_', '-')} {value!r}: expected {'an integer' if integer else 'a finite number'}")
            return value

        need(number("epochs") > 0, f"--epochs {self.epochs}: expected a positive number")
        need(number("batch_size", True) >= 1, f"--batch-size {self.batch_size}: expected at least 1")
        need(number("lr") > 0, f"--lr {self.lr}: expected a positive learning rate")
        need(number("num_archs", True) >= 2, f"--num-archs {self.num_archs}: expected at least 2 (the max and the min subnet)")
        for name in ("candidates", "score_images", "eval_images", "calib_images", "log_every", "val_size"):
            need(number(name, True) >= 1, f"--{name.replace('_', '-')} {getattr(self, name)}: expected at least 1")
        need(number("workers", True) >= 0, f"--workers {self.workers}: expected 0 or more data loader processes")
        need(self.sampler in SAMPLERS, f"--sampler {self.sampler!r}: expected one of {', '.join(SAMPLERS)}")
        resolve_augment(self.augment, self.dataset)
        need(self.precision in PRECISIONS, f"--precision {self.precision!r}: expected one of {', '.join(PRECISIONS)}")
        need(self.rank_by in RANK_BY, f"--rank-by {self.rank_by!r}: expected one of {', '.join(RANK_BY)}")
        need(
            self.rank_by != "predictor" or bool(self.predictor),
            "--rank-by predictor needs --predictor FILE (Arch JSON lines with a top1 field, e.g. from nastools search)",
        )
        check_torch_device(self.device)
        return self

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


#: the largest size image folders are read at for training (AttentiveNAS's training crop;
#: subnets of larger resolutions get it resized by the supernet)
MAX_TRAIN_IMAGE_SIZE = 224


def train_image_size(space: SearchSpace) -> int:
    """The size images of an image folder are read (and augmented) at to train ``space``'s
    supernet: its largest resolution, at most :data:`MAX_TRAIN_IMAGE_SIZE`. Each subnet
    gets them resized to its own resolution by the supernet."""
    return min(MAX_TRAIN_IMAGE_SIZE, max(space.resolutions))


def lr_at(step: int, total: int, warmup: int, base: float) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 0 at ``total``."""
    if warmup > 0 and step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return 0.5 * base * (1.0 + math.cos(math.pi * min(1.0, t)))


#: seconds per unit of a training duration: here "m" is minutes, as in 10m
_DURATION_UNITS = {"s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str | float | None, bare: float | None = 1.0) -> float | None:
    """'10m' or '10min' -> 600.0, '90s', '1.5h'; a Python number is seconds; numeric text
    counts ``bare`` seconds each, or is refused when ``bare`` is None (the command line asks
    for a unit). The duration must be positive and finite."""
    if text is None or text == "":
        return None
    if isinstance(text, bool):
        raise NastoolsError(f"duration {text!r}: expected seconds or a number with a unit, e.g. 90s, 10m, 1.5h")
    v = float(text) if isinstance(text, (int, float)) else parse_time(text, "duration", units=_DURATION_UNITS, bare=bare)
    if not (v > 0 and math.isfinite(v)):  # 'inf' and 'nan' parse as floats
        raise NastoolsError(f"duration {text!r}: expected a positive, finite duration")
    return v


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on convolution and linear weights only, not on BN or biases."""
    decay, no_decay = [], []
    for p in model.parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def upgrade_optimizer_state(optimizer_state: dict, model_state: dict) -> dict:
    """The optimizer state of an older checkpoint (see
    :func:`nastools.supernet.model.legacy_keys`) without the entries of the shortcut weights
    the supernet no longer has, renumbered to match :func:`param_groups` of today's supernet.
    A checkpoint without such weights comes back unchanged."""
    legacy = set(legacy_keys(model_state))
    if not legacy:
        return optimizer_state
    names = [k for k in model_state if k.rsplit(".", 1)[-1] not in _BUFFERS]  # parameters, in order
    groups = [[n for n in names if model_state[n].ndim > 1], [n for n in names if model_state[n].ndim <= 1]]
    saved = optimizer_state["param_groups"]
    if len(saved) != 2 or [len(g["params"]) for g in saved] != [len(g) for g in groups]:
        raise NastoolsError("checkpoint: its optimizer state does not match its weights, so the run cannot be resumed")
    old_index = {name: i for i, name in enumerate(groups[0] + groups[1])}
    kept = [n for n in groups[0] + groups[1] if n not in legacy]
    state = {j: optimizer_state["state"][old_index[n]] for j, n in enumerate(kept) if old_index[n] in optimizer_state["state"]}
    new_groups, start = [], 0
    for g, members in zip(saved, groups):
        n = sum(1 for m in members if m not in legacy)
        new_groups.append({**g, "params": list(range(start, start + n))})
        start += n
    return {"state": state, "param_groups": new_groups}


class _BNSnapshot:
    """Save and restore BatchNorm buffers, so an evaluation does not change training state."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def __enter__(self):
        self.saved = [
            (m, m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone())
            for m in self.model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None
        ]
        return self

    def __exit__(self, *exc):
        with torch.no_grad():
            for m, mean, var, n in self.saved:
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
                m.num_batches_tracked.copy_(n)
        return False


@dataclass
class _FitLoop:
    """The state of one :meth:`Trainer.fit` call: where it stops, its clocks and counters."""

    end: int  # the step this call stops at
    budget: float | None  # seconds
    every: float | None  # seconds between mid-epoch checkpoints
    t0: float
    saved_at: float = 0.0
    stopped: str | None = None
    last_eval_step: int | None = None
    images_seen: int = 0
    train_s: float = 0.0


@dataclass
class StepResult:
    loss: float
    losses: list[float]
    archs: list[Arch]
    scores: list[list[float]] = field(default_factory=list)


class Trainer:
    """Trains a supernet per :class:`TrainConfig` into ``run_dir``.

    >>> t = Trainer(TrainConfig(epochs=1), "runs/demo")
    >>> t.fit(max_steps=100)                 # or time_budget=600
    >>> Trainer.resume("runs/demo").fit()    # continues exactly where it stopped
    """

    def __init__(
        self, config: TrainConfig, run_dir: str | Path, *, splits=None, state: dict | None = None, space: SearchSpace | None = None
    ) -> None:
        self.config = config.check()
        self.run_dir = Path(run_dir)
        self.env = D.init_distributed(config.device)
        dev = config.device
        if dev.startswith("cuda") and self.env.enabled:
            dev = f"cuda:{self.env.local_rank}"
        self.device = torch.device(dev)
        if config.data:  # recorded in the checkpoint: search, eval and export read it from any folder
            config.data = str(Path(config.data).expanduser().absolute())
        self.space = space if space is not None else load_space(config.space)  # resume: the checkpoint's own
        if config.dataset == "imagefolder" and config.image_size is None:
            config.image_size = train_image_size(self.space)
        self.splits = splits if splits is not None else self._load_splits()
        self._check_data()
        torch.manual_seed(config.seed)
        self.model = Supernet(self.space).to(self.device)
        if config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.params = list(self.model.parameters())
        self.optimizer = torch.optim.SGD(
            param_groups(self.model, config.weight_decay), lr=config.lr, momentum=config.momentum, nesterov=config.momentum > 0
        )
        flops_dist = FlopsDistribution.from_dict(state["flops_dist"]) if state and state.get("flops_dist") else None
        self.sampler = make_sampler(config.sampler, self.space, candidates=config.candidates, flops_dist=flops_dist)
        # attentive samplers: how often each residual kind is trained against a random pick
        attentive = isinstance(self.sampler, AttentiveSampler)
        self.coverage = KindCoverage() if attentive and has_pool_only_kinds(self.space) else None
        self._warned_kinds: set[str] = set()
        self.predictor = None
        if config.rank_by == "predictor":
            from nastools.train.accuracy_predictor import AccuracyPredictor

            self.predictor = AccuracyPredictor.fit_file(config.predictor, self.space)
        self.rng = random.Random(config.seed)
        self.steps_per_epoch = len(self.splits.train) // config.batch_size
        if self.steps_per_epoch < 1:
            raise NastoolsError(f"--batch-size {config.batch_size}: larger than the training split ({len(self.splits.train)} images)")
        self.total_steps = max(1, round(config.epochs * self.steps_per_epoch))
        self.warmup_steps = min(round(config.warmup_epochs * self.steps_per_epoch), self.total_steps // 5)
        self.step = 0
        self._arch_hash = 0
        self.history: list[dict] = []
        self.trained_s = 0.0  # seconds of fit() before the current call's (resumed runs: all earlier calls')
        self.log: Callable[[str], None] = stderr_line  # the epoch lines and warnings (main process only)
        self._fit_t0: float | None = None  # perf_counter() at the current fit()'s start
        if state is not None:
            self._load_state(state)
        D.broadcast_module(self.model, self.env)
        self._stop_signal: str | None = None
        self._progress = True

    # ------------------------------------------------------------------ state

    def _load_splits(self):
        cfg = self.config
        size, channels = cfg.image_size or 224, self.space.input_channels  # image folders: read to the space's channels
        return load_splits(cfg.dataset, cfg.data, val_size=cfg.val_size, seed=cfg.seed, image_size=size, channels=channels)

    def _check_data(self) -> None:
        check_fits(self.splits, self.space, self.config.data)

    def state_dict(self) -> dict[str, Any]:
        """Everything a resume needs beside the weights (stored in the checkpoint's ``train``)."""
        flops_dist = self.sampler.flops_dist.to_dict() if isinstance(self.sampler, AttentiveSampler) else None
        return {
            "config": asdict(self.config),
            "step": self.step,
            "optimizer": self.optimizer.state_dict(),
            "sampler_rng": self.rng.getstate(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
            "flops_dist": flops_dist,
            "history": self.history,
            "kind_coverage": self.coverage.to_dict() if self.coverage is not None else None,
            "arch_hash": self._arch_hash,
            "trained_s": round(self.trained_s + (time.perf_counter() - self._fit_t0 if self._fit_t0 is not None else 0.0), 1),
        }

    def _load_state(self, state: dict) -> None:
        self.step = int(state["step"])
        self.optimizer.load_state_dict(state["optimizer"])
        st = state["sampler_rng"]
        self.rng.setstate((st[0], tuple(st[1]), st[2]))
        torch.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        self.history = list(state.get("history", []))
        if self.coverage is not None:
            self.coverage = KindCoverage.from_dict(state.get("kind_coverage"))
        self._arch_hash = int(state.get("arch_hash", 0))
        self.trained_s = float(state.get("trained_s", 0.0))

    def replica_digest(self) -> list[float]:
        """A fingerprint of this replica: a weight checksum and a hash of the archs trained."""
        with torch.no_grad():
            w = sum(float(p.double().abs().sum()) for p in self.model.parameters())
        return [w, float(self._arch_hash)]

    def save(self) -> Path:
        """Write the checkpoint atomically (rank 0 only). Under DDP, first check that every
        rank trained the same archs and holds the same weights (logged as a ``sync`` record)."""
        path = checkpoint_path(self.run_dir)
        if self.env.enabled:
            same = D.ranks_agree(self.replica_digest(), self.env, self.device)
            self._log({"type": "sync", "step": self.step, "world_size": self.env.world_size, "ranks_agree": same})
            if not same:
                raise RuntimeError(f"DDP replicas diverged by step {self.step}: ranks trained different archs or hold different weights")
        if self.env.is_main:
            save_checkpoint(path, self.model, train=self.state_dict())
        return path

    @classmethod
    def resume(cls, run_dir: str | Path, *, space: str | None = None, splits=None, **overrides: Any) -> "Trainer":
        """Continue the run in ``run_dir`` from its checkpoint. ``overrides`` may extend it
        (``epochs``) or change how it is run (:data:`RESUME_OVERRIDES`: ``device``,
        ``workers``, ``log_every``, ...); any other field must equal the run's own value (a
        repeated command line), else it is a one-line :class:`NastoolsError`."""
        data = load_checkpoint(run_dir, space, train=True)  # validates weights and training state
        state = data.get("train")
        if not isinstance(state, dict) or "config" not in state:
            raise NastoolsError(f"checkpoint {str(checkpoint_path(run_dir))!r} holds no training state, so it cannot be resumed")
        stored = {"augment": "none", **state["config"]}  # runs from before --augment trained without
        if stored.get("dataset") == "imagefolder":
            stored.setdefault("image_size", 224)  # runs from before image_size read image folders at 224
        given = {k: v for k, v in overrides.items() if v is not None}
        changed = [k for k, v in given.items() if k not in RESUME_OVERRIDES and k in stored and v != stored[k]]
        if changed:
            flags = ", ".join(f"--{k.replace('_', '-')} {given[k]} (the run's: {stored[k]})" for k in changed)
            allowed = ", ".join("--" + k.replace("_", "-") for k in RESUME_OVERRIDES if k != "calib_images")
            raise NastoolsError(
                f"--resume continues run {str(run_dir)!r} as it was configured; {flags} cannot change (only {allowed} can): "
                f"leave the option out or give the run's value, or train another --run"
            )
        config = TrainConfig.from_dict({**stored, **given})
        # the space the run was trained on, as stored in the checkpoint: a YAML file edited
        # since then (another dropout, another head width) does not change a resumed run
        state = {**state, "optimizer": upgrade_optimizer_state(state["optimizer"], data["model"])}
        trainer = cls(config, run_dir, splits=splits, state=state, space=checkpoint_space(data))
        trainer.model.load_state_dict(data["model"])
        D.broadcast_module(trainer.model, trainer.env)
        return trainer

    # ------------------------------------------------------------------ data

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """The image order of an epoch: a permutation seeded by (seed, epoch)."""
        g = torch.Generator().manual_seed(self.config.seed * 100003 + epoch)
        return torch.randperm(len(self.splits.train), generator=g)

    def batches(self, epoch: int, skip: int):
        """This rank's shard of each global batch of ``epoch``, from batch ``skip`` on."""
        bs = self.config.batch_size
        order = self.epoch_order(epoch)[: self.steps_per_epoch * bs]
        order = order[skip * bs :].view(-1, bs)[:, self.env.rank :: self.env.world_size].reshape(-1)
        shard = len(range(self.env.rank, bs, self.env.world_size))
        data, augment = self.splits.train, None
        recipe = resolve_augment(self.config.augment, self.splits.name)
        if recipe != "none" and isinstance(data, TensorImages):
            aug = BatchAugmenter(recipe, self.splits.name, self.splits.image_size, seed=self.config.seed)
            augment = lambda images, indices: aug(images, epoch=epoch, indices=indices)  # noqa: E731
        elif recipe != "none":
            tf = train_transform(recipe, self.splits.name, self.splits.image_size, self.splits.channels)
            data = data.augmented(tf, self.config.seed, epoch)
        return iter_batches(data, shard, order=order, workers=self.config.workers, augment=augment)

    def _to_device(self, images: torch.Tensor, labels: torch.Tensor):
        x = images.to(self.device, non_blocking=True)
        if self.config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, labels.to(self.device, non_blocking=True)

    # ------------------------------------------------------------------ one step

    def score_fn(self, x: torch.Tensor, soft: torch.Tensor):
        """The candidate scorer: KD loss on a slice of the batch without gradients (or, with
        ``rank_by='predictor'``, the predictor's predicted error)."""
        if self.predictor is not None:
            return lambda cands: [-self.predictor.predict(a) for a in cands]
        n = min(self.config.score_images, len(x))
        xs, ts = x[:n], soft[:n]

        def score(cands):
            out = []
            with torch.inference_mode(), autocast(self.config.precision, self.device):
                for a in cands:
                    self.model.set_active(a)
                    out.append(float(kd_loss(self.model(xs).float(), ts)))
            return D.all_mean(out, self.env, self.device)

        return score

    def train_step(self, images: torch.Tensor, labels: torch.Tensor) -> StepResult:
        """One sandwich step (max, middles, min) and one optimizer step on a batch."""
        cfg, model = self.config, self.model
        x, y = self._to_device(images, labels)
        model.train()
        self.optimizer.zero_grad(set_to_none=True)
        lr = lr_at(self.step, self.total_steps, self.warmup_steps, cfg.lr)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        # max subnet: label smoothing, dropout, drop-connect; its logits teach the rest
        with record_function("step.max"):  # phases named for benchmarks/bench_train.py throughput
            model.set_active(self.sampler.max_arch, dropout=self.space.dropout, drop_connect=self.space.drop_connect)
            with autocast(cfg.precision, self.device):
                logits = model(x).float()
            loss = smoothed_ce(logits, y, cfg.label_smoothing)
            loss.backward()
        soft = logits.detach()
        losses, archs, scores = [loss.item()], [self.sampler.max_arch], []
        with record_function("step.sample"):
            score = self.score_fn(x, soft) if isinstance(self.sampler, AttentiveSampler) else None
            for i in range(cfg.num_archs - 2):
                arch = self.sampler.middle(self.rng, score)
                if isinstance(self.sampler, AttentiveSampler):
                    scores.append(list(self.sampler.last_scores))
                    if self.coverage is not None:
                        self.coverage.offer(self.space, self.sampler.last_candidates, arch)
                archs.append(arch)
        archs.append(self.sampler.min_arch)
        for a in archs:
            self._arch_hash = (self._arch_hash * 1000003 + int(a.id, 16)) % (1 << 52)
        for i, arch in enumerate(archs[1:]):
            with record_function("step.min" if i == len(archs) - 2 else "step.middle"):
                model.set_active(arch)
                with autocast(cfg.precision, self.device):
                    out = model(x).float()
                loss = kd_loss(out, soft)
                loss.backward()
                losses.append(loss.item())
        with record_function("step.optimizer"):
            D.average_gradients(self.params, self.env)
            if cfg.grad_clip > 0:
                nn.utils.clip_grad_value_(self.params, cfg.grad_clip)
            self.optimizer.step()
        self.step += 1
        return StepResult(sum(losses), losses, archs, scores)

    # ------------------------------------------------------------------ evaluation

    def evaluate(self, archs: dict[str, Arch] | None = None) -> dict[str, float]:
        """Top-1 on the validation split after BN recalibration (training state untouched)."""
        cfg = self.config
        archs = archs or {"min": self.sampler.min_arch, "max": self.sampler.max_arch}
        out = {}
        with _BNSnapshot(self.model):
            for name, arch in archs.items():
                self.model.set_active(arch)
                calib = calibration_batches(self.splits.train, 250, cfg.calib_images, seed=cfg.seed, workers=cfg.workers)
                recalibrate_bn(self.model, calib)
                out[name] = evaluate_top1(self.model, self.splits.val, batch_size=500, max_images=cfg.eval_images, workers=cfg.workers)
        self.model.train()
        return out

    # ------------------------------------------------------------------ loop

    def _log(self, record: dict) -> None:
        if self.env.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            append_text(self.run_dir / LOG_NAME, json.dumps(record) + "\n")

    def _trim_log(self) -> None:
        """Drop log records past the checkpoint's step (left by a run that died after it)."""
        path = self.run_dir / LOG_NAME
        if not self.env.is_main or not path.is_file():
            return
        keep = []
        from nastools.io import parse_json

        for ln in path.read_text(errors="replace").splitlines():
            try:
                rec = parse_json(ln, "log line")
            except NastoolsError:  # a line torn by a kill mid-append
                continue
            step = rec.get("step", 0) if isinstance(rec, dict) else None
            if isinstance(step, (int, float)) and step <= self.step:
                keep.append(ln)
        from nastools.io import atomic_write_text

        atomic_write_text(path, "".join(ln + "\n" for ln in keep))

    def _on_signal(self, signum, frame) -> None:
        self._stop_signal = signal.Signals(signum).name

    def fit(
        self,
        max_steps: int | None = None,
        time_budget: float | str | None = None,
        *,
        checkpoint_every: float | str | None = CHECKPOINT_EVERY,
        progress: bool = True,
        evaluate: bool = True,
    ) -> dict:
        """Train until the schedule ends, ``max_steps`` (total steps of the run) are done,
        ``time_budget`` (seconds or '10m') has passed, or SIGINT/SIGTERM arrives; evaluate
        and checkpoint at each epoch end and at the stop. Returns a summary.

        Within an epoch a checkpoint (without evaluation) is also written every
        ``checkpoint_every`` (seconds or '10m'; None: never), so that a run killed outright
        (SIGKILL, out of memory, power cut) resumes from at most that long ago. A write is
        logged as a ``checkpoint`` record with its duration. Measured on a 2-core CPU: 0.1 s
        for the fmnist supernet (27 MB; one step of batch 128 takes about 4 s there), 0.9 s
        for attentivenas (188 MB); at the default 10 minutes, under 0.2% of the run."""
        from tqdm import tqdm

        self._progress = progress
        note = precision_note(self.config.precision, self.device)
        if note and self.env.is_main:
            self.log(note)
        budget = parse_duration(time_budget)
        every = parse_duration(checkpoint_every)
        end = self.total_steps if max_steps is None else min(self.total_steps, max_steps)
        self._trim_log()
        handlers = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                handlers[sig] = signal.signal(sig, self._on_signal)
        loop = _FitLoop(end=end, budget=budget, every=every, t0=time.perf_counter())
        start_step = self.step
        # the bar counts to where this call stops (--steps), not to the end of the schedule
        bar = tqdm(total=end, initial=self.step, disable=not (progress and self.env.is_main), unit="step", dynamic_ncols=True)
        loop.saved_at, self._fit_t0 = time.perf_counter(), loop.t0
        try:
            while self.step < end and loop.stopped is None:
                self._fit_epoch(loop, bar, evaluate)
        finally:
            bar.close()
            for sig, h in handlers.items():
                signal.signal(sig, h)
        if evaluate and loop.last_eval_step != self.step and self.step > start_step:  # a finished run was evaluated when it stopped
            self.save()  # first: a second Ctrl-C during the evaluation loses no step
            self._epoch_record(self.step / self.steps_per_epoch, loop.t0, partial=True)
        path = self.save()
        self.trained_s, self._fit_t0 = self.trained_s + time.perf_counter() - loop.t0, None
        return {
            "rank": self.env.rank,
            "world_size": self.env.world_size,
            "run": str(self.run_dir),
            "checkpoint": str(path),
            "step": self.step,
            "total_steps": self.total_steps,
            "epoch": round(self.step / self.steps_per_epoch, 3),
            "stopped": loop.stopped or ("steps" if self.step < self.total_steps else "done"),
            "seconds": round(time.perf_counter() - loop.t0, 1),
            "trained_s": round(self.trained_s, 1),  # this call's seconds and every earlier call's of the run
            "images_per_s": round(loop.images_seen / max(1e-9, loop.train_s), 1),  # training steps only
            "precision": self.config.precision,
            "top1": self.history[-1] if self.history else None,
        }

    def _fit_epoch(self, loop: "_FitLoop", bar, evaluate: bool) -> None:
        """The rest of the current epoch (from the batch the step count says), or up to a stop;
        at the epoch's end an evaluation and a checkpoint."""
        epoch, skip = divmod(self.step, self.steps_per_epoch)
        for images, labels in self.batches(epoch, skip):
            self._fit_step(images, labels, epoch, loop, bar)
            if self._stop_requested(loop) or self.step >= loop.end:
                break
            self._checkpoint_if_due(loop)
        if self.step % self.steps_per_epoch == 0:  # an epoch ended: evaluate and checkpoint
            if evaluate:
                self._epoch_record(self.step // self.steps_per_epoch, loop.t0)
                loop.last_eval_step = self.step
            self.save()
            loop.saved_at = time.perf_counter()

    def _fit_step(self, images: torch.Tensor, labels: torch.Tensor, epoch: int, loop: "_FitLoop", bar) -> None:
        """One training step, its throughput on the bar and, every ``log_every`` steps, a log record."""
        cfg = self.config
        ts = time.perf_counter()
        res = self.train_step(images, labels)
        dt = time.perf_counter() - ts
        loop.images_seen += cfg.batch_size
        loop.train_s += dt
        ips = cfg.batch_size / dt
        lr = self.optimizer.param_groups[0]["lr"]
        bar.update(1)
        bar.set_postfix_str(f"ep {epoch + 1}/{math.ceil(cfg.epochs)} loss {res.loss:.3f} lr {lr:.4f} {ips:.0f} img/s")
        if self.step % cfg.log_every == 0 or self.step == loop.end:
            self._log(
                {
                    "type": "step",
                    "epoch": epoch,
                    "step": self.step,
                    "loss": round(res.loss, 5),
                    "losses": [round(v, 5) for v in res.losses],
                    "lr": lr,
                    "images_per_s": round(ips, 1),
                    "archs": [a.id for a in res.archs],
                    "time": round(time.perf_counter() - loop.t0, 2),
                }
            )

    def _stop_requested(self, loop: "_FitLoop") -> bool:
        """Whether any rank got a signal or ran out of time (every rank then stops at this step)."""
        stop = self._stop_signal is not None or (loop.budget is not None and time.perf_counter() - loop.t0 >= loop.budget)
        if D.any_rank(stop, self.env, self.device):
            loop.stopped = f"signal {self._stop_signal}" if self._stop_signal else "time budget"
            return True
        return False

    def _checkpoint_if_due(self, loop: "_FitLoop") -> None:
        """A mid-epoch checkpoint when ``checkpoint_every`` has passed since the last one on any rank."""
        due = loop.every is not None and time.perf_counter() - loop.saved_at >= loop.every
        if D.any_rank(due, self.env, self.device) and self.step % self.steps_per_epoch:
            ts = time.perf_counter()
            self.save()  # mid-epoch: the resume skips the batches done (divmod in _fit_epoch)
            self._log(
                {
                    "type": "checkpoint",
                    "step": self.step,
                    "seconds": round(time.perf_counter() - ts, 3),
                    "time": round(time.perf_counter() - loop.t0, 2),
                }
            )
            loop.saved_at = time.perf_counter()

    def _epoch_record(self, epoch: float, t0: float, partial: bool = False) -> None:
        top1 = self.evaluate()
        rec = {
            "type": "epoch",
            "epoch": round(epoch, 3),
            "step": self.step,
            "top1_min": top1["min"],
            "top1_max": top1["max"],
            "partial": partial,
            "time": round(time.perf_counter() - t0, 2),
        }
        if self.coverage is not None:
            rec["kinds"] = self.coverage.to_dict()
        self.history.append(rec)
        self._log(rec)
        if self.env.is_main:
            self.log(f"epoch {epoch:.3g} (step {self.step}): val top-1 min {100 * top1['min']:.2f}%  max {100 * top1['max']:.2f}%")
            self._warn_left_behind()
            self._plot_curve()

    def _warn_left_behind(self) -> None:
        """One warning line per residual kind the attentive sampler has left behind
        (:meth:`KindCoverage.left_behind`), the first time it is."""
        for kind, picked, expected in self.coverage.left_behind() if self.coverage is not None else []:
            if kind not in self._warned_kinds:
                self._warned_kinds.add(kind)
                self.log(left_behind_message(self.config.sampler, kind, picked, expected))

    def _plot_curve(self) -> None:
        """Redraw ``curve.png`` in the run folder (validation top-1 against epochs so far).
        A failure to draw is one warning line: a plot never stops a training run."""
        from nastools.train.curve import learning_curve, plot_curves

        try:
            plot_curves(self.run_dir / CURVE_NAME, {self.run_dir.name: learning_curve(self.run_dir / LOG_NAME)})
        except Exception as exc:  # noqa: BLE001 - any plotting failure; the run goes on
            self.log(f"warning: {CURVE_NAME} not drawn: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")


def stderr_line(message: str) -> None:
    """Write ``message`` as one line on stderr, above any progress bar (a trainer's default
    :attr:`Trainer.log`)."""
    import sys

    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)


def train(
    config: TrainConfig | None,
    run: str | Path,
    *,
    resume: bool = False,
    overrides: dict | None = None,
    max_steps: int | None = None,
    time_budget: float | str | None = None,
    checkpoint_every: float | str | None = CHECKPOINT_EVERY,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Train a new run ``run`` with ``config``, or with ``resume`` continue it from its
    checkpoint (``overrides``: config fields to change, e.g. ``{"epochs": 10}``). The run
    folder is locked for the whole run (:class:`nastools.lock.OutputLock`): a second process
    training into it is refused. ``progress=False`` hides the progress bar; ``log`` takes
    the epoch lines and warnings (default: stderr; ``lambda m: None`` for none)."""
    import os
    from contextlib import nullcontext

    from nastools.checkpoint import run_dir
    from nastools.lock import OutputLock

    rd = run_dir(run)
    if Path(rd).suffix == ".pt":
        raise NastoolsError(f"run {str(run)!r}: a run is a name or a folder (its checkpoint is <folder>/supernet.pt), not a .pt file")
    ckpt = checkpoint_path(rd)
    parse_duration(checkpoint_every)
    if not resume:
        writable_dir(rd, "--run folder")  # before training, not at its first log line
    main_rank = int(os.environ.get("RANK", "0")) == 0  # under torchrun, rank 0 writes for all
    with OutputLock(rd, "run", elsewhere="pass another --run") if main_rank else nullcontext():
        if main_rank:  # left by a run killed while it wrote them
            remove_stale_temps(rd, (ckpt.name, LOG_NAME, CURVE_NAME))
        if resume:
            trainer = Trainer.resume(
                rd, space=(overrides or {}).get("space"), **{k: v for k, v in (overrides or {}).items() if k != "space"}
            )
        else:
            if ckpt.exists():
                raise NastoolsError(
                    f"run {str(rd)!r} already has a checkpoint ({ckpt}); pass --resume to continue it, or another --run NAME"
                )
            trainer = Trainer(config or TrainConfig(), rd)
        if log is not None:
            trainer.log = log
        try:
            if resume and "epochs" in (overrides or {}) and trainer.step > trainer.total_steps:
                raise NastoolsError(
                    f"--epochs {overrides['epochs']:g}: run {str(rd)!r} has already trained "
                    f"{trainer.step / trainer.steps_per_epoch:.3g} epochs ({trainer.step} steps); pass more --epochs to continue it"
                )
            return trainer.fit(max_steps=max_steps, time_budget=time_budget, checkpoint_every=checkpoint_every, progress=progress)
        finally:
            D.shutdown(trainer.env)


__all__ = [
    "CHECKPOINT_EVERY",
    "RESUME_OVERRIDES",
    "TrainConfig",
    "Trainer",
    "lr_at",
    "param_groups",
    "parse_duration",
    "train",
    "upgrade_optimizer_state",
]
