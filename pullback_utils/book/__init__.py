"""The book tooling: run the chapter notebooks with papermill, then build the Jupyter Book (1.x).

    python -m pullback_utils.book run [--only NAME ...] [-p NAME VALUE ...] [--params FILE] [--quick] [--force]
    python -m pullback_utils.book chapter NAME [-p NAME VALUE ...] [-o DIR]   # one chapter, like papermill
    python -m pullback_utils.book build                                      # HTML into _build/html
    python -m pullback_utils.book check                                      # checks of the built pages
    python -m pullback_utils.book params NAME [--params FILE] [--quick]      # flat YAML for papermill -f

Modules, each with one job (none imports a module listed after it, except ``cli``, which uses all):

- :mod:`~pullback_utils.book.project`: the repository's address and the chapters' install cell;
- :mod:`~pullback_utils.book.layout`: where a book's pieces live, which chapters it has;
- :mod:`~pullback_utils.book.params`: parameters cells, parameter files and ``-p`` values;
- :mod:`~pullback_utils.book.stamps`: when a chapter must run again;
- :mod:`~pullback_utils.book.pages`: the generated pages and the Jupyter Book build;
- :mod:`~pullback_utils.book.runner`: planning, skipping and reporting the runs into ``book/generated``;
- :mod:`~pullback_utils.book.kernel_bars`: inside a chapter's kernel, tqdm bars as text lines in a side file;
- :mod:`~pullback_utils.book.progress`: what a running chapter is doing (cells, bars, time, memory), and why
  its kernel died;
- :mod:`~pullback_utils.book.execute`: one chapter's papermill execution in its own folder;
- :mod:`~pullback_utils.book.checks`: checks of the built HTML (citations, warnings, figures);
- :mod:`~pullback_utils.book.findings_directive`: the findings box, summary and headline rendered at build time;
- :mod:`~pullback_utils.book.sphinx_ext`: the Sphinx extension (buttons, MathJax offline, the findings directives);
- :mod:`~pullback_utils.book.cli`: the command line.

Needs the ``[book]`` extra (papermill, jupyter-book, ...); importing this package does not import them.
"""

from __future__ import annotations

from pullback_utils.book.cli import main
from pullback_utils.book.execute import KERNEL_NAME, NotebookResult, _venv_kernel
from pullback_utils.book.layout import Layout, chapter_of, chapter_order, find_root, toc_files
from pullback_utils.book.pages import build, write_api_page, write_snippets, write_statistics, write_toc
from pullback_utils.book.params import effective_overrides, load_param_groups, notebook_defaults, notebook_parameters
from pullback_utils.book.progress import Estimate
from pullback_utils.book.project import Repository, repository
from pullback_utils.book.runner import run, run_chapter
from pullback_utils.book.stamps import (
    FAILURE,
    STAMP,
    depends_on,
    package_fingerprint,
    read_failure,
    read_stamp,
    stamp_key,
)
from pullback_utils.chapters.parameters import ParameterError

__all__ = [
    # the command line and the runs
    "main",
    "run",
    "run_chapter",
    "NotebookResult",
    "Estimate",
    # where a book's pieces live, which chapters it has
    "Layout",
    "chapter_order",
    "Repository",
    "repository",
    # parameters: cells, files, overrides
    "ParameterError",
    "load_param_groups",
    "notebook_defaults",
    "notebook_parameters",
    "effective_overrides",
    # when a chapter must run again
    "stamp_key",
    # the generated pages and the build
    "build",
    "write_statistics",
    "write_toc",
    "write_api_page",
    "write_snippets",
]
