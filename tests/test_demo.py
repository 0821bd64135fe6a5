"""The demo end to end on a tiny budget: every stage really runs and writes its files."""

import json

import pytest
import torch
import yaml
from click.testing import CliRunner
from conftest import TINY_SPACE

from nastools.cli import main
from nastools.space import space_from_dict

TINY = {**TINY_SPACE, "name": "tinydemo"}


@pytest.mark.slow
def test_demo_quick_runs_every_stage_and_resumes(tmp_path):
    space_file = tmp_path / "tinydemo.yaml"
    space_file.write_text(yaml.safe_dump(TINY))
    space = space_from_dict(TINY)
    run = tmp_path / "demo"
    args = ["demo", "--quick", "--space", str(space_file), "--run", str(run), "--json"]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    summary = json.loads(first.output[first.output.index("{\n") :])
    for f in summary["files"]:
        assert (tmp_path / f).exists() or __import__("pathlib").Path(f).exists(), f
    assert set(summary["stage_seconds"]) == {"train", "profile", "search", "export"}
    assert summary["table_reused"] is False  # no shipped table for this space: it was profiled
    best = space.arch_from_dict(json.loads((run / "search" / "best.json").read_text()))
    assert best.id == summary["arch"]
    assert summary["flops"] == space.flops(best)
    assert summary["predicted_ms"] <= summary["latency_budget_ms"]
    assert 0.0 <= summary["test_top1_fp32"] <= 1.0 and 0.0 <= summary["test_top1_int8"] <= 1.0
    assert summary["test_images"] == 256  # the quick settings' count, named in the summary
    assert "test top-1 on 256 test images: fp32" in first.output
    assert summary["measured_ms_fp32"] > 0 and summary["measured_ms_int8"] > 0
    sidecar = json.loads((run / "export" / f"{best.id}.onnx.json").read_text())
    assert sidecar["parity"]["passed"] is True
    # a second call reuses every finished stage
    second = CliRunner().invoke(main, args)
    assert second.exit_code == 0, second.output
    assert second.output.count("done earlier, reusing") == 4
    assert json.loads(second.output[second.output.index("{\n") :])["arch"] == summary["arch"]


def test_demo_reuses_the_shipped_table_of_this_cpu_generation(tmp_path, monkeypatch):
    import shutil

    import nastools.latency.table as tb
    import nastools.machine as m
    from nastools.demo import _matching_table
    from nastools.io import atomic_write_json
    from nastools.space import load_space

    shipped = tb.shipped_tables_dir() / "fmnist" / "amd-epyc-t1__ort__fp32__b1.json"
    (tmp_path / "fmnist").mkdir()
    shutil.copy(shipped, tmp_path / "fmnist" / shipped.name)  # made on an AVX2 host
    zen5 = json.loads(shipped.read_text())
    zen5["meta"].update(cpu_isa="avx512_vnni", cpu_id="AuthenticAMD family 26 model 2")
    atomic_write_json(tmp_path / "fmnist" / "zen5.json", zen5)
    monkeypatch.setattr(tb, "TABLES_DIR", tmp_path)
    monkeypatch.setattr(tb, "shipped_tables_dir", lambda: tmp_path / "none")  # only the two above
    monkeypatch.setattr(m, "cpu_name", lambda: "AMD EPYC")
    space = load_space("fmnist")
    for isa, cpu_id, want in [
        ("avx512_vnni", "AuthenticAMD family 26 model 2", "zen5.json"),
        ("avx2", "AuthenticAMD family 23 model 49", shipped.name),
    ]:
        monkeypatch.setattr(m, "cpu_isa", lambda isa=isa: isa)
        monkeypatch.setattr(m, "cpu_id", lambda cpu_id=cpu_id: cpu_id)
        assert _matching_table(space, "AMD EPYC").path.name == want
    assert _matching_table(space, "Intel Xeon") is None


def test_demo_bad_train_time_is_one_line_before_any_stage(tmp_path):
    res = CliRunner().invoke(main, ["demo", "--quick", "--run", str(tmp_path / "d"), "--train-time", "abc"])
    assert res.exit_code == 1 and res.output.startswith("Error: duration 'abc'") and res.output.count("\n") == 1, res.output
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("text", ['{"stages": [1,', "[1, 2]", '{"stages": "x"}', '{"stages": {"train": {}}}'])
def test_a_corrupt_demo_state_is_one_line_before_any_stage(tmp_path, text):
    run = tmp_path / "d"
    run.mkdir()
    (run / "demo.json").write_text(text)
    res = CliRunner().invoke(main, ["demo", "--quick", "--run", str(run)])
    assert res.exit_code == 1 and res.output.count("\n") == 1, res.output
    assert "demo state" in res.output and "--fresh" in res.output
    assert sorted(p.name for p in run.iterdir()) == ["demo.json"]  # nothing trained


def test_demo_searches_the_shipped_supernet_by_default_and_trains_with_train(tmp_path, monkeypatch):
    import nastools.pretrained as P
    from nastools.checkpoint import save_checkpoint
    from nastools.supernet import Supernet

    space_file = tmp_path / "tinydemo.yaml"
    space_file.write_text(yaml.safe_dump(TINY))
    ship = tmp_path / "pkg" / "tiny-shipped"
    ship.mkdir(parents=True)
    torch.manual_seed(0)
    save_checkpoint(ship / "supernet.pt", Supernet(space_from_dict(TINY)))
    (ship / "card.json").write_text(json.dumps({"summary": "a test supernet, trained by nobody"}))
    monkeypatch.setattr(P, "pretrained_dir", lambda: ship.parent)
    monkeypatch.setattr(P, "DEMO_SUPERNET", "tiny-shipped")
    run = tmp_path / "demo"
    res = CliRunner().invoke(main, ["demo", "--quick", "--space", str(space_file), "--run", str(run), "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output[res.output.index("{\n") :])
    assert "take the shipped" in res.output and "tiny-shipped" in summary["supernet"] and "trained by nobody" in summary["supernet"]
    assert not (run / "supernet.pt").exists()  # nothing trained, nothing copied
    assert summary["files"][0] == str(ship / "supernet.pt")
    assert (run / "search" / "best.json").is_file() and (run / "export" / f"{summary['arch']}.onnx").is_file()
    # --train trains a fresh supernet into the run instead
    res = CliRunner().invoke(
        main, ["demo", "--quick", "--space", str(space_file), "--run", str(tmp_path / "d2"), "--train", "5m", "--json"]
    )
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output[res.output.index("{\n") :])
    assert (tmp_path / "d2" / "supernet.pt").is_file() and "trained by this demo" in summary["supernet"]


def test_a_rerun_redoes_the_stages_of_a_table_that_no_longer_fits_best(tmp_path, monkeypatch):
    """A demo that reused one table, rerun after a better-fitting table appeared (a newer
    nastools shipping this CPU generation's), redoes profile, search and export, not train."""
    import nastools.demo as D
    from nastools.io import atomic_write_json

    state = tmp_path / "demo.json"
    stages_then = {
        "train": {"seconds": 1.0, "supernet": "x"},
        "profile": {"seconds": 0.0, "table": str(tmp_path / "old.json"), "reused": True},
        "search": {"seconds": 40.0},
        "export": {"seconds": 20.0},
    }
    demo = D._Demo(D.DemoSettings(), space_from_dict(TINY), tmp_path, log=lambda m: lines.append(m))
    for now, redo in [(tmp_path / "old.json", False), (tmp_path / "new.json", True), (None, True)]:
        atomic_write_json(state, {"stages": stages_then})
        lines: list[str] = []
        monkeypatch.setattr(D, "_matching_table", lambda space, cpu, now=now: None if now is None else type("T", (), {"path": now})())
        stages = D._Stages(state, demo.log)
        D._forget_stale_table(demo, stages)
        kept = set(json.loads(state.read_text())["stages"])
        assert kept == ({"train"} if redo else set(stages_then)), now
        assert len(lines) == int(redo) and (not redo or "profile, search and export run again" in lines[0])
    # a table this demo profiled itself is this machine's own: kept whatever is shipped
    atomic_write_json(state, {"stages": {**stages_then, "profile": {**stages_then["profile"], "reused": False}}})
    D._forget_stale_table(demo, D._Stages(state, demo.log))
    assert set(json.loads(state.read_text())["stages"]) == set(stages_then)


def test_the_summary_notes_an_int8_model_slower_than_fp32():
    from nastools.demo import _int8_note

    note = _int8_note({"measured_ms_fp32": 1.321, "measured_ms_int8": 1.681})
    assert note is not None and "1.27x the fp32 model's time" in note and "fp32 is the faster choice" in note
    assert _int8_note({"measured_ms_fp32": 1.3, "measured_ms_int8": 0.9}) is None  # int8 pays: nothing to say
    assert _int8_note({"measured_ms_fp32": None, "measured_ms_int8": 0.9}) is None  # not benched
