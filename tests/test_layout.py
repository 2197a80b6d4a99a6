"""Code layout: no module of dars/ or analysis/ is over MAX_LINES lines, and no two modules import
each other (directly or round a longer loop), counting imports inside functions too: a
function-level import hides a cycle from Python, not from a reader.

The allow-lists name what is known today (issue #12); they may only shrink (an entry that is no
longer needed is a warning). A new long module or a new cycle (or a known cycle that grows)
fails.
"""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("dars", "analysis")
MAX_LINES = 500

# issue #12: modules still over MAX_LINES (being split)
LONG_ALLOWED: set[str] = set()  # none left (issue #12 split the last ones)

# the import cycles that exist today, each as the set of modules it joins: none (issue #12 broke the
# last, dars.config / dars.data / dars.model). A cycle among a subset of one entry passes; any other fails.
CYCLES_ALLOWED: set[frozenset[str]] = set()


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module below the packages."""
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _type_checking_only(tree: ast.Module) -> set[int]:
    """ids of the import nodes under ``if TYPE_CHECKING:`` (never run)."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            t = node.test
            name = t.id if isinstance(t, ast.Name) else t.attr if isinstance(t, ast.Attribute) else ""
            if name == "TYPE_CHECKING":
                skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return skip


def import_graph() -> dict[str, set[str]]:
    """module -> the modules of the packages it imports, anywhere in its body (top level,
    functions, methods), ``import a.b``, ``from a import b`` (b a module or a name of a) and
    relative imports alike."""
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        skip = _type_checking_only(tree)
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    here = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    up = here[: len(here) - (node.level - 1)]
                    base = ".".join(up + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            for t in targets:
                while t and t not in mods:  # import a.b.c of a name: the module that holds it
                    t = t.rpartition(".")[0]
                if t and t != mod:
                    graph[mod].add(t)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[frozenset[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(frozenset(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _describe(comp: frozenset[str], graph: dict[str, set[str]]) -> str:
    edges = sorted(f"{a} -> {b}" for a in comp for b in graph[a] if b in comp)
    return "{" + ", ".join(sorted(comp)) + "}: " + "; ".join(edges)


def test_no_module_is_over_max_lines():
    long = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            n = len(path.read_text().splitlines())
            if n > MAX_LINES:
                long[path.relative_to(ROOT).as_posix()] = n
    new = {p: n for p, n in long.items() if p not in LONG_ALLOWED}
    assert not new, f"modules over {MAX_LINES} lines (split them into modules that each do one job): {new}"
    stale = LONG_ALLOWED - set(long)
    if stale:
        warnings.warn(f"no longer over {MAX_LINES} lines, drop from LONG_ALLOWED: {sorted(stale)}", stacklevel=1)


def test_no_import_cycles():
    graph = import_graph()
    found = cycles(graph)
    new = [c for c in found if not any(c <= ok for ok in CYCLES_ALLOWED)]
    assert not new, "import cycles (move the shared piece where both can import it): " + " | ".join(
        _describe(c, graph) for c in new
    )
    stale = [ok for ok in CYCLES_ALLOWED if ok not in found]
    if stale:
        warnings.warn(
            "cycles gone or shrunk, shrink CYCLES_ALLOWED: "
            f"{[sorted(c) for c in stale]} (now: {[sorted(c) for c in found]})",
            stacklevel=1,
        )


def test_the_checks_see_what_they_should():
    """The graph sees function-level, relative and ``from pkg import module`` imports; a cycle is
    found."""
    graph = import_graph()
    assert "dars.schedules" in graph["analysis.analytic"]  # from dars import schedules
    assert "analysis.cli" in graph["analysis.tables"]
    assert "analysis.readers" in graph["analysis.upstream"]  # inside a function
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [frozenset("abc")]
    assert cycles({"a": {"b"}, "b": set()}) == []
