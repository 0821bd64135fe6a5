"""Investigation: where does bf16 autocast gain and lose time in a training step on this CPU?

1. The convolutions of the fmnist supernet's max subnet at batch 128, channels-last, alone:
   forward, forward + backward (input and weight gradient), and weight gradient only, in fp32
   and in bf16 (both operands bf16, as autocast hands them to oneDNN).
2. The default training step (fmnist, batch 128, attentive-best) three ways, timed
   round-robin: fp32; ``--precision bf16`` (autocast, depthwise convolutions in fp32); and
   autocast on every convolution (the depthwise ones in bf16 too).

Usage: python benchmarks/investigations/bench_bf16_convs.py [--threads 1] [--steps 6]  (~5 min)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import table, write_result  # noqa: E402

from nastools.data import load_splits  # noqa: E402
from nastools.supernet import dynamic  # noqa: E402
from nastools.train.trainer import TrainConfig, Trainer  # noqa: E402

#: (name, input channels, size, kernel, depthwise, output channels): the max subnet's
#: largest layers of each kind
LAYERS = (
    ("5x5 depthwise, 192 ch 16x16", 192, 16, 5, True, 192),
    ("5x5 depthwise, 288 ch 8x8", 288, 8, 5, True, 288),
    ("5x5 depthwise, 576 ch 4x4", 576, 4, 5, True, 576),
    ("3x3 depthwise, 192 ch 16x16", 192, 16, 3, True, 192),
    ("1x1 expand, 32 -> 192 ch 16x16", 32, 16, 1, False, 192),
    ("1x1 project, 192 -> 32 ch 16x16", 192, 16, 1, False, 32),
    ("1x1 project, 288 -> 48 ch 8x8", 288, 8, 1, False, 48),
)


def _median_ms(fn, reps: int = 5) -> float:
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def conv_costs(batch: int = 128) -> list[dict]:
    """Forward, forward + backward and weight-gradient ms of each of :data:`LAYERS` in fp32 and bf16."""
    rows = []
    for name, cin, hw, k, dw, cout in LAYERS:
        row = {"layer": name}
        for dt, tag in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
            x = torch.randn(batch, cin, hw, hw).to(dtype=dt, memory_format=torch.channels_last).requires_grad_()
            w = torch.randn(cout, 1 if dw else cin, k, k, dtype=dt).requires_grad_()
            groups = cin if dw else 1
            g = torch.randn_like(F.conv2d(x, w, padding=k // 2, groups=groups))
            row[f"{tag}_forward_ms"] = _median_ms(lambda: F.conv2d(x, w, padding=k // 2, groups=groups))
            row[f"{tag}_fwd_bwd_ms"] = _median_ms(lambda: torch.autograd.grad(F.conv2d(x, w, padding=k // 2, groups=groups), (x, w), g))
            xd = x.detach()
            row[f"{tag}_fwd_wgrad_ms"] = _median_ms(lambda: torch.autograd.grad(F.conv2d(xd, w, padding=k // 2, groups=groups), (w,), g))
        rows.append(row)
    return rows


def _autocast_everywhere():
    """DynamicConv2d.forward without its fp32 depthwise exception (restored by the caller)."""
    original = dynamic.DynamicConv2d.forward

    def forward(self, x, out_chs, kernel=None):
        k = kernel or self.kernel
        w = self.active_weight(x.shape[1], out_chs, k)
        return F.conv2d(x, w, self.active_bias(out_chs), self.stride, k // 2, 1, x.shape[1] if self.depthwise else 1)

    return original, forward


def step_costs(steps: int) -> dict:
    """Median seconds of the default training step in fp32, in nastools' bf16 and with
    autocast on every convolution, timed round-robin."""
    splits = load_splits("fashion-mnist")
    runs = {
        "fp32": Trainer(TrainConfig(), "/tmp/nastools-bf16-convs/fp32", splits=splits),
        "bf16": Trainer(TrainConfig(precision="bf16"), "/tmp/nastools-bf16-convs/bf16", splits=splits),
        "bf16, depthwise in bf16 too": Trainer(TrainConfig(precision="bf16"), "/tmp/nastools-bf16-convs/all", splits=splits),
    }
    feeds = {k: t.batches(0, 0) for k, t in runs.items()}
    original, everywhere = _autocast_everywhere()
    times: dict[str, list[float]] = {k: [] for k in runs}
    for i in range(steps + 1):
        for k, t in runs.items():
            dynamic.DynamicConv2d.forward = everywhere if "too" in k else original
            x, y = next(feeds[k])
            t0 = time.perf_counter()
            t.train_step(x, y)
            if i:  # the first round warms up
                times[k].append(time.perf_counter() - t0)
    dynamic.DynamicConv2d.forward = original
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"steps": steps, "step_s": med, "x_fp32": {k: med["fp32"] / v for k, v in med.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=6)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    convs = conv_costs()
    print(
        table(
            [
                (r["layer"], *(f"{r[f'fp32_{m}_ms']:.1f} / {r[f'bf16_{m}_ms']:.1f}" for m in ("forward", "fwd_bwd", "fwd_wgrad")))
                for r in convs
            ],
            ["layer (batch 128)", "forward ms fp32 / bf16", "fwd + bwd", "fwd + weight grad"],
        )
    )
    steps = step_costs(args.steps)
    print(table([(k, f"{v:.2f}", f"{steps['x_fp32'][k]:.2f}") for k, v in steps["step_s"].items()], ["training step", "s", "x fp32"]))
    write_result(
        "bench_bf16_convs",
        {"threads": args.threads, "convs": convs, "step": steps},
        variant=None if args.threads == 1 else f"t{args.threads}",
    )


if __name__ == "__main__":
    main()
