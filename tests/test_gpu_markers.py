"""Where GPU tests run: ``@pytest.mark.gpu(*needs)`` skips a test on a host that lacks a CUDA
GPU, onnxruntime-gpu's CUDA provider or TensorRT, with a reason naming the missing piece and
how to add it (the helper in conftest.py), checked here on a CPU host by faking each piece."""

from __future__ import annotations

import sys
import types

import conftest
import pytest

GPU_ORT = "pip install --force-reinstall --no-deps 'onnxruntime-gpu==1.31.1'"


@pytest.fixture
def cuda(monkeypatch):
    """A host where torch sees a CUDA GPU."""
    monkeypatch.setattr(conftest, "_has_cuda", lambda: True)


@pytest.fixture
def cpu_onnxruntime(monkeypatch):
    """This host's onnxruntime as a CPU build, with no onnxruntime-gpu installed."""
    import onnxruntime as ort

    from nastools.runtime import onnxrt

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    monkeypatch.setattr(onnxrt, "_installed_version", lambda dist: None)


@pytest.fixture
def no_tensorrt(monkeypatch):
    import nastools.runtime.trt as rt

    monkeypatch.setattr(rt, "tensorrt_installed", lambda: False)


def test_without_a_cuda_gpu_every_gpu_test_says_it_needs_one(monkeypatch):
    monkeypatch.setattr(conftest, "_has_cuda", lambda: False)
    for needs in ((), ("ort-cuda",), ("tensorrt",), ("ort-cuda", "tensorrt")):
        assert conftest.gpu_skip_reason(needs) == "needs a CUDA GPU (torch.cuda.is_available() is False)"


def test_a_cpu_onnxruntime_names_onnxruntime_gpu_and_the_extra(cuda, cpu_onnxruntime):
    import onnxruntime as ort

    reason = conftest.gpu_skip_reason(("ort-cuda",))
    assert reason == (
        f"needs onnxruntime-gpu (CUDAExecutionProvider not available in onnxruntime {ort.__version__} here, a CPU build; "
        f"pip install 'nastools[gpu]')"
    )
    assert conftest.gpu_skip_reason(()) is None  # a plain gpu test needs only the GPU


def test_onnxruntime_gpu_replaced_by_the_cpu_build_names_the_reinstall(cuda, cpu_onnxruntime, monkeypatch):
    # both distributions install the onnxruntime module: the CPU build installed last wins
    from nastools.runtime import onnxrt

    monkeypatch.setattr(onnxrt, "_installed_version", lambda dist: "1.31.1" if dist == "onnxruntime-gpu" else None)
    reason = conftest.gpu_skip_reason(("ort-cuda",))
    assert reason.startswith("needs onnxruntime-gpu (CUDAExecutionProvider not available: onnxruntime-gpu 1.31.1 is installed")
    assert reason.endswith(f"{GPU_ORT})")


def test_the_cuda_provider_present_runs_ort_cuda_tests(cuda, monkeypatch):
    import onnxruntime as ort

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert conftest.gpu_skip_reason(("ort-cuda",)) is None


def test_without_tensorrt_the_reason_names_the_extra_and_the_image(cuda, no_tensorrt, monkeypatch):
    assert conftest.gpu_skip_reason(("tensorrt",)) == "needs TensorRT (pip install 'nastools[gpu]' on a CUDA host or use the Docker image)"
    # with both missing, the first one named is the reason
    monkeypatch.setattr("onnxruntime.get_available_providers", lambda: ["CPUExecutionProvider"])
    assert conftest.gpu_skip_reason(("ort-cuda", "tensorrt")).startswith("needs onnxruntime-gpu (")


def test_a_tensorrt_older_than_10_is_a_reason_too(cuda, monkeypatch):
    import nastools.runtime.trt as rt

    monkeypatch.setattr(rt, "tensorrt_installed", lambda: True)
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="8.6.1"))
    reason = conftest.gpu_skip_reason(("tensorrt",))
    assert reason.startswith("needs TensorRT (got TensorRT 8.6.1, expected 10 or newer") and "nastools[trt]" in reason
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="10.13.3"))
    assert conftest.gpu_skip_reason(("tensorrt",)) is None


class _Item:
    """What the collection hook reads of a test item."""

    def __init__(self, nodeid: str, *marks) -> None:
        self.nodeid, self.marks, self.skips = nodeid, list(marks), []

    def iter_markers(self, name):
        return (m for m in self.marks if m.name == name)

    def add_marker(self, mark):
        self.skips.append(mark.kwargs["reason"])


def test_collection_skips_each_gpu_test_for_what_it_needs(cuda, cpu_onnxruntime, no_tensorrt):
    items = [
        _Item("plain"),
        _Item("gpu", pytest.mark.gpu.mark),
        _Item("ort", pytest.mark.gpu("ort-cuda").mark),
        _Item("both", pytest.mark.gpu.mark, pytest.mark.gpu("tensorrt").mark),  # a class's mark and a test's
        _Item("slow-trt", pytest.mark.slow.mark, pytest.mark.gpu("tensorrt").mark),
    ]
    conftest.pytest_collection_modifyitems(None, items)
    skips = {i.nodeid: i.skips for i in items}
    assert skips["plain"] == skips["gpu"] == []
    assert len(skips["ort"]) == 1 and skips["ort"][0].startswith("needs onnxruntime-gpu (")
    assert skips["both"] == skips["slow-trt"] == ["needs TensorRT (pip install 'nastools[gpu]' on a CUDA host or use the Docker image)"]


def test_an_unknown_need_is_a_usage_error_not_a_silent_skip():
    with pytest.raises(ValueError, match=r"pytest.mark.gpu\('trt'\): expected needs among ort-cuda, tensorrt"):
        conftest.gpu_skip_reason(("trt",))
    with pytest.raises(pytest.UsageError, match=r"^typo: pytest.mark.gpu\('cuda'\)"):
        conftest.pytest_collection_modifyitems(None, [_Item("typo", pytest.mark.gpu("cuda").mark)])


def test_this_sessions_gpu_tests_carry_the_reason_for_this_host(request):
    # every gpu test collected in this run is skipped exactly where the helper says
    for item in request.session.items:
        needs = tuple(sorted({n for m in item.iter_markers("gpu") for n in m.args}))
        if not any(True for _ in item.iter_markers("gpu")):
            continue
        reason = conftest.gpu_skip_reason(needs)
        skips = [m.kwargs.get("reason") for m in item.iter_markers("skip")]
        assert (reason in skips) if reason else not skips, item.nodeid
