"""Code that runs as read: the cells a reader sees on a chapter's page, copied in order into a fresh
kernel, run on their own.

"Seen" = every code cell not tagged ``remove-cell`` or ``remove-input`` (collapsed ``hide-input`` cells
are on the page: the parameters and setup cells). The copy is executed by papermill with the quick
parameters of ``book/params/quick.yaml``, like the book's own quick runs. One small chapter keeps this
fast; ``tests/chapters/test_chapter_code.py`` checks every chapter statically (no shown cell uses a
name that only a removed cell defines; one import style; no definitions).
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from book_workspace import REPO

from pullback_utils.book import Layout, effective_overrides, load_param_groups, notebook_defaults

REMOVED = ("remove-cell", "remove-input")
CHAPTER = "local_basis_tutorial"


def shown_cells_notebook(source: Path, dest: Path) -> list[str]:
    """Write the notebook of ``source``'s shown code cells (in order, markdown dropped) to ``dest``; their sources."""
    nb = nbformat.read(source, as_version=4)
    nb.cells = [c for c in nb.cells if c.cell_type == "code" and not set(c.metadata.get("tags", [])) & set(REMOVED)]
    for c in nb.cells:
        c.outputs, c.execution_count = [], None
    nbformat.write(nb, dest)
    return [c.source for c in nb.cells]


def test_the_copy_keeps_only_the_shown_cells_in_order(tmp_path):
    sources = shown_cells_notebook(REPO / "notebooks" / f"{CHAPTER}.ipynb", tmp_path / "shown.ipynb")
    every = nbformat.read(REPO / "notebooks" / f"{CHAPTER}.ipynb", as_version=4).cells
    assert sources == [
        c.source for c in every if c.cell_type == "code" and not set(c.metadata.get("tags", [])) & set(REMOVED)
    ]
    assert any("chapter.setup(" in s for s in sources)  # the setup cell is shown (collapsed), not removed
    assert len(sources) < sum(c.cell_type == "code" for c in every)  # something is removed (install, finish)


@pytest.mark.slow  # about 80 s on the shared 2-core machine
@pytest.mark.timeout(600)
def test_a_chapters_shown_cells_run_in_a_fresh_kernel(tmp_path):
    import papermill

    from pullback_utils.book import _venv_kernel

    shown = tmp_path / "shown.ipynb"
    shown_cells_notebook(REPO / "notebooks" / f"{CHAPTER}.ipynb", shown)
    layout = Layout(REPO)
    params = effective_overrides(
        CHAPTER, notebook_defaults(REPO / "notebooks" / f"{CHAPTER}.ipynb"), [load_param_groups(layout.quick_params)]
    )
    params["output_dir"] = str(tmp_path / "out")
    with _venv_kernel():
        papermill.execute_notebook(
            str(shown),
            str(tmp_path / "executed.ipynb"),
            parameters=params,
            cwd=str(tmp_path),
            kernel_name="python3",
            progress_bar=False,
        )
    executed = nbformat.read(tmp_path / "executed.ipynb", as_version=4)
    errors = [o for c in executed.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    assert any("image/png" in o.get("data", {}) for c in executed.cells for o in c.get("outputs", []))
