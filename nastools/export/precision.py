"""Reduced-precision ONNX graphs: int8 (static QDQ, calibrated) and fp16.

- int8: ``onnxruntime.quantization.quantize_static`` in QDQ format (what TensorRT's explicit
  quantization and ORT both run), per-channel weights, activations calibrated on training
  images that the caller supplies.
- fp16: every float initializer, constant and cast becomes float16; the graph keeps float32
  inputs and outputs with a Cast at each end, so callers feed the same arrays. This is what
  TensorRT 11's strongly typed networks need (precision lives in the graph); TensorRT 10
  builds fp16 from the fp32 graph with its builder flag instead.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from nastools.constants import PRECISIONS
from nastools.io import atomic_write

INT8_TARGETS = ("ort", "trt")


class _Batches:
    """An ``onnxruntime.quantization.CalibrationDataReader`` over numpy batches."""

    def __init__(self, input_name: str, batches: Iterable[np.ndarray]) -> None:
        self.input_name = input_name
        self._it: Iterator[np.ndarray] = iter(batches)

    def get_next(self):
        x = next(self._it, None)
        return None if x is None else {self.input_name: np.ascontiguousarray(x, dtype=np.float32)}

    def rewind(self) -> None:  # pragma: no cover - only some calibrators call it
        pass


def quantize_int8(
    src: str | Path,
    dst: str | Path,
    calibration: Iterable[np.ndarray],
    *,
    target: str = "ort",
    per_channel: bool = True,
    method: str = "minmax",
    op_types: list[str] | None = None,
) -> Path:
    """Write a static int8 QDQ copy of the fp32 ONNX model ``src`` to ``dst``.

    ``calibration`` yields float32 input batches (already resized and normalised);
    ``target`` ``ort`` uses asymmetric uint8 activations (the fast U8S8 kernels of x86 CPUs),
    ``trt`` symmetric int8 activations (all TensorRT accepts); weights are int8, per channel.
    ``method`` is ``minmax``, ``entropy`` or ``percentile``; ``op_types`` limits which ops
    are quantized (default: all that ONNX Runtime can).
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile}
    if method not in methods:
        raise ValueError(f"calibration method {method!r}: expected one of {', '.join(methods)}")
    if target not in INT8_TARGETS:
        raise ValueError(f"int8 target {target!r}: expected one of {', '.join(INT8_TARGETS)}")
    name = onnx.load(str(src), load_external_data=False).graph.input[0].name
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dst.parent, prefix=".quant.") as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        out = Path(tmp) / "int8.onnx"
        quantize_static(
            str(pre),
            str(out),
            _Batches(name, calibration),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QInt8 if target == "trt" else QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=per_channel,
            calibrate_method=methods[method],
            op_types_to_quantize=op_types,
            reduce_range=target == "ort",  # 7-bit weights: no VPMADDUBSW saturation on AVX2/AVX512 without VNNI
            extra_options={"ActivationSymmetric": target == "trt", "WeightSymmetric": True},
        )
        data = out.read_bytes()
    return atomic_write(dst, lambda f: f.write(data), mode="wb")


def convert_fp16(src: str | Path, dst: str | Path) -> Path:
    """Write a float16 copy of the fp32 ONNX model ``src`` to ``dst`` (float32 I/O kept)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(src))
    g = model.graph
    f32, f16 = TensorProto.FLOAT, TensorProto.FLOAT16
    for i, init in enumerate(g.initializer):
        if init.data_type == f32:
            g.initializer[i].CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name))
    for node in g.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == f32:
                attr.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(attr.t).astype(np.float16), attr.t.name))
            if node.op_type == "Cast" and attr.name == "to" and attr.i == f32:
                attr.i = f16
    # float32 at the graph's edges, float16 inside
    head, tail = [], []
    for inp in g.input:
        if inp.type.tensor_type.elem_type == f32:
            inner = f"{inp.name}__fp16"
            for node in g.node:
                node.input[:] = [inner if n == inp.name else n for n in node.input]
            head.append(helper.make_node("Cast", [inp.name], [inner], to=f16, name=f"{inp.name}_to_fp16"))
    for out in g.output:
        if out.type.tensor_type.elem_type == f32:
            inner = f"{out.name}__fp16"
            for node in g.node:
                node.output[:] = [inner if n == out.name else n for n in node.output]
            tail.append(helper.make_node("Cast", [inner], [out.name], to=f32, name=f"{out.name}_to_fp32"))
    nodes = head + list(g.node) + tail
    del g.node[:]
    g.node.extend(nodes)
    del g.value_info[:]
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    onnx.checker.check_model(model, full_check=True)
    data = model.SerializeToString()
    return atomic_write(dst, lambda f: f.write(data), mode="wb")


def tensor_types(path: str | Path) -> dict[str, int]:
    """How many initializers of each ONNX element type name the model holds."""
    import onnx
    from onnx import TensorProto

    counts: dict[str, int] = {}
    for init in onnx.load(str(path)).graph.initializer:
        t = TensorProto.DataType.Name(init.data_type)
        counts[t] = counts.get(t, 0) + 1
    return counts


__all__ = ["PRECISIONS", "convert_fp16", "quantize_int8", "tensor_types"]
