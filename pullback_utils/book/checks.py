"""Checks of the built book's HTML: what a reader must find on every page.

- the paper is cited: the bibliography has an entry linking arXiv:2307.12868, and the introduction and
  every chapter link to that entry (:func:`citation_problems`);
- no chapter page shows stderr, a warning or a traceback in its outputs (:func:`output_problems`);
- every image of a chapter is a numbered, captioned figure, no wider than the content column, with
  text no smaller than the book's minimum once on the page (:func:`figure_problems`, which reads the
  ``figures.json`` that :func:`pullback_utils.chapters.plotting.save_figure` writes next to a chapter's figures);
- no page at all (chapters, the API reference, the appendix) shows noise (:func:`noise_problems`): a raw
  repr (of a path, a matplotlib figure or artist, any object shown by its address: :data:`RAW_REPR`),
  a path of the machine that built it, a note listing the warnings of a chapter's run, widget state or
  views (tqdm bars as widgets), or papermill's injected-parameters cell.

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
from pullback_utils.chapters.chapter import WARNINGS_NOTE
from pullback_utils.chapters.plotting import CONTENT_WIDTH_PX, MANIFEST, check_figure

__all__ = [
    "PAPER_ARXIV",
    "Figure",
    "Page",
    "parse_page",
    "citation_problems",
    "output_problems",
    "figure_problems",
    "noise_problems",
    "check_site",
]

PAPER_ARXIV = "2307.12868"
_WARNING = re.compile(r"\b\w*Warning: ")
#: Python reprs that say nothing to a reader (an expression's value left as a cell's last line)
RAW_REPR = re.compile(
    r"\b(?:Posix|Windows|Pure\w*)Path\(|<Figure size \d|<matplotlib\.[\w.]+ object|"
    r"<[\w.]+ object at 0x[0-9a-fA-F]+>"
)
#: Folders of a build machine (home folders, temporary folders, an installed package)
MACHINE_PATH = re.compile(
    r"(?<![\w.:/])(?:/home/|/Users/|/root/|/tmp/|/private/var/|[A-Z]:\\Users\\)[\w.-]+"
    r"|site-packages/"
)
#: What widgets (tqdm bars rendered as ipywidgets) and papermill leave in a page's HTML
RAW_HTML_NOISE = {
    "application/vnd.jupyter.widget-state+json": "widget state (a notebook's saved widgets)",
    "application/vnd.jupyter.widget-view+json": "a widget view (a tqdm bar as a widget?)",
    "tag_injected-parameters": "papermill's injected-parameters cell",
}
#: Pages of the theme and Sphinx that carry no content of the book
_CHROME_PAGES = {"genindex.html", "search.html", "py-modindex.html", "index.html"}
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
    text: list[str] = field(default_factory=list)  # the article's text, piece by piece


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
                {"stderr": self.page.stderr, "traceback": self.page.tracebacks}.get(kind, self.page.outputs).append(
                    text
                )
                if kind != "output":
                    self.page.outputs.append(text)
        if tag == "figcaption" and self.caption is not None and self.caption[0] == depth:
            _, parts, numbered = self.caption
            for fig in self.figures[-1][1] if self.figures else []:
                fig.caption, fig.numbered = " ".join("".join(parts).split()), numbered
            self.caption = None
        if tag == "figure" and self.figures and self.figures[-1][0] == depth:
            self.figures.pop()
        if tag == "article" and self.article_depth == depth:
            self.article_depth = None

    def handle_data(self, data):
        if self.article_depth is None:
            return
        self.page.text.append(data)
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


def citation_problems(
    page: Page, bibliography: Page, page_url: str, bibliography_url: str, arxiv: str = PAPER_ARXIV
) -> list[str]:
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
    problems += [
        f"warning in an output: {_excerpt(next(ln for ln in t.splitlines() if _WARNING.search(ln)))!r}"
        for t in page.outputs
        if t not in page.stderr and t not in page.tracebacks and _WARNING.search(t)
    ]
    return problems


def figure_problems(
    page: Page, html_file: Path, source_dir: Path | None = None, column_px: int = CONTENT_WIDTH_PX
) -> list[str]:
    """Problems with the page's images: not a numbered, captioned figure; wider than the column; text
    too small (from ``source_dir``'s ``figures.json``, the chapter's output folder, when given)."""
    from PIL import Image

    problems = []
    for fig in page.images:
        parsed = urlparse(fig.src)
        name = PurePosixPath(unquote(parsed.path)).name or fig.src[:40]
        if not fig.in_figure or not fig.numbered or not fig.caption:
            problems.append(
                f"image {name} is not a numbered figure with a caption "
                "(save and show it with pullback_utils.chapters.plotting.save_figure)"
            )
        if parsed.scheme in ("http", "https", "data"):
            continue
        path = (html_file.parent / unquote(parsed.path)).resolve()
        if source_dir is not None and (source_dir / name).is_file() and (source_dir / MANIFEST).is_file():
            problems += [p for p in check_figure(source_dir / name, max_width_px=column_px) if "no caption" not in p]
        elif path.is_file():
            with Image.open(path) as image:
                width = image.size[0]
            if width > column_px:
                problems.append(
                    f"{name}: {width} px wide, wider than the {column_px} px content column "
                    f"(shown at {column_px / width:.0%}, its text with it)"
                )
        else:
            problems.append(f"image {name} does not exist ({path})")
    return problems


def noise_problems(page: Page, html: str, machine_paths: tuple[str, ...] = ()) -> list[str]:
    """What no page should show a reader: raw reprs and machine paths in its article's text
    (``machine_paths``: extra folders to look for, e.g. the book's root), widget state or views and
    papermill's injected-parameters cell anywhere in its HTML (``html``: the whole page)."""
    text = " ".join(page.text)
    problems = [f"raw repr: {_context(text, m)!r}" for m in RAW_REPR.finditer(text)]
    seen: set[str] = set()
    for m in MACHINE_PATH.finditer(text):
        if m.group(0) not in seen:
            seen.add(m.group(0))
            problems.append(f"machine path: {_context(text, m)!r}")
    for folder in machine_paths:
        if folder and folder in text and folder not in seen:
            problems.append(f"machine path: {folder!r} (the folder the book was built in)")
    if WARNINGS_NOTE in text:  # one problem per warning the note lists (or the note itself)
        note = text[text.index(WARNINGS_NOTE) :]
        listed = list(dict.fromkeys(" ".join(m.group(0).split()) for m in re.finditer(r"\b\w*Warning: .{0,60}", note)))
        problems += [
            f"warnings note: {w!r} (Chapter.finish lists the warnings raised during the run)"
            for w in listed or [note[:80]]
        ]
    problems += [f"{what} in the page" for marker, what in RAW_HTML_NOISE.items() if marker in html]
    return problems


def _context(text: str, match: re.Match) -> str:
    return " ".join(text[max(0, match.start() - 30) : match.end() + 40].split())


def check_site(
    html_root: Path,
    generated_dir: Path | None = None,
    bibliography: str = "bibliography.html",
    intro: str = "intro.html",
) -> dict[str, list[str]]:
    """Run the checks on a built book: the introduction and every chapter cite the paper; chapters show
    no stderr, warnings or tracebacks, and only numbered, captioned figures that fit the column; no
    page of the book shows noise (:func:`noise_problems`).
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
    pages = [intro] + sorted(
        p.relative_to(html_root).as_posix()
        for p in html_root.glob("generated/*/*.html")
        if chapter_of(p.relative_to(html_root).with_suffix("").as_posix())
    )
    machine = (str(html_root.resolve().parent.parent),) if html_root.resolve().parent.name == "_build" else ()
    others = sorted(
        p.relative_to(html_root).as_posix()
        for p in html_root.rglob("*.html")
        if not p.relative_to(html_root).parts[0].startswith("_") and p.name not in _CHROME_PAGES
    )
    for rel in pages + [p for p in others if p not in pages]:
        file = html_root / rel
        if not file.is_file():
            problems[rel] = ["page missing"]
            continue
        html = file.read_text()
        page = parse_page(html)
        issues = citation_problems(page, bib, rel, bibliography) if rel in pages else []
        name = chapter_of(PurePosixPath(rel).with_suffix("").as_posix())
        if name:
            source = generated_dir / name if generated_dir is not None else None
            issues += output_problems(page) + figure_problems(page, file, source)
        issues += noise_problems(page, html, machine)
        if issues:
            problems[rel] = issues
    return problems
