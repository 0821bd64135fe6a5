"""The TensorRT latency backend: every workload becomes the engine ``nastools export
--format trt`` would build for it, and is timed with CUDA events on the engine's stream.

Engines come from :class:`nastools.runtime.trt.EngineBuilder`, the builder export uses, one
builder and one timing cache for every block (tactics timed for one block's layer are reused
by the next with the same shapes). The ONNX graph an engine is built from is the one export
gives the builder (:func:`engine_onnx`): fp32; fp16 from the fp32 graph and the builder flag
on TensorRT 10, a half-precision graph on 11; int8 a Q/DQ graph made by export's quantizer
(:func:`nastools.export.precision.quantize_int8`, symmetric int8 for TensorRT), so an int8
table times explicitly quantized engines, as shipped.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from nastools.constants import PRECISIONS
from nastools.errors import NastoolsError
from nastools.latency.measure import Backend
from nastools.latency.workload import Workload
from nastools.runtime import trt as rt
from nastools.runtime.base import Runner


def engine_onnx(workload: Workload, precision: str, typed: bool) -> bytes:
    """The ONNX graph of ``workload`` that an engine of ``precision`` is built from, as export
    makes it; ``typed``: the builder's networks are strongly typed (TensorRT 11)."""
    if precision == "int8":
        from nastools.export.precision import quantize_int8

        with tempfile.TemporaryDirectory(prefix="nastools-qdq.") as tmp:
            src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
            src.write_bytes(workload.onnx("fp32"))
            # latency depends on where the Q/DQ nodes sit, not on their scales: one seeded batch calibrates
            quantize_int8(src, dst, [workload.example_input().numpy()], target="trt")
            return dst.read_bytes()
    return workload.onnx("fp16" if precision == "fp16" and typed else "fp32")


class TensorRTBackend(Backend):
    """Times workloads as TensorRT engines on GPU 0."""

    name = "trt"
    on_gpu = True
    precisions = PRECISIONS

    def __init__(self, precision: str = "fp32", threads: int = 1, workspace_mb: int = 1024) -> None:
        super().__init__(precision, threads)
        self._torch = rt.require_cuda("--backend trt")
        self.trt = rt.import_tensorrt()
        self.builder: rt.EngineBuilder | None = rt.EngineBuilder(workspace=workspace_mb << 20)

    def runner(self, workload: Workload) -> Runner:
        if self.builder is None:
            raise NastoolsError("the TensorRT backend was closed: make a new one (make_backend)")
        onnx = engine_onnx(workload, self.precision, rt.strongly_typed(self.trt))
        engine = self.builder.build(onnx, self.precision, rt.BatchProfile.for_batch(workload.input_shape[0]))
        return rt.TrtRunner(engine.data)

    def close(self) -> None:
        self.builder = None

    def describe(self) -> dict[str, Any]:
        return {"device": self._torch.cuda.get_device_name(0), "backend": "tensorrt", "version": self.trt.__version__}
