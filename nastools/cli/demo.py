"""``nastools demo``: the whole job on the built-in default."""

from __future__ import annotations

import click

from nastools.cli import echo_json, json_option, main


@main.command("demo")
@click.option("--run", default="demo", show_default=True, help="Run name (runs/NAME) for everything the demo writes.")
@click.option("--space", default="fmnist", show_default=True, help="Space name or YAML path.")
@click.option("--train-time", default="6m", show_default=True, help="Cap on training time, e.g. 6m or 90s.")
@click.option("--quick", is_flag=True, help="Tiny budgets in every stage: a smoke run (what CI runs).")
@click.option("--fresh", is_flag=True, help="Start over instead of reusing finished stages.")
@click.option("--seed", default=0, show_default=True, type=int)
@json_option
def demo(run: str, space: str, train_time: str, quick: bool, fresh: bool, seed: int, as_json: bool) -> None:
    """Train, profile, search, export and bench on the built-in default, printing each
    stage and its time. A second call reuses the finished stages (unless --fresh).

    \b
    Examples: nastools demo
              nastools demo --fresh --train-time 8m
    """
    from nastools.demo import DemoSettings, run_demo
    from nastools.train.trainer import parse_duration

    parse_duration(train_time)  # a bad --train-time is an error before the first stage starts
    settings = DemoSettings.quick(space, run) if quick else DemoSettings(space=space, run=run, train_time=train_time)
    if quick and click.get_current_context().get_parameter_source("train_time") != click.core.ParameterSource.DEFAULT:
        settings.train_time = train_time  # --quick trains 4 steps, which a shorter cap can still cut
    settings.seed = seed
    log = (lambda m: click.echo(m, err=True)) if as_json else click.echo
    summary = run_demo(settings, fresh=fresh, log=log)
    if as_json:
        echo_json(summary)
