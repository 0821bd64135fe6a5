"""Space definitions: the YAML schema, its validation and the packaged spaces.

:func:`space_from_dict` checks a definition step by step (top-level sections, activation and
gate, every stage, the scalar settings and their bounds, the width lists), each step raising
one :class:`NastoolsError` line that names the field, the value and what was expected.
:func:`load_space` finds a packaged space by name (through :mod:`importlib.resources`) or
reads a YAML file by path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from nastools.errors import NastoolsError
from nastools.resources import package_dir
from nastools.space.arch import ACTIVATIONS, GATES, check_name
from nastools.space.searchspace import SearchSpace, StageSpec
from nastools.space.units import int_field, num_field

SPACES_DIR = package_dir("spaces")

#: the largest value a space may offer per choice: far beyond any real network, small enough
#: that costs, sizes and the supernet's shapes stay ordinary numbers
LIMITS = {
    "resolutions": 4096,
    "widths": 16384,
    "depths": 64,
    "kernels": 31,
    "expands": 64,
    "stages": 64,
    "input_channels": 1024,
    "num_classes": 1_000_000,
    "head.expand": 64,
    "se.divisor": 1024,
    "stem.kernel": 31,
    "stem.stride": 8,
}

_SPACE_FIELDS = (
    "name",
    "description",
    "input_channels",
    "num_classes",
    "resolutions",
    "act",
    "se",
    "stem",
    "stages",
    "head",
    "dropout",
    "drop_connect",
)
_STAGE_FIELDS = ("name", "widths", "depths", "kernels", "expands", "stride", "se")


def _get(d: Mapping, key: str, where: str, kind: type | tuple = object, default: Any = ...):
    if key not in d:
        if default is not ...:
            return default
        raise NastoolsError(f"{where}.{key}: missing")
    value = d[key]
    if kind is not object and (not isinstance(value, kind) or isinstance(value, bool) and kind is not bool):
        raise NastoolsError(f"{where}.{key}: got {value!r}, expected {getattr(kind, '__name__', kind)}")
    return value


def _int_list(d: Mapping, key: str, where: str, positive: bool = True) -> tuple[int, ...]:
    values = _get(d, key, where, list)
    if not values:
        raise NastoolsError(f"{where}.{key}: empty, expected at least one value")
    most = LIMITS.get(key)
    out = []
    for v in values:
        iv = int_field(f"{where}.{key}", v)
        if positive and iv <= 0:
            raise NastoolsError(f"{where}.{key}: got {v!r}, expected positive integers")
        if most is not None and iv > most:
            raise NastoolsError(f"{where}.{key}: got {v!r}, expected at most {most}")
        out.append(iv)
    if len(set(out)) != len(out):
        raise NastoolsError(f"{where}.{key}: got duplicate values {out}, expected distinct values")
    return tuple(sorted(out))


def _only(data: Mapping, fields: Sequence[str], where: str) -> None:
    """A misspelt key (``drop_conect``) is an error, not a silently ignored setting."""
    extra = sorted(str(k) for k in data if k not in fields)
    if extra:
        raise NastoolsError(f"{where}: unknown field {extra[0]!r}, expected only {', '.join(fields)}")


def _one_of(value: str, options: Sequence[str], where: str) -> str:
    if value not in options:
        raise NastoolsError(f"{where}: got {value!r}, expected one of {', '.join(options)}")
    return value


# --------------------------------------------------------------------------- steps


def _sections(data: Mapping, w: str) -> tuple[Mapping, Mapping, Mapping]:
    """The ``stem``, ``head`` and ``se`` sections, each with only its known fields."""
    stem = _get(data, "stem", w, Mapping)
    head = _get(data, "head", w, Mapping)
    se = _get(data, "se", w, Mapping, {})
    _only(stem, ("widths", "kernel", "stride"), f"{w}.stem")
    _only(head, ("widths", "expand"), f"{w}.head")
    _only(se, ("ratio", "gate", "divisor"), f"{w}.se")
    return stem, head, se


def _stage(st: Any, index: int, sw: str) -> StageSpec:
    """One entry of ``stages``: odd kernels, expands from 1 to the limit, stride 1 or 2."""
    if not isinstance(st, Mapping):
        raise NastoolsError(f"{sw}: expected a mapping, got {type(st).__name__}")
    _only(st, _STAGE_FIELDS, sw)
    kernels = _int_list(st, "kernels", sw)
    if any(k % 2 == 0 for k in kernels):
        raise NastoolsError(f"{sw}.kernels: got {list(kernels)}, expected odd kernel sizes")
    expands_raw = _get(st, "expands", sw, list)
    expands = tuple(sorted(num_field(f"{sw}.expands", e) for e in expands_raw))
    if not expands or any(not 1 <= e <= LIMITS["expands"] for e in expands):
        raise NastoolsError(f"{sw}.expands: got {expands_raw!r}, expected numbers from 1 to {LIMITS['expands']}")
    if len(set(expands)) != len(expands):
        raise NastoolsError(f"{sw}.expands: got duplicate values {list(expands)}, expected distinct values")
    stride = int_field(f"{sw}.stride", _get(st, "stride", sw))
    if stride not in (1, 2):
        raise NastoolsError(f"{sw}.stride: got {stride}, expected 1 or 2")
    return StageSpec(
        name=str(_get(st, "name", sw, str, f"stage{index + 1}")),
        widths=_int_list(st, "widths", sw),
        depths=_int_list(st, "depths", sw),
        kernels=kernels,
        expands=expands,
        stride=stride,
        se=bool(_get(st, "se", sw, bool, False)),
    )


def _stages(data: Mapping, w: str) -> tuple[StageSpec, ...]:
    """The ``stages`` list: at least one stage, at most the limit, each checked."""
    stages_raw = _get(data, "stages", w, list)
    if not stages_raw:
        raise NastoolsError(f"{w}.stages: empty, expected at least one stage")
    if len(stages_raw) > LIMITS["stages"]:
        raise NastoolsError(f"{w}.stages: got {len(stages_raw)} stages, expected at most {LIMITS['stages']}")
    return tuple(_stage(st, i, f"{w}.stages[{i}]") for i, st in enumerate(stages_raw))


def _scalars(data: Mapping, stem: Mapping, head: Mapping, se: Mapping, w: str) -> dict[str, Any]:
    """The scalar settings (defaults filled in), keyed by their dotted names, each within its bounds."""
    values = {
        "stem.kernel": int_field(f"{w}.stem.kernel", _get(stem, "kernel", f"{w}.stem", default=3)),
        "stem.stride": int_field(f"{w}.stem.stride", _get(stem, "stride", f"{w}.stem", default=2)),
        "input_channels": int_field(f"{w}.input_channels", _get(data, "input_channels", w)),
        "num_classes": int_field(f"{w}.num_classes", _get(data, "num_classes", w)),
        "head.expand": int_field(f"{w}.head.expand", _get(head, "expand", f"{w}.head", default=6)),
        "se.ratio": float(num_field(f"{w}.se.ratio", _get(se, "ratio", f"{w}.se", default=0.25))),
        "se.divisor": int_field(f"{w}.se.divisor", _get(se, "divisor", f"{w}.se", default=8)),
        "dropout": float(num_field(f"{w}.dropout", _get(data, "dropout", w, default=0.0))),
        "drop_connect": float(num_field(f"{w}.drop_connect", _get(data, "drop_connect", w, default=0.0))),
    }

    def bounded(key: str, low: int) -> tuple[str, bool, str]:
        v = values[key]
        return (key, low <= v <= LIMITS[key], f"at least {low}" if v < low else f"at most {LIMITS[key]}")

    for key, ok, expected in (
        bounded("input_channels", 1),
        bounded("num_classes", 2),
        bounded("head.expand", 1),
        ("se.ratio", 0 < values["se.ratio"] <= 1, "in (0, 1]"),
        bounded("se.divisor", 1),
        ("dropout", 0 <= values["dropout"] < 1, "in [0, 1)"),
        ("drop_connect", 0 <= values["drop_connect"] < 1, "in [0, 1)"),
        bounded("stem.kernel", 1),
        bounded("stem.stride", 1),
    ):
        if not ok:
            raise NastoolsError(f"{w}.{key}: got {values[key]!r}, expected {expected}")
    return values


def space_from_dict(data: Any, source: str = "space") -> SearchSpace:
    """Build and check a :class:`SearchSpace` from its YAML/JSON definition."""
    if not isinstance(data, Mapping):
        raise NastoolsError(f"{source}: expected a mapping of space fields, got {type(data).__name__}")
    w = source
    _only(data, _SPACE_FIELDS, w)
    name = check_name(_get(data, "name", w, str), f"{w}.name")
    stem, head, se = _sections(data, w)
    act = _one_of(_get(data, "act", w, str, "swish"), ACTIVATIONS, f"{w}.act")
    gate = _one_of(_get(se, "gate", f"{w}.se", str, "hsigmoid"), GATES, f"{w}.se.gate")
    stages = _stages(data, w)
    values = _scalars(data, stem, head, se, w)
    return SearchSpace(
        name=name,
        input_channels=values["input_channels"],
        num_classes=values["num_classes"],
        resolutions=_int_list(data, "resolutions", w),
        stem_widths=_int_list(stem, "widths", f"{w}.stem"),
        stem_kernel=values["stem.kernel"],
        stem_stride=values["stem.stride"],
        stages=stages,
        head_widths=_int_list(head, "widths", f"{w}.head"),
        head_expand=values["head.expand"],
        act=act,
        se_ratio=values["se.ratio"],
        se_gate=gate,
        se_divisor=values["se.divisor"],
        dropout=values["dropout"],
        drop_connect=values["drop_connect"],
        description=str(data.get("description", "")),
    )


# --------------------------------------------------------------------------- files


def list_spaces() -> list[str]:
    """Names of the packaged search spaces."""
    return sorted(p.stem for p in SPACES_DIR.glob("*.yaml"))


_SPACE_CACHE: dict[str | tuple[str, int, int], SearchSpace] = {}  # packaged name, or (file, mtime, size)


def load_space(name_or_path: "str | Path | SearchSpace") -> SearchSpace:
    """A packaged space by name (``fmnist``, ``attentivenas``) or a space YAML file by path."""
    if isinstance(name_or_path, SearchSpace):
        return name_or_path
    name = str(name_or_path)
    if name in _SPACE_CACHE:  # a packaged space, cached by name
        return _SPACE_CACHE[name]
    packaged = name in list_spaces()
    path = SPACES_DIR / f"{name}.yaml" if packaged else Path(name)
    if not path.exists():
        if name.endswith((".yaml", ".yml")) or "/" in name or "\\" in name:
            raise NastoolsError(f"search space file {name!r} not found (packaged spaces: {', '.join(list_spaces())})")
        raise NastoolsError(f"unknown search space {name!r}: expected one of {', '.join(list_spaces())} or the path of a space YAML file")
    from nastools.io import read_text

    text = read_text(path, "space file")  # a folder, a device, an empty or binary file: one line each
    st = path.stat()
    key = name if packaged else (str(path.resolve()), st.st_mtime_ns, st.st_size)  # an edited file is read again
    if key in _SPACE_CACHE:
        return _SPACE_CACHE[key]
    data = parse_yaml(text, f"space file {str(path)!r}")
    space = space_from_dict(data, source=path.name)
    if not packaged and space.name in list_spaces() and space.fingerprint != load_space(space.name).fingerprint:
        # archs name their space: they would be checked against the packaged one later
        raise NastoolsError(
            f"space file {str(path)!r} is named {space.name!r} like a packaged space but defines another one: give it its own name"
        )
    _SPACE_CACHE[key] = space
    return space


_LOADER = None


def _yaml_loader():
    """A ``yaml.SafeLoader`` that refuses a mapping with the same key twice (PyYAML keeps the
    last one silently: a setting typed twice would be half ignored)."""
    global _LOADER
    if _LOADER is None:
        import yaml
        from yaml.constructor import ConstructorError

        class UniqueKeyLoader(yaml.SafeLoader):
            def construct_mapping(self, node, deep=False):
                seen: dict[Any, int] = {}
                if isinstance(node, yaml.MappingNode):
                    for key_node, _ in node.value:
                        if key_node.tag == "tag:yaml.org,2002:merge":
                            continue
                        key = self.construct_object(key_node, deep=True)
                        try:
                            first = seen.get(key)
                        except TypeError:  # a list or mapping as a key
                            raise ConstructorError(None, None, f"unusable key of type {type(key).__name__}", key_node.start_mark) from None
                        if first is not None:
                            raise ConstructorError(
                                None, None, f"duplicate key {key!r} (first at line {first + 1}): keep one", key_node.start_mark
                            )
                        seen[key] = key_node.start_mark.line
                return super().construct_mapping(node, deep)

        _LOADER = UniqueKeyLoader
    return _LOADER


def parse_yaml(text: str, what: str) -> Any:
    """The data of a YAML document (safe: no Python objects), with one-line
    :class:`NastoolsError` s naming ``what``: a syntax error, a duplicate key, an integer
    longer than Python converts, nesting too deep."""
    import yaml

    try:
        return yaml.load(text, Loader=_yaml_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise NastoolsError(f"cannot read {what}: {' '.join(str(exc).split())}") from None
    except ValueError as exc:  # the int-string limit, an impossible date
        from nastools.errors import brief

        detail = f"a number has more than {_int_digits()} digits" if "integer string conversion" in str(exc) else brief(exc, 120)
        raise NastoolsError(f"cannot read {what}: {detail}") from None
    except RecursionError:
        raise NastoolsError(f"cannot read {what}: nested too deeply") from None


def _int_digits() -> int:
    import sys

    return getattr(sys, "get_int_max_str_digits", lambda: 4300)()


__all__ = ["LIMITS", "SPACES_DIR", "list_spaces", "load_space", "parse_yaml", "space_from_dict"]
