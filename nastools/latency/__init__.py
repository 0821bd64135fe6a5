"""Per-device latency lookup tables: enumerate a space's blocks, time them through a backend
(ONNX Runtime CPU/CUDA, TensorRT, torch), predict subnet latency, validate against end-to-end
runs. ``tensorrt`` and CUDA-only packages are imported lazily inside their backends."""

from nastools.latency.backends import BACKENDS, OrtCpuBackend, OrtCudaBackend, TorchBackend, make_backend
from nastools.latency.measure import Backend, Measurement, Protocol, measure_interleaved
from nastools.latency.profiler import (
    calibrate,
    calibrate_and_validate,
    check_drift,
    measure_end_to_end,
    measure_referenced,
    profile,
    profile_blocks,
    sample_archs,
    validate,
)
from nastools.latency.table import TABLE_FORMAT, LatencyTable, default_table_path
from nastools.latency.validate import error_metrics, kendall_tau
from nastools.latency.workload import Workload, block_workload, blocks_for, subnet_workload

__all__ = [
    "BACKENDS",
    "Backend",
    "LatencyTable",
    "Measurement",
    "OrtCpuBackend",
    "OrtCudaBackend",
    "Protocol",
    "TABLE_FORMAT",
    "TorchBackend",
    "Workload",
    "block_workload",
    "blocks_for",
    "calibrate",
    "calibrate_and_validate",
    "check_drift",
    "default_table_path",
    "error_metrics",
    "kendall_tau",
    "make_backend",
    "measure_end_to_end",
    "measure_referenced",
    "measure_interleaved",
    "profile",
    "profile_blocks",
    "sample_archs",
    "subnet_workload",
    "validate",
]
