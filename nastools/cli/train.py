"""``nastools train``, ``nastools eval`` and ``nastools curve``: supernet training, subnet
evaluation and learning curves."""

from __future__ import annotations

import sys

import click

from nastools.augment import AUGMENTS
from nastools.cli import Parsed, echo_json, end_distributed_process, json_option, main, no_progress_option
from nastools.data import DATASETS
from nastools.errors import NastoolsError

#: exit status of a run stopped by a signal, as a shell reports one (128 + the signal's number)
SIGNAL_EXIT = {"signal SIGINT": 130, "signal SIGTERM": 143}


def parse_cli_duration(text: str) -> float:
    """A duration option's text: a number with its unit ('10m', '90s', '1.5h'); a bare
    number or an empty text is a one-line error."""
    from nastools.train.trainer import parse_duration

    if not text.strip():
        raise NastoolsError("empty; give a duration such as 10m, or leave the option out")
    return parse_duration(text, bare=None)


#: ``--time-budget``, ``--checkpoint-every``, ``demo --train``: checked as the options are parsed
DURATION = Parsed("duration", parse_cli_duration, keep_text=True)


@main.command("train")
@click.option("--space", default=None, help="Space name or YAML path.  [default: fmnist]")
@click.option("--dataset", type=click.Choice(DATASETS), default=None, help="[default: fashion-mnist]")
@click.option("--data", default=None, help="Dataset folder (default: Debian's Fashion-MNIST files).")
@click.option("--run", "run", default="default", show_default=True, help="Run name (runs/NAME) or folder.")
@click.option("--epochs", type=click.FloatRange(min=0, min_open=True, max=100_000), default=None, help="[default: 5]")
@click.option("--batch-size", type=click.IntRange(1), default=None, help="Global batch size.  [default: 128]")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True, max=100), default=None, help="Peak learning rate.  [default: 0.1]")
@click.option(
    "--sampler",
    type=click.Choice(["attentive-best", "attentive-worst", "uniform"]),
    default=None,
    help="How the middle subnets are picked.  [default: attentive-best]",
)
@click.option("--candidates", type=click.IntRange(1), default=None, help="Archs scored per attentive pick (K).  [default: 3]")
@click.option("--num-archs", type=click.IntRange(2), default=None, help="Subnets per step: max + middles + min.  [default: 4]")
@click.option(
    "--rank-by",
    type=click.Choice(["loss", "predictor"]),
    default=None,
    help="Score candidates by minibatch loss or an accuracy predictor.  [default: loss]",
)
@click.option("--predictor", default=None, help="Arch JSON lines with top1 to fit the predictor on (--rank-by predictor).")
@click.option(
    "--score-images", type=click.IntRange(1), default=None, help="Minibatch slice that scores attentive candidates.  [default: 16]"
)
@click.option(
    "--augment",
    type=click.Choice(AUGMENTS),
    default=None,
    help="Training-image augmentation; auto: random crop + flip (Fashion-MNIST, CIFAR-10), "
    "RandomResizedCrop + flip + AutoAugment (image folders).  [default: auto]",
)
@click.option(
    "--precision",
    type=click.Choice(["fp32", "bf16"]),
    default=None,
    help="Arithmetic of the training steps: bf16 is mixed precision (autocast; measured 1.1x as fast on a CPU "
    "with AMX, and a supernet trained so scored lower; docs/train.md).  [default: fp32]",
)
@click.option("--seed", type=int, default=None, help="[default: 0]")
@click.option("--resume", is_flag=True, help="Continue the run's checkpoint exactly (optionally with more --epochs).")
@click.option("--device", default=None, help="cpu or cuda.  [default: cpu]")
@click.option("--workers", type=click.IntRange(0), default=None, help="Data loader processes (image folders).  [default: 0]")
@click.option("--steps", type=click.IntRange(1), default=None, help="Stop once the run has done N steps in all (checkpointed).")
@click.option("--time-budget", type=DURATION, default=None, help="Stop after this long, e.g. 10m, 90s, 1.5h (checkpointed).")
@click.option(
    "--checkpoint-every",
    type=DURATION,
    default="10m",
    show_default=True,
    help="Also checkpoint within an epoch this often, e.g. 30m, 90s (a run killed outright resumes from there).",
)
@click.option(
    "--val-size",
    type=click.IntRange(1),
    default=None,
    help="Training images held out as the validation split (BN recalibration, per-epoch top-1, search).  [default: 5000]",
)
@click.option("--eval-images", type=click.IntRange(1), default=None, help="Validation images for the per-epoch top-1.  [default: 2000]")
@click.option("--log-every", type=click.IntRange(1), default=None, help="Write a step record to train.jsonl every N steps.  [default: 10]")
@no_progress_option
@json_option
def train_cmd(run, resume, steps, time_budget, checkpoint_every, no_progress, as_json, **opts) -> None:
    """Train a weight-sharing supernet with attentive sampling into runs/NAME.

    Each step trains the max subnet (label smoothing, dropout), K-candidate attentive (or
    uniform) middle subnets and the min subnet, distilling from the max subnet. Every epoch
    and at the stop, the min and max subnets' validation top-1 (after BN recalibration) is
    printed and logged to runs/NAME/train.jsonl; a checkpoint runs/NAME/supernet.pt is written
    every epoch, every --checkpoint-every within an epoch, and on Ctrl-C / SIGTERM. One
    process at a time trains a run (runs/NAME/.nastools.lock). --resume accepts the run's
    own option values again (a repeated command line); only --epochs, --device, --workers,
    --eval-images, --log-every and --data may change.

    \b
    Examples: nastools train                                # fmnist on Fashion-MNIST into runs/default
              nastools train --run a --time-budget 10m      # stop (and checkpoint) after 10 minutes
              nastools train --run a --resume --epochs 10   # continue, extended to 10 epochs
              torchrun --nproc-per-node 2 -m nastools -- train --run ddp   # "--": torchrun would claim --run
    """
    from nastools.train.trainer import TrainConfig, train

    given = {k: v for k, v in opts.items() if v is not None}
    if "predictor" in given and given.get("rank_by") != "predictor" and not resume:
        raise click.UsageError("--predictor is only used with --rank-by predictor")
    attentive = [f"--{k.replace('_', '-')}" for k in ("candidates", "rank_by", "score_images") if k in given]
    if given.get("sampler") == "uniform" and attentive and not resume:
        raise click.UsageError(f"{', '.join(attentive)}: only the attentive samplers use it, not --sampler uniform")
    if resume:
        from nastools.checkpoint import checkpoint_path, run_dir

        ckpt = checkpoint_path(run_dir(run))
        if not ckpt.is_file():  # before complaining about options of a run that is not there
            raise NastoolsError(f"--resume: run {run!r} has no checkpoint at {str(ckpt)!r} to continue; start it without --resume")
        # options equal to the run's own values are accepted; Trainer.resume refuses changes
        summary = train(
            None,
            run,
            resume=True,
            overrides=given,
            max_steps=steps,
            time_budget=time_budget,
            checkpoint_every=checkpoint_every,
            progress=not no_progress,
        )
    else:
        summary = train(
            TrainConfig(**given), run, max_steps=steps, time_budget=time_budget, checkpoint_every=checkpoint_every, progress=not no_progress
        )
    if summary.get("rank", 0) != 0:
        end_distributed_process()
        return
    if as_json:
        echo_json(summary)
    else:
        top1 = summary["top1"]
        acc = f", val top-1 min {100 * top1['top1_min']:.2f}% max {100 * top1['top1_max']:.2f}%" if top1 else ""
        click.echo(
            f"{summary['stopped']}: step {summary['step']}/{summary['total_steps']} (epoch {summary['epoch']:g}) "
            f"in {summary['seconds']:.0f} s, {summary['images_per_s']:.0f} img/s ({summary['precision']}){acc}; checkpoint {summary['checkpoint']}"
        )
    if summary["stopped"] in SIGNAL_EXIT:  # checkpointed, but not done: `nastools train && ...` must not go on
        click.echo(f"stopped by a signal: continue with nastools train --run {run} --resume", err=True)
        end_distributed_process(SIGNAL_EXIT[summary["stopped"]])
        sys.exit(SIGNAL_EXIT[summary["stopped"]])
    end_distributed_process()


@main.command("eval")
@click.option(
    "--arch",
    "arch_file",
    required=True,
    metavar="ARCH.json",
    help="The subnet to evaluate: an Arch JSON file, or a shipped arch by name (a0 ... a6 of attentivenas).",
)
@click.option("--run", "run", default="default", show_default=True, help="Run whose supernet to use.")
@click.option("--dataset", type=click.Choice(DATASETS), default=None, help="[default: the run's]")
@click.option("--data", default=None, help="Dataset folder.")
@click.option("--split", type=click.Choice(["test", "val"]), default="test", show_default=True)
@click.option(
    "--calib-images",
    type=click.IntRange(1),
    default=None,
    help="Training images for BN recalibration.  [default: 2000; 16384 for imported AttentiveNAS/AlphaNet runs on image folders]",
)
@click.option("--max-images", type=click.IntRange(1), default=None, help="Evaluate on the first N images only.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--workers", type=click.IntRange(0), default=0, show_default=True, help="Data loader processes (image folders).")
@no_progress_option
@json_option
def eval_cmd(arch_file, run, dataset, data, split, calib_images, max_images, device, workers, no_progress, as_json) -> None:
    """Top-1 of one subnet of a trained supernet: BN recalibration, then the test set.

    Image folders are read at the arch's resolution; a run imported from AttentiveNAS or
    AlphaNet preprocesses and recalibrates BN as the reference evaluation does.

    \b
    Examples: nastools eval --arch arch.json --run default
              nastools eval --run attentivenas --arch a0.json --dataset imagefolder --data ~/imagenet
    """
    from nastools.train.evaluate import evaluate_subnet

    res = evaluate_subnet(
        arch_file,
        run,
        dataset=dataset,
        data=data,
        split=split,
        calib_images=calib_images,
        max_images=max_images,
        device=device,
        workers=workers,
        progress=not (as_json or no_progress),
    )
    if as_json:
        return echo_json(res)
    m = res["meta"]
    click.echo(
        f"arch {res['id']} ({res['flops'] / 1e6:.1f}M FLOPs): top-1 {100 * res['top1']:.2f}% on {m['images']} "
        f"{m['split']} images of {m['dataset']} (BN recalibrated on {m['calib_images']} training images)"
    )
    if "note" in m:
        click.echo(f"note: {m['note']}")


@main.command("curve")
@click.argument("runs", nargs=-1, required=True)
@click.option("--plot", "plot", default=None, help="Also draw the curves into this PNG file.")
@json_option
def curve_cmd(runs, plot, as_json) -> None:
    """Validation top-1 of the min and max subnets against epochs, of one or more runs.

    RUNS are run names (runs/NAME), run folders or shipped supernets, as --run takes them.
    Every evaluation the run logged is listed (each epoch's end; a stop mid-epoch too);
    nastools train also keeps runs/NAME/curve.png up to date as it goes.

    \b
    Examples: nastools curve default
              nastools curve fmnist-attentive runs/long --plot curves.png
    """
    from nastools.io import writable_file
    from nastools.train.curve import learning_curve, plot_curves, run_log

    if plot is not None:
        writable_file(plot, "--plot")  # before any log is read
    curves = {str(r): learning_curve(run_log(r)) for r in runs}
    if plot:
        plot_curves(plot, curves)
    if as_json:
        return echo_json(curves)
    for name, c in curves.items():
        click.echo(f"{name}: validation top-1 (%) of the min / max subnet")
        for p in c["points"]:
            mark = " (stopped mid-epoch)" if p["partial"] else ""
            click.echo(f"  epoch {p['epoch']:>6g}  step {p['step']:>7}  {p['top1_min']:6.2f} / {p['top1_max']:6.2f}{mark}")
    if plot:
        click.echo(f"plot: {plot}")


__all__ = ["curve_cmd", "eval_cmd", "train_cmd"]
