"""Loading and running one model on one backend, for latency profiling, export and bench.

One base (:class:`Runner`: load, bind, run, release, with the guards in its public methods)
and its backends: ONNX Runtime on the CPU and on CUDA (:mod:`~nastools.runtime.onnxrt`, with
the one :func:`session_options`), TensorRT (:mod:`~nastools.runtime.trt`: the one lazy
:func:`~nastools.runtime.trt.import_tensorrt`, the one :class:`~nastools.runtime.trt.EngineBuilder`,
the engine runner) and torch on the CPU and CUDA (:mod:`~nastools.runtime.pytorch`). Nothing
here times anything: the latency tables' measurement protocol (:mod:`nastools.latency.measure`)
and bench's trtexec-style statistics (:mod:`nastools.export.bench`) are two timing policies
over these runners. Optional packages (onnxruntime, tensorrt, CUDA) are imported when a
runner or builder needs them.

Why our own TensorRT builder and runner rather than NVIDIA's Polygraphy
(``polygraphy.backend.trt``: ``loader.py``, ``runner.py``): the builder part we need is one
short function (parse, strongly typed or precision flags, one batch profile, a shared timing
cache) and Polygraphy does not spare us the TensorRT 10/11 split: its ``CreateConfig(fp16=,
int8=)`` sets the builder flags that TensorRT 11 removed, so the precision-from-the-graph
decision stays ours either way. Its ``TrtRunner.infer`` takes host feeds and returns host
copies, sets the output allocator (and a debug listener) on every call and times itself with
the host clock, while both timing policies here need a bare ``execute_async_v3`` on a stream
with buffers bound once (device events for tables, host wall time for bench). Its CUDA
wrapper loads a second ``libcudart`` through ctypes beside torch's, which owns our buffers
and streams, and its lazy importer can ``pip install`` missing modules at run time
(``POLYGRAPHY_AUTOINSTALL_DEPS``), which nastools never does. It would also be one more
dependency of the ``trt`` extra for about a hundred lines.
"""

from nastools.runtime.base import InputMeta, Runner, require_cuda
from nastools.runtime.files import SUFFIX_BACKEND, backend_for, make_runner
from nastools.runtime.onnxrt import OrtCpuRunner, OrtCudaRunner, session_options
from nastools.runtime.pytorch import TORCHSCRIPT_META, TorchRunner
from nastools.runtime.trt import BatchProfile, Engine, EngineBuilder, TrtRunner, import_tensorrt

__all__ = [
    "BatchProfile",
    "Engine",
    "EngineBuilder",
    "InputMeta",
    "OrtCpuRunner",
    "OrtCudaRunner",
    "Runner",
    "SUFFIX_BACKEND",
    "TORCHSCRIPT_META",
    "TorchRunner",
    "TrtRunner",
    "backend_for",
    "import_tensorrt",
    "make_runner",
    "require_cuda",
    "session_options",
]
