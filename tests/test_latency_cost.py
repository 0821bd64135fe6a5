"""nastools.search.latency_cost: table discovery written once, and a latency cost that owns
its table and its drift factor (tiny synthetic tables, nothing timed)."""

import os

import pytest
from conftest import TINY_SPACE, synthetic_table

from nastools.latency import LatencyTable
from nastools.search.latency_cost import DRIFT_TOLERANCE, LatencyCost, find_table
from nastools.space import space_from_dict


@pytest.fixture(scope="module")
def tiny():
    return space_from_dict(TINY_SPACE)


def _table(space, path, device="Test CPU", mtime=1000):
    t = synthetic_table(space, path, device=device)
    os.utime(path, (mtime, mtime))
    return t


def test_latency_cost_scales_by_its_drift_factor_beyond_the_tolerance(tiny, tmp_path):
    cost = LatencyCost(_table(tiny, tmp_path / "t.json"))
    arch = tiny.max_arch()
    assert cost(arch) == cost.table.predict(arch) and cost.factor == 1.0
    cost.factor = 1.0 + DRIFT_TOLERANCE / 2  # within the tolerance: as profiled
    assert cost.predict(arch) == cost.table.predict(arch)
    cost.factor = 1.5
    assert cost.predict(arch) == pytest.approx(1.5 * cost.table.predict(arch))


def test_settle_drift_takes_a_held_record_of_its_table_then_a_given_factor_then_measures(tiny, tmp_path, monkeypatch):
    import nastools.latency

    cost = LatencyCost(_table(tiny, tmp_path / "t.json"))
    mine = str(cost.table.path)

    def no_measuring(table):
        raise AssertionError("held or given: nothing to measure")

    monkeypatch.setattr(nastools.latency, "check_drift", no_measuring)
    stat = {"statistic": cost.statistic}
    assert cost.settle_drift({"factor": 1.2, "table": mine}, given=0.7) == {"factor": 1.2, "table": mine, **stat}
    assert cost.settle_drift({"factor": 1.2, "table": "another.json"}, given=0.7) == {"factor": 0.7, "given": True, "table": mine, **stat}
    # a record held for another statistic of the same table is not this one's
    assert cost.settle_drift({"factor": 1.2, "table": mine, "statistic": "p99"}, given=0.8)["factor"] == 0.8
    assert cost.factor == 0.8
    monkeypatch.setattr(nastools.latency, "check_drift", lambda table: {"factor": 1.3, "ratios": [1.3]})
    assert cost.settle_drift() == {"factor": 1.3, "ratios": [1.3], "table": mine, **stat} and cost.drift["factor"] == cost.factor == 1.3
    monkeypatch.setattr(nastools.latency, "check_drift", lambda table: None)  # no calibration runs to compare with
    assert cost.settle_drift() is None and cost.factor == 1.3


def test_find_table_filters_by_device_and_accept_and_takes_the_newest(tiny, tmp_path, monkeypatch):
    import nastools.latency.table as tb
    import nastools.machine as m

    monkeypatch.setattr(tb, "TABLES_DIR", tmp_path / "user")
    monkeypatch.setattr(tb, "shipped_tables_dir", lambda: tmp_path / "shipped")
    monkeypatch.setattr(m, "cpu_name", lambda: "Test CPU")
    old = _table(tiny, tmp_path / "user" / "tiny" / "old.json", mtime=1000).path
    new = _table(tiny, tmp_path / "shipped" / "tiny" / "new.json", mtime=2000).path
    other = _table(tiny, tmp_path / "user" / "tiny" / "other.json", device="Other CPU", mtime=3000).path
    assert find_table(tiny, "default").path == new  # this CPU model's, the newest
    assert find_table(tiny, "default", accept=lambda t: t.path != new).path == old
    assert find_table(tiny, "cpu").path == new  # this CPU model before a newer table of another
    assert find_table(tiny, "cpu", accept=lambda t: t.path == other).path == other
    assert find_table(tiny, "gpu") is None and find_table(tiny, "default", accept=lambda t: False) is None
    assert LatencyCost.resolve(tiny, "default").table.path == new


def test_refitted_fits_the_overhead_on_the_drift_checks_runs_of_this_machine(tiny, tmp_path):
    import random

    cost = LatencyCost(_table(tiny, tmp_path / "t.json"))
    assert cost.refitted(tmp_path / "none.json") is None  # no drift check measured yet
    rng = random.Random(0)
    archs = list({a.key: a for a in (tiny.sample(rng) for _ in range(30))}.values())[:6]
    # this machine: 1.5x the block sum plus 0.2 ms
    cost.drift = {"factor": 1.5, "keys": [a.key for a in archs], "measured_ms": [1.5 * cost.table.block_sum(a) + 0.2 for a in archs]}
    refit = cost.refitted(tmp_path / "refit.json")
    assert refit.path == tmp_path / "refit.json" and refit.meta["refit"] == {"from": str(cost.table.path), "runs": 6}
    assert refit.calibration["scale"] == pytest.approx(1.5) and refit.calibration["offset_ms"] == pytest.approx(0.2)
    arch = tiny.max_arch()
    assert LatencyTable.load(refit.path, tiny).predict(arch) == pytest.approx(1.5 * cost.table.block_sum(arch) + 0.2)
    assert cost.table.calibration["scale"] == 1.0  # the table itself is untouched
    assert cost.refit_check["chosen"] == "refit" and cost.refit_check["refit_loo_mape"] < cost.refit_check["scaled_loo_mape"]


def test_refitted_keeps_one_factor_where_that_predicts_this_machines_runs_better(tiny, tmp_path):
    import random

    table = _table(tiny, tmp_path / "t.json")
    table.calibration["per_block_ms"] = 0.05  # the table's overhead model has more than a scale and an offset
    cost = LatencyCost(table)
    rng = random.Random(0)
    archs = list({a.key: a for a in (tiny.sample(rng) for _ in range(30))}.values())[:6]
    # this machine: 1.3x the table's predictions (a close CPU generation)
    cost.drift = {"factor": 1.3, "keys": [a.key for a in archs], "measured_ms": [1.3 * table.predict(a) for a in archs]}
    assert cost.refitted(tmp_path / "refit.json") is None and not (tmp_path / "refit.json").exists()
    assert cost.refit_check["chosen"] == "scaled" and cost.refit_check["scaled_loo_mape"] == pytest.approx(0.0, abs=1e-9)
    assert cost.refit_check["refit_loo_mape"] > 0 and cost.refit_check["runs"] == 6


def test_pick_verifier_holds_archs_at_the_speed_the_predictions_assume(tiny, tmp_path, monkeypatch):
    import nastools.latency
    import nastools.machine
    from nastools.search.latency_cost import PickVerifier, verification_note

    cost = LatencyCost(_table(tiny, tmp_path / "t.json"), factor=1.2)  # the search began with the machine at 1.2x
    a, b = tiny.max_arch(), tiny.min_arch()
    speeds = iter([1.5, 1.0])
    seen = []

    def referenced(table, archs, **kw):  # every arch timed at 1 or 2 ms while the references ran at the next speed
        seen.append((table, [x.id for x in archs]))
        return [1.0 + i for i in range(len(archs))], {"factor": next(speeds)}

    monkeypatch.setattr(nastools.latency, "measure_referenced", referenced)
    assert cost.measurer() is None  # a table of another machine cannot be timed here
    monkeypatch.setattr(nastools.machine, "cpu_name", lambda: "Test CPU")
    v = cost.measurer()
    assert isinstance(v, PickVerifier)
    # timed while the machine ran slower (1.5x) than the predictions assume (1.2x): the figure
    # held to the budget is smaller than the time; timed at 1.0x it is larger
    assert v([a, b]) == pytest.approx([1.0 * 1.2 / 1.5, 2.0 * 1.2 / 1.5])
    assert v([a]) == pytest.approx([1.2])
    assert seen == [(cost.table, [a.id, b.id]), (cost.table, [a.id])]
    # the record behind the smallest figure per arch
    assert v.details[a.id] == pytest.approx({"ms": 0.8, "timed_ms": 1.0, "speed": 1.5, "assumed_speed": 1.2})
    assert "at 1.50x" in verification_note(a.id, v.details[a.id]) and "0.800 ms at the 1.20x" in verification_note(a.id, v.details[a.id])
    assert verification_note(a.id, {**v.details[a.id], "speed": 1.21}) is None  # within the drift tolerance: nothing to say
    # a factor within the tolerance leaves the predictions as profiled: figures are held at 1x
    cost.factor = 1.0 + DRIFT_TOLERANCE / 2
    monkeypatch.setattr(nastools.latency, "measure_referenced", lambda table, archs, **kw: ([2.0], {"factor": 2.0}))
    assert cost.assumed_speed == 1.0 and cost.measurer()([a]) == pytest.approx([1.0])
    # a table without calibration runs has no references: times as timed, no records
    monkeypatch.setattr(nastools.latency, "measure_referenced", lambda table, archs, **kw: ([2.0], None))
    plain = cost.measurer()
    assert plain([a]) == [2.0] and plain.details == {}
