"""List the functions of a package longer than a limit (default: 80 lines), longest first.

    python tools/long_functions.py [--max 80] [--exclude nastools/export ...] [ROOT]

A function's length runs from its ``def`` line to its last line, nested functions included;
exits 1 when any is listed, so that it can gate a check.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path


def long_functions(root: Path, limit: int, exclude: tuple[Path, ...] = ()) -> list[tuple[int, str, str]]:
    """(lines, "file:line", qualified name) of every function in ``root`` over ``limit`` lines."""
    found = []
    for path in sorted(root.rglob("*.py")):
        if any(path.is_relative_to(x) for x in exclude):
            continue
        tree = ast.parse(path.read_text(), str(path))

        def visit(node: ast.AST, prefix: str) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    name = f"{prefix}{child.name}"
                    n = child.end_lineno - child.lineno + 1
                    if n > limit:
                        found.append((n, f"{path}:{child.lineno}", name))
                    visit(child, f"{name}.")
                elif isinstance(child, ast.ClassDef):
                    visit(child, f"{prefix}{child.name}.")
                else:
                    visit(child, prefix)

        visit(tree, "")
    return sorted(found, reverse=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", nargs="?", default="nastools")
    ap.add_argument("--max", type=int, default=80, help="longest allowed function, in lines")
    ap.add_argument("--exclude", nargs="*", default=[], help="folders or files to skip")
    args = ap.parse_args(argv)
    found = long_functions(Path(args.root), args.max, tuple(Path(x) for x in args.exclude))
    for n, where, name in found:
        print(f"{n:4d}  {where}  {name}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
