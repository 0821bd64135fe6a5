"""The measurement protocol, owned once by :class:`Backend`.

A backend implements only :meth:`Backend.load`, :meth:`Backend.run` and
:meth:`Backend.release` (and, for GPUs, :meth:`Backend.timed_run` with device events);
warm-up, repetition until the median is stable, statistics and the result record live here.

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
from typing import Any

import numpy as np

from nastools.latency.workload import Workload


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

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Measurement":
        return cls(float(d["median_ms"]), float(d["p10_ms"]), float(d["p90_ms"]), int(d["n"]), int(d.get("dropped", 0)))


class Backend:
    """Base of every latency backend: load a workload, time it by the protocol, release it.

    Subclasses set :attr:`name` and implement :meth:`load`, :meth:`run`, :meth:`release`;
    :meth:`describe` reports what the backend ran on (device, library and version).
    """

    name = "base"
    #: whether workloads run on a GPU (the table's ``target``)
    on_gpu = False
    #: the precisions the backend can time
    precisions: tuple[str, ...] = ("fp32",)

    def __init__(self, precision: str = "fp32", threads: int = 1) -> None:
        self.precision = precision
        self.threads = threads

    # -- backend-specific ---------------------------------------------------------------

    def load(self, workload: Workload) -> None:
        """Prepare ``workload`` for :meth:`run` (build a session / engine, allocate buffers)."""
        raise NotImplementedError

    def run(self) -> None:
        """One synchronous inference of the loaded workload."""
        raise NotImplementedError

    def release(self) -> None:
        """Free what :meth:`load` allocated."""

    def timed_run(self) -> tuple[float, bool]:
        """One inference: (its duration in ms by the host clock, whether the OS preempted this
        thread during it). GPU backends override this with device events (never preempted)."""
        switches = resource.getrusage(resource.RUSAGE_THREAD).ru_nivcsw
        t0 = time.perf_counter_ns()
        self.run()
        t1 = time.perf_counter_ns()
        return (t1 - t0) / 1e6, resource.getrusage(resource.RUSAGE_THREAD).ru_nivcsw != switches

    def describe(self) -> dict[str, Any]:
        """``{"device": ..., "backend": ..., "version": ...}`` for table metadata."""
        raise NotImplementedError

    def close(self) -> None:
        """Free anything held across workloads (builders, caches)."""

    # -- the protocol -------------------------------------------------------------------

    def measure(self, workload: Workload, protocol: Protocol | None = None) -> Measurement:
        """Load ``workload``, warm it up, time it until its median is stable, release it."""
        self.load(workload)
        try:
            return self._time(protocol or Protocol())
        finally:
            self.release()

    def _time(self, p: Protocol) -> Measurement:
        clock = time.perf_counter
        start = clock()
        n = 0
        while n < p.min_warmup or clock() - start < p.warmup_s:
            self.run()
            n += 1
        start = clock()
        clean: list[float] = []
        every: list[float] = []
        prev = None
        stable = 0
        per_round = max(1, p.min_runs // 3)

        def kept() -> list[float]:
            # runs longer than a scheduler slice are nearly all preempted on a busy core:
            # then keep them all rather than a biased few
            return clean if len(clean) >= max(p.min_runs // 2, len(every) // 2) else every

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
        times = kept()
        dropped = len(every) - len(times)
        arr = np.asarray(times)
        p10, p50, p90 = np.percentile(arr, [10, 50, 90])
        return Measurement(float(p50), float(p10), float(p90), len(times), dropped)
