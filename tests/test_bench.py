"""trtexec-like timing: statistics on known numbers, and a real ONNX Runtime session."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from nastools.cli import main
from nastools.errors import NastoolsError
from nastools.export import bench_model, export_onnx, latency_stats, parse_duration
from nastools.export.bench import backend_for, make_runner, percentile
from nastools.supernet import Supernet


@pytest.fixture(scope="module")
def onnx_model_and_subnet(tmp_path_factory):
    from nastools.space import load_space

    sp = load_space("fmnist")
    sub = Supernet(sp).extract(sp.min_arch()).eval()
    return export_onnx(sub, tmp_path_factory.mktemp("bench") / "min.onnx"), sub


@pytest.fixture(scope="module")
def onnx_model(onnx_model_and_subnet):
    return onnx_model_and_subnet[0]


def test_latency_stats_nearest_rank():
    lat = np.arange(1, 101, dtype=float)[::-1]  # 100..1 ms, unsorted on purpose
    s = latency_stats(lat)
    assert (s["min_ms"], s["max_ms"], s["mean_ms"], s["median_ms"]) == (1.0, 100.0, 50.5, 50.5)
    assert (s["p90_ms"], s["p95_ms"], s["p99_ms"]) == (90.0, 95.0, 99.0)
    assert percentile(np.array([5.0]), 99) == 5.0
    assert percentile(np.array([1.0, 2.0, 3.0]), 50) == 2.0


@pytest.mark.parametrize("text, seconds", [("200ms", 0.2), ("3s", 3.0), ("500us", 5e-4), ("1min", 60.0), ("2", 2.0), (0.5, 0.5)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["fast", "3 parsecs", "-1s", ""])
def test_parse_duration_rejects(text):
    with pytest.raises(NastoolsError, match="expected"):
        parse_duration(text, "--warmup")


def test_bench_real_ort_session(onnx_model):
    r = bench_model(onnx_model, batch=4, threads=1, warmup="20ms", duration="300ms")
    assert r.backend == "ort" and r.input_shape == (4, 1, 28, 28) and r.threads == 1
    assert r.iterations >= 10 and r.duration_s >= 0.3
    assert 0 < r.min_ms <= r.median_ms <= r.p90_ms <= r.p95_ms <= r.p99_ms <= r.max_ms
    assert r.min_ms <= r.mean_ms <= r.max_ms
    assert r.throughput_qps == pytest.approx(r.iterations / r.duration_s)
    assert r.throughput_ips == pytest.approx(4 * r.throughput_qps)
    # the timed work is the model: the mean latency accounts for most of the timed span
    assert r.mean_ms * r.iterations / 1e3 <= r.duration_s * 1.001
    assert r.mean_ms * r.iterations / 1e3 >= 0.5 * r.duration_s


def test_bench_min_iterations_beats_a_short_duration(onnx_model):
    r = bench_model(onnx_model, warmup=0, duration="0s", min_iterations=25)
    assert r.iterations == 25


def test_runner_output_matches_torch(onnx_model_and_subnet):
    onnx_model, sub = onnx_model_and_subnet
    x = np.random.default_rng(0).standard_normal((3, 1, 28, 28), dtype=np.float32)
    with make_runner(onnx_model, threads=1) as r:
        got = r.infer(x)
    with torch.no_grad():
        np.testing.assert_allclose(got, sub(torch.from_numpy(x)).numpy(), atol=1e-4)


def test_bench_cli_json(onnx_model):
    res = CliRunner().invoke(main, ["bench", str(onnx_model), "--batch", "2", "--threads", "1", "--warmup", "10ms", "--duration", "100ms", "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    for key in ("min_ms", "mean_ms", "median_ms", "p90_ms", "p95_ms", "p99_ms", "throughput_qps", "throughput_ips"):
        assert d[key] > 0
    assert d["batch"] == 2 and d["input_shape"] == [2, 1, 28, 28]


def test_bench_cli_table(onnx_model):
    res = CliRunner().invoke(main, ["bench", str(onnx_model), "--warmup", "10ms", "--duration", "50ms"])
    assert res.exit_code == 0, res.output
    assert "p99" in res.output and "qps" in res.output


@pytest.mark.parametrize(
    "args, needle",
    [
        (["{model}", "--backend", "trt"], "--backend ort"),
        (["{model}", "--batch", "0"], "--batch"),
        (["{model}", "--duration", "soon"], "--duration"),
        (["{dir}/model.xyz"], "unknown extension"),
        (["{dir}/missing.onnx"], "not found"),
        (["{model}", "--batch", "3000000"], "GiB"),
        (["{model}", "--backend", "torch"], "is an ONNX model, which --backend torch cannot run"),
        (["{dir}/two_inputs.onnx"], "one float32 input"),
        (["{dir}/dynamic_hw.onnx"], "'h', 'w'"),
        (["{dir}/int64.onnx"], "tensor(int64)"),
    ],
)
def test_bench_bad_input_is_one_line(onnx_model, args, needle):
    import onnx
    from onnx import TensorProto, helper

    args = [a.format(model=onnx_model, dir=onnx_model.parent) for a in args]
    (onnx_model.parent / "model.xyz").write_bytes(b"")
    # valid ONNX models that nastools did not write (bench used to end in a traceback on each)
    for name, inputs, op in (
        ("two_inputs", [("a", TensorProto.FLOAT, [1, 4]), ("b", TensorProto.FLOAT, [1, 4])], "Add"),
        ("dynamic_hw", [("a", TensorProto.FLOAT, ["n", 3, "h", "w"])], "Relu"),
        ("int64", [("a", TensorProto.INT64, [1, 4])], "Neg"),
    ):
        vis = [helper.make_tensor_value_info(n, t, shape) for n, t, shape in inputs]
        out = helper.make_tensor_value_info("y", inputs[0][1], None)
        graph = helper.make_graph([helper.make_node(op, [n for n, _, _ in inputs], ["y"])], name, vis, [out])
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), onnx_model.parent / f"{name}.onnx")
    res = CliRunner().invoke(main, ["bench", *args])
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == 1 and len(lines) == 1 and lines[0].startswith("Error: ") and needle in lines[0], res.output


def test_backend_from_extension():
    assert backend_for("a.onnx") == "ort" and backend_for("a.engine") == "trt" and backend_for("a.pt") == "torch"
