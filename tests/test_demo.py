"""The demo end to end on a tiny budget: every stage really runs and writes its files."""

import json

import pytest
import torch
import yaml
from click.testing import CliRunner
from conftest import TINY_SPACE

from nastools.cli import main
from nastools.errors import NastoolsError
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


@pytest.mark.parametrize("text", ["abc", "10", "", " ", "0s", "-5m", "inf", "3ms", "nan"])
@pytest.mark.parametrize("option", ["--train", "--train-time"])
def test_demo_bad_train_time_is_a_usage_error_before_any_stage(tmp_path, option, text):
    """--train parses as bench's --duration does: a bare number (or an empty text) is refused,
    not read as seconds (or as no option), with exit 2 naming --train and the --help."""
    res = CliRunner().invoke(main, ["demo", "--quick", "--run", str(tmp_path / "d"), option, text])
    assert res.exit_code == 2 and res.output.startswith(f"Error: --train {text!r}:") and res.output.count("\n") == 1, res.output
    assert "(see: " in res.output and "demo --help)" in res.output
    assert not (tmp_path / "d").exists()


def test_demo_train_time_takes_the_training_units():
    from nastools.demo import parse_train_time

    assert [parse_train_time(t) for t in ("6m", "90s", "1.5h", " 10min ", "0.5s")] == [360.0, 90.0, 5400.0, 600.0, 0.5]
    with pytest.raises(NastoolsError, match=r"^--train '10': add a unit, e\.g\. 10s or 10m$"):
        parse_train_time("10")


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
    res = CliRunner().invoke(main, ["demo", "--quick", "--space", str(space_file), "--run", str(run), "--json", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "\r" not in res.output and "search:" not in res.output  # no bars, the stage lines kept
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
    assert "search:" in res.output  # without --no-progress the search draws its bar


def test_a_rerun_redoes_the_stages_of_a_table_that_no_longer_fits_best(tmp_path, monkeypatch):
    """A demo that reused one table, rerun after a better-fitting table appeared (a newer
    nastools shipping this CPU generation's), redoes profile, search and export, not train."""
    import nastools.demo as D
    from nastools.io import atomic_write_json

    state = tmp_path / "demo.json"
    made = D._made_from(D.DemoSettings(), space_from_dict(TINY), "profile")
    stages_then = {
        "train": {"seconds": 1.0, "supernet": "x"},
        "profile": {"seconds": 0.0, "table": str(tmp_path / "old.json"), "reused": True, "made_from": made},
        "search": {"seconds": 40.0},
        "export": {"seconds": 20.0},
    }
    demo = D._Demo(D.DemoSettings(), space_from_dict(TINY), tmp_path, log=lambda m: lines.append(m))
    for now, redo in [(tmp_path / "old.json", False), (tmp_path / "new.json", True), (None, True)]:
        atomic_write_json(state, {"stages": stages_then})
        lines: list[str] = []
        monkeypatch.setattr(D, "_matching_table", lambda space, cpu, now=now: None if now is None else type("T", (), {"path": now})())
        stages = D._Stages(state, demo.log)
        D._forget_stale_table(demo, stages, made)
        kept = set(json.loads(state.read_text())["stages"])
        assert kept == ({"train"} if redo else set(stages_then)), now
        assert len(lines) == int(redo) and (not redo or "profile, search and export run again" in lines[0])
    # a table this demo profiled itself is this machine's own: kept whatever is shipped
    atomic_write_json(state, {"stages": {**stages_then, "profile": {**stages_then["profile"], "reused": False}}})
    D._forget_stale_table(demo, D._Stages(state, demo.log), made)
    assert set(json.loads(state.read_text())["stages"]) == set(stages_then)
    # a profile of another space (or other settings) is redone by its stage, for that reason
    atomic_write_json(state, {"stages": stages_then})
    lines = []
    D._forget_stale_table(demo, D._Stages(state, demo.log), {**made, "fingerprint": "another"})
    assert set(json.loads(state.read_text())["stages"]) == set(stages_then) and lines == []


def test_the_summary_notes_an_int8_model_slower_than_fp32():
    from nastools.demo import _int8_note

    note = _int8_note({"measured_ms_fp32": 1.321, "measured_ms_int8": 1.681})
    assert note is not None and "1.27x the fp32 model's time" in note and "fp32 is the faster choice" in note
    assert _int8_note({"measured_ms_fp32": 1.3, "measured_ms_int8": 0.9}) is None  # int8 pays: nothing to say
    assert _int8_note({"measured_ms_fp32": None, "measured_ms_int8": 0.9}) is None  # not benched


def _made(**kw):
    return {"space": "fmnist", "fingerprint": "f1", **kw}


def _recorded(tmp_path, made_from=True):
    """A demo.json whose four stages are done, each made from :func:`_made` (or, with
    ``made_from`` False, recorded by an older nastools without it)."""
    from nastools.io import atomic_write_json

    stages = {k: {"seconds": 1.0, **({"made_from": _made(stage=k)} if made_from else {})} for k in ("train", "profile", "search", "export")}
    atomic_write_json(tmp_path / "demo.json", {"stages": stages})
    return tmp_path / "demo.json"


@pytest.mark.parametrize(
    "name, made_from, why, kept",
    [
        ("train", _made(stage="train", supernet="fmnist-attentive"), "supernet", {"profile"}),  # trained then, shipped now
        (
            "train",
            {**_made(stage="train"), "space": "attentivenas", "fingerprint": "f2"},
            "space 'fmnist' then, 'attentivenas' now",
            {"profile"},
        ),
        ("profile", _made(stage="profile", profile_max_s=0.12), "profile_max_s none then, 0.12 now", {"train"}),
        ("search", {**_made(stage="search"), "fingerprint": "f2"}, "fingerprint 'f1' then, 'f2' now", {"train", "profile"}),
    ],
)
def test_a_stage_made_from_other_settings_is_redone_with_the_stages_that_use_it(tmp_path, name, made_from, why, kept):
    """The demo reused a stage by its name alone: a supernet trained by --train passed for the
    shipped one, another --space reused the old space's stages. Now a stage whose record was
    made from anything else runs again, with the stages that read its result, and says why."""
    from nastools.demo import _Stages

    lines: list[str] = []
    stages = _Stages(_recorded(tmp_path), lines.append)
    out = stages.run(name, "the stage", lambda interrupted: {"new": interrupted is None}, made_from)
    assert out["new"] and out["made_from"] == made_from
    assert len(lines) == 2 and lines[0].startswith("== the stage: redoing it and the stages that use it: ") and why in lines[0], lines
    assert "space 'fmnist' then" not in lines[0] or "fingerprint" not in lines[0]  # another space: not its fingerprint too
    recorded = json.loads((tmp_path / "demo.json").read_text())
    assert set(recorded["stages"]) == kept | {name} and "running" not in recorded
    # the same settings again: reused
    lines.clear()
    again = _Stages(tmp_path / "demo.json", lines.append).run(name, "the stage", lambda _: pytest.fail("redone"), made_from)
    assert again["new"] and lines == [f"== the stage: done earlier, reusing ({again['seconds']:.0f} s then; --fresh to redo)"]


def test_stages_recorded_without_what_they_were_made_from_are_redone(tmp_path):
    from nastools.demo import _Stages

    lines: list[str] = []
    stages = _Stages(_recorded(tmp_path, made_from=False), lines.append)
    stages.run("train", "train", lambda _: {}, _made(stage="train"))
    assert "does not record what it was made from" in lines[0]
    assert set(stages.done) == {"train", "profile"}


def test_an_interrupted_stage_is_not_recorded_and_resumes_from_its_notes(tmp_path):
    from nastools.demo import DemoInterrupted, _Stages

    stages = _Stages(tmp_path / "demo.json", lambda m: None)

    def stopped(interrupted):
        stages.note(trained_s=12.5)
        raise KeyboardInterrupt

    with pytest.raises(DemoInterrupted) as exc:
        stages.run("train", "train", stopped, _made(stage="train"))
    assert (exc.value.stage, exc.value.exit_code) == ("train", 130)
    assert "rerun the same command" in exc.value.message and "resumes from its checkpoint" in exc.value.message
    state = json.loads((tmp_path / "demo.json").read_text())
    assert state["stages"] == {} and state["running"] == {"stage": "train", "made_from": _made(stage="train"), "trained_s": 12.5}
    # a SIGTERM (raised by the demo's handler, without the stage) is named after the stage too
    stages = _Stages(tmp_path / "demo.json", lambda m: None)
    seen = []

    def terminated(interrupted):
        seen.append(interrupted)
        raise DemoInterrupted(None, "SIGTERM")

    with pytest.raises(DemoInterrupted) as exc:
        stages.run("train", "train", terminated, _made(stage="train"))
    assert (exc.value.stage, exc.value.signal_name, exc.value.exit_code) == ("train", "SIGTERM", 143)
    assert seen == [{"stage": "train", "made_from": _made(stage="train"), "trained_s": 12.5}]  # the same settings: resumable
    # other settings: not resumable
    out = _Stages(tmp_path / "demo.json", lambda m: None).run("train", "train", lambda i: {"interrupted": i}, _made(stage="x"))
    assert out["interrupted"] is None and "running" not in json.loads((tmp_path / "demo.json").read_text())


def test_demo_interrupted_exits_130_or_143_with_one_line(tmp_path, monkeypatch):
    import nastools.demo as D

    for sig, code in [("SIGINT", 130), ("SIGTERM", 143)]:

        def stop(settings, fresh, log, sig=sig):
            log("== train the supernet")
            raise D.DemoInterrupted("train", sig)

        monkeypatch.setattr(D, "run_demo", stop)
        res = CliRunner().invoke(main, ["demo", "--quick", "--run", str(tmp_path / "d"), "--json"])
        assert res.exit_code == code, res.output
        assert res.output.splitlines()[-1].startswith(f"interrupted by {sig} in the demo's train stage, which is not recorded as done")
        assert "{" not in res.output  # no summary


def _fake_train(calls, stopped):
    """A stand-in for :func:`nastools.train.trainer.train` that writes a checkpoint and
    stops as ``stopped`` says (one value per call)."""

    def train(cfg, rdir, *, resume, max_steps, time_budget, checkpoint_every=None, progress=True):
        calls.append({"fresh": cfg is not None, "resume": resume, "budget": time_budget})
        (rdir / "supernet.pt").write_bytes(b"w")
        return {"step": 4, "seconds": 10.0, "stopped": stopped[len(calls) - 1]}

    return train


def test_the_train_stage_resumes_an_interrupted_training_and_restarts_one_of_other_settings(tmp_path, monkeypatch):
    """Ctrl-C in training stopped the trainer but not the demo, which recorded the stopped
    training as done; now the demo stops (not recorded), and the next call resumes it with
    what is left of its budget. A supernet trained from other settings is trained again."""
    import nastools.demo as D
    import nastools.train.trainer as T

    calls: list[dict] = []
    monkeypatch.setattr(T, "train", _fake_train(calls, ["signal SIGINT", "time budget", "time budget"]))
    space = space_from_dict(TINY)
    lines: list[str] = []
    demo = D._Demo(D.DemoSettings.quick(), space, tmp_path, lines.append)
    demo.settings.train_time = "30s"
    with pytest.raises(D.DemoInterrupted) as exc:
        D._supernet_stage(demo, D._Stages(tmp_path / "demo.json", lines.append))
    assert exc.value.stage == "train" and "train" not in json.loads((tmp_path / "demo.json").read_text())["stages"]
    out = D._supernet_stage(demo, D._Stages(tmp_path / "demo.json", lines.append))
    assert calls[1] == {"fresh": False, "resume": True, "budget": 20.0}  # 30 s less the 10 s trained
    assert "resuming the interrupted training run" in "\n".join(lines) and "(20.0 s)" in out["about"]
    (tmp_path / "train.jsonl").write_text("{}\n")
    demo.settings.train_time = "1m"
    lines.clear()
    D._supernet_stage(demo, D._Stages(tmp_path / "demo.json", lines.append))
    assert calls[2] == {"fresh": True, "resume": False, "budget": 60.0} and not (tmp_path / "train.jsonl").exists()
    assert "train_s 30 then, 60 now" in lines[0] and "starting the training over" in lines[1]


def test_a_training_killed_outright_resumes_with_the_seconds_its_checkpoint_records(tmp_path, monkeypatch):
    """kill -9 in training notes nothing in demo.json: the rerun resumes the demo's checkpoint
    (written every minute of training) with the budget less the seconds it records."""
    import nastools.demo as D
    import nastools.train.trainer as T

    calls: list[dict] = []
    fake = _fake_train(calls, ["time budget"])

    def killed(cfg, rdir, **kw):
        assert kw["checkpoint_every"] == D.DEMO_CHECKPOINT_EVERY <= 60
        (rdir / "supernet.pt").write_bytes(b"w")
        raise SystemExit(137)  # as if killed: the stage is left running, without notes

    monkeypatch.setattr(T, "train", killed)
    lines: list[str] = []
    demo = D._Demo(D.DemoSettings.quick(), space_from_dict(TINY), tmp_path, lines.append)
    demo.settings.train_time = "30s"
    with pytest.raises(SystemExit):
        D._supernet_stage(demo, D._Stages(tmp_path / "demo.json", lambda m: None))
    assert "trained_s" not in json.loads((tmp_path / "demo.json").read_text())["running"]
    monkeypatch.setattr(T, "train", fake)
    monkeypatch.setattr(D, "load_checkpoint", lambda path: {"train": {"trained_s": 12.0}})
    lines.clear()
    out = D._supernet_stage(demo, D._Stages(tmp_path / "demo.json", lines.append))
    assert calls == [{"fresh": False, "resume": True, "budget": 18.0}]  # 30 s less the 12 s recorded
    assert "(12 s trained of at most 30 s)" in "\n".join(lines) and "(22.0 s)" in out["about"]


def test_the_train_stage_keeps_a_checkpoint_it_did_not_train(tmp_path, monkeypatch):
    import nastools.demo as D
    import nastools.train.trainer as T

    monkeypatch.setattr(T, "train", _fake_train([], ["steps"]))
    (tmp_path / "supernet.pt").write_bytes(b"someone else's")
    demo = D._Demo(D.DemoSettings.quick(), space_from_dict(TINY), tmp_path, lambda m: None)
    demo.settings.train_time = "30s"
    for _ in range(2):  # the refused call does not make the checkpoint one to resume or replace
        with pytest.raises(NastoolsError, match="holds a supernet checkpoint this demo did not record training"):
            D._supernet_stage(demo, D._Stages(tmp_path / "demo.json", lambda m: None))
    assert (tmp_path / "supernet.pt").read_bytes() == b"someone else's"


def test_the_shipped_supernet_is_not_taken_for_one_trained_earlier(tmp_path, monkeypatch):
    import nastools.demo as D
    import nastools.train.trainer as T

    monkeypatch.setattr(T, "train", _fake_train([], ["steps", "steps"]))
    monkeypatch.setattr(D, "_shipped_supernet", lambda space: "tiny-shipped")
    monkeypatch.setattr(D, "_take_shipped", lambda demo, name: {"supernet": name, "shipped": True})
    lines: list[str] = []
    demo = D._Demo(D.DemoSettings.quick(), space_from_dict(TINY), tmp_path, lines.append)
    demo.settings.train_time = "30s"
    assert D._supernet_stage(demo, D._Stages(tmp_path / "demo.json", lines.append))["shipped"] is False
    demo.settings.train_time = None
    lines.clear()
    assert D._supernet_stage(demo, D._Stages(tmp_path / "demo.json", lines.append))["supernet"] == "tiny-shipped"
    assert lines[0] == (
        "== take the shipped tinydemo supernet: redoing it and the stages that use it: "
        "its earlier result was made from other settings (supernet 'trained' then, 'tiny-shipped' now)"
    )
    # the checkpoint trained before the shipped supernet was taken is still the demo's to replace
    demo.settings.train_time = "1m"
    lines.clear()
    assert D._supernet_stage(demo, D._Stages(tmp_path / "demo.json", lines.append))["shipped"] is False
    assert "starting the training over" in lines[1]


def test_a_second_demo_in_the_same_run_folder_is_refused_and_deletes_nothing(tmp_path, monkeypatch):
    """A demo running in a folder (its lock held) refuses another, ``--fresh`` included,
    which would otherwise delete the folder under the first."""
    import nastools.demo as D
    from nastools.lock import OutputLock

    def no_stages(demo, stages):
        raise NastoolsError("the stages ran")

    monkeypatch.setattr(D, "_stages", no_stages)
    run = tmp_path / "d"
    run.mkdir()
    (run / "demo.json").write_text('{"stages": {}}')
    with OutputLock(run, "demo run", folder=False):  # the first demo
        for extra in ([], ["--fresh"]):
            res = CliRunner().invoke(main, ["demo", "--quick", "--run", str(run), *extra])
            assert res.exit_code == 1 and res.output.count("\n") == 1, res.output
            assert "demo run" in res.output and "is in use by pid" in res.output and "--run" in res.output
            assert sorted(p.name for p in run.iterdir()) == ["demo.json"]
    res = CliRunner().invoke(main, ["demo", "--quick", "--run", str(run), "--fresh"])  # the first has ended
    assert res.exit_code == 1 and "the stages ran" in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]  # no lock file left


def test_a_demo_in_the_working_directory_locks_it_from_beside_it(tmp_path, monkeypatch):
    import nastools.demo as D

    seen = []

    def no_stages(demo, stages):
        seen.extend(p.name for p in tmp_path.parent.iterdir() if p.name == f".{tmp_path.name}.lock")
        raise NastoolsError("the stages ran")

    monkeypatch.setattr(D, "_stages", no_stages)
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, ["demo", "--quick", "--run", "."])
    assert res.exit_code == 1 and "the stages ran" in res.output, res.output
    assert seen == [f".{tmp_path.name}.lock"] and not (tmp_path.parent / f".{tmp_path.name}.lock").exists()
    res = CliRunner().invoke(main, ["demo", "--quick", "--run", "/"])
    assert res.exit_code == 1 and res.output.count("\n") == 1 and "root" in res.output, res.output
