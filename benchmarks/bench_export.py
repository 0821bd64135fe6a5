"""Export benchmark: ORT CPU vs PyTorch eager latency of the same subnets, int8 vs fp32
(latency and Fashion-MNIST top-1), and ONNX parity statistics over 20 random archs.

Two phases, so training does not hold the timing core:

    taskset -c 0 python benchmarks/bench_export.py train        # ~2-4 min, once
    flock /tmp/nastools-core1.lock taskset -c 1 python benchmarks/bench_export.py measure

``train`` fits one subnet of the fmnist supernet (plain SGD + cosine, inside the supernet so
the export path is the real one) and saves it as the run ``runs/bench-export``. ``measure``
uses one thread everywhere and writes ``benchmarks/results/bench_export.json``. ``ops``
splits the fp32 and int8 run time of the trained subnet by kind of operator (ONNX Runtime's
profiler, after its graph optimizations) into ``benchmarks/results/bench_export_ops.json``:
where int8 gains and where it loses on this CPU. ``variants`` times the trained subnet
quantized with other ``quantize_static`` settings (no reduce_range, per-tensor weights, int8
activations, fewer op types, only the 1x1 convolutions) into ``benchmarks/results/bench_export_variants.json``.
``sizes`` (no trained run needed) asks whether int8 pays on bigger subnets: int8/fp32 latency
of eight subnets from the smallest (2.8M FLOPs) to the largest (51.4M) of an untrained fmnist
supernet (BatchNorm recalibrated, int8 calibrated on training images; speed does not depend
on the weights' values), and the operator split of the largest, into
``benchmarks/results/bench_export_sizes.json``. ``train-attentive`` then ``attentive`` repeat
the int8 measurement in the AttentiveNAS space itself (``benchmarks/spaces/attentivenas_fmnist.yaml``:
the packaged space with a 1-channel 32 px input and 10 classes): one trained subnet (latency
and top-1) and eight untrained ones across the space, into
``benchmarks/results/bench_export_attentive.json``; ``attentive-224`` times eight untrained
subnets of the packaged AttentiveNAS space at 224 px (batch 1) into
``benchmarks/results/bench_export_attentive_224.json``.
Targets (issue 7): int8 <= 0.7 x fp32 latency with <= 1 point top-1 loss.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from _common import table, write_result  # noqa: E402

RUN = Path("runs/bench-export")
TRAIN_FLOPS = 8e6
# the AttentiveNAS space itself, with a 1-channel 32 px input and 10 classes (phase ``attentive``)
AN_SPACE = Path(__file__).parent / "spaces" / "attentivenas_fmnist.yaml"
AN_RUN = Path("runs/bench-export-attentive")
AN_TRAIN_FLOPS = 20e6
STEPS, BATCH, LR = 700, 128, 0.1


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
    save_checkpoint(run / "supernet.pt", net, recipe={"arch": arch.to_dict(), "steps": STEPS, "batch": BATCH, "lr": LR, "optimizer": "SGD nesterov 0.9, cosine, wd 4e-5", "seconds": seconds})
    arch.save(run / "arch.json", id=arch.id)
    print(f"trained {arch} in {seconds:.0f} s")


def _median_ms(run, warmup_s: float, duration_s: float) -> float:
    from nastools.export.bench import latency_stats, time_callable

    lat, _ = time_callable(run, warmup_s, duration_s)
    return latency_stats(lat)["median_ms"]


def ort_vs_torch(archs, batches=(1, 32), duration=1.0) -> list[dict]:
    """Median latency of the same subnet in PyTorch eager (BN unfolded, as trained) and ORT."""
    from nastools.checkpoint import load_supernet
    from nastools.export import export_onnx, make_runner

    net = load_supernet(RUN)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, arch in archs:
            sub = net.extract(arch).eval()
            path = export_onnx(sub, Path(tmp) / f"{arch.id}.onnx")
            with make_runner(path, "ort", threads=1) as r:
                for b in batches:
                    x = np.random.default_rng(0).standard_normal((b, *sub.input_shape), dtype=np.float32)
                    xt = torch.from_numpy(x)

                    def eager():
                        with torch.inference_mode():
                            sub(xt)

                    ort_run = r.prepare(x)
                    # alternate twice to spread drift over both sides
                    t_eager = [_median_ms(eager, 0.2, duration / 2) for _ in range(2)]
                    t_ort = [_median_ms(ort_run, 0.2, duration / 2) for _ in range(2)]
                    te, to = float(np.mean(t_eager)), float(np.mean(t_ort))
                    rows.append({"arch": name, "id": arch.id, "flops": net.space.flops(arch), "batch": b, "torch_ms": te, "ort_ms": to, "speedup": te / to})
                    print(f"  {name} b{b}: torch {te:.3f} ms, ort {to:.3f} ms, x{te / to:.2f}", flush=True)
    return rows


def _fmnist_arrays(resolution: int, calib: int = 1000):
    """Calibration (training) and test images of Fashion-MNIST at ``resolution``, as numpy."""
    from nastools.data import load_splits

    splits = load_splits()

    def prep(ds, idx):
        x = ds.normalise(ds.images[idx])
        return F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False).numpy() if resolution != x.shape[-1] else x.numpy()

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
        out["top1"] = {"torch": acc["torch_top1"], "fp32_onnx": acc["fp32_top1"], "int8_onnx": acc["int8_top1"], "drop_points": acc["drop_points"], "images": acc["images"]}
        out["parity_int8"] = {k: res["int8"].sidecar["parity"][k] for k in ("max_abs_diff", "top1_agreement", "images")}
        # a variant: only Conv/Gemm quantized (SiLU, SE gates and adds stay float)
        variant = Path(tmp) / "int8-conv.onnx"
        x_cal, x_test, y_test = _fmnist_arrays(res["fp32"].sidecar["arch"]["resolution"])
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
            out["latency"].append({"batch": b, "fp32_ms": m["fp32"], "int8_ms": m["int8"], "ratio": m["int8"] / m["fp32"], "int8_conv_only_ms": m["int8_conv_only"], "ratio_conv_only": m["int8_conv_only"] / m["fp32"]})
            print(f"  int8 b{b}: fp32 {m['fp32']:.3f} ms, int8 {m['int8']:.3f} ms (x{m['int8'] / m['fp32']:.2f}), conv-only {m['int8_conv_only']:.3f} ms", flush=True)
    return out


def _print_int8(q: dict) -> None:
    """The int8-vs-fp32 latency table and top-1 line of :func:`int8_vs_fp32`'s result."""
    print(
        table(
            [(r["batch"], f"{r['fp32_ms']:.3f}", f"{r['int8_ms']:.3f}", f"{r['ratio']:.2f}", f"{r['int8_conv_only_ms']:.3f}", f"{r['ratio_conv_only']:.2f}") for r in q["latency"]],
            ["batch", "fp32 ms", "int8 ms", "int8/fp32 (target <= 0.7)", "int8 conv-only ms", "ratio"],
        )
    )
    t = q["top1"]
    print(
        f"top-1 on {t['images']} test images: torch {100 * t['torch']:.2f}%, fp32 ONNX {100 * t['fp32_onnx']:.2f}%, int8 ONNX {100 * t['int8_onnx']:.2f}% "
        f"(drop {t['drop_points']:+.2f} points, target <= 1), int8 conv-only {100 * t['int8_conv_only_onnx']:.2f}%"
    )


def parity_stats(n: int = 20, images: int = 1000) -> dict:
    """Export n random archs of the run's supernet (BN recalibrated) and check them through ORT."""
    from nastools.checkpoint import load_supernet
    from nastools.data import load_splits
    from nastools.export import export_onnx, make_runner
    from nastools.export.parity import parity, run_batched
    from nastools.train.evaluate import calibration_batches, prepare_input, recalibrate_bn

    net = load_supernet(RUN)
    splits = load_splits()
    raw = splits.test.normalise(splits.test.images[:images])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(n):
            arch = net.space.sample(seed)
            sub = net.extract(arch).eval()
            recalibrate_bn(sub, calibration_batches(splits.train, 250, 500))
            sub.eval()
            x = prepare_input(sub, raw, torch.device("cpu"))
            with torch.no_grad():
                ref = sub(x).numpy()
            path = export_onnx(sub, Path(tmp) / "m.onnx")
            with make_runner(path, threads=1) as r:
                got = run_batched(r, x.numpy(), 500)
            p = parity(ref, got)
            rows.append({"id": arch.id, "flops": net.space.flops(arch), "max_abs_diff": p["max_abs_diff"], "top1_agreement": p["top1_agreement"], "logit_absmax": float(np.abs(ref).max())})
    diffs = np.array([r["max_abs_diff"] for r in rows])
    agree = np.array([r["top1_agreement"] for r in rows])
    return {
        "archs": n,
        "images": images,
        "max_abs_diff": {"max": float(diffs.max()), "median": float(np.median(diffs)), "mean": float(diffs.mean())},
        "top1_agreement": {"min": float(agree.min()), "mean": float(agree.mean())},
        "rows": rows,
    }


def _conv_kind(node, dw_align: int | None = None) -> str:
    """``depthwise``, ``1x1`` or ``kxk`` (the stem) for a (QLinear)Conv node; with
    ``dw_align``, depthwise convolutions whose channel count is not a multiple of it are
    told apart (MLAS's fused int8 depthwise kernel on x86 needs a multiple of 16)."""
    import onnx

    a = {x.name: onnx.helper.get_attribute_value(x) for x in node.attribute}
    group = a.get("group", 1)
    if group > 1:
        return f"depthwise, channels not a multiple of {dw_align}" if dw_align and group % dw_align else "depthwise"
    return "1x1" if max(a.get("kernel_shape", [1])) == 1 else "kxk"


def _op_times(path: Path, batch: int, runs: int, dw_align: int | None = None) -> dict[str, float]:
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
        kinds = {n.name: f"{n.op_type} {_conv_kind(n, dw_align)}" for n in onnx.load(so.optimized_model_filepath).graph.node
                 if n.op_type.endswith("Conv")}
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


def op_breakdown(batches=(1, 32), runs: int = 100) -> dict:
    """Per-operator-kind time of the trained subnet in fp32 and int8 (ORT CPU, 1 thread)."""
    from nastools.export import export_subnet

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        paths = {p: export_subnet(RUN, RUN / "arch.json", precision=p, out=Path(tmp) / f"{p}.onnx", progress=False).path for p in ("fp32", "int8")}
        for b in batches:
            out[str(b)] = {p: _op_times(path, b, runs) for p, path in paths.items()}
    return out


def ops() -> None:
    torch.set_num_threads(1)
    logging.disable(logging.WARNING)
    res = op_breakdown()
    for b, r in res.items():
        print(f"\nbatch {b}: ms per run by operator kind (ONNX Runtime profiler, 1 thread)")
        rows = [(k, f"{v:.3f}") for k, v in r["fp32"].items()]
        print(table(rows, ["fp32 operator", "ms"]))
        print(f"fp32 total {sum(r['fp32'].values()):.3f} ms")
        rows = [(k, f"{v:.3f}") for k, v in r["int8"].items()]
        print(table(rows, ["int8 operator", "ms"]))
        print(f"int8 total {sum(r['int8'].values()):.3f} ms, int8/fp32 {sum(r['int8'].values()) / sum(r['fp32'].values()):.2f}")
    write_result("bench_export_ops", {"threads": 1, "by_batch": res})


# quantize_static settings against the shipped ones (nastools' int8 for ORT: uint8 asymmetric
# activations, int8 symmetric per-channel weights, reduce_range)
VARIANTS = {
    "shipped (u8 act, s8 per-channel weights, reduce_range)": {},
    "no reduce_range": {"reduce_range": False},
    "per-tensor weights": {"reduce_range": False, "per_channel": False},
    "s8 symmetric activations": {"reduce_range": False, "activation_type": "QInt8", "symmetric_activations": True},
    "Conv, Gemm and Add only": {"reduce_range": False, "op_types_to_quantize": ["Conv", "Gemm", "Add"]},
    # only the operators that int8 speeds up in `ops` (1x1 convolutions 0.52x, Gemm): the
    # depthwise and stem convolutions, pooling, SiLU and SE stay float32
    "1x1 Conv and Gemm only": {"op_types_to_quantize": ["Conv", "Gemm"], "exclude": "kxk"},
    "all but depthwise and stem Conv": {"exclude": "kxk"},
}


def _kxk_convs(path: Path) -> list[str]:
    """Names of the Conv nodes of ``path`` that are not 1x1 (depthwise, stem)."""
    import onnx

    return [n.name for n in onnx.load(str(path)).graph.node if n.op_type == "Conv" and _conv_kind(n) != "1x1"]


def quant_variants(repeats: int = 3, duration: float = 0.7) -> list[dict]:
    """Latency (batch 1 and 32) and top-1 (first 3,000 test images) of the trained subnet
    quantized with other ``quantize_static`` settings: is another setting faster on this CPU?"""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from nastools.export import bench_model, export_subnet, make_runner
    from nastools.export.parity import run_batched
    from nastools.export.precision import _Batches

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_subnet(RUN, RUN / "arch.json", precision="fp32", out=Path(tmp) / "fp32.onnx", progress=False)
        x_cal, x_test, y_test = _fmnist_arrays(fp32.sidecar["arch"]["resolution"])
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32.path), str(pre), skip_symbolic_shape=True)
        name = onnx.load(str(pre)).graph.input[0].name
        paths = {"fp32": fp32.path}
        for i, (label, v) in enumerate(VARIANTS.items()):
            kw = {"reduce_range": True, "per_channel": True, **v}
            sym = kw.pop("symmetric_activations", False)
            if kw.pop("exclude", None) == "kxk":
                kw["nodes_to_exclude"] = _kxk_convs(pre)
            kw["activation_type"] = getattr(QuantType, kw.pop("activation_type", "QUInt8"))
            out = Path(tmp) / f"v{i}.onnx"
            quantize_static(str(pre), str(out), _Batches(name, (x_cal[j : j + 100] for j in range(0, 1000, 100))),
                            quant_format=QuantFormat.QDQ, weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                            extra_options={"WeightSymmetric": True, "ActivationSymmetric": sym}, **kw)
            paths[label] = out
        for label, path in paths.items():
            with make_runner(path, threads=1) as r:
                acc = float((run_batched(r, x_test[:3000], 500).argmax(1) == y_test[:3000]).mean())
            ms = {b: float(np.median([bench_model(path, batch=b, threads=1, warmup="200ms", duration=duration).median_ms
                                      for _ in range(repeats)])) for b in (1, 32)}
            rows.append({"variant": label, "top1_3000": acc, "b1_ms": ms[1], "b32_ms": ms[32]})
            print(f"  {label}: b1 {ms[1]:.3f} ms, b32 {ms[32]:.3f} ms, top-1 {100 * acc:.2f}%", flush=True)
    for r in rows:
        r["b1_ratio"], r["b32_ratio"] = r["b1_ms"] / rows[0]["b1_ms"], r["b32_ms"] / rows[0]["b32_ms"]
    return rows


def variants() -> None:
    torch.set_num_threads(1)
    logging.disable(logging.WARNING)
    rows = quant_variants()
    print(table([(r["variant"], f"{r['b1_ms']:.3f}", f"{r['b1_ratio']:.2f}", f"{r['b32_ms']:.3f}", f"{r['b32_ratio']:.2f}",
                  f"{100 * r['top1_3000']:.2f}%") for r in rows], ["model", "b1 ms", "/fp32", "b32 ms", "/fp32", "top-1 (3,000)"]))
    write_result("bench_export_variants", {"threads": 1, "rows": rows})


def int8_by_size(batches=(1, 32), repeats: int = 3, duration: float = 0.5, space: str | Path = "fmnist", resolution: int | None = None, calib: int = 500) -> dict:
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
                rows.append({"arch": name, "id": arch.id, "flops": sp.flops(arch), "batch": b, "fp32_ms": fp, "int8_ms": q, "ratio": q / fp})
                print(f"  {name} ({sp.flops(arch) / 1e6:.1f}M FLOPs) b{b}: fp32 {fp:.3f} ms, int8 {q:.3f} ms, x{q / fp:.2f}", flush=True)
            if name == "max":
                ops_max = {p: _op_times(path, batches[-1], 50, dw_align=16) for p, path in paths.items()}
    return {"rows": rows, "max_arch_ops": {"batch": batches[-1], **ops_max}}


def _print_sizes(rows: list[dict]) -> None:
    """The per-subnet int8/fp32 table of :func:`int8_by_size`'s rows."""
    print(table([(r["arch"], f"{r['flops'] / 1e6:.1f}M", r["batch"], f"{r['fp32_ms']:.3f}", f"{r['int8_ms']:.3f}", f"{r['ratio']:.2f}") for r in rows],
                ["arch", "FLOPs", "batch", "fp32 ms", "int8 ms", "int8/fp32"]))


def sizes() -> None:
    torch.set_num_threads(1)
    logging.disable(logging.WARNING)
    res = int8_by_size()
    _print_sizes(res["rows"])
    ops = res["max_arch_ops"]
    kinds = sorted(set(ops["fp32"]) | set(ops["int8"]), key=lambda k: -(ops["fp32"].get(k, 0) + ops["int8"].get(k, 0)))
    print(f"largest subnet, batch {ops['batch']}, ms per run by operator kind:")
    print(table([(k, f"{ops['fp32'].get(k, 0):.3f}", f"{ops['int8'].get(k, 0):.3f}") for k in kinds], ["operator", "fp32", "int8"]))
    write_result("bench_export_sizes", {"threads": 1, **res})


def measure() -> None:
    from nastools.space import load_arch, load_space

    torch.set_num_threads(1)
    logging.disable(logging.WARNING)
    sp = load_space("fmnist")
    trained = load_arch(RUN / "arch.json")
    archs = [("trained", trained), ("min", sp.min_arch()), ("near 20M", sp.sample_near_flops(20e6, rng=1)), ("max", sp.max_arch())]
    t0 = time.time()
    print("ORT CPU vs PyTorch eager (1 thread, median latency):", flush=True)
    speed = ort_vs_torch(archs)
    print("int8 vs fp32 (trained subnet):", flush=True)
    q = int8_vs_fp32()
    print("parity over 20 random archs:", flush=True)
    par = parity_stats()

    print()
    print(table([(r["arch"], f"{r['flops'] / 1e6:.1f}M", r["batch"], f"{r['torch_ms']:.3f}", f"{r['ort_ms']:.3f}", f"{r['speedup']:.2f}x") for r in speed], ["arch", "FLOPs", "batch", "torch ms", "ort ms", "torch/ort"]))
    print()
    _print_int8(q)
    print(
        f"parity over {par['archs']} random archs x {par['images']} test images: max |diff| max {par['max_abs_diff']['max']:.2e}, "
        f"median {par['max_abs_diff']['median']:.2e}; top-1 agreement min {100 * par['top1_agreement']['min']:.2f}%"
    )
    write_result(
        "bench_export",
        {
            "trained_subnet": {"arch": trained.to_dict(), "id": trained.id, "recipe": f"{STEPS} SGD steps, batch {BATCH}, lr {LR} cosine, inside the fmnist supernet (only this arch active)"},
            "threads": 1,
            "ort_vs_torch": speed,
            "int8_vs_fp32": q,
            "parity": par,
            "seconds": time.time() - t0,
        },
    )


def attentive() -> None:
    """int8 against fp32 in the AttentiveNAS space on Fashion-MNIST (``AN_SPACE``): the subnet
    trained by ``train-attentive`` (latency and top-1) and eight untrained subnets across the
    space's FLOPs range (latency)."""
    from nastools.checkpoint import load_checkpoint
    from nastools.space import load_arch

    torch.set_num_threads(1)
    logging.disable(logging.WARNING)
    trained = load_arch(AN_RUN / "arch.json", AN_SPACE)
    t0 = time.time()
    print(f"int8 vs fp32, trained subnet {trained.id}:", flush=True)
    q = int8_vs_fp32(run=AN_RUN)
    print("int8 vs fp32 across the space (untrained supernet):", flush=True)
    by_size = int8_by_size(space=AN_SPACE)
    print()
    _print_int8(q)
    _print_sizes(by_size["rows"])
    recipe = load_checkpoint(AN_RUN)["recipe"]
    write_result(
        "bench_export_attentive",
        {
            "space": AN_SPACE.name,
            "trained_subnet": {"arch": trained.to_dict(), "id": trained.id, "recipe": f"{STEPS} SGD steps, batch {BATCH}, lr {LR} cosine, inside the supernet (only this arch active)", "train_seconds": recipe.get("seconds")},
            "threads": 1,
            "int8_vs_fp32": q,
            "by_size": by_size,
            "seconds": time.time() - t0,
        },
    )


def attentive_224() -> None:
    """int8/fp32 latency of eight untrained subnets of the packaged AttentiveNAS space at
    224 px, batch 1: does int8 still pay at ImageNet resolution?"""
    torch.set_num_threads(1)
    logging.disable(logging.WARNING)
    res = int8_by_size(batches=(1,), space="attentivenas", resolution=224, calib=64)  # 500 at 224 px: out of memory
    _print_sizes(res["rows"])
    write_result("bench_export_attentive_224", {"threads": 1, "resolution": 224, **res})


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("phase", choices=("train", "measure", "ops", "variants", "sizes", "train-attentive", "attentive", "attentive-224", "all"), nargs="?", default="all")
    args = ap.parse_args()
    if args.phase in ("train", "all") and (args.phase == "train" or not (RUN / "supernet.pt").is_file()):
        train()
    if args.phase in ("measure", "all"):
        measure()
    if args.phase in ("ops", "all"):
        ops()
    if args.phase in ("variants", "all"):
        variants()
    if args.phase in ("sizes", "all"):
        sizes()
    if args.phase == "train-attentive" or (args.phase in ("attentive", "all") and not (AN_RUN / "supernet.pt").is_file()):
        train(AN_SPACE, AN_RUN, AN_TRAIN_FLOPS)
    if args.phase in ("attentive", "all"):
        attentive()
    if args.phase in ("attentive-224", "all"):
        attentive_224()
