"""The book's Sphinx extension (listed in ``_config.yml`` as ``pullback_utils.book.sphinx_ext``).

- The Colab and Binder launch buttons of an executed chapter open its source notebook
  ``notebooks/<name>.ipynb`` (the executed copy is not in the repository).
- MathJax is served from the book itself (the ``django-static-mathjax`` package), so formulas render
  offline.
- Repeated ``<script>`` entries are dropped (Jupyter Book 1 adds sphinx-thebe's configuration twice).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from pullback_utils.book.layout import chapter_of

__all__ = ["setup"]


def _rewrite_launch_urls(app, pagename, templatename, context, doctree) -> None:
    name = chapter_of(pagename)
    if not name:
        return
    prefix = app.config["html_theme_options"].get("path_to_docs", "").strip("/")
    executed = f"{prefix}/{pagename}.ipynb" if prefix else f"{pagename}.ipynb"
    source = f"notebooks/{name}.ipynb"

    def fix(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: fix(v) for k, v in node.items()}
        if isinstance(node, list):
            return [fix(v) for v in node]
        if isinstance(node, str):
            return node.replace(executed, source)
        return node

    if "header_buttons" in context:
        context["header_buttons"] = fix(context["header_buttons"])


def _dedupe_scripts(app, pagename, templatename, context, doctree) -> None:
    """Drop repeated ``<script>`` entries: Jupyter Book 1 adds sphinx-thebe's inline configuration twice,
    (once with ``filename=None``, once with ``""``, so Sphinx's own de-duplication misses it), and the
    second ``const THEBE_JS_URL`` is a SyntaxError in the browser console on every page."""
    seen, kept = set(), []
    for js in context.get("script_files", []):
        key = (str(getattr(js, "filename", js) or ""), repr(sorted(getattr(js, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            kept.append(js)
    context["script_files"] = kept


def _local_mathjax_dir() -> Path | None:
    """The MathJax 3 ``es5`` folder of the ``django-static-mathjax`` package (in the ``[book]`` extra), or
    ``None`` when it is not installed."""
    try:
        import mathjax  # django-static-mathjax: MathJax 3.2.2 as package data, no other dependency
    except ImportError:
        return None
    folder = Path(mathjax.__file__).resolve().parent / "static" / "mathjax" / "es5"
    return folder if (folder / "tex-mml-chtml.js").is_file() else None


def _use_local_mathjax(app, config) -> None:
    """Serve MathJax from the book itself instead of a CDN, so that formulas render offline (a reader's
    laptop, this workplace, the browser test). Only when ``mathjax_path`` is still a web address (the
    Sphinx default) and the local copy exists; set ``sphinx.config.mathjax_path`` to override."""
    source = _local_mathjax_dir()
    if source is None or not str(config.mathjax_path).startswith(("http://", "https://")):
        return
    config.mathjax_path = "mathjax/tex-mml-chtml.js"  # relative to _static
    app.pullback_mathjax_source = source


def _copy_mathjax(app, exception) -> None:
    source = getattr(app, "pullback_mathjax_source", None)
    if exception is None and source is not None and app.builder.format == "html":
        shutil.copytree(source, Path(app.outdir) / "_static" / "mathjax", dirs_exist_ok=True)


def setup(app):  # pragma: no cover - exercised by the book build
    app.connect("config-inited", _use_local_mathjax, priority=900)
    app.connect("html-page-context", _rewrite_launch_urls, priority=502)
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    app.connect("build-finished", _copy_mathjax)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
