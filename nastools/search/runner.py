"""``nastools search`` as a function: budgets in, chosen archs and a Pareto report out.

Reads a run's supernet, builds the cost models (FLOPs, params, latency from per-device
tables), runs the evolutionary search with accuracy from the supernet (BN recalibration +
validation top-1), picks the most accurate arch under each budget, checks latency picks
end to end on this machine when the table was made here, and writes
``<run>/search/pareto.json``, ``pareto.png`` and ``best.json``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

from nastools.checkpoint import checkpoint_space, find_checkpoint, load_checkpoint, run_dir, run_splits
from nastools.errors import NastoolsError
from nastools.io import atomic_write_json, writable_dir
from nastools.search.budget import Budget, format_latency
from nastools.search.evolution import Candidate, EvolutionSearch, SearchConfig, best_under
from nastools.space import Arch, SearchSpace, format_count

PARETO_FORMAT = "nastools.pareto/1"


@dataclass
class SearchOptions:
    """Knobs of a search; the defaults suit the fmnist space on a CPU in a few minutes."""

    population: int = 16
    generations: int = 6
    strategy: str = "archive"
    seed: int = 0
    mutate_prob: float = 0.2
    calib_images: int = 1000
    eval_images: int = 2000
    batch_size: int = 500
    # screen offspring with a ridge accuracy predictor (bench_search: archive + predictor beat
    # random at 4 of 5 budgets in each of three runs, the plain archive at 4, 3 and 3)
    predictor: bool = True
    predictor_factor: int = 4
    dataset: str | None = None  # None: the dataset the run was trained on
    data: str | None = None
    measure: bool = True
    measure_retries: int = 5
    drift: bool = True  # rescale a table made here to this machine's speed now (check_drift)
    drift_factors: dict[str, float] | None = None  # cost name -> a factor already measured (no check)


@dataclass
class Pick:
    """The arch chosen for one budget, with what was measured of it."""

    budget: dict
    candidate: Candidate | None
    measured_ms: float | None = None
    replaced: list[dict] = field(default_factory=list)  # archs rejected after measurement


def ridge_screen(space: SearchSpace) -> Callable[[list[Candidate], list[Arch]], list[float]]:
    """What ``--predictor`` screens offspring with: a ridge accuracy predictor fitted on the
    archs evaluated so far, scoring the pool of offspring."""

    from nastools.predictor import RidgePredictor

    def screen(cands: list[Candidate], pool: list[Arch]) -> list[float]:
        model = RidgePredictor(space).fit([c.arch for c in cands], [c.top1 for c in cands])
        return list(model.predict(pool))

    return screen


Measurer = Callable[[Sequence[Arch]], list[float]]


def pick_measured(cands: Sequence[Candidate], sweep: str, budgets: Sequence[Mapping[str, float]],
                  measurers: Mapping[str, Measurer | None], retries: int = 5) -> list[Pick]:
    """For each of ``budgets`` (cost name -> limit), the most accurate of ``cands`` within it
    whose latencies, measured end to end by ``measurers`` (cost name -> archs -> ms; None
    where the device is not this machine), are within their limits too.

    The picks of all budgets are measured together (one call per cost, so a measurer can
    time them round-robin and the host's drift reaches them all alike). An arch measured over a limit is measured once more and keeps the smaller figure
    (interference only ever slows a run down); if still over, it is replaced by the next best
    that fits the limit at the measured slowdown (measured / predicted of the rejected arch:
    near a budget, the next best arch by accuracy usually costs the same), up to ``retries``
    times per budget; the rejected ones are listed in ``Pick.replaced``."""
    picks = [Pick(budget={"cost": sweep, "limit": lim[sweep], "also": {k: v for k, v in lim.items() if k != sweep}},
                  candidate=None) for lim in budgets]
    excluded: list[set[str]] = [set() for _ in budgets]
    slow: list[dict[str, float]] = [{} for _ in budgets]  # measured / predicted of the archs found over a limit
    measured: dict[tuple[str, str], float] = {}  # (cost, arch id) -> smallest measurement so far
    checked: set[tuple[str, str]] = set()  # measured a second time already

    def measurable(k: str) -> bool:
        return k.startswith("latency") and measurers.get(k) is not None

    def measure(pairs: list[tuple[str, Candidate]]) -> None:
        for k in dict.fromkeys(k for k, _ in pairs):
            archs = list({c.arch.id: c.arch for kk, c in pairs if kk == k}.values())
            for a, ms in zip(archs, measurers[k](archs)):
                measured[k, a.id] = min(ms, measured.get((k, a.id), float("inf")))

    active = list(range(len(budgets)))
    for _ in range(retries + 1):
        for i in active:  # the next candidate must fit the limits at the slowdown the measurements showed
            lim = {k: v / max(1.0, slow[i].get(k, 1.0)) for k, v in budgets[i].items()}
            picks[i].candidate = best_under(cands, lim, excluded[i])
        active = [i for i in active if picks[i].candidate is not None]
        todo = [(i, k, picks[i].candidate) for i in active for k in budgets[i] if measurable(k)]
        measure([(k, c) for _, k, c in todo if (k, c.arch.id) not in measured])
        again = [(k, c) for i, k, c in todo if measured[k, c.arch.id] > budgets[i][k] and (k, c.arch.id) not in checked]
        measure(again)
        checked.update((k, c.arch.id) for k, c in again)
        still = []
        for i in active:
            cand, over = picks[i].candidate, None
            for k in budgets[i]:
                if not measurable(k):
                    continue
                ms = measured[k, cand.arch.id]
                cand.costs[f"measured:{k}"] = ms
                if k == sweep:
                    picks[i].measured_ms = ms
                if ms > budgets[i][k]:
                    over = (k, ms)
                    slow[i][k] = max(slow[i].get(k, 1.0), ms / cand.costs[k])
            if over is not None:
                picks[i].replaced.append({"id": cand.arch.id, "cost": over[0], "measured_ms": over[1],
                                          "limit_ms": budgets[i][over[0]]})
                excluded[i].add(cand.arch.id)
                picks[i].candidate, picks[i].measured_ms = None, None
                still.append(i)
        active = still
        if not active:
            break
    return picks


@dataclass
class SearchReport:
    picks: list[Pick]
    front: list[Candidate]
    candidates: list[Candidate]
    out_dir: Path
    timing: dict
    resumed_generations: int = 0
    drift: dict = field(default_factory=dict)  # cost name -> check_drift() result, where measured


def format_cost(name: str, value: float) -> str:
    return format_latency(value) if name.startswith("latency") else format_count(value)


# --------------------------------------------------------------------------- latency tables


def resolve_table(space: SearchSpace, device: str, tables: Mapping[str, str]):
    """The latency table for a budget's device: ``tables[device]`` (a path) when given, else
    the newest table of ``space`` (the working directory's ``latency_tables/<space>/``, then the
    shipped ones) made on this machine (``default``/``cpu``;
    one of this very CPU generation before one of another generation of the same model name)
    or on a GPU (``gpu``)."""
    from nastools.latency.table import TABLES_DIR, LatencyTable, table_files

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
    from nastools.machine import cpu_match, cpu_name

    folder = TABLES_DIR / space.name
    want_gpu = device == "gpu"
    found = []
    for p in table_files(space.name):
        try:
            t = LatencyTable.load(p, space)
        except NastoolsError:
            continue
        dev = str(t.meta.get("device", ""))
        on_gpu = str(t.meta.get("target", "")).lower() == "gpu" or "nvidia" in dev.lower()
        if want_gpu and on_gpu or (not want_gpu and not on_gpu and (device != "default" or dev == cpu_name())):
            found.append((0 if on_gpu else cpu_match(t.meta), p.stat().st_mtime, p, t))
    if not found and device == "default":
        return resolve_table(space, "cpu", tables)
    if not found:
        flag = "--device gpu" if want_gpu else "--device cpu"
        raise NastoolsError(
            f"no latency table for space {space.name!r} on {device!r} in {str(folder)!r} or the shipped tables: "
            f"run 'nastools profile --space {space.name} {flag}' first, or name one with --table {device}=PATH"
        )
    return max(found, key=lambda t: t[:2])[3]


def _measure_fn(table) -> Measurer | None:
    """End-to-end measurement through the table's backend, when the table was made here: the
    calibration runs' protocol and statistic (:func:`nastools.latency.measure_end_to_end`),
    so that measured and predicted latency compare like with like."""
    from nastools.machine import cpu_name

    meta = table.meta
    if str(meta.get("device")) != cpu_name() or str(meta.get("backend")) not in ("ort", "torch"):
        return None
    from nastools.latency import measure_end_to_end

    def measure(archs: Sequence[Arch]) -> list[float]:
        return measure_end_to_end(table, archs)

    return measure


# --------------------------------------------------------------------------- the search


def check_budgets(space: SearchSpace, budgets: Sequence[Budget], costs: Mapping[str, Callable[[Arch], float]]) -> tuple[str, dict[str, float]]:
    """Validate budgets: returns the swept cost name and the fixed limits of the others."""
    if not budgets:
        raise NastoolsError("no budget given: pass --latency 10ms, --flops 300M and/or --params 5M")
    by_cost: dict[str, list[float]] = {}
    for b in budgets:
        by_cost.setdefault(b.cost_name, []).append(b.limit)
    multi = [k for k, v in by_cost.items() if len(v) > 1]
    if len(multi) > 1:
        raise NastoolsError(f"several values for more than one budget ({', '.join(multi)}): sweep one cost at a time")
    cheapest = space.min_arch()
    for name, values in by_cost.items():
        low = costs[name](cheapest)
        for v in values:
            if v < low:
                raise NastoolsError(
                    f"budget {name} <= {format_cost(name, v)} is below the cheapest subnet of {space.name!r}, "
                    f"which costs {format_cost(name, low)}: use a budget of at least {format_cost(name, low)}"
                )
    sweep = multi[0] if multi else budgets[0].cost_name
    fixed = {k: v[0] for k, v in by_cost.items() if k != sweep}
    return sweep, fixed


DRIFT_TOLERANCE = 0.03  # a machine this close to its table's speed is taken as is


def _drifted(predict: Callable[[Arch], float], factor: float) -> Callable[[Arch], float]:
    """``predict`` scaled to the machine's speed now (unchanged within DRIFT_TOLERANCE)."""
    if abs(factor - 1.0) <= DRIFT_TOLERANCE:
        return predict
    return lambda arch: factor * predict(arch)


def _drift_message(device: str | None, factor: float) -> str:
    if abs(factor - 1.0) <= DRIFT_TOLERANCE:
        return f"latency on {device}: this machine runs the table's calibration subnets at {factor:.2f}x their recorded time: table used as profiled"
    return (f"latency on {device}: this machine runs the table's calibration subnets at {factor:.2f}x their recorded time now "
            f"(the machine or its speed changed since profiling): predictions scaled by {factor:.2f} (--no-drift to keep them as profiled)")


def _read_json_dict(path: Path) -> dict:
    """The drift records in ``path`` (cost name -> ``{"factor", "table", ...}``): those with
    a finite, positive factor; {} when it is missing or not such a file (a hand-edited or
    foreign file is ignored, as if the search had not measured its speed yet)."""
    import math

    from nastools.io import read_json

    try:
        data = read_json(path, "drift file")
    except NastoolsError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: d for k, d in data.items() if isinstance(d, dict) and isinstance(d.get("factor"), (int, float))
            and not isinstance(d.get("factor"), bool) and math.isfinite(d["factor"]) and d["factor"] > 0}


def run_search(
    run: str | Path = "default",
    budgets: Sequence[Budget] = (),
    *,
    tables: Mapping[str, str] | None = None,
    options: SearchOptions | None = None,
    fresh: bool = False,
    out_dir: str | Path | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> SearchReport:
    """Search the supernet of ``run`` under ``budgets``; see the module docstring. The output
    folder is locked while the search writes it (:class:`nastools.lock.OutputLock`)."""
    from contextlib import ExitStack

    with ExitStack() as locks:
        return _run_search(run, budgets, tables=tables, options=options, fresh=fresh, out_dir=out_dir, progress=progress,
                           log=log, locks=locks)


def _run_search(run, budgets, *, tables, options, fresh, out_dir, progress, log, locks) -> SearchReport:
    import time

    from nastools.lock import OutputLock
    from nastools.search.evaluator import SubnetEvaluator

    opts = options or SearchOptions()
    tables = dict(tables or {})
    used = {b.device or "default" for b in budgets if b.metric == "latency"}
    used |= {"cpu", "default"} if used & {"cpu", "default"} else set()
    for dev, path in tables.items():
        if dev not in used:
            raise NastoolsError(
                f"--table {dev}={path}: no --latency budget on {dev!r} uses it "
                f"(budgets on: {', '.join(sorted(used - {'default'})) or 'none'}); e.g. --latency {dev}=10ms"
            )
    ckpt = find_checkpoint(run)
    ckpt_data = load_checkpoint(ckpt)
    from nastools.supernet import Supernet

    net = Supernet(checkpoint_space(ckpt_data))
    net.load_state_dict(ckpt_data.pop("model"))
    space = net.space
    if out_dir is not None and not str(out_dir).strip():
        raise NastoolsError("--out: empty path")
    out = Path(out_dir) if out_dir else run_dir(run) if ckpt.name == "supernet.pt" and not str(run).endswith(".pt") else ckpt.parent
    out = writable_dir(out / "search" if out_dir is None else out, "--out")  # before the search, not at its first save
    locks.enter_context(OutputLock(out, "search output folder", elsewhere="pass another --out", note=log))
    state_path, cache_path, drift_path = out / "state.json", out / "accuracy_cache.json", out / "drift.json"
    if fresh:
        for p in (state_path, cache_path, drift_path):
            p.unlink(missing_ok=True)
    # a resumed search keeps the speed it measured when it started (its candidates' costs)
    held = _read_json_dict(drift_path) if state_path.is_file() else {}

    costs: dict[str, Callable[[Arch], float]] = {"flops": space.flops, "params": space.params}
    measurers: dict[str, Measurer | None] = {}
    drift: dict[str, dict] = {}
    # every device's table first: a missing one is an error before any drift check is timed
    tables_for = {b.cost_name: resolve_table(space, b.device or "default", tables) for b in budgets if b.metric == "latency"}
    for b in budgets:
        if b.metric == "latency" and b.cost_name not in costs:
            table = tables_for[b.cost_name]
            measurers[b.cost_name] = _measure_fn(table) if opts.measure else None
            log(f"latency on {b.device}: table {table.path} ({table.meta.get('device')}, {table.meta.get('backend')})")
            if measurers[b.cost_name] is not None:
                from nastools.machine import GENERATION_KEYS, generation_mismatch, this_generation

                if generation_mismatch(table.meta):
                    theirs = ", ".join(str(table.meta[k]) for k in GENERATION_KEYS if table.meta.get(k))
                    log(f"latency on {b.device}: note: the table was profiled on another generation of this CPU model "
                        f"({theirs}; this one: {', '.join(this_generation().values())}), so its blocks may rank differently here: "
                        f"'nastools profile --space {space.name}' makes a table of this machine")
            costs[b.cost_name] = table.predict
            if opts.drift and measurers[b.cost_name] is not None:
                d = held.get(b.cost_name) if held.get(b.cost_name, {}).get("table") == str(table.path) else None
                if d is None and b.cost_name in (opts.drift_factors or {}):
                    d = {"factor": float(opts.drift_factors[b.cost_name]), "given": True}
                if d is None:
                    from nastools.latency import check_drift

                    d = check_drift(table)
                if d is not None:
                    drift[b.cost_name] = {**d, "table": str(table.path)}
                    costs[b.cost_name] = _drifted(table.predict, d["factor"])
                    log(_drift_message(b.device, d["factor"]))
    sweep, fixed = check_budgets(space, budgets, costs)
    limits = {**fixed, sweep: max(b.limit for b in budgets if b.cost_name == sweep)}
    out.mkdir(parents=True, exist_ok=True)
    if drift:
        atomic_write_json(drift_path, drift)

    splits = run_splits(ckpt_data, opts.dataset, opts.data)  # the run's own validation slice
    evaluator = SubnetEvaluator(
        net, splits, calib_images=opts.calib_images, eval_images=opts.eval_images, batch_size=opts.batch_size,
        seed=opts.seed, cache_path=cache_path,
        tag=f"{ckpt.resolve()}:{ckpt.stat().st_mtime_ns}:{splits.name}:val={len(splits.val)}:{splits.seed}",
    )

    screen = ridge_screen(space)

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=opts.generations, desc="search", unit="gen", leave=False)

    def tick(gen: int, total: int, msg: str) -> None:
        if bar is not None:
            bar.n = gen
            bar.set_postfix_str(msg)
            bar.refresh()

    cfg = SearchConfig(
        population=opts.population, generations=opts.generations, mutate_prob=opts.mutate_prob,
        strategy=opts.strategy, seed=opts.seed, predictor_factor=opts.predictor_factor if opts.predictor else 0,
    )
    t0 = time.perf_counter()
    targets = sorted({b.limit for b in budgets if b.cost_name == sweep})
    saved = set(evaluator.cache)  # accuracies an earlier (perhaps killed) search left on disk
    reused: list[str] = []

    def accuracy(arch: Arch) -> float:
        if arch.id in saved:
            reused.append(arch.id)
        return evaluator(arch)

    engine = EvolutionSearch(space, accuracy, costs, limits, sweep, cfg, state_path=state_path, targets=targets,
                             predictor=screen if opts.predictor else None, progress=tick)
    try:
        result = engine.run(resume=True)
    finally:  # an error (an unreadable state, Ctrl-C) prints on its own line, not after the bar
        if bar is not None:
            bar.close()
    resumed = engine.resumed_generation
    elapsed = time.perf_counter() - t0
    if resumed is not None or reused:
        # the state is saved each generation and every accuracy as it is measured, so a killed
        # search loses at most the arch it was evaluating
        where = f"resumed the saved search at generation {resumed} of {cfg.generations}; " if resumed is not None else ""
        log(f"{where}{len(reused)} cached accuracies reused from {cache_path}")

    sweep_values = sorted({b.limit for b in budgets if b.cost_name == sweep})
    picks = pick_measured(result.candidates, sweep, [{**fixed, sweep: v} for v in sweep_values], measurers,
                          opts.measure_retries)

    report = SearchReport(picks, result.archive, result.candidates, out,
                          {**evaluator.timing(), "search_s": elapsed, "evaluations": result.evaluations, "reused": len(reused)},
                          resumed_generations=int(resumed or 0), drift=drift)
    write_outputs(report, space, sweep, budgets)
    return report


def write_outputs(report: SearchReport, space: SearchSpace, sweep: str, budgets: Sequence[Budget]) -> None:
    """pareto.json, pareto.png and best.json (+ best-<n>.json per budget) in the out dir."""
    out = report.out_dir
    picks = [
        {
            "budget": p.budget,
            "id": p.candidate.arch.id if p.candidate else None,
            "top1": p.candidate.top1 if p.candidate else None,
            "costs": p.candidate.costs if p.candidate else None,
            "measured_ms": p.measured_ms,
            "replaced": p.replaced,
            "arch": p.candidate.arch.to_dict() if p.candidate else None,
        }
        for p in report.picks
    ]
    atomic_write_json(
        out / "pareto.json",
        {
            "format": PARETO_FORMAT,
            "space": space.name,
            "fingerprint": space.fingerprint,
            "primary": sweep,
            "budgets": [str(b) for b in budgets],
            "picks": picks,
            "front": [c.to_dict() for c in report.front],
            "evaluated": [c.to_dict() for c in report.candidates],
            "timing": report.timing,
            "latency_drift": report.drift,
        },
    )
    chosen = [p for p in report.picks if p.candidate]
    for i, p in enumerate(report.picks):
        if p.candidate:
            extra = {"top1": p.candidate.top1, "flops": int(p.candidate.costs["flops"]), "params": int(p.candidate.costs["params"])}
            p.candidate.arch.save(out / f"best-{i + 1}.json", id=p.candidate.arch.id, **extra)
    if chosen:
        c = chosen[0].candidate
        c.arch.save(out / "best.json", id=c.arch.id, top1=c.top1, flops=int(c.costs["flops"]), params=int(c.costs["params"]))
    from nastools.search.plot import plot_pareto

    plot_pareto(out / "pareto.png", report.candidates, report.front, sweep, [b.limit for b in budgets if b.cost_name == sweep], report.picks)
