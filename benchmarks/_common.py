"""Shared by the benchmark scripts: write results with the machine and date."""

from __future__ import annotations

import json
from pathlib import Path

from nastools.io import atomic_write_json
from nastools.machine import machine_info

RESULTS = Path(__file__).with_name("results")


def write_result(name: str, figures: dict) -> Path:
    path = RESULTS / f"{name}.json"
    atomic_write_json(path, {"benchmark": name, "machine": machine_info(), **figures})
    print(f"wrote {path}")
    return path


def table(rows, headers) -> str:
    from nastools.cli import format_table

    return format_table(rows, headers)


def dumps(data) -> str:
    return json.dumps(data, indent=2)
