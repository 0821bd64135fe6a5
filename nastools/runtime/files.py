"""Model files: which backend runs which file, and the runner for one."""

from __future__ import annotations

from pathlib import Path

from nastools.constants import BACKENDS
from nastools.errors import NastoolsError
from nastools.runtime.base import Runner

#: the backend that runs each model file ending
SUFFIX_BACKEND = {".onnx": "ort", ".engine": "trt", ".plan": "trt", ".trt": "trt", ".pt": "torch", ".ts": "torch"}
_KIND = {"ort": "an ONNX model", "trt": "a TensorRT engine", "torch": "a TorchScript module"}


def backend_for(path: str | Path) -> str:
    """The default backend of a model file, from its extension."""
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIX_BACKEND:
        raise NastoolsError(
            f"model {str(path)!r}: unknown extension {suffix or '(none)'!r}, expected one of "
            f"{', '.join(SUFFIX_BACKEND)} (or pass --backend)"
        )
    return SUFFIX_BACKEND[suffix]


def make_runner(path: str | Path, backend: str | None = None, threads: int | None = None) -> Runner:
    """The (not yet loaded) runner of the model file ``path`` on ``backend`` (default: from
    the file's extension): ONNX Runtime on the CPU, TensorRT on GPU 0, TorchScript on the
    CPU; ``threads`` CPU threads (None: the runtime's default)."""
    backend = backend or backend_for(path)
    if backend not in BACKENDS:
        raise NastoolsError(f"backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    expected = SUFFIX_BACKEND.get(Path(path).suffix.lower())
    if expected and expected != backend:
        raise NastoolsError(f"model {str(path)!r} is {_KIND[expected]}, which --backend {backend} cannot run: pass --backend {expected}")
    if not Path(path).is_file():
        raise NastoolsError(f"model file {str(path)!r} not found: expected an exported model (nastools export)")
    if backend == "ort":
        from nastools.runtime.onnxrt import OrtCpuRunner

        return OrtCpuRunner(path, threads)
    if backend == "trt":
        from nastools.runtime.trt import TrtRunner

        return TrtRunner(path)
    from nastools.runtime.pytorch import TorchRunner

    return TorchRunner(path, threads=threads)
