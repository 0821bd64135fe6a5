"""Search picks verified on the backend that will run them, in the statistic the budget is in:
torch-CPU and ORT-CPU tables measured through their own backend, another machine's table
reported as not verified (the tiny run and tables of tests/test_search.py)."""

import json

import pytest
from test_search import _search, tiny_run, tiny_tables  # noqa: F401 (fixtures)

from nastools.latency import LatencyTable


def _pareto(run_or_out):
    return json.loads((run_or_out / "pareto.json").read_text())


@pytest.mark.parametrize("which", ["ort", "torch"])
def test_picks_are_measured_through_the_tables_own_backend(tiny_run, tiny_tables, tmp_path, monkeypatch, which):  # noqa: F811
    import nastools.latency.backends as backends

    run, space = tiny_run
    table = dict(zip(("ort", "torch"), tiny_tables))[which]
    made = []
    real = backends.make_backend
    monkeypatch.setattr(backends, "make_backend", lambda *a, **k: made.append(a) or real(*a, **k))
    hi = 3 * table.predict(space.max_arch())  # every subnet fits, whatever this machine's speed now
    out = tmp_path / "search"
    result = _search(
        run, "--latency", f"{hi:.4f}ms", "--table", f"default={table.path}", "--fresh", "--no-drift", "--out", str(out), "--json"
    )
    assert result.exit_code == 0, result.output
    (pick,) = json.loads(result.output[result.output.index("{") :])["picks"]
    assert 0 < pick["costs"]["measured:latency:default"] <= hi
    assert made and all(a[:2] == ("cpu", which) for a in made)  # the table's backend, not ORT for every table
    lat = _pareto(out)["latency"]["latency:default"]
    assert lat == {"statistic": "p10", "table": str(table.path), "verified": True}


def test_a_budget_in_another_statistic_predicts_and_reports_it(tiny_run, tiny_tables, tmp_path):  # noqa: F811
    run, space = tiny_run
    ort, _ = tiny_tables
    median = ort.with_statistic("median")
    lim = (median.predict(space.min_arch()) + median.predict(space.max_arch())) / 2
    out = tmp_path / "search"
    result = _search(
        run,
        "--latency",
        f"{lim:.4f}ms",
        "--table",
        f"default={ort.path}",
        "--statistic",
        "median",
        "--no-measure",
        "--fresh",
        "--out",
        str(out),
    )
    assert result.exit_code == 0, result.output
    assert "budget and measurements in the median" in result.output and "pred. latency (median)" in result.output
    pareto = _pareto(out)
    assert pareto["latency"]["latency:default"]["statistic"] == "median"
    (pick,) = pareto["picks"]
    assert pick["costs"]["latency:default"] == pytest.approx(median.predict(space.arch_from_dict(pick["arch"])))
    assert pick["costs"]["latency:default"] <= lim


def test_another_machines_table_says_its_picks_were_not_verified(tiny_run, tiny_tables, tmp_path):  # noqa: F811
    run, space = tiny_run
    ort, _ = tiny_tables
    hi = 3 * ort.predict(space.max_arch())
    other = LatencyTable.load(ort.path, space)
    other.meta["device"] = "Some Other CPU 9000"
    other.save(tmp_path / "other.json")
    gpu = LatencyTable.load(ort.path, space)
    gpu.meta.update(device="NVIDIA H100 80GB HBM3", target="gpu", backend="trt", statistic="median_ms")
    gpu.save(tmp_path / "gpu.json")
    cases = [
        (
            ("--latency", f"{hi:.4f}ms", "--table", f"default={other.path}"),
            "latency:default",
            "the table was made on Some Other CPU 9000, this machine is",
        ),
        (
            ("--latency", f"gpu={hi:.4f}ms", "--table", f"gpu={gpu.path}"),
            "latency:gpu",
            "the table was made on NVIDIA H100 80GB HBM3, and torch sees no CUDA GPU here",
        ),
    ]
    for i, (args, cost, reason) in enumerate(cases):
        out = tmp_path / f"search{i}"
        result = _search(run, *args, "--fresh", "--out", str(out))
        assert result.exit_code == 0, result.output
        assert f"picks not verified end to end: {reason}" in result.output
        pareto = _pareto(out)
        assert pareto["latency"][cost]["verified"] is False and reason in pareto["latency"][cost]["reason"]
        assert pareto["picks"][0]["measured_ms"] is None


def test_unverifiable_names_what_is_missing_on_a_gpu_host(monkeypatch):
    import torch

    import nastools.runtime.onnxrt as onnxrt
    import nastools.runtime.trt as rtrt
    from nastools.search.latency_cost import unverifiable

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "NVIDIA H100")
    monkeypatch.setattr(rtrt, "tensorrt_installed", lambda: False)
    monkeypatch.setattr(onnxrt, "cuda_provider_available", lambda: False)
    meta = {"target": "gpu", "device": "NVIDIA H100"}
    assert "TensorRT, which is not installed here" in unverifiable({**meta, "backend": "trt"})
    assert "pip install onnxruntime-gpu" in unverifiable({**meta, "backend": "ort"})
    assert unverifiable({**meta, "backend": "torch"}) is None
    assert "this machine's GPU is NVIDIA H100" in unverifiable({**meta, "device": "NVIDIA A100", "backend": "torch"})
    monkeypatch.setattr(rtrt, "tensorrt_installed", lambda: True)
    assert unverifiable({**meta, "backend": "trt"}) is None


def test_end_to_end_measurement_uses_the_tables_device_backend_and_precision(tiny_tables, monkeypatch):  # noqa: F811
    import nastools.latency.backends as backends
    from nastools.latency import measure_end_to_end

    ort, _ = tiny_tables
    gpu = LatencyTable.from_dict({**ort.to_dict(), "meta": {**ort.meta, "target": "gpu", "backend": "trt", "precision": "fp16"}})
    gpu.bind(ort.space)

    class Made(Exception):
        pass

    def make_backend(*args):
        raise Made(args)

    monkeypatch.setattr(backends, "make_backend", make_backend)
    with pytest.raises(Made) as made:
        measure_end_to_end(gpu, [ort.space.min_arch()])
    assert made.value.args[0] == ("gpu", "trt", "fp16", 1)


@pytest.mark.gpu
def test_a_torch_cuda_tables_picks_are_measured_on_the_gpu(tiny_run, tmp_path):  # noqa: F811
    from nastools.latency import Protocol, TorchBackend, profile

    run, space = tiny_run
    table = profile(
        space,
        TorchBackend(threads=1, device="cuda"),
        out=tmp_path / "gpu.json",
        protocol=Protocol.quick(),
        calibration_runs=6,
        progress=False,
    )
    assert table.statistic == "median_ms"  # the default on a GPU
    hi = 3 * table.predict(space.max_arch())
    out = tmp_path / "search"
    result = _search(run, "--latency", f"gpu={hi:.4f}ms", "--table", f"gpu={table.path}", "--fresh", "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    (pick,) = json.loads(result.output[result.output.index("{") :])["picks"]
    assert 0 < pick["costs"]["measured:latency:gpu"] <= hi
    assert _pareto(out)["latency"]["latency:gpu"] == {"statistic": "median", "table": str(table.path), "verified": True}
