"""The GPU Dockerfile: linted with hadolint (from PyPI, the `dev` extra), since no machine here
runs Docker, and checked for what the image must provide: TensorRT from the base image kept,
onnxruntime-gpu's build the one imported, the test suite and what ``make gpu-check`` needs."""

from __future__ import annotations

import fnmatch
import shlex
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


def _instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (keyword, arguments), continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, rest = line.strip().partition(" ")
            out.append((keyword.upper(), " ".join(rest.split())))
    return out


def _install_commands() -> list[str]:
    """The shell commands of the RUN that installs nastools, in order."""
    (run,) = [args for kw, args in _instructions() if kw == "RUN" and "pip install" in args]
    return [c.strip() for c in run.split("&&")]


def test_the_gpu_extra_adds_onnxruntime_gpu_and_tensorrt_on_top_of_the_cpu_dependencies():
    import re

    text = (ROOT / "pyproject.toml").read_text()
    gpu = re.search(r"^gpu = \[(.*)\]$", text, re.M)[1]
    assert sorted(re.findall(r'"([a-z-]+)>=', gpu)) == ["onnxruntime-gpu", "tensorrt"]
    deps = re.search(r"^dependencies = \[(.*?)^\]", text, re.M | re.S)[1]
    assert '"onnxruntime>=' in deps  # CPU users need no extra


def test_the_image_installs_the_gpu_and_dev_extras_with_the_base_images_tensorrt_pinned():
    cmds = _install_commands()
    pin = next(i for i, c in enumerate(cmds) if "import tensorrt" in c and "> /tmp/trt-pin.txt" in c)
    extras = next(i for i, c in enumerate(cmds) if '".[gpu,dev]"' in c)
    assert pin < extras and "-c /tmp/trt-pin.txt" in cmds[extras]
    assert not any("tensorrt" in c.split("#")[0] and "pip install" in c and i != extras for i, c in enumerate(cmds))


def test_the_image_imports_onnxruntime_gpus_build_and_checks_its_cuda_provider():
    # onnxruntime and onnxruntime-gpu are one module: the GPU build must be installed last
    cmds = _install_commands()
    extras = next(i for i, c in enumerate(cmds) if '".[gpu,dev]"' in c)
    reinstall = next(i for i, c in enumerate(cmds) if "--force-reinstall" in c)
    words = shlex.split(cmds[reinstall])
    assert reinstall > extras and "--no-deps" in words and '"onnxruntime-gpu==${ORT_GPU}"' in cmds[reinstall]
    assert "version('onnxruntime-gpu')" in cmds[reinstall - 1] and cmds[reinstall - 1].startswith("ORT_GPU=")
    assert "cuda_provider_missing" in cmds[-1] and "assert not m()" in cmds[-1]  # the build fails without the CUDA provider
    assert not any("pip uninstall" in c for c in cmds)  # nastools' onnxruntime requirement stays met


def _ignored(path: str) -> bool:
    patterns = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines() if p.strip() and not p.startswith("#")]
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(
        fnmatch.fnmatch(pre, pat.removeprefix("**/")) or fnmatch.fnmatch(parts[i], pat.removeprefix("**/"))
        for pat in patterns
        for i, pre in enumerate(prefixes)
    )


def test_the_image_carries_the_test_suite_and_what_make_gpu_check_needs():
    copied = {src for kw, args in _instructions() if kw == "COPY" for src in args.split()[:-1]}
    workdirs = [args for kw, args in _instructions() if kw == "WORKDIR"]
    assert workdirs[0] == "/opt/nastools"  # where the README's `docker run -w /opt/nastools` commands run
    assert {"pyproject.toml", "Makefile", "nastools", "tests", "benchmarks"} <= copied
    needed = ["Makefile", "tests/conftest.py", "tests/test_latency.py", "benchmarks/_common.py", "nastools/gpucheck.py"]
    assert not [p for p in needed if _ignored(p)]
    assert _ignored("benchmarks/results/x.json") and _ignored(".venv/bin/python")  # the check itself works
    assert (ROOT / "benchmarks" / "_common.py").is_file()


def test_make_gpu_check_runs_with_the_images_python_where_there_is_no_venv():
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    res = subprocess.run(
        [make, "-n", "-C", str(ROOT), "gpu-check", f"PYTHON={sys.executable}", "PY=/no-venv/bin/python"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert f"{sys.executable} -m nastools.gpucheck" in res.stdout and "/no-venv/" not in res.stdout


def test_the_readme_gives_the_images_gpu_commands():
    readme = (ROOT / "README.md").read_text()
    for cmd in ("-w /opt/nastools --entrypoint make nastools gpu-check", "-w /opt/nastools --entrypoint python3 nastools -m pytest -m gpu"):
        assert cmd in " ".join(readme.replace("\\\n", " ").split()), cmd
