"""The benchmark results: their layout, the index of cited figures, and the benchmark suite."""

from __future__ import annotations

import importlib
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"

INTEL = {"cpu": "Intel(R) Xeon(R) Processor", "cpu_isa": "amx_int8", "cpu_id": "GenuineIntel family 6 model 167", "date": "2026-12-06"}


@pytest.fixture(scope="module")
def bench():
    """The benchmarks' helper modules (_common, run, index), imported as the scripts import them."""
    sys.path.insert(0, str(BENCH))
    try:
        yield {name: importlib.import_module(name) for name in ("_common", "run", "index")}
    finally:
        sys.path.remove(str(BENCH))


def test_index_is_current(bench):
    index = bench["index"]
    assert index.INDEX.is_file(), "benchmarks/results/INDEX.md is missing: run python benchmarks/index.py"
    assert index.INDEX.read_text() == index.render(), "benchmarks/results/INDEX.md is out of date: run python benchmarks/index.py"


def test_results_tree_and_citations_are_consistent(bench):
    """Every cited file exists, every result file lies where its record says, and each is
    cited: current ones by README or docs/results, archived ones by docs/results."""
    assert bench["index"].problems() == []


def test_every_readme_result_link_is_in_the_index(bench):
    index = bench["index"]
    readme = [c for c in index.all_citations() if c.doc == "README.md"]
    assert len(readme) >= 10
    text = index.INDEX.read_text()
    for c in readme:
        assert f"[{c.file}]({c.file})" in text
        assert (index.RESULTS / c.file).is_file()


def test_checks_catch_a_missing_a_misplaced_and_an_uncited_file(bench, tmp_path):
    index = bench["index"]
    results = tmp_path / "benchmarks" / "results"
    good = results / "bench_x" / "intel-xeon-processor-f6m167" / "2026-12-06.json"
    wrong = results / "bench_x" / "intel-xeon-processor-f6m167" / "2026-12-07.json"
    stray = results / "archive" / "bench_y" / "intel-xeon-processor-f6m167" / "2026-12-06-old.json"
    for path, record in (
        (good, {"benchmark": "bench_x"}),
        (wrong, {"benchmark": "bench_x"}),
        (stray, {"benchmark": "bench_y", "variant": "old"}),
    ):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**record, "machine": INTEL}))
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text(
        "# x\n## Measured results\n**Speed** ([result](benchmarks/results/bench_x/intel-xeon-processor-f6m167/2026-12-06.json))\n"
        "See benchmarks/results/bench_x/amd-epyc-f26m2/2026-12-06.json too.\n"
        "```\nbenchmarks/results/in/a/code-block.json is not a citation\n```\n"
    )
    found = index.problems(tmp_path, results)
    assert any("amd-epyc-f26m2/2026-12-06.json, which does not exist" in p for p in found)
    assert any("2026-12-07.json: its record says bench_x/<cpu>/2026-12-06.json" in p for p in found)
    assert any("2026-12-07.json: cited by neither" in p for p in found)
    assert any("2026-12-06-old.json: archived but not summarised" in p for p in found)
    assert not any("code-block" in p for p in found)
    assert len(found) == 4, found
    cites = index.citations(tmp_path / "README.md", tmp_path)
    assert cites[0].section == "Measured results" and cites[0].caption == "Speed"


def test_write_result_files_by_benchmark_cpu_and_date(bench, tmp_path, monkeypatch):
    common = bench["_common"]
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    monkeypatch.setattr(common, "machine_info", lambda: dict(INTEL))
    path = common.write_result("bench_x", {"figure": 1.5})
    assert path == tmp_path / "bench_x" / "intel-xeon-processor-f6m167" / "2026-12-06.json"
    assert json.loads(path.read_text()) == {"benchmark": "bench_x", "machine": INTEL, "figure": 1.5}
    other = common.write_result("bench_x", {"figure": 2.0}, variant="score8")
    assert other.name == "2026-12-06-score8.json"
    assert json.loads(other.read_text())["variant"] == "score8"
    assert common.latest_result("bench_x") == path
    assert common.latest_result("bench_x", "score8") == other
    assert common.latest_result("bench_y") is None
    with pytest.raises(ValueError, match="variant"):
        common.write_result("bench_x", {}, variant="Has Spaces")


def test_cpu_tag_names_the_model_and_generation(bench):
    cpu_tag = bench["_common"].cpu_tag
    assert cpu_tag(INTEL) == "intel-xeon-processor-f6m167"
    assert cpu_tag({"cpu": "AMD EPYC", "cpu_isa": "avx512_vnni", "cpu_id": "AuthenticAMD family 26 model 2"}) == "amd-epyc-f26m2"
    assert cpu_tag({"cpu": "AMD EPYC", "cpu_isa": "avx512_vnni"}) == "amd-epyc-avx512-vnni"
    assert cpu_tag({"cpu": "AMD EPYC"}) == "amd-epyc"
    graviton3 = {"cpu": "ARM Neoverse-V1", "cpu_isa": "sve", "cpu_id": "ARM implementer 0x41 part 0xd40 variant 0x1"}
    assert cpu_tag(graviton3) == "arm-neoverse-v1-i41pd40v1"
    assert cpu_tag({"cpu": "Apple M3 Max", "cpu_isa": "i8mm", "cpu_id": "Apple cpufamily 0x72015832"}) == "apple-m3-max-cf72015832"


def test_suite_scripts_exist_and_write_their_benchmark(bench):
    """Each claim-backing benchmark names a script that exists and writes that result; `make
    bench` runs the suite; investigations stay out of it."""
    run, index = bench["run"], bench["index"]
    writers = index._writers()
    for b in run.SUITE:
        assert (BENCH / b.script).is_file(), b.script
        assert any(re.fullmatch(pattern, b.name) and script == f"benchmarks/{b.script}" for pattern, script in writers.items()), b.name
        assert not b.script.startswith("investigations/")
    assert len({b.key for b in run.SUITE}) == len(run.SUITE)
    bench_rule = re.search(r"^bench:.*?(?=^\S|\Z)", (ROOT / "Makefile").read_text(), re.S | re.M)[0]
    assert "benchmarks/run.py" in bench_rule and "benchmarks/index.py" in bench_rule
