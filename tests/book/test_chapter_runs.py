"""Smoke tests: every notebook of notebooks/ runs through the book runner (papermill) with the quick
parameters of book/params/quick.yaml, and leaves its executed notebook, a figure and metrics.json."""

from __future__ import annotations

import json

import nbformat
import pytest
from book_workspace import REPO, quick_layout, quick_run, repo_chapters


@pytest.mark.parametrize("name", repo_chapters())
def test_notebook_runs_with_quick_parameters(name, tmp_path_factory):
    result = quick_run(tmp_path_factory, [name])[name]
    assert result.status in ("ok", "skipped"), f"{name} failed: {result.message}"

    out = quick_layout(tmp_path_factory).out_dir(name)
    nb = nbformat.read(out / f"{name}.ipynb", as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    images = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if "image/png" in o.get("data", {}) or "image/svg+xml" in o.get("data", {})
    ]
    assert images, f"{name} shows no figure"

    metrics = json.loads((out / "metrics.json").read_text())
    assert isinstance(metrics, dict) and metrics, f"{name}: metrics.json is empty"


@pytest.mark.parametrize("name", repo_chapters())
def test_misspelt_parameter_stops_the_first_cell(name, tmp_path):
    """Bad input: papermill itself (`-p` with an unknown name) fails right after the parameters."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    from pullback_utils.book import _venv_kernel

    nb_path = REPO / "notebooks" / f"{name}.ipynb"
    with _venv_kernel(), pytest.raises(PapermillExecutionError) as info:
        papermill.execute_notebook(
            str(nb_path),
            str(tmp_path / "out.ipynb"),
            parameters={"no_such_parameter": 1},
            cwd=str(tmp_path),
            kernel_name="python3",
            progress_bar=False,
        )
    assert info.value.ename == "ParameterError"
    assert "no_such_parameter" in info.value.evalue and "valid parameters" in info.value.evalue
    cells = nbformat.read(nb_path, as_version=4).cells
    params_index = next(i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", []))
    assert info.value.cell_index == params_index + 2  # the cell right after papermill's injected one


@pytest.mark.parametrize("params_file", sorted((REPO / "book" / "params").glob("*.yaml")), ids=lambda p: p.name)
def test_parameter_files_match_the_notebooks(params_file):
    """Every group of book/params/*.yaml names a chapter and only parameters of its parameters cell."""
    from pullback_utils.book import Layout, chapter_order, effective_overrides, load_param_groups, notebook_defaults

    order, missing = chapter_order(Layout(REPO))
    groups = load_param_groups(params_file)
    assert set(groups) <= set(order) | set(missing) | {"all"}
    for name in order:
        effective_overrides(name, notebook_defaults(REPO / "notebooks" / f"{name}.ipynb"), [groups])


def test_measured_durations_name_the_books_chapters():
    """book/durations.yaml orders a fresh clone's chapters: every chapter has a measured duration, and no
    entry names a chapter that no longer exists."""
    from pullback_utils.book import Layout
    from pullback_utils.book.parallel import read_durations

    assert set(read_durations(Layout(REPO))) == set(repo_chapters())
