"""The runtime layer: the runner base's guards, ORT CPU and torch CPU runners on a real small
model, one ORT session configuration for profile and bench, one TensorRT builder for the
profiler's tables and export (provable on CPU by what is called), GPU runners."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch
import torch.nn as nn

from nastools.errors import NastoolsError
from nastools.latency.workload import export_onnx
from nastools.runtime import InputMeta, OrtCpuRunner, Runner, TorchRunner

SHAPE = (2, 1, 8, 8)


@pytest.fixture(scope="module")
def small():
    """A small conv net, its ONNX bytes (static shape ``SHAPE``) and an input."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)).eval()
    x = torch.randn(SHAPE)
    return net, export_onnx(net, SHAPE), x


def _runners(small):
    net, onnx, _ = small
    return {"ort": OrtCpuRunner(onnx, threads=1), "torch": TorchRunner(net, threads=1)}


# ---------------------------------------------------------------- the base's guards


@pytest.mark.parametrize("which", ["ort", "torch"])
def test_running_before_loading_is_a_one_line_error(small, which):
    runner = _runners(small)[which]
    for call, what in ((runner.run, "run()"), (lambda: runner.bind(small[2]), "bind()"), (runner.output, "output()")):
        with pytest.raises(NastoolsError, match=rf"{what.replace('(', '[(]').replace(')', '[)]')} before load\(\)") as err:
            call()
        assert "\n" not in str(err.value) and "load the model first" in str(err.value)
    runner.release()  # releasing what is not loaded does nothing
    with runner:
        with pytest.raises(NastoolsError, match=r"run\(\) before bind\(\)"):
            runner.run()
        with pytest.raises(NastoolsError, match=r"load\(\) while loaded"):
            runner.load()
    assert not runner.loaded
    with pytest.raises(NastoolsError, match=r"run\(\) before load\(\)"):
        runner.run()  # released: loading again is needed


def test_a_backend_implements_only_the_impl_methods():
    calls = []

    class Echo(Runner):
        name = "echo"

        def load_impl(self):
            calls.append("load")

        def inputs_impl(self):
            return [InputMeta("x", (None, 3))]

        def bind_impl(self, x):
            self.x = np.asarray(x, np.float32)

        def run_impl(self):
            calls.append("run")

        def output_impl(self):
            return 2 * self.x

        def release_impl(self):
            calls.append("release")

    with Echo("echo model") as r:
        np.testing.assert_array_equal(r.infer(np.ones((4, 3))), 2 * np.ones((4, 3)))
        assert r.static_batch() is None and r.input_shape(4) == (4, 3)
    assert calls == ["load", "run", "release"]


# ---------------------------------------------------------------- real runs on the CPU


def test_ort_cpu_runner_runs_a_small_onnx_model(small):
    net, onnx, x = small
    with OrtCpuRunner(onnx, threads=1) as r:
        assert r.inputs() == [InputMeta("input", SHAPE, "float32")]
        assert r.static_batch() == 2 and r.input_shape(2) == SHAPE
        got = r.infer(x.numpy())
        with pytest.raises(NastoolsError, match="static batch of 2, got --batch 3"):
            r.input_shape(3)
    with torch.no_grad():
        np.testing.assert_allclose(got, net(x).numpy(), atol=1e-5)
    assert got.dtype == np.float32 and got.shape == (2, 5)


def test_torch_cpu_runner_runs_a_small_module_and_gives_it_back(small):
    net, _, x = small
    runner = TorchRunner(net, threads=1)
    with runner:
        runner.bind(x)
        runner.run()
        got = runner.output()
    with torch.no_grad():
        np.testing.assert_allclose(got, net(x).numpy(), atol=1e-6)
    assert next(net.parameters()).device.type == "cpu" and next(net.parameters()).dtype == torch.float32


# ---------------------------------------------------------------- one ORT session configuration


def _options(so) -> dict:
    keys = ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning", "session.set_denormal_as_zero")
    return {
        "intra_op_num_threads": so.intra_op_num_threads,
        "inter_op_num_threads": so.inter_op_num_threads,
        "execution_mode": so.execution_mode,
        "graph_optimization_level": so.graph_optimization_level,
        "log_severity_level": so.log_severity_level,
        **{k: so.get_session_config_entry(k) for k in keys},
    }


@pytest.mark.parametrize("threads", [1, 2])
def test_profile_and_bench_build_identical_ort_session_options(small, tmp_path, monkeypatch, threads):
    import onnxruntime as ort

    from nastools.export import bench_model
    from nastools.latency import Protocol, Workload, make_backend

    net, onnx, _ = small
    seen: dict[str, list] = {"profile": [], "bench": []}
    who = ["profile"]

    class Spy(ort.InferenceSession):  # the sessions both commands really build
        def __init__(self, model, sess_options=None, *args, **kwargs):
            seen[who[0]].append(sess_options)
            super().__init__(model, sess_options, *args, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", Spy)
    make_backend("cpu", "ort", "fp32", threads).measure(Workload("net", net, SHAPE), Protocol.quick())
    who[0] = "bench"
    path = tmp_path / "net.onnx"
    path.write_bytes(onnx)
    bench_model(path, batch=2, threads=threads, warmup=0, duration=0, min_iterations=1)
    assert len(seen["profile"]) == len(seen["bench"]) == 1
    profile, bench = _options(seen["profile"][0]), _options(seen["bench"][0])
    assert profile == bench
    assert profile["intra_op_num_threads"] == threads and profile["session.set_denormal_as_zero"] == "1"
    assert profile["session.intra_op.allow_spinning"] == ("1" if threads > 1 else "0")


# ---------------------------------------------------------------- one TensorRT builder


class _NoEngine(Runner):
    """Stands in for the TensorRT runner on a machine without a GPU: loads and runs nothing."""

    name = "trt"

    def __init__(self, engine: bytes) -> None:
        super().__init__("engine (in memory)")
        self.engine = engine

    def load_impl(self):
        assert self.engine == b"plan"

    def inputs_impl(self):
        return []

    def bind_impl(self, x):
        pass

    def run_impl(self):
        pass

    def output_impl(self):
        return np.zeros(1, np.float32)

    def release_impl(self):
        pass


def _ops(onnx_bytes: bytes) -> list[str]:
    import onnx

    return sorted(n.op_type for n in onnx.load_from_string(onnx_bytes).graph.node)


def test_profiler_int8_tensorrt_path_calls_exports_builder(tmp_path, monkeypatch):
    import nastools.export.precision as precision
    import nastools.latency.backends as backends
    import nastools.runtime.trt as rt
    from nastools.export.tensorrt import build_engine
    from nastools.latency import Protocol, block_workload, blocks_for, profile_blocks
    from nastools.latency.profiler import open_table
    from nastools.latency.trt import TensorRTBackend
    from nastools.space import load_space

    # TensorRT 10 and a GPU, as far as the code before the builder can tell
    monkeypatch.setattr(rt, "import_tensorrt", lambda: types.SimpleNamespace(__version__="10.9.0"))
    monkeypatch.setattr(rt, "require_cuda", lambda what: torch)
    monkeypatch.setattr(backends, "_torch_cuda", lambda: torch)
    monkeypatch.setattr(rt, "TrtRunner", _NoEngine)
    monkeypatch.setattr(TensorRTBackend, "describe", lambda self: {"device": "GPU", "backend": "tensorrt", "version": "10.9.0"})
    built: list[tuple[object, str, rt.BatchProfile | None]] = []

    def build(self, onnx, precision="fp32", profile=None):
        built.append((onnx, precision, profile))
        return rt.Engine(b"plan", precision, profile, False, None)

    monkeypatch.setattr(rt.EngineBuilder, "build", build)
    quantized: list[str] = []
    real_quantize = precision.quantize_int8

    def quantize(src, dst, calibration, *, target="ort", **kw):
        quantized.append(target)
        return real_quantize(src, dst, calibration, target=target, **kw)

    monkeypatch.setattr(precision, "quantize_int8", quantize)

    # the profiler times the first block of an int8 TensorRT table
    space = load_space("fmnist")
    be = backends.make_backend("gpu", "trt", "int8")
    table = open_table(space, be, batch=1, resolutions=None, out=tmp_path / "t.json", protocol=Protocol.quick())
    assert profile_blocks(table, be, protocol=Protocol.quick(), progress=False, limit=1) == 1
    assert len(built) == 1 and quantized == ["trt"]
    table_onnx, table_precision, table_profile = built[0]
    assert table_precision == "int8" and table_profile == rt.BatchProfile(1, 1, 1)
    assert {"QuantizeLinear", "DequantizeLinear"} <= set(_ops(table_onnx))  # explicit Q/DQ, no fake ranges

    # export quantizes that block's fp32 graph with the same quantizer and builds through the same builder
    workload = block_workload(blocks_for(space)[0])
    fp32, qdq = tmp_path / "fp32.onnx", tmp_path / "int8.onnx"
    fp32.write_bytes(workload.onnx("fp32"))
    calibration = [np.random.default_rng(1).standard_normal(workload.input_shape, dtype=np.float32)]
    precision.quantize_int8(fp32, qdq, calibration, target="trt")
    facts = build_engine(qdq, tmp_path / "m.engine", precision="int8", profile=rt.BatchProfile(1, 1, 1))
    assert len(built) == 2 and built[1] == (qdq, "int8", rt.BatchProfile(1, 1, 1))
    assert (tmp_path / "m.engine").read_bytes() == b"plan" and facts["precision"] == "int8" and not facts["strongly_typed"]
    assert _ops(table_onnx) == _ops(qdq.read_bytes())  # the same graph, scales aside


# ---------------------------------------------------------------- GPU runners


@pytest.mark.gpu
def test_torch_cuda_runner_launches_asynchronously_and_matches_the_cpu(small):
    net, _, x = small
    with torch.no_grad():
        want = net(x).numpy()
    runner = TorchRunner(net, device="cuda")
    assert runner.asynchronous
    with runner:
        np.testing.assert_allclose(runner.infer(x), want, atol=1e-4)
    assert next(net.parameters()).device.type == "cpu"


@pytest.mark.gpu("tensorrt")
def test_tensorrt_runner_runs_an_engine_from_the_one_builder(small):
    from nastools.runtime.trt import EngineBuilder, TrtRunner

    net, onnx, x = small
    engine = EngineBuilder().build(onnx, "fp32")
    with TrtRunner(engine.data) as r:
        assert r.asynchronous and r.inputs()[0].shape == SHAPE
        got = r.infer(x)
    with torch.no_grad():
        np.testing.assert_allclose(got, net(x).numpy(), atol=1e-3)


@pytest.mark.gpu("tensorrt")
@pytest.mark.parametrize("precision, tolerance", [("fp32", 1e-3), ("fp16", 2e-2)])
def test_tensorrt_engines_compute_what_ort_cpu_computes_in_fp32_within_their_precision(precision, tolerance):
    # the engines a TensorRT latency table times (TensorRT 10: fp32 graph + FP16 flag; 11: a
    # half graph), on real fmnist blocks with SE, swish and h-sigmoid, against ORT CPU in fp32
    from nastools.latency import block_workload, blocks_for
    from nastools.latency.trt import TensorRTBackend
    from nastools.runtime.trt import strongly_typed
    from nastools.space import load_space

    blocks = blocks_for(load_space("fmnist"))
    picked = [next(b for b in blocks if b.kind == "mbconv" and b.se and b.expand > 1), next(b for b in blocks if b.kind == "head")]
    be = TensorRTBackend(precision)
    for block in picked:
        w = block_workload(block, batch=8)
        x = w.example_input().numpy()
        with OrtCpuRunner(w.onnx("fp32"), threads=1) as cpu, be.runner(w) as engine:
            want, got = cpu.infer(x), engine.infer(x)
            half_input = engine.inputs()[0].dtype == "float16"
        err = float(np.abs(got - want).max() / np.abs(want).max())
        assert got.shape == want.shape and err < tolerance, f"{block.key}: max |difference| {err:.2e} of the largest output"
        assert half_input == (precision == "fp16" and strongly_typed(be.trt))
    be.close()


def test_torch_runners_give_torch_its_thread_count_back_when_the_last_is_released():
    """torch's CPU thread count is the process's: runners loaded side by side (as a profile
    loads them) keep it at their ``threads`` until the last of them is released, and a
    library user's own setting comes back then."""
    before = torch.get_num_threads()
    mine = 2 if before != 2 else 3
    torch.set_num_threads(mine)
    try:
        a, b = TorchRunner(nn.Conv2d(1, 2, 1), threads=1), TorchRunner(nn.Conv2d(1, 2, 1), threads=1)
        a.load()
        b.load()
        assert torch.get_num_threads() == 1
        a.release()
        assert torch.get_num_threads() == 1  # b is still loaded (and may still be timed)
        b.release()
        assert torch.get_num_threads() == mine
        with pytest.raises(NastoolsError, match="not found"):  # a runner that fails to load holds nothing
            TorchRunner("missing.pt", threads=1).load()
        assert torch.get_num_threads() == mine
    finally:
        torch.set_num_threads(before)
