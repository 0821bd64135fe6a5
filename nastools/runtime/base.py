"""The one runner base: load a model, bind an input, run it, release it.

The public methods hold the guards (running before loading, binding before loading, loading
twice); a backend implements only the ``*_impl`` methods. Nothing here times anything: the
measurement protocol of latency tables (:mod:`nastools.latency.measure`) and bench's
trtexec-style statistics (:mod:`nastools.export.bench`) are timing policies over a runner.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from nastools.errors import NastoolsError


@dataclass(frozen=True)
class InputMeta:
    """One model input: its name, shape (an int per fixed dimension, a name or None per
    dynamic one), element type (a numpy name, e.g. ``float32``) and, for a dynamic batch
    bounded by the model (a TensorRT optimization profile), the batch range."""

    name: str
    shape: tuple[int | str | None, ...]
    dtype: str = "float32"
    batch_range: tuple[int, int] | None = None

    def __str__(self) -> str:
        return f"{self.name} tensor({self.dtype}) {list(self.shape)}"

    @property
    def fixed(self) -> bool:
        """Whether every dimension but the batch is fixed."""
        return bool(self.shape) and all(isinstance(d, int) and d > 0 for d in self.shape[1:])


class Runner:
    """Loads one model on one backend and runs it on a bound input.

    Life cycle: :meth:`load` (or ``with runner:``), :meth:`bind` an input, then :meth:`run`
    (or :meth:`enqueue` and :meth:`synchronize`) as often as wanted, :meth:`output`, and
    :meth:`release`. Subclasses set :attr:`name` and implement :meth:`load_impl`,
    :meth:`inputs_impl`, :meth:`bind_impl`, :meth:`run_impl`, :meth:`output_impl` and
    :meth:`release_impl` (plus :meth:`synchronize_impl` where :meth:`run_impl` returns
    before the device finishes).
    """

    #: the backend: ``ort``, ``trt`` or ``torch``
    name = "base"
    #: whether :meth:`enqueue` returns before the device finishes (a timing policy then times
    #: it with device events on :attr:`stream`; None is the current stream)
    asynchronous = False
    stream: Any = None

    def __init__(self, label: str) -> None:
        self.label = label
        self._loaded = False
        self._bound = False

    # -- the guarded life cycle ---------------------------------------------------------

    @property
    def loaded(self) -> bool:
        """Whether :meth:`load` ran and :meth:`release` has not since."""
        return self._loaded

    def load(self) -> "Runner":
        """Load the model (a session, an engine and its context, a module); returns self."""
        if self._loaded:
            raise NastoolsError(f"{self.label}: load() while loaded; release() it first")
        self.load_impl()
        self._loaded = True
        return self

    def inputs(self) -> list[InputMeta]:
        """The model's inputs."""
        self._check("inputs()")
        return self.inputs_impl()

    def bind(self, x: Any) -> None:
        """Make ``x`` (a numpy array or a torch tensor) the input that :meth:`run` runs on,
        converted to the model's element type and device once, here."""
        self._check("bind()")
        self.bind_impl(x)
        self._bound = True

    def run(self) -> None:
        """One inference on the bound input; returns when its output is ready."""
        self._check("run()", bound=True)
        self.run_impl()
        self.synchronize_impl()

    def enqueue(self) -> None:
        """Start one inference on the bound input (it may still run when this returns, see
        :attr:`asynchronous`)."""
        self._check("enqueue()", bound=True)
        self.run_impl()

    def synchronize(self) -> None:
        """Wait for what :meth:`enqueue` started."""
        self._check("synchronize()")
        self.synchronize_impl()

    def output(self) -> np.ndarray:
        """The first output of the last inference, as float32 numpy."""
        self._check("output()", bound=True)
        return self.output_impl()

    def infer(self, x: Any) -> np.ndarray:
        """Bind ``x``, run once, return the first output (float32 numpy)."""
        self.bind(x)
        self.run()
        return self.output()

    def release(self) -> None:
        """Free what :meth:`load` and :meth:`bind` allocated (nothing when not loaded)."""
        if not self._loaded:
            return
        try:
            self.release_impl()
        finally:
            self._loaded = self._bound = False

    def __enter__(self) -> "Runner":
        return self.load()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _check(self, what: str, bound: bool = False) -> None:
        if not self._loaded:
            raise NastoolsError(f"{self.label}: {what} before load(): load the model first (runner.load() or with runner:)")
        if bound and not self._bound:
            raise NastoolsError(f"{self.label}: {what} before bind(): bind an input first (runner.bind(x))")

    # -- what the input metadata tells ---------------------------------------------------

    def static_batch(self) -> int | None:
        """The model's fixed batch size, or None when the batch axis is dynamic."""
        shape = self.inputs()[0].shape
        first = shape[0] if shape else None
        return int(first) if isinstance(first, (int, np.integer)) and first > 0 else None

    def input_shape(self, batch: int) -> tuple[int, ...]:
        """The shape of the first input at ``batch`` (checks a static batch or the model's
        batch range)."""
        meta = self.inputs()[0]
        static = self.static_batch()
        if static is not None and static != batch:
            raise NastoolsError(
                f"{self.label} has a static batch of {static}, got --batch {batch}: pass --batch {static} or export with --batch dynamic"
            )
        if meta.batch_range and not meta.batch_range[0] <= batch <= meta.batch_range[1]:
            lo, hi = meta.batch_range
            raise NastoolsError(
                f"--batch {batch} is outside the optimization profile of {self.label} ({lo}..{hi}): "
                f"pass a batch in it or rebuild with --max-batch"
            )
        return (batch, *[int(d) for d in meta.shape[1:]])  # type: ignore[arg-type]

    def activation_bytes(self, shape: tuple[int, ...]) -> int:
        """About how many bytes of host memory one inference on an input of ``shape`` takes
        beside the input itself (0 where the backend cannot tell, or keeps them on a GPU)."""
        return 0

    # -- backend-specific ----------------------------------------------------------------

    def load_impl(self) -> None:
        raise NotImplementedError

    def inputs_impl(self) -> list[InputMeta]:
        raise NotImplementedError

    def bind_impl(self, x: Any) -> None:
        raise NotImplementedError

    def run_impl(self) -> None:
        raise NotImplementedError

    def synchronize_impl(self) -> None:
        """Wait for the device (nothing to wait for where :meth:`run_impl` is synchronous)."""

    def output_impl(self) -> np.ndarray:
        raise NotImplementedError

    def release_impl(self) -> None:
        raise NotImplementedError


def require_cuda(what: str):
    """``torch`` with a visible CUDA GPU, or a one-line error naming ``what`` needs one."""
    import torch

    if not torch.cuda.is_available():
        raise NastoolsError(
            f"{what} needs a CUDA GPU, and torch sees none here (torch.cuda.is_available() is False): "
            f"run on a machine with an NVIDIA GPU and a CUDA build of torch"
        )
    return torch


def as_tensor(x: Any):
    """``x`` (a numpy array or a torch tensor) as a torch tensor, sharing memory where it can."""
    import torch

    return x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))


def model_label(model: Any, kind: str = "model") -> str:
    """How messages name a model: ``model 'path'`` for a file, ``<kind> (in memory)`` else."""
    from pathlib import Path

    return f"{kind} {str(model)!r}" if isinstance(model, (str, Path)) else f"{kind} (in memory)"
