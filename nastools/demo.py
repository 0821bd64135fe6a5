"""The whole job on the built-in default, in one call (``nastools demo``).

1. take the trained supernet that ships with nastools for the space (``fmnist-attentive``),
   or, with ``train_time`` set (``--train 6m``) or for a space without one, train a supernet
   on Fashion-MNIST with attentive sampling for that budget;
2. profile this CPU through ONNX Runtime, or reuse a shipped table made on this CPU model
   (one of another generation of it gets its overhead re-fitted on a few end-to-end runs
   of this machine: :meth:`nastools.search.latency_cost.LatencyCost.refitted`);
3. search under a latency budget from the middle of the table's range and a FLOPs budget;
4. export the chosen subnet to ONNX (fp32 and int8) and bench both;
5. print a summary: arch, test top-1, FLOPs, predicted vs measured latency, files written.

Each stage prints its time. Finished stages are recorded in ``runs/<run>/demo.json`` with
what each was made from (the space's fingerprint, the shipped supernet or the training
budget, the settings of the stage); the next call reuses a stage made from the same, and
redoes one made from anything else together with the stages that use its result (``fresh``
redoes all). SIGINT or SIGTERM stops the demo after the stage it interrupts, which is not
recorded as done (:class:`DemoInterrupted`); an interrupted training stage resumes from its
checkpoint on the next call.
"""

from __future__ import annotations

import json
import shutil
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from nastools.checkpoint import checkpoint_path, load_checkpoint, run_dir
from nastools.errors import NastoolsError
from nastools.io import atomic_write_json, shown_path, writable_dir
from nastools.search.latency_cost import LatencyCost, verification_note
from nastools.space import SearchSpace, format_count, load_space

STATE_NAME = "demo.json"

#: the stages in the order they run, each with the earlier stages whose results it reads
DEPENDS: dict[str, tuple[str, ...]] = {"train": (), "profile": (), "search": ("train", "profile"), "export": ("train", "search")}


class DemoInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped the demo in stage ``stage``, which is not recorded as done.
    Its message is the one line to print; :attr:`exit_code` is 128 + the signal's number
    (130 for SIGINT, 143 for SIGTERM)."""

    def __init__(self, stage: str | None, signal_name: str = "SIGINT") -> None:
        self.stage, self.signal_name = stage, signal_name
        super().__init__(self.message)

    @property
    def exit_code(self) -> int:
        """The exit status of a process stopped by the signal: 128 + its number."""
        return 128 + int(signal.Signals[self.signal_name])

    @property
    def message(self) -> str:
        """What stopped where, and how to go on."""
        resumes = " (the training resumes from its checkpoint)" if self.stage == "train" else ""
        return (
            f"interrupted by {self.signal_name} in the demo's {self.stage or 'current'} stage, which is not recorded as done: "
            f"rerun the same command to continue from it{resumes}, or add --fresh to start over"
        )


def parse_train_time(text: str, what: str = "--train") -> float:
    """A training budget written with its unit (``'6m'``, ``'90s'``, ``'1.5h'``) in seconds.
    A bare number, an empty text or a duration that is not positive is a one-line
    :class:`NastoolsError` naming ``what``."""
    from nastools.train.trainer import parse_duration

    t = str(text).strip()
    if not t:
        raise NastoolsError(f"{what} {text!r}: empty; give a duration with a unit, e.g. 6m or 90s, or leave the option out")
    try:
        float(t)
    except ValueError:
        pass
    else:
        raise NastoolsError(f"{what} {text!r}: add a unit, e.g. {t}s or {t}m")
    try:
        return parse_duration(t)
    except NastoolsError:
        raise NastoolsError(f"{what} {text!r}: expected a positive duration with a unit, e.g. 6m, 90s or 1.5h") from None


@dataclass
class DemoSettings:
    """Budgets of each stage. The defaults fit in about 10 minutes on 2 CPU cores."""

    space: str = "fmnist"
    run: str = "demo"
    train_time: str | None = None  # None: search the shipped supernet of the space, if one ships
    default_train_time: str = "6m"  # a cap for a space without a shipped supernet
    train_steps: int | None = None
    train_epochs: float = 0.15  # ~260 steps of 32: warm-up + cosine complete in a few minutes
    batch_size: int = 32
    lr: float = 0.05
    profile_max_s: float = 0.12  # per block: the demo's quick protocol
    calibration_runs: int = 8
    population: int = 8
    generations: int = 3
    calib_images: int = 500
    eval_images: int = 1000
    rerank_images: int | None = None  # the finalists' validation images (None: all)
    export_calib_images: int | None = None  # None: the run's default, as nastools export
    export_eval_images: int | None = None  # None: the whole test split, as nastools export
    bench_duration: str = "2s"
    seed: int = 0
    progress: bool = True  # progress bars in the train, profile and search stages (--no-progress: off)
    # where the latency budget lies between the cheapest and the costliest subnet's prediction
    budget_point: float = 0.5

    @classmethod
    def quick(cls, space: str = "fmnist", run: str = "demo") -> "DemoSettings":
        """Tiny budgets: a smoke run of every stage (what CI runs)."""
        return cls(
            space=space,
            run=run,
            default_train_time="10m",
            train_steps=4,
            batch_size=32,
            profile_max_s=0.02,
            calibration_runs=6,
            population=4,
            generations=1,
            calib_images=64,
            eval_images=128,
            rerank_images=256,
            export_calib_images=64,
            export_eval_images=256,
            bench_duration="0.3s",
            # a tiny space's subnets run in ~30 us, where one measurement's noise is ~10%:
            # a budget at the middle of their narrow range is missed by every pick at times
            budget_point=0.75,
        )


def _matching_table(space: SearchSpace, cpu: str):
    """A latency table of ``space`` (the user's or a shipped one) made on this CPU model, named
    ``cpu``, with ORT, 1 thread, batch 1, fp32 and a calibration (one of this very CPU
    generation first; :func:`nastools.search.latency_cost.find_table`), or None."""
    from nastools.search.latency_cost import find_table

    def fits(t) -> bool:
        m = t.meta
        return (
            m.get("device") == cpu
            and m.get("backend") == "ort"
            and m.get("batch") == 1
            and m.get("threads") == 1
            and m.get("precision") == "fp32"
            and "scale" in t.calibration
        )

    return find_table(space, "default", accept=fits)


def _shipped_supernet(space: SearchSpace) -> str | None:
    """The name of the shipped supernet trained on ``space`` (same fingerprint), if any."""
    from nastools.pretrained import DEMO_SUPERNET, list_pretrained

    names = [DEMO_SUPERNET] + [n for n in list_pretrained() if n != DEMO_SUPERNET]
    for name in names:
        if name in list_pretrained() and load_checkpoint(name).get("fingerprint") == space.fingerprint:
            return name
    return None


def _read_state(path: Path) -> dict[str, Any]:
    """The stages an earlier demo run finished (``demo.json``); a one-line error for a file
    that is not one."""
    from nastools.io import read_json

    try:
        state = read_json(path, "demo state")
    except NastoolsError as exc:
        raise NastoolsError(f"{exc}: delete it or pass --fresh") from None
    if not (
        isinstance(state, dict)
        and isinstance(state.get("stages"), dict)
        and all(
            isinstance(v, dict) and isinstance(v.get("seconds"), (int, float)) and not isinstance(v["seconds"], bool)
            for v in state["stages"].values()
        )
    ):
        raise NastoolsError(f"demo state {str(path)!r} is not a nastools demo state: delete it or pass --fresh")
    return state


def _shown(v: Any) -> str:
    """A recorded setting in a line: numbers as %g, None as 'none', text quoted."""
    if v is None:
        return "none"
    if isinstance(v, float):
        return f"{v:g}"
    return repr(v)


def _why_redo(old: Any, new: dict[str, Any]) -> str:
    """Why a stage recorded with ``old`` (what it was made from) is not reused for ``new``."""
    if not isinstance(old, dict):
        return "its earlier result does not record what it was made from (a demo.json of an older nastools)"
    keys = [k for k in new if k in old and old[k] != new[k]] or [k for k in {**old, **new} if old.get(k) != new.get(k)]
    if "space" in keys and "fingerprint" in keys:
        keys.remove("fingerprint")  # another space: its fingerprint differs too
    changes = "; ".join(f"{k} {_shown(old.get(k))} then, {_shown(new.get(k))} now" for k in keys[:3])
    return f"its earlier result was made from other settings ({changes}{'; ...' if len(keys) > 3 else ''})"


class _Stages:
    """The demo's stages as recorded in ``demo.json``: each runs once, and a later call
    reuses its recorded result while it was made from the same (``made_from``). The stage
    running now is noted as ``running``, so that an interrupted one can resume."""

    def __init__(self, path: Path, log: Callable[[str], None]) -> None:
        self.path, self.log = path, log
        self.state = _read_state(path) if path.is_file() else {"stages": {}}
        self.done: dict[str, Any] = self.state["stages"]

    def users(self, name: str) -> list[str]:
        """The stages that read the result of ``name``, directly or through another stage."""
        out: list[str] = []
        for stage, needs in DEPENDS.items():
            if any(n == name or n in out for n in needs):
                out.append(stage)
        return out

    def run(self, name: str, title: str, fn: Callable[[dict | None], dict], made_from: dict[str, Any]) -> dict:
        """The result of stage ``name``: recorded earlier from the same ``made_from``, or
        ``fn(interrupted)`` run now (and timed), which forgets the stages that use it.
        ``interrupted`` is what an earlier call of this stage from the same ``made_from``
        noted (:meth:`note`) before it was stopped, else None. A SIGINT (or SIGTERM, see
        :func:`run_demo`) in ``fn`` raises :class:`DemoInterrupted` naming the stage."""
        rec = self.done.get(name)
        if rec is not None and rec.get("made_from") == made_from:
            self.log(f"== {title}: done earlier, reusing ({rec['seconds']:.0f} s then; --fresh to redo)")
            return rec
        self.log(
            f"== {title}"
            if rec is None
            else f"== {title}: redoing it and the stages that use it: {_why_redo(rec.get('made_from'), made_from)}"
        )
        before = self.state.get("running")
        same = isinstance(before, dict) and before.get("stage") == name and before.get("made_from") == made_from
        self.state["running"] = before if same else {"stage": name, "made_from": made_from}
        self.forget(name, *self.users(name))
        t0 = time.perf_counter()
        try:
            out = fn(before if same else None)
        except DemoInterrupted as exc:
            raise exc if exc.stage else DemoInterrupted(name, exc.signal_name) from None
        except KeyboardInterrupt:
            raise DemoInterrupted(name, "SIGINT") from None
        out["seconds"], out["made_from"] = time.perf_counter() - t0, made_from
        self.done[name] = out
        self.state.pop("running", None)
        atomic_write_json(self.path, self.state)
        self.log(f"   ({out['seconds']:.0f} s)")
        return out

    def note(self, **facts: Any) -> None:
        """Record ``facts`` with the stage running now, for a call that resumes it."""
        self.state["running"].update(facts)
        atomic_write_json(self.path, self.state)

    def keep(self, **facts: Any) -> None:
        """Record ``facts`` beside the stages, whatever stage runs later."""
        self.state.update(facts)
        atomic_write_json(self.path, self.state)

    def forget(self, *names: str) -> None:
        """Drop the recorded results of stages ``names`` (and the summary made of them): the
        next :meth:`run` runs them again."""
        for name in names:
            self.done.pop(name, None)
        self.state.pop("summary", None)
        atomic_write_json(self.path, self.state)

    def finish(self, summary: dict[str, Any]) -> None:
        """Record the summary beside the stages."""
        self.state["summary"] = summary
        atomic_write_json(self.path, self.state)


@dataclass
class _Demo:
    """What every stage reads: the settings, the space, the run folder and the log."""

    settings: DemoSettings
    space: SearchSpace
    rdir: Path
    log: Callable[[str], None]


# --------------------------------------------------------------------------- 1. supernet


def _take_shipped(demo: _Demo, name: str) -> dict:
    from nastools.checkpoint import find_checkpoint
    from nastools.pretrained import describe

    ckpt = find_checkpoint(name)
    demo.log(f"   {describe(name)}")
    demo.log(f"   weights {shown_path(ckpt)} (nastools demo --train 6m trains a fresh supernet instead)")
    return {"checkpoint": str(ckpt), "supernet": name, "shipped": True, "about": describe(name)}


def _demo_trained(stages: _Stages, ckpt: Path) -> bool:
    """Whether the checkpoint ``ckpt`` in the run folder is one this demo trained (noted when
    its training started, or recorded as its train stage by an older nastools), which a
    training from other settings may replace; asked before :meth:`_Stages.run` forgets the record."""
    done, noted = stages.done.get("train") or {}, stages.state.get("trained_checkpoint")
    if noted is not None and Path(str(noted)).resolve() == ckpt.resolve():
        return True
    return done.get("shipped") is False and Path(str(done.get("checkpoint"))).resolve() == ckpt.resolve()


def _start_over(demo: _Demo, ckpt: Path, ours: bool) -> None:
    """Remove the supernet the demo trained earlier from other settings (its checkpoint,
    log and curve), so that the training starts over; refuse a checkpoint the demo did not train."""
    from nastools.train.trainer import CURVE_NAME, LOG_NAME

    if not ours:
        raise NastoolsError(
            f"--run folder {shown_path(demo.rdir)!r} holds a supernet checkpoint this demo did not record training "
            "(another run's, or an older nastools demo's): pass another --run, or --fresh to delete the folder and start over"
        )
    demo.log(f"   starting the training over: the supernet in {shown_path(ckpt)} was not trained from these settings")
    for path in (ckpt, demo.rdir / LOG_NAME, demo.rdir / CURVE_NAME):
        path.unlink(missing_ok=True)


#: seconds between the demo's mid-epoch checkpoints: a training killed outright loses at most this
DEMO_CHECKPOINT_EVERY = 60.0


def _checkpoint_trained_s(ckpt: Path) -> float:
    """The seconds of training the checkpoint ``ckpt`` records (0 when it records none or
    cannot be read: the resume that follows says what is wrong with it)."""
    try:
        state = load_checkpoint(ckpt).get("train") or {}
    except NastoolsError:
        return 0.0
    value = state.get("trained_s", 0.0)
    return float(value) if isinstance(value, (int, float)) else 0.0


def _train(demo: _Demo, stages: _Stages, train_time: str, interrupted: dict | None, ours: bool) -> dict:
    """Stage 1 trained: a fresh supernet for at most ``train_time``, or the rest of an
    ``interrupted`` one (what the interrupted call noted: the seconds it trained)."""
    from nastools.train.trainer import TrainConfig, parse_duration, train

    s, rdir = demo.settings, demo.rdir
    ckpt = checkpoint_path(rdir)
    cfg = TrainConfig(
        space=s.space,
        sampler="attentive-best",
        epochs=s.train_epochs,
        batch_size=s.batch_size,
        lr=s.lr,
        warmup_epochs=s.train_epochs / 20,
        seed=s.seed,
        eval_images=s.eval_images,
        calib_images=s.calib_images,
    )
    budget, before = parse_duration(train_time), 0.0
    # the checkpoint is this training's once an earlier call of it began training
    resume = interrupted is not None and interrupted.get("training") is True and ckpt.is_file()
    if resume:
        before = max(float(interrupted.get("trained_s", 0.0)), _checkpoint_trained_s(ckpt))  # a kill -9 noted nothing
        demo.log(f"   resuming the interrupted training run ({before:.0f} s trained of at most {budget:g} s)")
    elif ckpt.is_file():
        _start_over(demo, ckpt, ours)
    stages.keep(trained_checkpoint=str(ckpt))  # from now on the checkpoint is the demo's to replace
    stages.note(training=True)
    summary = train(
        None if resume else cfg,
        rdir,
        resume=resume,
        max_steps=s.train_steps,
        time_budget=max(1.0, budget - before),
        checkpoint_every=DEMO_CHECKPOINT_EVERY,
        progress=s.progress,
    )
    demo.log(f"   {_train_line(summary)}")
    seconds = round(before + float(summary.get("seconds") or 0.0), 1)
    stopped = str(summary.get("stopped", ""))
    if stopped.startswith("signal "):
        stages.note(trained_s=seconds)
        raise DemoInterrupted("train", stopped.split()[-1])
    about = f"trained by this demo: attentive-best, {summary.get('step')} steps of batch {s.batch_size} ({seconds} s)"
    return {"checkpoint": str(ckpt), "supernet": str(rdir), "shipped": False, "about": about, "summary": _jsonable(summary)}


def _supernet_stage(demo: _Demo, stages: _Stages) -> dict:
    """Stage 1: the shipped supernet of the space, else (or with ``train_time``) a fresh one."""
    from nastools.train.trainer import parse_duration

    s, space = demo.settings, demo.space
    made = {"space": space.name, "fingerprint": space.fingerprint}
    shipped = None if s.train_time is not None else _shipped_supernet(space)
    if shipped:
        title = f"take the shipped {space.name} supernet"
        return stages.run("train", title, lambda _: _take_shipped(demo, shipped), {**made, "supernet": shipped})
    train_time = s.train_time or s.default_train_time
    steps = f"{s.train_steps} steps" if s.train_steps else f"{s.train_epochs:g} epoch"
    title = f"train the {space.name} supernet (attentive-best, {steps} of batch {s.batch_size}, at most {train_time})"
    made.update(
        supernet="trained",
        train_s=parse_duration(train_time),
        **{k: getattr(s, k) for k in ("train_steps", "train_epochs", "batch_size", "lr", "seed", "eval_images", "calib_images")},
    )
    ours = _demo_trained(stages, checkpoint_path(demo.rdir))
    return stages.run("train", title, lambda interrupted: _train(demo, stages, train_time, interrupted, ours), made)


# --------------------------------------------------------------------------- 2. profile


def _forget_stale_table(demo: _Demo, stages: _Stages, made_from: dict[str, Any]) -> None:
    """On a rerun, redo the stages that used a reused latency table when another table now fits
    this CPU better (a newer nastools ships one of this very generation, or the user profiled
    one), or the table is gone: their predictions came from the old one. A profile made from
    other settings than ``made_from`` is left to :meth:`_Stages.run`, which redoes it anyway."""
    from nastools.machine import cpu_name

    rec = stages.done.get("profile")
    if not rec or not rec.get("reused") or rec.get("made_from") != made_from:
        return  # not run yet, this machine's own fresh profile, or one that is redone anyway
    now = _matching_table(demo.space, cpu_name())
    if now is not None and Path(now.path).resolve() == Path(rec["table"]).resolve():
        return
    better = f"{shown_path(now.path)} fits this CPU better" if now is not None else "no table of this CPU model is left"
    demo.log(f"== the latency table used earlier was {shown_path(rec['table'])}; {better}: profile, search and export run again")
    stages.forget("profile", "search", "export")


def _profile(demo: _Demo) -> dict:
    """Stage 2: reuse a table of this CPU model, else profile this CPU with the quick protocol."""
    from nastools.latency import OrtCpuBackend, Protocol, profile
    from nastools.machine import cpu_name, generation_mismatch

    space, log = demo.space, demo.log
    cpu = cpu_name()
    table = _matching_table(space, cpu)
    if table is not None:
        same = ", another generation of it" if generation_mismatch(table.meta) else ""
        log(f"   reusing the shipped table {shown_path(table.path)} (profiled on this CPU model, {cpu}{same})")
        return {"table": str(table.path), "reused": True}
    log(f"   no shipped table for {cpu!r}: profiling this CPU through ONNX Runtime (1 thread, quick protocol)")
    proto = Protocol(warmup_s=0.01, min_warmup=3, min_runs=10, round_s=0.02, max_s=demo.settings.profile_max_s)
    out = demo.rdir / "latency" / f"{space.name}.json"
    table = profile(
        space,
        OrtCpuBackend(threads=1),
        out=out,
        protocol=proto,
        calibration_runs=demo.settings.calibration_runs,
        progress=demo.settings.progress,
    )
    return {"table": str(table.path), "reused": False, "blocks": len(table)}


# --------------------------------------------------------------------------- 3. search


def _loo(check: dict) -> str:
    """How re-fitting and scaling a borrowed table predicted this machine's runs, for the log."""
    return (
        f"each of its {check['runs']} runs predicted from the others: re-fitted MAPE {check['refit_loo_mape']:.1f}%, "
        f"scaled {check['scaled_loo_mape']:.1f}%"
    )


def _budgets(demo: _Demo, latency: LatencyCost) -> tuple[float, float]:
    """The latency budget (``budget_point`` of the way between the cheapest and the costliest
    subnet's prediction) and the FLOPs budget (halfway), logged; both over the resolutions the
    table covers, which the search keeps to (a table of some resolutions, as attentivenas@224)."""
    from nastools.search.runner import table_space

    s, space = demo.settings, table_space(demo.space, [latency], lambda line: None)
    lo, hi = latency.predict(space.min_arch()), latency.predict(space.max_arch())
    lat = lo + (hi - lo) * s.budget_point
    flo = (space.flops(space.min_arch()) + space.flops(space.max_arch())) / 2
    where = f"middle of {lo:.3f}-{hi:.3f} ms" if s.budget_point == 0.5 else f"{s.budget_point:.0%} of the way from {lo:.3f} to {hi:.3f} ms"
    demo.log(f"   budgets: latency <= {lat:.3f} ms ({where}) and FLOPs <= {format_count(flo)}")
    return lat, flo


def _search(demo: _Demo, profiled: dict, source: str) -> dict:
    """Stage 3: search ``source``'s supernet under a latency and a FLOPs budget."""
    from nastools.latency.table import LatencyTable
    from nastools.machine import generation_mismatch
    from nastools.search.budget import Budget
    from nastools.search.runner import SearchOptions, run_search

    s, log = demo.settings, demo.log
    latency = LatencyCost(LatencyTable.load(profiled["table"], demo.space))
    if profiled["reused"]:  # a shipped table: at this machine's speed now (the search scales it the same way)
        latency.settle_drift()
    refit = None
    if profiled["reused"] and generation_mismatch(latency.table.meta):
        # another CPU generation: its blocks as profiled, its overhead re-fitted on this machine's drift-check runs
        refit = latency.refitted(demo.rdir / "latency" / f"{demo.space.name}.refit.json")
    check = latency.refit_check
    if refit is not None:
        log(
            f"   the table is of another CPU generation: its overhead re-fitted on {len(refit.calibration['runs'])} "
            f"end-to-end runs of this machine ({_loo(check)}), {refit.path}"
        )
        latency = LatencyCost(refit)
    elif check is not None:
        log(f"   the table is of another CPU generation: kept as profiled, scaled by one factor ({_loo(check)})")
    lat, flo = _budgets(demo, latency)
    # a table profiled a minute ago (or re-fitted just now) describes this machine as it is
    drift = profiled["reused"] and refit is None
    opts = SearchOptions(
        population=s.population,
        generations=s.generations,
        seed=s.seed,
        calib_images=s.calib_images,
        eval_images=s.eval_images,
        rerank_images=s.rerank_images,
        drift=drift,
        drift_factors={"latency:default": latency.factor},
    )
    rep = run_search(
        source,
        [Budget("latency", lat, "default"), Budget("flops", flo)],
        tables={"default": str(latency.table.path)},
        options=opts,
        out_dir=demo.rdir / "search",
        progress=s.progress,
        log=lambda m: log(f"   {m}"),
    )
    pick = rep.picks[0]
    if pick.candidate is None:
        raise NastoolsError("the demo search found no subnet within its budgets; rerun with --fresh")
    c = pick.candidate
    stat = latency.statistic
    log(
        f"   chose {c.arch.id}: validation top-1 {c.top1:.2f}%, {format_count(c.costs['flops'])} FLOPs, "
        f"predicted {stat} {c.costs['latency:default']:.3f} ms"
        + (f", measured {stat} {pick.measured_ms:.3f} ms" if pick.measured_ms else "")
    )
    verified = pick.verification.get("latency:default")
    note = verification_note(c.arch.id, verified) if verified else None
    if note:
        log(f"   note: {note}")
    for r in pick.replaced:
        log(f"   replaced {r['id']}: measured {r['measured_ms']:.3f} ms over the {r['limit_ms']:.3f} ms budget")
    return {
        "best": str(rep.out_dir / "best.json"),
        "pareto": str(rep.out_dir / "pareto.json"),
        "plot": str(rep.out_dir / "pareto.png"),
        "id": c.arch.id,
        "val_top1": c.top1,
        "flops": c.costs["flops"],
        "params": c.costs["params"],
        "predicted_ms": c.costs["latency:default"],
        "search_measured_ms": pick.measured_ms,
        **({"search_timed_ms": verified["timed_ms"], "search_speed": verified["speed"]} if verified else {}),
        "latency_budget_ms": lat,
        "flops_budget": flo,
        "evaluations": rep.timing["evaluations"],
        "statistic": stat,
        **({"refit_table": str(refit.path)} if refit is not None else {}),
    }


# --------------------------------------------------------------------------- 4. export


def _export(demo: _Demo, searched: dict, source: str) -> dict:
    """Stage 4: export the pick to ONNX in fp32 and int8 and bench both on ORT CPU (the
    search's latency statistic among the figures kept)."""
    from nastools.export.api import export_subnet
    from nastools.export.bench import bench_model
    from nastools.export.parity import describe_parity

    s = demo.settings
    out = {}
    for precision in ("fp32", "int8"):
        path = demo.rdir / "export" / f"{searched['id']}{'' if precision == 'fp32' else '-' + precision}.onnx"
        res = export_subnet(
            source,
            searched["best"],
            format="onnx",
            precision=precision,
            calib_images=s.export_calib_images,
            eval_images=s.export_eval_images,
            out=path,
            progress=False,
        )
        b = bench_model(res.path, backend="ort", batch=1, threads=1, duration=s.bench_duration)
        acc = res.sidecar.get("accuracy", {})
        par = res.sidecar.get("parity", {})
        out[precision] = {
            "model": str(res.path),
            "sidecar": str(res.sidecar_path),
            "test_top1": acc.get("model_top1"),
            "test_images": acc.get("images"),
            "parity": {k: par.get(k) for k in ("max_abs_diff", "top1_agreement", "passed") if k in par},
            "bench": {k: b.to_dict()[k] for k in ("p10_ms", "median_ms", "p90_ms", "p99_ms", "throughput_ips")},
        }
        demo.log(
            f"   {precision}: {res.path.name}, test top-1 {_pct(acc.get('model_top1'))}{_on_images(acc.get('images'))}, "
            f"ORT CPU p10 {b.p10_ms:.3f} ms, median {b.median_ms:.3f} ms, p90 {b.p90_ms:.3f} ms, parity {describe_parity(par)}"
        )
    return out


# --------------------------------------------------------------------------- 5. summary


def _summary(space: SearchSpace, rdir: Path, stages: dict[str, Any]) -> dict[str, Any]:
    """The demo's result from its finished stages."""
    trained, profiled, searched, exported = (stages[k] for k in ("train", "profile", "search", "export"))
    stat = searched.get("statistic", "p10")  # stages recorded before the statistic was: the table's p10
    key = f"{stat}_ms"
    return {
        "arch": searched["id"],
        "space": space.name,
        "supernet": trained.get("about", str(rdir)),
        "test_top1_fp32": exported["fp32"]["test_top1"],
        "test_top1_int8": exported["int8"]["test_top1"],
        "test_images": exported["fp32"].get("test_images"),
        "val_top1": searched["val_top1"],
        "flops": searched["flops"],
        "params": searched["params"],
        "latency_budget_ms": searched["latency_budget_ms"],
        "predicted_ms": searched["predicted_ms"],
        "verified_ms": searched.get("search_measured_ms"),
        **{k: searched[k] for k in ("search_timed_ms", "search_speed") if k in searched},
        "statistic": stat,
        "measured_ms_fp32": exported["fp32"]["bench"].get(key),
        "measured_ms_int8": exported["int8"]["bench"].get(key),
        "table": searched.get("refit_table", profiled["table"]),
        "table_reused": profiled["reused"],
        "files": [
            trained["checkpoint"],
            searched.get("refit_table", profiled["table"]),
            searched["best"],
            searched["pareto"],
            searched["plot"],
            exported["fp32"]["model"],
            exported["int8"]["model"],
            exported["fp32"]["sidecar"],
            exported["int8"]["sidecar"],
        ],
        "stage_seconds": {k: round(v["seconds"], 1) for k, v in stages.items()},
    }


def _on_images(n: int | None) -> str:
    """' on N test images' for a known count, else ''."""
    return f" on {n:,} test images" if n else ""


def _timed(summary: dict[str, Any]) -> str:
    """How the search's figure for the pick was timed, where the machine's speed then differs
    from the speed its prediction assumes (the figure is held at the latter), else ''."""
    timed, verified = summary.get("search_timed_ms"), summary.get("verified_ms")
    if timed is None or not verified or abs(timed / verified - 1.0) <= 0.03:
        return ""
    pct = 100 * (timed / verified - 1)
    return f" (timed {timed:.3f} ms: this machine ran {abs(pct):.0f}% {'slower' if pct > 0 else 'faster'} then than the search assumed)"


def _int8_note(summary: dict[str, Any]) -> str | None:
    """A line for a summary whose int8 model ran slower than its fp32 one, else None."""
    fp32, int8 = summary.get("measured_ms_fp32"), summary.get("measured_ms_int8")
    if not fp32 or not int8 or int8 <= fp32:
        return None
    return (
        f"the int8 model runs at {int8 / fp32:.2f}x the fp32 model's time on this CPU, so fp32 is the faster choice here "
        "(on CPUs int8 pays where wide 1x1 convolutions dominate a model's time: docs/results/export.md)"
    )


def _log_summary(summary: dict[str, Any], space: SearchSpace, log: Callable[[str], None]) -> None:
    log("== summary")
    log(f"   supernet: {summary['supernet']}")
    log(f"   arch {summary['arch']} ({space.name}): {format_count(summary['flops'])} FLOPs, {format_count(summary['params'])} params")
    log(
        f"   test top-1{_on_images(summary.get('test_images'))}: fp32 {_pct(summary['test_top1_fp32'])}, int8 {_pct(summary['test_top1_int8'])} "
        f"(validation top-1 in search {summary['val_top1']:.2f}%)"
    )
    log(
        f"   latency (ORT CPU, 1 thread, batch 1, the {summary['statistic']} of each): budget {summary['latency_budget_ms']:.3f} ms, "
        f"predicted {summary['predicted_ms']:.3f} ms, measured in search {_ms(summary.get('verified_ms'))}{_timed(summary)}, "
        f"nastools bench {_ms(summary['measured_ms_fp32'])} fp32 / {_ms(summary['measured_ms_int8'])} int8"
    )
    note = _int8_note(summary)
    if note:
        log(f"   note: {note}")
    log("   stage times: " + ", ".join(f"{k} {v:.0f} s" for k, v in summary["stage_seconds"].items()))
    log("   files:")
    for f in summary["files"]:
        log(f"     {shown_path(f)}")


def _made_from(s: DemoSettings, space: SearchSpace, stage: str) -> dict[str, Any]:
    """What stage ``stage`` (profile, search or export) is made from besides the results of
    the stages it reads (:data:`DEPENDS`): the space and the stage's settings."""
    keys = {
        "profile": ("profile_max_s", "calibration_runs"),
        "search": ("population", "generations", "seed", "calib_images", "eval_images", "rerank_images", "budget_point"),
        "export": ("export_calib_images", "export_eval_images", "bench_duration"),
    }[stage]
    return {"space": space.name, "fingerprint": space.fingerprint, **{k: getattr(s, k) for k in keys}}


def _raise_on_sigterm(signum, frame) -> None:
    """The demo's SIGTERM handler: stop like Ctrl-C, naming SIGTERM."""
    raise DemoInterrupted(None, "SIGTERM")


def _stages(demo: _Demo, stages: _Stages) -> None:
    """Run (or reuse) the four stages in order."""
    s, space = demo.settings, demo.space
    trained = _supernet_stage(demo, stages)
    source = trained.get("supernet", str(demo.rdir))  # the run whose checkpoint search and export read
    made = _made_from(s, space, "profile")
    _forget_stale_table(demo, stages, made)
    profiled = stages.run("profile", "profile this CPU", lambda _: _profile(demo), made)
    title = "search under a latency and a FLOPs budget"
    searched = stages.run("search", title, lambda _: _search(demo, profiled, source), _made_from(s, space, "search"))
    title = "export to ONNX (fp32, int8) and bench"
    stages.run("export", title, lambda _: _export(demo, searched, source), _made_from(s, space, "export"))


def run_demo(settings: DemoSettings | None = None, *, fresh: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the demo pipeline; returns the summary (also written to ``runs/<run>/demo.json``).
    SIGINT or SIGTERM raises :class:`DemoInterrupted` once the stage it stops has stopped.
    One demo at a time runs in a run folder (its lock ``.<run>.lock`` lies beside the folder,
    which ``fresh`` deletes): a second is refused (:class:`nastools.lock.OutputLock`)."""
    from nastools.lock import OutputLock

    s = settings or DemoSettings()
    space = load_space(s.space)
    rdir = run_dir(s.run)
    if not rdir.resolve().name:
        raise NastoolsError(f"--run folder {str(rdir)!r} is the file system's root: give a folder below it")
    writable_dir(rdir, "--run folder")
    locked = rdir if rdir.name else rdir.resolve()  # --run .: the lock beside the working directory
    with OutputLock(locked, "demo run", folder=False, elsewhere="pass another --run"):
        if fresh and rdir.exists():
            shutil.rmtree(rdir)
        rdir.mkdir(parents=True, exist_ok=True)
        return _run_stages(_Demo(s, space, rdir, log), _Stages(rdir / STATE_NAME, log))


def _run_stages(demo: _Demo, stages: _Stages) -> dict[str, Any]:
    """:func:`run_demo` once its run folder is locked: the stages, then the summary."""
    space, rdir, log = demo.space, demo.rdir, demo.log
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_on_sigterm) if main else None
    try:
        _stages(demo, stages)
    finally:
        if main:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
    summary = _summary(space, rdir, stages.done)
    stages.finish(summary)
    _log_summary(summary, space, log)
    return summary


def _ms(v) -> str:
    return "n/a" if v is None else f"{v:.3f} ms"


def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.2f}%" if v <= 1 else f"{v:.2f}%"


def _train_line(summary: Any) -> str:
    if not isinstance(summary, dict):
        return str(summary)
    keys = [k for k in ("steps", "epoch", "min_top1", "max_top1", "stopped") if k in summary]
    return ", ".join(f"{k} {summary[k]}" for k in keys) or json.dumps(_jsonable(summary))[:200]


def _jsonable(x: Any) -> Any:
    try:
        json.dumps(x)
        return x
    except TypeError:
        if isinstance(x, dict):
            return {str(k): _jsonable(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [_jsonable(v) for v in x]
        return str(x)


__all__ = ["DEPENDS", "DemoInterrupted", "DemoSettings", "parse_train_time", "run_demo"]
