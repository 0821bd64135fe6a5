"""``nastools profile``: build (or resume) a device's latency table, optionally validate it."""

from __future__ import annotations

import click

from nastools.cli import echo_json, format_table, json_option, main


def _resolutions(text: str | None) -> list[int] | None:
    if not text:
        return None
    from nastools.errors import NastoolsError

    try:
        return [int(v) for v in text.replace(",", " ").split()]  # "28,32", "28, 32" and "28 32"
    except ValueError:
        raise NastoolsError(f"--resolutions: got {text!r}, expected comma-separated integers such as 224 or 28,32") from None


@main.command("profile")
@click.option("--space", default="fmnist", show_default=True, help="Space name or YAML path.")
@click.option("--device", type=click.Choice(["cpu", "gpu"]), default="cpu", show_default=True)
@click.option("--backend", type=click.Choice(["ort", "trt", "torch"]), default=None,
              help="Default: ort on CPU; on GPU trt if installed, else ort (CUDA), else torch.")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default="fp32", show_default=True)
@click.option("--batch", default=1, show_default=True, type=click.IntRange(1, 4096))
@click.option("--threads", default=1, show_default=True, type=click.IntRange(1, 1024), help="Intra-op threads (CPU).")
@click.option("--resolutions", default=None, help="Only these input resolutions, e.g. 224 (default: all of the space's).")
@click.option("--out", default=None, help="Table path (default: latency_tables/<space>/<device>__<backend>__<precision>__b<batch>.json).")
@click.option("--calibrate", "calibration_runs", default=40, show_default=True, type=click.IntRange(6, 1000),
              help="End-to-end runs to fit the model-level overhead on.")
@click.option("--validate", "validate_runs", default=0, show_default=True, type=click.IntRange(0, 10000),
              help="Measure N held-out random subnets end to end and report the table's error.")
@click.option("--max-time", default=1.0, show_default=True, type=click.FloatRange(0.01, 60.0),
              help="Time cap per block measurement, seconds.")
@json_option
def profile_cmd(space, device, backend, precision, batch, threads, resolutions, out, calibration_runs, validate_runs,
                max_time, as_json) -> None:
    """Profile this machine into a latency lookup table (resumable: rerun to continue).

    \b
    Examples: nastools profile
              nastools profile --space attentivenas --resolutions 224 --validate 100
              nastools profile --device gpu --precision fp16
    """
    from nastools.latency import Protocol, make_backend, profile
    from nastools.space import load_space

    sp = load_space(space)
    be = make_backend(device, backend, precision, threads)
    info = be.describe()
    click.echo(f"profiling {sp.name} on {info['device']} with {info['backend']} {info['version']} "
               f"({precision}, batch {batch}, {threads} thread(s))", err=True)
    table = profile(sp, be, batch=batch, resolutions=_resolutions(resolutions), out=out,
                    protocol=Protocol(max_s=max_time), calibration_runs=calibration_runs,
                    validate_runs=validate_runs, progress=True)
    result = {"table": str(table.path), "meta": table.meta, "blocks": len(table),
              "calibration": {k: v for k, v in table.calibration.items() if k != "runs"},
              "validation": {k: v for k, v in table.validation.items() if k != "runs"}}
    if as_json:
        return echo_json(result)
    click.echo(f"wrote {table.path}: {table.describe()}")
    c = table.calibration
    if "scale" in c:
        click.echo(f"calibration on {len(c.get('runs', []))} subnets: predict = {c['scale']:.3f} x block sum "
                   f"{c['per_block_ms'] * 1e3:+.1f} us/block {c['per_mparam_ms'] * 1e3:+.1f} us/M weights "
                   f"{c['per_melem_ms'] * 1e3:+.1f} us/M block input elements "
                   f"{c['per_mexpanded_ms'] * 1e3:+.1f} us/M expanded elements {c['offset_ms'] * 1e3:+.1f} us")
    v = table.validation
    if v.get("table"):
        rows = []
        for name, key in (("latency table", "table"), ("FLOPs linear, fitted on these runs", "flops_linear"),
                          ("FLOPs linear, fitted on the calibration runs", "flops_linear_calibration")):
            m = v.get(key)
            if m is None:
                continue
            rows.append((name, f"{m['mape_pct']:.1f}%", f"{m['rmse_ms']:.3f}", f"{m['within_5_pct']:.0f}%",
                         f"{m['within_10_pct']:.0f}%", f"{m['kendall_tau']:.3f}"))
        click.echo(f"validation on {v['table']['n']} held-out subnets "
                   f"(noise: median spread of repeated measurements {v['noise'].get('median_spread_pct', float('nan')):.1f}%):")
        click.echo(format_table(rows, ["predictor", "MAPE", "RMSE ms", "±5%", "±10%", "Kendall tau"]))
        if "pass_kendall_tau" in v["noise"]:
            click.echo(f"two measurement passes (interleaved sets of rounds) of the same subnets agree on their order with Kendall tau "
                       f"{v['noise']['pass_kendall_tau']:.3f} (how far the measured order itself is reproducible)")
        if v.get("plot"):
            click.echo(f"scatter plot: {table.path.with_name(v['plot'])}")
