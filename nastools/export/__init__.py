"""Export extracted subnets as verified deployable models, and time them.

- :func:`export_subnet` (``nastools export``): a run's subnet -> ONNX (BN folded, checked,
  parity-verified through ONNX Runtime), int8 QDQ / fp16 ONNX, TensorRT engine, TorchScript,
  each with a JSON sidecar.
- :func:`export_onnx`, :func:`fold_batchnorm`, :func:`quantize_int8`, :func:`convert_fp16`,
  :func:`build_engine`: the steps, usable on their own.
- :func:`bench_model` (``nastools bench``): trtexec-like latency statistics (ort|trt|torch).

Models are loaded and run through :mod:`nastools.runtime`; TensorRT is imported lazily, only
by the code that builds or runs an engine.
"""

from nastools.export.api import ExportResult, default_arch_path, export_subnet, resolve_arch, sidecar_path
from nastools.export.bench import BenchResult, bench_model, latency_stats, make_runner, parse_duration
from nastools.export.fold import fold_batchnorm, fold_conv_bn
from nastools.export.precision import convert_fp16, quantize_int8
from nastools.export.tensorrt import build_engine
from nastools.export.to_onnx import FORBIDDEN_OPS, check_onnx, export_onnx, graph_ops
from nastools.runtime.trt import BatchProfile

__all__ = [
    "BatchProfile",
    "BenchResult",
    "ExportResult",
    "FORBIDDEN_OPS",
    "bench_model",
    "build_engine",
    "check_onnx",
    "convert_fp16",
    "default_arch_path",
    "export_onnx",
    "export_subnet",
    "fold_batchnorm",
    "fold_conv_bn",
    "graph_ops",
    "latency_stats",
    "make_runner",
    "parse_duration",
    "quantize_int8",
    "resolve_arch",
    "sidecar_path",
]
