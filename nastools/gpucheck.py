"""Every GPU path of nastools in one call (``make gpu-check``, ``python -m nastools.gpucheck``).

On a CUDA host it runs, on a small space and within about 8 minutes: a few torch CUDA
training steps (attentive sampler, with the per-epoch BN recalibration and evaluation);
``profile`` through torch CUDA, ONNX Runtime CUDA and TensorRT (fp32 and int8) with
``--validate``; ``search`` under a GPU latency budget with the picks verified on the GPU;
``export`` to TensorRT fp32/fp16/int8, TorchScript and ONNX; ``bench`` of each export; and
the output parity of TensorRT and ONNX Runtime CUDA against ONNX Runtime on the CPU.

Each step is the command a user runs (``python -m nastools ...``, in a subprocess with its
own time limit), and records ``passed``, ``failed`` (with the error's last line), ``not
available`` (with what to install) or ``skipped`` (a step it needs did not pass, or time ran
out), so that a missing TensorRT never hides the torch and ONNX Runtime CUDA results. One
JSON report (``nastools.gpu-check/1``) holds the steps and the machine. On a host without a
CUDA GPU every step is ``not available`` and one line says so.

``--rehearse-on-cpu`` runs the same steps with the CPU in the GPU's place (torch and ONNX
Runtime on the CPU; the TensorRT and ONNX Runtime CUDA steps stay not available): every
command, every output the check reads and the report, so that a GPU's few minutes are never
the first run of the check itself.

It lives in the package rather than in ``benchmarks/`` so that an installed nastools (the
Docker image) runs it as well as a checkout does.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from nastools.errors import NastoolsError

REPORT_FORMAT = "nastools.gpu-check/1"
STATUSES = ("passed", "failed", "not available", "skipped")
#: the whole check's time limit (a GPU may be lent for 15 minutes, its start included)
TIME_LIMIT_S = 480.0
#: ``--rehearse-on-cpu``: the time limits (the whole check's and each command's) times this
REHEARSAL_SLACK = 5.0
#: the small space every step runs on: one resolution, a few choices per stage
SMALL_SPACE = """\
name: gpucheck
description: a small space for nastools' GPU check
input_channels: 1
num_classes: 10
resolutions: [28]
act: swish
se: {ratio: 0.25, gate: hsigmoid, divisor: 8}
stem: {widths: [8, 16], kernel: 3, stride: 1}
stages:
  - {name: mb1, widths: [8, 16], depths: [1, 2], kernels: [3], expands: [1], stride: 1, se: false}
  - {name: mb2, widths: [16, 24], depths: [1, 2], kernels: [3, 5], expands: [2, 4], stride: 2, se: false}
  - {name: mb3, widths: [32, 40], depths: [1, 2], kernels: [3, 5], expands: [2, 4], stride: 2, se: true}
head: {widths: [128, 256], expand: 4}
dropout: 0.0
drop_connect: 0.0
"""


class NotAvailable(Exception):
    """A step cannot run here: ``reason`` says what is missing and how to install it."""


class StepFailed(Exception):
    """A step ran and failed: the message is the error's last line."""


@dataclass
class Step:
    """One check: what it needs installed (:func:`missing_pieces` keys), the steps whose
    outputs it uses (all of ``after``, one of ``any_of``), and the function that runs it and
    returns its figures."""

    name: str
    needs: tuple[str, ...]
    after: tuple[str, ...]
    run: Callable[["Context"], dict[str, Any]]
    any_of: tuple[str, ...] = ()


@dataclass
class Context:
    """What the steps share: the work folder, the deadline, the files made so far."""

    work: Path
    deadline: float
    python: str = sys.executable
    files: dict[str, str] = field(default_factory=dict)
    #: where the GPU steps run: ``gpu``, or ``cpu`` to rehearse them (``--rehearse-on-cpu``)
    target: str = "gpu"
    #: each command's time limit is its cap times this (a rehearsal on a busy CPU gets more)
    slack: float = 1.0

    @property
    def torch_device(self) -> str:
        """The torch device the training runs on: ``cuda``, or ``cpu`` in a rehearsal."""
        return "cuda" if self.target == "gpu" else "cpu"

    @property
    def cost(self) -> str:
        """The search's name of the latency cost (``latency:gpu``)."""
        return f"latency:{self.target}"

    @property
    def space(self) -> Path:
        return self.work / "space.yaml"

    @property
    def run_dir(self) -> Path:
        return self.work / "run"

    def left_s(self) -> float:
        return self.deadline - time.monotonic()


# --------------------------------------------------------------------------- what is here


def _fmnist_missing() -> str | None:
    from nastools.data import FMNIST_DIR, FMNIST_FILES

    for base in (FMNIST_DIR, FMNIST_DIR / "FashionMNIST" / "raw", FMNIST_DIR / "raw"):
        if all((base / f).is_file() or (base / f"{f}.gz").is_file() for f in FMNIST_FILES):
            return None
    return f"Fashion-MNIST is not in {str(FMNIST_DIR)!r}: apt-get install dataset-fashion-mnist"


def missing_pieces() -> dict[str, str]:
    """What the GPU steps need that is not here, each with what to install: ``cuda`` (a GPU
    torch can see), ``ort-cuda`` (onnxruntime-gpu), ``tensorrt``, ``fashion-mnist``."""
    import torch

    from nastools.runtime.onnxrt import cuda_provider_missing
    from nastools.runtime.trt import tensorrt_installed

    missing: dict[str, str] = {}
    if not torch.cuda.is_available():
        missing["cuda"] = (
            f"no CUDA GPU visible to torch {torch.__version__} (CUDA build: {torch.version.cuda or 'none'}): "
            f"run on an NVIDIA GPU host with a CUDA build of torch"
        )
    ort_cuda = cuda_provider_missing()
    if ort_cuda:
        missing["ort-cuda"] = f"ONNX Runtime's {ort_cuda}"
    if not tensorrt_installed():
        missing["tensorrt"] = "TensorRT is not installed: pip install 'nastools[trt]' (tensorrt>=10)"
    fm = _fmnist_missing()
    if fm:
        missing["fashion-mnist"] = fm
    return missing


def machine() -> dict[str, Any]:
    """The host (:func:`nastools.machine.machine_info`: CPU, date, torch, GPU) with the GPU's
    memory, torch's CUDA build and the versions of nastools, ONNX Runtime and TensorRT."""
    import torch

    from nastools import __version__
    from nastools.machine import machine_info

    info: dict[str, Any] = {**machine_info(), "nastools": __version__, "torch_cuda": torch.version.cuda}
    if torch.cuda.is_available():
        info["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    for name, module in (("onnxruntime", "onnxruntime"), ("tensorrt", "tensorrt")):
        try:
            mod = __import__(module)
            info[name] = getattr(mod, "__version__", "?")
            if name == "onnxruntime":
                info["onnxruntime_providers"] = mod.get_available_providers()
        except ImportError:
            info[name] = None
    return info


# --------------------------------------------------------------------------- running a command


def cli(ctx: Context, *args: str, cap_s: float = 150.0) -> dict[str, Any]:
    """Run ``python -m nastools ARGS --json`` in a subprocess, within ``cap_s`` and the
    check's deadline; its JSON output, or :class:`StepFailed` with its error's last line."""
    limit = max(1.0, min(cap_s * ctx.slack, ctx.left_s()))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")])),
    }
    try:
        p = subprocess.run(
            [ctx.python, "-m", "nastools", *args, "--json"], capture_output=True, text=True, timeout=limit, cwd=ctx.work, env=env
        )
    except subprocess.TimeoutExpired:
        raise StepFailed(f"nastools {args[0]} ran past {limit:.0f} s") from None
    if p.returncode != 0:
        lines = [ln for ln in (p.stderr + p.stdout).splitlines() if ln.strip()]
        raise StepFailed(f"nastools {args[0]} exited {p.returncode}: {lines[-1] if lines else '(no output)'}")
    out = p.stdout
    return json.loads(out[out.index("{") :]) if "{" in out else {}


# --------------------------------------------------------------------------- the steps


def _train(ctx: Context, precision: str = "fp32") -> dict[str, Any]:
    """30 training steps on CUDA (fp32: the run the later steps search; bf16: its own run, for
    the images/s of bf16 mixed precision beside fp32's); a rehearsal trains 6, the same
    command at a CPU's pace (bf16 on a CPU without AMX-BF16 runs at a quarter of fp32's)."""
    ctx.space.write_text(SMALL_SPACE)
    out = cli(
        ctx,
        "train",
        "--space",
        str(ctx.space),
        "--run",
        str(ctx.run_dir if precision == "fp32" else ctx.work / f"run-{precision}"),
        "--precision",
        precision,
        "--device",
        ctx.torch_device,
        "--steps",
        "30" if ctx.target == "gpu" else "6",
        "--batch-size",
        "64",
        "--sampler",
        "attentive-best",
        "--eval-images",
        "500",
        "--no-progress",
    )
    return {k: v for k, v in out.items() if isinstance(v, (int, float, str)) or k == "top1"}


def _profile(backend: str, precision: str = "fp32") -> Callable[[Context], dict[str, Any]]:
    def run(ctx: Context) -> dict[str, Any]:
        if not ctx.space.is_file():
            ctx.space.write_text(SMALL_SPACE)
        path = ctx.work / "tables" / f"{backend}-{precision}.json"
        out = cli(
            ctx,
            "profile",
            "--space",
            str(ctx.space),
            "--device",
            ctx.target,
            "--backend",
            backend,
            "--precision",
            precision,
            "--calibrate",
            "8",
            "--validate",
            "8",
            "--max-time",
            "0.2",
            "--out",
            str(path),
            cap_s=120,
        )
        ctx.files[f"table-{backend}-{precision}"] = str(path)
        table = out.get("validation", {}).get("table") or {}
        return {
            "table": str(path),
            "blocks": out.get("blocks"),
            "statistic": out.get("meta", {}).get("statistic"),
            "device": out.get("meta", {}).get("device"),
            **{k: table.get(k) for k in ("mape_pct", "within_10_pct", "kendall_tau")},
        }

    return run


def _search(ctx: Context) -> dict[str, Any]:
    from nastools.latency import LatencyTable

    table_path = next(ctx.files[k] for k in ("table-trt-fp32", "table-ort-fp32", "table-torch-fp32") if k in ctx.files)
    table = LatencyTable.load(table_path, str(ctx.space))
    space = table.space
    limit = (table.predict(space.min_arch()) + table.predict(space.max_arch())) / 2
    out = cli(
        ctx,
        "search",
        "--run",
        str(ctx.run_dir),
        "--latency",
        f"{ctx.target}={limit:.4f}ms",
        "--table",
        f"{ctx.target}={table_path}",
        "--population",
        "6",
        "--generations",
        "2",
        "--calib-images",
        "256",
        "--eval-images",
        "500",
        "--fresh",
    )
    lat = out.get("latency", {}).get(ctx.cost, {})
    pick = (out.get("picks") or [{}])[0]
    if not lat.get("verified"):
        raise StepFailed(f"the picks were not verified on the {ctx.target.upper()}: {lat.get('reason', 'no reason given')}")
    if pick.get("id") is None:
        raise StepFailed(f"no subnet within the budget of {limit:.4f} ms")
    ctx.files["arch"] = str(ctx.run_dir / "search" / "best.json")
    return {
        "table": table_path,
        "budget_ms": round(limit, 4),
        "statistic": lat.get("statistic"),
        "arch": pick.get("id"),
        "predicted_ms": pick.get("costs", {}).get(ctx.cost),
        "measured_ms": pick.get("costs", {}).get(f"measured:{ctx.cost}"),
        # the time as timed and the GPU's speed then, against the table's reference subnets
        "verification": (pick.get("verification") or {}).get(ctx.cost),
    }


def _export(fmt: str, precision: str, suffix: str) -> Callable[[Context], dict[str, Any]]:
    def run(ctx: Context) -> dict[str, Any]:
        path = ctx.work / "export" / f"pick-{precision}{suffix}"
        out = cli(
            ctx,
            "export",
            "--run",
            str(ctx.run_dir),
            "--arch",
            ctx.files["arch"],
            "--format",
            fmt,
            "--precision",
            precision,
            "--out",
            str(path),
            "--calib-images",
            "256",
            "--eval-images",
            "1000",
            "--parity-images",
            "256",
            cap_s=180,
        )
        ctx.files[f"{fmt}-{precision}"] = str(path)
        parity = out.get("parity") or {}
        return {"model": str(path), "parity": {k: parity.get(k) for k in ("max_abs_diff", "top1_agreement", "passed") if k in parity}}

    return run


def _bench(key: str) -> Callable[[Context], dict[str, Any]]:
    def run(ctx: Context) -> dict[str, Any]:
        out = cli(ctx, "bench", ctx.files[key], "--duration", "1s", cap_s=60)
        return {k: out.get(k) for k in ("backend", "p10_ms", "median_ms", "p99_ms", "throughput_ips")}

    return run


def _parity(runner_of: Callable[[str], Any], key: str, tol: float) -> Callable[[Context], dict[str, Any]]:
    """Outputs of the model ``ctx.files[key]`` through ``runner_of(path)`` against ONNX Runtime
    on the CPU running the fp32 ONNX export, on 16 random inputs."""

    def run(ctx: Context) -> dict[str, Any]:
        import numpy as np

        from nastools.runtime import OrtCpuRunner

        rng = np.random.default_rng(0)
        diffs, agree = [], 0
        with OrtCpuRunner(ctx.files["onnx-fp32"]) as ref, runner_of(ctx.files[key]) as other:
            for _ in range(16):
                x = rng.standard_normal(ref.input_shape(1), dtype=np.float32)
                a, b = np.asarray(ref.infer(x), dtype=np.float32), np.asarray(other.infer(x), dtype=np.float32)
                diffs.append(float(np.abs(a - b).max()))
                agree += int(a.argmax() == b.argmax())
        worst = max(diffs)
        if worst > tol:
            raise StepFailed(f"max |difference| {worst:.3g} against ONNX Runtime CPU, over the {tol:g} allowed")
        return {"max_abs_diff": worst, "top1_agreement": agree / 16}

    return run


def _ort_cuda_runner(path: str):
    from nastools.runtime import OrtCudaRunner

    return OrtCudaRunner(path)


def _trt_runner(path: str):
    from nastools.runtime import TrtRunner

    return TrtRunner(path)


DATA = ("cuda", "fashion-mnist")
STEPS: tuple[Step, ...] = (
    Step("train: torch CUDA, attentive sampler", DATA, (), _train),
    Step("train: torch CUDA, bf16 mixed precision", DATA, (), lambda ctx: _train(ctx, "bf16")),
    Step("profile: torch CUDA fp32", ("cuda",), (), _profile("torch")),
    Step("profile: ONNX Runtime CUDA fp32", ("cuda", "ort-cuda"), (), _profile("ort")),
    Step("profile: TensorRT fp32", ("cuda", "tensorrt"), (), _profile("trt")),
    Step("profile: TensorRT int8", ("cuda", "tensorrt"), (), _profile("trt", "int8")),
    Step(
        "search: GPU budget, picks verified on the GPU",
        DATA,
        ("train: torch CUDA, attentive sampler",),
        _search,
        any_of=("profile: TensorRT fp32", "profile: ONNX Runtime CUDA fp32", "profile: torch CUDA fp32"),
    ),
    Step("export: onnx fp32", DATA, ("search: GPU budget, picks verified on the GPU",), _export("onnx", "fp32", ".onnx")),
    Step("export: torchscript fp32", DATA, ("search: GPU budget, picks verified on the GPU",), _export("torchscript", "fp32", ".ts")),
    *(
        Step(f"export: trt {p}", (*DATA, "tensorrt"), ("search: GPU budget, picks verified on the GPU",), _export("trt", p, ".engine"))
        for p in ("fp32", "fp16", "int8")
    ),
    Step("bench: onnx fp32 (ORT CPU)", DATA, ("export: onnx fp32",), _bench("onnx-fp32")),
    Step("bench: torchscript fp32", DATA, ("export: torchscript fp32",), _bench("torchscript-fp32")),
    *(Step(f"bench: trt {p}", (*DATA, "tensorrt"), (f"export: trt {p}",), _bench(f"trt-{p}")) for p in ("fp32", "fp16", "int8")),
    Step("parity: ONNX Runtime CUDA vs CPU", (*DATA, "ort-cuda"), ("export: onnx fp32",), _parity(_ort_cuda_runner, "onnx-fp32", 1e-3)),
    Step(
        "parity: TensorRT fp32 vs ONNX Runtime CPU",
        (*DATA, "tensorrt"),
        ("export: onnx fp32", "export: trt fp32"),
        _parity(_trt_runner, "trt-fp32", 1e-2),
    ),
)


# --------------------------------------------------------------------------- the check


def run_steps(steps: Sequence[Step], ctx: Context, missing: dict[str, str]) -> list[dict[str, Any]]:
    """Run ``steps`` in order, each recorded as ``{"step", "status", "seconds", ...}``: its
    figures (``detail``) when it passed, ``error`` when it failed, ``install`` when a piece is
    missing (:func:`missing_pieces`), ``reason`` when skipped."""
    done: dict[str, str] = {}
    records = []
    for s in steps:
        rec: dict[str, Any] = {"step": s.name}
        lacking = [missing[n] for n in s.needs if n in missing]
        waiting = [a for a in s.after if done.get(a) != "passed"]
        if s.any_of and not any(done.get(a) == "passed" for a in s.any_of):
            waiting.append(" or ".join(s.any_of))
        if lacking:
            rec.update(status="not available", install=lacking[0])
        elif waiting:
            rec.update(status="skipped", reason=f"needs {waiting[0]!r}, which did not pass")
        elif ctx.left_s() < 5:
            rec.update(status="skipped", reason=f"out of time (the check stops at {TIME_LIMIT_S * ctx.slack:.0f} s)")
        else:
            t0 = time.monotonic()
            try:
                rec.update(status="passed", detail=s.run(ctx))
            except (StepFailed, NastoolsError) as e:
                rec.update(status="failed", error=str(e))
            except Exception as e:  # noqa: BLE001 (a bug in one path must not hide the others)
                rec.update(status="failed", error=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
            rec["seconds"] = round(time.monotonic() - t0, 1)
        done[s.name] = rec["status"]
        records.append(rec)
    return records


def report(records: list[dict[str, Any]], info: dict[str, Any], seconds: float) -> dict[str, Any]:
    """The JSON report: format, date, machine, steps and the count of each status."""
    return {
        "format": REPORT_FORMAT,
        "benchmark": "gpu_check",
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": info,
        "seconds": round(seconds, 1),
        "counts": {s: sum(r["status"] == s for r in records) for s in STATUSES},
        "steps": records,
    }


def format_report(rep: dict[str, Any]) -> str:
    """The short table printed after the check: one line per step."""
    lines = []
    for r in rep["steps"]:
        note = r.get("error") or r.get("install") or r.get("reason") or ""
        secs = f"{r['seconds']:6.1f} s" if "seconds" in r else " " * 8
        lines.append(f"{r['status']:<13} {secs}  {r['step']}" + (f": {note}" if note else ""))
    c = rep["counts"]
    lines.append(
        f"{c['passed']} passed, {c['failed']} failed, {c['not available']} not available, {c['skipped']} skipped "
        f"in {rep['seconds']:.0f} s on "
        + (f"the CPU ({rep['machine'].get('cpu')}), a rehearsal" if rep.get("target") == "cpu" else rep["machine"].get("gpu", "no GPU"))
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m nastools.gpucheck [--out REPORT.json] [--work DIR] [--rehearse-on-cpu]``:
    0 when no step failed (missing pieces are not failures), 1 otherwise."""
    import argparse
    import tempfile

    ap = argparse.ArgumentParser(prog="nastools.gpucheck", description=__doc__.splitlines()[0])
    ap.add_argument(
        "--out",
        default=None,
        help="report path (default: gpu_check.json in the work folder; make gpu-check "
        "writes benchmarks/results/gpu_check/<cpu-tag>/<date>.json)",
    )
    ap.add_argument("--work", default=None, help="folder for the run, tables and exports (default: a temporary one)")
    ap.add_argument(
        "--rehearse-on-cpu",
        action="store_true",
        help="run the steps with the CPU in the GPU's place (torch and ONNX Runtime on the CPU): a check of the check itself, not a GPU result",
    )
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    missing, info = missing_pieces(), machine()
    # a rehearsal is not held to a GPU's minutes: a loaded 2-core CPU may take a few times as long
    target, slack = ("cpu", REHEARSAL_SLACK) if args.rehearse_on_cpu else ("gpu", 1.0)
    if args.rehearse_on_cpu:
        missing.pop("cuda", None)
    work = Path(args.work or tempfile.mkdtemp(prefix="nastools-gpucheck-"))
    work.mkdir(parents=True, exist_ok=True)
    records = run_steps(STEPS, Context(work, t0 + TIME_LIMIT_S * slack, target=target, slack=slack), missing)
    rep = {**report(records, info, time.monotonic() - t0), "target": target}
    out = Path(args.out) if args.out else work / "gpu_check.json"
    from nastools.io import atomic_write_json

    atomic_write_json(out, rep, indent=1)
    if "cuda" in missing:
        print(f"gpu-check: {missing['cuda']}; every GPU step is not available (report: {out})")
        return 0
    print(format_report(rep))
    print(f"report: {out}")
    return 1 if rep["counts"]["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
