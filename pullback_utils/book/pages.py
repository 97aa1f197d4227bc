"""The book's generated pages and the build: execution statistics, API reference, snippets, TOC.

``build`` writes into ``book/generated/``: the execution-statistics page (from the stamps), the API
reference, the install and citation snippets that the introduction includes (with the repository's
address from ``_config.yml``: :func:`pullback_utils.book.project.repository`), the configuration
(``_config.yml``, its repository setting checked), and a table of contents that lists only the
chapters that have an executed notebook (``book/generated/_toc.yml``, made from ``book/_toc.yml``);
then it runs ``jupyter-book build book --config book/generated/_config.yml`` into ``_build/html``
with execution off.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterable

import yaml

from pullback_utils._io import write_text
from pullback_utils.book.layout import Layout, chapter_of, chapter_order, toc_files
from pullback_utils.book.project import repository
from pullback_utils.book.stamps import package_fingerprint, read_failure, read_stamp

__all__ = ["STRICT_ARGS", "write_statistics", "write_api_page", "write_snippets", "write_config", "write_toc", "build"]

_HIDDEN_PARAMETERS = ("output_dir", "results_dir")  # set by the runner, the same for every chapter


def write_statistics(layout: Layout) -> Path:
    """``book/generated/execution_statistics.md``: one row per chapter, from the stamps."""
    order, missing = chapter_order(layout)
    rows = []
    for name in order + missing:
        stamp, failure = read_stamp(layout, name), read_failure(layout, name)
        if name in missing:
            rows.append((name, "not written yet", "", "", ""))
            continue
        if failure and (not stamp or failure.get("finished", "") >= stamp.get("finished", "")):
            status = "**failed**: " + failure.get("message", "")
            if stamp:
                status += f" (the page shows the run of {stamp.get('finished', '?')})"
            rec = failure
        elif stamp:
            status, rec = "ok", stamp
        else:
            rows.append((name, "not run", "", "", ""))
            continue
        shown = {k: v for k, v in rec.get("overrides", {}).items() if k not in _HIDDEN_PARAMETERS}
        params = ", ".join(f"`{k}={v!r}`" for k, v in shown.items()) or "defaults"
        rows.append((name, status, params, f"{rec.get('seconds', 0):.1f}", rec.get("finished", "")))
    lines = [
        "# Execution statistics",
        "",
        "How each chapter of this build was executed (written by `python -m pullback_utils.book`). Parameters",
        "are those that differ from the notebook's parameters cell; run time is wall-clock seconds.",
        "",
        "| chapter | status | parameters | run time (s) | executed |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in row) + " |")
    if not rows:
        lines.append("| (no chapters yet) | | | | |")
    version, source_hash = package_fingerprint()
    lines += ["", f"Package: `pullback_utils` {version}, source sha256 `{source_hash[:12]}`.", ""]
    path = layout.generated / "execution_statistics.md"
    write_text(path, "\n".join(lines))
    return path


def write_api_page(layout: Layout) -> Path:
    """``book/generated/api.md``: autodoc of the package's public modules and subpackages' modules."""
    import pkgutil

    import pullback_utils

    root = Path(pullback_utils.__file__).parent
    modules: list[str] = []
    for info in sorted(pkgutil.iter_modules([str(root)]), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        if info.ispkg:
            subs = sorted(m.name for m in pkgutil.iter_modules([str(root / info.name)]) if not m.name.startswith("_"))
            modules += [f"{info.name}.{m}" for m in subs] or [info.name]
        else:
            modules.append(info.name)
    modules.sort(key=lambda m: ("." in m, m))  # top-level modules first, then the subpackages'
    lines = [
        "# API reference",
        "",
        "The public API is re-exported from the top-level package (`import pullback_utils as pu`); below,",
        "each module's functions and classes where they are defined. Generated with `sphinx.ext.autodoc`.",
        "",
    ]
    for mod in modules:
        lines += [
            f"## `pullback_utils.{mod}`",
            "",
            "```{eval-rst}",
            f".. automodule:: pullback_utils.{mod}",
            "   :members:",
            "```",
            "",
        ]
    path = layout.generated / "api.md"
    write_text(path, "\n".join(lines))
    return path


def _book_config(layout: Layout) -> dict[str, Any]:
    try:
        return yaml.safe_load(layout.config.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}


def write_snippets(layout: Layout) -> list[Path]:
    """``book/generated/snippets/{install,cite}.md``, included by the introduction: the install command
    and the book's BibTeX entry, both with the repository's address from ``_config.yml``."""
    from pullback_utils import __version__

    repo = repository(layout.config)
    config = _book_config(layout)
    title = config.get("title", "Pullback Book")
    author = config.get("author", "The Pullback Book contributors")
    year = str(config.get("copyright", time.strftime("%Y")))
    install = "\n".join(
        [
            "```bash",
            f'pip install "{repo.pip_spec}"',
            "```",
            "",
        ]
    )
    cite = "\n".join(
        [
            "```bibtex",
            "@misc{pullback_book,",
            f"  title        = {{{{{title}}}: reproducing, extending and teaching Park et al. (NeurIPS 2023)}},",
            f"  author       = {{{{{author}}}}},",
            f"  year         = {{{year}}},",
            f"  howpublished = {{\\url{{{repo.url}}}}},",
            f"  note         = {{Version {__version__}}}",
            "}",
            "```",
            "",
        ]
    )
    paths = []
    for name, text in (("install", install), ("cite", cite)):
        path = layout.generated / "snippets" / f"{name}.md"
        write_text(path, text)
        paths.append(path)
    return paths


def write_config(layout: Layout) -> Path:
    """``book/generated/_config.yml``: ``_config.yml``, once its repository setting (the one place for the
    repository's address, :func:`pullback_utils.book.project.repository`) is checked."""
    config = _book_config(layout)
    if not config:
        raise RuntimeError(f"{layout.config}: missing or not valid YAML")
    repository(layout.config)
    path = layout.generated / "_config.yml"
    write_text(
        path,
        "# Generated by `python -m pullback_utils.book build` from _config.yml; do not edit.\n"
        + yaml.safe_dump(config, sort_keys=False),
    )
    return path


def write_toc(layout: Layout) -> Path:
    """``book/generated/_toc.yml``: ``book/_toc.yml`` without the chapters that have no executed notebook."""
    toc = yaml.safe_load(layout.toc.read_text())

    def exists(doc: str) -> bool:
        if Path(doc).suffix in (".md", ".ipynb", ".rst"):
            return (layout.book_dir / doc).is_file()
        return any((layout.book_dir / (doc + ext)).is_file() for ext in (".md", ".ipynb", ".rst"))

    def prune(node: Any) -> Any:
        if isinstance(node, list):
            kept = [prune(item) for item in node]
            return [item for item in kept if item is not None]
        if isinstance(node, dict):
            if "file" in node and not exists(node["file"]):
                return None
            out = {k: (prune(v) if isinstance(v, list) else v) for k, v in node.items()}
            for key in ("chapters", "sections"):
                if key in out and not out[key]:
                    del out[key]
            if "parts" in out:
                out["parts"] = [p for p in out["parts"] if p.get("chapters")]
            return out
        return node

    pruned = prune(toc)
    listed = set(toc_files(toc))
    extra = [
        f"generated/{n}/{n}"
        for n in chapter_order(layout)[0]
        if f"generated/{n}/{n}" not in listed and exists(f"generated/{n}/{n}.ipynb")
    ]
    if extra:  # executed notebooks that book/_toc.yml does not list yet: append them to the chapters
        print(f"note: {', '.join(extra)} not in {layout.toc.name}; added at the end of the chapters")
        parts = pruned.get("parts")
        if parts is None:
            pruned.setdefault("chapters", []).extend({"file": f} for f in extra)
        else:
            part = next((p for p in parts if str(p.get("caption", "")).lower() == "chapters"), None)
            if part is None:
                part = {"caption": "Chapters", "chapters": []}
                parts.insert(0, part)
            part["chapters"].extend({"file": f} for f in extra)
    dropped = [n for n in toc_files(toc) if n not in set(toc_files(pruned))]
    for doc in dropped:
        name = chapter_of(doc)
        print(
            f"note: {doc} is not in this build "
            f"({'chapter ' + repr(name) + ' has no executed notebook: run it first' if name else 'file missing'})"
        )
    path = layout.generated / "_toc.yml"
    write_text(
        path,
        "# Generated by `python -m pullback_utils.book build` from book/_toc.yml; do not edit.\n"
        + yaml.safe_dump(pruned, sort_keys=False),
    )
    return path


#: Sphinx runs with warnings as errors (all of them reported, then the build fails): a docstring that
#: renders wrongly, a broken citation or reference fails the build instead of showing on a page.
STRICT_ARGS = ("-W", "--keep-going")


def build(layout: Layout, extra_args: Iterable[str] = (), strict: bool = True) -> int:
    """Build the HTML book with execution off; returns jupyter-book's exit status. ``strict``: warnings
    are errors (:data:`STRICT_ARGS`)."""
    layout.generated.mkdir(parents=True, exist_ok=True)
    write_statistics(layout)
    write_api_page(layout)
    write_snippets(layout)
    config = write_config(layout)
    toc = write_toc(layout)
    cmd = [
        sys.executable,
        "-c",
        "import sys; from jupyter_book.cli.main import main; sys.argv[0] = 'jupyter-book'; main()",
        "build",
        str(layout.book_dir),
        "--config",
        str(config),
        "--toc",
        str(toc),
        "--path-output",
        str(layout.root),
        *(STRICT_ARGS if strict else ()),
        *extra_args,
    ]
    started = time.perf_counter()
    status = subprocess.call(cmd, cwd=layout.root)
    print(f"book build: exit {status} in {time.perf_counter() - started:.1f} s; HTML in {layout.html}")
    return status
