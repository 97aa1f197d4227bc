"""The findings directives of the book (registered by :mod:`pullback_utils.book.sphinx_ext`).

A chapter's page opens, right under its title, with what its last run found, and its summary lists the
findings; the introduction opens with the scorecard's figure and headline. The chapters compute their
numbers long after the title, and the book is built with execution off, so the text is rendered at build
time from the records on disk (``book/generated/<chapter>/metrics.json``, read and Holm-adjusted by
:func:`pullback_utils.chapters.scorecard.collect`, exactly as the scorecard page does) by
:mod:`pullback_utils.chapters.findings`. Sphinx rereads a page when one of those files changes
(``env.note_dependency``), so the text can never describe an older run.

In a chapter's source (``notebooks/<name>.md``), under the title and in the summary::

    ```{chapter-findings}
    ```

    ```{chapter-findings}
    :summary:
    ```

In the introduction (``book/intro.md``), and under the scorecard's title without the figure::

    ```{scorecard-headline}
    ```

    ```{scorecard-headline}
    :no-figure:
    ```

:func:`chapter_markdown` and :func:`headline_markdown` are the Markdown these directives parse (tested
without Sphinx).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pullback_utils.book.layout import chapter_of

__all__ = ["chapter_markdown", "headline_markdown", "metrics_files", "setup"]

SCORECARD = "scorecard"


def metrics_files(generated: Path) -> list[Path]:
    """Every ``<chapter>/metrics.json`` under ``generated`` (what a findings text depends on)."""
    return sorted(Path(generated).glob("*/metrics.json"))


def _not_run(name: str, why: str) -> str:
    return (
        f"````{{admonition}} What this run found\n:class: note findings\n\nNothing yet: {why}. Run it with "
        f"`python -m pullback_utils.book run --only {name}`.\n````\n"
    )


def chapter_markdown(generated: str | Path, name: str, *, summary: bool = False) -> str:
    """The Markdown of chapter ``name``'s findings box (``summary``: its summary's findings list), from
    the ``metrics.json`` files under ``generated`` (the book's ``book/generated``)."""
    from pullback_utils.chapters import findings as fd
    from pullback_utils.chapters import scorecard as sc
    from pullback_utils.claims import MetricsError, read_metrics

    generated = Path(generated)
    path = generated / name / "metrics.json"
    if not path.is_file():
        return _not_run(name, f"chapter `{name}` has no `metrics.json` in this build")
    try:
        metrics = read_metrics(path)
    except MetricsError as exc:
        return _not_run(name, f"its `metrics.json` is unusable ({exc})")
    rows = fd.chapter_rows(sc.collect(generated), name, list(metrics["claims"]))
    if summary:
        return fd.findings_summary(rows) if rows else "- This run wrote no claim records.\n"
    book_dir = generated.parent
    models = [fd.card_exists(book_dir, f) for f in fd.read_chapter_models(metrics, rows)]
    return fd.findings_box(rows, models)


def headline_markdown(generated: str | Path, *, figure: bool = True) -> str:
    """The introduction's opening: the two-sentence headline (:func:`pullback_utils.chapters.findings.headline`)
    with a link to the scorecard, and the scorecard's summary figure when it exists; ``figure=False``: the
    headline alone, without the link (the scorecard's own page)."""
    from pullback_utils.chapters import findings as fd
    from pullback_utils.chapters import scorecard as sc

    generated = Path(generated)
    if not (generated / SCORECARD / "metrics.json").is_file():
        return (
            "```{note}\nThe scorecard has not been run in this build: run the chapters with "
            "`python -m pullback_utils.book run`.\n```\n"
        )
    rows = sc.collect(generated)
    link = f" Claim by claim: the {{doc}}`scorecard </generated/{SCORECARD}/{SCORECARD}>`." if figure else ""
    text = f"````{{admonition}} The result in two sentences\n:class: tip findings\n\n{fd.headline(rows)}{link}\n````\n"
    png = generated / SCORECARD / "scorecard.png"
    if figure and png.is_file():
        text += (
            f"\n```{{figure}} /generated/{SCORECARD}/scorecard.png\n:name: intro-scorecard\n:alt: The "
            f"scorecard: each claim of the paper and its verdict\n\nThe paper's claims and their verdicts "
            f"(the scorecard's first figure: bar length -log10 of the Holm-adjusted p, colour the verdict).\n```\n"
        )
    return text


def _directives() -> tuple[type, type]:
    from docutils import nodes
    from docutils.parsers.rst import directives
    from docutils.statemachine import StringList
    from sphinx.util.docutils import SphinxDirective

    class _Rendered(SphinxDirective):
        has_content = False

        def _generated(self) -> Path:
            return Path(self.env.srcdir) / "generated"

        def _parse(self, text: str) -> list[Any]:
            for f in metrics_files(self._generated()):
                self.env.note_dependency(str(f))
            node = nodes.container(classes=["pullback-findings"])
            self.state.nested_parse(StringList(text.splitlines(), source=self.env.docname), self.content_offset, node)
            return [node]

    class ChapterFindings(_Rendered):
        """``{chapter-findings}``: the findings box of the page's chapter (``:summary:``: its findings list)."""

        option_spec = {"summary": directives.flag}

        def run(self) -> list[Any]:
            name = chapter_of(self.env.docname)
            if name is None:
                raise self.error(
                    f"chapter-findings: {self.env.docname!r} is not a chapter page (generated/<name>/<name>)"
                )
            return self._parse(chapter_markdown(self._generated(), name, summary="summary" in self.options))

    class ScorecardHeadline(_Rendered):
        """``{scorecard-headline}``: the scorecard's headline and figure (``:no-figure:``: the headline alone)."""

        option_spec = {"no-figure": directives.flag}

        def run(self) -> list[Any]:
            return self._parse(headline_markdown(self._generated(), figure="no-figure" not in self.options))

    return ChapterFindings, ScorecardHeadline


def setup(app: Any) -> dict[str, Any]:  # pragma: no cover - exercised by the book build
    chapter, head = _directives()
    app.add_directive("chapter-findings", chapter)
    app.add_directive("scorecard-headline", head)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
