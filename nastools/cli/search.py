"""``nastools search``: hardware-aware evolutionary search under budgets."""

from __future__ import annotations

from typing import Any

import click

from nastools.cli import (
    Output,
    Parsed,
    data_option,
    dataset_option,
    echo_json,
    end_distributed_process,
    format_table,
    json_option,
    main,
    no_progress_option,
    run_option,
)
from nastools.constants import STATISTICS
from nastools.search.evolution import STRATEGIES


def _budget(metric: str) -> Parsed:
    """A budget option's text, checked as it is parsed (a bad one exits 2 naming the option)."""

    def check(text: str) -> list:
        from nastools.search.budget import parse_budgets

        return parse_budgets(**{metric: (text,)})

    return Parsed("budget", check, keep_text=True)


def _check_devices(budgets: list, tables: tuple[tuple[str, str], ...]) -> None:
    """Refuse two names for this CPU among the latency budgets (``cpu=`` and a bare budget:
    write one) and a device given two ``--table`` s."""
    devices = {b.device for b in budgets if b.metric == "latency"}
    if {"cpu", "default"} <= devices:
        raise click.UsageError(
            "--latency: cpu=... and a budget without a device both mean this CPU; write them one way (e.g. --latency 1ms,2ms)"
        )
    seen = [("default" if d == "cpu" else d) for d, _ in tables]
    twice = next((d for d in seen if seen.count(d) > 1), None)
    if twice is not None:
        raise click.UsageError(f"--table: {'this CPU' if twice == 'default' else repr(twice)} is given more than one table; give one")


class TableArg(click.ParamType):
    """``DEVICE=PATH`` or a bare ``PATH.json`` (this CPU's table, device ``default``)."""

    name = "[DEVICE=]PATH"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[str, str]:
        if isinstance(value, tuple):
            return value
        if "=" not in value and not value.endswith(".json"):
            self.fail(f"got {value!r}, expected DEVICE=PATH or a .json file, e.g. --table cpu=latency_tables/fmnist/my.json", param, ctx)
        dev, path = value.split("=", 1) if "=" in value else ("default", value)
        return dev.strip(), path.strip()


def _pick_row(p, budgets, lat_keys):
    """The table row and the JSON record of one pick ``p`` of a search."""
    from nastools.search.runner import format_cost

    # the swept budget of this pick, then the fixed ones every pick also meets
    also = [bb for bb in budgets if bb.cost_name != p.budget["cost"]]
    limits = [(p.budget["cost"], p.budget["limit"])] + [(bb.cost_name, bb.limit) for bb in also]
    budget = ", ".join(f"{k} <= {format_cost(k, v)}" for k, v in limits)
    c = p.candidate
    rec = {"budget": p.budget, "replaced": p.replaced, "verification": p.verification}
    if c is None:
        return (budget, "none fits", "", "", "", "", ""), rec
    pred = ", ".join(format_cost(k, c.costs[k]) for k in lat_keys) or "-"
    meas = ", ".join(format_cost(k, c.costs[f"measured:{k}"]) for k in lat_keys if f"measured:{k}" in c.costs) or "-"
    flops, params = format_cost("flops", c.costs["flops"]), format_cost("params", c.costs["params"])
    rec.update(c.to_dict())
    if p.search_top1 is not None:
        rec["search_top1"] = p.search_top1
    return (budget, c.arch.id, f"{c.top1:.2f}", flops, params, pred, meas), rec


def _timing_line(t: dict) -> str:
    """How many archs the search evaluated (by how many processes) and how long it took."""
    shares = f" by {t['world_size']} processes ({' + '.join(str(r['archs']) for r in t['ranks'])} scored)" if "ranks" in t else ""
    rerank = (
        f"; {t['rerank_archs']} finalists scored again on {t['rerank_images']} validation images in {t['rerank_s']:.0f} s"
        if t.get("rerank_archs")
        else ""
    )
    return (
        f"{t['evaluations']} archs evaluated{shares} in {t['search_s']:.0f} s "
        f"(per arch: BN recalibration {t['recalibration_s']:.2f} s, evaluation {t['evaluation_s']:.2f} s){rerank}"
    )


def _report(rep, budgets, as_json: bool) -> None:
    """Print a search's picks (a table, or JSON), its notes and timing."""
    from nastools.search.latency_cost import verification_note

    lat_keys = sorted({k for b in budgets if b.metric == "latency" for k in [b.cost_name]})
    rows, data_out = [], []
    for p in rep.picks:
        row, rec = _pick_row(p, budgets, lat_keys)
        rows.append(row)
        data_out.append(rec)
    if as_json:
        return echo_json({"picks": data_out, "out_dir": str(rep.out_dir), "timing": rep.timing, "latency": rep.latency})
    stats = "/".join(dict.fromkeys(v["statistic"] for v in rep.latency.values()))
    suffix = f" ({stats})" if stats else ""
    click.echo(format_table(rows, ["budget", "arch", "top-1 %", "FLOPs", "params", f"pred. latency{suffix}", f"measured{suffix}"]))
    for p in rep.picks:
        for k, v in p.verification.items():
            note = verification_note(p.candidate.arch.id, v)
            if note:
                click.echo(f"note: {note} ({k})")
        for r in p.replaced:
            click.echo(
                f"note: {r['id']} measured {r['measured_ms']:.3f} ms > {r['limit_ms']:.3f} ms on {r['cost']}; replaced by the next best"
            )
    click.echo(_timing_line(rep.timing))
    click.echo(f"wrote {rep.out_dir}/pareto.json, pareto.png, best.json")


@main.command("search")
@run_option()
@click.option(
    "--latency", multiple=True, type=_budget("latency"), help="Latency budget(s): 10ms, 800us, 2ms,4ms,8ms or DEVICE=10ms (repeatable)."
)
@click.option("--flops", multiple=True, type=_budget("flops"), help="FLOPs (MACs) budget(s), e.g. 20M or 10M,20M.")
@click.option("--params", multiple=True, type=_budget("params"), help="Parameter budget(s), e.g. 1.5M.")
@click.option(
    "--table",
    "tables",
    multiple=True,
    type=TableArg(),
    metavar="[DEVICE=]PATH",
    help="Latency table to use for DEVICE (a bare PATH: this CPU's) instead of the newest matching one "
    "in the working directory's latency_tables/ or the shipped tables.",
)
@click.option(
    "--statistic",
    type=click.Choice(STATISTICS),
    default=None,
    help="The latency statistic budgets, predictions and measurements are in: median, p10, p90 or p99 (tail "
    "budgets). Default: the table's own, set by nastools profile: the median on GPU (a dedicated device, "
    "as trtexec reports), the p10 on CPU (on a shared machine the latency other processes leave "
    "untouched, reproducible).",
)
@click.option("--population", default=16, show_default=True, type=click.IntRange(2, 10000))
@click.option("--generations", default=6, show_default=True, type=click.IntRange(0, 10000))
@click.option("--strategy", default="archive", show_default=True, type=click.Choice(STRATEGIES))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option(
    "--calib-images",
    default=None,
    type=click.IntRange(1),
    help="Training images for BN recalibration per arch.  [default: 1000; image folders: 2000, 16384 for imported AttentiveNAS/AlphaNet runs]",
)
@click.option("--eval-images", default=2000, show_default=True, type=click.IntRange(1), help="Validation images evaluated per arch.")
@click.option(
    "--rerank",
    default=4,
    show_default=True,
    type=click.IntRange(0),
    help="Score the N best archs of each budget again on more validation images and pick by that score (0: pick by the search's).",
)
@click.option(
    "--rerank-images",
    default=None,
    type=click.IntRange(1),
    help="Validation images the finalists are scored on.  [default: all]",
)
@click.option("--workers", default=0, show_default=True, type=click.IntRange(0), help="Data loader processes (image folders).")
@click.option(
    "--predictor/--no-predictor",
    default=True,
    show_default=True,
    help="Screen offspring with an accuracy predictor fitted on the archs evaluated so far (4x bred, the best-ranked evaluated).",
)
@click.option(
    "--no-measure",
    is_flag=True,
    help="Do not measure the chosen archs end to end (by default they are timed with 6 of the table's calibration subnets "
    "and held to their budgets at the machine speed the predictions assume).",
)
@click.option(
    "--no-drift", is_flag=True, help="Use a latency table made here as profiled, without rescaling it to this machine's speed now."
)
@click.option(
    "--device",
    default="cpu",
    show_default=True,
    help="Where subnets are scored: cpu or cuda (under torchrun, each process on cuda:LOCAL_RANK).",
)
@click.option("--fresh", is_flag=True, help="Ignore a saved search state and accuracy cache.")
@click.option("--out", "out_dir", default=None, help="Output folder (default: <run>/search).")
@dataset_option("Dataset for BN recalibration and validation  [default: the run's]")
@data_option()
@no_progress_option
@json_option
def search(
    run,
    latency,
    flops,
    params,
    tables,
    statistic,
    population,
    generations,
    strategy,
    seed,
    calib_images,
    eval_images,
    rerank,
    rerank_images,
    workers,
    predictor,
    no_measure,
    no_drift,
    device,
    fresh,
    out_dir,
    dataset,
    data,
    no_progress,
    as_json,
) -> None:
    """Search the supernet of a run for the most accurate subnets under budgets.

    Writes <run>/search/pareto.json, pareto.png and best.json (the pick for the first budget).
    Under torchrun, each process scores its share of every generation and rank 0 writes the
    outputs: the same result as one process with the same --seed.

    \b
    Examples: nastools search --latency 10ms
              nastools search --flops 10M,20M,30M --generations 10
              nastools search --latency cpu=2ms --latency gpu=0.5ms --table gpu=latency_tables/fmnist/x.json
              torchrun --nproc-per-node 8 -m nastools -- search --run imnet --flops 400M --device cuda
    """
    from nastools.search.budget import parse_budgets
    from nastools.search.runner import SearchOptions, run_search

    budgets = parse_budgets(latency, flops, params)
    _check_devices(budgets, tables)
    table_map = dict(tables)
    opts = SearchOptions(
        population=population,
        generations=generations,
        strategy=strategy,
        seed=seed,
        calib_images=calib_images,
        eval_images=eval_images,
        rerank=rerank,
        rerank_images=rerank_images,
        workers=workers,
        predictor=predictor,
        dataset=dataset,
        data=data,
        measure=not no_measure,
        drift=not no_drift,
        statistic=statistic,
        device=device,
    )
    rep = run_search(
        run, budgets, tables=table_map, options=opts, fresh=fresh, out_dir=out_dir, progress=not no_progress, log=Output(as_json).log
    )
    if rep.rank == 0:  # a distributed search: rank 0 reports
        _report(rep, budgets, as_json)
    end_distributed_process()
