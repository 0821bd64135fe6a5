"""The measurement protocol, owned once by :class:`Backend`: the latency tables' timing
policy over :mod:`nastools.runtime` runners.

A backend names the runtime runner of a workload (:meth:`Backend.runner`); loading, running
and releasing are the runner's. Warm-up, repetition until the median is stable, statistics
and the result record live here; GPU runners that launch asynchronously are timed with
device events on their stream, the others by the host clock.

Why this protocol: on a shared machine another process steals the core now and then (a
scheduler time slice is milliseconds, longer than a whole small model), which shows up as a
long tail of runs slower by a slice, not as a shift of the typical run. Host-timed runs during
which the OS preempted the measuring thread (its involuntary context-switch count moved) are
discarded (unless that is most runs: a run longer than a time slice is nearly always
preempted on a busy core), and the median of the rest ignores what tail is left; stopping once that median has
stopped moving (or at a time cap) spends time where a workload is noisy, little where it is
not. ``dropped`` in the record counts the discarded runs.
"""

from __future__ import annotations

import resource
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable

import numpy as np

from nastools.errors import NastoolsError
from nastools.latency.workload import Workload
from nastools.runtime import Runner


@dataclass(frozen=True)
class Protocol:
    """How long and how often to time one workload.

    ``warmup_s``/``min_warmup``: untimed runs first (caches, allocator, lazy init).
    Then runs are timed one by one in rounds of about ``round_s``; after each round the median
    of all runs so far is compared with the previous round's; measurement stops when it moved
    less than ``rtol`` ``stable_rounds`` times in a row with at least ``min_runs`` runs, or at
    ``max_s`` seconds once ``min_runs`` runs are in (10 x ``max_s`` at most), or at ``max_runs``.
    """

    warmup_s: float = 0.05
    min_warmup: int = 5
    min_runs: int = 30
    max_runs: int = 100_000
    round_s: float = 0.05
    rtol: float = 0.01
    stable_rounds: int = 2
    max_s: float = 1.0

    @classmethod
    def quick(cls) -> "Protocol":
        """A short protocol for tests and smoke runs (not for shipped tables)."""
        return cls(warmup_s=0.005, min_warmup=2, min_runs=10, round_s=0.01, max_s=0.1)


@dataclass(frozen=True)
class Measurement:
    """The latency record of one workload, in milliseconds."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    n: int
    dropped: int = 0
    #: None in records made before it was stored
    p99_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The measurement as a JSON-ready dict (floats rounded to 6 digits)."""
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Measurement":
        p99 = float(d["p99_ms"]) if "p99_ms" in d else None
        return cls(float(d["median_ms"]), float(d["p10_ms"]), float(d["p90_ms"]), int(d["n"]), int(d.get("dropped", 0)), p99)


class Backend:
    """A :mod:`nastools.runtime` backend timed by the measurement protocol.

    Subclasses set :attr:`name` and implement :meth:`runner` (the runtime runner of one
    workload) and :meth:`describe` (what the backend runs on, for table metadata). Loading,
    binding the workload's example input, running and releasing are the runner's; warm-up,
    repetition until the median is stable, statistics and the result record live here.
    """

    name = "base"
    #: whether workloads run on a GPU (the table's ``target``)
    on_gpu = False
    #: the precisions the backend can time
    precisions: tuple[str, ...] = ("fp32",)
    #: the attributes :meth:`load` sets for one workload; :meth:`hold` and :meth:`resume`
    #: swap them, so that several workloads stay loaded at once (:func:`measure_interleaved`)
    state: tuple[str, ...] = ("_runner",)

    def __init__(self, precision: str = "fp32", threads: int = 1) -> None:
        self.precision = precision
        self.threads = threads
        self._runner: Runner | None = None

    # -- backend-specific ---------------------------------------------------------------

    def runner(self, workload: Workload) -> Runner:
        """The runtime runner (not loaded yet) of ``workload`` at this backend's precision."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """``{"device": ..., "backend": ..., "version": ...}`` for table metadata."""
        raise NotImplementedError

    def close(self) -> None:
        """Free anything held across workloads (builders, caches)."""

    # -- one workload, through its runner ---------------------------------------------------

    def load(self, workload: Workload) -> None:
        """Load ``workload`` and bind its example input, ready for :meth:`run`."""
        runner = self.runner(workload)
        runner.load()
        try:
            runner.bind(workload.example_input())
        except BaseException:
            runner.release()
            raise
        self._runner = runner

    def run(self) -> None:
        """One synchronous inference of the loaded workload."""
        self._runner.run()

    def release(self) -> None:
        """Free what :meth:`load` allocated."""
        if self._runner is not None:
            self._runner.release()
        self._runner = None

    def timed_run(self) -> tuple[float, bool]:
        """One inference: (its duration in ms, whether the OS preempted this thread during it).
        A runner that launches asynchronously on a GPU is timed with device events on its
        stream (never preempted); any other by the host clock around a synchronous run."""
        runner = self._runner
        if runner.asynchronous:
            import torch

            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record(runner.stream)
            runner.enqueue()
            end.record(runner.stream)
            end.synchronize()
            return start.elapsed_time(end), False
        switches = resource.getrusage(resource.RUSAGE_THREAD).ru_nivcsw
        t0 = time.perf_counter_ns()
        self.run()
        t1 = time.perf_counter_ns()
        return (t1 - t0) / 1e6, resource.getrusage(resource.RUSAGE_THREAD).ru_nivcsw != switches

    def hold(self) -> dict[str, Any]:
        """The loaded workload's state (see :attr:`state`), to :meth:`resume` it after other
        workloads were loaded; the backend no longer refers to it."""
        held = {a: getattr(self, a) for a in self.state}
        for a in self.state:
            setattr(self, a, None)
        return held

    def resume(self, held: dict[str, Any]) -> None:
        """Make the workload :meth:`hold` returned ``held`` for the loaded one again."""
        for a, v in held.items():
            setattr(self, a, v)

    # -- the protocol -------------------------------------------------------------------

    def measure(self, workload: Workload, protocol: Protocol | None = None) -> Measurement:
        """Load ``workload``, warm it up, time it until its median is stable, release it."""
        self.load(workload)
        try:
            return self._time(protocol or Protocol())
        finally:
            self.release()

    def _warm(self, p: Protocol) -> None:
        clock = time.perf_counter
        start = clock()
        n = 0
        while n < p.min_warmup or clock() - start < p.warmup_s:
            self.run()
            n += 1

    def _time(self, p: Protocol) -> Measurement:
        clock = time.perf_counter
        self._warm(p)
        start = clock()
        clean: list[float] = []
        every: list[float] = []
        prev = None
        stable = 0
        per_round = max(1, p.min_runs // 3)

        def kept() -> list[float]:
            return _kept(clean, every, p.min_runs)

        while True:
            t_round = clock()
            for _ in range(per_round):
                t, preempted = self.timed_run()
                every.append(t)
                if not preempted:
                    clean.append(t)
            elapsed = clock() - t_round
            times = kept()
            median = float(np.median(times))
            if prev is not None and abs(median - prev) <= p.rtol * median:
                stable += 1
            else:
                stable = 0
            prev = median
            if len(times) >= p.min_runs and stable >= p.stable_rounds:
                break
            waited = clock() - start
            if len(times) >= p.max_runs or waited >= p.max_s and (len(times) >= p.min_runs or waited >= 10 * p.max_s):
                break
            # size the next round to take about round_s
            per_run = elapsed / per_round
            per_round = int(min(max(1, p.round_s / max(per_run, 1e-7)), p.max_runs - len(times)))
        return _record(clean, every, p.min_runs)


def _kept(clean: list[float], every: list[float], min_runs: int) -> list[float]:
    # runs longer than a scheduler slice are nearly all preempted on a busy core: then keep
    # them all rather than a biased few
    return clean if len(clean) >= max(min_runs // 2, len(every) // 2) else every


def _record(clean: list[float], every: list[float], min_runs: int) -> Measurement:
    times = _kept(clean, every, min_runs)
    p10, p50, p90, p99 = np.percentile(np.asarray(times), [10, 50, 90, 99])
    return Measurement(float(p50), float(p10), float(p90), len(times), len(every) - len(times), float(p99))


#: untimed runs at the start of each visit of :func:`measure_interleaved`: after another
#: workload ran, the first run or two of this one refill the caches (on attentivenas@224 the
#: first run after two untimed ones took 1.08x its p10, the fourth 1.007x)
VISIT_WARMUP = 2


def measure_interleaved(
    backend: Backend,
    workloads: Iterable[Workload],
    protocol: Protocol | None = None,
    *,
    rounds: int = 21,
    passes: int = 3,
    seed: int = 0,
    on_progress: Callable[[str, int], None] | None = None,
    full: Callable[[], bool] | None = None,
) -> list[tuple[Measurement, list[Measurement]]]:
    """Time ``workloads`` together, round-robin: all are loaded at once, and each of
    ``rounds`` rounds visits every workload once, in a new random order, for about
    ``protocol.round_s`` of timed runs (after :data:`VISIT_WARMUP` untimed ones).

    Why: a cloud host's speed drifts by several percent over seconds to minutes (other
    tenants' use of caches and memory bandwidth). Timed one after the other, two workloads
    differ by that drift as much as by their own cost; visited in many short rounds spread
    over the same minutes, every workload samples the host's fast and slow stretches alike,
    and the drift cancels from their comparison. On attentivenas@224 (100 subnets, 20 rounds)
    two halves of the rounds ordered the subnets to Kendall tau 0.976, where two passes of
    :meth:`Backend.measure` a sweep apart reached 0.85.

    Returns, per workload, the record of all its timed runs and the records of its runs in
    each of ``passes`` interleaved sets of rounds (round ``r`` in set ``r % passes``), whose
    spread is the measurement noise. ``workloads`` may be a generator: each is loaded (and
    warmed up) in turn and not referred to afterwards. ``on_progress("load", 1)`` is called
    after each load and ``on_progress("round", n)`` after each round of ``n`` visits. When ``full()``
    turns true after a load (memory is running out), no more are loaded: the result covers
    the first ``len(result)`` workloads only, and the caller times the rest in another call.
    """
    import random

    p = protocol or Protocol()
    if not backend.state:
        raise NastoolsError(f"backend {backend.name!r} cannot hold several workloads at once (no Backend.state)")
    passes = max(1, min(passes, rounds))
    held: list[dict[str, Any]] = []
    per_visit: list[int] = []
    loading = False
    try:
        for w in workloads:
            loading = True
            backend.load(w)
            backend._warm(p)
            per_visit.append(_runs_per_visit(backend, p))
            held.append(backend.hold())
            loading = False
            if on_progress:
                on_progress("load", 1)
            if full and full():
                break
        clean: list[list[list[float]]] = [[[] for _ in range(passes)] for _ in held]
        every: list[list[list[float]]] = [[[] for _ in range(passes)] for _ in held]
        order = list(range(len(held)))
        rng = random.Random(seed)
        for r in range(rounds):
            rng.shuffle(order)
            for i in order:
                backend.resume(held[i])
                for _ in range(VISIT_WARMUP):
                    backend.run()
                for _ in range(per_visit[i]):
                    t, preempted = backend.timed_run()
                    every[i][r % passes].append(t)
                    if not preempted:
                        clean[i][r % passes].append(t)
                held[i] = backend.hold()
            if on_progress:
                on_progress("round", len(held))
    finally:
        if loading:
            backend.release()  # the one being loaded when an error struck
        else:
            backend.hold()  # the one being visited, if any, is in held already
        for h in held:
            backend.resume(h)
            backend.release()
    return [_pass_records(c, e, p, passes) for c, e in zip(clean, every)]


def _runs_per_visit(backend: Backend, p: Protocol) -> int:
    """Timed runs per round-robin visit of the loaded workload: about ``p.round_s`` of them, at least 3."""
    t0 = time.perf_counter()
    for _ in range(3):
        backend.run()
    per_run = (time.perf_counter() - t0) / 3
    return max(3, int(p.round_s / max(per_run, 1e-7)))


def _pass_records(clean: list[list[float]], every: list[list[float]], p: Protocol, passes: int) -> tuple[Measurement, list[Measurement]]:
    """The record of all of a workload's timed runs, and one per pass, from its per-pass times."""
    whole = _record([t for x in clean for t in x], [t for x in every for t in x], p.min_runs)
    return whole, [_record(cx, ex, p.min_runs // passes) for cx, ex in zip(clean, every)]
