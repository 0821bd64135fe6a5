"""Deployment budgets in human units: ``10ms``, ``800us``, ``300M`` FLOPs, ``5M`` params.

A :class:`Budget` bounds one cost metric (``latency`` on a named device, ``flops`` or
``params``). The command line allows several values at once (``--latency 2ms,4ms,8ms``) and
one device per flag (``--latency cpu=10ms --latency gpu=2ms``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from nastools.errors import NastoolsError
from nastools.space import format_count, parse_count, parse_time

#: milliseconds per unit: the units ``nastools bench`` takes for durations, and µs
_TIME_UNITS = {"us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1e3, "min": 6e4, "h": 3.6e6}


@dataclass(frozen=True)
class Budget:
    """An upper bound on one cost metric. Latency limits are in milliseconds."""

    metric: str  # "latency" | "flops" | "params"
    limit: float
    device: str | None = None  # latency only: a device alias or table path

    @property
    def cost_name(self) -> str:
        """The name of the cost this budget bounds, e.g. ``latency:cpu`` or ``flops``."""
        return f"latency:{self.device}" if self.metric == "latency" else self.metric

    def __str__(self) -> str:
        if self.metric == "latency":
            dev = f"{self.device}=" if self.device else ""
            return f"{dev}{format_latency(self.limit)}"
        return f"{format_count(self.limit)} {self.metric}"


def format_latency(ms: float) -> str:
    us = f"{ms * 1e3:.3g}"
    if ms < 1 and float(us) < 1000:  # 0.9996 ms rounds to 1 ms, not "1e+03us"
        return f"{us}us"
    return f"{ms:.3g}ms"


def parse_latency(text: str) -> float:
    """'10ms' -> 10.0, '800us' -> 0.8, '0.5s' -> 500.0, '1min', '1h' (milliseconds): a
    finite, positive time with a unit, else a one-line :class:`NastoolsError`."""
    value = parse_time(text, "latency", units=_TIME_UNITS)
    if not math.isfinite(value):
        raise NastoolsError(f"latency {text!r}: expected a finite time, e.g. 10ms")
    if value <= 0:
        raise NastoolsError(f"latency {text!r}: expected a positive time")
    return value


def parse_budgets(
    latency: str | Sequence[str] = (), flops: str | Sequence[str | float] = (), params: str | Sequence[str | float] = ()
) -> list[Budget]:
    """Budgets from the command line's repeated, comma-separated options.

    Each argument is a sequence of items, as repeated options give them, or one item as a
    string. ``latency`` items look like ``10ms``, ``2ms,4ms`` or ``cpu=10ms`` (a unit is
    needed); a latency without a device uses the device ``default``. ``flops`` and ``params``
    items look like ``20M`` or ``10M,20M``, or are numbers.
    """
    latency, flops, params = (_items(v, what) for v, what in ((latency, "latency"), (flops, "flops"), (params, "params")))
    out: list[Budget] = []
    for item in latency:
        device = "default"
        if "=" in item:
            device, rest = item.split("=", 1)
            device = device.strip()
            if not device:
                raise NastoolsError(f"latency budget {item!r}: empty device name before '='")
            item = rest
        for part in item.split(","):
            out.append(Budget("latency", parse_latency(part), device))
    for metric, items in (("flops", flops), ("params", params)):
        for item in items:
            for part in item.split(","):
                out.append(Budget(metric, parse_count(part)))
    return out


def _items(value: object, what: str) -> list[str]:
    """The items of one budget argument as text: a string is one item; numbers are written
    out (a latency number is then refused for its missing unit)."""
    items = [value] if isinstance(value, (str, int, float)) else value
    try:
        items = list(items)
    except TypeError:
        items = [items]
    for v in items:
        if isinstance(v, bool) or not isinstance(v, (str, int, float)):
            raise NastoolsError(f"{what} budget {v!r}: expected text such as {'10ms' if what == 'latency' else '20M'}")
    return [v if isinstance(v, str) else repr(v) for v in items]
