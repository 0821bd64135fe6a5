"""The wheel carries its data: installed into a fresh virtual environment and run from another
folder, nastools lists its spaces and finds its shipped latency tables."""

from __future__ import annotations

import json
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*cmd, cwd: Path) -> str:
    res = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"{cmd}: {res.stdout}\n{res.stderr}"
    return res.stdout


@pytest.mark.slow
def test_wheel_installs_and_finds_its_shipped_data_from_another_folder(tmp_path):
    # build from a copy, so that the build leaves nothing in the checkout
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "nastools", src / "nastools", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    pretrained = ("supernet.pt", "archs.jsonl", "meta.json", "README.md", "example/supernet.pt", "example/meta.json")
    for name in pretrained:  # what shipped supernets may hold
        (src / "nastools" / "pretrained" / name).parent.mkdir(parents=True, exist_ok=True)
        (src / "nastools" / "pretrained" / name).write_text("x")
    _run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "-q",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        "-w",
        tmp_path / "dist",
        src,
        cwd=tmp_path,
    )
    (wheel,) = (tmp_path / "dist").glob("nastools-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"nastools/spaces/fmnist.yaml", "nastools/latency_tables/fmnist/amd-epyc-t1__ort__fp32__b1.json"} <= names
    assert {f"nastools/spaces/archs/attentivenas/a{i}.json" for i in range(7)} <= names  # the published A0-A6
    assert {f"nastools/pretrained/{n}" for n in pretrained} <= names

    # a fresh venv that borrows this one's dependencies (torch and the rest) without its nastools
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    py = venv / "bin" / "python"
    purelib = Path(_run(py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path).strip())
    (purelib / "borrowed.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    _run(sys.executable, "-m", "pip", "--python", py, "install", "-q", "--no-deps", "--no-index", wheel, cwd=tmp_path)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    listed = json.loads(_run(venv / "bin" / "nastools", "space", "list", "--json", cwd=elsewhere))
    assert {"fmnist", "attentivenas"} <= {r["name"] for r in listed}
    probe = (
        "import nastools; from nastools.space import load_space; from nastools.search.runner import resolve_table; "
        "t = resolve_table(load_space('fmnist'), 'cpu', {}); print(nastools.__file__); print(t.path); print(len(t))"
    )
    where, table, blocks = _run(py, "-c", probe, cwd=elsewhere).split()
    installed = purelib / "nastools"
    assert Path(where).parent == installed  # the wheel's copy, not the checkout's
    assert Path(table).is_relative_to(installed / "latency_tables" / "fmnist") and int(blocks) > 0
    arch = "from nastools.space import load_arch; a = load_arch('a0.json', 'attentivenas'); print(a.resolution, a.head)"
    assert _run(py, "-c", arch, cwd=elsewhere).split() == ["192", "1792"]  # a shipped arch by name, from elsewhere
