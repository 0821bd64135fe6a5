"""The latency statistic a budget is in: stored by every table, chosen by ``--statistic``,
named by every report (tiny synthetic tables; nothing timed but one quick ORT bench)."""

import pytest
from click.testing import CliRunner
from conftest import TINY_SPACE

from nastools.cli import main
from nastools.errors import NastoolsError
from nastools.latency import LatencyTable
from nastools.latency.measure import Measurement
from nastools.latency.table import default_statistic, stat_key, stat_name
from nastools.space import space_from_dict


@pytest.fixture(scope="module")
def tiny():
    return space_from_dict(TINY_SPACE)


def _table(space, target="cpu", p99=True, statistic=None):
    """A calibrated table whose statistics differ by a known factor: p10 0.9x, p90 1.2x, p99 1.5x the median."""
    t = LatencyTable.new(
        space, device="Test CPU", backend="ort", version="0", precision="fp32", batch=1, threads=1, target=target, statistic=statistic
    )
    factors = {"median_ms": 1.0, "p10_ms": 0.9, "p90_ms": 1.2, **({"p99_ms": 1.5} if p99 else {})}
    for i, b in enumerate(space.all_blocks()):
        t.set(b, {**{k: (0.01 + 0.001 * i) * f for k, f in factors.items()}, "n": 30})
    rng = __import__("random").Random(0)
    runs = []
    for _ in range(12):
        a = space.sample(rng)
        feats = t.features(a)
        median = 1.1 * t.with_statistic("median").block_sum(a) + 0.02
        runs.append({"arch": a.key, **{k: median * f for k, f in factors.items()}, "measured_ms": median * factors[t.statistic], **feats})
    t.fit_calibration(runs)
    return t


def test_defaults_are_the_median_on_a_gpu_and_the_p10_on_a_cpu(tiny):
    assert default_statistic("gpu") == "median_ms" and default_statistic("cpu") == "p10_ms"
    assert _table(tiny).statistic == "p10_ms" and _table(tiny, target="gpu").statistic == "median_ms"
    assert _table(tiny, statistic="p90").statistic == "p90_ms"
    assert stat_key("p99") == "p99_ms" and stat_name("median_ms") == "median"
    with pytest.raises(NastoolsError, match="expected one of p10, median, p90, p99"):
        stat_key("p50")


def test_with_statistic_adds_up_that_statistic_and_refits_on_its_runs(tiny):
    t = _table(tiny)
    arch = tiny.max_arch()
    assert t.with_statistic(None) is t and t.with_statistic("p10") is t
    med, p99 = t.with_statistic("median"), t.with_statistic("p99")
    assert med.statistic == "median_ms" and t.statistic == "p10_ms"  # a copy: the table itself is untouched
    assert med.block_sum(arch) == pytest.approx(t.block_sum(arch) / 0.9)
    # every statistic was measured in proportion here, so each prediction is the median's times its factor
    assert med.predict(arch) == pytest.approx(t.predict(arch) / 0.9, rel=1e-6)
    assert p99.predict(arch) == pytest.approx(1.5 * med.predict(arch), rel=1e-6)
    assert med.validation == {} and med.calibration["runs"][0]["measured_ms"] == t.calibration["runs"][0]["median_ms"]


def test_a_table_without_a_statistic_refuses_it_in_one_line(tiny):
    old = _table(tiny, p99=False)
    with pytest.raises(NastoolsError) as err:
        old.with_statistic("p99")
    msg = str(err.value)
    assert "\n" not in msg and "cannot predict the p99" in msg and "--statistic p99" in msg
    assert LatencyTable.from_dict(old.to_dict()).bind(tiny).with_statistic("p90").statistic == "p90_ms"


def test_run_arch_keys_decode_to_their_archs(tiny):
    import random

    from nastools.latency.table import arch_of_key

    rng = random.Random(1)
    for a in [tiny.max_arch(), tiny.min_arch(), *(tiny.sample(rng) for _ in range(20))]:
        assert arch_of_key(a.key) == a
    with pytest.raises(NastoolsError, match="not an arch key"):
        arch_of_key("tiny:r28-nonsense")


def test_measurements_record_the_p99_and_older_records_load_without_it():
    from nastools.latency.measure import _record

    m = _record([float(i) for i in range(1, 101)], [float(i) for i in range(1, 101)], 30)
    assert m.p10_ms < m.median_ms < m.p90_ms < m.p99_ms <= 100
    assert Measurement.from_dict(m.to_dict()).to_dict() == m.to_dict()
    old = {"median_ms": 1.0, "p10_ms": 0.9, "p90_ms": 1.2, "n": 30}
    assert "p99_ms" not in Measurement.from_dict(old).to_dict()


def test_bench_records_the_p10_and_answers_any_statistic():
    import numpy as np

    from nastools.export.bench import BenchResult, latency_stats

    stats = latency_stats(np.arange(1.0, 101.0))
    assert stats["p10_ms"] == 10.0 and stats["median_ms"] == 50.5
    r = BenchResult(
        model="m",
        backend="ort",
        batch=1,
        threads=1,
        warmup_s=0,
        duration_s=1,
        iterations=100,
        throughput_qps=100,
        throughput_ips=100,
        **stats,
    )
    assert r.stat_ms("p10") == 10.0 and r.stat_ms("median") == 50.5 and r.stat_ms("p99") == 99.0


def test_the_demo_summary_compares_prediction_and_measurement_in_one_statistic(tiny):
    from nastools.demo import _log_summary, _summary

    bench = {"p10_ms": 0.5, "median_ms": 0.6, "p90_ms": 0.8, "p99_ms": 1.0, "throughput_ips": 1}
    stages = {
        "train": {"checkpoint": "c.pt", "seconds": 1},
        "profile": {"table": "t.json", "reused": True, "seconds": 1},
        "search": {
            "id": "a",
            "val_top1": 90.0,
            "flops": 1e6,
            "params": 1e4,
            "latency_budget_ms": 0.7,
            "predicted_ms": 0.52,
            "statistic": "p10",
            "best": "b",
            "pareto": "p",
            "plot": "g",
            "seconds": 1,
        },
        "export": {
            "fp32": {"test_top1": 0.9, "bench": bench, "model": "m", "sidecar": "s"},
            "int8": {"test_top1": 0.9, "bench": {**bench, "p10_ms": 0.3}, "model": "m8", "sidecar": "s8"},
            "seconds": 1,
        },
    }
    summary = _summary(tiny, __import__("pathlib").Path("run"), stages)
    assert summary["statistic"] == "p10" and summary["measured_ms_fp32"] == 0.5 and summary["measured_ms_int8"] == 0.3
    lines: list[str] = []
    _log_summary(summary, tiny, lines.append)
    latency = next(line for line in lines if "latency" in line)
    assert "the p10 of each" in latency and "predicted 0.520 ms" in latency and "0.500 ms fp32" in latency


@pytest.mark.parametrize("command", ["profile", "search"])
def test_help_states_the_statistic_and_its_defaults(command):
    result = CliRunner().invoke(main, [command, "--help"], terminal_width=200)
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "--statistic [median|p10|p90|p99]" in text and "median on GPU" in text and "p10 on CPU" in text


def test_an_unknown_statistic_exits_2():
    result = CliRunner().invoke(main, ["search", "--latency", "1ms", "--statistic", "p50"])
    assert result.exit_code == 2 and "p50" in result.output


def test_profile_stores_every_statistic_and_resumes_only_in_its_own(tiny, tmp_path):
    from nastools.latency import OrtCpuBackend, Protocol, profile

    out = tmp_path / "t.json"
    table = profile(
        tiny, OrtCpuBackend(threads=1), out=out, protocol=Protocol.quick(), calibration_runs=6, progress=False, statistic="median"
    )
    assert table.statistic == "median_ms"
    assert all({"p10_ms", "median_ms", "p90_ms", "p99_ms"} <= set(e) for e in table.entries.values())
    assert all(r["measured_ms"] == r["median_ms"] and "p99_ms" in r for r in table.calibration["runs"])
    assert LatencyTable.load(out, tiny).with_statistic("p99").statistic == "p99_ms"
    with pytest.raises(NastoolsError, match="cannot resume .* with --statistic p10: it predicts the median"):
        profile(tiny, OrtCpuBackend(threads=1), out=out, protocol=Protocol.quick(), calibration_runs=6, progress=False, statistic="p10")
