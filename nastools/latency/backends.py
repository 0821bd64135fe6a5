"""Latency backends over :mod:`nastools.runtime`: ONNX Runtime (CPU, CUDA with IO binding),
torch eager (CPU, CUDA).

TensorRT lives in :mod:`nastools.latency.trt`. Every optional package is imported inside the
runner that needs it.
"""

from __future__ import annotations

from typing import Any

from nastools.constants import BACKENDS, DEVICES, PRECISIONS
from nastools.errors import NastoolsError
from nastools.latency.measure import Backend
from nastools.latency.workload import Workload
from nastools.machine import cpu_name
from nastools.runtime import OrtCpuRunner, OrtCudaRunner, Runner, TorchRunner
from nastools.runtime.onnxrt import cuda_provider_available, cuda_provider_missing, import_ort
from nastools.runtime.trt import tensorrt_installed


def _torch_cuda():
    import torch

    if not torch.cuda.is_available():
        raise NastoolsError(
            "--device gpu: no CUDA GPU is visible to torch here (torch.cuda.is_available() is False); "
            "run on a machine with an NVIDIA GPU and a CUDA build of torch, or use --device cpu"
        )
    return torch


class OrtCpuBackend(Backend):
    """ONNX Runtime's CPU provider, configured by :func:`nastools.runtime.session_options`
    (the sessions ``nastools bench`` times): explicit intra-op threads, all graph
    optimisations, spinning only where several threads run (or as ``spin`` says)."""

    name = "ort"
    precisions = ("fp32",)

    def __init__(self, precision: str = "fp32", threads: int = 1, spin: bool | None = None) -> None:
        super().__init__(precision, threads)
        self.spin = spin

    def runner(self, workload: Workload) -> Runner:
        return OrtCpuRunner(workload.onnx("fp32"), self.threads, self.spin)

    def describe(self) -> dict[str, Any]:
        return {"device": cpu_name(), "backend": "onnxruntime-cpu", "version": import_ort().__version__}


class OrtCudaBackend(Backend):
    """ONNX Runtime's CUDA provider (onnxruntime-gpu) with IO binding: input and output live
    on the GPU, so a run times the kernels, not host-device copies."""

    name = "ort"
    on_gpu = True
    precisions = ("fp32", "fp16")

    def __init__(self, precision: str = "fp32", threads: int = 1) -> None:
        super().__init__(precision, threads)
        why = cuda_provider_missing()
        if why:
            raise NastoolsError(f"--backend ort on GPU: {why}")
        self._torch = _torch_cuda()

    def runner(self, workload: Workload) -> Runner:
        # fp16: a half-precision graph (half inputs and weights), as ORT CUDA takes fp16
        return OrtCudaRunner(workload.onnx(self.precision), self.threads)

    def describe(self) -> dict[str, Any]:
        return {"device": self._torch.cuda.get_device_name(0), "backend": "onnxruntime-cuda", "version": import_ort().__version__}


class TorchBackend(Backend):
    """torch eager mode, for users deploying PyTorch: CPU (``torch.set_num_threads``) or CUDA
    (timed with CUDA events)."""

    name = "torch"

    def __init__(self, precision: str = "fp32", threads: int = 1, device: str = "cpu") -> None:
        super().__init__(precision, threads)
        import torch

        self._torch = torch
        self.device = device
        self.on_gpu = device == "cuda"
        self.precisions = ("fp32", "fp16") if device == "cuda" else ("fp32",)
        if device == "cuda":
            _torch_cuda()

    def runner(self, workload: Workload) -> Runner:
        return TorchRunner(workload.module, device=self.device, half=self.precision == "fp16", threads=self.threads)

    def describe(self) -> dict[str, Any]:
        torch = self._torch
        device = torch.cuda.get_device_name(0) if self.device == "cuda" else cpu_name()
        return {"device": device, "backend": f"torch-{self.device}", "version": torch.__version__}


def make_backend(device: str = "cpu", backend: str | None = None, precision: str = "fp32", threads: int = 1) -> Backend:
    """The backend for ``device`` (cpu|gpu) and ``backend`` (ort|trt|torch, or None to pick:
    on GPU TensorRT when installed, else ORT's CUDA provider, else torch on CUDA)."""
    if device not in DEVICES:
        raise NastoolsError(f"--device: got {device!r}, expected one of {', '.join(DEVICES)}")
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
            if tensorrt_installed():
                backend = "trt"
            else:
                backend = "ort" if cuda_provider_available() else "torch"
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
