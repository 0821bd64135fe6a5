"""Investigation: is another ``quantize_static`` setting faster on this CPU? The trained
fmnist subnet (``runs/bench-export``) quantized with other settings (no reduce_range,
per-tensor weights, int8 activations, fewer op types, only the 1x1 convolutions): latency at
batch 1 and 32 against fp32, and top-1 on the first 3,000 test images. One thread.

Usage: python benchmarks/investigations/bench_export_variants.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tempfile  # noqa: E402

import numpy as np  # noqa: E402
from _common import table, write_result  # noqa: E402
from _export import RUN, conv_kind, fmnist_arrays, need_run, quiet  # noqa: E402

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

    return [n.name for n in onnx.load(str(path)).graph.node if n.op_type == "Conv" and conv_kind(n) != "1x1"]


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
        x_cal, x_test, y_test = fmnist_arrays(fp32.sidecar["arch"]["resolution"])
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
            quantize_static(
                str(pre),
                str(out),
                _Batches(name, (x_cal[j : j + 100] for j in range(0, 1000, 100))),
                quant_format=QuantFormat.QDQ,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
                extra_options={"WeightSymmetric": True, "ActivationSymmetric": sym},
                **kw,
            )
            paths[label] = out
        for label, path in paths.items():
            with make_runner(path, threads=1) as r:
                acc = float((run_batched(r, x_test[:3000], 500).argmax(1) == y_test[:3000]).mean())
            ms = {
                b: float(
                    np.median([bench_model(path, batch=b, threads=1, warmup="200ms", duration=duration).median_ms for _ in range(repeats)])
                )
                for b in (1, 32)
            }
            rows.append({"variant": label, "top1_3000": acc, "b1_ms": ms[1], "b32_ms": ms[32]})
            print(f"  {label}: b1 {ms[1]:.3f} ms, b32 {ms[32]:.3f} ms, top-1 {100 * acc:.2f}%", flush=True)
    for r in rows:
        r["b1_ratio"], r["b32_ratio"] = r["b1_ms"] / rows[0]["b1_ms"], r["b32_ms"] / rows[0]["b32_ms"]
    return rows


def main() -> None:
    need_run(RUN, "bench_export.py")
    quiet()
    rows = quant_variants()
    print(
        table(
            [
                (
                    r["variant"],
                    f"{r['b1_ms']:.3f}",
                    f"{r['b1_ratio']:.2f}",
                    f"{r['b32_ms']:.3f}",
                    f"{r['b32_ratio']:.2f}",
                    f"{100 * r['top1_3000']:.2f}%",
                )
                for r in rows
            ],
            ["model", "b1 ms", "/fp32", "b32 ms", "/fp32", "top-1 (3,000)"],
        )
    )
    write_result("bench_export_variants", {"threads": 1, "rows": rows})


if __name__ == "__main__":
    main()
