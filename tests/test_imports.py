"""Every module of the package imports, and tempflex's own modules import each other without cycles.

The graph is built from the source (``src/tempflex/**/*.py``): an edge A -> B for each import of B that runs when A
is imported, i.e. at module level, in class bodies and under module-level ``if``/``try``/``with``, never under
``if TYPE_CHECKING:``. ``from P import x`` is an edge to ``P.x`` when that is a module and to ``P`` otherwise.
Importing ``P.x`` also runs ``P/__init__.py``; that implicit edge to a parent package is not counted, as a package's
``__init__`` re-exporting its submodules is not a cycle.

Two graphs: the load-time one (module-level imports only) must have no cycle at all; the full one also counts the
lazy imports inside functions, which hide a cycle from the interpreter but not from the design (two modules that
each need the other), and may only hold the cycles of ``ALLOWED_CYCLES``.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import tempflex

SRC = Path(tempflex.__file__).resolve().parent  # .../src/tempflex

# Cycles through lazy imports that are being removed. Each entry is the set of modules of one strongly connected
# component of the full graph; a cycle found must lie within one entry, and an entry that no longer holds a cycle
# fails `test_allowed_cycles_still_exist`, so the list only shrinks. Do not add to it: move the shared part into a
# module both can import, or let the caller pass it in.
ALLOWED_CYCLES: list[frozenset[str]] = []


def module_names() -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of the package."""
    names = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(body: list[ast.stmt], lazy: bool) -> list[ast.Import | ast.ImportFrom]:
    """Import statements that run when the module is imported, and with ``lazy`` those in functions too."""
    found: list[ast.Import | ast.ImportFrom] = []
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                found += _imports(node.body, lazy)
            found += _imports(node.orelse, lazy)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                found += _imports(block, lazy)
        elif isinstance(node, (ast.With, ast.ClassDef, ast.For, ast.While)) or (
            lazy and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        ):
            found += _imports(node.body, lazy)
    return found


def _target(name: str, known: dict[str, Path]) -> str | None:
    """The longest prefix of ``name`` that is a tempflex module."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in known:
            return candidate
    return None


def import_graph(lazy: bool = False) -> dict[str, set[str]]:
    """Module -> the tempflex modules it imports; ``lazy``: count imports inside functions too."""
    known = module_names()
    graph: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in _imports(ast.parse(path.read_text(encoding="utf-8")).body, lazy):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:  # relative: from .x import y, from .. import z
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
            graph[name] |= {t for t in (_target(t, known) for t in targets) if t is not None and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(frozenset(component))
    return found


def _describe(component: frozenset[str], graph: dict[str, set[str]]) -> str:
    edges = sorted(f"{a} -> {b}" for a in component for b in graph[a] if b in component)
    return f"{sorted(component)}: {'; '.join(edges)}"


def test_graph_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert cycles(graph) == [frozenset({"a", "b", "c"})]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_at_load_time() -> None:
    graph = import_graph()
    assert "tempflex.cli.common" in graph["tempflex.cli.tokens"]  # the graph sees real imports
    found = cycles(graph)
    assert not found, "import cycles among tempflex modules:\n" + "\n".join(_describe(c, graph) for c in found)


def test_no_import_cycles_through_lazy_imports() -> None:
    graph = import_graph(lazy=True)
    assert "tempflex.probes.run" in graph["tempflex.cli.probes"]  # imported inside the verb's function
    new = [c for c in cycles(graph) if not any(c <= allowed for allowed in ALLOWED_CYCLES)]
    assert not new, "import cycles among tempflex modules (lazy imports counted):\n" + "\n".join(
        _describe(c, graph) for c in new
    )


def test_allowed_cycles_still_exist() -> None:
    found = cycles(import_graph(lazy=True))
    gone = [sorted(allowed) for allowed in ALLOWED_CYCLES if not any(c <= allowed for c in found)]
    assert not gone, f"these cycles are gone: remove them from ALLOWED_CYCLES: {gone}"


def test_every_module_imports() -> None:
    """Each module imports in a fresh interpreter; a missing optional dependency (not tempflex) is allowed."""
    code = (
        "import importlib, json, sys\n"
        "failed = {}\n"
        "for name in json.loads(sys.argv[1]):\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ModuleNotFoundError as exc:\n"
        "        if (exc.name or '').split('.')[0] == 'tempflex':\n"
        "            failed[name] = repr(exc)\n"
        "    except Exception as exc:\n"
        "        failed[name] = repr(exc)\n"
        "print(json.dumps(failed))\n"
    )
    names = sorted(module_names())
    out = subprocess.run([sys.executable, "-c", code, json.dumps(names)], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {}
