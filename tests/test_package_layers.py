"""The package's shape: no two modules import each other (directly or through others, lazily or not), the
leaf modules import nothing of the package, and no module grows past ~400 lines (issue 16)."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "pullback_utils"
LEAVES = ("schedule", "validate", "io", "zoo.vocab")
MAX_LINES = 430  # "about 400": a module over this needs splitting by job


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _resolve(current: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = current.split(".") if current else []
    if not is_pkg:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
    return ".".join(["pullback_utils", *base, *(node.module.split(".") if node.module else [])]).rstrip(".")


def import_graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PKG.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom):
                mod = _resolve(name, path.name == "__init__.py", node)
                targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            for t in targets:
                if t.startswith("pullback_utils."):
                    t = t[len("pullback_utils."):]
                    while t and t not in modules:
                        t = t.rpartition(".")[0]
                    if t and t != name:
                        deps.add(t)
        graph[name] = deps
    return graph


def _reach(graph, start):
    seen, todo = set(), [start]
    while todo:
        for d in graph.get(todo.pop(), ()):
            if d not in seen:
                seen.add(d)
                todo.append(d)
    return seen


def test_no_import_cycles():
    graph = import_graph()
    # a package's __init__ re-exporting its submodules is not a cycle of jobs: leave the edges into __init__s out
    pkgs = {m for m in graph if (PKG / m.replace(".", "/") / "__init__.py").is_file()}
    g = {m: {d for d in deps if d not in pkgs and d != ""} for m, deps in graph.items() if m not in pkgs and m}
    cycles = sorted(m for m in g if m in _reach(g, m))
    assert cycles == [], f"modules on an import cycle: {cycles}"


def test_leaf_modules_import_nothing_of_the_package():
    graph = import_graph()
    for leaf in LEAVES:
        assert graph[leaf] == set(), (leaf, graph[leaf])


def test_no_module_over_about_400_lines():
    long = {str(p.relative_to(PKG)): n for p in PKG.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}, f"split these modules by job: {long}"
