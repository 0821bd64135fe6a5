"""``nastools profile``: build (or resume) a device's latency table, optionally validate it."""

from __future__ import annotations

import click

from nastools.cli import IntList, device_option, echo_json, format_table, json_option, main, no_progress_option
from nastools.constants import BACKENDS, PRECISIONS, STATISTICS


@main.command("profile")
@click.option("--space", default="fmnist", show_default=True, help="Space name or YAML path.")
@device_option()
@click.option(
    "--backend",
    type=click.Choice(BACKENDS),
    default=None,
    help="Default: ort on CPU; on GPU trt if installed, else ort (CUDA), else torch.",
)
@click.option("--precision", type=click.Choice(PRECISIONS), default="fp32", show_default=True)
@click.option("--batch", default=1, show_default=True, type=click.IntRange(1, 4096))
@click.option("--threads", default=1, show_default=True, type=click.IntRange(1, 1024), help="Intra-op threads (CPU).")
@click.option("--resolutions", type=IntList(), default=None, help="Only these input resolutions, e.g. 224 (default: all of the space's).")
@click.option(
    "--out",
    default=None,
    help="Table path (default: latency_tables/<space>/<device>__<backend>__<precision>__b<batch>.json in the working directory).",
)
@click.option(
    "--calibrate",
    "calibration_runs",
    default=40,
    show_default=True,
    type=click.IntRange(6, 1000),
    help="End-to-end runs to fit the model-level overhead on.",
)
@click.option(
    "--validate",
    "validate_runs",
    default=0,
    show_default=True,
    type=click.IntRange(0, 10000),
    help="Measure N held-out random subnets end to end and report the table's error.",
)
@click.option(
    "--max-time", default=1.0, show_default=True, type=click.FloatRange(0.01, 60.0), help="Time cap per block measurement, seconds."
)
@click.option(
    "--statistic",
    type=click.Choice(STATISTICS),
    default=None,
    help="The latency statistic predictions add up: median, p10, p90 or p99. Default: the median on GPU (a "
    "dedicated device, as trtexec reports), the p10 on CPU (on a shared machine the latency other "
    "processes leave untouched, reproducible). Every entry records all four; a search may use another.",
)
@no_progress_option
@json_option
def profile_cmd(
    space,
    device,
    backend,
    precision,
    batch,
    threads,
    resolutions,
    out,
    calibration_runs,
    validate_runs,
    max_time,
    statistic,
    no_progress,
    as_json,
) -> None:
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

    def announce(table) -> None:  # once every input is checked: an error is then the only line
        click.echo(
            f"profiling {sp.name} on {info['device']} with {info['backend']} {info['version']} "
            f"({precision}, batch {batch}, {threads} thread(s)) into {table.path}",
            err=True,
        )

    table = profile(
        sp,
        be,
        batch=batch,
        resolutions=resolutions,
        out=out,
        protocol=Protocol(max_s=max_time),
        calibration_runs=calibration_runs,
        validate_runs=validate_runs,
        progress=not no_progress,
        announce=announce,
        statistic=statistic,
    )
    if as_json:
        return echo_json({"table": str(table.path), "meta": table.meta, "blocks": len(table), **table.summary()})
    click.echo(f"wrote {table.path}: {table.describe()}")
    line = table.describe_calibration()
    if line:
        click.echo(line)
    v = table.validation_report()
    if v:
        rows = [
            (
                name,
                f"{m['mape_pct']:.1f}%",
                f"{m['rmse_ms']:.3f}",
                f"{m['within_5_pct']:.0f}%",
                f"{m['within_10_pct']:.0f}%",
                f"{m['kendall_tau']:.3f}",
            )
            for name, m in v["predictors"]
        ]
        click.echo(f"validation on {v['n']} held-out subnets (noise: median spread of repeated measurements {v['noise_pct']:.1f}%):")
        click.echo(format_table(rows, ["predictor", "MAPE", "RMSE ms", "±5%", "±10%", "Kendall tau"]))
        if v["pass_tau"] is not None:
            click.echo(
                f"two measurement passes (interleaved sets of rounds) of the same subnets agree on their order with Kendall tau "
                f"{v['pass_tau']:.3f} (how far the measured order itself is reproducible)"
            )
        if v["plot"]:
            click.echo(f"scatter plot: {v['plot']}")
