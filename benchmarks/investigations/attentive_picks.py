"""Investigation: which subnets did a training run's sampler train, by the kind of residual
path they have at their stride-2 stages (``nastools.space.residual.residual_kind``)?

``nastools train`` draws every arch from one ``random.Random`` seeded by the run's seed, and
scoring the attentive candidates draws nothing from it, so the candidates of every step can
be drawn again without the network. This replays a run's sampler (its seed, ``--sampler``,
``--candidates``, ``--num-archs`` and the FLOPs distribution saved in its checkpoint) step by
step and reads which candidate was trained from the arch ids that ``train.jsonl`` logs every
``--log-every`` steps. Per quarter of the run and per family: the share of the candidates
offered, the share of the middle subnets trained, and for attentive samplers how often a
candidate of the family was trained when one was offered (a third of the time for 3
candidates of other kinds, were the pick random: the last column).

With ``--search-results``: what is left of it in a longer-trained supernet. The archs that
``bench_search.py --vs-random-pool --pool-test all`` scored on a supernet, per family: the
mean residual of validation and test top-1 around a cubic fit in log FLOPs over all of them
(how far the family's subnets lie below or above others of their cost).

Prints the tables and writes ``results/attentive_picks/<cpu>/<date>.json``.

Usage: python benchmarks/investigations/attentive_picks.py RUN [RUN ...] [--search-results R.json,...]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import table, write_result  # noqa: E402

from nastools.checkpoint import checkpoint_space, find_checkpoint, load_checkpoint, run_config  # noqa: E402
from nastools.space.residual import residual_kind  # noqa: E402
from nastools.train.samplers import AttentiveSampler, FlopsDistribution, make_sampler  # noqa: E402


def logged_archs(run: Path) -> dict[int, list[str]]:
    """Step -> the ids of the archs it trained (max, middles, min), from ``train.jsonl``."""
    out = {}
    for line in (run / "train.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec.get("type") == "step" and "archs" in rec:
            out[int(rec["step"])] = rec["archs"]
    return out


def replay(run: Path, seed: int | None = None) -> dict:
    """Every middle slot of ``run``'s logged steps: the candidates' families and the trained
    one's; ``missed`` counts the logged archs not among the replayed candidates (none, or the
    replay is not the run's). ``seed``: replay another seed than the run's (a check)."""
    data = load_checkpoint(find_checkpoint(run))
    cfg, space = run_config(data), checkpoint_space(data)
    state = data.get("train") or {}
    dist = FlopsDistribution.from_dict(state["flops_dist"]) if state.get("flops_dist") else None
    sampler = make_sampler(cfg["sampler"], space, candidates=cfg["candidates"], flops_dist=dist)
    rng = random.Random(cfg["seed"] if seed is None else seed)
    logged = logged_archs(run)
    slots, missed = [], 0
    for step in range(1, max(logged, default=0) + 1):
        for i in range(cfg["num_archs"] - 2):
            cands = sampler.propose(rng) if isinstance(sampler, AttentiveSampler) else [space.sample(rng)]
            if step not in logged:
                continue
            trained = logged[step][1 + i]
            ids = [c.id for c in cands]
            if trained not in ids:
                missed += 1
                continue
            fams = [residual_kind(space, c) for c in cands]
            slots.append({"step": step, "offered": fams, "trained": fams[ids.index(trained)]})
    total = round(cfg["epochs"] * ((60000 - cfg["val_size"]) // cfg["batch_size"])) if cfg["dataset"] == "fashion-mnist" else None
    return {
        "sampler": cfg["sampler"],
        "seed": cfg["seed"],
        "candidates": cfg["candidates"],
        "total_steps": total,
        "slots": slots,
        "missed": missed,
    }


def summarise(rep: dict, quarters: int = 4) -> list[dict]:
    """Per quarter of the logged steps and family: offered and trained shares, and the share
    of the slots offering the family in which it was trained."""
    last = max((s["step"] for s in rep["slots"]), default=0)
    rows = []
    for q in range(quarters):
        part = [s for s in rep["slots"] if q * last / quarters < s["step"] <= (q + 1) * last / quarters]
        offered = Counter(f for s in part for f in s["offered"])
        trained = Counter(s["trained"] for s in part)
        n_off = sum(offered.values())
        for fam in sorted(offered, key=lambda f: (f != "conv everywhere", f)):
            with_fam = [s for s in part if fam in s["offered"]]
            rows.append(
                {
                    "steps": [round(q * last / quarters) + 1, round((q + 1) * last / quarters)],
                    "family": fam,
                    "offered_share": offered[fam] / n_off,
                    "trained_share": trained[fam] / len(part),
                    "slots_offering": len(with_fam),
                    "trained_when_offered": sum(s["trained"] == fam for s in with_fam) / len(with_fam),
                    "random_pick_would": sum(s["offered"].count(fam) / len(s["offered"]) for s in with_fam) / len(with_fam),
                }
            )
    return rows


def family_residuals(path: Path) -> dict:
    """Per family of the archs a ``bench_search.py`` result scored on both validation and
    test: count and mean +- SE of their residuals around a cubic fit in log FLOPs."""
    import math

    import numpy as np

    from nastools.latency.table import arch_of_key
    from nastools.space import load_space

    res = json.loads(path.read_text())
    rows = [(k, f, v, t) for k, f, v, _final, t in res["archs"] if v is not None and t is not None]
    space = load_space(arch_of_key(rows[0][0]).space)
    fams = [residual_kind(space, arch_of_key(k)) for k, *_ in rows]
    x = np.log([f for _, f, _, _ in rows])
    x -= x.mean()
    out = {"result": str(path), "run": res.get("run"), "archs": len(rows), "families": {}}
    for col, name in ((2, "val"), (3, "test")):
        y = np.array([r[col] for r in rows])
        resid = y - np.polyval(np.polyfit(x, y, 3), x)
        for fam in sorted(set(fams), key=lambda f: (f != "conv everywhere", f)):
            r = resid[[i for i, f in enumerate(fams) if f == fam]]
            se = float(r.std(ddof=1) / math.sqrt(len(r))) if len(r) > 1 else math.nan
            out["families"].setdefault(fam, {"archs": len(r)})[name] = {"mean": float(r.mean()), "se": se}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="*", help="run folders of nastools train")
    ap.add_argument("--search-results", default="", help="comma-separated bench_search.py --vs-random-pool results")
    ap.add_argument("--variant", default=None)
    args = ap.parse_args()
    out = {}
    for run in args.runs:
        rep = replay(Path(run))
        if rep["missed"]:
            raise SystemExit(f"{run}: {rep['missed']} logged archs are not among the replayed candidates: the replay is not this run's")
        rows = summarise(rep)
        print(
            f"\n{run}: {rep['sampler']}, seed {rep['seed']}, {len(rep['slots'])} middle slots logged, every one found among the replayed candidates"
        )
        print(
            table(
                [
                    (
                        f"{r['steps'][0]}-{r['steps'][1]}",
                        r["family"],
                        f"{r['offered_share']:.3f}",
                        f"{r['trained_share']:.3f}",
                        r["slots_offering"],
                        f"{r['trained_when_offered']:.2f}",
                        f"{r['random_pick_would']:.2f}",
                    )
                    for r in rows
                ],
                [
                    "steps",
                    "residual paths at stride 2",
                    "offered",
                    "trained",
                    "slots offering it",
                    "trained when offered",
                    "a random pick would",
                ],
            )
        )
        out[run] = {k: v for k, v in rep.items() if k != "slots"} | {"slots_logged": len(rep["slots"]), "quarters": rows}
    supernets = [family_residuals(Path(p.strip())) for p in args.search_results.split(",") if p.strip()]
    for sup in supernets:
        print(f"\n{sup['result']}: supernet {sup['run']}, {sup['archs']} archs scored on validation and test")
        rows = [
            (fam, f["archs"], *(f"{f[k]['mean']:+.2f} +- {f[k]['se']:.2f}" for k in ("val", "test"))) for fam, f in sup["families"].items()
        ]
        print(table(rows, ["residual paths at stride 2", "archs", "validation residual", "test residual"]))
    write_result("attentive_picks", {"runs": out, "supernets": supernets}, variant=args.variant)


if __name__ == "__main__":
    main()
