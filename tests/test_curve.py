"""Learning curves: reading a run's train.jsonl back, ``nastools curve``, the plot."""

import json

import pytest
from click.testing import CliRunner

from nastools.cli import main
from nastools.errors import NastoolsError
from nastools.pretrained import card
from nastools.train.curve import learning_curve

PNG = b"\x89PNG\r\n\x1a\n"


def _log(path, records, torn=False):
    lines = [json.dumps(r) for r in records]
    if torn:
        lines.insert(2, '{"type": "epoch", "step": 9')  # a kill mid-append
    path.write_text("".join(ln + "\n" for ln in lines))
    return path


RECORDS = [
    {"type": "step", "epoch": 0, "step": 10, "lr": 0.05},
    {"type": "step", "epoch": 0, "step": 20, "lr": 0.1},
    {"type": "epoch", "epoch": 0.75, "step": 30, "top1_min": 0.5, "top1_max": 0.6, "partial": True},
    {"type": "checkpoint", "step": 30, "seconds": 0.1},
    {"type": "step", "epoch": 0, "step": 40, "lr": 0.08},
    {"type": "epoch", "epoch": 1, "step": 40, "top1_min": 0.61, "top1_max": 0.7, "partial": False},
    {"type": "epoch", "epoch": 1, "step": 40, "top1_min": 0.62, "top1_max": 0.71, "partial": False},  # resumed, re-evaluated
    {"type": "epoch", "epoch": 2, "step": 80, "top1_min": 0.7, "top1_max": 0.8, "partial": False},
]


def test_the_curve_lists_each_evaluation_once_in_step_order_with_the_lr_in_epochs(tmp_path):
    c = learning_curve(_log(tmp_path / "train.jsonl", RECORDS, torn=True))
    assert [(p["step"], p["epoch"], p["partial"]) for p in c["points"]] == [(30, 0.75, True), (40, 1.0, False), (80, 2.0, False)]
    assert [(p["top1_min"], p["top1_max"]) for p in c["points"]] == [(50.0, 60.0), (62.0, 71.0), (70.0, 80.0)]
    assert c["lr"] == [[0.25, 0.05], [0.5, 0.1], [1.0, 0.08]]  # 40 steps per epoch


def test_a_log_without_an_evaluation_is_a_one_line_error(tmp_path):
    with pytest.raises(NastoolsError, match="no evaluation yet"):
        learning_curve(_log(tmp_path / "train.jsonl", RECORDS[:2]))


def test_cli_curve_prints_plots_and_compares_runs(tmp_path):
    for name, recs in (("a", RECORDS), ("b", RECORDS[-1:])):
        (tmp_path / name).mkdir()
        _log(tmp_path / name / "train.jsonl", recs)
    png = tmp_path / "out" / "curves.png"
    r = CliRunner().invoke(main, ["curve", str(tmp_path / "a"), str(tmp_path / "b"), "--plot", str(png)])
    assert r.exit_code == 0, r.output
    assert "62.00 /  71.00" in r.output and "(stopped mid-epoch)" in r.output and png.read_bytes()[:8] == PNG
    r = CliRunner().invoke(main, ["curve", str(tmp_path / "a"), "--json"])
    assert json.loads(r.output)[str(tmp_path / "a")]["points"][-1]["top1_max"] == 80.0


def test_cli_curve_of_a_run_without_a_log_is_one_line(tmp_path):
    r = CliRunner().invoke(main, ["curve", str(tmp_path)])
    assert r.exit_code == 1 and "no training log" in r.output and r.output.count("\n") == 1, r.output


def test_the_shipped_supernets_curve_is_read_from_its_own_log():
    """The curve of the shipped supernet, read from the train.jsonl that ships with it, agrees
    with the per-epoch validation top-1 its card states."""
    r = CliRunner().invoke(main, ["curve", "fmnist-attentive", "--json"])
    assert r.exit_code == 0, r.output
    full = [p for p in json.loads(r.output)["fmnist-attentive"]["points"] if not p["partial"]]
    stated = card("fmnist-attentive")["val_top1_per_epoch"]
    assert [(int(p["epoch"]), p["top1_min"], p["top1_max"]) for p in full] == [(e["epoch"], e["min"], e["max"]) for e in stated]


@pytest.mark.parametrize("where", ["folder", "under a file", "empty"])
def test_cli_curve_checks_its_plot_path_before_reading_any_log(tmp_path, where):
    afile = tmp_path / "afile"
    afile.write_text("x")
    plot = {"folder": str(tmp_path), "under a file": str(afile / "c.png"), "empty": ""}[where]
    # the run has no log at all: the plot path is what is refused, first
    r = CliRunner().invoke(main, ["curve", str(tmp_path / "nothing"), "--plot", plot])
    lines = r.output.strip().splitlines()
    assert r.exit_code == 1 and len(lines) == 1 and lines[0].startswith("Error: --plot"), r.output
    assert ".tmp" not in r.output and sorted(p.name for p in tmp_path.iterdir()) == ["afile"]
