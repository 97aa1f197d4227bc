"""Where a book's pieces live, which chapters it has, and atomic writes into ``book/generated``.

A book is a folder (``root``) with ``_config.yml``, ``book/`` (pages, ``_toc.yml``, ``params/``) and
``notebooks/`` (one chapter each). Chapters are the table of contents' entries
``generated/<name>/<name>``: the executed copy of ``notebooks/<name>.ipynb``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import yaml

__all__ = ["Layout", "find_root", "toc_files", "chapter_of", "chapter_order", "normalise_name"]


@dataclass(frozen=True)
class Layout:
    """Where a book's pieces live. ``root`` holds ``_config.yml``; the rest defaults relative to it."""

    root: Path
    notebooks_dir: Path | None = None
    book_dir: Path | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root).resolve())
        if self.notebooks_dir is None:
            object.__setattr__(self, "notebooks_dir", self.root / "notebooks")
        if self.book_dir is None:
            object.__setattr__(self, "book_dir", self.root / "book")

    @property
    def generated(self) -> Path:
        return self.book_dir / "generated"

    @property
    def config(self) -> Path:
        return self.root / "_config.yml"

    @property
    def toc(self) -> Path:
        return self.book_dir / "_toc.yml"

    @property
    def quick_params(self) -> Path:
        return self.book_dir / "params" / "quick.yaml"

    @property
    def html(self) -> Path:
        return self.root / "_build" / "html"

    def notebook(self, name: str) -> Path:
        return self.notebooks_dir / f"{name}.ipynb"

    def out_dir(self, name: str) -> Path:
        return self.generated / name


def find_root(start: Path | None = None) -> Path:
    """The nearest folder at or above ``start`` (default: cwd) that holds ``_config.yml`` and ``book/``."""
    start = Path(start or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        if (folder / "_config.yml").is_file() and (folder / "book").is_dir():
            return folder
    return start


def toc_files(node: Any) -> Iterator[str]:
    """Every ``root`` and ``file`` entry of a (sphinx-external-toc) table of contents, in order."""
    if isinstance(node, dict):
        for key in ("root", "file"):
            if isinstance(node.get(key), str):
                yield node[key]
        for value in node.values():
            if isinstance(value, (list, dict)):
                yield from toc_files(value)
    elif isinstance(node, list):
        for item in node:
            yield from toc_files(item)


def chapter_of(docname: str) -> str | None:
    """``generated/<name>/<name>`` -> ``<name>``; anything else -> None."""
    parts = docname.removesuffix(".ipynb").split("/")
    if len(parts) == 3 and parts[0] == "generated" and parts[1] == parts[2]:
        return parts[1]
    return None


def chapter_order(layout: Layout) -> tuple[list[str], list[str]]:
    """(chapters to run, chapters listed in the TOC whose notebook does not exist yet).

    Chapters are the TOC's ``generated/<name>/<name>`` entries in order, then any other notebook of
    ``notebooks/`` (alphabetically; they run but are not in the book until the TOC lists them).
    """
    listed: list[str] = []
    if layout.toc.is_file():
        for doc in toc_files(yaml.safe_load(layout.toc.read_text()) or {}):
            name = chapter_of(doc)
            if name and name not in listed:
                listed.append(name)
    present = {p.stem for p in layout.notebooks_dir.glob("*.ipynb")} if layout.notebooks_dir.is_dir() else set()
    order = [n for n in listed if n in present] + sorted(present - set(listed))
    return order, [n for n in listed if n not in present]


def normalise_name(name: str) -> str:
    """``notebooks/editing.ipynb``, ``editing.ipynb`` or ``editing`` -> ``editing``."""
    return Path(name).name.removesuffix(".ipynb")
