"""trtexec-like latency measurement of an exported model.

One base class owns the life cycle (load, warm up by time, time for a duration, release)
and the statistics; a backend implements only ``load``, ``infer`` and ``release``:

- ``ort``: ONNX Runtime CPU session (``.onnx``), ``threads`` intra-op threads;
- ``trt``: a TensorRT engine (``.engine``/``.plan``) on the GPU, buffers from torch.cuda;
- ``torch``: a TorchScript module (``.pt``), ``threads`` torch threads.

Latency is host wall time of one synchronous inference of one batch (for TensorRT:
enqueue + stream synchronize). Statistics use nearest-rank percentiles, as trtexec does.
"""

from __future__ import annotations

import json
import math
import re
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from nastools.errors import NastoolsError, brief
from nastools.machine import available_memory

BACKENDS = ("ort", "trt", "torch")
#: the JSON record saved inside an exported TorchScript file (input shape, arch)
TORCHSCRIPT_META = "nastools.json"
MAX_INPUT_GIB = 2
_SUFFIX_BACKEND = {".onnx": "ort", ".engine": "trt", ".plan": "trt", ".trt": "trt", ".pt": "torch", ".ts": "torch"}
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0}
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
        m = re.fullmatch(r"\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?)\s*([a-z]*)\s*", str(text), re.I)
        if not m:
            raise NastoolsError(f"{what} {text!r}: expected a number with a unit, e.g. 200ms, 3s, 500us")
        number, unit = m.group(1), m.group(2).lower()
        if not unit:
            raise NastoolsError(f"{what} {number}: add a unit, e.g. {number}ms or {number}s")
        if unit not in _UNITS:
            hint = " ('m' is ambiguous: write min or ms)" if unit == "m" else ""
            raise NastoolsError(f"{what} {text!r}: unknown unit {m.group(2)!r}{hint}; expected us, ms, s, min or h, e.g. 200ms, 3s")
        value = float(number) * _UNITS[unit]
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


def backend_for(path: str | Path) -> str:
    """The default backend of a model file, from its extension."""
    suffix = Path(path).suffix.lower()
    if suffix not in _SUFFIX_BACKEND:
        raise NastoolsError(
            f"model {str(path)!r}: unknown extension {suffix or '(none)'!r}, expected one of "
            f"{', '.join(_SUFFIX_BACKEND)} (or pass --backend)"
        )
    return _SUFFIX_BACKEND[suffix]


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
    p90_ms: float
    p95_ms: float
    p99_ms: float
    std_ms: float
    throughput_qps: float  # inferences (batches) per second
    throughput_ips: float  # images per second
    input_shape: tuple[int, ...] = ()

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
    """min, max, mean, median, p90, p95, p99, std of per-inference latencies (ms)."""
    a = np.sort(np.asarray(latencies_ms, dtype=np.float64))
    if len(a) == 0:
        raise ValueError("no latencies")
    return {
        "min_ms": float(a[0]),
        "max_ms": float(a[-1]),
        "mean_ms": float(a.mean()),
        "median_ms": float(np.median(a)),
        "p90_ms": percentile(a, 90),
        "p95_ms": percentile(a, 95),
        "p99_ms": percentile(a, 99),
        "std_ms": float(a.std()),
    }


class Runner:
    """Load a model, run it on one input batch, release it. Subclasses: the backends."""

    backend = "base"

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        self.path = Path(path)
        self.threads = threads
        if not self.path.is_file():
            raise NastoolsError(f"model file {str(self.path)!r} not found: expected an exported model (nastools export)")

    def load(self) -> None:
        raise NotImplementedError

    def input_shape(self, batch: int) -> tuple[int, ...]:
        """The input shape for ``batch`` (checks a static batch)."""
        raise NotImplementedError

    def static_batch(self) -> int | None:
        """The model's fixed batch size, or None when the batch axis is dynamic."""
        first = self._shape[0] if getattr(self, "_shape", ()) else None
        return int(first) if isinstance(first, (int, np.integer)) and first > 0 else None

    def infer(self, x: np.ndarray) -> np.ndarray:
        """Run one batch synchronously; return the output as numpy (float32)."""
        raise NotImplementedError

    def activation_bytes(self, shape: tuple[int, ...]) -> int:
        """About how many bytes of host memory one inference on an input of ``shape`` takes
        beside the input itself (0 where the backend cannot tell, or keeps them on a GPU)."""
        return 0

    def prepare(self, x: np.ndarray) -> Callable[[], Any]:
        """A no-argument callable that runs one inference on ``x`` (what gets timed)."""
        return lambda: self.infer(x)

    def release(self) -> None:
        pass

    def __enter__(self) -> "Runner":
        self.load()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _static_batch(shape, batch: int, path: Path) -> tuple[int, ...]:
    first = shape[0]
    if isinstance(first, int) and first > 0 and first != batch:
        raise NastoolsError(f"model {str(path)!r} has a static batch of {first}, got --batch {batch}: pass --batch {first} or export with --batch dynamic")
    return (batch, *[int(d) for d in shape[1:]])


class OrtRunner(Runner):
    """ONNX Runtime on the CPU."""

    backend = "ort"

    def load(self) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.threads:
            opts.intra_op_num_threads = int(self.threads)
            opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors for bad files
            first = brief(exc)
            raise NastoolsError(f"ONNX Runtime cannot load {str(self.path)!r}: {first}") from None
        inputs = self.session.get_inputs()
        inp = inputs[0]
        fixed = all(isinstance(d, int) and d > 0 for d in inp.shape[1:])
        if len(inputs) != 1 or inp.type != "tensor(float)" or not fixed:
            got = ", ".join(f"{i.name} {i.type} {list(i.shape)}" for i in inputs)
            raise NastoolsError(
                f"model {str(self.path)!r}: bench times models with one float32 input of fixed shape but the batch "
                f"(what nastools export writes); this one has {got[:200]}"
            )
        self.input_name, self._shape = inp.name, inp.shape

    def input_shape(self, batch: int) -> tuple[int, ...]:
        return _static_batch(self._shape, batch, self.path)

    def infer(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: x})[0].astype(np.float32, copy=False)

    def activation_bytes(self, shape: tuple[int, ...]) -> int:
        """The largest node's activations (its inputs and outputs, weights aside) at ``shape``,
        from ONNX shape inference on the graph with the input's shape set: no allocation."""
        import onnx
        from onnx import shape_inference

        try:
            model = onnx.load(str(self.path), load_external_data=False)
            graph_input = next(i for i in model.graph.input if i.name == self.input_name)
            for dim, value in zip(graph_input.type.tensor_type.shape.dim, shape):
                dim.dim_value = int(value)
            graph = shape_inference.infer_shapes(model).graph
        except Exception:  # noqa: BLE001 - an estimate: ONNX Runtime loaded the model, so do not fail on it
            return 0
        weights = {t.name for t in graph.initializer}
        sizes: dict[str, int] = {}
        for vi in (*graph.value_info, *graph.output):
            tt = vi.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim]
            if vi.name in weights or vi.name == self.input_name or not dims or min(dims) < 0:
                continue  # weights and the input are counted elsewhere; a tensor of unknown shape is left out
            try:
                itemsize = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type).itemsize
            except Exception:  # noqa: BLE001 - an unknown or undefined type
                itemsize = 4
            sizes[vi.name] = math.prod(dims) * itemsize
        return max((sum(sizes.get(n, 0) for n in {*node.input, *node.output}) for node in graph.node), default=0)

    def release(self) -> None:
        self.session = None


class TorchRunner(Runner):
    """A TorchScript module in eager CPU (or CUDA when the file was saved there)."""

    backend = "torch"

    def load(self) -> None:
        import torch

        if self.threads:
            torch.set_num_threads(int(self.threads))
        extra = {TORCHSCRIPT_META: ""}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                self.module = torch.jit.load(str(self.path), map_location="cpu", _extra_files=extra).eval()
        except RuntimeError as exc:
            raise NastoolsError(_not_torchscript(self.path) or f"cannot load TorchScript module {str(self.path)!r}: {brief(exc)}") from None
        self._torch = torch
        meta = json.loads(extra[TORCHSCRIPT_META] or "{}")
        self._shape = tuple(meta.get("input_chw", ()))

    def static_batch(self) -> int | None:
        return None  # the sidecar's shape is (C, H, W): a TorchScript subnet takes any batch

    def input_shape(self, batch: int) -> tuple[int, ...]:
        if not self._shape:
            raise NastoolsError(f"TorchScript module {str(self.path)!r} does not record its input shape: export it with nastools export --format torchscript")
        return (batch, *self._shape)

    def prepare(self, x: np.ndarray):
        t = self._torch.from_numpy(x)

        def run():
            with self._torch.inference_mode():
                return self.module(t)

        return run

    def infer(self, x: np.ndarray) -> np.ndarray:
        return self.prepare(x)().numpy().astype(np.float32, copy=False)

    def activation_bytes(self, shape: tuple[int, ...]) -> int:
        """The largest op's activations (inputs and outputs, weights aside) of one inference
        on a batch of 2, scaled to ``shape``'s batch (TorchScript keeps no shapes to infer)."""
        import torch
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils._pytree import tree_flatten

        probe = 2
        x = torch.zeros((probe, *shape[1:]))
        weights = {t.data_ptr() for t in (*self.module.parameters(), *self.module.buffers(), x)}
        peak = 0

        class Peak(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                nonlocal peak
                out = func(*args, **(kwargs or {}))
                if not getattr(func, "is_view", False):
                    live = {
                        t.data_ptr(): t.numel() * t.element_size()
                        for t in tree_flatten((args, kwargs, out))[0]
                        if isinstance(t, torch.Tensor) and t.dim() and t.shape[0] == probe and t.data_ptr() not in weights
                    }
                    peak = max(peak, sum(live.values()))
                return out

        try:  # unoptimized, so that the probe's shape does not become the one the JIT specializes for
            with torch.jit.optimized_execution(False), torch.inference_mode(), Peak():
                self.module(x)
        except Exception:  # noqa: BLE001 - an estimate: a module that fails here fails again, with its message, when timed
            return 0
        return peak * shape[0] // probe


def _not_torchscript(path: Path) -> str | None:
    """Why ``path`` is not a TorchScript module when it is a ``torch.save`` file (a zip with a
    ``data.pkl`` but no ``constants.pkl``): a nastools supernet checkpoint or other pickled
    weights. None for anything else."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            names = {n.rsplit("/", 1)[-1] for n in z.namelist()}
    except (OSError, zipfile.BadZipFile):
        return None
    if "data.pkl" not in names or "constants.pkl" in names:
        return None
    import torch

    from nastools.checkpoint import CHECKPOINT_FORMAT, _run_arg

    try:
        data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - not even weights: say what it is not
        data = None
    if isinstance(data, dict) and data.get("format") == CHECKPOINT_FORMAT:
        return (
            f"{str(path)!r} is a nastools supernet checkpoint, not a model: export a subnet first "
            f"(nastools export --run {_run_arg(path, path)} --format onnx, or --format torchscript)"
        )
    return (
        f"{str(path)!r} is a torch.save file (weights or a pickled object), not a TorchScript module: "
        f"bench times exported models (nastools export --format torchscript or onnx)"
    )


class TrtRunner(Runner):
    """A serialized TensorRT engine; device buffers are torch CUDA tensors."""

    backend = "trt"

    def load(self) -> None:
        from nastools.export.tensorrt import import_tensorrt

        trt = import_tensorrt()
        import torch

        if not torch.cuda.is_available():
            raise NastoolsError("the trt backend needs a CUDA GPU, and torch sees none here")
        self._torch, self._trt = torch, trt
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise NastoolsError(f"TensorRT cannot deserialize {str(self.path)!r}: built by another TensorRT version or GPU? rebuild it with nastools export --format trt")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self._shape = tuple(self.engine.get_tensor_shape(self.inputs[0]))
        self.stream = torch.cuda.Stream()

    def input_shape(self, batch: int) -> tuple[int, ...]:
        shape = self._shape
        first = shape[0]
        if first > 0 and first != batch:
            raise NastoolsError(f"engine {str(self.path)!r} has a static batch of {first}, got --batch {batch}")
        if first < 0:
            lo, _, hi = self.engine.get_tensor_profile_shape(self.inputs[0], 0)
            if not lo[0] <= batch <= hi[0]:
                raise NastoolsError(f"--batch {batch} is outside the engine's optimization profile ({lo[0]}..{hi[0]}): rebuild with --max-batch")
        return (batch, *[int(d) for d in shape[1:]])

    def _dtype(self, name: str):
        torch, trt = self._torch, self._trt
        dtypes = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int8: torch.int8, trt.int32: torch.int32}
        for trt_name, torch_dtype in (("int64", torch.int64), ("bool", torch.bool)):
            if hasattr(trt, trt_name):
                dtypes[getattr(trt, trt_name)] = torch_dtype
        dtype = self.engine.get_tensor_dtype(name)
        if dtype not in dtypes:
            raise NastoolsError(f"engine {str(self.path)!r}: tensor {name!r} has type {dtype}, which bench cannot feed")
        return dtypes[dtype]

    def prepare(self, x: np.ndarray):
        torch = self._torch
        name = self.inputs[0]
        self.d_in = torch.from_numpy(x).to("cuda").to(self._dtype(name)).contiguous()
        if not self.context.set_input_shape(name, tuple(x.shape)):
            raise NastoolsError(f"engine {str(self.path)!r} does not accept input shape {tuple(x.shape)}")
        self.context.set_tensor_address(name, self.d_in.data_ptr())
        self.d_out = {}
        for out in self.outputs:
            shape = tuple(self.context.get_tensor_shape(out))
            self.d_out[out] = torch.empty(shape, dtype=self._dtype(out), device="cuda")
            self.context.set_tensor_address(out, self.d_out[out].data_ptr())
        torch.cuda.synchronize()  # the copies above ran on the default stream; inference runs on ours
        handle = self.stream.cuda_stream

        def run():
            if not self.context.execute_async_v3(handle):  # nothing was queued: fail, never time a no-op
                raise NastoolsError(f"TensorRT could not run {str(self.path)!r} (execute_async_v3 returned False; see the TensorRT log)")
            self.stream.synchronize()

        return run

    def infer(self, x: np.ndarray) -> np.ndarray:
        self.prepare(x)()
        return self.d_out[self.outputs[0]].float().cpu().numpy()

    def release(self) -> None:
        self.context = self.engine = self.runtime = None


RUNNERS: dict[str, type[Runner]] = {"ort": OrtRunner, "trt": TrtRunner, "torch": TorchRunner}


def make_runner(path: str | Path, backend: str | None = None, threads: int | None = None) -> Runner:
    """The runner for ``backend`` (default: from the file's extension)."""
    backend = backend or backend_for(path)
    if backend not in RUNNERS:
        raise NastoolsError(f"backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    expected = _SUFFIX_BACKEND.get(Path(path).suffix.lower())
    if expected and expected != backend:
        kind = {"ort": "an ONNX model", "trt": "a TensorRT engine", "torch": "a TorchScript module"}[expected]
        raise NastoolsError(f"model {str(path)!r} is {kind}, which --backend {backend} cannot run: pass --backend {expected}")
    return RUNNERS[backend](path, threads)


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
            raise NastoolsError(f"--batch {batch}: the input alone would take {_gib(input_bytes)} (at most {_gib(MAX_INPUT_GIB * 2**30)}); pass a smaller --batch")
        return input_bytes
    if input_bytes > free:  # no need to infer shapes
        raise NastoolsError(f"--batch {batch}: the input alone needs {_gib(input_bytes)}; this machine has {_gib(free)} available: pass a smaller --batch")
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
    """Measure ``path`` like trtexec: warm-up by time, then latency statistics over a duration."""
    if batch < 1:
        raise NastoolsError(f"--batch {batch}: expected a batch size >= 1")
    if threads is not None and not 1 <= threads <= MAX_THREADS:
        raise NastoolsError(f"--threads {threads}: expected 1 to {MAX_THREADS}")
    warmup_s, duration_s = parse_duration(warmup, "--warmup"), parse_duration(duration, "--duration")
    runner = make_runner(path, backend, threads)
    with runner:
        shape = runner.input_shape(batch)
        check_memory(runner, shape)
        x = np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)
        lat, span = time_callable(runner.prepare(x), warmup_s, duration_s, min_iterations)
    stats = latency_stats(lat)
    n = len(lat)
    return BenchResult(
        model=str(path),
        backend=runner.backend,
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
    "Runner",
    "backend_for",
    "bench_model",
    "check_memory",
    "latency_stats",
    "make_runner",
    "parse_duration",
    "percentile",
    "time_callable",
]
