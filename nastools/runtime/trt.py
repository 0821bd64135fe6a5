"""TensorRT 10 / 11: the one import helper, the one engine builder, and the engine runner.

``tensorrt`` is imported lazily (:func:`import_tensorrt`); without it every entry point
raises one line naming the Docker image and the ``nastools[trt]`` extra.

Precision (:meth:`EngineBuilder.build`):

- TensorRT 11 networks are always strongly typed: the precision is in the ONNX graph (fp16
  via :func:`nastools.export.precision.convert_fp16` or a half-precision export, int8 via
  Q/DQ nodes from :func:`nastools.export.precision.quantize_int8`); 11 has no FP16/INT8
  builder flags.
- TensorRT 10: fp32 strongly typed; fp16 from the fp32 graph with ``BuilderFlag.FP16``; int8
  from the Q/DQ graph with ``BuilderFlag.INT8`` (explicit quantization).

``nastools export --format trt`` and the TensorRT latency backend both build through
:class:`EngineBuilder`, so a latency table times the engines export ships.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nastools.errors import NastoolsError
from nastools.runtime.base import InputMeta, Runner, as_tensor, model_label, require_cuda

DOCKER_HINT = (
    "TensorRT is not installed here: run nastools in the GPU image "
    "(docker build -t nastools . && docker run --gpus all -v $PWD:/work nastools <command> ...) "
    "or install it with: pip install 'nastools[trt]'"
)
DEFAULT_WORKSPACE = 1 << 30  # 1 GiB
_LOGGER: Any = None


def import_tensorrt():
    """The ``tensorrt`` module (10 or newer), or a one-line :class:`NastoolsError` naming the
    Docker image and the extra to install."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise NastoolsError(f"{DOCKER_HINT} ({exc})") from None
    if tensorrt_major(trt) < 10:
        raise NastoolsError(f"got TensorRT {trt.__version__}, expected 10 or newer: install it with: pip install 'nastools[trt]'")
    return trt


def tensorrt_installed() -> bool:
    """Whether ``tensorrt`` is importable here (without importing it)."""
    import importlib.util

    return importlib.util.find_spec("tensorrt") is not None


def tensorrt_major(trt) -> int:
    """The major version of a ``tensorrt`` module."""
    return int(str(trt.__version__).split(".")[0])


def strongly_typed(trt) -> bool:
    """Whether engines are built from strongly typed networks (always on TensorRT >= 11)."""
    return tensorrt_major(trt) >= 11


def gpu_name() -> str:
    """The name of CUDA device 0, or ``unknown``."""
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except ImportError:  # pragma: no cover
        pass
    return "unknown"


def logger(trt):
    """The process's one TensorRT logger: it prints nothing and keeps the errors, so that a
    failure raises one line naming them (:func:`take_errors`)."""
    global _LOGGER
    if _LOGGER is None:

        class ErrorLogger(trt.ILogger):
            def __init__(self) -> None:
                trt.ILogger.__init__(self)
                self.errors: list[str] = []

            def log(self, severity, msg) -> None:
                if severity in (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR):
                    self.errors.append(str(msg))

        _LOGGER = ErrorLogger()
    return _LOGGER


def take_errors(log) -> str:
    """The errors ``log`` kept since the last call, as one short line."""
    text = "; ".join(log.errors)[:300] or "no message"
    log.errors.clear()
    return text


@dataclass(frozen=True)
class BatchProfile:
    """The optimization profile of the batch axis: min, opt, max (all equal for a static batch)."""

    min: int
    opt: int
    max: int

    @classmethod
    def for_batch(cls, batch: int | None, opt: int = 32, max_batch: int = 256) -> "BatchProfile":
        """A static profile for ``batch``, or 1..``max_batch`` (tuned for ``opt``) for None."""
        if batch:
            return cls(batch, batch, batch)
        max_batch = max(1, max_batch)
        return cls(1, max(1, min(opt, max_batch)), max_batch)


@dataclass(frozen=True)
class Engine:
    """A serialized engine and how it was built."""

    data: bytes
    precision: str
    profile: BatchProfile
    strongly_typed: bool
    tf32: bool | None


class EngineBuilder:
    """Builds serialized TensorRT engines from ONNX models with one ``trt.Builder`` and one
    timing cache, so that tactics timed for one model's layers are reused by the next one
    with the same shapes. ``timing_cache``: a file read at the first build (a missing,
    foreign or truncated one starts an empty cache) and written by :meth:`save_cache`."""

    def __init__(self, *, workspace: int = DEFAULT_WORKSPACE, timing_cache: str | Path | None = None) -> None:
        self.trt = import_tensorrt()
        self.workspace = int(workspace)
        self.cache_path = Path(timing_cache) if timing_cache else None
        #: whether the timing cache file was read and accepted
        self.cache_reused = False
        self._builder = None
        self._cache = None

    def build(self, onnx: bytes | str | Path, precision: str = "fp32", profile: BatchProfile | None = None) -> Engine:
        """An engine of ``onnx`` (ONNX bytes or file) at ``precision`` (fp32, fp16, int8; on
        TensorRT 11 the graph carries it). ``profile`` (default: the input's static batch, or
        1..256 for a dynamic one) bounds the batch axis."""
        trt = self.trt
        log = logger(trt)
        if self._builder is None:
            self._builder = trt.Builder(log)
        builder = self._builder
        typed = strongly_typed(trt)
        flags = 0
        if typed or precision == "fp32":
            # accepted (and ignored) by 11.x; opt-in on 10.x, where fp32 loses nothing by it
            flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
            if flag is not None:
                flags |= 1 << int(flag)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, log)
        label = model_label(onnx, "ONNX model")
        log.errors.clear()
        if not (parser.parse_from_file(str(onnx)) if isinstance(onnx, (str, Path)) else parser.parse(onnx)):
            errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise NastoolsError(f"TensorRT could not parse {label}: {errs[:300]}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, self.workspace)
        if precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
            config.clear_flag(trt.BuilderFlag.TF32)  # on by default; fp32 means fp32 (parity is checked to 1e-3)
        if not typed and not flags:
            if precision == "fp16":
                config.set_flag(trt.BuilderFlag.FP16)
            elif precision == "int8":
                config.set_flag(trt.BuilderFlag.INT8)  # explicit quantization: the graph's Q/DQ nodes
        first = tuple(network.get_input(0).shape)[0]
        profile = profile or BatchProfile.for_batch(first if first > 0 else None)
        opt_profile = builder.create_optimization_profile()
        for i in range(network.num_inputs):
            tensor = network.get_input(i)
            c_h_w = tuple(tensor.shape)[1:]
            opt_profile.set_shape(tensor.name, (profile.min, *c_h_w), (profile.opt, *c_h_w), (profile.max, *c_h_w))
        config.add_optimization_profile(opt_profile)
        self._attach_cache(config)
        log.errors.clear()  # a rejected timing cache is not why a build fails
        data = builder.build_serialized_network(network, config)
        if data is None:
            raise NastoolsError(f"TensorRT engine build failed for {label}: {take_errors(log)}")
        tf32 = bool(config.get_flag(trt.BuilderFlag.TF32)) if hasattr(trt.BuilderFlag, "TF32") else None
        return Engine(bytes(data), precision, profile, bool(typed or flags), tf32)

    def _attach_cache(self, config) -> None:
        if self._cache is not None:
            config.set_timing_cache(self._cache, False)
            return
        data = self.cache_path.read_bytes() if self.cache_path and self.cache_path.is_file() else b""
        try:
            cache = config.create_timing_cache(data)
        except Exception:  # noqa: BLE001 - a truncated or foreign file: start an empty cache below
            cache = None
        self.cache_reused = cache is not None and bool(data) and bool(config.set_timing_cache(cache, False))
        if not self.cache_reused:  # none yet, or one of another GPU or TensorRT version
            cache = config.create_timing_cache(b"")
            config.set_timing_cache(cache, False)
        self._cache = cache

    def save_cache(self) -> Path | None:
        """Write the timing cache, grown by the builds, to its file (if one was given)."""
        if self.cache_path is None or self._cache is None:
            return None
        from nastools.io import atomic_write

        data = bytes(self._cache.serialize())
        return atomic_write(self.cache_path, lambda f: f.write(data), mode="wb")


class TrtRunner(Runner):
    """A serialized engine (a file or bytes) on GPU 0: buffers are torch CUDA tensors bound
    with ``set_tensor_address`` (no pycuda), and a run is ``execute_async_v3`` on the
    runner's own stream."""

    name = "trt"
    asynchronous = True

    def __init__(self, model: bytes | str | Path) -> None:
        super().__init__(model_label(model, "engine" if isinstance(model, (str, Path)) else "TensorRT engine"))
        self.model = model
        self.engine = self.context = self._runtime = None

    def load_impl(self) -> None:
        trt = import_tensorrt()
        torch = require_cuda("the trt backend")
        data = Path(self.model).read_bytes() if isinstance(self.model, (str, Path)) else self.model
        self._trt, self._torch = trt, torch
        self._runtime = trt.Runtime(logger(trt))
        self.engine = self._runtime.deserialize_cuda_engine(data)
        if self.engine is None:
            raise NastoolsError(
                f"TensorRT cannot deserialize {self.label} ({take_errors(logger(trt))}): built by another "
                f"TensorRT version or GPU? rebuild it with nastools export --format trt"
            )
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.output_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.stream = torch.cuda.Stream()
        self._x, self._out = None, {}

    def _dtype(self, name: str):
        torch, trt = self._torch, self._trt
        dtypes = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int8: torch.int8, trt.int32: torch.int32}
        for trt_name, torch_dtype in (("int64", torch.int64), ("bool", torch.bool)):
            if hasattr(trt, trt_name):
                dtypes[getattr(trt, trt_name)] = torch_dtype
        dtype = self.engine.get_tensor_dtype(name)
        if dtype not in dtypes:
            raise NastoolsError(f"{self.label}: tensor {name!r} has type {dtype}, which nastools cannot feed")
        return dtypes[dtype]

    def inputs_impl(self) -> list[InputMeta]:
        metas = []
        for name in self.input_names:
            shape = tuple(int(d) if d >= 0 else None for d in self.engine.get_tensor_shape(name))
            batch_range = None
            if shape and shape[0] is None:
                lo, _, hi = self.engine.get_tensor_profile_shape(name, 0)
                batch_range = (int(lo[0]), int(hi[0]))
            metas.append(InputMeta(name, shape, str(self._dtype(name)).removeprefix("torch."), batch_range))
        return metas

    def bind_impl(self, x: Any) -> None:
        torch, name = self._torch, self.input_names[0]
        self._x = as_tensor(x).to("cuda").to(self._dtype(name)).contiguous()
        if not self.context.set_input_shape(name, tuple(self._x.shape)):
            raise NastoolsError(f"{self.label} does not accept input shape {tuple(self._x.shape)}")
        self.context.set_tensor_address(name, self._x.data_ptr())
        self._out = {}
        for out in self.output_names:
            shape = tuple(self.context.get_tensor_shape(out))
            self._out[out] = torch.empty(shape, dtype=self._dtype(out), device="cuda")
            self.context.set_tensor_address(out, self._out[out].data_ptr())
        torch.cuda.synchronize()  # the copies above ran on the default stream; inference runs on ours

    def run_impl(self) -> None:
        if not self.context.execute_async_v3(self.stream.cuda_stream):  # nothing was queued: fail, never time a no-op
            raise NastoolsError(f"TensorRT could not run {self.label}: execute_async_v3 returned False ({take_errors(logger(self._trt))})")

    def synchronize_impl(self) -> None:
        self.stream.synchronize()

    def output_impl(self) -> np.ndarray:
        return self._out[self.output_names[0]].float().cpu().numpy()

    def release_impl(self) -> None:
        self.context = self.engine = self._runtime = None  # in this order: a context needs its engine, an engine its runtime
        self._x, self._out = None, {}
        self.stream = None
