"""Static subnet -> ONNX: BatchNorm folded, dynamic batch axis, checked graph.

Uses the TorchScript-based ``torch.onnx.export(..., dynamo=False)``: it needs no extra
package (the dynamo exporter needs ``onnxscript``) and traces these plain conv nets exactly.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from nastools.errors import NastoolsError
from nastools.export.fold import fold_batchnorm
from nastools.io import atomic_write

INPUT_NAME = "images"
OUTPUT_NAME = "logits"
DEFAULT_OPSET = 17
#: ops that must not appear in an exported graph: BN is folded, subnets are static
FORBIDDEN_OPS = frozenset({"BatchNormalization", "Slice", "Split", "Gather", "GatherElements", "DynamicSlice"})


def input_shape(model: nn.Module) -> tuple[int, int, int]:
    """(C, H, W) of a StaticSubnet's input."""
    shape = getattr(model, "input_shape", None)
    if shape is None:
        raise TypeError(f"{type(model).__name__} has no input_shape: export an extracted StaticSubnet")
    return tuple(shape)


def _drop_identities(model_proto) -> None:
    """Bypass Identity nodes (what dropout and folded BN leave) unless they feed a graph output."""
    graph = model_proto.graph
    outputs = {o.name for o in graph.output}
    rename: dict[str, str] = {}
    keep = []
    for node in graph.node:
        node.input[:] = [rename.get(i, i) for i in node.input]
        if node.op_type == "Identity" and node.output[0] not in outputs:
            rename[node.output[0]] = node.input[0]
        else:
            keep.append(node)
    del graph.node[:]
    graph.node.extend(keep)


def export_onnx(
    model: nn.Module,
    path: str | Path,
    *,
    batch: int | None = None,
    opset: int = DEFAULT_OPSET,
    fold: bool = True,
) -> Path:
    """Write ``model`` (a StaticSubnet) to ``path`` as ONNX and check the graph.

    ``batch=None`` gives a dynamic batch axis named ``batch``; an int fixes it. BatchNorm is
    folded into the convolutions first (``fold=True``). The file is written atomically and
    verified with :func:`check_onnx`.
    """
    import onnx

    if not isinstance(model, nn.Module):
        raise NastoolsError(
            f"export_onnx: got a {type(model).__name__}, expected a torch module (a StaticSubnet: Supernet(space).extract(arch))"
        )
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < 17:
        raise NastoolsError(f"opset {opset!r}: expected an ONNX opset >= 17")
    net = fold_batchnorm(model) if fold else model.eval()
    net = net.cpu().float()
    x = torch.zeros(batch or 2, *input_shape(model))
    dynamic = None if batch else {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}
    import io

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (x,),
            buf,
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes=dynamic,
            do_constant_folding=True,
        )
    proto = onnx.load_from_string(buf.getvalue())
    _drop_identities(proto)
    proto.doc_string = f"nastools subnet {getattr(getattr(model, 'arch', None), 'id', '')}".strip()
    data = proto.SerializeToString()
    path = atomic_write(path, lambda f: f.write(data), mode="wb")
    check_onnx(path)
    return path


def graph_ops(path_or_model: Any) -> dict[str, int]:
    """How many nodes of each op type the ONNX graph has."""
    import onnx

    proto = onnx.load(str(path_or_model)) if isinstance(path_or_model, (str, Path)) else path_or_model
    counts: dict[str, int] = {}
    for node in proto.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items()))


def check_onnx(path: str | Path, *, min_opset: int = DEFAULT_OPSET) -> dict[str, Any]:
    """Run ``onnx.checker`` (full check) and assert the exporter's contract.

    Raises ``ValueError`` if BN or slicing ops remain or the opset is too old. Returns the
    opset, the op counts and the input shape (a string for a dynamic axis).
    """
    import onnx

    onnx.checker.check_model(str(path), full_check=True)
    proto = onnx.load(str(path))
    opset = max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    ops = graph_ops(proto)
    bad = sorted(set(ops) & FORBIDDEN_OPS)
    if bad:
        raise ValueError(f"{path}: graph still has {', '.join(bad)} nodes")
    if opset < min_opset:
        raise ValueError(f"{path}: opset {opset}, expected >= {min_opset}")
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    shape = [d.dim_param or d.dim_value for d in dims]
    return {"opset": opset, "ops": ops, "input": proto.graph.input[0].name, "input_shape": shape}
