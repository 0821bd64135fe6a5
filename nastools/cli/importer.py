"""``nastools import``: published supernets as nastools runs."""

from __future__ import annotations

from pathlib import Path

import click

from nastools.cli import echo_json, json_option, main


@main.group("import")
def import_group() -> None:
    """Turn a published supernet checkpoint into a nastools run."""


@import_group.command("attentivenas")
@click.argument("path", metavar="CHECKPOINT")
@click.option("--run", default="attentivenas", show_default=True, help="Run to create (runs/NAME) or folder.")
@click.option("--force", is_flag=True, help="Replace the run's existing supernet.pt.")
@click.option(
    "--image-recipe",
    type=click.Choice(["attentivenas", "alphanet"]),
    default=None,
    help="Whose evaluation preprocessing nastools eval uses for the run (they differ in the resize "
    "interpolation).  [default: read from the checkpoint's training config]",
)
@json_option
def import_attentivenas_cmd(path: str, run: str, force: bool, image_recipe: str | None, as_json: bool) -> None:
    """Import an AttentiveNAS or AlphaNet supernet (e.g. attentive_nas_pretrained.pth.tar)
    into runs/NAME/supernet.pt of the attentivenas space, with the reference Pareto models
    as arch files in runs/NAME/archs/ (a0.json ... a6.json; they also ship with nastools, so
    --arch a0.json finds them from any folder).

    The file is read without running code from it (its training config becomes plain data);
    every tensor is mapped by name and shape, and nothing is written unless all map.
    Tensors the reference keeps but no subnet uses are listed (--json: by name).

    \b
    Example: nastools import attentivenas attentive_nas_pretrained.pth.tar --run attentivenas
             nastools eval --run attentivenas --arch a0.json \\
                 --dataset imagefolder --data ~/imagenet
    """
    from nastools.importers.attentivenas import import_attentivenas

    report = import_attentivenas(path, run, force=force, image_recipe=image_recipe)
    if as_json:
        return echo_json(report.to_dict())
    tracking = sum(".bn_tracking." in n for n in report.unused)
    layout = f"'{report.layout}' entry" if report.layout else "bare state_dict"
    prefix = f", prefix {report.prefix!r} removed" if report.prefix else ""
    click.echo(f"read {report.source} ({layout}{prefix}): {report.mapped} tensors mapped onto the attentivenas supernet")
    click.echo(
        f"left out {len(report.unused)} tensors no subnet uses: {tracking} BatchNorm tracking buffers, "
        f"{len(report.unused) - tracking} shortcut convolutions of blocks after a stage's first"
    )
    click.echo(f"set to zero (absent there, same function): {', '.join(report.zeroed)}")
    archs = f" and {len(report.archs)} arch files in {Path(report.archs[0]).parent}" if report.archs else ""
    click.echo(f"wrote {report.checkpoint}{archs}; nastools eval reads image folders for it as {report.image_recipe}'s evaluation does")
    if report.config is None and image_recipe is None:
        click.echo(
            "note: the file has no training config to tell an AttentiveNAS from an AlphaNet supernet by; "
            "for AlphaNet's, import it again with --image-recipe alphanet --force"
        )


__all__ = ["import_group", "import_attentivenas_cmd"]
