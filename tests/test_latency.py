"""Latency tables: block enumeration, the table file (round trip, resume, mismatched space,
missing entries), ORT CPU profiling of a tiny space end to end, prediction."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from nastools.errors import NastoolsError
from nastools.latency import (
    LatencyTable,
    Measurement,
    OrtCpuBackend,
    Protocol,
    blocks_for,
    error_metrics,
    kendall_tau,
    make_backend,
    profile,
    profile_blocks,
    sample_archs,
)
from nastools.latency.profiler import open_table
from nastools.space import space_from_dict

TINY = {
    "name": "tiny",
    "input_channels": 1,
    "num_classes": 4,
    "resolutions": [12, 16],
    "act": "swish",
    "se": {"ratio": 0.25, "gate": "hsigmoid", "divisor": 8},
    "stem": {"widths": [8], "kernel": 3, "stride": 2},
    "stages": [
        {"name": "a", "widths": [8], "depths": [1, 2], "kernels": [3], "expands": [1], "stride": 1, "se": False},
        {"name": "b", "widths": [16], "depths": [1, 2], "kernels": [3], "expands": [2, 4], "stride": 2, "se": True},
    ],
    "head": {"widths": [32], "expand": 2},
}

QUICK = Protocol.quick()


@pytest.fixture(scope="module")
def tiny():
    return space_from_dict(TINY, source="tiny")


@pytest.fixture(scope="module")
def profiled(tiny, tmp_path_factory):
    """The tiny space profiled through ORT CPU, calibrated and validated, once per module."""
    out = tmp_path_factory.mktemp("lt") / "tiny.json"
    table = profile(tiny, OrtCpuBackend(threads=1), out=out, protocol=QUICK, calibration_runs=6, validate_runs=5, progress=False)
    return table


# ---------------------------------------------------------------- enumeration


@pytest.mark.parametrize("space_name", ["fmnist", "attentivenas"])
def test_enumeration_covers_every_block_of_random_subnets(space_name, request):
    sp = request.getfixturevalue(space_name)
    keys = {b.key for b in blocks_for(sp)}
    rng = random.Random(0)
    for _ in range(300):
        for b in sp.blocks(sp.sample(rng)):
            assert b.key in keys, b.key


def test_enumeration_by_resolution_is_exactly_what_those_subnets_use(attentivenas):
    at224 = blocks_for(attentivenas, [224])
    keys = {b.key for b in at224}
    assert len(keys) == len(at224) < len(blocks_for(attentivenas))
    rng = random.Random(1)
    used = set()
    for _ in range(2000):
        used |= {b.key for b in attentivenas.blocks(attentivenas.sample(rng).replace(resolution=224))}
    assert used <= keys
    assert all(b.size <= 224 for b in at224)
    with pytest.raises(NastoolsError, match="--resolutions: got 100"):
        blocks_for(attentivenas, [100])


# ---------------------------------------------------------------- the table file


def test_profiled_table_round_trips_and_predicts_sum_plus_overhead(profiled, tiny):
    assert profiled.path.is_file()
    data = json.loads(profiled.path.read_text())
    assert data["format"] == "nastools.latency-table/1"
    assert data["meta"]["space_fingerprint"] == tiny.fingerprint
    assert data["meta"]["backend"] == "ort" and data["meta"]["threads"] == 1 and data["meta"]["batch"] == 1
    assert set(data["entries"]) == {b.key for b in blocks_for(tiny)}
    for e in data["entries"].values():
        assert 0 < e["p10_ms"] <= e["median_ms"] <= e["p90_ms"] and e["n"] >= QUICK.min_runs
    again = LatencyTable.load(profiled.path, tiny)
    assert again.to_dict() == profiled.to_dict()
    c = again.calibration
    assert {"scale", "per_block_ms", "per_mparam_ms", "offset_ms"} <= set(c) and len(c["runs"]) == 6
    for arch in sample_archs(tiny, 10, 7, tiny.resolutions):
        blocks = tiny.blocks(arch)
        assert again.statistic == "p10_ms"
        total = sum(again.entries[b.key]["p10_ms"] for b in blocks)
        assert again.block_sum(arch) == pytest.approx(total)
        mparams = sum(b.cost()[1] for b in blocks) / 1e6
        assert mparams == pytest.approx(tiny.params(arch) / 1e6)
        melems = sum(b.size * b.size * b.in_chs for b in blocks) / 1e6
        mexpanded = sum(b.size * b.size * b.mid_chs for b in blocks if b.kind == "mbconv") / 1e6
        assert again.features(arch) == pytest.approx(
            {"sum_ms": total, "n_blocks": len(blocks), "mparams": mparams, "melems": melems, "mexpanded": mexpanded}
        )
        expected = (
            c["scale"] * total
            + c["per_block_ms"] * len(blocks)
            + c["per_mparam_ms"] * mparams
            + c["per_melem_ms"] * melems
            + c["per_mexpanded_ms"] * mexpanded
            + c["offset_ms"]
        )
        assert again.predict(arch) == pytest.approx(expected)
        assert again.predict(arch) == pytest.approx(total + again.overhead(arch))
        # any coefficient moves the prediction by its feature: none is left out of predict()
        for coef, feat in (
            ("per_block_ms", len(blocks)),
            ("per_mparam_ms", mparams),
            ("per_melem_ms", melems),
            ("per_mexpanded_ms", mexpanded),
        ):
            moved = LatencyTable.from_dict({**again.to_dict(), "calibration": {**c, coef: c[coef] + 1.0}})
            moved.bind(tiny)
            assert moved.predict(arch) == pytest.approx(expected + feat)


def test_uncalibrated_prediction_is_the_block_sum(profiled, tiny):
    bare = LatencyTable.from_dict({**profiled.to_dict(), "calibration": {}})
    bare.bind(tiny)
    arch = tiny.max_arch()
    assert bare.predict(arch) == pytest.approx(sum(profiled.entries[b.key]["p10_ms"] for b in tiny.blocks(arch)))
    bare.meta["statistic"] = "median_ms"
    bare._cache.clear()
    assert bare.predict(arch) == pytest.approx(sum(profiled.entries[b.key]["median_ms"] for b in tiny.blocks(arch)))
    # a profile interrupted while its calibration subnets were measured: runs stored, nothing fitted yet
    half = LatencyTable.from_dict({**profiled.to_dict(), "calibration": {"runs": profiled.calibration["runs"][:3]}})
    half.bind(tiny)
    assert half.predict(arch) == pytest.approx(half.block_sum(arch)) and half.overhead(arch) == 0


def test_validation_is_stored_with_flops_baseline_and_plot(profiled, tiny):
    v = profiled.validation
    calib = {r["arch"] for r in profiled.calibration["runs"]}
    assert len(v["runs"]) == 5 and not calib & {r["arch"] for r in v["runs"]}
    for key in ("table", "flops_linear", "flops_linear_calibration"):
        assert {"mape_pct", "rmse_ms", "within_5_pct", "within_10_pct", "kendall_tau"} <= set(v[key])
    # the in-sample FLOPs fit is the least-squares optimum on these runs: no line beats its RMSE
    assert v["flops_linear"]["rmse_ms"] <= v["flops_linear_calibration"]["rmse_ms"] + 1e-12
    for r in v["runs"]:
        # the statistic of all runs pooled lies within the range of its three sets of rounds
        assert r["measured_ms"] > 0 and len(r["pass_ms"]) == 3
        assert min(r["pass_ms"]) * 0.98 <= r["measured_ms"] <= max(r["pass_ms"]) * 1.02
        assert r["measured_ms"] == r[profiled.statistic]
    png = profiled.path.with_name(v["plot"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_table_for_another_space_is_a_clear_error(profiled, fmnist):
    with pytest.raises(NastoolsError, match="profiled for space 'tiny'.*nastools profile --space fmnist"):
        LatencyTable.load(profiled.path, fmnist)


def test_missing_entry_names_the_block(profiled, tiny):
    t = LatencyTable.load(profiled.path, tiny)
    arch = tiny.max_arch()
    head = tiny.blocks(arch)[-1]
    del t.entries[head.key]
    t._cache.clear()
    with pytest.raises(NastoolsError, match=f"no entry for block {head.key}"):
        t.predict(arch)


def test_bad_files_are_user_errors(tmp_path):
    p = tmp_path / "t.json"
    with pytest.raises(NastoolsError, match="not found"):
        LatencyTable.load(p)
    p.write_text("{not json")
    with pytest.raises(NastoolsError, match="latency table .* is not valid JSON"):
        LatencyTable.load(p)
    p.write_text(json.dumps({"format": "other/1"}))
    with pytest.raises(NastoolsError, match="expected 'nastools.latency-table/1'"):
        LatencyTable.load(p)


def test_resume_after_interruption_keeps_finished_blocks(tiny, tmp_path):
    out = tmp_path / "t.json"
    be = OrtCpuBackend(threads=1)
    table = open_table(tiny, be, batch=1, resolutions=None, out=out, protocol=QUICK)
    assert profile_blocks(table, be, protocol=QUICK, progress=False, limit=3) == 3

    class Stopping(OrtCpuBackend):  # the real backend, interrupted (Ctrl-C) after two more blocks
        calls = 0

        def load(self, workload):
            Stopping.calls += 1
            if Stopping.calls > 2:
                raise KeyboardInterrupt
            super().load(workload)

    table = open_table(tiny, be, batch=1, resolutions=None, out=out, protocol=QUICK)
    with pytest.raises(KeyboardInterrupt):
        profile_blocks(table, Stopping(threads=1), protocol=QUICK, progress=False)
    on_disk = LatencyTable.load(out, tiny)
    assert len(on_disk) == 5  # nothing finished was lost
    first = dict(on_disk.entries)
    assert all(e["passes"] == 1 for e in first.values())
    resumed = open_table(tiny, be, batch=1, resolutions=None, out=out, protocol=QUICK)
    total = len(blocks_for(tiny))
    # the rest of the first sweep and the whole second sweep, nothing finished redone
    assert profile_blocks(resumed, be, protocol=QUICK, progress=False) == 2 * total - 5
    final = LatencyTable.load(out, tiny)
    assert len(final) == total
    for key, e in final.entries.items():
        assert e["passes"] == 2 and e["p10_ms"] <= e["worst_ms"]
        assert e["spread_pct"] == pytest.approx(100 * (e["worst_ms"] - e["p10_ms"]) / e["p10_ms"], abs=0.01)
    for key, e in first.items():  # the better of the two passes is kept
        assert final.entries[key]["p10_ms"] <= e["p10_ms"]


def test_resume_with_other_settings_is_refused(profiled, tiny):
    with pytest.raises(NastoolsError, match="cannot resume latency table.*threads is 1.*2"):
        open_table(tiny, OrtCpuBackend(threads=2), batch=1, resolutions=None, out=profiled.path, protocol=QUICK)


# ---------------------------------------------------------------- backends & metrics


def test_backend_choice_errors():
    with pytest.raises(NastoolsError, match="TensorRT runs on NVIDIA GPUs only"):
        make_backend("cpu", "trt")
    with pytest.raises(NastoolsError, match="--precision fp16: backend ort on cpu times fp32 only"):
        make_backend("cpu", "ort", "fp16")


def test_torch_cpu_backend_measures_a_block(tiny):
    from nastools.latency import block_workload

    for backend in ("torch", "ort"):
        m, wall_s = _timed(make_backend("cpu", backend), block_workload(blocks_for(tiny)[0]))
        assert isinstance(m, Measurement)
        assert_real_timing(m, wall_s)  # the check the GPU backends' tests make


def test_loo_scaled_vs_refit_predicts_each_run_from_the_others_only():
    from nastools.latency.validate import loo_scaled_vs_refit

    sums = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    predicted = [s + 0.3 * (i % 2) for i, s in enumerate(sums)]  # the table's own overhead model
    # this machine runs 1.4x the table's predictions: one factor carries it over exactly
    got = loo_scaled_vs_refit(predicted, sums, [1.4 * p for p in predicted])
    assert got["scaled"] == pytest.approx(0.0, abs=1e-9) and got["refit"] > 1.0
    # this machine runs 2x the block sums plus 0.5 ms: a scale and an offset carry it over exactly
    got = loo_scaled_vs_refit(predicted, sums, [2 * s + 0.5 for s in sums])
    assert got["refit"] == pytest.approx(0.0, abs=1e-9) and got["scaled"] > 1.0
    # by hand: each run scaled by the median ratio of the other five
    measured = [1.0, 2.2, 2.7, 4.4, 5.0, 6.6]
    ratio = [m / p for m, p in zip(measured, predicted)]
    errs = [abs(sorted(ratio[:i] + ratio[i + 1 :])[2] * predicted[i] - measured[i]) / measured[i] for i in range(6)]
    assert loo_scaled_vs_refit(predicted, sums, measured)["scaled"] == pytest.approx(100 * sum(errs) / 6)
    with pytest.raises(ValueError, match="at least 3 runs"):
        loo_scaled_vs_refit([1.0, 2.0], [1.0, 2.0], [1.0, 2.0])


def test_metrics():
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    m = error_metrics([1.0, 2.18, 2.76], [1.0, 2.0, 3.0])
    assert m["mape_pct"] == pytest.approx(100 * (0 + 0.09 + 0.08) / 3)
    assert m["within_5_pct"] == pytest.approx(100 / 3) and m["within_10_pct"] == pytest.approx(100.0)


def test_table_file_names_drop_trademark_marks():
    from nastools.latency.table import default_table_path

    assert (
        default_table_path("fmnist", "Intel(R) Xeon(R) Processor", "ort", "fp32", 1, 1).name
        == "intel-xeon-processor-t1__ort__fp32__b1.json"
    )
    assert (
        default_table_path("fmnist", "AMD EPYC 7B13 64-Core Processor", "ort", "fp32", 1).name
        == "amd-epyc-7b13-64-core-processor__ort__fp32__b1.json"
    )
    assert default_table_path("fmnist", "NVIDIA H200 (TM)", "trt", "fp16", 8).name == "nvidia-h200__trt__fp16__b8.json"


def test_shipped_tables_are_package_data_and_the_users_come_first(tmp_path, monkeypatch):
    import shutil

    import nastools
    from nastools.latency.table import default_table_path, shipped_tables_dir, table_files

    shipped = shipped_tables_dir()
    assert shipped.is_relative_to(Path(nastools.__file__).parent)  # not the working directory's
    names = [p.name for p in table_files("fmnist")]
    assert "amd-epyc-t1__ort__fp32__b1.json" in names
    monkeypatch.chdir(tmp_path)  # found from any working directory
    assert [p.name for p in table_files("fmnist")] == names
    assert all(p.is_relative_to(shipped) for p in table_files("fmnist"))
    assert default_table_path("fmnist", "AMD EPYC", "ort", "fp32", 1, 1) == Path("latency_tables/fmnist/amd-epyc-t1__ort__fp32__b1.json")
    mine = tmp_path / "latency_tables" / "fmnist"
    mine.mkdir(parents=True)
    shutil.copy(shipped / "fmnist" / names[-1], mine / names[-1])  # the user's own copy hides the shipped one
    (mine / "zz-mine.json").write_text("{}")
    files = table_files("fmnist")
    assert [p.name for p in files[:2]] == sorted([names[-1], "zz-mine.json"])  # the user's first
    assert all(p.is_relative_to(shipped) for p in files[2:]) and len(files) == len(names) + 1
    assert table_files("no-such-space") == []


def _timed(be, workload):
    """``be.measure(workload, QUICK)`` and the wall time it took, in seconds."""
    import time

    t0 = time.perf_counter()
    m = be.measure(workload, QUICK)
    return m, time.perf_counter() - t0


def assert_real_timing(m: Measurement, wall_s: float) -> None:
    """What only a real timing in milliseconds satisfies: ordered statistics, the protocol's
    runs, the kept runs within the wall time the measurement took (a unit too large fails),
    and more than a microsecond each, what a launch and a synchronize cost (a unit too small
    fails)."""
    assert 0 < m.p10_ms <= m.median_ms <= m.p90_ms
    assert QUICK.min_runs <= m.n
    assert 0.9 * m.n * m.p10_ms / 1e3 <= wall_s  # at least 90% of the kept runs took p10 or longer
    assert m.median_ms > 1e-3


# A space of one arch whose MBConv block (128 channels, expand 6, 28 px) does ~10 GMACs at batch
# 64: on a GPU its kernels, not the launches, take the time, so that batch and precision show.
WIDE = {
    "name": "wide",
    "input_channels": 3,
    "num_classes": 10,
    "resolutions": [28],
    "act": "relu",
    "stem": {"widths": [128], "kernel": 3, "stride": 1},
    "stages": [{"name": "a", "widths": [128], "depths": [1], "kernels": [3], "expands": [6], "stride": 1, "se": False}],
    "head": {"widths": [256], "expand": 1},
}


def _wide():
    space = space_from_dict(WIDE, source="wide")
    (block,) = [b for b in blocks_for(space) if b.kind == "mbconv"]
    return space, block


def _relative_error(got, want) -> float:
    import numpy as np

    return float(np.abs(np.asarray(got) - np.asarray(want)).max() / np.abs(np.asarray(want)).max())


@pytest.mark.gpu("tensorrt")
def test_tensorrt_backend_times_a_block(tiny):
    from nastools.latency import block_workload

    be = make_backend("gpu", "trt", "fp16")
    assert_real_timing(*_timed(be, block_workload(blocks_for(tiny)[1])))
    assert be.describe()["backend"] == "tensorrt"


@pytest.mark.gpu("tensorrt")
def test_an_int8_tensorrt_tables_blocks_cost_less_than_fp32s_on_the_same_gpu(tmp_path):
    # int8 engines (Q/DQ graphs, tensor cores) against fp32 ones (TF32 off) of the same blocks
    # at batch 64, where the wide block's convolutions dominate
    space, wide = _wide()
    arch = space.min_arch()
    tables = {}
    for precision in ("fp32", "int8"):
        be = make_backend("gpu", "trt", precision)
        try:
            t = open_table(space, be, batch=64, resolutions=None, out=tmp_path / f"{precision}.json", protocol=QUICK)
            assert profile_blocks(t, be, protocol=QUICK, passes=1, progress=False) == len(blocks_for(space))
        finally:
            be.close()
        assert t.meta["precision"] == precision and t.meta["batch"] == 64 and t.meta["target"] == "gpu"
        tables[precision] = t
    fp32, int8 = (tables[p].block_sum(arch) for p in ("fp32", "int8"))
    assert int8 < fp32, f"int8 block sum {int8:.4f} ms, fp32 {fp32:.4f} ms"
    stat = tables["fp32"].statistic
    assert tables["int8"].entries[wide.key][stat] < tables["fp32"].entries[wide.key][stat]


@pytest.mark.gpu("ort-cuda")
def test_ort_cuda_backend_times_a_workload_that_holds_only_its_onnx_and_computes_what_the_cpu_does(tiny):
    # from the second pass on, end-to-end workloads keep only their ONNX export (no module)
    from nastools.latency import Workload, block_workload
    from nastools.runtime import OrtCpuRunner

    w = block_workload(blocks_for(tiny)[1])
    be = make_backend("gpu", "ort")
    bare = Workload(w.name, None, w.input_shape, {"fp32": w.onnx("fp32")})
    assert_real_timing(*_timed(be, bare))
    assert be.describe()["backend"] == "onnxruntime-cuda"
    x = w.example_input().numpy()
    with OrtCpuRunner(w.onnx("fp32"), threads=1) as cpu, be.runner(bare) as gpu:
        want, got = cpu.infer(x), gpu.infer(x)
    assert got.shape == want.shape and _relative_error(got, want) < 1e-2  # TF32 convolutions allowed


def test_ort_cuda_backend_without_the_cuda_provider_names_what_to_install(monkeypatch):
    import onnxruntime as ort
    import torch

    from nastools.latency import backends
    from nastools.runtime import onnxrt

    monkeypatch.setattr(backends, "_torch_cuda", lambda: torch)
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    monkeypatch.setattr(onnxrt, "_installed_version", lambda dist: None)
    with pytest.raises(
        NastoolsError, match=r"^--backend ort on GPU: CUDAExecutionProvider not available in onnxruntime .*'nastools\[gpu\]'$"
    ):
        make_backend("gpu", "ort")
    # onnxruntime-gpu installed, then the CPU onnxruntime over it: reinstalling onnxruntime-gpu is the fix
    monkeypatch.setattr(onnxrt, "_installed_version", lambda dist: "1.31.1" if dist == "onnxruntime-gpu" else "1.32.0")
    with pytest.raises(NastoolsError, match=r"pip install --force-reinstall --no-deps 'onnxruntime-gpu==1\.31\.1'$"):
        make_backend("gpu", "ort")


def test_ort_cuda_backend_refuses_to_time_on_the_cpu_when_cuda_does_not_load(tiny, monkeypatch):
    # onnxruntime only warns when the CUDA provider cannot load, and runs the session on the
    # CPU; this ORT build lacks CUDA altogether, so a real session shows that fallback here
    import onnxruntime as ort
    import torch

    from nastools.latency import backends, block_workload

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(backends, "_torch_cuda", lambda: torch)
    be = backends.OrtCudaBackend()
    with pytest.raises(NastoolsError, match="CUDAExecutionProvider did not load"):
        be.load(block_workload(blocks_for(tiny)[1]))


@pytest.mark.gpu
def test_torch_cuda_backend_times_a_block(tiny):
    from nastools.latency import block_workload

    be = make_backend("gpu", "torch")
    assert_real_timing(*_timed(be, block_workload(blocks_for(tiny)[1])))
    assert be.describe()["backend"] == "torch-cuda"


@pytest.mark.gpu
def test_torch_cuda_latency_rises_with_batch():
    # at batch 1 the wide block is a few kernel launches; at 64 each kernel moves ~150 MB
    from nastools.latency import block_workload

    _, wide = _wide()
    be = make_backend("gpu", "torch")
    one, many = (be.measure(block_workload(wide, batch), QUICK) for batch in (1, 64))
    assert many.median_ms > 2 * one.median_ms, f"batch 64: {many.median_ms:.4f} ms, batch 1: {one.median_ms:.4f} ms"
    assert many.p10_ms > one.p90_ms


# ---------------------------------------------------------------- CLI


@pytest.mark.slow
def test_cli_profile_tiny_space_json(tmp_path):
    import yaml
    from click.testing import CliRunner

    from nastools.cli import main

    space_file = tmp_path / "tiny.yaml"
    space_file.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "tiny_table.json"
    args = [
        "profile",
        "--space",
        str(space_file),
        "--resolutions",
        "12",
        "--out",
        str(out),
        "--calibrate",
        "6",
        "--max-time",
        "0.02",
        "--json",
    ]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    data = json.loads(res.output[res.output.index("{") :])
    assert data["blocks"] == len(blocks_for(space_from_dict(TINY), [12])) == len(LatencyTable.load(out))
    assert data["meta"]["resolutions"] == [12] and data["calibration"]["scale"] > 0
    # rerun in text mode with validation: the blocks are done, so it only times 6 held-out
    # subnets, and reports naming every fitted term and the measurement passes' own tau
    res = CliRunner().invoke(main, [*args[:-1], "--validate", "6"])
    assert res.exit_code == 0, res.output
    tau = LatencyTable.load(out).validation["noise"]["pass_kendall_tau"]
    assert f"agree on their order with Kendall tau {tau:.3f}" in res.output
    line = next(x for x in res.output.splitlines() if x.startswith("calibration on 6 subnets"))
    assert f"{data['calibration']['scale']:.3f} x block sum" in line
    assert "us/block" in line and "us/M weights" in line and "us/M block input elements" in line and "us/M expanded elements" in line
    # once more: nothing is left to measure, and the table file comes out byte for byte the same
    before = out.read_bytes()
    res = CliRunner().invoke(main, [*args[:-1], "--validate", "6"])
    assert res.exit_code == 0, res.output
    assert out.read_bytes() == before


def test_cli_profile_user_errors():
    import torch
    from click.testing import CliRunner

    from nastools.cli import main

    res = CliRunner().invoke(main, ["profile", "--resolutions", "30"])
    assert res.exit_code == 1 and "Error: --resolutions: got 30, expected values of space 'fmnist': 28, 32" in res.output
    if not torch.cuda.is_available():
        res = CliRunner().invoke(main, ["profile", "--device", "gpu"])
        assert res.exit_code == 1 and res.output.count("\n") == 1 and "Error: --device gpu: no CUDA GPU" in res.output


def test_summarize_fits_the_flops_baseline_in_sample_and_on_the_calibration_runs():
    from nastools.latency.validate import summarize

    def run(mflops, ms, predicted=None):
        return {"flops": mflops * 1e6, "measured_ms": ms, "predicted_ms": predicted or ms, "spread_pct": 1.0}

    runs = [run(f, 0.02 * f + 0.1) for f in (5, 10, 20, 40)]
    same = summarize(runs, [run(f, 0.02 * f + 0.1) for f in (7, 30)])
    assert same["flops_linear"]["mape_pct"] == pytest.approx(0, abs=1e-9)
    assert same["flops_linear_calibration"]["mape_pct"] == pytest.approx(0, abs=1e-9)
    assert same["flops_linear_calibration"]["ms_per_mflop"] == pytest.approx(0.02)
    # calibration runs twice as slow per FLOP: the held-out line is off, the in-sample one is not
    other = summarize(runs, [run(f, 0.04 * f + 0.1) for f in (7, 30)])
    assert other["flops_linear_calibration"]["mape_pct"] > 50 and other["flops_linear"]["mape_pct"] == pytest.approx(0, abs=1e-9)
    assert "flops_linear_calibration" not in summarize(runs)


def test_pass_tau_measures_how_reproducible_the_measured_order_is():
    from nastools.latency.validate import pass_tau, summarize

    def run(i, passes):
        return {"flops": 1e6 * (i + 1), "measured_ms": min(passes), "predicted_ms": min(passes), "spread_pct": 1.0, "pass_ms": passes}

    same = [run(i, [1.0 + i, 1.0 + i, 1.0 + i]) for i in range(6)]
    assert pass_tau(same) == pytest.approx(1.0)
    # the second pass ranks the subnets backwards, the third like the first: taus 1, -1, -1
    mixed = [run(i, [1.0 + i, 10.0 - i, 1.0 + i]) for i in range(6)]
    assert pass_tau(mixed) == pytest.approx(-1.0)
    assert summarize(mixed)["noise"]["pass_kendall_tau"] == pytest.approx(-1.0)
    # one pass only, or a run without passes: no figure
    assert pass_tau([run(i, [1.0 + i]) for i in range(6)]) is None
    assert "pass_kendall_tau" not in summarize([{k: v for k, v in r.items() if k != "pass_ms"} for r in same])["noise"]


def test_calibration_on_few_or_noisy_runs_keeps_predictions_increasing(tiny):
    t = LatencyTable.new(tiny, device="cpu", backend="ort", version="0", precision="fp32", batch=1, threads=1)

    def feats(i):
        return {
            "sum_ms": 0.1 * (i + 1),
            "n_blocks": 4 + i % 3,
            "mparams": 0.3 * ((7 * i) % 5),
            "melems": 0.02 * ((3 * i) % 7),
            "mexpanded": 0.05 * ((5 * i) % 11),
        }

    def runs(measured):
        return [{"arch": f"a{i}", "measured_ms": m, **feats(i)} for i, m in enumerate(measured)]

    # six runs: scale and offset only
    c = t.fit_calibration(runs([0.05 + 0.2 * (i + 1) for i in range(6)]))
    assert c["per_block_ms"] == c["per_mparam_ms"] == c["per_melem_ms"] == c["per_mexpanded_ms"] == 0
    assert c["scale"] == pytest.approx(2.0) and c["offset_ms"] == pytest.approx(0.05)
    # thirty runs measured backwards (pure noise): never a negative scale
    c = t.fit_calibration(runs([2.0 - 0.05 * i for i in range(30)]))
    assert c["scale"] > 0
    true = {"scale": 1.1, "per_block_ms": -0.01, "per_mparam_ms": 0.05, "per_melem_ms": -0.3, "per_mexpanded_ms": 0.07}
    m = [sum(true[k] * f for k, f in zip(true, feats(i).values())) + 0.2 for i in range(30)]
    # thirty clean runs of the full model: all six coefficients recovered
    c = t.fit_calibration(runs(m))
    assert {k: c[k] for k in true} == pytest.approx(true, abs=1e-6) and c["offset_ms"] == pytest.approx(0.2, abs=1e-6)
    # twelve to 29 runs: no element terms; twelve clean runs of that model: its four recovered
    c = t.fit_calibration(runs(m[:29]))
    assert c["per_melem_ms"] == c["per_mexpanded_ms"] == 0 and c["per_block_ms"] != 0
    old = {"scale": 0.9, "per_block_ms": 0.02, "per_mparam_ms": -0.04}
    c = t.fit_calibration(runs([sum(old[k] * f for k, f in zip(old, feats(i).values())) + 0.1 for i in range(12)]))
    assert {k: c[k] for k in old} == pytest.approx(old, abs=1e-6) and c["offset_ms"] == pytest.approx(0.1, abs=1e-6)
    # a run without the element counts (stored by an older nastools) is named
    with pytest.raises(NastoolsError, match="no 'melems'"):
        t.fit_calibration([{k: v for k, v in r.items() if k != "melems"} for r in runs(m)])


def test_old_calibrations_predict_without_the_element_terms_and_refit_with_them(profiled, tiny):
    from nastools.latency.profiler import CALIBRATION_SEED, with_features

    old = profiled.to_dict()
    old["calibration"] = {k: v for k, v in old["calibration"].items() if k not in ("per_melem_ms", "per_mexpanded_ms")}
    old["calibration"]["runs"] = [{k: v for k, v in r.items() if k not in ("melems", "mexpanded")} for r in old["calibration"]["runs"]]
    t = LatencyTable.from_dict(old)
    t.bind(tiny)
    arch = tiny.max_arch()
    c, f = t.calibration, t.features(arch)
    assert f["melems"] > 0 and f["mexpanded"] > 0
    assert t.predict(arch) == pytest.approx(
        c["scale"] * f["sum_ms"] + c["per_block_ms"] * f["n_blocks"] + c["per_mparam_ms"] * f["mparams"] + c["offset_ms"]
    )
    runs = with_features(t, c["runs"], sample_archs(tiny, len(c["runs"]), CALIBRATION_SEED, tiny.resolutions))
    assert [r["melems"] for r in runs] == [r["melems"] for r in profiled.calibration["runs"]]
    assert [r["mexpanded"] for r in runs] == [r["mexpanded"] for r in profiled.calibration["runs"]]
    assert t.fit_calibration(runs)["scale"] == pytest.approx(profiled.calibration["scale"])


def test_spread_merges_two_lists_evenly_in_order():
    from nastools.latency.profiler import spread

    cal, val = [f"c{i}" for i in range(4)], [f"v{i}" for i in range(16)]
    out = spread(cal, val)
    assert sorted(out) == sorted(cal + val)
    assert [x for x in out if x in cal] == cal and [x for x in out if x in val] == val
    where = [i for i, x in enumerate(out) if x in cal]
    assert where[0] <= 3 and all(4 <= b - a <= 6 for a, b in zip(where, where[1:]))  # one in every five
    assert spread([], val) == val and spread(cal, []) == cal


def test_calibration_and_validation_subnets_are_measured_in_the_same_passes(tiny, tmp_path):
    from nastools.latency.profiler import CALIBRATION_SEED, VALIDATION_SEED

    measured: list[str] = []

    class Recording(OrtCpuBackend):  # the real backend, noting what it times end to end
        def load(self, workload):
            if ":" in workload.name:  # arch keys name whole subnets; block keys have no ':'
                measured.append(workload.name)
            super().load(workload)

    # the tiny space has 16 subnets: 6 to calibrate on, 8 others to validate on
    table = profile(
        tiny, Recording(threads=1), out=tmp_path / "t.json", protocol=QUICK, calibration_runs=6, validate_runs=8, progress=False
    )
    cal = {a.key for a in sample_archs(tiny, 6, CALIBRATION_SEED, tiny.resolutions)}
    val = [a.key for a in sample_archs(tiny, 8, VALIDATION_SEED, tiny.resolutions, cal)]
    assert len(cal) == 6 and len(val) == 8
    assert {r["arch"] for r in table.calibration["runs"]} == cal
    assert [r["arch"] for r in table.validation["runs"]] == val  # the subnets validate() alone would take
    # all 14 loaded once and timed together
    assert len(measured) == 14 and set(measured) == cal | set(val)
    where = [i for i, k in enumerate(measured) if k in cal]
    assert where[0] <= 2 and where[-1] >= 10  # calibration subnets across the whole pass, not first
    assert table.calibration["scale"] > 0 and table.validation["table"]["n"] == 8


class Visits(OrtCpuBackend):
    """The real backend, noting which workload each timed run ran (its name is part of the
    state that hold/resume swap) and which workloads it released."""

    state = OrtCpuBackend.state + ("_name",)

    def __init__(self, fail_after: int | None = None):
        super().__init__(threads=1)
        self.timed: list[tuple[str, float, bool]] = []
        self.released: list[str] = []
        self.fail_after = fail_after

    def load(self, workload):
        super().load(workload)
        self._name = workload.name

    def timed_run(self):
        if self.fail_after is not None and len(self.timed) >= self.fail_after:
            raise KeyboardInterrupt
        t, pre = super().timed_run()
        self.timed.append((self._name, t, pre))
        return t, pre

    def release(self):
        if self._runner is not None:
            self.released.append(self._name)
        super().release()


def test_measure_interleaved_visits_every_workload_in_every_round_and_pools_its_runs(tiny):
    import numpy as np

    from nastools.latency import block_workload
    from nastools.latency.measure import measure_interleaved

    blocks = blocks_for(tiny)[:3]
    be = Visits()
    got = measure_interleaved(be, (block_workload(b) for b in blocks), QUICK, rounds=6, passes=3)
    names = [n for n, _, _ in be.timed]
    assert set(names) == {b.key for b in blocks} and sorted(be.released) == sorted(b.key for b in blocks)
    # one visit per workload and round: with 3 workloads, at least 2 switches per round
    switches = sum(x != y for x, y in zip(names, names[1:]))
    assert switches >= 2 * 6
    for b, (whole, parts) in zip(blocks, got):
        mine = [t for n, t, pre in be.timed if n == b.key and not pre]
        assert len(parts) == 3 and all(p.n > 0 for p in parts) and whole.n == len(mine)
        assert whole.p10_ms == pytest.approx(float(np.percentile(mine, 10)))


def test_measure_interleaved_releases_every_loaded_workload_when_interrupted(tiny):
    from nastools.latency import block_workload
    from nastools.latency.measure import measure_interleaved

    blocks = blocks_for(tiny)[:3]
    be = Visits(fail_after=20)
    with pytest.raises(KeyboardInterrupt):
        measure_interleaved(be, (block_workload(b) for b in blocks), QUICK, rounds=50)
    assert sorted(be.released) == sorted(b.key for b in blocks) and be._runner is None


def test_end_to_end_runs_load_no_more_subnets_at_once_than_memory_allows(profiled, tiny, monkeypatch):
    import nastools.latency.profiler as prof
    from nastools.latency import measure_end_to_end

    monkeypatch.setattr(prof, "memory_low", lambda gpu=False: True)  # full after every load
    be = Visits()
    archs = sample_archs(tiny, 3, 7, tiny.resolutions)
    got = measure_end_to_end(profiled, archs, backend=be)
    names = [n for n, _, _ in be.timed]
    # each subnet timed alone, one after the other (an anchor that was all memory held is
    # dropped), and every one of them measured
    assert set(be.released) == {a.key for a in archs} and all(g > 0 for g in got)
    assert [k for i, k in enumerate(names) if i == 0 or k != names[i - 1]] == [a.key for a in archs]


def test_later_chunks_are_scaled_onto_the_first_by_anchor_subnets(profiled, tiny):
    from nastools.latency.profiler import measure_archs

    class SlowerLater(Visits):  # the host runs 8x as slow once the first chunk is done
        loads = 0

        def load(self, workload):
            super().load(workload)
            self.loads += 1

        def timed_run(self):
            t, pre = super().timed_run()
            return (8 * t if self.loads > 4 else t), pre

    archs = sample_archs(tiny, 6, 7, tiny.resolutions)
    runs: list[dict] = []
    measure_archs(profiled, SlowerLater(), archs, runs, protocol=QUICK, desc="t", progress=False, chunk=4)
    assert [r["arch"] for r in runs] == [a.key for a in archs]
    assert all("chunk_scale" not in r for r in runs[:4])
    # the second chunk re-timed one subnet of the first: its ratio then / now undoes the
    # slowdown (1/8; a factor large enough that real timing noise up to 2x cannot hide it)
    assert [1 / 16 < r["chunk_scale"] < 1 / 4 for r in runs[4:]] == [True, True]


def test_measure_interleaved_needs_a_backend_that_can_hold_workloads(tiny):
    from nastools.latency import block_workload
    from nastools.latency.measure import Backend, measure_interleaved

    class OneAtATime(Backend):
        name = "plain"
        state = ()  # keeps no per-workload state it could swap

    with pytest.raises(NastoolsError, match="cannot hold several workloads"):
        measure_interleaved(OneAtATime(), [block_workload(blocks_for(tiny)[0])], QUICK)


def test_measure_end_to_end_pools_the_tables_statistic_over_interleaved_rounds(profiled, tiny):
    import numpy as np

    from nastools.latency import measure_end_to_end

    be = Visits()
    a, b = sample_archs(tiny, 2, 7, tiny.resolutions)
    got = measure_end_to_end(profiled, [a, b, a], backend=be, passes=3)
    assert sorted(be.released) == sorted([a.key, b.key])  # a repeated arch is loaded and timed once
    q = 10 if profiled.statistic == "p10_ms" else 50
    want = {k: float(np.percentile([t for n, t, pre in be.timed if n == k and not pre], q)) for k in (a.key, b.key)}
    assert got == pytest.approx([want[a.key], want[b.key], want[a.key]])


def test_check_drift_compares_the_calibration_subnets_now_with_their_records(profiled, tiny, monkeypatch):
    import nastools.latency.profiler as prof
    from nastools.latency import check_drift

    stored = {r["arch"]: r["measured_ms"] for r in profiled.calibration["runs"]}
    seen = []

    def twice_as_slow(table, archs, **kw):  # this machine now takes 2x (then 3x for one subnet) as long
        seen.extend(a.key for a in archs)
        return [stored[a.key] * (3.0 if i == 0 else 2.0) for i, a in enumerate(archs)]

    monkeypatch.setattr(prof, "measure_end_to_end", twice_as_slow)
    d = check_drift(profiled, n=5)
    assert len(seen) == 5 and set(seen) <= set(stored)  # subnets the table recorded
    assert d["factor"] == pytest.approx(2.0) and sorted(d["ratios"]) == [2.0, 2.0, 2.0, 2.0, 3.0]
    uncalibrated = LatencyTable.load(profiled.path)
    uncalibrated.bind(tiny)
    uncalibrated.calibration = {}
    assert check_drift(uncalibrated) is None


def test_measure_referenced_times_the_archs_in_the_same_rounds_as_the_reference_subnets(profiled, tiny, monkeypatch):
    import nastools.latency.profiler as prof
    from nastools.latency import measure_referenced
    from nastools.latency.profiler import reference_archs

    stored = {r["arch"]: r["measured_ms"] for r in profiled.calibration["runs"]}
    refs = reference_archs(profiled)
    assert refs and {a.key for a in refs} <= set(stored) and reference_archs(profiled) == refs  # the same subnets every time
    archs = [a for a in (tiny.max_arch(), tiny.min_arch()) if a.key not in stored]
    calls = []

    def slowed(table, group, **kw):  # in these rounds the machine takes 1.5x the recorded time
        calls.append([a.key for a in group])
        return [1.5 * stored[a.key] if a.key in stored else 0.1 * (i + 1) for i, a in enumerate(group)]

    monkeypatch.setattr(prof, "measure_end_to_end", slowed)
    ms, speed = measure_referenced(profiled, archs)
    # one measurement: the archs and the references timed together
    assert calls == [[a.key for a in archs] + [a.key for a in refs]]
    assert ms == pytest.approx([0.1 * (i + 1) for i in range(len(archs))])
    assert speed["factor"] == pytest.approx(1.5) and speed["archs"] == [a.id for a in refs]
    uncalibrated = LatencyTable.load(profiled.path)
    uncalibrated.bind(tiny)
    uncalibrated.calibration = {}
    calls.clear()
    assert measure_referenced(uncalibrated, archs) == (pytest.approx([0.1 * (i + 1) for i in range(len(archs))]), None)
    assert calls == [[a.key for a in archs]]  # nothing to refer to: the archs alone


@pytest.mark.parametrize(
    "theirs", [{"cpu_isa": "sse4_2"}, {"cpu_id": "AuthenticAMD family 25 model 17"}], ids=["other-isa", "same-isa-other-family"]
)
def test_profile_keeps_a_table_of_another_cpu_generation_apart(tiny, tmp_path, monkeypatch, theirs):
    import nastools.latency.table as tb
    import nastools.machine

    # this machine, whatever CPU runs the test
    monkeypatch.setattr(nastools.machine, "cpu_isa", lambda: "avx512_vnni")
    monkeypatch.setattr(nastools.machine, "cpu_id", lambda: "AuthenticAMD family 26 model 2")
    monkeypatch.setattr(tb, "TABLES_DIR", tmp_path)
    be = OrtCpuBackend(threads=1)
    t = open_table(tiny, be, batch=1, resolutions=None, out=None, protocol=QUICK)
    assert (t.meta["cpu_isa"], t.meta["cpu_id"]) == ("avx512_vnni", "AuthenticAMD family 26 model 2")
    t.set(blocks_for(tiny, tiny.resolutions)[0], Measurement(1.0, 0.9, 1.1, 10))
    t.meta.update(theirs)  # as if profiled on another generation of this CPU model
    t.save()
    # the default path is taken by that table: this machine gets one of its own, not its blocks
    mine = open_table(tiny, be, batch=1, resolutions=None, out=None, protocol=QUICK)
    assert mine.path != t.path and mine.path.parent == t.path.parent and len(mine) == 0
    assert "-avx512-vnni-f26m2__" in mine.path.name
    # named explicitly, it is refused with the reason
    with pytest.raises(NastoolsError, match=next(iter(theirs))):
        open_table(tiny, be, batch=1, resolutions=None, out=t.path, protocol=QUICK)
    # this machine's own table resumes (a table that records no generation resumes too)
    mine.set(blocks_for(tiny, tiny.resolutions)[1], Measurement(1.0, 0.9, 1.1, 10))
    mine.save()
    again = open_table(tiny, be, batch=1, resolutions=None, out=None, protocol=QUICK)
    assert again.path == mine.path and len(again) == 1
    for k in ("cpu_isa", "cpu_id"):
        t.meta.pop(k, None)
    t.save()
    assert len(open_table(tiny, be, batch=1, resolutions=None, out=t.path, protocol=QUICK)) == 1
    # at the default path, a table that records the vector extension but not the family and
    # model (an older nastools) is of an unknown generation: this machine keeps to its own
    t.meta["cpu_isa"] = "avx512_vnni"
    t.save()
    assert open_table(tiny, be, batch=1, resolutions=None, out=None, protocol=QUICK).path == mine.path


def test_cpu_match_ranks_this_generation_above_the_model_name(monkeypatch):
    import nastools.machine as m

    monkeypatch.setattr(m, "cpu_name", lambda: "AMD EPYC")
    monkeypatch.setattr(m, "cpu_isa", lambda: "avx512_vnni")
    monkeypatch.setattr(m, "cpu_id", lambda: "AuthenticAMD family 26 model 2")
    here = {"device": "AMD EPYC", "cpu_isa": "avx512_vnni", "cpu_id": "AuthenticAMD family 26 model 2"}
    assert m.cpu_match(here) == 3 and m.generation_mismatch(here) == []
    assert m.cpu_match({**here, "device": "Intel Xeon"}) == 0
    zen4 = {**here, "cpu_id": "AuthenticAMD family 25 model 17"}  # Zen 4 beside Zen 5: same extension
    assert m.cpu_match(zen4) == 2 and m.generation_mismatch(zen4) == ["cpu_id"]
    avx2 = {"device": "AMD EPYC", "cpu_isa": "avx2"}
    assert m.cpu_match(avx2) == 1 and m.generation_mismatch(avx2) == ["cpu_isa"]
    assert m.cpu_match({"device": "AMD EPYC"}) == 1 and m.generation_mismatch({"device": "AMD EPYC"}) == []
    assert m.cpu_match({"cpu": "AMD EPYC", "cpu_isa": "avx512_vnni"}) == 2  # a result file's machine record
    assert m.cpu_tag() == "avx512-vnni-f26m2"


def test_a_rerun_with_fewer_calibration_runs_keeps_the_tables_calibration(profiled, tiny, tmp_path):
    import shutil

    out = shutil.copy(profiled.path, tmp_path / "t.json")
    before = LatencyTable.load(out, tiny)
    assert len(before.calibration["runs"]) == 6
    again = profile(tiny, OrtCpuBackend(threads=1), out=out, protocol=QUICK, calibration_runs=2, progress=False)
    after = LatencyTable.load(out, tiny)
    for t in (again, after):
        assert [r["arch"] for r in t.calibration["runs"]] == [r["arch"] for r in before.calibration["runs"]]
        assert {k: v for k, v in t.calibration.items() if k != "runs"} == {k: v for k, v in before.calibration.items() if k != "runs"}
        assert t.validation == before.validation


def test_profile_resolutions_take_commas_or_spaces():
    import click

    from nastools.cli import IntList

    t = IntList()
    assert t.convert("28,32", None, None) == t.convert("28, 32", None, None) == t.convert("28 32", None, None) == [28, 32]
    for bad in ("28;32", "", " , "):
        with pytest.raises(click.BadParameter, match="comma-separated integers"):
            t.convert(bad, None, None)


def test_workloads_leave_the_callers_torch_rng_alone(tiny):
    # profile, calibrate, check_drift and measure_end_to_end build workloads: a library caller's
    # random stream is not reseeded by them, and the weights stay those of seed 0
    import torch

    from nastools.latency import block_workload, subnet_workload

    torch.manual_seed(123)
    expected = torch.rand(4)
    torch.manual_seed(123)
    block = block_workload(blocks_for(tiny)[1])
    subnet = subnet_workload(tiny, tiny.min_arch())
    assert torch.equal(torch.rand(4), expected)
    from nastools.supernet import build_block

    torch.manual_seed(0)
    seed0 = build_block(blocks_for(tiny)[1]).state_dict()
    assert all(torch.equal(a, b) for a, b in zip(block.module.state_dict().values(), seed0.values()))
    assert subnet.module is not None


def test_a_profile_removes_the_temp_files_a_killed_profile_left(tiny, tmp_path):
    """A profile killed while writing its table (or plot) leaves ``.<name>.<random>.tmp``;
    the next profile of that table removes them once it holds the table's lock."""
    from contextlib import ExitStack

    out = tmp_path / "t.json"
    stale = [tmp_path / ".t.json.ab12cd34.tmp", tmp_path / ".t.validation.png.zz9_yy88.tmp"]
    kept = [tmp_path / ".other.json.ab12cd34.tmp", tmp_path / ".t.json.notmine.tmp"]
    for p in stale + kept:
        p.write_text("x")
    with ExitStack() as locks:
        open_table(tiny, OrtCpuBackend(threads=1), batch=1, resolutions=None, out=out, protocol=QUICK, locks=locks)
    assert [p.exists() for p in stale + kept] == [False, False, True, True]
