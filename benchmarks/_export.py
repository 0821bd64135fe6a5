"""Shared by the export benchmarks (``bench_export*.py`` and ``investigations/bench_export_*.py``):
the trained subnets they measure, int8-against-fp32 timing and ONNX Runtime's per-operator profile.

The fmnist subnet (``runs/bench-export``) and the AttentiveNAS-space subnet
(``runs/bench-export-attentive``) are each trained alone inside their supernet (plain SGD +
cosine, only that arch active), so that the export path is the real one.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from _common import table

RUN = Path("runs/bench-export")
TRAIN_FLOPS = 8e6
# the AttentiveNAS space itself, with a 1-channel 32 px input and 10 classes
AN_SPACE = Path(__file__).parent / "spaces" / "attentivenas_fmnist.yaml"
AN_RUN = Path("runs/bench-export-attentive")
AN_TRAIN_FLOPS = 20e6
STEPS, BATCH, LR = 700, 128, 0.1
RECIPE = f"{STEPS} SGD steps, batch {BATCH}, lr {LR} cosine"


def quiet() -> None:
    """One thread everywhere, and no ONNX Runtime quantization chatter."""
    torch.set_num_threads(1)
    logging.disable(logging.WARNING)


def need_run(run: Path, script: str) -> None:
    """Stop with the command to run when the trained subnet ``run`` is missing."""
    if not (run / "supernet.pt").is_file():
        raise SystemExit(f"no trained subnet at {run}: run 'python benchmarks/{script} train' first")


def train(space: str | Path = "fmnist", run: Path = RUN, flops: float = TRAIN_FLOPS) -> None:
    """Fit the subnet nearest ``flops`` of ``space`` inside its supernet; save it as ``run``."""
    from nastools.checkpoint import save_checkpoint
    from nastools.data import iter_batches, load_splits
    from nastools.space import load_space
    from nastools.supernet import Supernet

    torch.manual_seed(0)
    torch.set_num_threads(1)
    splits = load_splits()
    net = Supernet(load_space(space))
    arch = net.space.sample_near_flops(flops, rng=0)
    net.set_active(arch)
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=0.9, weight_decay=4e-5, nesterov=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / STEPS)))
    g = torch.Generator().manual_seed(0)
    step, t0 = 0, time.time()
    while step < STEPS:
        order = torch.randperm(len(splits.train), generator=g)
        for x, y in iter_batches(splits.train, BATCH, order=order, drop_last=True):
            loss = F.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step % 100 == 0:
                print(f"step {step}/{STEPS} loss {loss.item():.3f} ({time.time() - t0:.0f} s)", flush=True)
            if step >= STEPS:
                break
    seconds = time.time() - t0
    save_checkpoint(
        run / "supernet.pt",
        net,
        recipe={
            "arch": arch.to_dict(),
            "steps": STEPS,
            "batch": BATCH,
            "lr": LR,
            "optimizer": "SGD nesterov 0.9, cosine, wd 4e-5",
            "seconds": seconds,
        },
    )
    arch.save(run / "arch.json", id=arch.id)
    print(f"trained {arch} in {seconds:.0f} s")


def fmnist_arrays(resolution: int, calib: int = 1000):
    """Calibration (training) and test images of Fashion-MNIST at ``resolution``, as numpy."""
    from nastools.data import load_splits

    splits = load_splits()

    def prep(ds, idx):
        x = ds.normalise(ds.images[idx])
        return (
            F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False).numpy()
            if resolution != x.shape[-1]
            else x.numpy()
        )

    order = torch.randperm(len(splits.train), generator=torch.Generator().manual_seed(1))[:calib]
    return prep(splits.train, order), prep(splits.test, slice(None)), splits.test.labels.numpy()


def int8_vs_fp32(batches=(1, 32), duration=2.0, run: Path = RUN) -> dict:
    """int8 (and int8 with only Conv/Gemm quantized) against fp32 for the subnet trained in
    ``run``: ORT CPU median latency (1 thread) and top-1 on the 10,000 test images."""
    from nastools.export import bench_model, export_subnet, make_runner, quantize_int8
    from nastools.export.parity import run_batched

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        res = {p: export_subnet(run, run / "arch.json", precision=p, out=Path(tmp) / f"{p}.onnx", progress=False) for p in ("fp32", "int8")}
        acc = res["int8"].sidecar["accuracy"]
        out["top1"] = {
            "torch": acc["torch_top1"],
            "fp32_onnx": acc["fp32_top1"],
            "int8_onnx": acc["int8_top1"],
            "drop_points": acc["drop_points"],
            "images": acc["images"],
        }
        out["parity_int8"] = {k: res["int8"].sidecar["parity"][k] for k in ("max_abs_diff", "top1_agreement", "images")}
        # a variant: only Conv/Gemm quantized (SiLU, SE gates and adds stay float)
        variant = Path(tmp) / "int8-conv.onnx"
        x_cal, x_test, y_test = fmnist_arrays(res["fp32"].sidecar["arch"]["resolution"])
        quantize_int8(res["fp32"].path, variant, (x_cal[i : i + 100] for i in range(0, len(x_cal), 100)), op_types=["Conv", "Gemm"])
        with make_runner(variant, threads=1) as r:
            out["top1"]["int8_conv_only_onnx"] = float((run_batched(r, x_test, 500).argmax(1) == y_test).mean())
        paths = {"fp32": res["fp32"].path, "int8": res["int8"].path, "int8_conv_only": variant}
        out["latency"] = []
        for b in batches:
            t = {p: [] for p in paths}
            for _ in range(2):
                for p, path in paths.items():
                    t[p].append(bench_model(path, batch=b, threads=1, warmup="200ms", duration=duration / 2).median_ms)
            m = {p: float(np.mean(v)) for p, v in t.items()}
            out["latency"].append(
                {
                    "batch": b,
                    "fp32_ms": m["fp32"],
                    "int8_ms": m["int8"],
                    "ratio": m["int8"] / m["fp32"],
                    "int8_conv_only_ms": m["int8_conv_only"],
                    "ratio_conv_only": m["int8_conv_only"] / m["fp32"],
                }
            )
            print(
                f"  int8 b{b}: fp32 {m['fp32']:.3f} ms, int8 {m['int8']:.3f} ms (x{m['int8'] / m['fp32']:.2f}), conv-only {m['int8_conv_only']:.3f} ms",
                flush=True,
            )
    return out


def print_int8(q: dict) -> None:
    """The int8-vs-fp32 latency table and top-1 line of :func:`int8_vs_fp32`'s result."""
    print(
        table(
            [
                (
                    r["batch"],
                    f"{r['fp32_ms']:.3f}",
                    f"{r['int8_ms']:.3f}",
                    f"{r['ratio']:.2f}",
                    f"{r['int8_conv_only_ms']:.3f}",
                    f"{r['ratio_conv_only']:.2f}",
                )
                for r in q["latency"]
            ],
            ["batch", "fp32 ms", "int8 ms", "int8/fp32 (target <= 0.7)", "int8 conv-only ms", "ratio"],
        )
    )
    t = q["top1"]
    print(
        f"top-1 on {t['images']} test images: torch {100 * t['torch']:.2f}%, fp32 ONNX {100 * t['fp32_onnx']:.2f}%, int8 ONNX {100 * t['int8_onnx']:.2f}% "
        f"(drop {t['drop_points']:+.2f} points, target <= 1), int8 conv-only {100 * t['int8_conv_only_onnx']:.2f}%"
    )


def conv_kind(node, dw_align: int | None = None) -> str:
    """``depthwise``, ``1x1`` or ``kxk`` (the stem) for a (QLinear)Conv node; with
    ``dw_align``, depthwise convolutions whose channel count is not a multiple of it are
    told apart (MLAS's fused int8 depthwise kernel on x86 needs a multiple of 16)."""
    import onnx

    a = {x.name: onnx.helper.get_attribute_value(x) for x in node.attribute}
    group = a.get("group", 1)
    if group > 1:
        return f"depthwise, channels not a multiple of {dw_align}" if dw_align and group % dw_align else "depthwise"
    return "1x1" if max(a.get("kernel_shape", [1])) == 1 else "kxk"


def op_times(path: Path, batch: int, runs: int, dw_align: int | None = None) -> dict[str, float]:
    """Mean ms per run of each operator kind of ``path`` (ORT CPU, 1 thread, all graph
    optimizations), convolutions split into 1x1, depthwise and other kernels."""
    import json
    from collections import Counter

    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.enable_profiling = True
        so.profile_file_prefix = str(Path(tmp) / "prof")
        so.optimized_model_filepath = str(Path(tmp) / "opt.onnx")
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        kinds = {
            n.name: f"{n.op_type} {conv_kind(n, dw_align)}"
            for n in onnx.load(so.optimized_model_filepath).graph.node
            if n.op_type.endswith("Conv")
        }
        shape = [d if isinstance(d, int) else batch for d in sess.get_inputs()[0].shape]
        feed = {sess.get_inputs()[0].name: np.random.default_rng(0).standard_normal(shape, dtype=np.float32)}
        for _ in range(10):
            sess.run(None, feed)
        for _ in range(runs):
            sess.run(None, feed)
        events = json.loads(Path(sess.end_profiling()).read_text())
    total = Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            node = e["name"][: -len("_kernel_time")]
            total[kinds.get(node, e["args"]["op_name"])] += e["dur"]
    n = runs + 10  # the profiler also saw the warm-up runs
    return {k: v / n / 1000 for k, v in total.most_common()}


def int8_by_size(
    batches=(1, 32), repeats: int = 3, duration: float = 0.5, space: str | Path = "fmnist", resolution: int | None = None, calib: int = 500
) -> dict:
    """int8/fp32 ORT CPU latency (1 thread) of subnets across ``space``'s FLOPs range,
    from an untrained supernet with recalibrated BatchNorm, and the operator split of the
    largest one at the last batch size. ``resolution`` fixes every subnet's input size; grey
    Fashion-MNIST images are repeated over the channels of a 3-channel space. ``calib``
    training images calibrate int8 (the calibrator keeps every activation of all of them)."""
    from nastools.data import load_splits
    from nastools.export import bench_model, export_onnx, quantize_int8
    from nastools.space import load_space
    from nastools.supernet.model import Supernet
    from nastools.train.evaluate import calibration_batches, prepare_input, recalibrate_bn

    torch.manual_seed(0)
    sp = load_space(space)
    net = Supernet(sp)
    splits = load_splits()
    archs = [("min", sp.min_arch())] + [(f"random {i}", sp.sample(i)) for i in range(6)] + [("max", sp.max_arch())]
    if resolution:
        archs = [(name, dataclasses.replace(arch, resolution=resolution)) for name, arch in archs]
    grey = splits.train.normalise(splits.train.images[:calib]).expand(-1, sp.input_channels, -1, -1)
    bn_batches = [(x.expand(-1, sp.input_channels, -1, -1), y) for x, y in calibration_batches(splits.train, 250, 500)]
    rows, ops_max = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, arch in archs:
            sub = net.extract(arch).eval()
            recalibrate_bn(sub, bn_batches)
            sub.eval()
            x = prepare_input(sub, grey, torch.device("cpu")).numpy()
            paths = {"fp32": export_onnx(sub, Path(tmp) / "fp32.onnx")}
            paths["int8"] = quantize_int8(paths["fp32"], Path(tmp) / "int8.onnx", (x[i : i + 100] for i in range(0, len(x), 100)))
            for b in batches:
                t = {p: [] for p in paths}
                for _ in range(repeats):  # alternate so drift hits both
                    for p, path in paths.items():
                        t[p].append(bench_model(path, batch=b, threads=1, warmup="200ms", duration=duration).median_ms)
                fp, q = float(np.median(t["fp32"])), float(np.median(t["int8"]))
                rows.append(
                    {"arch": name, "id": arch.id, "flops": sp.flops(arch), "batch": b, "fp32_ms": fp, "int8_ms": q, "ratio": q / fp}
                )
                print(f"  {name} ({sp.flops(arch) / 1e6:.1f}M FLOPs) b{b}: fp32 {fp:.3f} ms, int8 {q:.3f} ms, x{q / fp:.2f}", flush=True)
            if name == "max":
                ops_max = {p: op_times(path, batches[-1], 50, dw_align=16) for p, path in paths.items()}
    return {"rows": rows, "max_arch_ops": {"batch": batches[-1], **ops_max}}


def print_sizes(rows: list[dict]) -> None:
    """The per-subnet int8/fp32 table of :func:`int8_by_size`'s rows."""
    print(
        table(
            [
                (r["arch"], f"{r['flops'] / 1e6:.1f}M", r["batch"], f"{r['fp32_ms']:.3f}", f"{r['int8_ms']:.3f}", f"{r['ratio']:.2f}")
                for r in rows
            ],
            ["arch", "FLOPs", "batch", "fp32 ms", "int8 ms", "int8/fp32"],
        )
    )
