"""The GPU Dockerfile: linted with hadolint (from PyPI, the `dev` extra), since no machine here
runs Docker, and checked for what the image must provide."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _hadolint() -> str:
    exe = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    if not Path(exe).is_file():
        pytest.skip("hadolint is not installed (pip install -e '.[dev]')")
    return exe


def _lint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([_hadolint(), "--no-color", str(path)], capture_output=True, text=True, timeout=60)


def test_dockerfile_passes_hadolint():
    res = _lint(ROOT / "Dockerfile")
    assert res.returncode == 0, res.stdout + res.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path):
    # the linter really runs: an unpinned base image and apt package are reported
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu:latest\nRUN apt-get install -y curl\n")
    res = _lint(bad)
    assert res.returncode != 0 and "DL3007" in res.stdout and "DL3008" in res.stdout


def test_dockerfile_is_a_tensorrt_image_running_nastools():
    lines = [ln.strip() for ln in (ROOT / "Dockerfile").read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    base = next(ln for ln in lines if ln.startswith("FROM "))
    assert base.startswith("FROM nvcr.io/nvidia/tensorrt:") and not base.endswith(":latest")
    assert 'ENTRYPOINT ["nastools"]' in lines
    assert any('".[trt]"' in ln for ln in lines)
