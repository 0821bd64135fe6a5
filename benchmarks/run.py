"""Run the benchmarks that back the README's measured results (what ``make bench`` runs).

Each entry of :data:`SUITE` is one result the README cites: the script under ``benchmarks/``,
the arguments its figures were made with, and the supernet it reads, if any. A supernet that
is missing is trained first when the entry says how (``prepare``), otherwise that benchmark
is skipped with a note. Results go to ``benchmarks/results/<benchmark>/<cpu>/<date>.json``;
``benchmarks/index.py`` then says which README figure each file backs.

One-off investigations (``benchmarks/investigations/``) are not part of the suite.
Timing benchmarks are best run on an otherwise idle machine.

Usage: python benchmarks/run.py [NAME ...] [--list]   (NAME: a benchmark, e.g. bench_search)
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


@dataclass(frozen=True)
class Benchmark:
    """One claim-backing benchmark run."""

    name: str  # the result's benchmark name: benchmarks/results/<name>/
    script: str  # under benchmarks/
    args: tuple[str, ...] = ()
    variant: str | None = None  # the result's variant (<date>-<variant>.json)
    backs: str = ""  # what the README says with it
    needs: str | None = None  # a supernet (run or shipped name) the benchmark reads
    prepare: tuple[str, ...] = ()  # `nastools` arguments that train `needs` when it is missing

    @property
    def key(self) -> str:
        return f"{self.name}-{self.variant}" if self.variant else self.name

    def command(self) -> str:
        """The command line, as run from the repository's root."""
        return shlex.join(["python", f"benchmarks/{self.script}", *self.args])


SEARCH_RUN = "bench-attentive-best"
SHIPPED = "fmnist-attentive"  # the supernet shipped in nastools/pretrained/

SUITE: tuple[Benchmark, ...] = (
    Benchmark("bench_supernet", "bench_supernet.py", backs="supernet step overhead and sampling rate"),
    Benchmark("bench_train_cost", "bench_train.py", ("cost", "--pairs", "6"), backs="cost of attentive sampling"),
    Benchmark(
        "bench_train_cost",
        "bench_train.py",
        ("cost", "--pairs", "6", "--score-images", "8", "--variant", "score8"),
        variant="score8",
        backs="cost of attentive sampling, 8-image scoring slice",
    ),
    Benchmark(
        "bench_train_quality",
        "bench_train.py",
        ("quality", "--steps", "360", "--per-bin", "5"),
        backs="uniform vs attentive-best vs attentive-worst",
    ),
    Benchmark("bench_train_ddp", "bench_train.py", ("ddp",), backs="DDP throughput"),
    Benchmark("bench_train_throughput", "bench_train.py", ("throughput",), backs="training throughput and where a step's time goes"),
    Benchmark("bench_pretrained", "bench_pretrained.py", ("--run", SHIPPED), backs="the shipped supernet's accuracy", needs=SHIPPED),
    Benchmark("bench_latency", "bench_latency.py", backs="latency-table accuracy"),
    Benchmark("bench_latency_aging", "bench_latency_aging.py", backs="latency tables a day later, drift factor"),
    Benchmark(
        "bench_pick_verification",
        "bench_pick_verification.py",
        backs="search picks verified against the machine's speed in the same rounds",
    ),
    Benchmark(
        "bench_search",
        "bench_search.py",
        tuple(
            f"--run runs/{SEARCH_RUN} --seeds 5 --population 6 --generations 4 --calib-images 300 --eval-images 2000 --threads 2".split()
        ),
        backs="evolution vs random search, latency picks within budget",
        needs=f"runs/{SEARCH_RUN}",
        prepare=tuple(f"train --run {SEARCH_RUN} --batch-size 64 --epochs 1.2 --augment none".split()),
    ),
    Benchmark(
        "bench_search_vs_random",
        "bench_search.py",
        ("--run", SHIPPED, "--vs-random-pool", "300"),
        backs="evolution vs random search and the best of 300 random archs, test top-1 at 5 FLOPs budgets",
        needs=SHIPPED,
    ),
    Benchmark(
        "bench_search_eval_speed",
        "bench_search.py",
        ("--run", SHIPPED, "--eval-speed", "16", "--calib-images", "1000", "--eval-images", "2000"),
        backs="time per evaluated arch",
        needs=SHIPPED,
    ),
    Benchmark("bench_export", "bench_export.py", backs="ORT vs PyTorch, int8 vs fp32 (fmnist space), parity"),
    Benchmark("bench_export_attentive", "bench_export_attentive.py", backs="int8 vs fp32 in the AttentiveNAS space"),
)


def _have_supernet(name: str) -> bool:
    """Whether the run folder, run name or shipped supernet ``name`` has a checkpoint."""
    from nastools.checkpoint import find_checkpoint

    return find_checkpoint(name).is_file()


def run(bench: Benchmark) -> str:
    """Run one benchmark from the repository's root: 'ok', 'failed' or 'skipped: why'."""
    if bench.needs and not _have_supernet(bench.needs):
        if not bench.prepare:
            return f"skipped: no supernet {bench.needs!r} (not shipped in this checkout)"
        print(f"== {bench.key}: training {bench.needs} first: nastools {shlex.join(bench.prepare)}", flush=True)
        if subprocess.run([sys.executable, "-m", "nastools", *bench.prepare], cwd=ROOT).returncode:
            return "failed (training its supernet)"
    print(f"== {bench.key}: {bench.command()}", flush=True)
    rc = subprocess.run([sys.executable, str(HERE / bench.script), *bench.args], cwd=ROOT).returncode
    return "ok" if rc == 0 else f"failed (exit {rc})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="benchmarks to run (default: all of the suite)")
    ap.add_argument("--list", action="store_true", help="print the suite's commands and exit")
    args = ap.parse_args()
    known = {b.name for b in SUITE} | {b.key for b in SUITE}
    unknown = [n for n in args.names if n not in known]
    if unknown:
        ap.error(f"unknown benchmark {', '.join(unknown)}; expected one of {', '.join(sorted(known))}")
    chosen = [b for b in SUITE if not args.names or b.name in args.names or b.key in args.names]
    if args.list:
        for b in chosen:
            print(f"{b.key:28s} {b.command()}" + (f"   (needs {b.needs})" if b.needs else ""))
        return 0
    outcome = {}
    for b in chosen:
        t0 = time.time()
        outcome[b.key] = f"{run(b)} ({time.time() - t0:.0f} s)"
    print("\n== summary")
    for key, what in outcome.items():
        print(f"   {key:28s} {what}")
    return 1 if any(v.startswith("failed") for v in outcome.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
