"""The whole job on the built-in default, stage by stage (``nastools demo``).

Each stage prints what it did and how long it took. Stages that later parts of nastools
provide (training, profiling, search, export) are added here as they land.
"""

from __future__ import annotations

import time
from typing import Callable

import click

from nastools.space import format_count, load_space


def _stage(name: str, fn: Callable[[], None]) -> float:
    click.echo(f"== {name}")
    t0 = time.perf_counter()
    fn()
    dt = time.perf_counter() - t0
    click.echo(f"   ({dt:.1f} s)")
    return dt


def run_demo(space: str = "fmnist", seed: int = 0) -> dict[str, float]:
    """Run the demo pipeline on ``space``; returns the seconds each stage took."""
    import random

    sp = load_space(space)
    rng = random.Random(seed)
    times: dict[str, float] = {}
    archs = []

    def show_space():
        lo, hi = sp.flops(sp.min_arch()), sp.flops(sp.max_arch())
        click.echo(f"   space {sp.name}: {sp.num_archs:,} subnets, {format_count(lo)}-{format_count(hi)} FLOPs (MACs)")
        for target in (lo * 2, (lo + hi) / 2, hi * 0.8):
            arch = sp.sample_near_flops(target, rng)
            archs.append(arch)
            click.echo(f"   sampled {arch.id} near {format_count(target)}: {format_count(sp.flops(arch))} FLOPs, {format_count(sp.params(arch))} params")

    def supernet():
        import torch
        from torch.utils.flop_counter import FlopCounterMode

        from nastools.supernet import Supernet

        torch.manual_seed(seed)
        net = Supernet(sp).eval()
        click.echo(f"   supernet: {sum(p.numel() for p in net.parameters()):,} shared parameters")
        for arch in archs:
            net.set_active(arch)
            x = torch.randn(4, sp.input_channels, arch.resolution, arch.resolution)
            with torch.no_grad():
                want = net(x)
                sub = net.extract()
                with FlopCounterMode(display=False) as counter:
                    got = sub(x[:1])
            diff = (want[:1] - got).abs().max().item()
            counted = counter.get_total_flops() // 2
            click.echo(
                f"   extracted {arch.id}: max |supernet - static| = {diff:.1e}, "
                f"torch counts {format_count(counted)} FLOPs (analytic {format_count(sp.flops(arch))})"
            )

    times["space"] = _stage("search space", show_space)
    times["supernet"] = _stage("supernet and subnet extraction", supernet)
    return times
