"""Which result file backs each published figure: writes ``benchmarks/results/INDEX.md``.

Reads README.md and every page under docs/, finds each reference to a file under
``benchmarks/results/`` (outside code blocks), and lists it with its section, the caption it
sits under (the bold text that opens the paragraph, list item or table caption), the
machine and date the file records, and the command that makes it. ``--check`` writes
nothing and fails when INDEX.md is out of date or a check fails:

- every cited file exists;
- every result file lies where its record says: ``[archive/]<benchmark>/<cpu-tag>/<date>[-<variant>].json``
  with the record's ``benchmark``, ``variant`` and ``machine.date``, and the CPU tag of its
  ``machine`` (records without ``cpu_id`` name the generation from the run's notes);
- every result file is cited: a current one by README.md or docs/results/, an archived
  (superseded) one by its one-line summary in docs/results/.

Usage: python benchmarks/index.py [--check]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
INDEX = RESULTS / "INDEX.md"

sys.path.insert(0, str(HERE))

from _common import cpu_tag  # noqa: E402
from run import SUITE  # noqa: E402

_REF = re.compile(r"benchmarks/results/([A-Za-z0-9_./-]+?\.json)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_CAPTION = re.compile(r"^\s*(?:[-*]\s+)?\*\*(.+?)\*\*")
_WRITES = re.compile(r"write_result\(\s*f?\"([^\"]+)\"")
_GENERIC = {"result", "results", "file", "same file"}


@dataclass(frozen=True)
class Citation:
    doc: str  # relative to the repository's root
    section: str
    caption: str
    file: str  # relative to benchmarks/results/


def documents(root: Path = ROOT) -> list[Path]:
    """README.md, then every Markdown page under docs/."""
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def citations(path: Path, root: Path = ROOT) -> list[Citation]:
    """The references to result files in one Markdown file, in order, once each per caption."""
    doc = path.relative_to(root).as_posix()
    titles: list[tuple[int, str]] = []
    caption, in_code, out = "", False, []
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("```"):
            in_code = not in_code
            continue
        if in_code:
            continue
        m = _HEADING.match(line)
        if m:
            level = len(m[1])
            titles = [t for t in titles if t[0] < level] + [(level, m[2])]
            caption = ""
            continue
        m = _CAPTION.match(line)
        if m:
            caption = m[1].rstrip(":. ")
        for ref in _REF.findall(line):
            section = " › ".join(t for lvl, t in titles if lvl > 1) or titles[0][1] if titles else ""
            c = Citation(doc, section, _figure(line, ref, caption), ref)
            if c not in out:
                out.append(c)
    return out


def _figure(line: str, ref: str, caption: str) -> str:
    """What a citation on ``line`` labels: the caption, and the link's own text or, for a
    generic one ("result", "file") in a table row, the row's first cells."""
    m = re.search(r"\[([^\]]+)\]\([^)]*" + re.escape(ref) + r"\)", line)
    text = m[1].strip() if m else ""
    if text.lower() in _GENERIC or not text:
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.lstrip().startswith("|") else []
        text = ", ".join(c for c in cells[:2] if c)
    return f"{caption} ({text})" if caption and text else caption or text


def all_citations(root: Path = ROOT) -> list[Citation]:
    return [c for p in documents(root) for c in citations(p, root)]


def result_files(results: Path = RESULTS) -> list[str]:
    """Every result file, relative to ``results``."""
    return sorted(p.relative_to(results).as_posix() for p in results.rglob("*.json"))


def _record(rel: str, results: Path = RESULTS) -> dict:
    return json.loads((results / rel).read_text())


def _machine(m: dict) -> str:
    gen = re.search(r"family \d+ model \d+", m.get("cpu_id") or "")
    extra = gen[0] if gen else (m.get("cpu_isa") or "generation not recorded")
    return f"{m.get('cpu', '?')}, {extra}"


def _writers() -> dict[str, str]:
    """Benchmark name (a regular expression for f-strings) -> the script that writes it."""
    out = {}
    for script in sorted([*HERE.glob("*.py"), *(HERE / "investigations").glob("*.py")]):
        for name in _WRITES.findall(script.read_text()):
            out[re.sub(r"\\\{[^}]*\\\}", ".+", re.escape(name))] = script.relative_to(ROOT).as_posix()
    return out


def made_by(rel: str, record: dict) -> str:
    """The command that makes a result file: the suite's, else the script that writes it."""
    archived = rel.startswith("archive/")
    if not archived:
        for b in SUITE:
            if b.name == record.get("benchmark") and b.variant == record.get("variant"):
                return f"`{b.command()}`"
    for pattern, script in _writers().items():
        if re.fullmatch(pattern, record.get("benchmark", "")):
            variant = f" … --variant {record['variant']}" if record.get("variant") else ""
            return f"`python {script}{variant}`" + (" (superseded)" if archived else "")
    return "?"


def problems(root: Path = ROOT, results: Path = RESULTS) -> list[str]:
    """What is wrong with the results tree and the citations of it (empty when all is well)."""
    from nastools.latency.table import slug

    out = []
    cites = all_citations(root)
    files = set(result_files(results))
    for c in cites:
        if c.file not in files:
            out.append(f"{c.doc} ({c.section}) cites benchmarks/results/{c.file}, which does not exist")
    for rel in sorted(files):
        parts = rel.split("/")
        archived = parts[0] == "archive"
        parts = parts[1:] if archived else parts
        try:
            r = _record(rel, results)
            m = r["machine"]
        except (ValueError, KeyError, TypeError) as e:
            out.append(f"benchmarks/results/{rel}: not a result record ({e})")
            continue
        stem = m.get("date", "?") + (f"-{r['variant']}" if r.get("variant") else "")
        if len(parts) != 3 or parts[0] != r.get("benchmark") or parts[2] != f"{stem}.json":
            out.append(f"benchmarks/results/{rel}: its record says {'archive/' if archived else ''}{r.get('benchmark')}/<cpu>/{stem}.json")
        elif m.get("cpu_id") and parts[1] != cpu_tag(m):
            out.append(f"benchmarks/results/{rel}: its machine's tag is {cpu_tag(m)}, not {parts[1]}")
        elif not parts[1].startswith(slug(m.get("cpu") or "") + "-"):
            out.append(f"benchmarks/results/{rel}: folder {parts[1]} does not name its CPU {m.get('cpu')!r}")
        cited_by = {c.doc for c in cites if c.file == rel}
        if archived and not any(d.startswith("docs/results/") for d in cited_by):
            out.append(f"benchmarks/results/{rel}: archived but not summarised in docs/results/")
        if not archived and not any(d == "README.md" or d.startswith("docs/results/") for d in cited_by):
            out.append(f"benchmarks/results/{rel}: cited by neither README.md nor docs/results/: cite it or move it to archive/")
    return out


def render(root: Path = ROOT, results: Path = RESULTS) -> str:
    """The text of INDEX.md."""
    lines = [
        "# Result index",
        "",
        "Which result file backs each figure of the README and the docs. Generated by",
        "`python benchmarks/index.py` (`make bench` runs it); `tests/test_benchmark_results.py` fails",
        "when this file is out of date, names a missing file, or a result file is cited nowhere.",
        "Do not edit by hand.",
        "",
        "Layout: `<benchmark>/<cpu-tag>/<date>[-<variant>].json`; `archive/` holds superseded runs,",
        "each summarised in one line of its topic's page in [docs/results/](../../docs/results/README.md),",
        "which also describes the machines.",
    ]
    files = set(result_files(results))
    by_doc: dict[str, list[Citation]] = {}
    for c in all_citations(root):
        by_doc.setdefault(c.doc, []).append(c)
    for doc, cites in by_doc.items():
        lines += ["", f"## {doc}", "", "| section | figure | result file | machine | date | made by |", "|---|---|---|---|---|---|"]
        for c in cites:
            if c.file in files:
                r = _record(c.file, results)
                m = r["machine"]
                lines.append(
                    f"| {c.section} | {c.caption} | [{c.file}]({c.file}) | {_machine(m)} | {m.get('date', '?')} | {made_by(c.file, r)} |"
                )
            else:
                lines.append(f"| {c.section} | {c.caption} | {c.file} (missing) | | | |")
    cited = {c.file for cs in by_doc.values() for c in cs}
    orphans = sorted(files - cited)
    if orphans:
        lines += ["", "## Not cited anywhere (cite them, or move them to archive/)", ""]
        lines += [f"- [{f}]({f})" for f in orphans]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="write nothing; fail when INDEX.md is stale or a check fails")
    args = ap.parse_args()
    text, found = render(), problems()
    for p in found:
        print(p, file=sys.stderr)
    if args.check:
        if not INDEX.is_file() or INDEX.read_text() != text:
            print(f"{INDEX.relative_to(ROOT)} is out of date: run python benchmarks/index.py", file=sys.stderr)
            return 1
        return 1 if found else 0
    INDEX.write_text(text)
    print(f"wrote {INDEX.relative_to(ROOT)} ({sum(1 for ln in text.splitlines() if ln.startswith('| ') and '](' in ln)} citations)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
