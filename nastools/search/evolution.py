"""Evolutionary search over :class:`~nastools.space.Arch` genotypes under cost limits.

Two strategies share one loop:

- ``archive`` (AlphaNet / AttentiveNAS style): every target budget of the primary cost keeps
  its own elite (the most accurate archs within it) and gets an equal share of the offspring,
  bred from that elite and held to that budget; one shared cache and a Pareto archive (best
  arch per cost bin) serve all budgets at once.
- ``nsga2``: the population is ranked by non-dominated sorting over (accuracy, primary cost)
  and crowding distance; parents come from binary tournaments.

Offspring come from mutation and uniform crossover and must satisfy every limit. The search
is deterministic under its seed, saves its whole state after each generation (atomically)
and resumes from it. It knows nothing about torch or latency measurement: accuracy and costs
are callables. A generation's new archs can be evaluated as one batch, which a distributed
search (:mod:`nastools.search.distributed`) shares out over its processes: every process runs
the same search under the same seed, so all of them breed the same generations, and only
the main one reads and writes the state file (and decides whether it is resumed).

A saved state is resumed only when it is this very search's: the same space, settings (only
``generations`` may grow), limits and targets, and the same ``accuracy_key`` (what its
accuracies were measured with: the supernet checkpoint and evaluation settings). Any other
state (another search's, an older nastools's without the key, one with more generations done
than asked) is started over, and ``note`` is told why in one line. These rules are
:class:`SearchIdentity`'s, which needs no costs: a caller whose costs depend on the verdict
(the drift factor a resumed search keeps) judges the state with it first and hands the
verdict to :meth:`EvolutionSearch.run`.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, NamedTuple, Sequence

from nastools.errors import NastoolsError
from nastools.io import atomic_write_json
from nastools.space import Arch, SearchSpace

STATE_FORMAT = "nastools.search-state/1"
STRATEGIES = ("archive", "nsga2")


@dataclass
class Candidate:
    """An evaluated arch: its accuracy and costs."""

    arch: Arch
    top1: float
    costs: dict[str, float]

    def to_dict(self) -> dict:
        """The candidate as a JSON-ready dict (id, top-1, costs, arch)."""
        return {"id": self.arch.id, "top1": self.top1, "costs": self.costs, "arch": self.arch.to_dict()}

    @classmethod
    def from_dict(cls, d: Mapping, space: SearchSpace) -> "Candidate":
        return cls(space.arch_from_dict(d["arch"]), float(d["top1"]), {k: float(v) for k, v in d["costs"].items()})


@dataclass
class SearchConfig:
    population: int = 16
    generations: int = 6
    mutate_prob: float = 0.2
    crossover_share: float = 0.5  # share of offspring made by crossover (+ mutation)
    bins: int = 10
    strategy: str = "archive"
    seed: int = 0
    predictor_factor: int = 0  # >1: screen this many times more offspring with a predictor
    band: bool = True  # archive: each budget's offspring cost more than the next lower budget


@dataclass
class SearchResult:
    candidates: list[Candidate]  # every evaluated arch, in evaluation order
    archive: list[Candidate]  # the Pareto set over (top1, primary cost)
    evaluations: int
    generations_done: int
    history: list[dict] = field(default_factory=list)


class OneProcess:
    """The processes a search runs in, as :class:`EvolutionSearch` sees them: one. A
    distributed search (:class:`nastools.search.distributed.SearchGroup`) runs the same search
    in every process; only the main one writes files, and what it reads, every process gets."""

    rank, world_size, is_main = 0, 1, True

    def from_main(self, fn: Callable[[], object]) -> object:
        """``fn()`` of the main process, in every process (here: just ``fn()``)."""
        return fn()


def pareto_front(cands: Sequence[Candidate], cost: str) -> list[Candidate]:
    """The non-dominated candidates over (higher top1, lower ``cost``), by cost."""
    best: list[Candidate] = []
    for c in sorted(cands, key=lambda c: (c.costs[cost], -c.top1)):
        if not best or c.top1 > best[-1].top1:
            best.append(c)
    return best


def _fronts(cands: Sequence[Candidate], cost: str) -> list[list[int]]:
    """Non-dominated sorting (NSGA-II), objectives: maximise top1, minimise cost."""
    n = len(cands)
    dominated_by = [[] for _ in range(n)]
    count = [0] * n
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            a, b = cands[i], cands[j]
            if a.top1 >= b.top1 and a.costs[cost] <= b.costs[cost] and (a.top1 > b.top1 or a.costs[cost] < b.costs[cost]):
                dominated_by[i].append(j)
            elif b.top1 >= a.top1 and b.costs[cost] <= a.costs[cost] and (b.top1 > a.top1 or b.costs[cost] < a.costs[cost]):
                count[i] += 1
    fronts, current = [], [i for i in range(n) if count[i] == 0]
    while current:
        fronts.append(current)
        nxt = []
        for i in current:
            for j in dominated_by[i]:
                count[j] -= 1
                if count[j] == 0:
                    nxt.append(j)
        current = nxt
    return fronts


def _crowding(cands: Sequence[Candidate], front: list[int], cost: str) -> dict[int, float]:
    dist = {i: 0.0 for i in front}
    for key in (lambda c: c.top1, lambda c: c.costs[cost]):
        order = sorted(front, key=lambda i: key(cands[i]))
        lo, hi = key(cands[order[0]]), key(cands[order[-1]])
        dist[order[0]] = dist[order[-1]] = math.inf
        if hi > lo:
            for a, b, c in zip(order, order[1:], order[2:]):
                dist[b] += (key(cands[c]) - key(cands[a])) / (hi - lo)
    return dist


class SavedState(NamedTuple):
    """The verdict on a search's saved state (:meth:`SearchIdentity.judge`): ``state``, the
    saved state to resume when it is this very search's (else None), and ``why``, what makes
    it another search's, in one line (None when there is none or it is this search's)."""

    state: dict | None
    why: str | None


@dataclass
class SearchIdentity:
    """What a saved state must match to be resumed by a search: its space, limits, primary
    cost, settings (:class:`SearchConfig`; only ``generations`` may grow), targets and
    ``accuracy_key``. :class:`EvolutionSearch` judges its saved state by these rules; a caller
    that must know the verdict before it can build the search's costs (the drift factor a
    resumed search keeps) judges it with the same rules here and hands the verdict to
    :meth:`EvolutionSearch.run`. Build one with :meth:`of`."""

    space: SearchSpace
    limits: dict[str, float]
    primary: str
    config: SearchConfig
    targets: list[float]
    accuracy_key: str | None = None

    @classmethod
    def of(
        cls,
        space: SearchSpace,
        limits: Mapping[str, float],
        primary: str,
        config: SearchConfig | None = None,
        targets: Sequence[float] | None = None,
        accuracy_key: str | None = None,
    ) -> "SearchIdentity":
        """The identity of a search of these arguments (:class:`EvolutionSearch`'s own):
        ``targets`` sorted, by default the primary cost's limit."""
        limits = dict(limits)
        targets = sorted(targets) if targets else [limits.get(primary, math.inf)]
        return cls(space, limits, primary, config or SearchConfig(), targets, accuracy_key)

    def differences(self, st: Mapping) -> list[str]:
        """What makes the saved state ``st`` (a dict) another search's, briefly, each in a few
        words; empty when it is this search's and can be resumed."""
        if st.get("format") != STATE_FORMAT:
            return [f"format {st.get('format')!r}, not {STATE_FORMAT}"]
        out, changed = [], set()
        if st.get("fingerprint") != self.space.fingerprint:
            out.append(_space_change(st, self.space))
        if not isinstance(st.get("config"), dict):
            out.append("no search settings")
        elif not _same_config(st["config"], vars(self.config)):
            now = vars(self.config)
            changed = {k for k, v in st["config"].items() if v != now.get(k)}
            out.extend(f"{k} {v!r}, now {now.get(k)!r}" for k, v in st["config"].items() if k != "generations" and v != now.get(k))
            out.extend(f"no {k}" for k in now if k not in st["config"])
        for name, now in (("primary cost", self.primary), ("limits", self.limits), ("targets", self.targets)):
            saved = st.get({"primary cost": "primary"}.get(name, name))
            if saved != now:
                out.append(f"{name} {_brief(saved)}, now {_brief(now)}")
        if st.get("accuracy_key") != self.accuracy_key:
            out.extend(_key_change(st.get("accuracy_key"), self.accuracy_key, changed))
        done = st.get("generation")
        if not out and isinstance(done, int) and done > self.config.generations:
            out.append(f"{done} generations done, {self.config.generations} asked")
        return out

    def judge(self, state_path: str | Path | None) -> SavedState:
        """The verdict on the state saved at ``state_path``: (the state, None) when it belongs
        to this very search; (None, what differs) when it is another search's; (None, None)
        without one. A file that is not a JSON object is a one-line error."""
        st = read_state(state_path)
        if st is None:
            return SavedState(None, None)
        why = self.differences(st)
        if why:
            return SavedState(None, "; ".join(why[:3]) + ("; ..." if len(why) > 3 else ""))
        return SavedState(st, None)


def _space_change(st: Mapping, space: SearchSpace) -> str:
    """How the space of a saved state ``st`` differs from ``space``, in a few words: another
    space, the same space at other resolutions (a search keeps to those its latency tables
    cover), or another version of it (an edited YAML file)."""
    saved, res = st.get("space"), st.get("resolutions")
    if saved != space.name:
        return f"space {saved!r}, now {space.name!r}"
    if isinstance(res, list) and res != list(space.resolutions):
        return f"resolutions {'|'.join(map(str, res))}, now {'|'.join(map(str, space.resolutions))}"
    return f"another version of space {saved!r}"


def read_state(state_path: str | Path | None) -> dict | None:
    """The contents of the saved state file at ``state_path`` (None without one); a one-line
    error when it is not a JSON object."""
    if not state_path or not Path(state_path).is_file():
        return None
    from nastools.io import read_json

    try:
        st = read_json(Path(state_path), "search state")
    except NastoolsError as exc:
        raise NastoolsError(f"{exc}; delete it or pass --fresh") from None
    if not isinstance(st, dict):
        raise NastoolsError(f"search state {str(state_path)!r} is not a nastools search state; delete it or pass --fresh")
    return st


class EvolutionSearch:
    """Evolutionary search of ``space`` for accurate archs within ``limits``.

    ``accuracy(arch) -> top-1`` is the expensive call (cached here by arch id);
    ``costs`` maps cost names to ``arch -> value`` callables; ``limits`` maps cost names to
    upper bounds; ``primary`` is the cost the archive bins and NSGA-II trades off.
    ``batch_accuracy(archs) -> top-1s``, when given, evaluates each generation's new archs
    in one call instead (a distributed search shares them out); ``group``
    (:class:`OneProcess` by default) says whether this process is the one that reads and
    writes the state file. ``accuracy_key`` says what ``accuracy`` measures (:attr:`SubnetEvaluator.key
    <nastools.search.evaluator.SubnetEvaluator.key>`: ``|``-separated parts, the first naming
    the source of the accuracies, the others ``name=value`` settings); a saved state of
    another key is not resumed. ``note(message)`` hears why a saved state was started over.
    """

    def __init__(
        self,
        space: SearchSpace,
        accuracy: Callable[[Arch], float],
        costs: Mapping[str, Callable[[Arch], float]],
        limits: Mapping[str, float],
        primary: str,
        config: SearchConfig | None = None,
        *,
        state_path: str | Path | None = None,
        targets: Sequence[float] | None = None,
        predictor: Callable[[list[Candidate], list[Arch]], list[float]] | None = None,
        progress: Callable[[int, int, str], None] | None = None,
        batch_accuracy: Callable[[list[Arch]], list[float]] | None = None,
        group: OneProcess | None = None,
        accuracy_key: str | None = None,
        note: Callable[[str], None] | None = None,
    ) -> None:
        self.space, self.accuracy, self.costs, self.limits = space, accuracy, dict(costs), dict(limits)
        self.primary = primary
        self.cfg = config or SearchConfig()
        if self.cfg.strategy not in STRATEGIES:
            raise NastoolsError(f"search strategy {self.cfg.strategy!r}: expected one of {', '.join(STRATEGIES)}")
        if primary not in self.costs:
            raise NastoolsError(f"primary cost {primary!r}: expected one of {', '.join(self.costs)}")
        self.state_path = Path(state_path) if state_path else None
        self.identity = SearchIdentity.of(space, self.limits, primary, self.cfg, targets, accuracy_key)  # what a saved state must match
        self.limits, self.targets = self.identity.limits, self.identity.targets
        self.predictor = predictor
        self.progress = progress
        self.batch_accuracy = batch_accuracy
        self.group = group or OneProcess()
        self.accuracy_key, self.note = accuracy_key, note
        self.rng = random.Random(self.cfg.seed)
        self.evaluated: dict[str, Candidate] = {}
        self.order: list[str] = []
        self.population: list[str] = []
        self.generation = 0
        self.history: list[dict] = []
        self._cost_cache: dict[str, dict[str, float]] = {}
        self.resumed_generation: int | None = None
        self.started_over: str | None = None  # why a saved state was not resumed
        self.check_feasible()

    # ------------------------------------------------------------------ costs & limits

    def arch_costs(self, arch: Arch) -> dict[str, float]:
        """The arch's cost under every named cost function, cached by arch."""
        hit = self._cost_cache.get(arch.key)
        if hit is None:
            hit = {name: float(fn(arch)) for name, fn in self.costs.items()}
            self._cost_cache[arch.key] = hit
        return hit

    def feasible(self, arch: Arch) -> bool:
        """True when every cost of ``arch`` is within its limit."""
        c = self.arch_costs(arch)
        return all(c[name] <= lim for name, lim in self.limits.items())

    def _within(self, arch: Arch, limits: Mapping[str, float]) -> bool:
        c = self.arch_costs(arch)
        return all(c[name] <= lim for name, lim in limits.items())

    def check_feasible(self) -> None:
        """A limit below the cheapest subnet is a user error naming the cheapest cost."""
        cheapest = self.arch_costs(self.space.min_arch())
        for name, lim in self.limits.items():
            if cheapest[name] > lim:
                raise NastoolsError(
                    f"budget {name} <= {lim:.4g} is below the cheapest subnet of {self.space.name!r}, "
                    f"which costs {cheapest[name]:.4g}: raise the budget to at least that"
                )

    # ------------------------------------------------------------------ sampling

    def _above(self, arch: Arch, floor: float | None) -> bool:
        return floor is None or self.arch_costs(arch)[self.primary] > floor

    def _sample_feasible(self, limits: Mapping[str, float] | None = None, tries: int = 2000, floor: float | None = None) -> Arch:
        """A random arch within ``limits`` (default: the search's), costing more than
        ``floor`` in the primary cost when it can: uniform samples, then a random walk up
        from the cheapest arch when the limits are tight."""
        limits = self.limits if limits is None else limits
        fallback = None
        for _ in range(tries // 2):
            arch = self.space.sample(self.rng)
            if self._within(arch, limits):
                if self._above(arch, floor):
                    return arch
                fallback = fallback or arch
        if fallback is not None:
            return fallback
        arch = self.space.min_arch()
        for _ in range(tries // 2):
            cand = self.space.mutate(arch, 0.15, self.rng)
            if self._within(cand, limits):
                arch = cand
                if self.rng.random() < 0.3:
                    return arch
        return arch

    def _offspring(
        self, parents: Sequence[Candidate], n: int, limits: Mapping[str, float] | None = None, floor: float | None = None
    ) -> list[Arch]:
        """``n`` new archs bred from ``parents`` within ``limits``; while the neighbourhood
        allows, only ones costing more than ``floor`` (the next lower budget)."""
        limits = self.limits if limits is None else limits
        out: list[Arch] = []
        seen = set(self.evaluated)
        tries = 0
        while len(out) < n and tries < 200 * n:
            tries += 1
            if tries == 100 * n:
                floor = None  # the band is too narrow for these parents: any cost will do
            if len(parents) >= 2 and self.rng.random() < self.cfg.crossover_share:
                a, b = self._pick_parent(parents), self._pick_parent(parents)
                child = self.space.crossover(a.arch, b.arch, self.rng)
                child = self.space.mutate(child, self.cfg.mutate_prob / 2, self.rng)
            else:
                child = self.space.mutate(self._pick_parent(parents).arch, self.cfg.mutate_prob, self.rng)
            if child.id in seen or not self._within(child, limits) or not self._above(child, floor):
                continue
            seen.add(child.id)
            out.append(child)
        misses = 0
        while len(out) < n and misses < 10:  # the neighbourhood is exhausted: explore
            child = self._sample_feasible(limits, floor=floor)
            if child.id in seen or not self._within(child, limits):
                misses += 1
                continue
            misses = 0
            seen.add(child.id)
            out.append(child)
        return out  # fewer than n when a tight budget admits few archs not yet evaluated

    def _floor(self, j: int) -> float | None:
        """With ``band``: the lower end of target ``j``'s cost band, half-way down the next
        lower target's band (the bands overlap by half, so the budgets in the middle keep
        getting offspring from above), None for the lowest target."""
        if not self.cfg.band or j == 0:
            return None
        below = self.targets[j - 2] if j > 1 else self.arch_costs(self.space.min_arch())[self.primary]
        return (self.targets[j - 1] + below) / 2

    def _broods(self, parents: Sequence[Candidate], n: int):
        """(parents, limits, floor, count) groups of offspring to make this generation.

        ``archive``: the offspring are shared out over the target budgets of the primary
        cost (the remainder going round the budgets from one generation to the next); each
        group descends from the most accurate archs within its own budget, so every budget's
        neighbourhood is searched, and (``band``) costs more than ``_floor``, so that the
        evaluations go where each budget's best arch lies rather than all to cheap archs.
        ``nsga2``: one group from the population.
        """
        if self.cfg.strategy != "archive":
            return [(parents, self.limits, None, n)]
        targets = self.targets
        groups = []
        for j, t in enumerate(targets):
            k = n // len(targets) + (1 if (j - self.generation) % len(targets) < n % len(targets) else 0)
            if k == 0:
                continue
            lim = {**self.limits, self.primary: t}
            ok = sorted((c for c in self.evaluated.values() if self._within(c.arch, lim)), key=lambda c: -c.top1)
            top = ok[: max(2, self.cfg.population // 2)] or list(parents)
            groups.append((top, lim, self._floor(j), k))
        return groups

    def _pick_parent(self, parents: Sequence[Candidate]) -> Candidate:
        if self.cfg.strategy == "nsga2":
            a, b = self.rng.choice(parents), self.rng.choice(parents)
            ra, rb = self._rank.get(a.arch.id, (0, 0.0)), self._rank.get(b.arch.id, (0, 0.0))
            return a if (ra[0], -ra[1]) <= (rb[0], -rb[1]) else b
        return self.rng.choice(parents)

    # ------------------------------------------------------------------ evaluation

    def evaluate(self, arch: Arch) -> Candidate:
        """The arch's candidate (accuracy and costs), evaluated once and then cached by id."""
        hit = self.evaluated.get(arch.id)
        if hit is None:
            hit = Candidate(arch, float(self.accuracy(arch)), dict(self.arch_costs(arch)))
            self.evaluated[arch.id] = hit
            self.order.append(arch.id)
        return hit

    def evaluate_many(self, archs: Sequence[Arch]) -> list[Candidate]:
        """The candidates of ``archs``: those not evaluated yet are evaluated together (one
        ``batch_accuracy`` call, else one by one) and cached in the order given."""
        if self.batch_accuracy is None:
            return [self.evaluate(a) for a in archs]
        todo = list({a.id: a for a in archs if a.id not in self.evaluated}.values())
        tops = self.batch_accuracy(todo) if todo else []
        if len(tops) != len(todo):
            raise NastoolsError(f"batch accuracy: {len(tops)} results for {len(todo)} archs")
        for arch, top1 in zip(todo, tops):
            self.evaluated[arch.id] = Candidate(arch, float(top1), dict(self.arch_costs(arch)))
            self.order.append(arch.id)
        return [self.evaluated[a.id] for a in archs]

    def archive(self) -> list[Candidate]:
        """Best arch per bin of the primary cost over the feasible range."""
        cands = list(self.evaluated.values())
        if not cands:
            return []
        lo = self.arch_costs(self.space.min_arch())[self.primary]
        hi = self.limits.get(self.primary, max(c.costs[self.primary] for c in cands))
        width = (hi - lo) / self.cfg.bins if hi > lo else 1.0
        best: dict[int, Candidate] = {}
        for c in cands:
            b = min(self.cfg.bins - 1, max(0, int((c.costs[self.primary] - lo) / width)))
            if b not in best or c.top1 > best[b].top1:
                best[b] = c
        return [best[k] for k in sorted(best)]

    def _select_nsga2(self, pool: list[Candidate], n: int) -> list[Candidate]:
        chosen: list[Candidate] = []
        self._rank = {}
        for r, front in enumerate(_fronts(pool, self.primary)):
            dist = _crowding(pool, front, self.primary)
            for i in front:
                self._rank[pool[i].arch.id] = (r, dist[i])
            if len(chosen) + len(front) <= n:
                chosen.extend(pool[i] for i in front)
            else:
                rest = sorted(front, key=lambda i: -dist[i])
                chosen.extend(pool[i] for i in rest[: n - len(chosen)])
                break
        return chosen

    # ------------------------------------------------------------------ state

    def state(self) -> dict:
        """Everything a resumed search needs, as a JSON-ready dict."""
        return {
            "format": STATE_FORMAT,
            "space": self.space.name,
            "fingerprint": self.space.fingerprint,
            "resolutions": list(self.space.resolutions),
            "config": vars(self.cfg),
            "limits": self.limits,
            "primary": self.primary,
            "targets": self.targets,
            "accuracy_key": self.accuracy_key,
            "generation": self.generation,
            "population": self.population,
            "evaluated": [self.evaluated[i].to_dict() for i in self.order],
            "history": self.history,
            "rng": _rng_to_json(self.rng.getstate()),
        }

    def save(self) -> None:
        """Write :meth:`state` atomically to the state file, when the search has one (in a
        distributed search: the main process)."""
        if self.state_path and self.group.is_main:
            atomic_write_json(self.state_path, self.state(), indent=None)

    def differences(self, st: Mapping) -> list[str]:
        """What makes the saved state ``st`` (a dict) another search's, briefly, each in a few
        words; empty when it is this search's and can be resumed (:meth:`SearchIdentity.differences`)."""
        return self.identity.differences(st)

    def try_resume(self, saved: SavedState | None = None) -> bool:
        """Load the saved state if it belongs to this very search; True when resumed. Another
        search's state is left to be overwritten, and :attr:`started_over` (and ``note``) says
        what differs. In a distributed search the main process reads and judges the state
        and every process follows its decision. ``saved``: the main process's verdict, when
        its caller judged the state already (:meth:`SearchIdentity.judge` of this search's
        :attr:`identity`); None: the main process judges it now."""
        st, why = self.group.from_main(lambda: saved if saved is not None else self.identity.judge(self.state_path))
        if why is not None:
            self.started_over = why
            if self.note is not None:
                self.note(f"the saved state in {self.state_path} belongs to another search ({why}): started over")
        if st is None:
            return False
        evaluated, population, generation, history, rng = self._decode_state(st)
        for c in evaluated:
            self.evaluated[c.arch.id] = c
            self.order.append(c.arch.id)
        self.population, self.generation, self.history = population, generation, history
        self.rng.setstate(rng)
        return True

    def _decode_state(self, st: dict) -> tuple[list[Candidate], list[str], int, list, tuple]:
        """The parts of a saved state of this search, each checked: the candidates (archs of
        this space with a finite top-1 and a finite value for every cost the search
        uses), the population (ids among them), the generation, the history and the random
        state; a one-line :class:`NastoolsError` naming the state file otherwise."""
        where = f"search state {str(self.state_path)!r}"

        def fail(what: str) -> NastoolsError:
            return NastoolsError(f"{where}: {what}; delete it or pass --fresh")

        needed = {self.primary, *self.limits}
        raw = st.get("evaluated")
        if not isinstance(raw, list):
            raise fail("'evaluated' is not a list of candidates")
        evaluated = []
        for i, d in enumerate(raw):
            if not isinstance(d, Mapping) or not isinstance(d.get("arch"), Mapping) or not isinstance(d.get("costs"), Mapping):
                raise fail(f"candidate {i} is not an object with arch, top1 and costs")
            try:
                arch = self.space.arch_from_dict(d["arch"])
            except NastoolsError as exc:
                raise fail(f"candidate {i}: {exc}") from None
            top1, costs = d.get("top1"), d["costs"]
            if not _finite(top1):
                raise fail(f"candidate {i} has top1 {top1!r}, expected a finite number")
            if any(not _finite(costs.get(k)) for k in needed) or any(not _finite(v) for v in costs.values()):
                raise fail(f"candidate {i} has costs {costs!r}, expected finite numbers for {', '.join(sorted(needed))}")
            evaluated.append(Candidate(arch, float(top1), {str(k): float(v) for k, v in costs.items()}))
        ids = {c.arch.id for c in evaluated}
        population = st.get("population")
        if not isinstance(population, list) or not all(isinstance(i, str) and i in ids for i in population):
            raise fail("its population names archs it has not evaluated")
        generation = st.get("generation")
        if type(generation) is not int or generation < 0:
            raise fail(f"generation {generation!r}, expected a count")
        history = st.get("history")
        if not isinstance(history, list):
            raise fail("'history' is not a list")
        try:
            rng = _rng_from_json(st.get("rng"))
            random.Random().setstate(rng)
        except (TypeError, ValueError, OverflowError):
            raise fail("its random state is not one") from None
        return evaluated, population, generation, history, rng

    # ------------------------------------------------------------------ the loop

    def _tick(self, message: str) -> None:
        if self.progress:
            self.progress(self.generation, self.cfg.generations, message)

    def run(self, resume: bool = True, saved: SavedState | None = None) -> SearchResult:
        """Run (or continue) the search for ``config.generations`` generations: with
        ``resume``, from its saved state when that is this very search's (``saved``: the
        verdict on it, judged already; see :meth:`try_resume`)."""
        self._rank: dict[str, tuple[int, float]] = {}
        self.resumed_generation = self.started_over = None
        if resume and self.try_resume(saved):
            self.resumed_generation = self.generation
        else:
            init = self._initial_population()
            self.evaluate_many(init)
            self.population = [a.id for a in init]
            self._record()
            self.save()
            self._tick("initial population")
        while self.generation < self.cfg.generations:
            self._next_generation()
            self.generation += 1
            self._record()
            self.save()
            self._tick(f"{len(self.evaluated)} evaluated")
        return SearchResult(
            candidates=[self.evaluated[i] for i in self.order],
            archive=pareto_front(list(self.evaluated.values()), self.primary),
            evaluations=len(self.evaluated),
            generations_done=self.generation,
            history=self.history,
        )

    def _initial_population(self) -> list[Arch]:
        """Up to ``population`` distinct feasible archs spread over the target budgets (the
        cheapest subnet if none is found)."""
        init = []
        seen = set()
        misses = 0
        # a budget just above the cheapest subnet admits only a few archs: after 10
        # draws in a row that bring nothing new, start from fewer than ``population``
        while len(init) < self.cfg.population and misses < 10:
            # spread the initial population over the target budgets
            j = len(init) % len(self.targets)
            lim = {**self.limits, self.primary: self.targets[j]}
            arch = self._sample_feasible(lim, floor=self._floor(j) if self.cfg.strategy == "archive" else None)
            if arch.id in seen or not self._within(arch, self.limits):
                misses += 1
                continue
            misses = 0
            seen.add(arch.id)
            init.append(arch)
        if not init:
            init.append(self.space.min_arch())
        return init

    def _next_generation(self) -> None:
        """Breed offspring (screened by the predictor once 8 archs are evaluated), evaluate
        them and select the next :attr:`population`."""
        pop = [self.evaluated[i] for i in self.population]
        if self.cfg.strategy == "archive":
            parents = self.archive()
        else:
            self._select_nsga2(pop, len(pop))
            parents = pop
        n = self.cfg.population
        factor = self.cfg.predictor_factor if self.predictor is not None and len(self.evaluated) >= 8 else 1
        kids = []
        for parents, limits, floor, k in self._broods(parents, n):  # noqa: B020 - each brood's own parents
            pool = self._offspring(parents, k * max(1, factor), limits, floor)
            if factor > 1:
                scores = self.predictor(list(self.evaluated.values()), pool)
                ranked = sorted(zip(scores, range(len(pool))), key=lambda t: -t[0])
                pool = [pool[i] for _, i in ranked[:k]]
            kids.extend(a for a in pool if a.id not in {x.id for x in kids})
        new = self.evaluate_many(kids)
        if self.cfg.strategy == "archive":
            keep = {c.arch.id for c in self.archive()}
            self.population = [c.arch.id for c in new] + [i for i in self.population if i in keep and i not in {c.arch.id for c in new}]
        else:
            self.population = [c.arch.id for c in self._select_nsga2(pop + new, n)]

    def _record(self) -> None:
        front = pareto_front(list(self.evaluated.values()), self.primary)
        self.history.append(
            {
                "generation": self.generation,
                "evaluated": len(self.evaluated),
                "best_top1": max(c.top1 for c in self.evaluated.values()),
                "front": len(front),
            }
        )


def random_search(
    space: SearchSpace,
    accuracy: Callable[[Arch], float],
    costs: Mapping[str, Callable[[Arch], float]],
    limits: Mapping[str, float],
    primary: str,
    evaluations: int,
    seed: int = 0,
) -> list[Candidate]:
    """The baseline: ``evaluations`` distinct feasible archs sampled uniformly."""
    s = EvolutionSearch(space, accuracy, costs, limits, primary, SearchConfig(seed=seed, population=1, generations=0))
    out: list[Candidate] = []
    guard = 0
    while len(out) < evaluations and guard < evaluations * 50:
        guard += 1
        arch = s._sample_feasible()
        if arch.id in s.evaluated:
            continue
        out.append(s.evaluate(arch))
    return out


def best_under(cands: Iterable[Candidate], limits: Mapping[str, float], exclude: set[str] = frozenset()) -> Candidate | None:
    """The most accurate candidate meeting every limit (ties: the cheaper by first limit)."""
    ok = [c for c in cands if c.arch.id not in exclude and all(c.costs[k] <= v for k, v in limits.items())]
    if not ok:
        return None
    first = next(iter(limits), None)
    return max(ok, key=lambda c: (c.top1, -(c.costs[first] if first else 0.0)))


def _same_config(saved, current) -> bool:
    """A saved search continues under the same settings; only ``generations`` may grow."""
    if not isinstance(saved, dict):
        return False
    ignore = {"generations"}
    return {k: v for k, v in saved.items() if k not in ignore} == {k: v for k, v in current.items() if k not in ignore}


def _brief(value, most: int = 60) -> str:
    """``value`` in at most ``most`` characters (numbers in 4 significant digits)."""
    if isinstance(value, dict):
        text = "{" + ", ".join(f"{k}: {_brief(v)}" for k, v in value.items()) + "}"
    elif isinstance(value, list):
        text = "[" + ", ".join(_brief(v) for v in value) + "]"
    else:
        text = f"{value:.4g}" if isinstance(value, float) else repr(value)
    return text if len(text) <= most else text[: most - 3] + "..."


def _key_change(saved, now, explained: set[str] = frozenset()) -> list[str]:
    """How the accuracy key ``now`` differs from the ``saved`` one, in a few words: a setting
    (a ``name=value`` part) as ``name=saved, now value`` unless ``explained`` names it (a
    search setting of that name differs too), another first part as another source."""
    if saved is None:
        return ["saved by an older nastools, without what its accuracies were measured with"]
    if not isinstance(saved, str) or now is None:
        return ["accuracies of other settings"]
    old, new = saved.split("|"), now.split("|")
    if old[0] != new[0]:
        return ["accuracies of another checkpoint or data"]
    if len(old) != len(new):
        return ["accuracies of other settings"]
    changes = []
    for a, b in zip(old[1:], new[1:]):
        (na, _, va), (nb, _, vb) = a.partition("="), b.partition("=")
        if a != b and not (na == nb and na in explained):
            changes.append(f"{_KEY_OPTIONS.get(na, na)} {va}, now {vb}" if na == nb else f"{a}, now {b}")
    return changes


#: the command-line options of the accuracy key's settings, as a note names them
_KEY_OPTIONS = {"eval": "--eval-images", "calib": "--calib-images", "seed": "--seed"}


def _rng_to_json(state):
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _rng_from_json(data):
    version, internal, gauss = data
    return (version, tuple(internal), gauss)


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
