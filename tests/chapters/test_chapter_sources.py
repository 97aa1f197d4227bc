"""The chapters' sources are MyST Markdown (notebooks/*.md, reviewable as text); the paired .ipynb that
papermill, Colab and Binder open must hold the same cells, and no outputs."""

from __future__ import annotations

from pathlib import Path

import jupytext
import nbformat
import pytest

REPO = Path(__file__).resolve().parents[2]
SOURCES = sorted((REPO / "notebooks").glob("*.md"))


def test_every_notebook_has_a_markdown_source():
    assert {p.stem for p in SOURCES} == {p.stem for p in (REPO / "notebooks").glob("*.ipynb")}


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_notebook_matches_its_source(src):
    md = jupytext.read(src)
    nb = nbformat.read(src.with_suffix(".ipynb"), as_version=4)
    pair = list(zip(md.cells, nb.cells))
    assert len(md.cells) == len(nb.cells), (
        f"{src.name}: {len(md.cells)} cells in the source, {len(nb.cells)} in the "
        f"notebook; regenerate with `jupytext --to ipynb {src}`"
    )
    for i, (a, b) in enumerate(pair):
        assert (a.cell_type, a.source) == (b.cell_type, b.source), (
            f"{src.name}: cell {i} differs; regenerate the .ipynb"
        )
        assert a.metadata.get("tags", []) == b.metadata.get("tags", []), f"{src.name}: cell {i} tags differ"
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), f"{src.stem}.ipynb has outputs"
    assert nb.metadata.get("pullback_book") == md.metadata.get("pullback_book")
