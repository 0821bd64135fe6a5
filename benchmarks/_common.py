"""Shared by the benchmark scripts: where results go, and writing them with the machine and date.

A result is ``benchmarks/results/<benchmark>/<cpu-tag>/<date>[-<variant>].json``: the
benchmark's name, the CPU it ran on (:func:`cpu_tag`), the UTC date of the run and, for a run
with other settings than the benchmark's own, a variant name. A rerun on the same CPU and
day replaces the file.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Mapping

from nastools.io import atomic_write_json
from nastools.machine import generation_tag, machine_info

RESULTS = Path(__file__).with_name("results")
ARCHIVE = RESULTS / "archive"
_VARIANT = re.compile(r"[a-z0-9][a-z0-9-]*")


def cpu_tag(machine: Mapping[str, Any]) -> str:
    """The folder of a machine's results: its CPU model name and generation, e.g.
    'intel-xeon-processor-f6m167', 'amd-epyc-f26m2' or 'arm-neoverse-v1-i41pd40v1'
    (:func:`nastools.machine.generation_tag` of ``cpu_id``; the vector extension where a
    record has no ``cpu_id``)."""
    from nastools.latency.table import slug  # the latency tables' device names

    generation = generation_tag(machine.get("cpu_id") or "") or (machine.get("cpu_isa") or "").replace("_", "-")
    return "-".join(x for x in (slug(machine.get("cpu") or ""), generation) if x)


def result_path(name: str, variant: str | None = None, machine: Mapping[str, Any] | None = None) -> Path:
    """Where :func:`write_result` writes benchmark ``name`` (of this machine, today)."""
    if variant is not None and not _VARIANT.fullmatch(variant):
        raise ValueError(f"variant {variant!r}: expected lower-case letters, digits and '-'")
    machine = machine_info() if machine is None else machine
    stem = machine["date"] + (f"-{variant}" if variant else "")
    return RESULTS / name / cpu_tag(machine) / f"{stem}.json"


def write_result(name: str, figures: dict, variant: str | None = None) -> Path:
    """Write ``figures`` of benchmark ``name`` with this machine's record and today's date to
    ``results/<name>/<cpu-tag>/<date>[-<variant>].json``; returns the path."""
    machine = machine_info()
    path = result_path(name, variant, machine)
    path.parent.mkdir(parents=True, exist_ok=True)
    head: dict[str, Any] = {"benchmark": name}
    if variant:
        head["variant"] = variant
    atomic_write_json(path, {**head, "machine": machine, **figures})
    print(f"wrote {path}")
    return path


def latest_result(name: str, variant: str | None = None) -> Path | None:
    """This CPU's newest result of benchmark ``name`` (of ``variant``), or None."""
    folder = result_path(name, variant).parent
    suffix = f"-{variant}.json" if variant else ".json"
    files = [p for p in folder.glob("*.json") if p.name.endswith(suffix) and (variant or len(p.stem) == 10)]
    return max(files, default=None)


def table(rows, headers) -> str:
    from nastools.cli import format_table

    return format_table(rows, headers)


def dumps(data) -> str:
    return json.dumps(data, indent=2)
