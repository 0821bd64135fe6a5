"""ONNX -> TensorRT engine with the TensorRT Python API (10.x and 11.x).

``tensorrt`` is imported lazily (:func:`import_tensorrt`); without it every entry point
raises one line pointing at the Docker image. Precision:

- TensorRT 11 networks are always strongly typed: the precision is in the ONNX graph
  (fp16 via :func:`nastools.export.precision.convert_fp16`, int8 via QDQ nodes).
- TensorRT 10: fp16 from the fp32 graph with ``BuilderFlag.FP16``; int8 from the QDQ graph
  with ``BuilderFlag.INT8`` (explicit quantization).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nastools.errors import NastoolsError
from nastools.io import atomic_write

DOCKER_HINT = (
    "TensorRT is not installed here: run nastools in the GPU image "
    "(docker build -t nastools . && docker run --gpus all -v $PWD:/work nastools export --format trt ...) "
    "or install it with: pip install 'nastools[trt]'"
)
DEFAULT_WORKSPACE = 1 << 30  # 1 GiB


def import_tensorrt():
    """The ``tensorrt`` module, or a one-line :class:`NastoolsError` naming the Docker image."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise NastoolsError(f"{DOCKER_HINT} ({exc})") from None
    return trt


def tensorrt_major(trt) -> int:
    return int(str(trt.__version__).split(".")[0])


def strongly_typed(trt) -> bool:
    """Whether engines are built from strongly typed networks (always on TensorRT >= 11)."""
    return tensorrt_major(trt) >= 11


def gpu_name() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except ImportError:  # pragma: no cover
        pass
    return "unknown"


@dataclass(frozen=True)
class BatchProfile:
    """The optimization profile of the batch axis: min, opt, max (all equal for a static batch)."""

    min: int
    opt: int
    max: int

    @classmethod
    def for_batch(cls, batch: int | None, opt: int = 32, max_batch: int = 256) -> "BatchProfile":
        if batch:
            return cls(batch, batch, batch)
        max_batch = max(1, max_batch)
        return cls(1, max(1, min(opt, max_batch)), max_batch)


def _make_logger(trt):
    """A TensorRT logger that keeps errors, so a failed build raises one line naming them."""

    class ErrorLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity, msg) -> None:
            if severity in (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR):
                self.errors.append(str(msg))

    return ErrorLogger()


def build_engine(
    onnx_path: str | Path,
    engine_path: str | Path,
    *,
    precision: str = "fp32",
    profile: BatchProfile = BatchProfile(1, 32, 256),
    workspace: int = DEFAULT_WORKSPACE,
    timing_cache: str | Path | None = None,
) -> dict[str, Any]:
    """Build a serialized TensorRT engine from ``onnx_path`` and write it to ``engine_path``.

    ``precision``: fp32, fp16 or int8; on TensorRT 11 the ONNX file must already carry it
    (fp16 graph or QDQ graph). ``timing_cache`` is read if present and written back after the
    build. Returns the build facts for the sidecar (TensorRT version, GPU, profile, ...).
    """
    trt = import_tensorrt()
    log = _make_logger(trt)
    builder = trt.Builder(log)
    typed = strongly_typed(trt)
    flags = 0
    if typed or precision == "fp32":
        # accepted (and ignored) by 11.x; opt-in on 10.x, where fp32 loses nothing by it
        flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
        if flag is not None:
            flags |= 1 << int(flag)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, log)
    if not parser.parse_from_file(str(onnx_path)):
        errs = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise NastoolsError(f"TensorRT could not parse {str(onnx_path)!r}: {'; '.join(errs)[:300]}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace))
    if precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)  # on by default; fp32 parity is checked to 1e-3
    if not typed and not flags:
        if precision == "fp16":
            config.set_flag(trt.BuilderFlag.FP16)
        elif precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
    opt_profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        c_h_w = tuple(tensor.shape)[1:]
        opt_profile.set_shape(tensor.name, (profile.min, *c_h_w), (profile.opt, *c_h_w), (profile.max, *c_h_w))
    config.add_optimization_profile(opt_profile)
    cache_path = Path(timing_cache) if timing_cache else None
    cache_bytes = cache_path.read_bytes() if cache_path and cache_path.is_file() else b""
    try:
        cache = config.create_timing_cache(cache_bytes)
    except Exception:  # a truncated or foreign file: start an empty cache below
        cache = None
    reused = cache is not None and bool(cache_bytes) and bool(config.set_timing_cache(cache, False))
    if not reused:  # none yet, or one of another GPU or TensorRT version: start an empty one
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, False)
    log.errors.clear()  # a rejected timing cache is not why a build fails
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise NastoolsError(f"TensorRT engine build failed for {str(onnx_path)!r}: {'; '.join(log.errors)[:300] or 'no message'}")
    data = bytes(engine)
    atomic_write(engine_path, lambda f: f.write(data), mode="wb")
    if cache_path:
        cache_data = bytes(cache.serialize())  # the attached cache, grown by the build
        atomic_write(cache_path, lambda f: f.write(cache_data), mode="wb")
    return {
        "tensorrt": str(trt.__version__),
        "gpu": gpu_name(),
        "strongly_typed": bool(typed or flags),
        "precision": precision,
        "profile": {"min": profile.min, "opt": profile.opt, "max": profile.max},
        "workspace_bytes": int(workspace),
        "timing_cache": str(cache_path) if cache_path else None,
        "timing_cache_reused": reused,
        "tf32": bool(config.get_flag(trt.BuilderFlag.TF32)) if hasattr(trt.BuilderFlag, "TF32") else None,
        "engine_bytes": len(data),
    }


__all__ = ["BatchProfile", "DOCKER_HINT", "build_engine", "import_tensorrt", "strongly_typed"]
