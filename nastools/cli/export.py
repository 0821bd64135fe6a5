"""``nastools export`` and ``nastools bench``: deployable models and their latency."""

from __future__ import annotations

from typing import Any

import click

from nastools.cli import Parsed, data_option, dataset_option, echo_json, json_option, main, no_progress_option, run_option
from nastools.constants import BACKENDS, FORMATS, PRECISIONS
from nastools.errors import NastoolsError


class BatchSize(click.ParamType):
    """A batch size >= 1, or ``dynamic`` (None): a dynamic batch axis."""

    name = "batch"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int | None:
        if value is None or isinstance(value, int):
            return value
        if str(value).strip().lower() == "dynamic":
            return None
        try:
            n = int(value)
        except ValueError:
            n = 0
        if n < 1:
            self.fail(f"got {value!r}, expected a positive integer or 'dynamic'", param, ctx)
        return n


def _duration(option: str) -> Parsed:
    """A bench duration (``200ms``, ``3s``), checked when the command line is parsed."""

    def check(text: str) -> None:
        from nastools.export.bench import parse_duration

        parse_duration(text, option)

    return Parsed("duration", check, keep_text=True)


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


@main.command("export")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="onnx", show_default=True, help="Model format.")
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default="fp32",
    show_default=True,
    help="fp16/int8: ONNX graph or TensorRT engine in that precision.",
)
@click.option("--arch", "arch", default=None, help="Arch JSON file  [default: the run's search/best.json]")
@run_option()
@click.option("--batch", default="dynamic", show_default=True, type=BatchSize(), help="Batch size, or 'dynamic' for a dynamic batch axis.")
@click.option("--max-batch", default=256, show_default=True, type=click.IntRange(1), help="TensorRT: largest batch of the dynamic profile.")
@click.option(
    "--out", type=click.Path(dir_okay=False), default=None, help="Output file  [default: runs/NAME/export/<arch-id>[-precision].<ext>]"
)
@dataset_option("Dataset for BN recalibration, calibration and parity  [default: the run's, else fashion-mnist]")
@data_option()
@click.option(
    "--calib-images",
    default=None,
    type=click.IntRange(1),
    help="Training images for BN recalibration (and int8 calibration, at most 1000).  "
    "[default: 2000; 16384 for imported AttentiveNAS/AlphaNet runs on image folders]",
)
@click.option("--parity-images", default=1000, show_default=True, type=click.IntRange(1), help="Test images for the parity check.")
@click.option("--eval-images", default=None, type=click.IntRange(1), help="Test images for top-1  [default: all]")
@click.option("--workspace", default=1024, show_default=True, type=click.IntRange(1), help="TensorRT workspace limit in MiB.")
@click.option(
    "--timing-cache",
    type=click.Path(dir_okay=False),
    default=None,
    help="TensorRT timing cache file  [default: timing.cache beside the engine]",
)
@no_progress_option
@json_option
def export_cmd(
    fmt,
    precision,
    arch,
    run,
    batch,
    max_batch,
    out,
    dataset,
    data,
    calib_images,
    parity_images,
    eval_images,
    workspace,
    timing_cache,
    no_progress,
    as_json,
) -> None:
    """Export a subnet of a run as a verified ONNX model, TensorRT engine or TorchScript.

    Writes the model and a JSON sidecar (<model>.json) with the arch, FLOPs, precision,
    versions, top-1 accuracy and the parity of the written model with PyTorch on real test
    images. Exits 1 if the parity check fails.

    \b
    Examples:
      nastools export --run fmnist --arch arch.json
      nastools export --run fmnist --precision int8
      nastools export --run fmnist --format trt --precision fp16 --max-batch 64
    """
    from nastools.export import export_subnet
    from nastools.export.parity import describe_parity

    result = export_subnet(
        run,
        arch,
        format=fmt,
        precision=precision,
        batch=batch,
        out=out,
        dataset=dataset,
        data=data,
        calib_images=calib_images,
        parity_images=parity_images,
        eval_images=eval_images,
        max_batch=max_batch,
        workspace=workspace << 20,
        timing_cache=timing_cache,
        progress=not (as_json or no_progress),
    )
    s = result.sidecar
    if as_json:
        echo_json({"path": str(result.path), "sidecar": str(result.sidecar_path), **s})
    else:
        p, acc = s["parity"], s["accuracy"]
        click.echo(f"wrote {result.path} and {result.sidecar_path.name}")
        click.echo(
            f"arch {s['arch_id']} ({s['space']['name']}, {s['flops'] / 1e6:.2f}M FLOPs, {s['params'] / 1e6:.2f}M params), "
            f"{s['precision']}, batch {s['batch']}, input {'x'.join(map(str, s['input']['shape']))}"
        )
        if "onnx" in s:
            ops = ", ".join(f"{k} {v}" for k, v in s["onnx"]["ops"].items())
            click.echo(f"onnx opset {s['onnx']['opset']}, checker passed, no BatchNormalization/slicing: {ops}")
        if "tensorrt" in s:
            t = s["tensorrt"]
            click.echo(f"TensorRT {t['tensorrt']} on {t['gpu']}, profile {t['profile']['min']}/{t['profile']['opt']}/{t['profile']['max']}")
        click.echo(
            f"parity vs PyTorch on {p['images']} {acc['split']} images ({p['runtime']}): max |diff| {p['max_abs_diff']:.3g}, "
            f"top-1 agreement {_pct(p['top1_agreement'])} ({'passed' if p['passed'] else 'FAILED'})"
        )
        line = f"top-1 on {acc['images']} {acc['split']} images: PyTorch {_pct(acc['torch_top1'])}, exported {_pct(acc['model_top1'])}"
        if "fp32_top1" in acc:
            line += f" (fp32 ONNX {_pct(acc['fp32_top1'])}, int8 drop {acc['drop_points']:+.2f} points)"
        click.echo(line)
        if "note" in acc:
            click.echo(f"note: {acc['note']}")
    if not result.passed:
        p = s["parity"]
        raise NastoolsError(f"parity check failed for {result.path}: {describe_parity(p)}; see {result.sidecar_path}")


@main.command("bench")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option(
    "--backend", type=click.Choice(BACKENDS), default=None, help="Runtime  [default: from the extension: .onnx ort, .engine trt, .pt torch]"
)
@click.option(
    "--batch",
    default=1,
    show_default=True,
    type=click.IntRange(1, 4096),
    help="Batch size of each inference (refused if it would not fit in memory).",
)
@click.option("--threads", default=None, type=click.IntRange(1, 1024), help="CPU threads (ort intra-op, torch)  [default: the runtime's]")
@click.option(
    "--warmup",
    default="200ms",
    show_default=True,
    type=_duration("--warmup"),
    help="Warm-up time before timing, with a unit: us, ms, s, min or h (e.g. 200ms, 1s; 0s for none; at most 1h).",
)
@click.option(
    "--duration",
    default="3s",
    show_default=True,
    type=_duration("--duration"),
    help="Timed duration, with a unit (e.g. 3s, 500ms; at most 1h), and at least 10 inferences.",
)
@json_option
def bench_cmd(model, backend, batch, threads, warmup, duration, as_json) -> None:
    """Time MODEL like trtexec: min, p10, mean, median, p90, p95, p99, max latency and throughput.

    \b
    Examples:
      nastools bench runs/fmnist/export/1a2b3c4d5e.onnx --threads 1
      nastools bench model.engine --batch 32 --duration 10s --json
    """
    from nastools.export.bench import bench_model

    r = bench_model(model, backend=backend, batch=batch, threads=threads, warmup=warmup, duration=duration)
    if as_json:
        return echo_json(r.to_dict())
    click.echo(f"model       {r.model} ({r.backend}, input {'x'.join(map(str, r.input_shape))}, threads {r.threads or 'default'})")
    click.echo(f"iterations  {r.iterations} in {r.duration_s:.2f} s after {r.warmup_s * 1e3:.0f} ms warm-up")
    click.echo(
        f"latency     min {r.min_ms:.3f} ms, p10 {r.p10_ms:.3f} ms, mean {r.mean_ms:.3f} ms, median {r.median_ms:.3f} ms, "
        f"p90 {r.p90_ms:.3f} ms, p95 {r.p95_ms:.3f} ms, p99 {r.p99_ms:.3f} ms, max {r.max_ms:.3f} ms"
    )
    click.echo(f"throughput  {r.throughput_qps:.1f} qps ({r.throughput_ips:.1f} images/s)")
