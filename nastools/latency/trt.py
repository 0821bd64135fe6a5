"""TensorRT 10 / 11 backend: ONNX -> serialized engine -> ``execute_async_v3``.

``tensorrt`` is imported when the backend is created, never at module import. Buffers are
torch CUDA tensors bound with ``set_tensor_address`` (no pycuda); runs are timed with CUDA
events on the execution stream. One builder and one timing cache serve every block, so
tactics timed for one block's layer are reused by the next with the same shapes.

Precision: TensorRT 10 builds fp32 graphs with the FP16 / INT8 builder flags (INT8 with
per-tensor dynamic ranges, good for timing only). TensorRT 11 removed those flags: networks
are strongly typed, so fp16 comes from a half-precision ONNX graph, and int8 needs a
Q/DQ-quantized model, which block profiling does not make.
"""

from __future__ import annotations

from typing import Any

from nastools.errors import NastoolsError, require
from nastools.latency.measure import Backend
from nastools.latency.workload import Workload

_TORCH_DTYPES = {"FLOAT": "float32", "HALF": "float16", "INT8": "int8", "INT32": "int32", "INT64": "int64", "BOOL": "bool"}


class TensorRTBackend(Backend):
    """Times workloads as TensorRT engines on GPU 0."""

    name = "trt"
    on_gpu = True
    precisions = ("fp32", "fp16", "int8")
    state = ("_engine", "_context", "_buffers")

    def __init__(self, precision: str = "fp32", threads: int = 1, workspace_mb: int = 1024) -> None:
        super().__init__(precision, threads)
        import torch

        if not torch.cuda.is_available():
            raise NastoolsError("--backend trt: no CUDA GPU is visible to torch here; run on a machine with an NVIDIA GPU")
        self.trt = require("tensorrt", "trt", "the TensorRT backend")
        self.major = int(self.trt.__version__.split(".")[0])
        if self.major < 10:
            raise NastoolsError(
                f"--backend trt: got TensorRT {self.trt.__version__}, expected 10 or newer; install it with: pip install 'nastools[trt]'"
            )
        if self.major >= 11:
            self.precisions = ("fp32", "fp16")
        self._torch = torch
        self.logger = self.trt.Logger(self.trt.Logger.WARNING)
        self.builder = self.trt.Builder(self.logger)
        self.runtime = self.trt.Runtime(self.logger)
        self.workspace = workspace_mb << 20
        self.timing_cache = None
        self.stream = torch.cuda.Stream()
        self._engine = self._context = None
        self._buffers: list = []

    def _graph_precision(self) -> str:
        # TRT 11: strongly typed, the graph carries the precision
        return "fp16" if self.major >= 11 and self.precision == "fp16" else "fp32"

    def build(self, onnx_bytes: bytes) -> bytes:
        """A serialized engine for an ONNX model, sharing this backend's timing cache."""
        trt = self.trt
        network = self.builder.create_network(0)
        parser = trt.OnnxParser(network, self.logger)
        if not parser.parse(onnx_bytes):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise NastoolsError(f"TensorRT could not parse the ONNX model: {errors[:300]}")
        config = self.builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, self.workspace)
        if self.timing_cache is None:
            self.timing_cache = config.create_timing_cache(b"")
        config.set_timing_cache(self.timing_cache, False)
        if self.precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
            config.clear_flag(trt.BuilderFlag.TF32)  # fp32 means fp32, as in nastools export
        if self.major < 11 and self.precision == "fp16":
            config.set_flag(trt.BuilderFlag.FP16)
        if self.major < 11 and self.precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
            config.set_flag(trt.BuilderFlag.FP16)
            # no calibration: latency does not depend on the scales, so give every tensor one
            for i in range(network.num_layers):
                layer = network.get_layer(i)
                for j in range(layer.num_outputs):
                    layer.get_output(j).dynamic_range = (-4.0, 4.0)
            for i in range(network.num_inputs):
                network.get_input(i).dynamic_range = (-4.0, 4.0)
        engine = self.builder.build_serialized_network(network, config)
        if engine is None:
            raise NastoolsError("TensorRT failed to build an engine (see the TensorRT log above)")
        return bytes(engine)

    def load(self, workload: Workload) -> None:
        torch, trt = self._torch, self.trt
        self._engine = self.runtime.deserialize_cuda_engine(self.build(workload.onnx(self._graph_precision())))
        if self._engine is None:
            raise NastoolsError("TensorRT could not deserialize the engine it just built (see the TensorRT log above)")
        self._context = self._engine.create_execution_context()
        self._buffers = []
        for i in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(i)
            shape = tuple(self._engine.get_tensor_shape(name))
            dtype = getattr(torch, _TORCH_DTYPES[self._engine.get_tensor_dtype(name).name])
            if self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                buf = torch.randn(shape, device="cuda").to(dtype)
            else:
                buf = torch.empty(shape, dtype=dtype, device="cuda")
            self._context.set_tensor_address(name, buf.data_ptr())
            self._buffers.append(buf)
        torch.cuda.synchronize()  # the inputs were filled on the default stream, runs use self.stream

    def run(self) -> None:
        if not self._context.execute_async_v3(self.stream.cuda_stream):
            raise NastoolsError("TensorRT execute_async_v3 failed")
        self.stream.synchronize()

    def timed_run(self) -> tuple[float, bool]:
        torch = self._torch
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record(self.stream)
        if not self._context.execute_async_v3(self.stream.cuda_stream):
            raise NastoolsError("TensorRT execute_async_v3 failed")
        end.record(self.stream)
        end.synchronize()
        return start.elapsed_time(end), False

    def release(self) -> None:
        self._context = self._engine = None
        self._buffers = []

    def describe(self) -> dict[str, Any]:
        return {"device": self._torch.cuda.get_device_name(0), "backend": "tensorrt", "version": self.trt.__version__}
