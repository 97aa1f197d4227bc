"""Smoke tests: every notebook of notebooks/ runs through the book runner (papermill) with the quick
parameters of book/params/quick.yaml, and leaves its executed notebook, a figure and metrics.json."""

from __future__ import annotations

import json

import nbformat
import pytest

from book_workspace import quick_layout, quick_run, repo_chapters


@pytest.mark.parametrize("name", repo_chapters())
def test_notebook_runs_with_quick_parameters(name, tmp_path_factory):
    result = quick_run(tmp_path_factory, [name])[name]
    assert result.status in ("ok", "skipped"), f"{name} failed: {result.message}"

    out = quick_layout(tmp_path_factory).out_dir(name)
    nb = nbformat.read(out / f"{name}.ipynb", as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if "image/png" in o.get("data", {}) or "image/svg+xml" in o.get("data", {})]
    assert images, f"{name} shows no figure"

    metrics = json.loads((out / "metrics.json").read_text())
    assert isinstance(metrics, dict) and metrics, f"{name}: metrics.json is empty"
