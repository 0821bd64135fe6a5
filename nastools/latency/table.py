"""The latency lookup table: per-block latencies of one device, its calibration and its
self-measured error, in one human-readable JSON file (``nastools.latency-table/1``).

Entries are keyed by :attr:`nastools.space.Block.key`. A prediction is the sum of an arch's
block entries plus a model-level overhead fitted on a few end-to-end runs::

    predict(arch) = sum(entries) + overhead(arch)
                  = scale * sum(entries) + per_block_ms * n_blocks + per_mparam_ms * mparams
                    + per_melem_ms * melems + per_mexpanded_ms * mexpanded + offset_ms

``per_block_ms`` is (minus) the per-call cost every block paid when timed alone (session
entry, input/output handling) that an end-to-end run pays once; ``per_mparam_ms`` the cost of
weights that stay cache-resident while one block is timed over and over but are streamed from
further away in a whole model; ``per_melem_ms`` and ``per_mexpanded_ms``, per million
elements of the blocks' input tensors and of the MBConv blocks' expanded tensors, what moving
those tensors costs in a whole model other than in a lone block (on fmnist tables
``per_melem_ms`` comes out negative: ONNX Runtime's CPU provider reorders a lone block's
input into its blocked NCHWc layout and back, a whole model keeps that layout from block to
block; on a single-resolution space the two terms are fitted terms whose signs vary from
one calibration to the next); ``offset_ms`` what the whole model pays once; ``scale`` what
stays proportional. Tables calibrated before the two element terms existed load with them
as 0.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from nastools.errors import NastoolsError
from nastools.io import atomic_write_json
from nastools.space import Arch, Block, SearchSpace, load_space

TABLE_FORMAT = "nastools.latency-table/1"
#: the user's own tables (``nastools profile`` writes here), relative to the working directory
TABLES_DIR = Path("latency_tables")
#: the statistics a table's entries and end-to-end runs may hold, as their keys (``p10`` -> ``p10_ms``)
STATISTICS = ("p10_ms", "median_ms", "p90_ms", "p99_ms")
# what must agree between a table on disk and a run that resumes it
IDENTITY = ("space", "space_fingerprint", "device", "target", "backend", "precision", "batch", "threads")


def stat_key(name: str) -> str:
    """The record key of a statistic: ``p10`` -> ``p10_ms`` (a key is returned as is)."""
    key = name if name.endswith("_ms") else f"{name}_ms"
    if key not in STATISTICS:
        raise NastoolsError(f"--statistic: got {name!r}, expected one of {', '.join(k[:-3] for k in STATISTICS)}")
    return key


def stat_name(key: str) -> str:
    """The name a report gives a statistic: ``p10_ms`` -> ``p10``."""
    return key[:-3] if key.endswith("_ms") else key


def default_statistic(target: str) -> str:
    """The statistic budgets and tables use unless told: the median on a GPU (a dedicated
    device: what trtexec reports, and what a deployment reads as "10 ms"); the p10 on a CPU
    (a shared machine: other processes slow a share of runs by a scheduler slice, by an amount
    that changes from hour to hour, and the p10 is the latency they leave untouched,
    reproducible from one run to the next and within a few % of the median on a quiet host)."""
    return "median_ms" if target == "gpu" else "p10_ms"


def slug(text: str) -> str:
    """'AMD EPYC 7B13 64-Core Processor' -> 'amd-epyc-7b13-64-core-processor';
    trademark marks go: 'Intel(R) Xeon(R) Processor' -> 'intel-xeon-processor'."""
    text = re.sub(r"\((r|tm|c)\)", " ", text, flags=re.IGNORECASE)
    out = "".join(c.lower() if c.isalnum() else "-" for c in text)
    return "-".join(p for p in out.split("-") if p) or "unknown"


FEATURES = ("sum_ms", "n_blocks", "mparams", "melems", "mexpanded")
COEFFICIENTS = ("scale", "per_block_ms", "per_mparam_ms", "per_melem_ms", "per_mexpanded_ms")


def _elements(block: Block) -> tuple[float, float]:
    """Millions of elements, per image, of ``block``'s input tensor and of its expanded
    tensor (MBConv blocks; 0 for the others)."""
    hw = block.size * block.size
    return hw * block.in_chs / 1e6, (hw * block.mid_chs / 1e6 if block.kind == "mbconv" else 0.0)


def shipped_tables_dir() -> Path:
    """The tables shipped inside the package (``nastools/latency_tables/``)."""
    from nastools.resources import package_dir

    return package_dir("latency_tables")


def table_files(space: str) -> list[Path]:
    """Every table file of ``space``: the user's (``latency_tables/<space>/`` in the working
    directory) first, then the shipped ones; a user's file hides a shipped one of its name."""
    found: dict[str, Path] = {}
    for root in (TABLES_DIR, shipped_tables_dir()):
        folder = root / space
        for p in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            found.setdefault(p.name, p)
    return list(found.values())


def default_table_path(
    space: str, device: str, backend: str, precision: str, batch: int, threads: int | None = None, root: Path | None = None
) -> Path:
    """``latency_tables/<space>/<device>__<backend>__<precision>__b<batch>.json`` under ``root``
    (default: the working directory's ``latency_tables/``); CPU tables name their thread count
    in the device part (``-t1``), since it changes every latency."""
    dev = slug(device) + (f"-t{threads}" if threads else "")
    return (TABLES_DIR if root is None else Path(root)) / space / f"{dev}__{slug(backend)}__{precision}__b{batch}.json"


#: the error figures a validation stores per predictor (what ``nastools profile`` prints)
METRICS = ("mape_pct", "rmse_ms", "within_5_pct", "within_10_pct", "kendall_tau")


def _finite(value: Any, positive: bool = False) -> bool:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return ok and (value > 0 if positive else True)


def _count(value: Any, low: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _runs(runs: Any, where: str) -> None:
    """End-to-end runs (calibration, validation): objects naming an arch key and its time."""
    if not isinstance(runs, list):
        raise NastoolsError(f"{where}: got {type(runs).__name__}, expected a list of runs")
    for i, r in enumerate(runs):
        if not isinstance(r, Mapping) or not isinstance(r.get("arch"), str):
            raise NastoolsError(f"{where}[{i}]: expected an object with an 'arch' key and its measured_ms")
        if not _finite(r.get("measured_ms"), positive=True):
            raise NastoolsError(f"{where}[{i}].measured_ms: got {r.get('measured_ms')!r}, expected a positive number of ms")
        for k in FEATURES:
            if k in r and not _finite(r[k]):
                raise NastoolsError(f"{where}[{i}].{k}: got {r[k]!r}, expected a number")


def check_table(data: Any, source: str = "latency table") -> None:
    """Validate a latency table's JSON data before any use, raising one :class:`NastoolsError`
    line naming ``source`` and the first problem: the format; ``meta`` (every identity field,
    of its type: a valid space name, ``target`` cpu or gpu, a known precision and statistic,
    batch and threads >= 1, positive resolutions); every entry's latencies (finite and
    positive, the table's statistic present); the calibration's coefficients (finite, a
    positive scale) and runs; the validation's figures."""
    from nastools.constants import DEVICES, PRECISIONS
    from nastools.space import check_name

    if not isinstance(data, Mapping) or data.get("format") != TABLE_FORMAT:
        got = data.get("format") if isinstance(data, Mapping) else type(data).__name__
        raise NastoolsError(f"{source}: format {_brief(got)}, expected {TABLE_FORMAT!r}")
    meta, entries = data.get("meta"), data.get("entries")
    if not isinstance(meta, Mapping) or not isinstance(entries, Mapping):
        raise NastoolsError(f"{source}: expected 'meta' and 'entries' objects")
    missing = [k for k in IDENTITY if k not in meta]
    if missing:
        raise NastoolsError(f"{source}: meta.{missing[0]} missing, expected fields {', '.join(IDENTITY)}")
    check_name(meta["space"], f"{source}: meta.space")
    for key in ("space_fingerprint", "device", "backend"):
        if not isinstance(meta[key], str) or not meta[key].strip():
            raise NastoolsError(f"{source}: meta.{key}: got {_brief(meta[key])}, expected a non-empty string")
    for key, options in (("target", DEVICES), ("precision", PRECISIONS), ("statistic", STATISTICS)):
        if key in meta and meta[key] not in options:
            raise NastoolsError(f"{source}: meta.{key}: got {_brief(meta[key])}, expected one of {', '.join(options)}")
    for key in ("batch", "threads"):
        if not _count(meta[key], 1):
            raise NastoolsError(f"{source}: meta.{key}: got {_brief(meta[key])}, expected an integer >= 1")
    res = meta.get("resolutions", [])
    if not isinstance(res, list) or not all(_count(r, 1) for r in res):
        raise NastoolsError(f"{source}: meta.resolutions: got {_brief(res)}, expected a list of positive integers")
    if "protocol" in meta and not isinstance(meta["protocol"], Mapping):
        raise NastoolsError(f"{source}: meta.protocol: got {_brief(meta['protocol'])}, expected an object")
    stat = meta.get("statistic", "median_ms")
    for key, e in entries.items():
        if not isinstance(e, Mapping):
            raise NastoolsError(f"{source}: entry {_brief(key)}: got {_brief(e)}, expected an object of latencies")
        for k in (stat, "median_ms"):
            if k not in e:
                raise NastoolsError(f"{source}: entry {_brief(key)} has no {k} (the table's statistic)")
        for k, v in e.items():
            if str(k).endswith("_ms") and not _finite(v, positive=True):
                raise NastoolsError(f"{source}: entry {_brief(key)}: {k} is {_brief(v)}, expected a positive number of ms")
        if "passes" in e and not _count(e["passes"], 1):
            raise NastoolsError(f"{source}: entry {_brief(key)}: passes is {_brief(e['passes'])}, expected an integer >= 1")
    cal = data.get("calibration") or {}
    if not isinstance(cal, Mapping):
        raise NastoolsError(f"{source}: calibration: got {_brief(cal)}, expected an object")
    if "scale" in cal:
        for k in (*COEFFICIENTS, "offset_ms"):
            if (k in cal or k in ("scale", "offset_ms")) and not _finite(cal.get(k)):
                raise NastoolsError(f"{source}: calibration.{k}: got {_brief(cal.get(k))}, expected a number")
        if cal["scale"] <= 0:
            raise NastoolsError(f"{source}: calibration.scale: got {cal['scale']!r}, expected a positive number")
    if "runs" in cal:
        _runs(cal["runs"], f"{source}: calibration.runs")
    val = data.get("validation") or {}
    if not isinstance(val, Mapping):
        raise NastoolsError(f"{source}: validation: got {_brief(val)}, expected an object")
    if "runs" in val:
        _runs(val["runs"], f"{source}: validation.runs")
    for key in ("table", "flops_linear", "flops_linear_calibration", "noise"):
        figures = val.get(key)
        if figures is None:
            continue
        numbers = isinstance(figures, Mapping) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) or v is None for v in figures.values()
        )
        if not numbers or key != "noise" and any(figures.get(k) is None for k in METRICS):
            raise NastoolsError(
                f"{source}: validation.{key}: got {_brief(figures)}, expected an object of numbers "
                f"({', '.join(METRICS) if key != 'noise' else 'spreads'})"
            )
    if val.get("table") is not None and not _count(val["table"].get("n"), 0):
        raise NastoolsError(f"{source}: validation.table.n: got {_brief(val['table'].get('n'))}, expected a count")
    if "plot" in val and not isinstance(val["plot"], (str, type(None))):
        raise NastoolsError(f"{source}: validation.plot: got {_brief(val['plot'])}, expected a file name")


def arch_of_key(key: str) -> Arch:
    """The arch of a canonical key (:attr:`Arch.key`: ``space:r28-s16-16.1.3.1-...-h512``)."""
    from nastools.space import StageArch

    try:
        space, rest = key.split(":", 1)
        res, stem, *stages, head = rest.split("-")
        parsed = [st.split(".", 3) for st in stages]
        return Arch(
            space,
            int(res[1:]),
            int(stem[1:]),
            tuple(StageArch(int(w), int(d), int(k), int(e) if e.isdigit() else float(e)) for w, d, k, e in parsed),
            int(head[1:]),
        )
    except ValueError:
        raise NastoolsError(f"latency table: run arch {_brief(key)} is not an arch key (space:r<res>-s<stem>-...-h<head>)") from None


def _brief(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass
class LatencyTable:
    """Per-block latencies of one (device, backend, precision, batch, threads) for one space."""

    meta: dict[str, Any]
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)
    validation: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    _space: SearchSpace | None = field(default=None, repr=False)
    _cache: dict = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ construction

    @classmethod
    def new(
        cls,
        space: SearchSpace,
        *,
        device: str,
        backend: str,
        version: str,
        precision: str,
        batch: int,
        threads: int,
        resolutions: Sequence[int] | None = None,
        protocol: Mapping | None = None,
        target: str = "cpu",
        library: str = "",
        statistic: str | None = None,
    ) -> "LatencyTable":
        from nastools import __version__

        meta = {
            "space": space.name,
            "space_fingerprint": space.fingerprint,
            "resolutions": sorted(resolutions or space.resolutions),
            "device": device,
            "target": target,
            "backend": backend,
            "backend_library": library or backend,
            "backend_version": version,
            "precision": precision,
            "batch": batch,
            "threads": threads,
            "statistic": stat_key(statistic) if statistic else default_statistic(target),
            "nastools_version": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "protocol": dict(protocol or {}),
        }
        return cls(meta=meta, _space=space)

    @classmethod
    def load(cls, path: str | Path, space: SearchSpace | str | None = None) -> "LatencyTable":
        """Read and validate a table (:func:`check_table`); with ``space``, check that it was
        profiled for that space (:meth:`bind`)."""
        from nastools.io import read_json

        path = Path(path)
        data = read_json(path, "latency table", hint="expected a file written by 'nastools profile' (run it first)")
        table = cls.from_dict(data, source=f"latency table {str(path)!r}")
        table.path = path
        if space is not None:
            table.bind(space)
        return table

    @classmethod
    def from_dict(cls, data: Any, source: str = "latency table") -> "LatencyTable":
        """A table from its JSON data, validated first (:func:`check_table`)."""
        check_table(data, source)
        meta, entries = data["meta"], data["entries"]
        calibration = dict(data.get("calibration") or {})
        if "scale" in calibration:  # fitted before the element terms existed: they were 0
            for k in COEFFICIENTS:
                calibration.setdefault(k, 0.0)
        return cls(dict(meta), {k: dict(v) for k, v in entries.items()}, calibration, dict(data.get("validation") or {}))

    def to_dict(self) -> dict[str, Any]:
        """The table as the JSON-ready dict that :meth:`save` writes."""
        return {
            "format": TABLE_FORMAT,
            "meta": self.meta,
            "calibration": self.calibration,
            "validation": self.validation,
            "entries": self.entries,
        }

    def save(self, path: str | Path | None = None) -> Path:
        """Write the table atomically (to ``path`` or where it was loaded from)."""
        path = Path(path or self.path or "")
        if not str(path):
            raise ValueError("LatencyTable.save needs a path")
        self.path = atomic_write_json(path, self.to_dict(), indent=1)
        return self.path

    # ------------------------------------------------------------------ identity

    @property
    def statistic(self) -> str:
        """Which recorded statistic predictions add up (:data:`STATISTICS`; new tables:
        :func:`default_statistic` of their target unless profiled with another)."""
        return self.meta.get("statistic", "median_ms")

    def with_statistic(self, statistic: str | None) -> "LatencyTable":
        """This table predicting ``statistic`` (``median``, ``p10``, ``p90``, ``p99``; None: the
        one it was profiled for): itself when it already does, else a copy
        whose calibration is refitted on its end-to-end runs' figures of that statistic
        (validation figures, made for the stored statistic, are left out of the copy). A
        table whose entries or runs lack the statistic refuses it in one line."""
        key = stat_key(statistic) if statistic else self.statistic
        if key == self.statistic:
            return self
        where = f" {str(self.path)!r}" if self.path else ""
        fix = f"profile it again to record {stat_name(key)} (nastools profile --space {self.meta['space']} --statistic {stat_name(key)})"
        lacking = next((k for k, e in self.entries.items() if key not in e), None)
        runs = self.calibration.get("runs", [])
        if lacking is not None or any(key not in r for r in runs):
            what = f"entry {lacking}" if lacking is not None else "its calibration runs"
            raise NastoolsError(f"latency table{where} cannot predict the {stat_name(key)}: {what} holds no {key}; {fix}")
        copy = LatencyTable({**self.meta, "statistic": key}, self.entries, {}, {}, self.path, self._space)
        if "scale" in self.calibration:  # the block sum is a feature of the statistic too
            copy.fit_calibration([{**r, "measured_ms": r[key], "sum_ms": copy.block_sum(arch_of_key(r["arch"]))} for r in runs])
        return copy

    @property
    def space(self) -> SearchSpace:
        if self._space is None:
            self.bind(self.meta["space"])
        return self._space  # type: ignore[return-value]

    def bind(self, space: SearchSpace | str) -> "LatencyTable":
        """Attach the space predictions are made for; a different space (another definition,
        another name, a resolution the space lacks) is a user error."""
        sp = load_space(space)
        where = f" {str(self.path)!r}" if self.path else ""
        if sp.fingerprint == self.meta["space_fingerprint"] and sp.name != self.meta["space"]:
            raise NastoolsError(
                f"latency table{where} names space {self.meta['space']!r}, not {sp.name!r}, though both define the same "
                f"choices: profile {sp.name!r} with: nastools profile --space {sp.name}, or fix its meta.space"
            )
        odd = sorted(set(self.meta.get("resolutions", [])) - set(sp.resolutions))
        if sp.fingerprint == self.meta["space_fingerprint"] and odd:
            raise NastoolsError(
                f"latency table{where}: meta.resolutions holds {odd}, which space {sp.name!r} does not offer "
                f"({', '.join(map(str, sp.resolutions))}): a damaged table"
            )
        if sp.fingerprint != self.meta["space_fingerprint"]:
            raise NastoolsError(
                f"latency table{where} was profiled for space {self.meta['space']!r} (fingerprint "
                f"{self.meta['space_fingerprint']}), not for space {sp.name!r} (fingerprint {sp.fingerprint}); "
                f"profile this space with: nastools profile --space {sp.name}"
            )
        self._space = sp
        self._cache.clear()
        return self

    def check_resume(self, other_meta: Mapping[str, Any]) -> None:
        """Raise unless a run with ``other_meta`` may add to this table."""
        from nastools.machine import generation_diff

        # the CPU generation only where both record it (tables made before it was recorded may resume)
        for k in IDENTITY + tuple(generation_diff(self.meta, other_meta)):
            if self.meta.get(k) != other_meta.get(k):
                raise NastoolsError(
                    f"cannot resume latency table {str(self.path)!r}: its {k} is {self.meta.get(k)!r}, this run's is "
                    f"{other_meta.get(k)!r}; pass another --out, or delete the file to start over"
                )

    # ------------------------------------------------------------------ entries

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, key: object) -> bool:
        return (key.key if isinstance(key, Block) else key) in self.entries

    def set(self, block: Block | str, measurement: Any) -> None:
        """Record the measurement of one block (a Block or its key); clears the prediction cache."""
        key = block.key if isinstance(block, Block) else block
        self.entries[key] = measurement.to_dict() if hasattr(measurement, "to_dict") else dict(measurement)
        self._cache.clear()

    def block_ms(self, block: Block) -> float:
        """The latency of one block (:attr:`statistic`); a missing entry is a user error naming it."""
        e = self.entries.get(block.key)
        if e is None:
            where = str(self.path) if self.path else "the table's file"
            fix = (
                f"profile that resolution into it with: nastools profile --space {self.meta['space']} --resolutions {block.size} "
                f"--out {where} (the same backend and settings; it adds the blocks to the table)"
                if block.kind == "stem" and block.size not in (self.meta.get("resolutions") or [])
                else f"the table is incomplete (a profile stopped early?): rerun the nastools profile command that made it, with --out {where} (it resumes)"
            )
            raise NastoolsError(
                f"latency table {str(self.path or '')!r} has no entry for block {block.key} (resolutions profiled: "
                f"{self.meta.get('resolutions')}); {fix}"
            )
        return float(e[self.statistic])

    def missing(self, blocks: Iterable[Block]) -> list[Block]:
        """The blocks among ``blocks`` that have no entry yet (what a resumed profile still times)."""
        return [b for b in blocks if b.key not in self.entries]

    # ------------------------------------------------------------------ prediction

    def _parts(self, arch: Arch) -> tuple[float, ...]:
        """(sum of block latencies, number of blocks, millions of weights, millions of block
        input elements, millions of expanded elements): :data:`FEATURES`, memoised per stage
        like ``SearchSpace.cost``, so that a prediction is a few dict lookups."""
        cache, sp = self._cache, self.space
        key = ("stem", arch.resolution, arch.stem)
        hit = cache.get(key)
        if hit is None:
            b = Block("stem", arch.resolution, sp.input_channels, arch.stem, sp.stem_kernel, sp.stem_stride, act=sp.act)
            hit = cache[key] = (self.block_ms(b), b.cost()[1] / 1e6, *_elements(b), b.out_size)
        total, params, elems, expanded, size = hit
        n = 2
        chs = arch.stem
        for i, st in enumerate(arch.stages):
            key = (i, chs, size, st)
            hit = cache.get(key)
            if hit is None:
                blocks = sp.stage_blocks(i, chs, size, st)
                el = [_elements(b) for b in blocks]
                hit = cache[key] = (
                    sum(self.block_ms(b) for b in blocks),
                    sum(b.cost()[1] for b in blocks) / 1e6,
                    sum(e[0] for e in el),
                    sum(e[1] for e in el),
                    blocks[-1].out_size,
                )
            total += hit[0]
            params += hit[1]
            elems += hit[2]
            expanded += hit[3]
            size = hit[4]
            chs = st.width
            n += st.depth
        key = ("head", chs, size, arch.head)
        hit = cache.get(key)
        if hit is None:
            b = sp.head_block(chs, size, arch.head)
            hit = cache[key] = (self.block_ms(b), b.cost()[1] / 1e6, *_elements(b))
        return total + hit[0], n, params + hit[1], elems + hit[2], expanded + hit[3]

    def features(self, arch: Arch) -> dict[str, float]:
        """What the calibration model is fitted on, for one arch (:data:`FEATURES`):
        ``sum_ms`` (block sum), ``n_blocks``, ``mparams`` (millions of weights), ``melems``
        and ``mexpanded`` (millions of elements of the blocks' input tensors and of the MBConv
        blocks' expanded tensors, per image)."""
        return dict(zip(FEATURES, self._parts(arch)))

    def block_sum(self, arch: Arch) -> float:
        """The sum of ``arch``'s block latencies (ms), without the model-level overhead."""
        return self._parts(arch)[0]

    def overhead(self, arch: Arch) -> float:
        """The calibrated model-level overhead (ms) added to the block sum (0 uncalibrated)."""
        parts = self._parts(arch)
        return self._model(*parts) - parts[0]

    def _model(self, s: float, n: int, p: float, e: float, x: float) -> float:
        c = self.calibration
        if "scale" not in c:  # uncalibrated, or its runs measured but not fitted yet (an interrupted profile)
            return s
        return (
            c["scale"] * s
            + c["per_block_ms"] * n
            + c["per_mparam_ms"] * p
            + c["per_melem_ms"] * e
            + c["per_mexpanded_ms"] * x
            + c["offset_ms"]
        )

    def predict(self, arch: Arch) -> float:
        """Predicted end-to-end latency of ``arch`` in ms: block sum plus overhead. A
        prediction that is not a positive number (a calibration fitted far from ``arch``) is
        a one-line error, never a budget that any arch meets."""
        ms = self._model(*self._parts(arch))
        if not ms > 0 or not math.isfinite(ms):
            where = f" {str(self.path)!r}" if self.path else ""
            raise NastoolsError(
                f"latency table{where} predicts {ms:.4g} ms for arch {arch.id} ({arch.key}): its calibration does not hold "
                f"for this arch; profile the table again (nastools profile --space {self.meta['space']})"
            )
        return ms

    def fit_calibration(self, runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Fit the overhead on end-to-end runs: each ``{"arch", "measured_ms"}`` plus the
        arch's :meth:`features`, by least squares on relative error (small and large models
        count alike). The more runs, the more terms: all six coefficients from 30 runs (5 per
        coefficient: the element terms, fitted on 20 runs, lost as much as they gained on the
        stored runs of five tables), scale, per block, per weight and offset from 12 (3 per
        coefficient), else scale and offset only; a fit whose scale is not positive (noise)
        falls back to the next smaller model, so a costlier subnet never predicts faster."""
        import numpy as np

        if len(runs) < 6:
            raise NastoolsError(f"calibration: got {len(runs)} end-to-end runs, expected at least 6 (--calibrate 6 or more)")
        lacking = [(r["arch"], k) for r in runs for k in FEATURES if k not in r]
        if lacking:
            raise NastoolsError(f"calibration: run {lacking[0][0]} has no {lacking[0][1]!r}: add LatencyTable.features(arch) to each run")
        y = np.array([r["measured_ms"] for r in runs])
        cols = np.array([[r[k] for k in FEATURES] for r in runs], dtype=float)
        ones = np.ones_like(y)
        coef = None
        for n_feats, per_coef in ((len(FEATURES), 5), (3, 3), (1, 0)):
            if len(runs) < per_coef * (n_feats + 1):
                continue
            fit, *_ = np.linalg.lstsq(np.column_stack([cols[:, :n_feats], ones]) / y[:, None], ones, rcond=None)
            if fit[0] > 0:
                coef = [*fit[:-1], *[0.0] * (len(FEATURES) - n_feats), fit[-1]]
                break
        if coef is None:
            coef = [1.0, *[0.0] * (len(FEATURES) - 1), float(np.mean(y - cols[:, 0]))]
        self.calibration = {
            "model": " + ".join(f"{c} * {f}" for c, f in zip(COEFFICIENTS, FEATURES)) + " + offset_ms",
            **{c: float(v) for c, v in zip(COEFFICIENTS, coef)},
            "offset_ms": float(coef[-1]),
            "runs": [dict(r) for r in runs],
        }
        return self.calibration

    def check_target(self, device: str) -> "LatencyTable":
        """Check that the table was profiled on the kind of device (``cpu`` or ``gpu``) a
        budget names; other device names (a table given for them) are not checked."""
        target = self.meta["target"]
        if device in ("cpu", "gpu") and target != device:
            where = f" {str(self.path)!r}" if self.path else ""
            raise NastoolsError(
                f"latency table{where} was profiled on {target} ({self.meta['device']}), but the budget is on {device}: "
                f"give a {device} table (nastools profile --device {device}) or put the budget on {target}"
            )
        return self

    def describe(self) -> str:
        """One line naming the table's space, device, backend, precision, batch and threads."""
        m = self.meta
        return (
            f"{m['space']} on {m['device']} ({m['backend']} {m.get('backend_version', '')}, {m['precision']}, "
            f"batch {m['batch']}, {m['threads']} thread(s), {stat_name(self.statistic)}): {len(self.entries)} blocks"
        )

    def summary(self) -> dict[str, Any]:
        """The calibration and validation figures without their per-subnet runs."""
        return {
            "calibration": {k: v for k, v in self.calibration.items() if k != "runs"},
            "validation": {k: v for k, v in self.validation.items() if k != "runs"},
        }

    def describe_calibration(self) -> str | None:
        """One line: the fitted overhead model and the number of subnets it was fitted on
        (None before calibration)."""
        c = self.calibration
        if "scale" not in c:
            return None
        us = {k: 1e3 * c.get(k, 0.0) for k in (*COEFFICIENTS[1:], "offset_ms")}
        return (
            f"calibration on {len(c.get('runs', []))} subnets: predict = {c['scale']:.3f} x block sum "
            f"{us['per_block_ms']:+.1f} us/block {us['per_mparam_ms']:+.1f} us/M weights "
            f"{us['per_melem_ms']:+.1f} us/M block input elements "
            f"{us['per_mexpanded_ms']:+.1f} us/M expanded elements {us['offset_ms']:+.1f} us"
        )

    def validation_report(self) -> dict[str, Any] | None:
        """The held-out validation as a report shows it (None before validation): ``n``
        subnets; ``noise_pct``, the median spread of repeated measurements; ``pass_tau``, how
        well two measurement passes agree on the subnets' order (None with one pass);
        ``predictors``, ``(name, metrics)`` pairs for the table and its FLOPs baselines, metrics
        as :func:`nastools.latency.validate.error_metrics` gives them; ``plot``, the scatter
        plot's path (or None)."""
        v = self.validation
        if not v.get("table"):
            return None
        names = (
            ("latency table", "table"),
            ("FLOPs linear, fitted on these runs", "flops_linear"),
            ("FLOPs linear, fitted on the calibration runs", "flops_linear_calibration"),
        )
        noise = v.get("noise", {})
        return {
            "n": v["table"]["n"],
            "noise_pct": noise.get("median_spread_pct", float("nan")),
            "pass_tau": noise.get("pass_kendall_tau"),
            "predictors": [(name, v[key]) for name, key in names if v.get(key) is not None],
            "plot": self.path.with_name(v["plot"]) if v.get("plot") and self.path is not None else None,
        }
