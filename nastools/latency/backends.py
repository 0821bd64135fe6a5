"""Latency backends: ONNX Runtime (CPU, CUDA with IO binding), torch eager (CPU, CUDA).

TensorRT lives in :mod:`nastools.latency.trt`. Every optional package is imported inside the
backend that needs it, through :func:`nastools.errors.require`.
"""

from __future__ import annotations

from typing import Any, Callable

from nastools.errors import NastoolsError, require
from nastools.latency.measure import Backend
from nastools.latency.workload import Workload
from nastools.machine import cpu_name

PRECISIONS = ("fp32", "fp16", "int8")


def _ort():
    return require("onnxruntime", what="the ONNX Runtime backend")


def _torch_cuda():
    import torch

    if not torch.cuda.is_available():
        raise NastoolsError(
            "--device gpu: no CUDA GPU is visible to torch here (torch.cuda.is_available() is False); "
            "run on a machine with an NVIDIA GPU and a CUDA build of torch, or use --device cpu"
        )
    return torch


class OrtCpuBackend(Backend):
    """ONNX Runtime's CPU provider with explicit intra-op threads, all graph optimisations on
    (BN folding, op fusion), and spinning set so that a ``threads=1`` run never spins idle
    threads while a multi-threaded run keeps its workers hot between runs."""

    name = "ort"
    precisions = ("fp32",)
    state = ("_session", "_feed")

    def __init__(self, precision: str = "fp32", threads: int = 1, spin: bool | None = None) -> None:
        super().__init__(precision, threads)
        self.spin = threads > 1 if spin is None else spin
        self._session = None
        self._feed: dict = {}

    def _options(self):
        ort = _ort()
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.spin else "0")
        so.add_session_config_entry("session.inter_op.allow_spinning", "0")
        # random weights can drive activations of a deep subnet into denormals, which x86
        # handles ~100x slower; trained deployed models do not, so flush them to zero
        so.add_session_config_entry("session.set_denormal_as_zero", "1")
        so.log_severity_level = 3
        return so

    def load(self, workload: Workload) -> None:
        ort = _ort()
        self._session = ort.InferenceSession(workload.onnx("fp32"), self._options(), providers=["CPUExecutionProvider"])
        name = self._session.get_inputs()[0].name
        self._feed = {name: workload.example_input().numpy()}

    def run(self) -> None:
        self._session.run(None, self._feed)

    def release(self) -> None:
        self._session = None
        self._feed = {}

    def describe(self) -> dict[str, Any]:
        ort = _ort()
        return {"device": cpu_name(), "backend": "onnxruntime-cpu", "version": ort.__version__}


class OrtCudaBackend(Backend):
    """ONNX Runtime's CUDA provider (onnxruntime-gpu) with IO binding: input and output live
    on the GPU as torch tensors, so a run times the kernels, not host-device copies."""

    name = "ort"
    on_gpu = True
    precisions = ("fp32", "fp16")
    state = ("_session", "_binding", "_buffers")

    def __init__(self, precision: str = "fp32", threads: int = 1) -> None:
        super().__init__(precision, threads)
        ort = _ort()
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise NastoolsError(
                f"--backend ort on GPU: onnxruntime {ort.__version__} here has no CUDAExecutionProvider "
                f"(providers: {', '.join(ort.get_available_providers())}); install it with: pip install onnxruntime-gpu"
            )
        self._torch = _torch_cuda()
        self._session = None
        self._binding = None
        self._buffers: list = []

    def load(self, workload: Workload) -> None:
        ort, torch = _ort(), self._torch
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        self._session = ort.InferenceSession(
            workload.onnx(self.precision), so, providers=[("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"]
        )
        if self._session.get_providers()[0] != "CUDAExecutionProvider":  # ORT falls back to CPU when CUDA fails to load
            raise NastoolsError(
                "--backend ort on GPU: onnxruntime's CUDAExecutionProvider did not load (missing CUDA/cuDNN libraries?); "
                "timing on CPU instead would be wrong"
            )
        dtype = torch.float16 if self.precision == "fp16" else torch.float32
        x = workload.example_input(dtype, "cuda").contiguous()
        binding = self._session.io_binding()
        np_dtype = x.cpu().numpy().dtype
        binding.bind_input(self._session.get_inputs()[0].name, "cuda", 0, np_dtype, tuple(x.shape), x.data_ptr())
        # workloads are static graphs, so the output shape is in the model (a workload may
        # hold only its ONNX bytes, no module to run for it)
        out_meta = self._session.get_outputs()[0]
        y = torch.empty(tuple(out_meta.shape), dtype=dtype, device="cuda")
        binding.bind_output(out_meta.name, "cuda", 0, np_dtype, tuple(y.shape), y.data_ptr())
        self._binding, self._buffers = binding, [x, y]

    def run(self) -> None:
        self._session.run_with_iobinding(self._binding)
        self._torch.cuda.synchronize()

    def release(self) -> None:
        self._session = self._binding = None
        self._buffers = []

    def describe(self) -> dict[str, Any]:
        return {"device": self._torch.cuda.get_device_name(0), "backend": "onnxruntime-cuda", "version": _ort().__version__}


class TorchBackend(Backend):
    """torch eager mode, for users deploying PyTorch: CPU (``torch.set_num_threads``) or CUDA
    (timed with CUDA events)."""

    name = "torch"
    state = ("_model", "_x", "_workload")

    def __init__(self, precision: str = "fp32", threads: int = 1, device: str = "cpu") -> None:
        super().__init__(precision, threads)
        import torch

        self._torch = torch
        self.device = device
        self.on_gpu = device == "cuda"
        self.precisions = ("fp32", "fp16") if device == "cuda" else ("fp32",)
        if device == "cuda":
            _torch_cuda()
        self._model: Callable | None = None
        self._x = None
        self._workload: Workload | None = None

    def load(self, workload: Workload) -> None:
        torch = self._torch
        if self.device == "cpu":
            torch.set_num_threads(self.threads)
        dtype = torch.float16 if self.precision == "fp16" else torch.float32
        self._model = workload.module.to(self.device, dtype).eval()
        self._x = workload.example_input(dtype, self.device)
        self._workload = workload

    def run(self) -> None:
        with self._torch.inference_mode():
            self._model(self._x)
        if self.device == "cuda":
            self._torch.cuda.synchronize()

    def timed_run(self) -> tuple[float, bool]:
        if self.device != "cuda":
            return super().timed_run()
        torch = self._torch
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        with torch.inference_mode():
            start.record()
            self._model(self._x)
            end.record()
        end.synchronize()
        return start.elapsed_time(end), False

    def release(self) -> None:
        if self._model is not None:
            self._workload.module.to("cpu", self._torch.float32)
        self._model = self._x = None

    def describe(self) -> dict[str, Any]:
        torch = self._torch
        device = torch.cuda.get_device_name(0) if self.device == "cuda" else cpu_name()
        return {"device": device, "backend": f"torch-{self.device}", "version": torch.__version__}


BACKENDS = ("ort", "trt", "torch")


def trt_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorrt") is not None


def make_backend(device: str = "cpu", backend: str | None = None, precision: str = "fp32", threads: int = 1) -> Backend:
    """The backend for ``device`` (cpu|gpu) and ``backend`` (ort|trt|torch, or None to pick:
    on GPU TensorRT when installed, else ORT's CUDA provider, else torch on CUDA)."""
    if device not in ("cpu", "gpu"):
        raise NastoolsError(f"--device: got {device!r}, expected cpu or gpu")
    if backend is not None and backend not in BACKENDS:
        raise NastoolsError(f"--backend: got {backend!r}, expected one of {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise NastoolsError(f"--precision: got {precision!r}, expected one of {', '.join(PRECISIONS)}")
    if threads < 1:
        raise NastoolsError(f"--threads: got {threads}, expected a positive number of threads")
    if device == "cpu":
        if backend == "trt":
            raise NastoolsError("--backend trt: TensorRT runs on NVIDIA GPUs only; use --device gpu, or --backend ort|torch on CPU")
        b: Backend = TorchBackend(precision, threads, "cpu") if backend == "torch" else OrtCpuBackend(precision, threads)
    else:
        _torch_cuda()
        if backend is None:
            if trt_available():
                backend = "trt"
            else:
                ort = _ort()
                backend = "ort" if "CUDAExecutionProvider" in ort.get_available_providers() else "torch"
        if backend == "trt":
            from nastools.latency.trt import TensorRTBackend

            b = TensorRTBackend(precision, threads)
        elif backend == "ort":
            b = OrtCudaBackend(precision, threads)
        else:
            b = TorchBackend(precision, threads, "cuda")
    if precision not in b.precisions:
        raise NastoolsError(
            f"--precision {precision}: backend {b.name} on {device} times {', '.join(b.precisions)} only; "
            f"use --precision {b.precisions[0]}" + (" or --device gpu --backend trt" if device == "cpu" else "")
        )
    return b
