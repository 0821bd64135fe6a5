"""The demo end to end on a tiny budget: every stage really runs and writes its files."""

import json

import yaml
from click.testing import CliRunner
from conftest import TINY_SPACE

from nastools.cli import main
from nastools.space import space_from_dict

TINY = {**TINY_SPACE, "name": "tinydemo"}


def test_demo_quick_runs_every_stage_and_resumes(tmp_path):
    space_file = tmp_path / "tinydemo.yaml"
    space_file.write_text(yaml.safe_dump(TINY))
    space = space_from_dict(TINY)
    run = tmp_path / "demo"
    args = ["demo", "--quick", "--space", str(space_file), "--run", str(run), "--json"]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    summary = json.loads(first.output[first.output.index("{\n"):])
    for f in summary["files"]:
        assert (tmp_path / f).exists() or __import__("pathlib").Path(f).exists(), f
    assert set(summary["stage_seconds"]) == {"train", "profile", "search", "export"}
    assert summary["table_reused"] is False  # no shipped table for this space: it was profiled
    best = space.arch_from_dict(json.loads((run / "search" / "best.json").read_text()))
    assert best.id == summary["arch"]
    assert summary["flops"] == space.flops(best)
    assert summary["predicted_ms"] <= summary["latency_budget_ms"]
    assert 0.0 <= summary["test_top1_fp32"] <= 1.0 and 0.0 <= summary["test_top1_int8"] <= 1.0
    assert summary["measured_ms_fp32"] > 0 and summary["measured_ms_int8"] > 0
    sidecar = json.loads((run / "export" / f"{best.id}.onnx.json").read_text())
    assert sidecar["parity"]["passed"] is True
    # a second call reuses every finished stage
    second = CliRunner().invoke(main, args)
    assert second.exit_code == 0, second.output
    assert second.output.count("done earlier, reusing") == 4
    assert json.loads(second.output[second.output.index("{\n"):])["arch"] == summary["arch"]
