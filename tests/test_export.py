"""Export: BN folding, ONNX parity through ONNX Runtime on real Fashion-MNIST images, int8 and
fp16 graphs, TorchScript, the sidecar, the CLI and its one-line errors. TensorRT tests are
``gpu`` (they also need the tensorrt package)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from nastools.checkpoint import save_checkpoint
from nastools.cli import main
from nastools.errors import NastoolsError
from nastools.export import FORBIDDEN_OPS, check_onnx, convert_fp16, export_onnx, export_subnet, fold_batchnorm, graph_ops, make_runner
from nastools.export.parity import run_batched
from nastools.space import load_space
from nastools.supernet import Supernet


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: the exports are small, and 2 threads on a shared 2-core box spin."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def splits():
    from nastools.data import load_splits

    return load_splits()


def test_images(splits, n: int, size: int, channels: int = 1) -> torch.Tensor:
    """The first ``n`` real Fashion-MNIST test images, normalised, resized, channels repeated."""
    x = splits.test.normalise(splits.test.images[:n])
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x.repeat(1, channels, 1, 1).contiguous()


test_images.__test__ = False  # a helper, not a test


def randomise_bn(net: torch.nn.Module, seed: int = 0) -> None:
    """Give every BatchNorm non-trivial statistics and affine terms, so folding is exercised."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.rand(n, generator=g) - 0.5)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, splits):
    """A tiny trained supernet: its smallest subnet, 30 SGD steps on Fashion-MNIST, saved as a run."""
    from nastools.data import iter_batches

    torch.manual_seed(0)
    net = Supernet("fmnist")
    arch = net.space.min_arch()
    net.set_active(arch)
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    order = torch.randperm(len(splits.train), generator=torch.Generator().manual_seed(0))
    for x, y in iter_batches(splits.train, 128, order=order, max_images=128 * 30):
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    run = tmp_path_factory.mktemp("run")
    save_checkpoint(run / "supernet.pt", net)
    arch.save(run / "arch.json")
    return run, arch


SMALL = dict(calib_images=300, parity_images=200, eval_images=500, progress=False)


# ---------------------------------------------------------------- folding and ONNX parity


def test_fold_batchnorm_is_exact_and_leaves_no_bn(fmnist):
    net = Supernet(fmnist)
    randomise_bn(net)
    sub = net.extract(fmnist.sample(3)).eval()
    folded = fold_batchnorm(sub)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in sub.modules())  # the source is untouched
    x = torch.randn(5, *sub.input_shape)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), sub(x), rtol=1e-4, atol=1e-5)
        ref = sub(x)
        assert fold_batchnorm(sub, inplace=True) is sub  # no copy: the model itself is folded
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in sub.modules())
        torch.testing.assert_close(sub(x), ref, rtol=1e-4, atol=1e-5)


def _check_parity(sub, path, x: torch.Tensor) -> None:
    info = check_onnx(path)
    assert info["opset"] >= 17
    assert not set(info["ops"]) & FORBIDDEN_OPS
    assert info["input_shape"][0] == "batch" and info["input_shape"][1:] == list(sub.input_shape)
    with torch.no_grad():
        ref = sub(x).numpy()
    with make_runner(path, "ort", threads=1) as r:
        # two batch sizes through the same session: the batch axis is dynamic
        got = np.concatenate([r.infer(x[:3].numpy()), r.infer(x[3:].numpy())])
    scale = max(1.0, float(np.abs(ref).max()))
    assert np.abs(got - ref).max() <= 1e-4 * scale
    assert (got.argmax(1) == ref.argmax(1)).all()


@pytest.mark.parametrize("seed", range(8))
def test_onnx_parity_random_fmnist_archs(fmnist, splits, tmp_path, seed):
    net = Supernet(fmnist)
    randomise_bn(net, seed)
    arch = fmnist.sample(seed)
    sub = net.extract(arch).eval()
    path = export_onnx(sub, tmp_path / "m.onnx")
    _check_parity(sub, path, test_images(splits, 20, arch.resolution))


@pytest.mark.parametrize("seed", range(3))
def test_onnx_parity_random_attentivenas_archs(attentivenas_small, splits, tmp_path, seed):
    net = Supernet(attentivenas_small)
    randomise_bn(net, seed)
    arch = attentivenas_small.sample(100 + seed)
    sub = net.extract(arch).eval()
    path = export_onnx(sub, tmp_path / "m.onnx")
    assert graph_ops(path)["Conv"] > 40
    _check_parity(sub, path, test_images(splits, 6, arch.resolution, channels=3))


def test_static_batch_export(fmnist, tmp_path):
    sub = Supernet(fmnist).extract(fmnist.min_arch()).eval()
    path = export_onnx(sub, tmp_path / "b4.onnx", batch=4)
    assert check_onnx(path)["input_shape"] == [4, *sub.input_shape]
    x = torch.randn(10, *sub.input_shape)
    with make_runner(path, threads=1) as r:
        assert r.static_batch() == 4
        got = run_batched(r, x.numpy(), 256)  # 4 + 4 + 2 padded
        with pytest.raises(NastoolsError, match="static batch of 4"):
            r.input_shape(2)
    with torch.no_grad():
        np.testing.assert_allclose(got, sub(x).numpy(), atol=1e-4)


def test_fp16_graph_keeps_float32_io(fmnist, splits, tmp_path):
    net = Supernet(fmnist)
    randomise_bn(net)
    arch = fmnist.sample(5)
    sub = net.extract(arch).eval()
    fp32 = export_onnx(sub, tmp_path / "m.onnx")
    fp16 = convert_fp16(fp32, tmp_path / "m16.onnx")
    model = onnx.load(str(fp16))
    types = {init.data_type for init in model.graph.initializer}
    assert types == {onnx.TensorProto.FLOAT16}
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    x = test_images(splits, 32, arch.resolution)
    with torch.no_grad():
        ref = sub(x).numpy()
    with make_runner(fp16) as r:
        got = r.infer(x.numpy())
    assert got.dtype == np.float32
    assert 0 < np.abs(got - ref).max() <= 5e-2 * max(1.0, float(np.abs(ref).max()))


# ---------------------------------------------------------------- the whole export on a trained run


def test_export_fp32_from_best_json_via_cli(tiny_run, tmp_path):
    run, arch = tiny_run
    (run / "search").mkdir(exist_ok=True)
    arch.save(run / "search" / "best.json", id=arch.id, top1=0.5)
    out = tmp_path / "model.onnx"
    res = CliRunner().invoke(
        main,
        [
            "export",
            "--run",
            str(run),
            "--out",
            str(out),
            "--calib-images",
            "300",
            "--parity-images",
            "200",
            "--eval-images",
            "500",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    s = json.loads(res.output)
    side = json.loads((tmp_path / "model.onnx.json").read_text())
    assert side["arch"] == arch.to_dict() and s["arch_id"] == arch.id
    assert side["flops"] == load_space("fmnist").flops(arch)
    assert side["batchnorm"] == {
        "folded": True,
        "recalibrated": True,
        "recalibration_images": 300,
        "recalibration_split": "fashion-mnist train",
    }
    assert side["accuracy"]["search_top1"] == 0.5
    assert side["parity"]["passed"] and side["parity"]["top1_agreement"] == 1.0 and side["parity"]["images"] == 200
    acc = side["accuracy"]
    assert acc["images"] == 500 and abs(acc["model_top1"] - acc["torch_top1"]) <= 1 / 500
    assert acc["torch_top1"] > 0.4  # trained: well above chance (0.1)
    assert set(side["versions"]) >= {"torch", "onnx", "onnxruntime", "nastools"}
    assert not set(side["onnx"]["ops"]) & FORBIDDEN_OPS


def test_export_int8_end_to_end(tiny_run, tmp_path):
    run, arch = tiny_run
    res = export_subnet(run, run / "arch.json", precision="int8", out=tmp_path / "q.onnx", **SMALL)
    ops = graph_ops(res.path)
    assert ops.get("QuantizeLinear", 0) > 0 and ops.get("DequantizeLinear", 0) > 0
    assert not set(ops) & FORBIDDEN_OPS
    assert any(i.data_type == onnx.TensorProto.INT8 for i in onnx.load(str(res.path)).graph.initializer)
    acc = res.sidecar["accuracy"]
    assert {"fp32_top1", "int8_top1", "drop_points"} <= set(acc)
    assert abs(acc["int8_top1"] - acc["fp32_top1"]) <= 0.05
    p = res.sidecar["parity"]
    assert p["passed"] and 0.9 <= p["top1_agreement"] and p["max_abs_diff"] > 0, {
        k: p[k] for k in ("top1_agreement", "max_abs_diff", "passed")
    }  # quantized: close, not equal
    assert res.sidecar["quantization"]["calibration_split"] == "fashion-mnist train"


def test_export_torchscript_runs_in_torch_backend(tiny_run, tmp_path):
    from nastools.export import bench_model

    run, _ = tiny_run
    res = export_subnet(run, run / "arch.json", format="torchscript", out=tmp_path / "m.pt", **SMALL)
    assert res.path.suffix == ".pt" and res.passed
    assert res.sidecar["parity"]["max_abs_diff"] < 1e-3
    r = bench_model(res.path, batch=2, warmup="10ms", duration="50ms")
    assert r.backend == "torch" and r.input_shape == (2, 1, 28, 28)
    # any batch: parity and top-1 run in batches, not one image at a time (the sidecar's
    # (C, H, W) shape was once read as a static batch of C = 1)
    with make_runner(res.path) as runner:
        assert runner.static_batch() is None
        x = np.random.default_rng(0).standard_normal((7, 1, 28, 28), dtype=np.float32)
        assert run_batched(runner, x, 4).shape == (7, 10)


# ---------------------------------------------------------------- bad input: one-line errors


def _one_line_error(args) -> str:
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.output
    return lines[0]


def test_arch_of_another_space_is_one_line(tiny_run, tmp_path):
    run, _ = tiny_run
    load_space("attentivenas").sample(0).save(tmp_path / "other.json")
    msg = _one_line_error(["export", "--run", str(run), "--arch", str(tmp_path / "other.json")])
    assert "attentivenas" in msg and "fmnist" in msg


def test_missing_checkpoint_is_one_line(tmp_path):
    msg = _one_line_error(["export", "--run", str(tmp_path / "nothing"), "--arch", str(tmp_path / "a.json")])
    assert "no checkpoint" in msg and f"nastools train --run {tmp_path / 'nothing'})" in msg  # the folder, not runs/nothing


def test_missing_search_result_asks_for_arch(tiny_run, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "supernet.pt").write_bytes((tiny_run[0] / "supernet.pt").read_bytes())
    msg = _one_line_error(["export", "--run", str(run)])
    assert "--arch" in msg and "best.json" in msg


def test_trt_without_tensorrt_points_to_docker(tiny_run):
    pytest.importorskip("onnx")
    try:
        import tensorrt  # noqa: F401

        pytest.skip("tensorrt is installed here")
    except ImportError:
        pass
    run, _ = tiny_run
    msg = _one_line_error(["export", "--run", str(run), "--arch", str(run / "arch.json"), "--format", "trt"])
    assert "docker" in msg.lower() and "nastools[trt]" in msg


def test_parity_verdicts_and_their_one_line_description():
    from nastools.export.parity import describe_parity, parity

    ref = np.array([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]])
    ok = parity(ref, ref + 1e-4, "fp32")
    assert ok["passed"] and describe_parity(ok).startswith("max |diff| 0.0001, top-1 agreement 100.00% (passed;")
    flipped = ref.copy()
    flipped[2] = [0.0, 2.0]  # one of three top-1 changes, |diff| 2
    bad = parity(ref, flipped, "int8")
    assert not bad["passed"] and bad["top1_agreement"] == pytest.approx(2 / 3)
    assert describe_parity(bad) == "max |diff| 2, top-1 agreement 66.67% (FAILED; tolerance agreement >= 90%)"
    assert not parity(ref, ref + 2e-3, "fp32")["passed"] and parity(ref, ref + 2e-3, "fp16")["passed"]


def test_output_path_gets_the_ending_of_its_format(tmp_path):
    from nastools.export.api import output_path

    assert output_path(tmp_path / "m", "onnx") == tmp_path / "m.onnx"
    assert output_path(tmp_path / "m.v2", "trt") == tmp_path / "m.v2.engine"
    assert output_path(tmp_path / "m.plan", "trt") == tmp_path / "m.plan"
    assert output_path(tmp_path / "M.ONNX", "onnx") == tmp_path / "M.ONNX"
    assert output_path(None, "onnx") is None
    with pytest.raises(NastoolsError, match="name it m.engine"):
        output_path(tmp_path / "m.onnx", "trt")


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--format", "torchscript", "--precision", "int8"], "fp32 only"),  # values that parse (exit 2 otherwise: test_cli)
        (["--out", "model.engine"], "a .engine file is a trt model, not --format onnx"),
        (["--format", "torchscript", "--out", "m.onnx"], "name it m.pt"),
    ],
)
def test_bad_options_are_one_line(tiny_run, args, needle):
    run, _ = tiny_run
    assert needle in _one_line_error(["export", "--run", str(run), "--arch", str(run / "arch.json"), *args])


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"batch": 0}, "--batch 0"),
        ({"max_batch": 0}, "--max-batch 0"),
        ({"workspace": -1 << 20}, "--workspace -1 MiB"),
        ({"format": "tflite"}, "--format"),
        ({"precision": "int4"}, "--precision"),
        ({"format": "torchscript", "batch": 8}, "a traced TorchScript model takes any batch size"),
        ({"batch": "8"}, "--batch '8'"),
        ({"parity_images": 0}, "--parity-images 0"),
        ({"eval_images": 0}, "--eval-images 0"),
        ({"calib_images": 0}, "--calib-images 0"),
        ({"opset": 13}, "--opset 13: expected an integer >= 17"),
    ],
)
def test_export_subnet_checks_its_arguments_before_any_work(tiny_run, tmp_path, kwargs, needle):
    run, _ = tiny_run
    with pytest.raises(NastoolsError, match=needle):
        export_subnet(run, run / "arch.json", out=tmp_path / "m.onnx", **kwargs)
    assert not list(tmp_path.iterdir())


def test_export_onnx_refuses_what_it_cannot_export(tmp_path):
    with pytest.raises(NastoolsError, match="export_onnx: got a str, expected a torch module"):
        export_onnx("subnet.pt", tmp_path / "m.onnx")
    with pytest.raises(NastoolsError, match="opset 13: expected an ONNX opset >= 17"):
        export_onnx(torch.nn.Identity(), tmp_path / "m.onnx", opset=13)
    assert not list(tmp_path.iterdir())


def test_an_interrupted_export_leaves_the_previous_model_and_sidecar_as_they_were(tiny_run, tmp_path, monkeypatch):
    import nastools.export.api as api

    run, _ = tiny_run
    first = export_subnet(run, run / "arch.json", out=tmp_path / "m.onnx", **SMALL)
    before = (first.path.read_bytes(), first.sidecar_path.read_bytes())

    def stopped(ctx):  # Ctrl-C after the new model is written, before it is checked
        assert ctx.model.exists()
        raise KeyboardInterrupt

    monkeypatch.setattr(api, "_verify", stopped)
    with pytest.raises(KeyboardInterrupt):
        export_subnet(run, run / "arch.json", out=tmp_path / "m.onnx", **SMALL)
    # the unchecked model never took the checked one's place; nothing else is left
    assert (first.path.read_bytes(), first.sidecar_path.read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.onnx.json"]


def test_an_export_killed_before_its_check_leaves_no_unchecked_model(tiny_run, tmp_path):
    """SIGKILL (a real process) while the written model is checked: no model at the output;
    the rerun removes the killed export's scratch folder and writes the checked model."""
    import signal
    import subprocess
    import sys

    run, _ = tiny_run
    out = tmp_path / "m.onnx"
    code = (
        "import os, signal, sys\n"
        "import nastools.export.api as api\n"
        "api._verify = lambda ctx: os.kill(os.getpid(), signal.SIGKILL)\n"
        f"api.export_subnet(sys.argv[1], sys.argv[1] + '/arch.json', out=sys.argv[2], **{SMALL!r})\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(run), str(out)], capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert not out.exists() and not (tmp_path / "m.onnx.json").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".m.onnx.export.")]  # its scratch folder
    res = export_subnet(run, run / "arch.json", out=out, **SMALL)
    assert res.passed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.onnx.json"]


def test_a_second_export_to_the_same_output_is_refused(tiny_run, tmp_path):
    from nastools.lock import OutputLock

    run, _ = tiny_run
    with OutputLock(tmp_path / "m.onnx", "export output", folder=False):  # another export writing it
        with pytest.raises(NastoolsError, match=r"export output .*m\.onnx' is in use by pid .*pass another --out"):
            export_subnet(run, run / "arch.json", out=tmp_path / "m.onnx", **SMALL)
    assert not (tmp_path / "m.onnx").exists()


# ---------------------------------------------------------------- TensorRT (GPU machines only)


@pytest.mark.gpu("tensorrt")
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_tensorrt_engine_export_and_bench(tiny_run, tmp_path, precision):
    from nastools.export import bench_model

    run, _ = tiny_run
    res = export_subnet(
        run, run / "arch.json", format="trt", precision=precision, out=tmp_path / f"{precision}.engine", max_batch=64, **SMALL
    )
    t = res.sidecar["tensorrt"]
    assert res.path.is_file() and (tmp_path / "timing.cache").is_file()
    assert t["profile"] == {"min": 1, "opt": 32, "max": 64} and t["gpu"] != "unknown" and t["tensorrt"]
    assert res.passed, res.sidecar["parity"]
    r = bench_model(res.path, batch=8, warmup="50ms", duration="200ms")
    assert r.backend == "trt" and r.iterations >= 10 and r.min_ms <= r.median_ms <= r.p99_ms
    assert t["timing_cache_reused"] is False and (precision != "fp32" or t["tf32"] in (False, None))
    again = export_subnet(
        run, run / "arch.json", format="trt", precision=precision, out=tmp_path / f"again-{precision}.engine", max_batch=64, **SMALL
    )
    assert again.sidecar["tensorrt"]["timing_cache_reused"] is True  # the timing.cache the first build wrote


def test_an_unwritable_out_or_a_binary_arch_file_is_one_line_before_any_work(tiny_run, tmp_path):
    run, _ = tiny_run
    afile = tmp_path / "afile"
    afile.write_text("x")
    binary = tmp_path / "bin.json"
    binary.write_bytes(b"\x00\xff\xfe garbage")
    base = ["export", "--run", str(run), "--arch", str(run / "arch.json")]
    assert "its folder" in _one_line_error([*base, "--out", str(afile / "m.onnx")])
    assert "cannot write there" in _one_line_error([*base, "--out", "/proc/nastools-x/m.onnx"])
    assert "--out: empty path" in _one_line_error([*base, "--out", ""])
    assert "is not UTF-8 text" in _one_line_error(["export", "--run", str(run), "--arch", str(binary)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "bin.json"]
