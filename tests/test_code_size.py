"""Rooms of a readable size: no function in nastools/ runs over 80 lines
(``python tools/long_functions.py`` lists them)."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_no_function_in_nastools_is_longer_than_80_lines():
    spec = importlib.util.spec_from_file_location("long_functions", ROOT / "tools" / "long_functions.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    found = tool.long_functions(ROOT / "nastools", 80)
    assert found == [], "\n".join(f"{n} lines: {name} ({where})" for n, where, name in found)
