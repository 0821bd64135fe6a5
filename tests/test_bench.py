"""trtexec-like timing: statistics on known numbers, and a real ONNX Runtime session."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from nastools.cli import main
from nastools.errors import NastoolsError
from nastools.export import bench as bench_module
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


@pytest.fixture(scope="module")
def torchscript_model(onnx_model_and_subnet):
    """The same subnet as nastools export --format torchscript writes it (traced, BN folded)."""
    from nastools.export.bench import TORCHSCRIPT_META
    from nastools.export.fold import fold_batchnorm

    onnx_model, sub = onnx_model_and_subnet
    path = onnx_model.parent / "min.pt"
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(fold_batchnorm(sub).cpu(), torch.zeros(2, *sub.input_shape))
        torch.jit.save(traced, str(path), _extra_files={TORCHSCRIPT_META: json.dumps({"input_chw": list(sub.input_shape)})})
    return path


@pytest.fixture(scope="module")
def torch_save_files(onnx_model):
    """A real (untrained) nastools supernet checkpoint and a bare state dict: torch.save files, not TorchScript."""
    from nastools.checkpoint import save_checkpoint

    net = Supernet("fmnist")
    ckpt = save_checkpoint(onnx_model.parent / "supernet.pt", net)
    state = onnx_model.parent / "state.pt"
    torch.save(net.state_dict(), state)
    return ckpt, state


def _largest_module_output_bytes(sub, batch: int) -> int:
    sizes = []
    hooks = [
        m.register_forward_hook(lambda m, i, o: sizes.append(o.numel() * o.element_size())) for m in sub.modules() if not list(m.children())
    ]
    with torch.no_grad():
        sub(torch.zeros(batch, *sub.input_shape))
    for h in hooks:
        h.remove()
    return max(sizes)


def test_latency_stats_nearest_rank():
    lat = np.arange(1, 101, dtype=float)[::-1]  # 100..1 ms, unsorted on purpose
    s = latency_stats(lat)
    assert (s["min_ms"], s["max_ms"], s["mean_ms"], s["median_ms"]) == (1.0, 100.0, 50.5, 50.5)
    assert (s["p90_ms"], s["p95_ms"], s["p99_ms"]) == (90.0, 95.0, 99.0)
    assert percentile(np.array([5.0]), 99) == 5.0
    assert percentile(np.array([1.0, 2.0, 3.0]), 50) == 2.0


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("200ms", 0.2),
        ("3s", 3.0),
        ("500us", 5e-4),
        ("1min", 60.0),
        ("1h", 3600.0),
        (" 200 MS ", 0.2),
        (".5s", 0.5),
        ("0s", 0.0),
        (0.5, 0.5),
        (0, 0.0),
    ],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text, needle",
    [
        ("fast", "expected a number with a unit"),
        ("", "expected a number with a unit"),
        ("inf", "expected a number with a unit"),
        (float("nan"), "expected a number with a unit"),
        ("3 parsecs", "unknown unit 'parsecs'"),
        ("10m", "'m' is ambiguous: write min or ms"),
        # trtexec reads a bare number as ms for --warmUp and as s for --duration: ask for the unit
        ("10", "--warmup '10': add a unit, e.g. 10ms or 10s"),
        ("2.5", "--warmup '2.5': add a unit, e.g. 2.5ms or 2.5s"),
        ("-1s", "must be positive"),
        ("-0.5ms", "must be positive"),
        (-1.0, "must be positive"),
        ("1e9h", "too long, at most 1h"),
        ("61min", "too long, at most 1h"),
        ("1e999s", "too long, at most 1h"),
        (7200, "too long, at most 1h"),
    ],
)
def test_parse_duration_rejects(text, needle):
    with pytest.raises(NastoolsError, match="^--warmup ") as err:
        parse_duration(text, "--warmup")
    assert needle in str(err.value) and "\n" not in str(err.value)


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
    res = CliRunner().invoke(
        main, ["bench", str(onnx_model), "--batch", "2", "--threads", "1", "--warmup", "10ms", "--duration", "100ms", "--json"]
    )
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
        (["{dir}/model.xyz"], "unknown extension"),
        (["{dir}/missing.onnx"], "not found"),
        (["{dir}/supernet.pt"], "is a nastools supernet checkpoint, not a model: export a subnet first (nastools export --run"),
        (["{dir}/state.pt"], "is a torch.save file (weights or a pickled object), not a TorchScript module"),
        (["{model}", "--backend", "torch"], "is an ONNX model, which --backend torch cannot run"),
        (["{dir}/two_inputs.onnx"], "one float32 input"),
        (["{dir}/dynamic_hw.onnx"], "'h', 'w'"),
        (["{dir}/int64.onnx"], "tensor(int64)"),
    ],
)
def test_bench_bad_input_is_one_line(onnx_model, torch_save_files, args, needle):
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
        # IR version 8 (opset 17's), not the onnx package's newest: older ONNX Runtimes refuse newer IR versions
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
        onnx.save(model, onnx_model.parent / f"{name}.onnx")
    res = CliRunner().invoke(main, ["bench", *args])
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == 1 and len(lines) == 1 and lines[0].startswith("Error: ") and needle in lines[0], res.output


def test_backend_from_extension():
    assert backend_for("a.onnx") == "ort" and backend_for("a.engine") == "trt" and backend_for("a.pt") == "torch"


@pytest.mark.parametrize(
    "args, needle",
    [
        # --threads 100000 never finished starting its threads (the command hung) and --batch 100000
        # took 24 GB before the OOM killer ended it; nastools profile allows the same ranges. Just
        # past the bounds here, so that a regression fails in seconds rather than hangs or swaps.
        (["--threads", "1025"], "'--threads': 1025 is not in the range 1<=x<=1024"),
        (["--threads", "0"], "'--threads': 0 is not in the range 1<=x<=1024"),
        (["--batch", "4097"], "'--batch': 4097 is not in the range 1<=x<=4096"),
        (["--batch", "0"], "'--batch': 0 is not in the range 1<=x<=4096"),
        (["--duration", "soon"], "--duration 'soon': expected a number with a unit"),
        (["--warmup", "10"], "--warmup '10': add a unit, e.g. 10ms or 10s"),
        (["--duration", "3"], "--duration '3': add a unit"),
        (["--duration", "-1s"], "--duration '-1s': must be positive"),
        (["--duration", "1e9h"], "--duration '1e9h': too long, at most 1h"),
    ],
)
def test_bench_out_of_range_option_is_one_line(onnx_model, args, needle):
    res = CliRunner().invoke(main, ["bench", str(onnx_model), "--warmup", "0s", "--duration", "0s", *args])
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == 2 and len(lines) == 1 and lines[0].startswith("Error: ") and needle in lines[0], res.output


def test_bench_model_bounds_threads(onnx_model):
    with pytest.raises(NastoolsError, match="--threads 1025: expected 1 to 1024"):
        bench_model(onnx_model, threads=1025, warmup=0, duration=0, min_iterations=1)


def test_bench_model_checks_argument_types(onnx_model):
    for kw, needle in (({"threads": "2"}, "--threads '2'"), ({"batch": "32"}, "--batch '32'"), ({"batch": True}, "--batch True")):
        with pytest.raises(NastoolsError, match=needle):
            bench_model(onnx_model, warmup=0, duration=0, min_iterations=1, **kw)


def test_bench_model_leaves_torch_thread_count_as_it_was(torchscript_model):
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        res = bench_model(torchscript_model, threads=1, warmup=0, duration=0, min_iterations=2)
        assert res.backend == "torch" and res.threads == 1
        assert torch.get_num_threads() == 3  # the caller's setting, not the bench's
    finally:
        torch.set_num_threads(before)


def test_supernet_checkpoint_is_named(torch_save_files):
    ckpt, state = torch_save_files
    with pytest.raises(NastoolsError, match="nastools supernet checkpoint, not a model") as err:
        make_runner(ckpt).load()
    assert f"nastools export --run {ckpt.parent} --format onnx" in str(err.value)
    with pytest.raises(NastoolsError, match="torch.save file"):
        make_runner(state).load()


@pytest.mark.parametrize("which", ["onnx", "torchscript"])
def test_activation_estimate_scales_with_batch(onnx_model_and_subnet, torchscript_model, which):
    """ONNX shape inference (ort) or a batch-2 probe (torch), without running the batch itself:
    at least the largest layer's output, at most a few such tensors, and linear in the batch."""
    onnx_model, sub = onnx_model_and_subnet
    with make_runner(onnx_model if which == "onnx" else torchscript_model, threads=1) as r:
        one, many = r.activation_bytes(r.input_shape(1)), r.activation_bytes(r.input_shape(1000))
    largest = _largest_module_output_bytes(sub, 1)
    assert largest <= one <= 4 * largest
    assert many == pytest.approx(1000 * one, rel=1e-3)


@pytest.mark.parametrize("which", ["onnx", "torchscript"])
def test_bench_refuses_a_batch_that_does_not_fit(onnx_model, torchscript_model, monkeypatch, which):
    """The estimate against a small available memory (a huge real batch would meet the OOM killer)."""
    model = onnx_model if which == "onnx" else torchscript_model
    with make_runner(model, threads=1) as r:
        need = 4 * 28 * 28 * 64 + r.activation_bytes(r.input_shape(64))
    monkeypatch.setattr(bench_module, "available_memory", lambda: need - 1)
    allocated = []
    monkeypatch.setattr(bench_module.np.random, "default_rng", lambda *a: allocated.append(a))
    res = CliRunner().invoke(main, ["bench", str(model), "--batch", "64", "--duration", "10ms"])
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == 1 and len(lines) == 1, res.output
    assert lines[0].startswith(f"Error: --batch 64 needs about {need / 2**20:.0f} MiB for the input and activations; this machine has ")
    assert lines[0].endswith("available: pass a smaller --batch") and not allocated
    # the input alone: no shape inference needed
    monkeypatch.setattr(bench_module, "available_memory", lambda: 1000)
    with pytest.raises(NastoolsError, match="--batch 64: the input alone needs 0 MiB; this machine has 0 MiB"):
        bench_model(model, batch=64)
    # enough memory: it runs
    monkeypatch.undo()
    monkeypatch.setattr(bench_module, "available_memory", lambda: need)
    assert bench_model(model, batch=64, warmup="0s", duration="0s", min_iterations=2).iterations == 2


def test_bench_caps_the_input_where_memory_is_unknown(onnx_model, monkeypatch):
    monkeypatch.setattr(bench_module, "available_memory", lambda: None)
    monkeypatch.setattr(bench_module, "MAX_INPUT_GIB", 1 / 1024)  # 1 MiB, so that no test allocates GiB
    with pytest.raises(NastoolsError, match="--batch 1000: the input alone would take 3 MiB"):
        bench_model(onnx_model, batch=1000)
    assert bench_model(onnx_model, batch=100, warmup=0, duration=0, min_iterations=1).iterations == 1


def test_available_memory_reads_this_machine():
    free = bench_module.available_memory()
    assert free is None or free > 0
