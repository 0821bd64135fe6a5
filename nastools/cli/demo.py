"""``nastools demo``: the whole job on the built-in default."""

from __future__ import annotations

import sys

import click

from nastools.cli import Parsed, echo_json, json_option, main, no_progress_option


def _train_time(text: str) -> float:
    from nastools.demo import parse_train_time

    return parse_train_time(text)


@main.command("demo")
@click.option("--run", default="demo", show_default=True, help="Run name (runs/NAME) for everything the demo writes.")
@click.option("--space", default="fmnist", show_default=True, help="Space name or YAML path.")
@click.option(
    "--train",
    "--train-time",
    "train_time",
    default=None,
    metavar="DURATION",
    type=Parsed("duration", _train_time, keep_text=True),
    help="Train a fresh supernet for at most this long, with a unit (e.g. 6m, 90s, 1.5h), instead of searching the shipped one.",
)
@click.option("--quick", is_flag=True, help="Tiny budgets in every stage: a smoke run (what CI runs).")
@click.option("--fresh", is_flag=True, help="Start over instead of reusing finished stages.")
@click.option("--seed", default=0, show_default=True, type=int)
@no_progress_option
@json_option
def demo(run: str, space: str, train_time: str | None, quick: bool, fresh: bool, seed: int, no_progress: bool, as_json: bool) -> None:
    """Search the shipped Fashion-MNIST supernet (or train one with --train), profile this
    CPU, search under a latency and a FLOPs budget, export and bench the pick, printing each
    stage and its time. A second call reuses the finished stages made from the same space
    and settings (unless --fresh) and redoes the others. Ctrl-C (or SIGTERM) stops the demo
    after the stage it interrupts (exit 130, or 143): the same command continues from that
    stage, resuming an interrupted training from its checkpoint.

    \b
    Examples: nastools demo
              nastools demo --fresh --train 8m
    """
    from nastools.demo import DemoInterrupted, DemoSettings, run_demo

    settings = DemoSettings.quick(space, run) if quick else DemoSettings(space=space, run=run, train_time=train_time)
    if quick and train_time is not None:
        settings.train_time = train_time  # --quick trains 4 steps, which a shorter cap can still cut
    settings.seed = seed
    settings.progress = not no_progress
    log = (lambda m: click.echo(m, err=True)) if as_json else click.echo
    try:
        summary = run_demo(settings, fresh=fresh, log=log)
    except DemoInterrupted as exc:
        click.echo(exc.message, err=True)
        sys.exit(exc.exit_code)
    if as_json:
        echo_json(summary)
