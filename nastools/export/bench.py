"""trtexec-like latency measurement of an exported model: bench's timing policy.

The model is loaded and run by a :mod:`nastools.runtime` runner picked by the file's
extension (:func:`~nastools.runtime.make_runner`):

- ``ort``: ONNX Runtime CPU session (``.onnx``), ``threads`` intra-op threads, configured as
  latency profiling configures it (:func:`nastools.runtime.session_options`);
- ``trt``: a TensorRT engine (``.engine``/``.plan``) on the GPU, buffers from torch.cuda;
- ``torch``: a TorchScript module (``.pt``), ``threads`` torch threads.

The policy: warm up for a time, then time one synchronous inference of one batch after the
other for a duration (host wall time; for TensorRT: enqueue + stream synchronize).
Statistics use nearest-rank percentiles, as trtexec does.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from nastools.constants import BACKENDS
from nastools.errors import NastoolsError
from nastools.machine import available_memory
from nastools.runtime import TORCHSCRIPT_META, Runner, backend_for, make_runner
from nastools.space.units import parse_time

MAX_INPUT_GIB = 2
#: the longest --warmup / --duration: beyond an hour a run measures nothing more, it only looks hung
MAX_DURATION_S = 3600.0
#: the most CPU threads (as nastools profile allows)
MAX_THREADS = 1024


def parse_duration(text: str | float, what: str = "duration", max_s: float = MAX_DURATION_S) -> float:
    """``'200ms'``, ``'3s'``, ``'500us'``, ``'1min'``, ``'1h'`` -> seconds, from 0 to ``max_s``.

    A string needs its unit: trtexec reads a bare number as milliseconds for ``--warmUp`` and
    as seconds for ``--duration``, so ``'10'`` is refused rather than guessed. A Python number
    is seconds."""
    if isinstance(text, bool):
        raise NastoolsError(f"{what} {text!r}: expected a number with a unit, e.g. 200ms, 3s, 500us")
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        value = parse_time(text, what)
    if math.isnan(value):
        raise NastoolsError(f"{what} {text!r}: expected a number with a unit, e.g. 200ms, 3s, 500us")
    if value < 0:
        raise NastoolsError(f"{what} {text!r}: must be positive (or 0s), e.g. 200ms, 3s")
    if value > max_s:
        raise NastoolsError(f"{what} {text!r}: too long, at most {_human_seconds(max_s)}; e.g. 200ms, 3s, 1min")
    return value


def _human_seconds(s: float) -> str:
    return f"{s / 3600:g}h" if s >= 3600 else f"{s / 60:g}min" if s >= 60 else f"{s:g}s"


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


@dataclass
class BenchResult:
    """One measurement: latencies in milliseconds, throughput per second."""

    model: str
    backend: str
    batch: int
    threads: int | None
    warmup_s: float
    duration_s: float
    iterations: int
    min_ms: float
    max_ms: float
    mean_ms: float
    median_ms: float
    p10_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    std_ms: float
    throughput_qps: float  # inferences (batches) per second
    throughput_ips: float  # images per second
    input_shape: tuple[int, ...] = ()

    def stat_ms(self, statistic: str) -> float:
        """The latency in ``statistic`` (``median``, ``p10``, ``p90``, ``p99``), the statistic a
        latency table's prediction is compared in."""
        from nastools.latency.table import stat_key

        return float(getattr(self, stat_key(statistic)))

    def to_dict(self) -> dict[str, Any]:
        """The result as a JSON-ready dict (what ``nastools bench --json`` prints)."""
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        return d


def percentile(sorted_ms: np.ndarray, p: float) -> float:
    """Nearest-rank percentile of an ascending array."""
    n = len(sorted_ms)
    k = min(n - 1, max(0, math.ceil(p / 100.0 * n) - 1))
    return float(sorted_ms[k])


def latency_stats(latencies_ms: np.ndarray) -> dict[str, float]:
    """min, max, mean, median, p10, p90, p95, p99, std of per-inference latencies (ms)."""
    a = np.sort(np.asarray(latencies_ms, dtype=np.float64))
    if len(a) == 0:
        raise ValueError("no latencies")
    return {
        "min_ms": float(a[0]),
        "max_ms": float(a[-1]),
        "mean_ms": float(a.mean()),
        "median_ms": float(np.median(a)),
        "p10_ms": percentile(a, 10),
        "p90_ms": percentile(a, 90),
        "p95_ms": percentile(a, 95),
        "p99_ms": percentile(a, 99),
        "std_ms": float(a.std()),
    }


def check_inputs(runner: Runner) -> None:
    """Refuse a model that is not what ``nastools export`` writes: one float32 input of fixed
    shape but the batch."""
    inputs = runner.inputs()
    if len(inputs) != 1 or inputs[0].dtype != "float32" or not (inputs[0].fixed or runner.name == "torch"):
        got = ", ".join(map(str, inputs))
        raise NastoolsError(
            f"{runner.label}: bench times models with one float32 input of fixed shape but the batch "
            f"(what nastools export writes); this one has {got[:200]}"
        )


def check_memory(runner: Runner, shape: tuple[int, ...]) -> int:
    """Refuse, before allocating, an input ``shape`` whose inference would not fit in this
    machine's available memory (the OOM killer would end it, or the whole session); return
    the estimate in bytes. Where the available memory is unknown, cap the input at
    :data:`MAX_INPUT_GIB`."""
    batch = shape[0]
    input_bytes = 4 * math.prod(shape)
    free = available_memory()
    if free is None:
        if input_bytes > MAX_INPUT_GIB * 2**30:
            raise NastoolsError(
                f"--batch {batch}: the input alone would take {_gib(input_bytes)} (at most {_gib(MAX_INPUT_GIB * 2**30)}); pass a smaller --batch"
            )
        return input_bytes
    if input_bytes > free:  # no need to infer shapes
        raise NastoolsError(
            f"--batch {batch}: the input alone needs {_gib(input_bytes)}; this machine has {_gib(free)} available: pass a smaller --batch"
        )
    need = input_bytes + runner.activation_bytes(shape)
    if need > free:
        raise NastoolsError(
            f"--batch {batch} needs about {_gib(need)} for the input and activations; this machine has {_gib(free)} available: pass a smaller --batch"
        )
    return need


def time_callable(run: Callable[[], Any], warmup_s: float, duration_s: float, min_iterations: int = 10) -> tuple[np.ndarray, float]:
    """Warm ``run`` up for ``warmup_s``, then time it for ``duration_s`` (and at least
    ``min_iterations`` calls). Returns per-call latencies (ms) and the timed wall span (s)."""
    clock = time.perf_counter
    end = clock() + warmup_s
    run()
    while clock() < end:
        run()
    lat: list[float] = []
    start = clock()
    stop = start + duration_s
    while True:
        t0 = clock()
        run()
        t1 = clock()
        lat.append((t1 - t0) * 1e3)
        if t1 >= stop and len(lat) >= min_iterations:
            break
    return np.asarray(lat), clock() - start


def bench_model(
    path: str | Path,
    *,
    backend: str | None = None,
    batch: int = 1,
    threads: int | None = None,
    warmup: str | float = "200ms",
    duration: str | float = "3s",
    min_iterations: int = 10,
    seed: int = 0,
) -> BenchResult:
    """Time the exported model at ``path`` like trtexec: run it for ``warmup``, then run one
    random batch (drawn with ``seed``) after the other for ``duration`` and at least
    ``min_iterations`` times, and return the latency statistics (ms) and throughput.

    ``backend``: ``ort`` (ONNX Runtime CPU), ``trt`` (TensorRT on the GPU) or ``torch``
    (TorchScript); None picks it by the file's ending (``.onnx``, ``.engine``/``.plan``,
    ``.pt``). ``batch``: the input's batch size. ``threads``: intra-op CPU threads, 1 to
    1024 (None: the runtime's default); a TorchScript run leaves torch's own thread count as
    it found it. ``warmup`` and ``duration``: a time with its unit (``'200ms'``, ``'3s'``) or
    a number of seconds, at most an hour. User errors (a missing file, a batch that would
    not fit in memory) are :class:`~nastools.errors.NastoolsError`."""
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise NastoolsError(f"--batch {batch!r}: expected a batch size >= 1")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= MAX_THREADS):
        raise NastoolsError(f"--threads {threads!r}: expected 1 to {MAX_THREADS}")
    warmup_s, duration_s = parse_duration(warmup, "--warmup"), parse_duration(duration, "--duration")
    runner = make_runner(path, backend, threads)
    with runner:  # a torch runner gives torch its thread count back on release
        check_inputs(runner)
        shape = runner.input_shape(batch)
        check_memory(runner, shape)
        runner.bind(np.random.default_rng(seed).standard_normal(shape, dtype=np.float32))
        lat, span = time_callable(runner.run, warmup_s, duration_s, min_iterations)
    stats = latency_stats(lat)
    n = len(lat)
    return BenchResult(
        model=str(path),
        backend=runner.name,
        batch=batch,
        threads=threads,
        warmup_s=warmup_s,
        duration_s=span,
        iterations=n,
        throughput_qps=n / span,
        throughput_ips=n * batch / span,
        input_shape=tuple(shape),
        **stats,
    )


__all__ = [
    "BACKENDS",
    "BenchResult",
    "TORCHSCRIPT_META",
    "backend_for",
    "bench_model",
    "check_inputs",
    "check_memory",
    "latency_stats",
    "make_runner",
    "parse_duration",
    "percentile",
    "time_callable",
]
