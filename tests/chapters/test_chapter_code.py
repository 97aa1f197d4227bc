"""Chapter code that runs as read, checked statically on every chapter (notebooks/*.md).

- One import style: the package is imported in the chapter's setup cell (the one that calls
  ``chapter.setup``) and nowhere else, as ``import pullback_utils as pu`` (for the top-level API:
  ``pu.load_model``) and ``from pullback_utils[.path] import name [as alias]``; no attribute chains into
  subpackages (``pu.chapters.measurements.x``): every name a cell uses is imported by name where a reader
  sees it.
- No function or class is defined in a chapter cell (it belongs in the package, with a test).
- The setup cell is shown, collapsed (``hide-input``), not removed; a cell the page removes
  (``remove-cell``, ``remove-input``) defines no name that a shown cell uses, so the shown cells run in
  order on their own (``tests/book/test_visible_cells.py`` runs one chapter's).
"""

from __future__ import annotations

import ast
import pkgutil
from pathlib import Path

import jupytext
import pytest
from IPython.core.inputtransformer2 import TransformerManager

import pullback_utils

REPO = Path(__file__).resolve().parents[2]
SOURCES = sorted((REPO / "notebooks").glob("*.md"))
SUBPACKAGES = {m.name for m in pkgutil.iter_modules([str(Path(pullback_utils.__file__).parent)]) if m.ispkg}
REMOVED = ("remove-cell", "remove-input")


def code_cells(src: Path) -> list[tuple[int, list[str], ast.Module]]:
    """(index among code cells, tags, parsed source with IPython magics turned into calls)."""
    out = []
    cells = [c for c in jupytext.read(src).cells if c.cell_type == "code"]
    for i, c in enumerate(cells):
        tree = ast.parse(TransformerManager().transform_cell(c.source), f"{src.name} code cell {i + 1}")
        out.append((i, list(c.metadata.get("tags", [])), tree))
    return out


def is_setup(tree: ast.Module) -> bool:
    return any(
        isinstance(n, ast.Attribute) and n.attr == "setup" and isinstance(n.value, ast.Name) and n.value.id == "chapter"
        for n in ast.walk(tree)
    )


def style_problems(src: Path) -> list[str]:
    problems = []
    cells = code_cells(src)
    setup = [i for i, _, tree in cells if is_setup(tree)]
    if len(setup) != 1:
        return [
            f"{src.name}: {len(setup)} cells call chapter.setup (one setup cell: "
            "`ch = chapter.setup(NAME, parameters.check_parameters())`)"
        ]
    pu_imports = 0
    for i, tags, tree in cells:
        where = f"{src.name} code cell {i + 1}"
        if i == 0 and isinstance(tree.body[0], ast.Try):  # the install cell (tests/book/test_repository_setting.py)
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] != "pullback_utils":
                        continue
                    if (alias.name, alias.asname) != ("pullback_utils", "pu"):
                        problems.append(
                            f"{where}: `import {alias.name}` (write `import pullback_utils as pu` "
                            "or `from pullback_utils.X import Y`)"
                        )
                    elif i != setup[0]:
                        problems.append(f"{where}: the package is imported outside the setup cell")
                    else:
                        pu_imports += 1
            if (
                isinstance(node, ast.ImportFrom)
                and (node.module or "").split(".")[0] == "pullback_utils"
                and i != setup[0]
            ):
                problems.append(f"{where}: `from {node.module} import ...` outside the setup cell")
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "pu"
                and node.attr in SUBPACKAGES
            ):
                problems.append(
                    f"{where}: `pu.{node.attr}.…` (import what the cell uses in the setup cell: "
                    f"`from pullback_utils.{node.attr}... import ...`)"
                )
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                problems.append(f"{where}: defines `{node.name}` (move it into the package, with a test)")
    if pu_imports != 1:
        problems.append(f"{src.name}: the setup cell must `import pullback_utils as pu` once ({pu_imports} found)")
    setup_tags = cells[setup[0]][1]
    if any(t in setup_tags for t in REMOVED) or not {"hide-input", "hide-cell"} & set(setup_tags):
        problems.append(f"{src.name}: the setup cell is tagged {setup_tags}: show it collapsed (hide-input)")
    return problems


def stored(tree: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def loaded(tree: ast.Module) -> set[str]:
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def hidden_definitions(src: Path) -> list[str]:
    """Names a removed cell defines and a later shown cell uses before any shown cell defines them."""
    problems = []
    shown_defined: set[str] = set()
    removed_defined: dict[str, int] = {}
    for i, tags, tree in code_cells(src):
        if i == 0 and isinstance(tree.body[0], ast.Try):  # the install cell
            continue
        if any(t in tags for t in REMOVED):
            for name in stored(tree) - shown_defined:
                removed_defined.setdefault(name, i)
            continue
        for name in sorted(loaded(tree) & set(removed_defined)):
            problems.append(
                f"{src.name} code cell {i + 1} uses `{name}`, defined in removed code cell {removed_defined[name] + 1}"
            )
        shown_defined |= stored(tree)
        for name in stored(tree):
            removed_defined.pop(name, None)
    return problems


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_one_import_style_and_no_definitions(src):
    assert style_problems(src) == []


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_shown_cells_do_not_depend_on_removed_ones(src):
    assert hidden_definitions(src) == []


def test_the_checks_catch_what_they_look_for(tmp_path):
    """Each rule on a small fabricated chapter: the checks can fail."""
    bad = tmp_path / "bad.md"
    bad.write_text("""---
jupytext:
  text_representation: {extension: .md, format_name: myst}
kernelspec: {display_name: Python 3, language: python, name: python3}
---

```{code-cell}
:tags: [remove-cell]

import pullback_utils as pu
from pullback_utils.chapters import chapter, parameters

ch = chapter.setup("bad", parameters.check_parameters())
secret = 3
```

```{code-cell}
import pullback_utils.analysis
from pullback_utils import claims

def helper(x):
    return x

y = pu.analysis.geometry.geodesic_distance(secret, secret)
```
""")
    problems = style_problems(bad)
    assert any("`import pullback_utils.analysis`" in p for p in problems)
    assert any("`from pullback_utils import ...` outside the setup cell" in p for p in problems)
    assert any("defines `helper`" in p for p in problems)
    assert any("`pu.analysis.…`" in p for p in problems)
    assert any("setup cell is tagged ['remove-cell']" in p for p in problems)
    assert "bad.md code cell 2 uses `secret`, defined in removed code cell 1" in hidden_definitions(bad)


def test_one_dropdown_style_and_answers_inside_it():
    """Solutions are ``{admonition}`` blocks with ``:class: dropdown`` (no sphinx-design ``{dropdown}``), and
    a code cell of the exercises shows nothing of its own: what it computes reaches the answer through
    ``ch.glue`` (quoted inside the dropdown with ``{glue:text}``/``{glue:md}``)."""
    pages = SOURCES + sorted((REPO / "book").glob("**/*.md"))
    assert [p.name for p in pages if "{dropdown}" in p.read_text()] == []
    for src in SOURCES:
        cells = jupytext.read(src).cells
        start = next((i for i, c in enumerate(cells) if c.cell_type == "markdown" and "## Exercises" in c.source), None)
        if start is None:
            continue
        after = cells[start:]
        assert any(
            c.cell_type == "markdown" and "{admonition} Solutions" in c.source and ":class: dropdown" in c.source
            for c in after
        ), f"{src.name}: the solutions are not in a dropdown admonition"
        for c in after:
            if c.cell_type != "code" or set(c.metadata.get("tags", [])) & {"remove-cell", "remove-output"}:
                continue
            last = ast.parse(TransformerManager().transform_cell(c.source)).body[-1]
            glued = (
                isinstance(last, ast.Expr)
                and isinstance(last.value, ast.Call)
                and isinstance(last.value.func, ast.Attribute)
                and last.value.func.attr == "glue"
            )
            assert not isinstance(last, ast.Expr) or glued, (
                f"{src.name}: an exercise cell ends in an expression shown outside the dropdown: {c.source[:60]!r}"
            )
