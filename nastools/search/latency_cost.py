"""Latency as a search cost: which table a budget uses, and that table's predictions at the
speed this machine runs now.

:func:`find_table` is the one place that discovers tables (the working directory's
``latency_tables/<space>/``, then the shipped ones); :func:`resolve_table` adds the tables a
user names; a :class:`LatencyCost` owns one resolved table, whether its archs can be measured
end to end here, and the drift factor its predictions are scaled by.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from nastools.errors import NastoolsError
from nastools.space import Arch, SearchSpace

if TYPE_CHECKING:
    from nastools.latency.table import LatencyTable

Measurer = Callable[[Sequence[Arch]], list[float]]

DRIFT_TOLERANCE = 0.03  # a machine this close to its table's speed is taken as is


def on_gpu(meta: Mapping[str, Any]) -> bool:
    """Whether a table's metadata says it was profiled on a GPU."""
    return str(meta.get("target", "")).lower() == "gpu" or "nvidia" in str(meta.get("device", "")).lower()


def find_table(space: SearchSpace, device: str = "default", accept: Callable[["LatencyTable"], bool] | None = None):
    """The table of ``space`` a budget on ``device`` uses when no table is named, or None.

    Looks through every readable table of the space (the working directory's
    ``latency_tables/<space>/``, then the shipped ones): for ``gpu`` the GPU tables, for
    ``cpu`` the CPU tables, for ``default`` those made on this CPU model; ``accept`` narrows
    the choice further. Among CPU tables one of this very CPU generation comes before one of
    another generation of the same model name (:func:`nastools.machine.cpu_match`), then the
    newest file wins."""
    from nastools.latency.table import LatencyTable, table_files
    from nastools.machine import cpu_match, cpu_name

    want_gpu = device == "gpu"
    found = []
    for p in table_files(space.name):
        try:
            t = LatencyTable.load(p, space)
        except NastoolsError:
            continue
        gpu = on_gpu(t.meta)
        if gpu != want_gpu or (device == "default" and str(t.meta.get("device", "")) != cpu_name()):
            continue
        if accept is None or accept(t):
            found.append((0 if gpu else cpu_match(t.meta), p.stat().st_mtime, t))
    return max(found, key=lambda f: f[:2])[2] if found else None


def resolve_table(space: SearchSpace, device: str, tables: Mapping[str, str]):
    """The latency table for a budget's device: ``tables[device]`` (a path) when given, else
    the newest table of ``space`` (the working directory's ``latency_tables/<space>/``, then the
    shipped ones) made on this machine (``default``/``cpu``;
    one of this very CPU generation before one of another generation of the same model name)
    or on a GPU (``gpu``)."""
    from pathlib import Path

    from nastools.latency.table import TABLES_DIR, LatencyTable

    path = tables.get(device)
    if path is None and device in ("default", "cpu"):
        path = tables.get("cpu" if device == "default" else "default")  # a plain --latency budget is on this CPU
    if path is None and device.endswith(".json"):
        path = device
    if path is not None:
        if not Path(path).exists():
            raise NastoolsError(f"latency table {path!r} not found: build one with nastools profile --space {space.name} --out {path}")
        return LatencyTable.load(path, space).check_target("cpu" if device == "default" else device)
    if device not in ("default", "cpu", "gpu"):
        hint = " (did you mean gpu?)" if device.lower().startswith(("gpu", "cuda")) else ""
        raise NastoolsError(
            f"latency budget on {device!r}: no table given for it{hint}; the shipped and profiled tables are found for "
            f"cpu and gpu, any other device needs --table {device}=PATH"
        )
    table = find_table(space, device)
    if table is None and device == "default":
        return resolve_table(space, "cpu", tables)
    if table is None:
        flag = "--device gpu" if device == "gpu" else "--device cpu"
        raise NastoolsError(
            f"no latency table for space {space.name!r} on {device!r} in {str(TABLES_DIR / space.name)!r} or the shipped tables: "
            f"run 'nastools profile --space {space.name} {flag}' first, or name one with --table {device}=PATH"
        )
    return table


def unverifiable(meta: Mapping[str, Any]) -> str | None:
    """Why archs of a table with ``meta`` cannot be measured end to end here, through the
    table's own backend, device and precision (one clause, e.g. "the table was made on
    NVIDIA H100, this machine has no CUDA GPU"), or None when they can."""
    from nastools.machine import cpu_name

    backend, device = str(meta.get("backend")), str(meta.get("device"))
    if on_gpu(meta):
        import torch

        if not torch.cuda.is_available():
            return f"the table was made on {device}, and torch sees no CUDA GPU here"
        here = torch.cuda.get_device_name(0)
        if here != device:
            return f"the table was made on {device}, this machine's GPU is {here}"
        from nastools.runtime.onnxrt import cuda_provider_available
        from nastools.runtime.trt import tensorrt_installed

        if backend == "trt" and not tensorrt_installed():
            return "the table's backend is TensorRT, which is not installed here (pip install nastools[trt])"
        if backend == "ort" and not cuda_provider_available():
            return "the table's backend is ONNX Runtime CUDA, absent here (pip install onnxruntime-gpu)"
    elif device != cpu_name():
        return f"the table was made on {device}, this machine is {cpu_name()}"
    elif backend == "ort":
        import importlib.util

        if importlib.util.find_spec("onnxruntime") is None:
            return "the table's backend is ONNX Runtime, not installed here (pip install onnxruntime)"
    if backend not in ("ort", "torch", "trt") or backend == "trt" and not on_gpu(meta):
        return f"the table's backend {backend!r} is not one nastools times end to end"
    return None


@dataclass(eq=False)
class PickVerifier:
    """``verifier(archs) -> ms``: each arch's end-to-end latency through its cost's table's
    own backend, device and precision, at the machine speed the cost's predictions assume.

    The archs are timed round-robin together with the table's reference subnets
    (:func:`nastools.latency.measure_referenced`), which give the machine's speed during
    that very measurement (``speed``: x the table's recorded times); an arch's figure is
    ``timed_ms * assumed_speed / speed``, where ``assumed_speed`` is what the predictions
    are scaled by (:attr:`LatencyCost.assumed_speed`: the drift factor measured before the
    search, 1 for a table used as profiled). So a pick is held to its budget at the speed its
    prediction was made for: on a VM whose speed swings by a third within a minute, a pick
    is neither rejected because the machine slowed while it was timed nor passed because it
    sped up. A table without calibration runs has no references: its archs' times are
    returned as timed. ``details`` (arch id -> ``{"ms", "timed_ms", "speed",
    "assumed_speed"}``) keeps the measurement behind the smallest figure returned per arch."""

    cost: "LatencyCost"
    details: dict[str, dict[str, float]] = field(default_factory=dict)

    def __call__(self, archs: Sequence[Arch]) -> list[float]:
        from nastools.latency import measure_referenced

        timed, speed = measure_referenced(self.cost.table, archs)
        if speed is None:
            return timed
        assumed, out = self.cost.assumed_speed, []
        for a, t in zip(archs, timed):
            ms = t * assumed / speed["factor"]
            if a.id not in self.details or ms < self.details[a.id]["ms"]:
                self.details[a.id] = {"ms": ms, "timed_ms": t, "speed": speed["factor"], "assumed_speed": assumed}
            out.append(ms)
        return out


def drift_message(device: str | None, factor: float) -> str:
    """The line the search logs about a drift factor measured for ``device``'s table."""
    if abs(factor - 1.0) <= DRIFT_TOLERANCE:
        return f"latency on {device}: this machine runs the table's calibration subnets at {factor:.2f}x their recorded time: table used as profiled"
    return (
        f"latency on {device}: this machine runs the table's calibration subnets at {factor:.2f}x their recorded time now "
        f"(the machine or its speed changed since profiling): predictions scaled by {factor:.2f} (--no-drift to keep them as profiled)"
    )


def verification_note(arch_id: str, v: Mapping[str, float]) -> str | None:
    """One line on a pick whose machine ran at another speed while it was timed than its
    prediction assumes (``v``: a :class:`PickVerifier` record), else None."""
    if abs(v["speed"] / v["assumed_speed"] - 1.0) <= DRIFT_TOLERANCE:
        return None
    held = v["timed_ms"] * v["assumed_speed"] / v["speed"]
    return (
        f"{arch_id} timed at {v['timed_ms']:.3f} ms while this machine ran the table's reference subnets at {v['speed']:.2f}x "
        f"their recorded time: {held:.3f} ms at the {v['assumed_speed']:.2f}x its prediction assumes, the figure held to the budget"
    )


@dataclass(eq=False)
class LatencyCost:
    """Predicted latency (ms) of an arch from one table, scaled by the drift ``factor``
    (this machine's speed now against the table's calibration runs) unless that is within
    :data:`DRIFT_TOLERANCE` of 1. Call it, or :meth:`predict`, as a search cost."""

    table: "LatencyTable"
    device: str = "default"
    factor: float = 1.0
    drift: dict | None = None  # the record ``factor`` came from, with the table's path
    refit_check: dict | None = None  # refitted(): leave-one-out errors of scaling and re-fitting

    @classmethod
    def resolve(
        cls, space: SearchSpace, device: str = "default", tables: Mapping[str, str] | None = None, statistic: str | None = None
    ) -> "LatencyCost":
        """The cost of a budget on ``device``, from :func:`resolve_table`, predicting
        ``statistic`` (None: the table's own, by default the median on a GPU and the p10 on a
        CPU: :func:`nastools.latency.table.default_statistic`)."""
        return cls(resolve_table(space, device, tables or {}).with_statistic(statistic), device)

    @property
    def statistic(self) -> str:
        """The statistic predictions and measurements are in: ``median``, ``p10``, ``p90`` or ``p99``."""
        from nastools.latency.table import stat_name

        return stat_name(self.table.statistic)

    def measurer(self) -> "PickVerifier | None":
        """End-to-end measurement of archs through the table's backend, device and precision,
        at the machine speed the predictions assume (:class:`PickVerifier`), when available
        here (None otherwise: :func:`unverifiable` says why)."""
        return PickVerifier(self) if unverifiable(self.table.meta) is None else None

    @property
    def assumed_speed(self) -> float:
        """The machine speed (x the table's recorded times) the predictions assume: the drift
        :attr:`factor`, or 1 within :data:`DRIFT_TOLERANCE` of it."""
        return self.factor if abs(self.factor - 1.0) > DRIFT_TOLERANCE else 1.0

    def unverifiable(self) -> str | None:
        """Why archs cannot be measured here as the table measures them, or None (:func:`unverifiable`)."""
        return unverifiable(self.table.meta)

    def predict(self, arch: Arch) -> float:
        """The table's prediction for ``arch``, at this machine's speed now."""
        return self.assumed_speed * self.table.predict(arch)

    __call__ = predict

    def settle_drift(self, held: Mapping[str, Any] | None = None, given: float | None = None) -> dict | None:
        """Set :attr:`factor` from the drift record a resumed search ``held`` for this very
        table, else from a factor already measured (``given``), else by timing the table's
        calibration subnets now (:func:`nastools.latency.check_drift`). Returns the record
        (``{"factor", ..., "table"}``), or None when the table has no calibration runs."""
        same = held is not None and held.get("table") == str(self.table.path)
        d = dict(held) if same and held.get("statistic", self.statistic) == self.statistic else None
        if d is None and given is not None:
            d = {"factor": float(given), "given": True}
        if d is None:
            from nastools.latency import check_drift

            d = check_drift(self.table)
        if d is None:
            return None
        self.drift = {**d, "table": str(self.table.path), "statistic": self.statistic}
        self.factor = d["factor"]
        return self.drift

    def refitted(self, path) -> "LatencyTable | None":
        """A copy of the table, saved at ``path``, whose overhead model is fitted on this
        machine's end-to-end runs of the drift check (:meth:`settle_drift`, scale and offset
        on its 6 subnets), when that predicts those runs better than the table scaled by one
        factor, each run predicted from the others
        (:func:`nastools.latency.validate.loo_scaled_vs_refit`; the two errors are kept in
        :attr:`refit_check`); else None, as without such runs. Which wins depends on how far
        the generations lie apart (benchmarks/investigations/borrowed_table_refit.py, 30
        held-out subnets): the Zen 5 fmnist table on a Zen 4 VM predicted with MAPE 3.5%
        re-fitted, 5.5% scaled; Intel family 6 model 167's on a model 207 VM 5.0-5.7%
        re-fitted, 3.1-3.5% scaled, and its attentivenas@224 table there 1.0% re-fitted, 2.9%
        scaled; the leave-one-out choice picked the better one for both of the latter."""
        from nastools.latency.profiler import with_features
        from nastools.latency.table import LatencyTable, arch_of_key
        from nastools.latency.validate import loo_scaled_vs_refit

        d = self.drift or {}
        if not d.get("keys") or len(d["keys"]) < 6:
            return None
        archs = [arch_of_key(k) for k in d["keys"]]
        loo = loo_scaled_vs_refit([self.table.predict(a) for a in archs], [self.table.block_sum(a) for a in archs], d["measured_ms"])
        chosen = "refit" if loo["refit"] < loo["scaled"] else "scaled"
        self.refit_check = {
            "scaled_loo_mape": round(loo["scaled"], 2),
            "refit_loo_mape": round(loo["refit"], 2),
            "runs": len(archs),
            "chosen": chosen,
        }
        if chosen == "scaled":
            return None
        meta = {**self.table.meta, "refit": {"from": str(self.table.path), "runs": len(archs)}}
        copy = LatencyTable(meta, self.table.entries, {}, {}, None, self.table.space)
        copy.fit_calibration(with_features(copy, [{"arch": a.key, "measured_ms": m} for a, m in zip(archs, d["measured_ms"])], archs))
        copy.save(path)
        return copy

    def generation_note(self, space: str) -> str | None:
        """A note when the table was profiled on another generation of this CPU model, else None."""
        from nastools.machine import GENERATION_KEYS, generation_mismatch, this_generation

        meta = self.table.meta
        if not generation_mismatch(meta):
            return None
        theirs = ", ".join(str(meta[k]) for k in GENERATION_KEYS if meta.get(k))
        return (
            f"the table was profiled on another generation of this CPU model "
            f"({theirs}; this one: {', '.join(this_generation().values())}), so its blocks may rank differently here: "
            f"'nastools profile --space {space}' makes a table of this machine"
        )


__all__ = [
    "DRIFT_TOLERANCE",
    "LatencyCost",
    "Measurer",
    "PickVerifier",
    "drift_message",
    "find_table",
    "resolve_table",
    "unverifiable",
    "verification_note",
]
