"""The book's Sphinx extension (listed in ``_config.yml`` as ``pullback_utils.book.sphinx_ext``).

- The Colab and Binder launch buttons of an executed chapter open its source notebook
  ``notebooks/<name>.ipynb`` (the executed copy is not in the repository).
- MathJax is served from the book itself (the ``django-static-mathjax`` package), so formulas render
  offline.
- The findings directives (``{chapter-findings}``, ``{scorecard-headline}``):
  :mod:`pullback_utils.book.findings_directive`.
- sphinx-thebe's Binder settings (written into every page) name the book's repository and branch, from
  the same ``repository`` setting of ``_config.yml`` as the launch buttons (its default is an example
  repository of the Binder project).
- Repeated ``<script>`` entries are dropped (Jupyter Book 1 adds sphinx-thebe's configuration twice).
- Nitpicky mode (``_config.yml``: every cross-reference must resolve; the build runs with warnings as
  errors) holds for the book's pages; the generated API page (``generated/api``, autodoc of the
  docstrings) is exempt: its unresolved references are counted and the count is logged at the end of
  the build, not raised. Third-party types are ignored everywhere through ``nitpick_ignore_regex``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from pullback_utils.book.layout import chapter_of

__all__ = ["setup", "NITPICK_EXEMPT_DOCS"]

#: Pages whose unresolved cross-references are not warnings in nitpicky mode (the docstrings' references
#: to names the API page does not document yet); the build logs how many there are.
NITPICK_EXEMPT_DOCS = ("generated/api",)


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


def _thebe_from_repository(app, config) -> None:
    """``thebe_config``'s repository and branch from the theme's (Jupyter Book sets those from
    ``repository.url`` / ``repository.branch`` of ``_config.yml``), unless set explicitly."""
    options = config.html_theme_options or {}
    if "thebe_config" not in config or not options.get("repository_url"):
        return
    thebe = dict(config.thebe_config or {})
    thebe.setdefault("repository_url", options["repository_url"])
    thebe.setdefault("repository_branch", options.get("repository_branch") or "main")
    config.thebe_config = thebe


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


def _exempt_missing_reference(app, domain, node) -> bool | None:
    """Sphinx ``warn-missing-reference``: ``True`` (no warning) for a reference made on a page of
    :data:`NITPICK_EXEMPT_DOCS`; counted in ``app.pullback_exempt_refs``."""
    if node.get("refdoc") in NITPICK_EXEMPT_DOCS:
        counts = getattr(app, "pullback_exempt_refs", {})
        counts[node.get("reftarget", "?")] = counts.get(node.get("reftarget", "?"), 0) + 1
        app.pullback_exempt_refs = counts
        return True
    return None


def _report_exempt(app, exception) -> None:
    from sphinx.util import logging

    counts = getattr(app, "pullback_exempt_refs", {})
    if counts and exception is None:
        logging.getLogger(__name__).info(
            f"nitpicky: {sum(counts.values())} unresolved references ({len(counts)} targets) on "
            f"{', '.join(NITPICK_EXEMPT_DOCS)} not reported (the page is exempt; see pullback_utils.book.sphinx_ext)"
        )


def setup(app):  # pragma: no cover - exercised by the book build
    from pullback_utils.book import findings_directive

    findings_directive.setup(app)  # {chapter-findings} and {scorecard-headline}
    app.connect("config-inited", _use_local_mathjax, priority=900)
    app.connect("config-inited", _thebe_from_repository, priority=900)
    app.connect("html-page-context", _rewrite_launch_urls, priority=502)
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    app.connect("build-finished", _copy_mathjax)
    app.connect("warn-missing-reference", _exempt_missing_reference)
    app.connect("build-finished", _report_exempt)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
