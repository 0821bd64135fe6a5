"""Profile a device into a :class:`LatencyTable`: time every block, calibrate the overhead on a
few end-to-end runs, validate on held-out subnets. Resumable: the table is saved atomically
every few seconds and on interruption, and a rerun skips whatever it already holds."""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Sequence

from nastools.errors import NastoolsError
from nastools.io import writable_file
from nastools.latency.measure import Backend, Protocol, measure_interleaved
from nastools.latency.table import FEATURES, LatencyTable, default_table_path, stat_name
from nastools.latency.validate import scatter_plot, summarize
from nastools.latency.workload import block_workload, blocks_for, subnet_workload
from nastools.machine import memory_low
from nastools.space import Arch, SearchSpace, as_rng, load_space

CALIBRATION_SEED = 1000
VALIDATION_SEED = 2000
#: subnets of one chunk of end-to-end runs timed again with the next (see measure_archs)
ANCHORS = 8


def sample_archs(space: SearchSpace, n: int, seed: int, resolutions: Sequence[int], exclude: set[str] = frozenset()) -> list[Arch]:
    """``n`` distinct random archs at ``resolutions``, none whose key is in ``exclude``."""
    rng = as_rng(seed)
    out: list[Arch] = []
    seen = set(exclude)
    res = sorted(resolutions)
    for _ in range(100 * n + 100):
        if len(out) == n:
            break
        a = space.sample(rng).replace(resolution=rng.choice(res))
        if a.key not in seen:
            seen.add(a.key)
            out.append(a)
    return out


def _bar(total: int, desc: str, show: bool, initial: int = 0):
    from tqdm import tqdm

    return tqdm(
        total=total, initial=initial, desc=desc, unit="blk" if "block" in desc else "net", disable=not show, dynamic_ncols=True, leave=True
    )


def open_table(
    space: SearchSpace,
    backend: Backend,
    *,
    batch: int,
    resolutions: Sequence[int] | None,
    out: str | Path | None,
    protocol: Protocol,
    root: Path | None = None,
    locks=None,
    statistic: str | None = None,
) -> LatencyTable:
    """The table at ``out`` (default: the path from the backend's description under ``root``,
    the working directory's ``latency_tables/``) to resume, or a new one predicting
    ``statistic`` (None: :func:`~nastools.latency.table.default_statistic`). With ``locks`` (an
    ``ExitStack``), the table file is locked for this process before it is read, until the
    stack closes (:class:`nastools.lock.OutputLock`)."""
    info = backend.describe()
    res = sorted(resolutions or space.resolutions)
    blocks_for(space, res)  # checks the resolutions before any file is touched
    target = "gpu" if backend.on_gpu else "cpu"
    fresh = LatencyTable.new(
        space,
        device=info["device"],
        backend=backend.name,
        version=info["version"],
        precision=backend.precision,
        batch=batch,
        threads=backend.threads,
        resolutions=res,
        protocol=asdict(protocol),
        target=target,
        library=info["backend"],
        statistic=statistic,
    )
    if not backend.on_gpu:
        from nastools.machine import this_generation

        fresh.meta.update(this_generation())  # one model name ('AMD EPYC') can cover several CPU generations
    if out is not None and not str(out).strip():
        raise NastoolsError("--out: empty path")
    path = (
        Path(out)
        if out
        else default_table_path(
            space.name, info["device"], backend.name, backend.precision, batch, None if backend.on_gpu else backend.threads, root
        )
    )
    if not out and path.is_file() and _other_generation(path, fresh.meta):
        # the default file was made on another generation of this CPU model: a table of its own
        from nastools.machine import cpu_tag

        path = path.with_name(path.name.replace("__", f"-{cpu_tag()}__", 1))
    writable_file(path, "--out")  # before the measuring, not at the first save
    if locks is not None:
        from nastools.lock import OutputLock

        locks.enter_context(OutputLock(path, "latency table", folder=False, elsewhere="pass another --out"))
        from nastools.io import remove_stale_temps

        remove_stale_temps(path.parent, (path.name, path.with_suffix(".validation.png").name))  # of a profile killed mid-write
    if path.is_file():
        table = LatencyTable.load(path)
        table.check_resume(fresh.meta)
        if statistic and table.statistic != fresh.statistic:
            raise NastoolsError(
                f"cannot resume latency table {str(path)!r} with --statistic {stat_name(fresh.statistic)}: it predicts the "
                f"{stat_name(table.statistic)}; pass --statistic {stat_name(table.statistic)} (a search can still use any "
                f"statistic the table stores: nastools search --statistic), or another --out"
            )
        table.bind(space)
        table.meta["resolutions"] = sorted(set(table.meta.get("resolutions", [])) | set(res))
        return table
    fresh.path = path
    return fresh


def _other_generation(path: Path, meta: dict) -> bool:
    """Whether the table at ``path`` records a CPU generation (vector extension or family and
    model) other than ``meta``'s, or leaves out a field of it that ``meta`` holds (a table made
    before nastools recorded it: its generation is unknown, so its blocks are not mixed with
    this machine's)."""
    from nastools.io import read_json
    from nastools.machine import GENERATION_KEYS, generation_diff

    try:
        theirs = read_json(path, "latency table")
    except NastoolsError:
        return False  # LatencyTable.load says what is wrong with it
    if not isinstance(theirs, dict) or not isinstance(theirs.get("meta"), dict):
        return False
    unknown = [k for k in GENERATION_KEYS if meta.get(k) and not theirs["meta"].get(k)]
    return bool(unknown or generation_diff(meta, theirs["meta"]))


def profile_blocks(
    table: LatencyTable,
    backend: Backend,
    *,
    protocol: Protocol,
    passes: int = 2,
    progress: bool = True,
    save_every_s: float = 5.0,
    limit: int | None = None,
) -> int:
    """Time every block of the table's space and resolutions in ``passes`` sweeps (a block's
    passes lie a whole sweep apart, so a burst of interference rarely hits both); an entry
    keeps the pass with the smallest statistic and the spread between passes. Blocks the
    table already holds with enough passes are skipped (resume). Returns how many block
    measurements were taken; ``limit`` stops after that many (for tests of resumption)."""
    space = table.space
    blocks = blocks_for(space, table.meta["resolutions"])
    batch = table.meta["batch"]
    stat = table.statistic
    done = 0
    last = t_start = time.monotonic()
    spent = float(table.meta.get("profile_s", 0.0))
    have = sum(min(int(table.entries.get(b.key, {}).get("passes", 1 if b.key in table.entries else 0)), passes) for b in blocks)
    bar = _bar(len(blocks) * passes, "blocks", progress, initial=have)
    try:
        for sweep in range(passes):
            for b in blocks:
                old = table.entries.get(b.key)
                done_passes = int(old.get("passes", 1)) if old else 0
                if done_passes > sweep:
                    continue
                if limit is not None and done >= limit:
                    return done
                m = backend.measure(block_workload(b, batch), protocol).to_dict()
                if old:
                    vals = [old[stat], m[stat]] + ([old["worst_ms"]] if "worst_ms" in old else [])
                    best = m if m[stat] < old[stat] else {k: old[k] for k in m if k in old}
                    m = {**best, "worst_ms": round(max(vals), 6)}
                    m["spread_pct"] = round(100 * (m["worst_ms"] - m[stat]) / m[stat], 2)
                table.set(b, {**m, "passes": done_passes + 1})
                done += 1
                bar.update(1)
                if time.monotonic() - last >= save_every_s:
                    table.meta["profile_s"] = round(spent + time.monotonic() - t_start, 1)
                    table.save()
                    last = time.monotonic()
    finally:
        bar.close()
        table.meta["profile_s"] = round(spent + time.monotonic() - t_start, 1)
        table.save()
    return done


def _run_record(table: LatencyTable, a: Arch, whole: Any, parts: Sequence[Any], scale: float, *, anchored: bool) -> dict[str, Any]:
    """One end-to-end record of ``a``: its timings (``whole`` over all runs, ``parts`` per pass) scaled by ``scale``."""
    stat = table.statistic
    vals = [scale * getattr(m, stat) for m in parts]
    return {
        "arch": a.key,
        "measured_ms": scale * getattr(whole, stat),
        "median_ms": scale * whole.median_ms,
        "p10_ms": scale * whole.p10_ms,
        "p90_ms": scale * whole.p90_ms,
        **({"p99_ms": scale * whole.p99_ms} if whole.p99_ms is not None else {}),
        "n": whole.n,
        "pass_ms": vals,
        "spread_pct": 100 * (max(vals) - min(vals)) / min(vals),
        **({"chunk_scale": round(scale, 5)} if anchored else {}),
        **table.features(a),
        "flops": table.space.flops(a),
    }


def measure_archs(
    table: LatencyTable,
    backend: Backend,
    archs: Sequence[Arch],
    runs: list[dict[str, Any]],
    *,
    protocol: Protocol,
    desc: str,
    progress: bool = True,
    passes: int = 3,
    rounds: int = 21,
    chunk: int = 150,
    on_update: Callable[[], None] | None = None,
) -> None:
    """Measure ``archs`` end to end (skipping ones already in ``runs``), appending records.

    The archs are timed together by :func:`~nastools.latency.measure.measure_interleaved`:
    all loaded at once (in chunks of up to ``chunk``, fewer where memory runs short:
    :func:`nastools.machine.memory_low`) and visited round-robin in ``rounds`` short rounds,
    so that the host's drift over the minutes of a chunk reaches every subnet alike instead
    of making one slower than its neighbour. Across chunks (and across a resume) the drift
    is taken out by :data:`ANCHORS` subnets measured before and timed again with the chunk:
    its figures are scaled by the median ratio of their earlier figure to the new one
    (``chunk_scale`` in the records).
    A record's latency (the table's statistic, p10 or median) is over all its timed runs;
    ``pass_ms`` holds the statistic of each of ``passes`` interleaved sets of rounds and
    ``spread_pct`` their range, the measurement noise any predictor is bounded by. Records
    are appended (and ``on_update`` called) after each chunk.
    """
    stat = table.statistic
    have = {r["arch"] for r in runs}
    todo = [a for a in archs if a.key not in have]
    batch = table.meta["batch"]
    bar = _bar(len(archs) * rounds, desc, progress, initial=(len(archs) - len(todo)) * rounds)
    loading: list[Any] = []  # the bar of a chunk's loads, while they last

    def full() -> bool:
        return memory_low(gpu=backend.on_gpu)

    def update(stage: str, n: int) -> None:
        if stage == "load":
            if not loading:
                loading.append(_bar(min(chunk, len(todo) + len(anchors)), "loading subnets", progress))
            loading[0].update(n)
            return
        if loading:
            loading.pop().close()
        bar.update(max(0, n - len(anchors)))  # the anchors' visits are not what the bar counts

    # subnets measured before (an earlier chunk, or an interrupted run's) are timed again with
    # each chunk: their ratio then / now puts the chunk on the same footing as the runs before
    # it, whose host may have run faster or slower
    anchors = [a for a in archs if a.key in have][:ANCHORS]
    try:
        seed = 0
        while todo:
            group = anchors + todo[: max(1, chunk - len(anchors))]
            # a generator: each subnet's module and ONNX bytes are dropped once it is loaded
            workloads = (subnet_workload(table.space, a, batch) for a in group)
            measured = measure_interleaved(
                backend, workloads, protocol, rounds=rounds, passes=passes, seed=seed, on_progress=update, full=full
            )
            seed += 1
            if len(measured) <= len(anchors):  # memory held only the anchors: time the rest without them
                anchors = []
                continue
            recorded = {r["arch"]: float(r["measured_ms"]) for r in runs}
            scale = statistics.median(recorded[a.key] / getattr(m, stat) for a, (m, _) in zip(anchors, measured)) if anchors else 1.0
            new = group[len(anchors) : len(measured)]
            todo = todo[len(new) :]
            for a, (whole, parts) in zip(new, measured[len(anchors) :]):
                runs.append(_run_record(table, a, whole, parts, scale, anchored=bool(anchors)))
            k = min(ANCHORS, max(1, len(measured) // 4))  # at most a quarter of what memory holds
            anchors = new[:: max(1, len(new) // k)][:k]
            if on_update:
                on_update()
    finally:
        for b in loading:
            b.close()
        bar.close()


def measure_end_to_end(
    table: LatencyTable, archs: Sequence[Arch], *, backend: Backend | None = None, passes: int = 3, progress: bool = False
) -> list[float]:
    """End-to-end latency (ms) of each of ``archs`` on this machine, measured the way the
    table's calibration and validation runs are (:func:`measure_archs`: the table's protocol
    and statistic, all of ``archs`` timed together round-robin, ``passes`` interleaved sets
    of rounds), so that it compares like with like with ``table.predict``. ``backend``
    defaults to the table's own: its backend, device kind (``meta.target``) and precision."""
    from nastools.latency.backends import make_backend

    meta = table.meta
    own = backend is None
    if own:
        target = "gpu" if str(meta.get("target", "cpu")) == "gpu" else "cpu"
        backend = make_backend(target, str(meta["backend"]), str(meta.get("precision", "fp32")), int(meta.get("threads") or 1))
    fields = set(Protocol.__dataclass_fields__)
    proto = Protocol(**{k: v for k, v in dict(meta.get("protocol") or {}).items() if k in fields})
    unique = list({a.key: a for a in archs}.values())
    runs: list[dict[str, Any]] = []
    try:
        measure_archs(table, backend, unique, runs, protocol=proto, desc="end to end", progress=progress, passes=passes)
    finally:
        if own:
            backend.close()
    ms = {r["arch"]: float(r["measured_ms"]) for r in runs}
    return [ms[a.key] for a in archs]


def reference_archs(table: LatencyTable, n: int = 6) -> list[Arch]:
    """Up to ``n`` of the table's calibration subnets, always the same ones: the subnets
    whose end-to-end times the table recorded, against which :func:`check_drift` and
    :func:`measure_referenced` tell how fast this machine runs now ([] without such runs)."""
    runs = {r["arch"] for r in table.calibration.get("runs", [])}
    if not runs:
        return []
    return [a for a in sample_archs(table.space, len(runs), CALIBRATION_SEED, table.meta["resolutions"]) if a.key in runs][:n]


def speed_record(table: LatencyTable, refs: Sequence[Arch], now: Sequence[float]) -> dict[str, Any]:
    """How fast this machine ran the reference subnets ``refs`` (times ``now``, ms) against
    the times the table recorded for them: ``{"factor": median of now / then, "ratios",
    "archs", "keys", "measured_ms"}`` (the arch ids, their keys and their times now)."""
    then = {r["arch"]: float(r["measured_ms"]) for r in table.calibration.get("runs", [])}
    ratios = [m / then[a.key] for a, m in zip(refs, now)]
    return {
        "factor": statistics.median(ratios),
        "ratios": [round(r, 4) for r in ratios],
        "archs": [a.id for a in refs],
        "keys": [a.key for a in refs],
        "measured_ms": [round(m, 6) for m in now],
    }


def check_drift(table: LatencyTable, n: int = 6, *, backend: Backend | None = None, passes: int = 3) -> dict | None:
    """How fast this machine runs the table's calibration subnets now, against the end-to-end
    times the table recorded for them (:func:`speed_record` of up to ``n`` of them, measured
    by :func:`measure_end_to_end`, like the records), or None when the table holds no
    calibration runs to compare with. A shared or cloud machine's speed drifts by tens of
    percent over hours; the search scales a table's predictions by ``factor`` so that they
    describe the machine as it is now."""
    archs = reference_archs(table, n)
    if not archs:
        return None
    return speed_record(table, archs, measure_end_to_end(table, archs, backend=backend, passes=passes))


def measure_referenced(
    table: LatencyTable, archs: Sequence[Arch], *, n: int = 6, backend: Backend | None = None, passes: int = 3
) -> tuple[list[float], dict | None]:
    """End-to-end latency (ms) of each of ``archs``, timed together, round-robin, with up to
    ``n`` of the table's reference subnets (:func:`reference_archs`), and how fast the
    machine ran during that very measurement (:func:`speed_record` of the references; None
    when the table has no calibration runs, and then only ``archs`` are timed). A VM's speed
    can swing by a third within a minute with no steal time to show for it; timed in the same
    rounds, an arch and the references see the same machine, so ``ms / factor`` is the arch's
    latency at the table's own speed whenever it is measured."""
    refs = reference_archs(table, n)
    now = measure_end_to_end(table, [*archs, *refs], backend=backend, passes=passes)
    return now[: len(archs)], (speed_record(table, refs, now[len(archs) :]) if refs else None)


def calibrate(table: LatencyTable, backend: Backend, n: int = 8, *, protocol: Protocol, progress: bool = True) -> dict:
    """Fit the model-level overhead on ``n`` random subnets measured end to end (at least as
    many as the table already holds: a rerun with a smaller ``n`` keeps its calibration)."""
    n = max(n, len(table.calibration.get("runs", [])))
    archs = sample_archs(table.space, n, CALIBRATION_SEED, table.meta["resolutions"])
    runs: list[dict[str, Any]] = list(table.calibration.get("runs", []))
    keys = {a.key for a in archs}
    runs = [r for r in runs if r["arch"] in keys]

    def keep():
        table.calibration = {**table.calibration, "runs": runs}
        table.save()

    measure_archs(table, backend, archs, runs, protocol=protocol, desc="calibration", progress=progress, on_update=keep)
    table.fit_calibration(with_features(table, runs, archs))
    table.save()
    return table.calibration


def with_features(table: LatencyTable, runs: list[dict[str, Any]], archs: Sequence[Arch]) -> list[dict[str, Any]]:
    """``runs`` with the calibration features of their archs (:meth:`LatencyTable.features`)
    added where missing: runs stored by an older nastools lack the element counts."""
    by_key = {a.key: a for a in archs}
    for r in runs:
        if any(k not in r for k in FEATURES):
            r.update({k: v for k, v in table.features(by_key[r["arch"]]).items() if k not in r})
    return runs


def spread(a: Sequence[Arch], b: Sequence[Arch]) -> list[Arch]:
    """``a`` and ``b`` merged with each list spread evenly over the result (stable), so that
    both sets are measured across the same stretch of time."""
    if not a or not b:
        return [*a, *b]
    keyed = [((i + 0.5) / len(a), 0, x) for i, x in enumerate(a)] + [((j + 0.5) / len(b), 1, x) for j, x in enumerate(b)]
    return [x for *_, x in sorted(keyed, key=lambda t: t[:2])]


def _score_validation(table: LatencyTable, runs: list[dict[str, Any]], archs: Sequence[Arch], plot: bool) -> dict:
    """Predict every validation run, store the metrics (table and FLOPs baselines) and the plot."""
    by_key = {a.key: a for a in archs}
    for r in runs:
        r["predicted_ms"] = table.predict(by_key[r["arch"]])
    result: dict[str, Any] = {}
    if plot and table.path is not None:  # first, as in the shipped tables: a rerun that measures nothing rewrites the same file
        png = table.path.with_suffix(".validation.png")
        scatter_plot(runs, png, title=f"{table.meta['space']}: {table.meta['backend']} on {table.meta['device']}")
        result["plot"] = png.name
    result.update({**summarize(runs, table.calibration.get("runs", [])), "runs": runs})
    table.validation = result
    table.save()
    return result


def validate(table: LatencyTable, backend: Backend, n: int, *, protocol: Protocol, progress: bool = True, plot: bool = True) -> dict:
    """Measure ``n`` held-out random subnets (none used for calibration) end to end and store
    the table's error and the FLOPs-only model's beside it in ``table.validation``."""
    exclude = {r["arch"] for r in table.calibration.get("runs", [])}
    archs = sample_archs(table.space, n, VALIDATION_SEED, table.meta["resolutions"], exclude)
    runs: list[dict[str, Any]] = [r for r in table.validation.get("runs", []) if r["arch"] in {a.key for a in archs}]

    def keep():
        table.validation = {"runs": runs}
        table.save()

    measure_archs(table, backend, archs, runs, protocol=protocol, desc="validation", progress=progress, on_update=keep)
    return _score_validation(table, runs, archs, plot)


def calibrate_and_validate(
    table: LatencyTable,
    backend: Backend,
    calibration_runs: int,
    validate_runs: int,
    *,
    protocol: Protocol,
    progress: bool = True,
    plot: bool = True,
) -> dict:
    """:func:`calibrate` and :func:`validate` with both sets of subnets measured in the same
    passes, spread evenly through them: the host's speed drifts over minutes on a shared
    machine, and measured one after the other the two sets would differ by that drift, which
    would show as a bias of the table rather than an error of its model. Resumable like both."""
    res = table.meta["resolutions"]
    calibration_runs = max(calibration_runs, len(table.calibration.get("runs", [])))  # never fewer than it holds
    cal = sample_archs(table.space, calibration_runs, CALIBRATION_SEED, res)
    cal_keys = {a.key for a in cal}
    # the same held-out subnets validate() would take once these calibration runs are in
    val = sample_archs(table.space, validate_runs, VALIDATION_SEED, res, cal_keys)
    val_keys = {a.key for a in val}
    runs = [r for r in table.calibration.get("runs", []) if r["arch"] in cal_keys]
    runs += [r for r in table.validation.get("runs", []) if r["arch"] in val_keys]

    def split() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        return [r for r in runs if r["arch"] in cal_keys], [r for r in runs if r["arch"] in val_keys]

    def keep():
        cal_runs, val_runs = split()
        table.calibration = {**table.calibration, "runs": cal_runs}
        table.validation = {"runs": val_runs}
        table.save()

    # runs already held (a resumed or calibrated table) are skipped: only the rest is timed
    measure_archs(
        table, backend, spread(cal, val), runs, protocol=protocol, desc="calibration + validation", progress=progress, on_update=keep
    )
    cal_runs, val_runs = split()
    table.fit_calibration(with_features(table, cal_runs, cal))
    return _score_validation(table, val_runs, val, plot)


def profile(
    space: SearchSpace | str = "fmnist",
    backend: Backend | None = None,
    *,
    batch: int = 1,
    resolutions: Sequence[int] | None = None,
    out: str | Path | None = None,
    protocol: Protocol | None = None,
    calibration_runs: int = 40,
    validate_runs: int = 0,
    progress: bool = True,
    announce: Callable[[LatencyTable], None] | None = None,
    statistic: str | None = None,
) -> LatencyTable:
    """Build (or resume) the latency table of ``space`` on ``backend`` (default ORT CPU, 1 thread):
    time every block, calibrate on ``calibration_runs`` subnets, validate on ``validate_runs``
    (both measured in the same passes: :func:`calibrate_and_validate`); predictions add up
    ``statistic`` (median, p10, p90, p99; None: the median on a GPU, the p10 on a CPU,
    :func:`~nastools.latency.table.default_statistic`), and every entry and run records
    them all. ``announce(table)``
    is called once every input is checked and the table is open, before any measurement (so
    that a user error is the only line printed)."""
    from nastools.latency.backends import make_backend

    sp = load_space(space)
    be = backend or make_backend("cpu", "ort")
    if batch < 1:
        from nastools.errors import NastoolsError

        raise NastoolsError(f"--batch: got {batch}, expected a positive batch size")
    proto = protocol or Protocol()
    from contextlib import ExitStack

    with ExitStack() as locks:
        locks.callback(be.close)
        table = open_table(sp, be, batch=batch, resolutions=resolutions, out=out, protocol=proto, locks=locks, statistic=statistic)
        if announce is not None:
            announce(table)
        profile_blocks(table, be, protocol=proto, progress=progress)
        if calibration_runs and validate_runs:
            calibrate_and_validate(table, be, calibration_runs, validate_runs, protocol=proto, progress=progress)
        elif calibration_runs:
            calibrate(table, be, calibration_runs, protocol=proto, progress=progress)
        elif validate_runs:
            validate(table, be, validate_runs, protocol=proto, progress=progress)
    return table
