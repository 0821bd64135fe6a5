"""Numbers as people write and read them: counts with K/M/G suffixes, choice values in keys
and messages, and the integer and number fields of arch JSON and space YAML."""

from __future__ import annotations

import math
import re
from typing import Any, Mapping, Sequence

from nastools.errors import NastoolsError


def format_count(value: float, unit: str = "") -> str:
    """1234567 -> '1.23M'."""
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= factor:
            return f"{value / factor:.3g}{suffix}{unit}"
    return f"{value:.3g}{unit}"


def parse_count(text: str) -> float:
    """'300M' -> 3e8, '5.5K' -> 5500, '2e6' -> 2e6."""
    s = str(text).strip()
    mult = {"K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
    factor = 1.0
    if s and s[-1].upper() in mult:
        factor, s = mult[s[-1].upper()], s[:-1]
    try:
        value = float(s) * factor
    except ValueError:
        raise NastoolsError(f"count {text!r}: expected a number with an optional K/M/G suffix, e.g. 300M") from None
    if not math.isfinite(value) or value <= 0:
        raise NastoolsError(f"count {text!r}: expected a positive number")
    return value


#: seconds per unit of a written time; a bare "m" is refused as ambiguous (min or ms?)
TIME_UNITS_S = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0}
_TIME = re.compile(r"\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?)\s*([a-zµ]*)\s*", re.IGNORECASE)


def parse_time(text: str, what: str, *, units: Mapping[str, float] = TIME_UNITS_S, bare: float | None = None) -> float:
    """A written time, ``'10ms'``, ``'800us'``, ``'1.5h'``, as a multiple of the scale of
    ``units`` (seconds by default). A number without a unit counts ``bare`` each, or is refused
    when ``bare`` is None. Malformed text is a one-line :class:`NastoolsError` naming ``what``;
    the value may be zero, negative or infinite: the caller bounds it."""
    m = _TIME.fullmatch(str(text))
    if not m:
        raise NastoolsError(f"{what} {text!r}: expected a number with a unit, e.g. 200ms, 3s, 500us")
    number, unit = m.group(1), m.group(2).lower()
    if not unit:
        if bare is None:
            raise NastoolsError(f"{what} {text!r}: add a unit, e.g. {number}ms or {number}s")
        return float(number) * bare
    if unit not in units:
        hint = " ('m' is ambiguous: write min or ms)" if unit == "m" else ""
        raise NastoolsError(f"{what} {text!r}: unknown unit {m.group(2)!r}{hint}; expected one of {', '.join(units)}")
    return float(number) * units[unit]


def as_number(value: float) -> int | float:
    """Integral floats become ints, so 4 and 4.0 encode the same way."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def fmt_number(value: float) -> str:
    """A choice value as keys and messages spell it: ``4``, ``4.5`` (``%g``)."""
    return f"{value:g}"


def choices_text(values: Sequence[Any]) -> str:
    """Choice values for a message: ``3, 5`` or ``4, 4.5``."""
    return ", ".join(fmt_number(v) if isinstance(v, float) else str(v) for v in values)


def int_field(where: str, value: Any) -> int:
    """``value`` as an int if it is an integer (``4`` or ``4.0``, not ``True``), else a
    one-line :class:`NastoolsError` naming ``where``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise NastoolsError(f"{where}: got {value!r}, expected an integer")
    if isinstance(value, float):
        if not value.is_integer():
            raise NastoolsError(f"{where}: got {value!r}, expected an integer")
        value = int(value)
    return value


def num_field(where: str, value: Any) -> int | float:
    """``value`` if it is a finite number (integral floats as ints), else a one-line
    :class:`NastoolsError` naming ``where``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise NastoolsError(f"{where}: got {value!r}, expected a number")
    return as_number(value)


__all__ = ["as_number", "choices_text", "fmt_number", "format_count", "int_field", "num_field", "parse_count"]
