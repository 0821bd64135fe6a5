"""ONNX file -> TensorRT engine file, with the facts the export sidecar records.

The engine is built by :class:`nastools.runtime.trt.EngineBuilder`, the builder the
TensorRT latency backend uses too (see :mod:`nastools.runtime.trt` for how precision is
set on TensorRT 10 and 11).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nastools.io import atomic_write
from nastools.runtime import trt as rt

#: the default profile: a dynamic batch of 1..256, tuned for 32
DYNAMIC_BATCH = rt.BatchProfile.for_batch(None)


def build_engine(
    onnx_path: str | Path,
    engine_path: str | Path,
    *,
    precision: str = "fp32",
    profile: rt.BatchProfile = DYNAMIC_BATCH,
    workspace: int = rt.DEFAULT_WORKSPACE,
    timing_cache: str | Path | None = None,
) -> dict[str, Any]:
    """Build a serialized TensorRT engine from ``onnx_path`` and write it to ``engine_path``.

    ``precision``: fp32, fp16 or int8; on TensorRT 11 the ONNX file must already carry it
    (fp16 graph or QDQ graph). ``timing_cache`` is read if present and written back after the
    build. Returns the build facts for the sidecar (TensorRT version, GPU, profile, ...).
    """
    builder = rt.EngineBuilder(workspace=workspace, timing_cache=timing_cache)
    engine = builder.build(Path(onnx_path), precision, profile)
    atomic_write(engine_path, lambda f: f.write(engine.data), mode="wb")
    builder.save_cache()
    return {
        "tensorrt": str(builder.trt.__version__),
        "gpu": rt.gpu_name(),
        "strongly_typed": engine.strongly_typed,
        "precision": precision,
        "profile": {"min": profile.min, "opt": profile.opt, "max": profile.max},
        "workspace_bytes": int(workspace),
        "timing_cache": str(builder.cache_path) if builder.cache_path else None,
        "timing_cache_reused": builder.cache_reused,
        "tf32": engine.tf32,
        "engine_bytes": len(engine.data),
    }


__all__ = ["build_engine"]
