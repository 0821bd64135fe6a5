"""torch runners: an ``nn.Module`` in memory (eager) or a TorchScript file, on CPU or CUDA."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from nastools.errors import NastoolsError, brief
from nastools.runtime.base import InputMeta, Runner, as_tensor, model_label, require_cuda

#: the JSON record saved inside an exported TorchScript file (input shape, arch)
TORCHSCRIPT_META = "nastools.json"

#: torch's CPU thread count is the process's: the runners that set it (``held`` of them
#: loaded now) and the count it had before the first of them, given back by the last
_THREADS: dict[str, int | None] = {"held": 0, "before": None}


def _hold_threads(threads: int) -> None:
    import torch

    if _THREADS["held"] == 0:
        _THREADS["before"] = torch.get_num_threads()
    _THREADS["held"] = int(_THREADS["held"] or 0) + 1
    torch.set_num_threads(threads)


def _release_threads() -> None:
    import torch

    _THREADS["held"] = max(0, int(_THREADS["held"] or 0) - 1)
    if _THREADS["held"] == 0 and _THREADS["before"] is not None:
        torch.set_num_threads(int(_THREADS["before"]))
        _THREADS["before"] = None


class TorchRunner(Runner):
    """A module run under ``torch.inference_mode``: ``model`` is an ``nn.Module`` (moved to
    ``device`` and the dtype for the run, given back on CPU in float32 on release) or the path
    of a TorchScript file with its :data:`TORCHSCRIPT_META` record. ``threads`` sets torch's
    CPU threads while it is loaded (the process's count: the last torch runner released gives
    back the count torch had before the first was loaded). On CUDA a run is launched
    asynchronously on the current stream."""

    name = "torch"

    def __init__(self, model: Any, *, device: str = "cpu", half: bool = False, threads: int | None = None) -> None:
        is_file = isinstance(model, (str, Path))
        super().__init__(model_label(model, "TorchScript module") if is_file else f"torch module {type(model).__name__}")
        self.model = model
        self.device = device
        self.half = half
        self.threads = threads
        self.asynchronous = device == "cuda"
        self.module = None
        self._chw: tuple[int, ...] = ()
        self._holds_threads = False

    def load_impl(self) -> None:
        import torch

        if self.device == "cuda":
            require_cuda(f"{self.label} on CUDA")
        dtype = torch.float16 if self.half else torch.float32
        if isinstance(self.model, (str, Path)):
            module, self._chw = _load_torchscript(Path(self.model), self.device)
            self.module = module.half() if self.half else module
        else:
            self.module = self.model.to(self.device, dtype).eval()
        self._dtype = dtype
        if self.device != "cuda" and self.threads and not self._holds_threads:  # loaded: release() gives them back
            _hold_threads(int(self.threads))
            self._holds_threads = True

    def inputs_impl(self) -> list[InputMeta]:
        # a TorchScript subnet takes any batch; its record gives (C, H, W)
        shape = (None, *self._chw) if self._chw else ()
        return [InputMeta("input", shape, "float16" if self.half else "float32")]

    def input_shape(self, batch: int) -> tuple[int, ...]:
        if not self._chw:
            raise NastoolsError(f"{self.label} does not record its input shape: export it with nastools export --format torchscript")
        return super().input_shape(batch)

    def bind_impl(self, x: Any) -> None:
        self._x = as_tensor(x).to(self.device, self._dtype)
        self._y = None

    def run_impl(self) -> None:
        import torch

        with torch.inference_mode():
            self._y = self.module(self._x)

    def synchronize_impl(self) -> None:
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()

    def output_impl(self) -> np.ndarray:
        return self._y.float().cpu().numpy()

    def release_impl(self) -> None:
        if not isinstance(self.model, (str, Path)):
            import torch

            self.model.to("cpu", torch.float32)
        self.module = self._x = self._y = None
        if self._holds_threads:
            self._holds_threads = False
            _release_threads()

    def activation_bytes(self, shape: tuple[int, ...]) -> int:
        """The largest op's activations (inputs and outputs, weights aside) of one inference
        on a batch of 2, scaled to ``shape``'s batch (TorchScript keeps no shapes to infer)."""
        import torch
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils._pytree import tree_flatten

        probe = 2
        x = torch.zeros((probe, *shape[1:]), dtype=self._dtype, device=self.device)
        weights = {t.data_ptr() for t in (*self.module.parameters(), *self.module.buffers(), x)}
        peak = 0

        class Peak(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                nonlocal peak
                out = func(*args, **(kwargs or {}))
                if not getattr(func, "is_view", False):
                    live = {
                        t.data_ptr(): t.numel() * t.element_size()
                        for t in tree_flatten((args, kwargs, out))[0]
                        if isinstance(t, torch.Tensor) and t.dim() and t.shape[0] == probe and t.data_ptr() not in weights
                    }
                    peak = max(peak, sum(live.values()))
                return out

        try:  # unoptimized, so that the probe's shape does not become the one the JIT specializes for
            with torch.jit.optimized_execution(False), torch.inference_mode(), Peak():
                self.module(x)
        except Exception:  # noqa: BLE001 - an estimate: a module that fails here fails again, with its message, when run
            return 0
        return peak * shape[0] // probe


def _load_torchscript(path: Path, device: str):
    """A TorchScript module and the (C, H, W) its :data:`TORCHSCRIPT_META` record gives (empty
    where it has none)."""
    import torch

    from nastools.io import parse_json

    if not path.is_file():
        raise NastoolsError(f"TorchScript module {str(path)!r} not found" + (" (a folder)" if path.is_dir() else ""))
    extra = {TORCHSCRIPT_META: ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            module = torch.jit.load(str(path), map_location=device, _extra_files=extra).eval()
    except RuntimeError as exc:
        raise NastoolsError(not_torchscript(path) or f"cannot load TorchScript module {str(path)!r}: {brief(exc)}") from None
    raw = extra[TORCHSCRIPT_META]
    meta = parse_json(raw, f"the {TORCHSCRIPT_META} record of {str(path)!r}") if raw else {}
    chw = meta.get("input_chw", []) if isinstance(meta, dict) else None
    if not isinstance(chw, list) or len(chw) not in (0, 3) or not all(type(d) is int and 0 < d <= 65536 for d in chw):
        raise NastoolsError(
            f"TorchScript module {str(path)!r}: its {TORCHSCRIPT_META} record holds no valid input_chw "
            f"(got {brief(repr(chw), 60)}): export it again with nastools export --format torchscript"
        )
    return module, tuple(chw)


def not_torchscript(path: Path) -> str | None:
    """Why ``path`` is not a TorchScript module when it is a ``torch.save`` file (a zip with a
    ``data.pkl`` but no ``constants.pkl``): a nastools supernet checkpoint or other pickled
    weights. None for anything else."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            names = {n.rsplit("/", 1)[-1] for n in z.namelist()}
    except (OSError, zipfile.BadZipFile):
        return None
    if "data.pkl" not in names or "constants.pkl" in names:
        return None
    import torch

    from nastools.checkpoint import CHECKPOINT_FORMAT, run_arg

    try:
        data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - not even weights: say what it is not
        data = None
    if isinstance(data, dict) and data.get("format") == CHECKPOINT_FORMAT:
        return (
            f"{str(path)!r} is a nastools supernet checkpoint, not a model: export a subnet first "
            f"(nastools export --run {run_arg(path)} --format onnx, or --format torchscript)"
        )
    return (
        f"{str(path)!r} is a torch.save file (weights or a pickled object), not a TorchScript module: "
        f"bench times exported models (nastools export --format torchscript or onnx)"
    )
