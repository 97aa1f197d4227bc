"""Checks of the built book's HTML: what a reader must find on every page.

- the paper is cited: the bibliography has an entry linking arXiv:2307.12868, and the introduction and
  every chapter link to that entry (:func:`citation_problems`);
- no chapter page shows stderr, a warning or a traceback in its outputs (:func:`output_problems`);
- every image of a chapter is a numbered, captioned figure, no wider than the content column, with
  text no smaller than the book's minimum once on the page (:func:`figure_problems`, which reads the
  ``figures.json`` that :func:`pullback_utils.chapters.plotting.save_figure` writes next to a chapter's figures).

:func:`check_site` runs them on a built book (``python -m pullback_utils.book check``); the tests run
each on small fabricated pages. Parsing uses the standard library's :mod:`html.parser` only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlparse

from pullback_utils.book.layout import chapter_of
from pullback_utils.chapters.plotting import CONTENT_WIDTH_PX, MANIFEST, check_figure

__all__ = ["PAPER_ARXIV", "Figure", "Page", "parse_page", "citation_problems", "output_problems",
           "figure_problems", "check_site"]

PAPER_ARXIV = "2307.12868"
_WARNING = re.compile(r"\b\w*Warning: ")
_VOID = {"img", "br", "hr", "meta", "link", "input", "source", "col", "area", "base", "wbr", "embed", "param", "track"}


@dataclass
class Figure:
    """An ``<img>`` of the page's article: where it points and how it is captioned."""

    src: str
    alt: str = ""
    in_figure: bool = False
    caption: str = ""
    numbered: bool = False


@dataclass
class Page:
    """What the checks need from one HTML page (its ``<article>`` only, not the theme's chrome)."""

    links: list[str] = field(default_factory=list)
    images: list[Figure] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    tracebacks: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    citations: dict[str, str] = field(default_factory=dict)  # bibliography entry id -> its HTML text


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = Page()
        self.stack: list[tuple[str, set[str], str]] = []  # (tag, classes, id)
        self.article_depth: int | None = None
        self.collect: list[tuple[int, str, list[str]]] = []  # (depth, kind, text parts)
        self.figures: list[tuple[int, list[Figure]]] = []
        self.caption: tuple[int, list[str], bool] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        classes = set((a.get("class") or "").split())
        if tag not in _VOID:
            self.stack.append((tag, classes, a.get("id") or ""))
        depth = len(self.stack)
        if tag == "article" and self.article_depth is None:
            self.article_depth = depth
        if self.article_depth is None:
            return
        if tag == "a" and a.get("href"):
            self.page.links.append(a["href"])
        if tag == "div" and "output" in classes:
            kind = "stderr" if "stderr" in classes else "traceback" if "traceback" in classes else "output"
            self.collect.append((depth, kind, []))
        if tag == "div" and "citation" in classes and a.get("id"):
            self.collect.append((depth, "citation:" + a["id"], []))
        if tag == "figure":
            self.figures.append((depth, []))
        if tag == "figcaption":
            self.caption = (depth, [], False)
        if tag == "span" and "caption-number" in classes and self.caption is not None:
            self.caption = (self.caption[0], self.caption[1], True)
        if tag == "img":
            fig = Figure(a.get("src") or "", a.get("alt") or "", in_figure=bool(self.figures))
            self.page.images.append(fig)
            if self.figures:
                self.figures[-1][1].append(fig)
        if tag == "a" and self.collect and self.collect[-1][1].startswith("citation:"):
            self.collect[-1][2].append(f" {a.get('href', '')} ")

    def handle_endtag(self, tag):
        if tag in _VOID:
            return
        while self.stack:  # tolerate unclosed tags: pop to the matching one
            open_tag, _, _ = self.stack.pop()
            depth = len(self.stack) + 1
            self._close(open_tag, depth)
            if open_tag == tag:
                break

    def _close(self, tag: str, depth: int) -> None:
        if self.collect and self.collect[-1][0] == depth:
            _, kind, parts = self.collect.pop()
            text = "".join(parts)
            if kind.startswith("citation:"):
                self.page.citations[kind.split(":", 1)[1]] = text
            else:
                {"stderr": self.page.stderr, "traceback": self.page.tracebacks}.get(kind, self.page.outputs).append(text)
                if kind != "output":
                    self.page.outputs.append(text)
        if tag == "figcaption" and self.caption is not None and self.caption[0] == depth:
            _, parts, numbered = self.caption
            for fig in (self.figures[-1][1] if self.figures else []):
                fig.caption, fig.numbered = " ".join("".join(parts).split()), numbered
            self.caption = None
        if tag == "figure" and self.figures and self.figures[-1][0] == depth:
            self.figures.pop()
        if tag == "article" and self.article_depth == depth:
            self.article_depth = None

    def handle_data(self, data):
        if self.article_depth is None:
            return
        for _, _, parts in self.collect:
            parts.append(data)
        if self.caption is not None:
            self.caption[1].append(data)


def parse_page(html: str) -> Page:
    """The links, images, outputs and bibliography entries of a page's ``<article>``."""
    parser = _Parser()
    parser.feed(html)
    parser.close()
    return parser.page


def _paper_entry(bibliography: Page, arxiv: str) -> str | None:
    """The id of the bibliography entry that links the paper's arXiv page."""
    pattern = re.compile(r"arxiv\.org/abs/" + re.escape(arxiv) + r"(v\d+)?\b")
    return next((eid for eid, text in bibliography.citations.items() if pattern.search(text)), None)


def citation_problems(page: Page, bibliography: Page, page_url: str, bibliography_url: str,
                      arxiv: str = PAPER_ARXIV) -> list[str]:
    """Problems with the page's citation of the paper: no bibliography entry links
    ``arxiv.org/abs/<arxiv>``, or the page has no link to that entry. URLs are site-relative paths
    (``generated/editing/editing.html``, ``bibliography.html``)."""
    entry = _paper_entry(bibliography, arxiv)
    if entry is None:
        return [f"the bibliography ({bibliography_url}) has no entry linking arxiv.org/abs/{arxiv}"]
    base = PurePosixPath(page_url).parent
    for href in page.links:
        parsed = urlparse(href)
        if parsed.scheme or parsed.netloc:
            continue
        target = _normalise(base / unquote(parsed.path)) if parsed.path else page_url
        if target == bibliography_url and parsed.fragment == entry:
            return []
    return [f"no citation of the paper (a link to {bibliography_url}#{entry}, e.g. {{cite:t}}`park2023riemannian`)"]


def _normalise(path: PurePosixPath) -> str:
    parts: list[str] = []
    for part in path.parts:
        if part == "..":
            if parts:
                parts.pop()
        elif part not in (".", ""):
            parts.append(part)
    return "/".join(parts)


def _excerpt(text: str) -> str:
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return line if len(line) <= 120 else line[:117].rsplit(" ", 1)[0] + " ..."


def output_problems(page: Page) -> list[str]:
    """Outputs a reader should not see: stderr streams, warnings and tracebacks."""
    problems = [f"stderr output: {_excerpt(t)!r}" for t in page.stderr]
    problems += [f"traceback output: {_excerpt(t)!r}" for t in page.tracebacks]
    problems += [f"warning in an output: {_excerpt(next(ln for ln in t.splitlines() if _WARNING.search(ln)))!r}"
                 for t in page.outputs if t not in page.stderr and t not in page.tracebacks and _WARNING.search(t)]
    return problems


def figure_problems(page: Page, html_file: Path, source_dir: Path | None = None,
                    column_px: int = CONTENT_WIDTH_PX) -> list[str]:
    """Problems with the page's images: not a numbered, captioned figure; wider than the column; text
    too small (from ``source_dir``'s ``figures.json``, the chapter's output folder, when given)."""
    from PIL import Image

    problems = []
    for fig in page.images:
        parsed = urlparse(fig.src)
        name = PurePosixPath(unquote(parsed.path)).name or fig.src[:40]
        if not fig.in_figure or not fig.numbered or not fig.caption:
            problems.append(f"image {name} is not a numbered figure with a caption "
                            "(save and show it with pullback_utils.chapters.plotting.save_figure)")
        if parsed.scheme in ("http", "https", "data"):
            continue
        path = (html_file.parent / unquote(parsed.path)).resolve()
        if source_dir is not None and (source_dir / name).is_file() and (source_dir / MANIFEST).is_file():
            problems += [p for p in check_figure(source_dir / name, max_width_px=column_px)
                         if "no caption" not in p]
        elif path.is_file():
            with Image.open(path) as image:
                width = image.size[0]
            if width > column_px:
                problems.append(f"{name}: {width} px wide, wider than the {column_px} px content column "
                                f"(shown at {column_px / width:.0%}, its text with it)")
        else:
            problems.append(f"image {name} does not exist ({path})")
    return problems


def check_site(html_root: Path, generated_dir: Path | None = None, bibliography: str = "bibliography.html",
               intro: str = "intro.html") -> dict[str, list[str]]:
    """Run the checks on a built book: the introduction and every chapter cite the paper; chapters show
    no stderr, warnings or tracebacks, and only numbered, captioned figures that fit the column.
    ``generated_dir``: ``book/generated`` (for the chapters' ``figures.json``; default: next to the
    site, ``<root>/book/generated`` when ``html_root`` is ``<root>/_build/html``). Returns
    {page: problems}, pages without problems left out."""
    html_root = Path(html_root)
    if generated_dir is None:
        guess = html_root.parent.parent / "book" / "generated"
        generated_dir = guess if guess.is_dir() else None
    if not html_root.is_dir():
        return {str(html_root): ["no built book here: run `python -m pullback_utils.book build` first"]}
    bib_file = html_root / bibliography
    if not bib_file.is_file():
        return {bibliography: ["no bibliography page (book/bibliography.md in book/_toc.yml)"]}
    bib = parse_page(bib_file.read_text())
    problems: dict[str, list[str]] = {}
    pages = [intro] + sorted(p.relative_to(html_root).as_posix() for p in html_root.glob("generated/*/*.html")
                             if chapter_of(p.relative_to(html_root).with_suffix("").as_posix()))
    for rel in pages:
        file = html_root / rel
        if not file.is_file():
            problems[rel] = ["page missing"]
            continue
        page = parse_page(file.read_text())
        issues = citation_problems(page, bib, rel, bibliography)
        name = chapter_of(PurePosixPath(rel).with_suffix("").as_posix())
        if name:
            source = generated_dir / name if generated_dir is not None else None
            issues += output_problems(page) + figure_problems(page, file, source)
        if issues:
            problems[rel] = issues
    return problems
