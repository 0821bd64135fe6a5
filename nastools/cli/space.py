"""``nastools space``: list, show, sample and cost search spaces and archs."""

from __future__ import annotations

import click

from nastools.cli import Parsed, echo_json, format_table, json_option, main
from nastools.space import SearchSpace, format_count, list_spaces, load_arch, load_space, parse_count


def _summary(sp: SearchSpace) -> dict:
    lo, hi = sp.min_arch(), sp.max_arch()
    return {
        "name": sp.name,
        "description": sp.description,
        "fingerprint": sp.fingerprint,
        "num_archs": sp.num_archs,
        "flops": [sp.flops(lo), sp.flops(hi)],
        "params": [sp.params(lo), sp.params(hi)],
        "resolutions": list(sp.resolutions),
        "stages": len(sp.stages),
    }


def _values(values) -> str:
    return "|".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


@main.group("space")
def space_group() -> None:
    """Inspect search spaces and archs: list, show, sample, cost."""


@space_group.command("list")
@json_option
def space_list(as_json: bool) -> None:
    """List the packaged search spaces.

    \b
    Example: nastools space list
    """
    rows = [_summary(load_space(n)) for n in list_spaces()]
    if as_json:
        return echo_json(rows)
    click.echo(
        format_table(
            [
                (
                    r["name"],
                    f"{r['num_archs']:.3g}",
                    f"{format_count(r['flops'][0])}-{format_count(r['flops'][1])}",
                    f"{format_count(r['params'][0])}-{format_count(r['params'][1])}",
                    r["description"],
                )
                for r in rows
            ],
            ["space", "subnets", "FLOPs (MACs)", "params", "description"],
        )
    )


@space_group.command("show")
@click.argument("space")
@json_option
def space_show(space: str, as_json: bool) -> None:
    """Show every choice of SPACE (a packaged name or a YAML path).

    \b
    Example: nastools space show attentivenas
    """
    sp = load_space(space)
    info = _summary(sp)
    if as_json:
        return echo_json({**info, "definition": sp.definition()})
    click.echo(f"space {sp.name} ({sp.fingerprint}): {sp.description}")
    click.echo(
        f"input {sp.input_channels}ch, {sp.num_classes} classes, act {sp.act}, "
        f"SE ratio {sp.se_ratio:g} gate {sp.se_gate}, dropout {sp.dropout:g}, drop-connect {sp.drop_connect:g}"
    )
    rows = [
        ("resolution", _values(sp.resolutions), "", "", "", "", ""),
        ("stem", _values(sp.stem_widths), "1", str(sp.stem_kernel), "", str(sp.stem_stride), ""),
    ]
    for s in sp.stages:
        rows.append(
            (s.name, _values(s.widths), _values(s.depths), _values(s.kernels), _values(s.expands), str(s.stride), "yes" if s.se else "")
        )
    rows.append(("head", _values(sp.head_widths), "", "", f"x{sp.head_expand}", "", ""))
    click.echo(format_table(rows, ["stage", "width", "depth", "kernel", "expand", "stride", "SE"]))
    click.echo(f"distinct subnets: {sp.num_archs:,}")
    click.echo(f"FLOPs (MACs): {format_count(info['flops'][0])} (min) to {format_count(info['flops'][1])} (max)")
    click.echo(f"params: {format_count(info['params'][0])} (min) to {format_count(info['params'][1])} (max)")


@space_group.command("sample")
@click.argument("space")
@click.option("-n", "--num", default=5, show_default=True, type=click.IntRange(1, 1_000_000), help="How many archs.")
@click.option("--flops", "flops", type=Parsed("count", parse_count), default=None, help="Sample near this FLOPs target, e.g. 20M.")
@click.option("--tolerance", default=0.05, show_default=True, type=click.FloatRange(0.001, 1.0), help="Relative FLOPs window.")
@click.option("--seed", default=None, type=int, help="Random seed (default: fresh).")
@json_option
def space_sample(space: str, num: int, flops: float | None, tolerance: float, seed: int | None, as_json: bool) -> None:
    """Sample archs of SPACE: one Arch JSON line each, with id, FLOPs and params.

    \b
    Examples: nastools space sample fmnist -n 5
              nastools space sample fmnist -n 3 --flops 20M --seed 0 > archs.jsonl
    """
    import random

    sp = load_space(space)
    rng = random.Random(seed)
    out = []
    for _ in range(num):
        arch = sp.sample_near_flops(flops, rng, tolerance=tolerance) if flops else sp.sample(rng)
        f, p = sp.cost(arch)
        out.append({**arch.to_dict(), "id": arch.id, "flops": f, "params": p})
    if as_json:
        return echo_json(out)
    import json

    for rec in out:
        click.echo(json.dumps(rec))


@space_group.command("cost")
@click.argument("arch_file", metavar="ARCH.json")
@click.option("--space", default=None, help="Space name or YAML path (default: the one the arch names).")
@json_option
def space_cost(arch_file: str, space: str | None, as_json: bool) -> None:
    """FLOPs, params and a per-stage summary of one arch.

    \b
    Example: nastools space cost arch.json
    """
    arch = load_arch(arch_file, space)
    sp = load_space(space if space is not None else arch.space)
    flops, params = sp.cost(arch)
    rows = sp.cost_breakdown(arch)
    if as_json:
        return echo_json({"id": arch.id, "space": sp.name, "flops": flops, "params": params, "stages": rows, "arch": arch.to_dict()})
    click.echo(f"arch {arch.id} ({sp.name}, {arch.resolution}px): FLOPs {format_count(flops)} (MACs), params {format_count(params)}")
    click.echo(
        format_table(
            [(r["stage"], r["blocks"], r["in"], r["out"], format_count(r["flops"]), format_count(r["params"])) for r in rows],
            ["stage", "blocks", "input", "output", "FLOPs", "params"],
        )
    )


__all__ = ["space_group"]
