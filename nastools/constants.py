"""The closed sets of names that the library and the CLI share, each defined once here.

Each set is a ``Literal`` type (for annotations) and the tuple of its values (for checks,
error messages and ``click.Choice``).
"""

from __future__ import annotations

from typing import Literal, get_args

Precision = Literal["fp32", "fp16", "int8"]
ExportFormat = Literal["onnx", "trt", "torchscript"]
BackendName = Literal["ort", "trt", "torch"]
DeviceKind = Literal["cpu", "gpu"]
Statistic = Literal["median", "p10", "p90", "p99"]

#: numeric precisions a latency table or an exported model can have
PRECISIONS: tuple[str, ...] = get_args(Precision)
#: formats ``nastools export`` writes
FORMATS: tuple[str, ...] = get_args(ExportFormat)
#: runtimes that load and time a model: ONNX Runtime, TensorRT, torch
BACKENDS: tuple[str, ...] = get_args(BackendName)
#: devices ``nastools profile`` measures on
DEVICES: tuple[str, ...] = get_args(DeviceKind)
#: the latency statistics a budget can be in (a table stores each as ``<name>_ms``)
STATISTICS: tuple[str, ...] = get_args(Statistic)

__all__ = [
    "BACKENDS",
    "DEVICES",
    "FORMATS",
    "PRECISIONS",
    "STATISTICS",
    "BackendName",
    "DeviceKind",
    "ExportFormat",
    "Precision",
    "Statistic",
]
