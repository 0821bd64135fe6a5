"""nastools.gpucheck on a CPU host: the dry run, the report, the skip logic, and every command
the GPU steps run parsed by the real CLI (so that a GPU's few minutes are not lost to a typo)."""

import json

import pytest
import torch

from nastools import gpucheck as gc
from nastools.cli import main as cli_main


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA host runs the real check (make gpu-check)")
def test_the_dry_run_reports_every_step_not_available_with_its_reason(tmp_path, capsys):
    assert gc.main(["--out", str(tmp_path / "r.json"), "--work", str(tmp_path / "w")]) == 0
    out = capsys.readouterr().out.strip()
    assert "\n" not in out and out.startswith("gpu-check: no CUDA GPU visible to torch") and "not available" in out
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["format"] == gc.REPORT_FORMAT and rep["benchmark"] == "gpu_check" and rep["machine"]["cpu"]
    assert [r["step"] for r in rep["steps"]] == [s.name for s in gc.STEPS]
    assert all(r["status"] == "not available" and "no CUDA GPU" in r["install"] for r in rep["steps"])
    assert rep["counts"] == {"passed": 0, "failed": 0, "not available": len(gc.STEPS), "skipped": 0}


def test_steps_pass_fail_skip_and_name_what_to_install(tmp_path):
    def ok(ctx):
        return {"x": 1}

    def bad(ctx):
        raise gc.StepFailed("nastools profile exited 1: error: boom")

    def bug(ctx):
        raise KeyError("k")

    steps = [
        gc.Step("a", (), (), ok),
        gc.Step("b", (), ("a",), bad),
        gc.Step("c", (), ("b",), ok),
        gc.Step("d", ("tensorrt",), (), ok),
        gc.Step("e", (), (), bug),
        gc.Step("f", (), (), ok, any_of=("b", "a")),
        gc.Step("g", (), (), ok, any_of=("b", "d")),
    ]
    ctx = gc.Context(tmp_path, deadline=gc.time.monotonic() + 60)
    recs = {r["step"]: r for r in gc.run_steps(steps, ctx, {"tensorrt": "TensorRT is not installed: pip install 'nastools[trt]'"})}
    assert recs["a"]["status"] == "passed" and recs["a"]["detail"] == {"x": 1}
    assert recs["b"] == {**recs["b"], "status": "failed", "error": "nastools profile exited 1: error: boom"}
    assert recs["c"]["status"] == "skipped" and "needs 'b'" in recs["c"]["reason"]
    assert recs["d"]["status"] == "not available" and "pip install 'nastools[trt]'" in recs["d"]["install"]
    assert recs["e"]["status"] == "failed" and recs["e"]["error"].startswith("KeyError")
    assert recs["f"]["status"] == "passed" and recs["g"]["status"] == "skipped"
    late = gc.run_steps([gc.Step("h", (), (), ok)], gc.Context(tmp_path, deadline=gc.time.monotonic()), {})
    assert late[0]["status"] == "skipped" and "out of time" in late[0]["reason"]
    rep = gc.report(list(recs.values()), {"cpu": "x"}, 1.0)
    assert rep["counts"] == {"passed": 2, "failed": 2, "not available": 1, "skipped": 2}
    text = gc.format_report(rep)
    assert "failed" in text and "2 passed, 2 failed, 1 not available, 2 skipped" in text


def _parses(args):
    """Parse ``nastools ARGS`` with the real click commands, running nothing."""
    cmd = cli_main.get_command(None, args[0])
    assert cmd is not None, args[0]
    cmd.make_context(args[0], list(args[1:]))


def test_every_command_the_gpu_steps_run_parses(tmp_path, monkeypatch):
    from nastools.latency import LatencyTable
    from nastools.space import load_space

    calls = []
    ctx = gc.Context(tmp_path, deadline=gc.time.monotonic() + 60)
    ctx.space.write_text(gc.SMALL_SPACE)
    space = load_space(str(ctx.space))

    def fake_cli(c, *args, cap_s=150.0):
        calls.append(args)
        _parses([*args, "--json"])
        if args[0] == "profile":  # a table the search step can read
            t = LatencyTable.new(
                space, device="NVIDIA H100", backend="trt", version="10", precision="fp32", batch=1, threads=1, target="gpu"
            )
            for b in space.all_blocks():
                t.set(b, {"median_ms": 0.01, "p10_ms": 0.009, "p90_ms": 0.012, "n": 30})
            t.save(args[args.index("--out") + 1])
        if args[0] == "search":
            return {
                "latency": {"latency:gpu": {"statistic": "median", "verified": True}},
                "picks": [{"id": "abc", "costs": {"latency:gpu": 0.1, "measured:latency:gpu": 0.1}}],
            }
        return {}

    monkeypatch.setattr(gc, "cli", fake_cli)
    steps = [s for s in gc.STEPS if not s.name.startswith("parity")]  # parity runs models in-process
    recs = gc.run_steps(steps, ctx, {})
    assert all(r["status"] == "passed" for r in recs), [r for r in recs if r["status"] != "passed"]
    assert {a[0] for a in calls} == {"train", "profile", "search", "export", "bench"}
    profiles = [a for a in calls if a[0] == "profile"]
    assert len(profiles) == 4 and all(a[a.index("--device") + 1] == "gpu" and "--validate" in a for a in profiles)
    trains = [a for a in calls if a[0] == "train"]
    assert all(a[a.index("--device") + 1] == "cuda" for a in trains)
    assert sorted(a[a.index("--precision") + 1] for a in trains) == ["bf16", "fp32"]
    assert len({a[a.index("--run") + 1] for a in trains}) == 2  # the bf16 run is not the one searched


def test_a_failing_command_is_one_line(tmp_path):
    ctx = gc.Context(tmp_path, deadline=gc.time.monotonic() + 60)
    with pytest.raises(gc.StepFailed) as err:
        gc.cli(ctx, "profile", "--space", "no-such-space", cap_s=60)
    assert "\n" not in str(err.value) and "exited" in str(err.value) and "no-such-space" in str(err.value)


def test_missing_pieces_say_what_to_install(monkeypatch):
    import nastools.runtime.onnxrt as onnxrt
    import nastools.runtime.trt as rtrt

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(onnxrt, "cuda_provider_available", lambda: False)
    monkeypatch.setattr(rtrt, "tensorrt_installed", lambda: False)
    missing = gc.missing_pieces()
    assert "CUDA build of torch" in missing["cuda"] and "pip install 'nastools[gpu]'" in missing["ort-cuda"]
    assert missing["ort-cuda"].startswith("ONNX Runtime's CUDAExecutionProvider not available")
    assert "nastools[trt]" in missing["tensorrt"]


def test_parity_compares_outputs_with_ort_cpu_and_fails_beyond_its_tolerance(tmp_path):
    import numpy as np

    from nastools.export.to_onnx import export_onnx
    from nastools.runtime import OrtCpuRunner
    from nastools.space import load_space
    from nastools.supernet import Supernet

    sp = load_space("fmnist")
    ctx = gc.Context(tmp_path, deadline=gc.time.monotonic() + 60)
    ctx.files["onnx-fp32"] = str(export_onnx(Supernet(sp).extract(sp.min_arch()).eval(), tmp_path / "min.onnx"))
    same = gc._parity(OrtCpuRunner, "onnx-fp32", 1e-6)(ctx)
    assert same == {"max_abs_diff": 0.0, "top1_agreement": 1.0}

    class Off(OrtCpuRunner):
        def output(self):
            return np.asarray(super().output()) + 0.5

    with pytest.raises(gc.StepFailed, match=r"max \|difference\| 0\.5 against ONNX Runtime CPU"):
        gc._parity(Off, "onnx-fp32", 1e-2)(ctx)


def test_the_cpu_rehearsal_runs_every_step_it_can_with_the_outputs_the_check_reads(tmp_path, capsys):
    """``--rehearse-on-cpu``: the real commands, with the CPU in the GPU's place, and every
    figure the report takes from their outputs present (a renamed output key would leave the
    GPU report with holes)."""
    code = gc.main(["--rehearse-on-cpu", "--work", str(tmp_path / "w")])
    out = capsys.readouterr().out
    rep = json.loads((tmp_path / "w" / "gpu_check.json").read_text())
    steps = {r["step"]: r for r in rep["steps"]}
    assert code == 0 and rep["target"] == "cpu" and "a rehearsal" in out, out
    cpu_steps = [s.name for s in gc.STEPS if not {"ort-cuda", "tensorrt"} & set(s.needs)]
    assert {n for n, r in steps.items() if r["status"] == "passed"} == set(cpu_steps), out
    assert all(r["status"] == "not available" for n, r in steps.items() if n not in cpu_steps)
    assert steps["train: torch CUDA, bf16 mixed precision"]["detail"]["precision"] == "bf16"
    prof = steps["profile: torch CUDA fp32"]["detail"]
    assert prof["blocks"] > 0 and prof["mape_pct"] is not None and prof["statistic"]
    found = steps["search: GPU budget, picks verified on the GPU"]["detail"]
    assert found["arch"] and found["statistic"] and found["measured_ms"] > 0 and found["verification"]["timed_ms"] > 0
    assert found["predicted_ms"] <= found["budget_ms"]
    for fmt in ("onnx", "torchscript"):
        assert steps[f"export: {fmt} fp32"]["detail"]["parity"]["passed"] is True
        assert steps[f"bench: {fmt} fp32" + (" (ORT CPU)" if fmt == "onnx" else "")]["detail"]["median_ms"] > 0


def test_a_rehearsal_gives_each_command_the_slack_a_busy_cpu_needs(tmp_path, monkeypatch):
    seen = []

    def run(cmd, **kw):
        seen.append(kw["timeout"])
        return gc.subprocess.CompletedProcess(cmd, 0, "{}", "")

    monkeypatch.setattr(gc.subprocess, "run", run)
    for slack in (1.0, gc.REHEARSAL_SLACK):
        ctx = gc.Context(tmp_path, deadline=gc.time.monotonic() + gc.TIME_LIMIT_S * slack, slack=slack)
        gc.cli(ctx, "bench", "m.onnx", cap_s=60)
    assert seen[0] == 60 and seen[1] == 60 * gc.REHEARSAL_SLACK
