"""``nastools search`` as a function: budgets in, chosen archs and a Pareto report out.

Reads a run's supernet, builds the cost models (FLOPs, params, latency from per-device
tables), runs the evolutionary search with accuracy from the supernet (BN recalibration +
validation top-1), picks the most accurate arch under each budget, measures latency picks end to end
through the table's own backend, device and precision where they are available here (and
says so where not), and writes
``<run>/search/pareto.json``, ``pareto.png`` and ``best.json``. Under torchrun the processes
share out the evaluations of each generation (:mod:`nastools.search.distributed`) and rank 0
writes the outputs.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Mapping, Sequence

from nastools.checkpoint import checkpoint_space, find_checkpoint, load_checkpoint, run_dir, run_splits
from nastools.errors import NastoolsError
from nastools.io import atomic_write_json, remove_stale_temps, shown_path, writable_dir
from nastools.search.budget import Budget, format_latency
from nastools.search.evolution import Candidate, EvolutionSearch, SavedState, SearchConfig, SearchIdentity, best_under
from nastools.search.latency_cost import (
    DRIFT_TOLERANCE,
    LatencyCost,
    Measurer,
    drift_message,
    resolve_table,
)
from nastools.search.rerank import finalists, rerank_images, rescore
from nastools.space import Arch, SearchSpace, format_count

PARETO_FORMAT = "nastools.pareto/1"
RERANK_CACHE = "rerank_cache.json"  # the finalists' scores on more validation images


@dataclass
class SearchOptions:
    """Knobs of a search; the defaults suit the fmnist space on a CPU in a few minutes."""

    population: int = 16
    generations: int = 6
    strategy: str = "archive"
    seed: int = 0
    mutate_prob: float = 0.2
    calib_images: int | None = None  # None: 1000; image folders: the run's image recipe's
    eval_images: int = 2000
    batch_size: int = 500
    workers: int = 0  # data loader processes that decode image-folder images
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
    statistic: str | None = None  # median|p10|p90|p99 of latency budgets; None: each table's own
    device: str = "cpu"  # where subnets are evaluated; under torchrun, cuda means cuda:LOCAL_RANK
    # the k best archs of each budget scored again on more validation images before the pick
    # (nastools.search.rerank); 0: pick by the search's own scores
    rerank: int = 4
    rerank_images: int | None = None  # None: the whole validation split

    def check(self) -> "SearchOptions":
        """Refuse values the command line's options would refuse (counts below their least
        value, an unknown strategy or statistic) as one-line NastoolsErrors; returns self."""
        from nastools.latency.table import stat_key
        from nastools.search.evolution import STRATEGIES

        least = {"population": 2, "generations": 0, "eval_images": 1, "batch_size": 1, "workers": 0, "predictor_factor": 1}
        least.update(measure_retries=0, rerank=0, calib_images=1, rerank_images=1)
        for name, low in least.items():
            value = getattr(self, name)
            if value is None and name in ("calib_images", "rerank_images"):
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise NastoolsError(f"--{name.replace('_', '-')} {value!r}: expected an integer >= {low}")
        if not (isinstance(self.mutate_prob, (int, float)) and 0 <= self.mutate_prob <= 1):
            raise NastoolsError(f"mutate_prob {self.mutate_prob!r}: expected a probability from 0 to 1")
        if self.strategy not in STRATEGIES:
            raise NastoolsError(f"--strategy {self.strategy!r}: expected one of {', '.join(STRATEGIES)}")
        if self.statistic is not None:
            stat_key(self.statistic)
        return self


def check_budget_types(budgets: object) -> list[Budget]:
    """``budgets`` as a list of :class:`Budget` (one Budget alone is a list of one); text or
    anything else is a one-line error naming :func:`~nastools.search.budget.parse_budgets`."""
    try:
        items = [budgets] if isinstance(budgets, (Budget, str, bytes)) else list(budgets)
    except TypeError:  # not iterable
        items = [budgets]
    for b in items:
        if not isinstance(b, Budget):
            raise NastoolsError(
                f"budgets: got {b!r} ({type(b).__name__}), expected Budget objects: "
                f"nastools.search.parse_budgets(latency=('1ms',), flops=('20M',)) makes them from text"
            )
    return items


@dataclass
class Pick:
    """The arch chosen for one budget, with what was measured of it."""

    budget: dict
    candidate: Candidate | None
    measured_ms: float | None = None
    replaced: list[dict] = field(default_factory=list)  # archs rejected after measurement
    search_top1: float | None = None  # the search's score of a re-scored pick (its top1: the re-score)
    # latency cost -> {"timed_ms", "speed", "assumed_speed"}: the measurement behind measured_ms
    # (nastools.search.latency_cost.PickVerifier), where the machine's speed was referenced
    verification: dict[str, dict] = field(default_factory=dict)


def ridge_screen(space: SearchSpace) -> Callable[[list[Candidate], list[Arch]], list[float]]:
    """What ``--predictor`` screens offspring with: a ridge accuracy predictor fitted on the
    archs evaluated so far, scoring the pool of offspring."""

    from nastools.predictor import RidgePredictor

    def screen(cands: list[Candidate], pool: list[Arch]) -> list[float]:
        model = RidgePredictor(space).fit([c.arch for c in cands], [c.top1 for c in cands])
        return list(model.predict(pool))

    return screen


def _reject_if_over(
    pick: Pick,
    limits: Mapping[str, float],
    sweep: str,
    measured: Mapping[tuple[str, str], float],
    measurable: Callable[[str], bool],
    slow: dict[str, float],
    excluded: set[str],
) -> bool:
    """Record the measurements of ``pick``'s candidate in its costs; if one is over its limit,
    note the slowdown in ``slow``, reject the candidate (listed in ``pick.replaced``, added to
    ``excluded``) and return True."""
    cand, over = pick.candidate, None
    for k in limits:
        if not measurable(k):
            continue
        ms = measured[k, cand.arch.id]
        cand.costs[f"measured:{k}"] = ms
        if k == sweep:
            pick.measured_ms = ms
        if ms > limits[k]:
            over = (k, ms)
            slow[k] = max(slow.get(k, 1.0), ms / cand.costs[k])
    if over is None:
        return False
    pick.replaced.append({"id": cand.arch.id, "cost": over[0], "measured_ms": over[1], "limit_ms": limits[over[0]]})
    excluded.add(cand.arch.id)
    pick.candidate, pick.measured_ms = None, None
    return True


def pick_measured(
    cands: Sequence[Candidate],
    sweep: str,
    budgets: Sequence[Mapping[str, float]],
    measurers: Mapping[str, Measurer | None],
    retries: int = 5,
) -> list[Pick]:
    """For each of ``budgets`` (cost name -> limit), the most accurate of ``cands`` within it
    whose latencies, measured end to end by ``measurers`` (cost name -> archs -> ms; None
    where the device is not this machine), are within their limits too.

    The picks of all budgets are measured together (one call per cost, so a measurer can
    time them round-robin and the host's drift reaches them all alike). An arch measured over a limit is measured once more and keeps the smaller figure
    (interference only ever slows a run down); if still over, it is replaced by the next best
    that fits the limit at the measured slowdown (measured / predicted of the rejected arch:
    near a budget, the next best arch by accuracy usually costs the same), up to ``retries``
    times per budget; the rejected ones are listed in ``Pick.replaced``."""
    picks = [
        Pick(budget={"cost": sweep, "limit": lim[sweep], "also": {k: v for k, v in lim.items() if k != sweep}}, candidate=None)
        for lim in budgets
    ]
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
        active = [i for i in active if _reject_if_over(picks[i], budgets[i], sweep, measured, measurable, slow[i], excluded[i])]
        if not active:
            break
    return picks


@dataclass
class SearchReport:
    """What :func:`run_search` found: the picks per budget, the Pareto front, every
    candidate evaluated, the output folder, timings and the drift records applied."""

    picks: list[Pick]
    front: list[Candidate]
    candidates: list[Candidate]
    out_dir: Path
    timing: dict
    resumed_generations: int = 0
    drift: dict = field(default_factory=dict)  # cost name -> check_drift() result, where measured
    latency: dict = field(default_factory=dict)  # cost name -> {"statistic", "table", "verified", "reason"?}
    rank: int = 0  # this process's rank in a distributed search (only rank 0 measures picks and writes files)
    world_size: int = 1


def format_cost(name: str, value: float) -> str:
    """A cost value in its unit: ``1.5ms``/``800us`` for latency, ``20M`` for counts."""
    return format_latency(value) if name.startswith("latency") else format_count(value)


# --------------------------------------------------------------------------- the search


def _split_budgets(budgets: Sequence[Budget]) -> tuple[str, dict[str, float], list[float]]:
    """The swept cost name, the fixed limits of the others and the swept cost's targets
    (ascending); a one-line error without a budget or with several values for more than one cost."""
    if not budgets:
        raise NastoolsError("no budget given: pass --latency 10ms, --flops 300M and/or --params 5M")
    by_cost: dict[str, list[float]] = {}
    for b in budgets:
        by_cost.setdefault(b.cost_name, []).append(b.limit)
    multi = [k for k, v in by_cost.items() if len(v) > 1]
    if len(multi) > 1:
        raise NastoolsError(f"several values for more than one budget ({', '.join(multi)}): sweep one cost at a time")
    sweep = multi[0] if multi else budgets[0].cost_name
    return sweep, {k: v[0] for k, v in by_cost.items() if k != sweep}, sorted(set(by_cost[sweep]))


def check_budgets(
    space: SearchSpace, budgets: Sequence[Budget], costs: Mapping[str, Callable[[Arch], float]]
) -> tuple[str, dict[str, float]]:
    """Validate budgets: returns the swept cost name and the fixed limits of the others."""
    sweep, fixed, _ = _split_budgets(budgets)
    cheapest = space.min_arch()
    low = {name: costs[name](cheapest) for name in dict.fromkeys(b.cost_name for b in budgets)}
    for b in budgets:
        if b.limit < low[b.cost_name]:
            name, least = b.cost_name, format_cost(b.cost_name, low[b.cost_name])
            raise NastoolsError(
                f"budget {name} <= {format_cost(name, b.limit)} is below the cheapest subnet of {space.name!r}, "
                f"which costs {least}: use a budget of at least {least}"
            )
    return sweep, fixed


def _identity(space: SearchSpace, budgets: Sequence[Budget], opts: SearchOptions, accuracy_key: str) -> SearchIdentity:
    """What a saved state must match to be resumed by this search (the engine's rules,
    :class:`~nastools.search.evolution.SearchIdentity`): ``space`` (at the resolutions the
    latency tables cover), the limits (the swept cost at its largest target), the swept cost,
    the search settings, the swept cost's targets and the evaluator's accuracy key."""
    sweep, fixed, targets = _split_budgets(budgets)
    return SearchIdentity.of(space, {**fixed, sweep: max(targets)}, sweep, _search_config(opts), targets, accuracy_key)


def _search_config(opts: SearchOptions) -> SearchConfig:
    """The engine's settings of a search of ``opts``."""
    return SearchConfig(
        population=opts.population,
        generations=opts.generations,
        mutate_prob=opts.mutate_prob,
        strategy=opts.strategy,
        seed=opts.seed,
        predictor_factor=opts.predictor_factor if opts.predictor else 0,
    )


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
    return {
        k: d
        for k, d in data.items()
        if isinstance(d, dict)
        and isinstance(d.get("factor"), (int, float))
        and not isinstance(d.get("factor"), bool)
        and math.isfinite(d["factor"])
        and d["factor"] > 0
    }


def _check_tables(budgets: Sequence[Budget], tables: Mapping[str, str]) -> None:
    """Every ``--table DEVICE=PATH`` must serve a latency budget on that device."""
    used = {b.device or "default" for b in budgets if b.metric == "latency"}
    used |= {"cpu", "default"} if used & {"cpu", "default"} else set()
    for dev, path in tables.items():
        if dev not in used:
            raise NastoolsError(
                f"--table {dev}={path}: no --latency budget on {dev!r} uses it "
                f"(budgets on: {', '.join(sorted(used - {'default'})) or 'none'}); e.g. --latency {dev}=10ms"
            )


def _load_supernet(run: str | Path):
    """(checkpoint path, its data without the weights, the supernet with them)."""
    from nastools.supernet import Supernet

    ckpt = find_checkpoint(run)
    ckpt_data = load_checkpoint(ckpt)
    net = Supernet(checkpoint_space(ckpt_data))
    net.load_state_dict(ckpt_data.pop("model"))
    return ckpt, ckpt_data, net


def _output_dir(run: str | Path, ckpt: Path, out_dir: str | Path | None) -> Path:
    """``--out``, else ``<run>/search`` (beside a checkpoint given by path), checked writable
    before the search rather than at its first save."""
    if out_dir is not None and not str(out_dir).strip():
        raise NastoolsError("--out: empty path")
    out = Path(out_dir) if out_dir else run_dir(run) if ckpt.name == "supernet.pt" and not str(run).endswith(".pt") else ckpt.parent
    return writable_dir(out / "search" if out_dir is None else out, "--out")


@dataclass
class _Costs:
    """The search's cost models: cost name -> predictor, -> end-to-end measurer (latency
    costs of tables made here), and the drift records applied."""

    predict: dict[str, Callable[[Arch], float]]
    measurers: dict[str, Measurer | None] = field(default_factory=dict)
    drift: dict[str, dict] = field(default_factory=dict)
    latency: dict[str, dict] = field(default_factory=dict)  # cost name -> what SearchReport.latency holds
    space: SearchSpace | None = None  # the space the search samples: at the resolutions the tables cover
    models: dict[str, LatencyCost] = field(default_factory=dict)  # latency cost name -> its model


def table_space(space: SearchSpace, latency: Sequence[LatencyCost], log: Callable[[str], None]) -> SearchSpace:
    """The space a search with these latency tables samples: ``space`` at the resolutions
    every table covers (a table profiled at some of them, such as the shipped
    attentivenas@224 one, keeps the search to those, with a line saying so). A table that
    lacks blocks of its own resolutions or its calibration (a profile stopped early), or
    tables without a resolution in common, are one-line errors, before any drift check is timed."""
    from nastools.latency.workload import blocks_for
    from nastools.space import space_from_dict

    covered = set(space.resolutions)
    for lat in latency:
        res = sorted(set(lat.table.meta.get("resolutions") or space.resolutions) & set(space.resolutions))
        blocks = blocks_for(space, res) if res else []
        missing = lat.table.missing(blocks)
        where = shown_path(lat.table.path)
        rerun = f"rerun the nastools profile command that made it, with --out {where} (it resumes)"
        if not res:
            raise NastoolsError(
                f"latency table {where} covers none of the resolutions of space {space.name!r} ({', '.join(map(str, space.resolutions))})"
            )
        if missing:
            raise NastoolsError(
                f"latency table {where} is incomplete: {len(missing)} of its {len(blocks)} blocks at resolutions "
                f"{', '.join(map(str, res))} are not profiled (a profile stopped early?); {rerun}"
            )
        if "scale" not in lat.table.calibration:  # a profile stopped before its end-to-end runs were fitted
            raise NastoolsError(f"latency table {where} is incomplete: it has no calibration (a profile stopped early?); {rerun}")
        covered &= set(res)
    if not covered:
        raise NastoolsError(
            "the latency tables of this search have no resolution in common: profile one of them at the others' resolutions"
        )
    if covered == set(space.resolutions):
        return space
    shown = ", ".join(map(str, sorted(covered)))
    log(
        f"latency tables cover resolution{'s' if len(covered) > 1 else ''} {shown} of {space.name}'s {', '.join(map(str, space.resolutions))}: the search keeps to {'them' if len(covered) > 1 else 'it'}"
    )
    d = space.definition()
    d["resolutions"] = sorted(covered)
    return space_from_dict(d, source=space.name)


def _cost_models(
    space: SearchSpace,
    budgets: Sequence[Budget],
    tables: Mapping[str, str],
    opts: SearchOptions,
    log: Callable[[str], None],
) -> _Costs:
    """FLOPs, params and one :class:`LatencyCost` per latency budget's device, at the speed
    their tables were profiled at until :func:`_settle_drift`."""
    costs = _Costs({"flops": space.flops, "params": space.params})
    # every device's table first: a missing one is an error before any drift check is timed
    latency = {
        b.cost_name: LatencyCost.resolve(space, b.device or "default", tables, opts.statistic) for b in budgets if b.metric == "latency"
    }
    costs.space = table_space(space, list(latency.values()), log)
    for b in budgets:
        if b.metric != "latency" or b.cost_name in costs.predict:
            continue
        name, lat = b.cost_name, latency[b.cost_name]
        measure = costs.measurers[name] = lat.measurer() if opts.measure else None
        log(
            f"latency on {b.device}: table {shown_path(lat.table.path)} ({lat.table.meta.get('device')}, {lat.table.meta.get('backend')}, "
            f"{lat.table.meta.get('precision')}), budget and measurements in the {lat.statistic}"
        )
        why = lat.unverifiable() if opts.measure else None
        costs.latency[name] = {
            "statistic": lat.statistic,
            "table": str(lat.table.path),
            "verified": measure is not None,
            **({"reason": why} if why else {}),
        }
        if why:
            log(f"latency on {b.device}: note: picks not verified end to end: {why}")
        note = lat.generation_note(space.name) if measure is not None else None
        if note:
            log(f"latency on {b.device}: note: {note}")
        costs.predict[name], costs.models[name] = lat.predict, lat
    return costs


def _settle_drift(
    costs: _Costs, opts: SearchOptions, held: Mapping[str, dict], log: Callable[[str], None], factors: Mapping[str, float] | None = None
) -> None:
    """Scale each latency cost's predictions by this machine's speed now
    (:meth:`LatencyCost.settle_drift`, recorded in ``costs.drift``): ``held`` are the drift
    records a resumed search keeps. ``factors`` (cost name -> drift factor), for the other
    ranks of a distributed search: rank 0's factors, applied as they are (no drift check)."""
    for name, lat in costs.models.items():
        if factors is not None:  # so every rank predicts the same costs
            if name in factors and lat.settle_drift(given=factors[name]):
                costs.drift[name] = lat.drift
        elif opts.drift and costs.measurers.get(name) is not None:
            if lat.settle_drift(held.get(name), (opts.drift_factors or {}).get(name)):
                costs.drift[name] = lat.drift
                log(drift_message(lat.device, lat.factor))


def _evaluator(net, ckpt: Path, ckpt_data: dict, opts: SearchOptions, cache_path: Path | None):
    """Accuracy of a subnet: BN recalibration and top-1 on the run's own validation slice
    (image folders read at each arch's resolution with the run's image recipe, as ``nastools
    eval`` reads them), cached in ``cache_path`` (None: in memory only) under a tag of the
    checkpoint and the data."""
    from nastools.search.evaluator import SubnetEvaluator
    from nastools.train.evaluate import run_recipe

    splits = run_splits(ckpt_data, opts.dataset, opts.data)
    return SubnetEvaluator(
        net,
        splits,
        recipe=run_recipe(ckpt_data, splits),
        calib_images=opts.calib_images,
        eval_images=opts.eval_images,
        batch_size=opts.batch_size,
        seed=opts.seed,
        workers=opts.workers,
        cache_path=cache_path,
        tag=f"{ckpt.resolve()}:{ckpt.stat().st_mtime_ns}:{splits.name}:val={len(splits.val)}:{splits.seed}",
    )


def _search_bar(generations: int, progress: bool, log: Callable[[str], None]):
    """The search's progress bar (None without ``progress``), the engine's ``progress``
    callback that moves it and its ``note`` callback, which logs a line above the bar."""
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=generations, desc="search", unit="gen", leave=False)

    def tick(gen: int, total: int, msg: str) -> None:
        if bar is not None:
            bar.n = gen
            bar.set_postfix_str(msg)
            bar.refresh()

    def note(message: str) -> None:
        if bar is None:
            return log(message)
        with bar.external_write_mode():  # on a line of its own, not after the bar
            log(message)

    return bar, tick, note


def _evolve(st: "_Setup", opts: SearchOptions, progress: bool, group=None, log: Callable[[str], None] = print):
    """Run the evolution of ``st.identity`` (resuming a saved state of this very search: the
    same settings and the evaluator's :attr:`~nastools.search.evaluator.SubnetEvaluator.key`;
    ``st.saved``: the verdict on it, judged by the setup) with a progress bar; returns the
    result, the generation it resumed at (or None), the ids of accuracies reused from the
    cache and the seconds it took. A saved state of another search is started over, and
    ``log`` says why. With a :class:`~nastools.search.distributed.SearchGroup`, each
    generation's evaluations are shared out over its processes."""
    import time

    evaluator, ident = st.evaluator, st.identity
    space = ident.space  # at the resolutions the latency tables cover
    bar, tick, note = _search_bar(opts.generations, progress, log)
    saved = set(evaluator.cache)  # accuracies an earlier (perhaps killed) search left on disk
    reused: list[str] = []

    def accuracy(arch: Arch) -> float:
        if arch.id in saved:
            reused.append(arch.id)
        return evaluator(arch)

    def shared(archs: list[Arch]) -> list[float]:
        reused.extend(a.id for a in archs if a.id in saved)
        # rank 0 writes the accuracies of all ranks to its cache file (the evaluator's own writer)
        return group.evaluate(archs, evaluator, evaluator.cache, evaluator._save)

    t0 = time.perf_counter()
    engine = EvolutionSearch(
        space,
        accuracy,
        st.costs.predict,
        ident.limits,
        ident.primary,
        ident.config,
        state_path=st.out / "state.json",
        targets=ident.targets,
        predictor=ridge_screen(space) if opts.predictor else None,
        progress=tick,
        batch_accuracy=shared if group is not None else None,
        group=group,
        accuracy_key=ident.accuracy_key,
        note=note,
    )
    try:
        result = engine.run(resume=True, saved=st.saved)
    finally:  # an error (an unreadable state, Ctrl-C) prints on its own line, not after the bar
        if bar is not None:
            bar.close()
    return result, engine.resumed_generation, reused, time.perf_counter() - t0


@dataclass
class _Setup:
    """What a search works with: its output folder, cost models, identity (what a saved state
    must match: the swept cost, limits and targets among it), accuracy evaluator and the
    verdict on its saved state (rank 0 of a distributed search; None: the engine judges it)."""

    out: Path
    costs: _Costs
    identity: SearchIdentity
    evaluator: object
    saved: SavedState | None = None

    @property
    def sweep(self) -> str:
        """The swept cost."""
        return self.identity.primary

    @property
    def fixed(self) -> dict[str, float]:
        """The limits of the other costs."""
        return {k: v for k, v in self.identity.limits.items() if k != self.sweep}

    @property
    def targets(self) -> list[float]:
        """The swept cost's limits, ascending."""
        return self.identity.targets


def _setup(run, ckpt: Path, ckpt_data: dict, net, budgets, tables, opts, fresh: bool, out_dir, group, stack: ExitStack, log) -> _Setup:
    """The output folder (checked, and locked on ``stack``), the cost models, the evaluator
    and the verdict on the saved state. In a distributed search rank 0 alone does what
    touches the output folder (the lock, ``--fresh``, the saved state's verdict, the drift
    check and its file, the accuracy cache) and sends the other ranks what they need: the
    folder, its drift factors and its cached accuracies (the engine sends them the verdict)."""
    from nastools.lock import OutputLock

    space = net.space

    def prepare() -> _Setup:
        out = _output_dir(run, ckpt, out_dir)
        stack.enter_context(OutputLock(out, "search output folder", elsewhere="pass another --out", note=log))
        state_path, cache_path, drift_path = out / "state.json", out / "accuracy_cache.json", out / "drift.json"
        written = [state_path.name, cache_path.name, drift_path.name, RERANK_CACHE, "pareto.json", "pareto.png", "best.json"]
        remove_stale_temps(out, written + [f"best-{i + 1}.json" for i in range(len(budgets))])  # of a search killed mid-write
        if fresh:
            for p in (state_path, cache_path, drift_path, out / RERANK_CACHE):
                p.unlink(missing_ok=True)
        costs = _cost_models(space, budgets, tables, opts, log)
        evaluator = _evaluator(net, ckpt, ckpt_data, opts, cache_path)
        identity = _identity(costs.space, budgets, opts, evaluator.key)
        saved = identity.judge(state_path)  # once, by the engine's rules, before any drift check
        # a resumed search keeps the speed it measured when it began (its candidates' costs);
        # one that starts over (another search's state) measures it anew, as a fresh one does
        _settle_drift(costs, opts, _read_json_dict(drift_path) if saved.state is not None else {}, log)
        check_budgets(costs.space, budgets, costs.predict)
        out.mkdir(parents=True, exist_ok=True)
        if saved.why is not None:  # no record of another search's speed beside another search's state
            for p in (state_path, drift_path):
                p.unlink(missing_ok=True)
        if costs.drift:
            atomic_write_json(drift_path, costs.drift)
        return _Setup(out, costs, identity, evaluator, saved)

    if group is None:
        return prepare()
    made: list[_Setup] = []

    def main_part() -> dict:
        made.append(prepare())
        m = made[0]
        return {"out": str(m.out), "drift": {k: d["factor"] for k, d in m.costs.drift.items()}, "cache": dict(m.evaluator.cache)}

    shared = group.from_main(main_part)
    if made:
        return made[0]
    costs = _cost_models(space, budgets, tables, replace(opts, measure=False), log)
    _settle_drift(costs, opts, {}, log, factors=shared["drift"])
    check_budgets(costs.space, budgets, costs.predict)
    evaluator = _evaluator(net, ckpt, ckpt_data, opts, None)
    evaluator.cache.update(shared["cache"])
    return _Setup(Path(shared["out"]), costs, _identity(costs.space, budgets, opts, evaluator.key), evaluator)


def _checked_arguments(budgets: object, tables: Mapping[str, str] | None, options: SearchOptions | None):
    """``run_search``'s options, budgets and tables, checked before any work."""
    from nastools.machine import check_torch_device

    opts = (options or SearchOptions()).check()
    budgets = check_budget_types(budgets)
    if opts.rerank > 0 and opts.rerank_images is not None and opts.rerank_images <= opts.eval_images:
        raise NastoolsError(
            f"--rerank-images {opts.rerank_images} is not more than --eval-images {opts.eval_images}: the finalists would be "
            f"scored on no new images; pass more (default: the whole validation split) or --rerank 0"
        )
    tables = dict(tables or {})
    _check_tables(budgets, tables)
    check_torch_device(opts.device)
    return opts, budgets, tables


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
    """Search the supernet of ``run`` under ``budgets``; see the module docstring.

    ``run``: a run name or folder, a checkpoint file or a shipped supernet's name.
    ``budgets``: :class:`~nastools.search.budget.Budget` objects
    (:func:`~nastools.search.budget.parse_budgets` makes them from text such as ``'1ms'``,
    ``'20M'``). ``tables``: the latency table of each device a budget names (device -> path;
    by default a table made on this machine, :func:`~nastools.search.resolve_table`). ``options``: the
    search's knobs (:class:`SearchOptions`). ``fresh``: ignore a saved state and accuracy
    cache. ``out_dir``: the output folder (default ``<run>/search``). ``progress``: a bar on
    stderr; ``log``: where narration lines go (``print`` by default; ``lambda m: None``
    silences them). Returns a :class:`SearchReport`; user errors are
    :class:`~nastools.errors.NastoolsError`. The output
    folder is locked while the search writes it (:class:`nastools.lock.OutputLock`). Under
    torchrun every process takes part (:mod:`nastools.search.distributed`): rank 0 narrates,
    measures the picks and writes the outputs; the other ranks return the picks by their
    predicted costs, unmeasured, and write nothing."""
    from nastools.search.distributed import join_search_group, merge_timing

    opts, budgets, tables = _checked_arguments(budgets, tables, options)
    group = join_search_group(opts.device)
    main = group is None or group.is_main
    log = log if main else _quiet
    with ExitStack() as stack:
        try:
            ckpt, ckpt_data, net = _load_supernet(run)
            net.to(group.device if group is not None else opts.device)
            space = net.space
            st = _setup(run, ckpt, ckpt_data, net, budgets, tables, opts, fresh, out_dir, group, stack, log)
            result, resumed, reused, elapsed = _evolve(st, opts, progress and main, group, log)
            if resumed is not None or reused:
                # the state is saved each generation and every accuracy as it is measured, so a killed
                # search loses at most the arch it was evaluating (distributed: and what the other
                # ranks measured since the last generation, gathered into the cache at its end)
                where = f"resumed the saved search at generation {resumed} of {opts.generations}; " if resumed is not None else ""
                log(f"{where}{len(reused)} cached accuracies reused from {st.out / 'accuracy_cache.json'}")
            final, rescored, reranked = _rescore_finalists(result.candidates, st, st.targets, opts, group, progress and main, log)
            timing = st.evaluator.timing() if group is None else merge_timing(group.gather(st.evaluator.timing()))
        except BaseException:
            if group is not None:
                group.leave(wait=False)  # torchrun then stops the others (not left waiting on this one)
            raise
        if group is not None:
            group.leave()
        picks = _choose(result.candidates, final, rescored, st, st.targets, opts, main)
        report = SearchReport(
            picks,
            result.archive,
            result.candidates,
            st.out,
            {**timing, "search_s": elapsed, "evaluations": result.evaluations, "reused": len(reused), **reranked},
            resumed_generations=int(resumed or 0),
            drift=st.costs.drift,
            latency=st.costs.latency,
            rank=group.rank if group is not None else 0,
            world_size=group.world_size if group is not None else 1,
        )
        if main:
            write_outputs(report, space, st.sweep, budgets)
        return report


def _rescore_finalists(cands: list[Candidate], st: _Setup, targets: list[float], opts: SearchOptions, group, progress: bool, log):
    """With ``opts.rerank``: each budget's finalists (:func:`~nastools.search.rerank.finalists`
    by the search's score), the same archs scored again on more validation images (cached in
    the output folder; under torchrun dealt out over the processes like a generation) and
    what that took; ``([], [], {})`` without re-ranking."""
    import time

    n = rerank_images(opts.rerank_images, opts.eval_images, len(st.evaluator.splits.val)) if opts.rerank > 0 else 0
    if not n:
        return [], [], {}
    final = finalists(cands, [{**st.fixed, st.sweep: v} for v in targets], opts.rerank)
    main = group is None or group.is_main
    scorer = st.evaluator.sibling(n, st.out / RERANK_CACHE if main else None)
    log(f"scoring the {len(final)} finalists (the {opts.rerank} best of each budget) again on {n} validation images")
    t0 = time.perf_counter()
    if group is not None:
        scorer.cache.update(group.from_main(lambda: dict(scorer.cache)))  # rank 0's cached scores, in every process
        tops = group.evaluate([c.arch for c in final], scorer, scorer.cache, scorer._save)
        rescored = [Candidate(c.arch, float(t), dict(c.costs)) for c, t in zip(final, tops)]
    else:
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(final), desc="finalists", unit="arch", leave=False)
        try:
            rescored = rescore(final, scorer, lambda i, _: bar.update(1) if bar else None)
        finally:
            if bar is not None:
                bar.close()
    timing = {"rerank_archs": len(final), "rerank_per_budget": opts.rerank, "rerank_images": n, "rerank_s": time.perf_counter() - t0}
    return final, rescored, timing


def _choose(cands: list[Candidate], final: list[Candidate], rescored: list[Candidate], st: _Setup, targets: list[float], opts, main: bool):
    """Each budget's pick (:func:`pick_measured`; measured on rank 0 only): among its
    finalists by their new scores when they were re-scored (``rescored``), else among all
    candidates; a budget whose finalists are all measured over it falls back to the next best
    by the search's score."""
    budgets = [{**st.fixed, st.sweep: v} for v in targets]
    measurers = st.costs.measurers if main else {}
    if not rescored:
        return _attach_verification(pick_measured(cands, st.sweep, budgets, measurers, opts.measure_retries), measurers)
    picks = pick_measured(rescored, st.sweep, budgets, measurers, opts.measure_retries)
    first = {c.arch.id: c.top1 for c in final}
    missing = [i for i, p in enumerate(picks) if p.candidate is None]
    if missing:
        rest = [c for c in cands if c.arch.id not in first]
        for i, p in zip(missing, pick_measured(rest, st.sweep, [budgets[i] for i in missing], measurers, opts.measure_retries)):
            p.replaced = picks[i].replaced + p.replaced
            picks[i] = p
    for p in picks:
        if p.candidate is not None:
            p.search_top1 = first.get(p.candidate.arch.id)
    return _attach_verification(picks, measurers)


def _attach_verification(picks: Sequence[Pick], measurers: Mapping[str, Measurer | None]) -> list[Pick]:
    """Each pick's (and each rejected arch's) latency as timed and the machine's speed then,
    beside the figure held to the budget, from the measurers that keep them
    (:class:`~nastools.search.latency_cost.PickVerifier`'s ``details``)."""
    for k, m in measurers.items():
        details = getattr(m, "details", None) or {}
        for p in picks:
            got = details.get(p.candidate.arch.id) if p.candidate is not None else None
            if got is not None:
                p.verification[k] = {f: round(v, 6) for f, v in got.items() if f != "ms"}
            for r in p.replaced:
                if r["cost"] == k and r["id"] in details:
                    r.update(timed_ms=round(details[r["id"]]["timed_ms"], 6), speed=round(details[r["id"]]["speed"], 4))
    return picks


def _quiet(message: str) -> None:
    """The narration of a rank other than 0: none."""


def _pick_extras(p: Pick) -> dict:
    """What an arch file of a pick records beside the arch: top-1 (and the search's score of a
    re-scored pick), FLOPs, params."""
    c = p.candidate
    extra = {"top1": c.top1, "flops": int(c.costs["flops"]), "params": int(c.costs["params"])}
    return extra if p.search_top1 is None else {**extra, "search_top1": p.search_top1}


def write_outputs(report: SearchReport, space: SearchSpace, sweep: str, budgets: Sequence[Budget]) -> None:
    """pareto.json, pareto.png and best.json (+ best-<n>.json per budget) in the out dir."""
    out = report.out_dir
    picks = [
        {
            "budget": p.budget,
            "id": p.candidate.arch.id if p.candidate else None,
            "top1": p.candidate.top1 if p.candidate else None,
            "search_top1": p.search_top1,
            "costs": p.candidate.costs if p.candidate else None,
            "measured_ms": p.measured_ms,
            "verification": p.verification,
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
            "latency": report.latency,
        },
    )
    chosen = [p for p in report.picks if p.candidate]
    for i, p in enumerate(report.picks):
        if p.candidate:
            p.candidate.arch.save(out / f"best-{i + 1}.json", id=p.candidate.arch.id, **_pick_extras(p))
    if chosen:
        chosen[0].candidate.arch.save(out / "best.json", id=chosen[0].candidate.arch.id, **_pick_extras(chosen[0]))
    from nastools.search.plot import plot_pareto

    plot_pareto(
        out / "pareto.png",
        report.candidates,
        report.front,
        sweep,
        [b.limit for b in budgets if b.cost_name == sweep],
        report.picks,
        statistic=report.latency.get(sweep, {}).get("statistic"),
    )


__all__ = [
    "DRIFT_TOLERANCE",
    "PARETO_FORMAT",
    "LatencyCost",
    "Pick",
    "SearchOptions",
    "SearchReport",
    "check_budgets",
    "format_cost",
    "pick_measured",
    "resolve_table",
    "ridge_screen",
    "run_search",
    "table_space",
    "write_outputs",
]
