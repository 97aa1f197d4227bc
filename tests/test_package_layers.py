"""The package's shape (issue 23): the folders are layers in the order docs/architecture.md declares, and no
module imports one of a higher layer (lazily or not); no two modules import each other; the leaf modules
import nothing of the package; the engine needs torch only; one import style (absolute); and the module
map of docs/architecture.md names exactly the package's modules."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "pullback_utils"
DOC = ROOT / "docs" / "architecture.md"
LEAVES = ("diffusion.schedule", "_validate", "_io", "_lazy", "zoo.vocab")
ENGINE_THIRD_PARTY = {"torch", "tqdm", "psutil"}  # "torch only" (tqdm: the solvers' optional progress bar)


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


def _imports(path: Path, name: str) -> list[str]:
    """Every dotted name ``path`` imports (``from a import b`` gives ``a`` and ``a.b``), lazy imports included."""
    targets: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            mod = _resolve(name, path.name == "__init__.py", node)
            targets += [mod] + [f"{mod}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            targets += [a.name for a in node.names]
    return targets


def import_graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PKG.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps = set()
        for t in _imports(path, name):
            if t.startswith("pullback_utils."):
                t = t[len("pullback_utils.") :]
                while t and t not in modules:
                    t = t.rpartition(".")[0]
                if t and t != name:
                    deps.add(t)
        graph[name] = deps
    return graph


def layers() -> dict[str, int]:
    """Top-level folder or module -> its layer, from the numbered list under docs/architecture.md's "## Layers"."""
    section = DOC.read_text().split("## Layers", 1)[1].split("\n## ", 1)[0]
    rank = {}
    for line in section.splitlines():
        m = re.match(r"(\d+)\. (.*)", line)
        if m:
            head = m.group(2).split(" -- ")[0]
            for token in re.findall(r"`([^`]+)`", head):
                rank[token.rstrip("/").removesuffix(".py")] = int(m.group(1))
    return rank


def _top(module: str) -> str:
    return module.split(".")[0]


def _reach(graph, start):
    seen, todo = set(), [start]
    while todo:
        for d in graph.get(todo.pop(), ()):
            if d not in seen:
                seen.add(d)
                todo.append(d)
    return seen


def test_every_top_level_folder_and_module_has_a_layer():
    rank = layers()
    tops = {_top(m) for m in import_graph() if m}
    assert tops - set(rank) == set(), f"declare these in docs/architecture.md's layers: {sorted(tops - set(rank))}"
    assert set(rank) - tops == set(), f"layers naming nothing in the package: {sorted(set(rank) - tops)}"
    assert len(set(rank.values())) >= 10  # the order is a real order, not one layer


def test_no_module_imports_a_higher_layer():
    rank, graph = layers(), import_graph()
    upward = sorted(
        f"{m} -> {d}" for m, deps in graph.items() if m for d in deps if d and rank[_top(d)] > rank[_top(m)]
    )
    assert upward == [], f"imports of a higher layer (move the function down or invert the dependency): {upward}"


def test_the_layer_check_can_fail():
    """The check above on a made-up upward import: engine importing the chapters is found."""
    rank = layers()
    assert rank["chapters"] > rank["engine"]
    graph = {"engine.solvers": {"chapters.figures"}, "chapters.figures": set()}
    upward = [f"{m} -> {d}" for m, deps in graph.items() for d in deps if rank[_top(d)] > rank[_top(m)]]
    assert upward == ["engine.solvers -> chapters.figures"]


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


def test_engine_needs_torch_only():
    allowed = set(sys.stdlib_module_names) | ENGINE_THIRD_PARTY | {"pullback_utils"}
    for path in (PKG / "engine").rglob("*.py"):
        name = _module_name(path)
        for t in _imports(path, name):
            assert _top(t) in allowed, f"{name} imports {t}: the engine knows torch only"
            if t.startswith("pullback_utils."):
                assert t.split(".")[1] in ("engine", "_lazy"), f"{name} imports {t}"


def test_one_import_style_absolute():
    relative = sorted(
        str(p.relative_to(PKG))
        for p in PKG.rglob("*.py")
        if any(isinstance(n, ast.ImportFrom) and n.level for n in ast.walk(ast.parse(p.read_text())))
    )
    assert relative == [], f"relative imports (use absolute: from pullback_utils.x import y): {relative}"


def test_the_map_names_exactly_the_package_modules():
    doc = DOC.read_text()
    table = doc.split("## Map", 1)[1]
    named = set(re.findall(r"`([\w/]+\.py)`", table)) | set(re.findall(r"`([\w/]+\.py)`", doc.split("## Map", 1)[0]))
    files = {str(p.relative_to(PKG)) for p in PKG.rglob("*.py") if p.name != "__init__.py"}
    missing_files = sorted(n for n in named if not (PKG / n).is_file() and not (ROOT / n).is_file())
    assert missing_files == [], f"docs/architecture.md names modules that do not exist: {missing_files}"
    unnamed = sorted(files - named)
    assert unnamed == [], f"modules docs/architecture.md does not name: {unnamed}"


def test_tests_mirror_the_package_folders():
    folders = {p.name for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    test_dirs = {p.name for p in (ROOT / "tests").iterdir() if p.is_dir() and any(p.glob("test_*.py"))}
    assert test_dirs <= folders, f"test folders with no package folder: {sorted(test_dirs - folders)}"
    assert folders - test_dirs == set(), f"package folders with no test folder: {sorted(folders - test_dirs)}"


# ------------------------------------------------------------------ issue 23: a small public surface
SUBPACKAGES = (
    "engine",
    "diffusion",
    "features",
    "models",
    "zoo",
    "analysis",
    "sweeps",
    "editing",
    "ground_truth",
    "claims",
    "chapters",
    "book",
)


@pytest.mark.parametrize("pkg", SUBPACKAGES)
def test_every_subpackage_lists_its_api_and_every_name_resolves(pkg):
    import importlib

    mod = importlib.import_module(f"pullback_utils.{pkg}")
    names = mod.__all__
    assert names and len(names) == len(set(names)), f"{pkg}.__all__ is empty or repeats a name"
    assert all(not n.startswith("_") for n in names), f"{pkg}.__all__ lists private names"
    missing = [n for n in names if not hasattr(mod, n)]
    assert missing == [], f"pullback_utils.{pkg}.__all__ names what it cannot give: {missing}"


def test_subpackage_exports_come_from_the_named_module():
    """A lazy folder's table says where each name lives; the name is that module's own (in its __all__)."""
    import importlib

    for pkg in SUBPACKAGES:
        table = getattr(importlib.import_module(f"pullback_utils.{pkg}"), "_EXPORTS", None)
        for module, names in (table or {}).items():
            own = importlib.import_module(f"pullback_utils.{pkg}.{module}").__all__
            assert set(names) <= set(own), (pkg, module, sorted(set(names) - set(own)))


def test_top_level_jacobian_svd_warns_and_claims_stats_warns():
    import warnings

    import pullback_utils as pu
    from pullback_utils import claims
    from pullback_utils.claims import statistics
    from pullback_utils.engine.solvers import jacobian_svd

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert pu.jacobian_svd is jacobian_svd and claims.stats is statistics
    assert [type(w.message) for w in caught] == [FutureWarning, FutureWarning]
