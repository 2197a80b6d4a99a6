"""Every ``docs/<name>.md §<n>`` citation resolves, and nothing points outside the repository.

Section headings in docs/ are numbered Markdown headings: ``## 3. Title`` (top level, with a dot)
and ``### 3.3 Title`` (subsections). A citation ``docs/algorithm.md §3.3`` needs that file and that
heading; a range ``§2-§5`` needs every top-level section in it; ``§3.3 History`` also needs the word
"History" in the section. Inside a docs/ file, a bare ``§x`` refers to the same file.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SUFFIXES = {".py", ".yaml", ".yml", ".md", ".toml"}
SKIP_DIRS = {".venv", ".git", "node_modules", "outputs", "dars.egg-info", "__pycache__"}

HEADING = re.compile(r"^(#{2,6})\s+(\d+(?:\.\d+)*)\.?\s+\S", re.MULTILINE)
SEC = r"§(\d+(?:\.\d+)*)"
# docs/<name>.md, then (possibly after a line break inside a comment or docstring) §a, §a-§b, §a–b
CITATION = re.compile(
    r"docs/([\w.-]+?\.md)[ \t]*(?:\n[ \t#*>]*)?" + SEC + r"(?:\s*[-–]\s*§?(\d+(?:\.\d+)*))?(?: ([A-Z][a-z]+))?"
)
BARE = re.compile(SEC)
# built from parts so that this file does not match itself
OUTSIDE = ("..".__add__("/shared"), "/work".__add__("/shared"))


def _git_files(*args: str) -> list[Path] | None:
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", *args], cwd=ROOT, capture_output=True, check=True, timeout=60
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return [ROOT / p for p in out.decode().split("\0") if p]


def _walk() -> list[Path]:
    return [p for p in ROOT.rglob("*") if p.is_file() and not SKIP_DIRS.intersection(p.relative_to(ROOT).parts)]


def source_files() -> list[Path]:
    """Tracked and untracked-but-not-ignored files (the whole tree outside a git checkout)."""
    files = _git_files("--cached", "--others", "--exclude-standard")
    if files is None:
        files = _walk()
    return sorted(
        {
            p
            for p in files
            if p.suffix in SUFFIXES and p.is_file() and not SKIP_DIRS.intersection(p.relative_to(ROOT).parts)
        }
    )


def sections(text: str) -> dict[str, str]:
    """Section number -> its text (heading up to the next heading of the same or a higher level)."""
    heads = [(m.start(), len(m.group(1)), m.group(2)) for m in HEADING.finditer(text)]
    out = {}
    for i, (start, level, num) in enumerate(heads):
        end = next((s for s, lv, _ in heads[i + 1 :] if lv <= level), len(text))
        out[num] = text[start:end]
    return out


def _targets(first: str, last: str | None) -> list[str]:
    if last is None:
        return [first]
    if "." in first or "." in last:
        return [first, last]
    return [str(k) for k in range(int(first), int(last) + 1)]


def citations() -> list[tuple[str, int, str, str, str | None]]:
    """(file, line, doc name, section, named part) for every citation in the repository."""
    found = []
    for path in source_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        rel = path.relative_to(ROOT).as_posix()
        cited_spans = []
        for m in CITATION.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            for sec in _targets(m.group(2), m.group(3)):
                found.append((rel, line, m.group(1), sec, m.group(4)))
            cited_spans.append(m.span())
        if rel.startswith("docs/") and path.suffix == ".md":  # bare § inside a doc: the doc itself
            for m in BARE.finditer(text):
                if not any(a <= m.start() < b for a, b in cited_spans):
                    found.append((rel, text.count("\n", 0, m.start()) + 1, path.name, m.group(1), None))
    return found


def test_every_docs_citation_resolves():
    cites = citations()
    assert any(c[2] == "algorithm.md" for c in cites), "the citation scanner found nothing: is the regex broken?"
    cache: dict[str, dict[str, str] | None] = {}
    problems = []
    for rel, line, name, sec, part in cites:
        if name not in cache:
            doc = DOCS / name
            cache[name] = sections(doc.read_text(encoding="utf-8")) if doc.is_file() else None
        secs = cache[name]
        where = f"{rel}:{line}: docs/{name} §{sec}"
        if secs is None:
            problems.append(f"{where}: docs/{name} does not exist")
        elif sec not in secs:
            problems.append(f"{where}: no heading '{sec}' (headings: {', '.join(secs) or 'none'})")
        elif part and part not in secs[sec]:
            problems.append(f"{where} {part}: the section does not mention '{part}'")
    assert not problems, "broken doc citations:\n" + "\n".join(problems)


def test_cited_specs_exist_and_are_numbered():
    for name in ("algorithm.md", "verl.md"):
        secs = sections((DOCS / name).read_text(encoding="utf-8"))
        assert secs, f"docs/{name} has no numbered headings ('## 3. Title' / '### 3.3 Title')"
    assert "History" in sections((DOCS / "algorithm.md").read_text(encoding="utf-8"))["3.3"]


def test_heading_and_citation_parsers():
    text = "# Title\n## 1. One\ntext\n### 1.1 Sub\nmore\n## 10. Ten\nend\n"
    secs = sections(text)
    assert list(secs) == ["1", "1.1", "10"]
    assert "Sub" in secs["1"] and "Ten" not in secs["1"] and secs["10"].startswith("## 10. Ten")
    sample = "see docs/algorithm.md §2-§5, docs/verl.md §1.1 and (docs/algorithm.md\n  # §3.3 History)"
    got = [(m.group(1), _targets(m.group(2), m.group(3)), m.group(4)) for m in CITATION.finditer(sample)]
    assert got == [
        ("algorithm.md", ["2", "3", "4", "5"], None),
        ("verl.md", ["1.1"], None),
        ("algorithm.md", ["3.3"], "History"),
    ]


@pytest.mark.parametrize("needle", OUTSIDE)
def test_no_tracked_file_points_outside_the_repository(needle):
    files = _git_files("--cached")
    if files is None:
        files = _walk()
    hits = []
    for path in files:
        try:
            data = path.read_bytes()
        except OSError:  # deleted in the work tree but still in the index
            continue
        if needle.encode() in data:
            line = data[: data.index(needle.encode())].count(b"\n") + 1
            hits.append(f"{path.relative_to(ROOT).as_posix()}:{line}")
    assert not hits, f"files cite {needle!r} (outside this repository; cite docs/ instead): {hits}"
