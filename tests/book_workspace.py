"""A quick-mode copy of the book, shared by the notebook smoke tests and the browser test.

The book's sources (``_config.yml``, ``book/`` without ``generated/``) are copied into a temporary
folder; the notebooks are read from the repository. Each notebook is executed once per pytest session
with the quick parameters of ``book/params/quick.yaml``: later requests for the same notebook are
skipped by the runner's stamps, so the smoke tests and the browser test do not execute anything twice.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from pullback_utils.book import Layout, NotebookResult, chapter_order, run

REPO = Path(__file__).resolve().parents[1]

_state: dict[str, object] = {}


def repo_chapters() -> list[str]:
    """Notebooks of ``notebooks/`` in book order (the chapters that exist)."""
    return chapter_order(Layout(REPO))[0]


def quick_layout(tmp_path_factory) -> Layout:
    if "layout" not in _state:
        root = tmp_path_factory.mktemp("quick-book")
        shutil.copy(REPO / "_config.yml", root / "_config.yml")
        shutil.copytree(REPO / "book", root / "book", ignore=shutil.ignore_patterns("generated", "_build"))
        _state["layout"] = Layout(root, notebooks_dir=REPO / "notebooks")
        _state["results"] = {}
    return _state["layout"]  # type: ignore[return-value]


def quick_run(tmp_path_factory, names: list[str] | None = None) -> dict[str, NotebookResult]:
    """Run ``names`` (default: all chapters) in quick mode; the result of each, from whichever run ran it."""
    layout = quick_layout(tmp_path_factory)
    results: dict[str, NotebookResult] = _state["results"]  # type: ignore[assignment]
    todo = [n for n in (names or repo_chapters()) if n not in results]
    if todo:
        for r in run(layout, only=todo, quick=True, progress=False):
            results[r.name] = r
    return {n: results[n] for n in (names or repo_chapters()) if n in results}
