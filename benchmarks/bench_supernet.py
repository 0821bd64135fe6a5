"""Supernet overhead and sampling speed (issue: foundation).

1. A training step (forward + loss + backward) of the fmnist supernet with an arch active
   vs the same step of that arch's extracted static model, same batch, for the min, a
   middle and the max arch. Steps alternate (supernet, static, supernet, ...) so that
   machine noise hits both alike; the figure is the median of the per-pair ratios.
   Target: ratio <= 1.10.
2. Archs sampled with FLOPs computed, per second, for attentivenas and fmnist, against the
   same work without the per-stage cost memo (baseline). Target: >= 20,000/s.

Usage: python benchmarks/bench_supernet.py [--pairs 20] [--batch 256]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from _common import table, write_result  # noqa: E402

from nastools.space import load_space  # noqa: E402
from nastools.supernet import Supernet  # noqa: E402


def train_step(model, x, y):
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()


def step_ratio(net, arch, batch, pairs):
    net.set_active(arch)
    net.train()
    static = net.extract().train()
    x = torch.randn(batch, net.space.input_channels, arch.resolution, arch.resolution)
    y = torch.randint(0, net.space.num_classes, (batch,))
    for _ in range(3):
        train_step(net, x, y)
        train_step(static, x, y)
    ratios, t_super, t_static = [], [], []
    for _ in range(pairs):
        t0 = time.perf_counter()
        train_step(net, x, y)
        t1 = time.perf_counter()
        train_step(static, x, y)
        t2 = time.perf_counter()
        t_super.append(t1 - t0)
        t_static.append(t2 - t1)
        ratios.append((t1 - t0) / (t2 - t1))
    return statistics.median(t_super), statistics.median(t_static), statistics.median(ratios)


def sampling_rate(space, seconds=2.0, memo=True):
    rng = random.Random(0)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(200):
            arch = space.sample(rng)
            if memo:
                space.flops(arch)
            else:
                sum(b.cost()[0] for b in space.blocks(arch))
        n += 200
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=20)
    ap.add_argument("--batch", type=int, default=256)
    args = ap.parse_args()
    torch.manual_seed(0)
    sp = load_space("fmnist")
    net = Supernet(sp)
    archs = {
        "min": sp.min_arch(),
        "mid": sp.sample_near_flops((sp.flops(sp.min_arch()) + sp.flops(sp.max_arch())) / 2, 0),
        "max": sp.max_arch(),
    }
    steps = {}
    for name, arch in archs.items():
        ts, tt, r = step_ratio(net, arch, args.batch, args.pairs)
        steps[name] = {"arch": arch.id, "flops": sp.flops(arch), "supernet_s": ts, "static_s": tt, "ratio": r}
    print(f"training step, fmnist, batch {args.batch}, {args.pairs} alternating pairs (median)")
    print(
        table(
            [
                (
                    k,
                    v["arch"],
                    f"{v['flops'] / 1e6:.1f}M",
                    f"{v['supernet_s'] * 1e3:.1f}",
                    f"{v['static_s'] * 1e3:.1f}",
                    f"{v['ratio']:.3f}",
                )
                for k, v in steps.items()
            ],
            ["arch", "id", "FLOPs", "supernet ms", "static ms", "ratio"],
        )
    )
    rates = {}
    for name in ("attentivenas", "fmnist"):
        space = load_space(name)
        rates[name] = {"memo_per_s": sampling_rate(space), "no_memo_per_s": sampling_rate(space, memo=False)}
        rates[name]["speedup"] = rates[name]["memo_per_s"] / rates[name]["no_memo_per_s"]
    print("\narchs sampled with FLOPs per second")
    print(
        table(
            [(k, f"{v['memo_per_s']:,.0f}", f"{v['no_memo_per_s']:,.0f}", f"{v['speedup']:.1f}x") for k, v in rates.items()],
            ["space", "archs/s", "baseline (no memo)", "speed-up"],
        )
    )
    worst = max(v["ratio"] for v in steps.values())
    ok = worst <= 1.10 and rates["attentivenas"]["memo_per_s"] >= 20000
    print(
        f"\nworst step ratio {worst:.3f} (target <= 1.10); attentivenas {rates['attentivenas']['memo_per_s']:,.0f} archs/s (target >= 20,000): {'PASS' if ok else 'FAIL'}"
    )
    write_result("bench_supernet", {"batch": args.batch, "pairs": args.pairs, "train_step": steps, "sampling": rates, "pass": ok})


if __name__ == "__main__":
    main()
