"""ONNX Runtime runners: the CPU provider, and the CUDA provider with IO binding.

:func:`session_options` is the one session configuration: latency profiling, ``nastools
bench`` and export's parity check all build their sessions with it, so a latency table and a
bench time identically configured sessions.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from nastools.errors import NastoolsError, brief, require
from nastools.runtime.base import InputMeta, Runner, as_tensor, model_label, require_cuda

_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
}


def import_ort():
    """The ``onnxruntime`` module, or a one-line install hint."""
    return require("onnxruntime", what="the ONNX Runtime backend")


def session_options(threads: int | None = None, spin: bool | None = None):
    """The ``onnxruntime.SessionOptions`` of every nastools session.

    ``threads`` intra-op threads (None: ONNX Runtime's default), sequential execution, all
    graph optimisations (BN folding, op fusion), and spinning only where several threads run
    (``spin`` None), so that a one-thread run never spins idle workers while a multi-threaded
    run keeps its workers hot between runs. Denormals are flushed to zero: random weights can
    drive a deep subnet's activations into denormals, which x86 handles ~100x slower, and
    trained deployed models do not have them. ONNX Runtime sets that flush on its pool threads
    and, once per process, on the thread that creates the first session (where a one-thread
    session runs): from then on that thread flushes denormals in numpy and torch too.
    """
    ort = import_ort()
    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    spin = (threads is None or threads > 1) if spin is None else spin
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    so.add_session_config_entry("session.set_denormal_as_zero", "1")
    so.log_severity_level = 3
    return so


def _dtype(ort_type: str) -> str:
    return _ORT_TYPES.get(ort_type, ort_type.removeprefix("tensor(").removesuffix(")"))


class _OrtRunner(Runner):
    """An ``onnxruntime.InferenceSession`` of an ONNX file or ONNX bytes."""

    name = "ort"
    providers: list = ["CPUExecutionProvider"]

    def __init__(self, model: str | Path | bytes, threads: int | None = None, spin: bool | None = None) -> None:
        super().__init__(model_label(model, "model" if isinstance(model, (str, Path)) else "ONNX model"))
        self.model = model
        self.threads = threads
        self.spin = spin
        self.session = None

    def load_impl(self) -> None:
        ort = import_ort()
        source = str(self.model) if isinstance(self.model, (str, Path)) else self.model
        try:
            self.session = ort.InferenceSession(source, session_options(self.threads, self.spin), providers=self.providers)
        except Exception as exc:  # onnxruntime raises its own untyped errors for bad files
            raise NastoolsError(f"ONNX Runtime cannot load {self.label}: {brief(exc)}") from None

    def inputs_impl(self) -> list[InputMeta]:
        return [InputMeta(i.name, tuple(i.shape), _dtype(i.type)) for i in self.session.get_inputs()]

    def activation_bytes(self, shape: tuple[int, ...]) -> int:
        """The largest node's activations (its inputs and outputs, weights aside) at ``shape``,
        from ONNX shape inference on the graph with the input's shape set: no allocation."""
        import onnx
        from onnx import shape_inference

        name = self.inputs()[0].name
        try:
            if isinstance(self.model, (str, Path)):
                model = onnx.load(str(self.model), load_external_data=False)
            else:
                model = onnx.load_from_string(self.model)
            graph_input = next(i for i in model.graph.input if i.name == name)
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
            if vi.name in weights or vi.name == name or not dims or min(dims) < 0:
                continue  # weights and the input are counted elsewhere; a tensor of unknown shape is left out
            try:
                itemsize = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type).itemsize
            except Exception:  # noqa: BLE001 - an unknown or undefined type
                itemsize = 4
            sizes[vi.name] = math.prod(dims) * itemsize
        return max((sum(sizes.get(n, 0) for n in {*node.input, *node.output}) for node in graph.node), default=0)


class OrtCpuRunner(_OrtRunner):
    """ONNX Runtime's CPU provider; input and output are host arrays."""

    def bind_impl(self, x: Any) -> None:
        arr = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
        self._feed = {self.session.get_inputs()[0].name: arr}
        self._out: list = []

    def run_impl(self) -> None:
        self._out = self.session.run(None, self._feed)

    def output_impl(self) -> np.ndarray:
        return self._out[0].astype(np.float32, copy=False)

    def release_impl(self) -> None:
        self.session = None
        self._feed, self._out = {}, []


class OrtCudaRunner(_OrtRunner):
    """ONNX Runtime's CUDA provider (onnxruntime-gpu) with IO binding: input and output live on
    the GPU as torch tensors, so a run is the kernels, not host-device copies."""

    providers = [("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"]

    def load_impl(self) -> None:
        super().load_impl()
        if self.session.get_providers()[0] != "CUDAExecutionProvider":  # ORT falls back to the CPU when CUDA fails to load
            self.session = None
            raise NastoolsError(
                f"ONNX Runtime's CUDAExecutionProvider did not load for {self.label} (missing CUDA/cuDNN "
                f"libraries?): running it on the CPU instead would time the wrong device"
            )

    def bind_impl(self, x: Any) -> None:
        torch = require_cuda("ONNX Runtime's CUDA provider")
        inp, out = self.session.get_inputs()[0], self.session.get_outputs()[0]
        in_type, out_type = np.dtype(_dtype(inp.type)), np.dtype(_dtype(out.type))
        xt = as_tensor(x).to("cuda", getattr(torch, in_type.name)).contiguous()
        binding = self.session.io_binding()
        binding.bind_input(inp.name, "cuda", 0, in_type, tuple(xt.shape), xt.data_ptr())
        # exported graphs are static but for the batch axis
        shape = tuple(d if isinstance(d, int) and d > 0 else xt.shape[0] for d in out.shape)
        y = torch.empty(shape, dtype=getattr(torch, out_type.name), device="cuda")
        binding.bind_output(out.name, "cuda", 0, out_type, shape, y.data_ptr())
        self._binding, self._buffers = binding, (xt, y)

    def run_impl(self) -> None:
        self.session.run_with_iobinding(self._binding)

    def synchronize_impl(self) -> None:
        import torch

        torch.cuda.synchronize()

    def output_impl(self) -> np.ndarray:
        return self._buffers[1].float().cpu().numpy()

    def release_impl(self) -> None:
        self.session = self._binding = None
        self._buffers = ()


def cuda_provider_available() -> bool:
    """Whether this onnxruntime build has the CUDA execution provider."""
    return "CUDAExecutionProvider" in import_ort().get_available_providers()


def _installed_version(dist: str) -> str | None:
    """The installed version of the distribution ``dist``, or None."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def cuda_provider_missing() -> str | None:
    """Why ONNX Runtime's CUDA provider is not available here, with the command that adds it;
    None when it is. onnxruntime and onnxruntime-gpu install the same ``onnxruntime`` module,
    so where both are installed the one installed last is the one Python imports: when that is
    the CPU build, reinstalling onnxruntime-gpu puts its files back."""
    if cuda_provider_available():
        return None
    ort = import_ort()
    gpu = _installed_version("onnxruntime-gpu")
    if gpu:
        return (
            f"CUDAExecutionProvider not available: onnxruntime-gpu {gpu} is installed, but the CPU onnxruntime "
            f"{ort.__version__} installed over it (both are the onnxruntime module); "
            f"pip install --force-reinstall --no-deps 'onnxruntime-gpu=={gpu}'"
        )
    return f"CUDAExecutionProvider not available in onnxruntime {ort.__version__} here, a CPU build; pip install 'nastools[gpu]'"
