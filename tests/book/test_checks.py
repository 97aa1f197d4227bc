"""The built-book checks (pullback_utils.book.checks) on small fabricated pages, shaped like Jupyter
Book 1's output (sphinx-book-theme, myst-nb, sphinxcontrib-bibtex)."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from pullback_utils.book.checks import check_site, citation_problems, figure_problems, output_problems, parse_page

BIB = """<html><body><nav><a href="intro.html">nav link outside the article</a></nav><article class="bd-article">
<div class="citation" id="id3" role="doc-biblioentry"><p>Ho, Jain, Abbeel. DDPM.
<a class="reference external" href="https://arxiv.org/abs/2006.11239">arXiv:2006.11239</a>.</p></div>
<div class="citation" id="id4" role="doc-biblioentry"><p>Park et al. Understanding the latent space.
<a class="reference external" href="https://arxiv.org/abs/2307.12868">arXiv:2307.12868</a>.</p></div>
</article></body></html>"""

CITES = """<article class="bd-article"><p>As <span class="bibtex-citation" id="id1">Park <em>et al.</em>
[<a class="reference internal" href="../../bibliography.html#id4" title="...">2023</a>]</span> show.</p></article>"""


def chapter(body: str) -> str:
    return f'<html><body><article class="bd-article"><section>{body}</section></article></body></html>'


def figure(src: str, caption: str = "What to see.", numbered: bool = True) -> str:
    number = '<span class="caption-number">Fig. 1.1 </span>' if numbered else ""
    return (
        f'<div class="cell_output docutils container"><figure class="align-default" id="fig-x">'
        f'<img alt="{caption}" src="{src}" /><figcaption><p>{number}'
        f'<span class="caption-text">{caption}</span></p></figcaption></figure></div>'
    )


def test_parse_page_reads_only_the_article():
    page = parse_page(BIB)
    assert page.links == ["https://arxiv.org/abs/2006.11239", "https://arxiv.org/abs/2307.12868"]
    assert set(page.citations) == {"id3", "id4"} and "2307.12868" in page.citations["id4"]


def test_a_page_must_link_the_papers_bibliography_entry():
    bib = parse_page(BIB)
    ok = parse_page(CITES)
    assert citation_problems(ok, bib, "generated/editing/editing.html", "bibliography.html") == []
    other = parse_page(CITES.replace("#id4", "#id3"))  # cites DDPM only
    assert citation_problems(other, bib, "generated/editing/editing.html", "bibliography.html") == [
        "no citation of the paper (a link to bibliography.html#id4, e.g. {cite:t}`park2023riemannian`)"
    ]
    # a relative link that resolves elsewhere does not count
    wrong = parse_page(CITES.replace("../../bibliography.html", "bibliography.html"))
    assert citation_problems(wrong, bib, "generated/editing/editing.html", "bibliography.html")
    assert citation_problems(parse_page(CITES.replace("../../", "")), bib, "intro.html", "bibliography.html") == []
    no_paper = parse_page(BIB.replace("2307.12868", "2307.99999"))
    assert citation_problems(ok, no_paper, "intro.html", "bibliography.html") == [
        "the bibliography (bibliography.html) has no entry linking arxiv.org/abs/2307.12868"
    ]


def test_stderr_warnings_and_tracebacks_are_reported():
    page = parse_page(
        chapter(
            '<div class="cell_output"><div class="output stderr highlight-myst-ansi"><pre>'
            "/home/build/pullback_utils/analysis.py:300: RuntimeWarning: Mean of empty slice\n</pre></div></div>"
            '<div class="cell_output"><div class="output text_plain"><pre>UserWarning: in stdout\n</pre></div></div>'
            '<div class="cell_output"><div class="output traceback highlight-ipythontb">'
            "<pre>ValueError: boom</pre></div></div>"
            '<div class="cell_output"><div class="output text_plain"><pre>sigma_1 = 9.1</pre></div></div>'
        )
    )
    assert output_problems(page) == [
        "stderr output: '/home/build/pullback_utils/analysis.py:300: RuntimeWarning: Mean of empty slice'",
        "traceback output: 'ValueError: boom'",
        "warning in an output: 'UserWarning: in stdout'",
    ]
    assert output_problems(parse_page(chapter("<p>A RuntimeWarning: mentioned in prose is fine.</p>"))) == []


@pytest.fixture
def site(tmp_path):
    """A built site with one chapter and its output folder (book/generated/demo with figures.json)."""
    html = tmp_path / "_build" / "html"
    (html / "_images").mkdir(parents=True)
    (html / "generated" / "demo").mkdir(parents=True)
    source = tmp_path / "book" / "generated" / "demo"
    source.mkdir(parents=True)
    for name, width in (("good", 780), ("wide", 1400), ("inline", 900)):
        Image.new("RGB", (width, 200)).save(html / "_images" / f"{name}.png")
    for name, width in (("good", 780), ("wide", 1400)):
        Image.new("RGB", (width, 200)).save(source / f"{name}.png")
    (source / "figures.json").write_text(
        json.dumps(
            {
                "good": {"file": "good.png", "caption": "Good.", "width_px": 780, "dpi": 110, "min_font_pt": 9.0},
                "wide": {"file": "wide.png", "caption": "Wide.", "width_px": 1400, "dpi": 110, "min_font_pt": 9.0},
            }
        )
    )
    (html / "bibliography.html").write_text(BIB)
    (html / "intro.html").write_text(CITES.replace("../../", ""))
    return tmp_path


def test_figures_must_be_numbered_captioned_and_fit_the_column(site):
    file = site / "_build" / "html" / "generated" / "demo" / "demo.html"
    source = site / "book" / "generated" / "demo"
    page = parse_page(chapter(figure("../../_images/good.png")))
    assert figure_problems(page, file, source) == []
    page = parse_page(
        chapter(
            figure("../../_images/wide.png")
            + figure("../../_images/good.png", numbered=False)
            + '<div class="cell_output"><img src="../../_images/inline.png"/></div>'
        )
    )
    problems = figure_problems(page, file, source)
    assert problems[0].startswith("wide.png: 1400 px wide, wider than the 790 px content column (shown at 56%")
    assert "smallest text 9 pt at dpi 110 is 7.8 px on the page" in problems[1]
    assert problems[2:] == [
        "image good.png is not a numbered figure with a caption "
        "(save and show it with pullback_utils.chapters.plotting.save_figure)",
        "image inline.png is not a numbered figure with a caption "
        "(save and show it with pullback_utils.chapters.plotting.save_figure)",
        "inline.png: 900 px wide, wider than the 790 px content column (shown at 88%, its text with it)",
    ]


def test_check_site_runs_every_check_on_intro_and_chapters(site):
    html = site / "_build" / "html"
    (html / "generated" / "demo" / "demo.html").write_text(
        chapter(figure("../../_images/good.png") + '<div class="output stderr"><pre>to stderr</pre></div>')
    )
    assert check_site(html) == {
        "generated/demo/demo.html": [
            "no citation of the paper (a link to bibliography.html#id4, e.g. {cite:t}`park2023riemannian`)",
            "stderr output: 'to stderr'",
        ]
    }
    (html / "generated" / "demo" / "demo.html").write_text(
        CITES.replace("</article>", figure("../../_images/good.png") + "</article>")
    )
    assert check_site(html) == {}
    (html / "bibliography.html").unlink()
    assert check_site(html) == {"bibliography.html": ["no bibliography page (book/bibliography.md in book/_toc.yml)"]}


def test_noise_is_reported_on_any_page():
    """Raw reprs, machine paths, a run's warnings note, widget state and papermill's injected cell."""
    from pullback_utils.book.checks import noise_problems

    clean = chapter(
        "<p>Written to <code>metrics.json</code>; see <code>pullback_utils.zoo.paths.CARDS_DIR</code>.</p>"
        "<p>A mention of /tmp/ in prose? only a folder name after it counts.</p>"
    )
    assert noise_problems(parse_page(clean), clean, ("/srv/book",)) == []
    cases = {
        "<div class='cell_output'><pre>"
        "PosixPath('metrics.json')</pre></div>": "raw repr: \"PosixPath('metrics.json')\"",
        "<pre>&lt;Figure size 640x480 with 1 Axes&gt;</pre>": "raw repr: '<Figure size 640x480 with 1 Axes>'",
        "<pre>&lt;matplotlib.image.AxesImage "
        "object at 0x7f00&gt;</pre>": "raw repr: '<matplotlib.image.AxesImage object at",
        "<dt>write("
        "out_dir=/home/ana/book/model_cards)</dt>": "machine path: 'write(out_dir=/home/ana/book/model_cards)'",
        "<p>see /srv/book/notes</p>": "machine path: '/srv/book' (the folder the book was built in)",
        "<div class='admonition note'><p>Warnings during this run (also in metrics.json):</p><ul><li>"
        "DeprecationWarning: old</li></ul></div>": "warnings note: 'DeprecationWarning: old'",
        '<script type="application/vnd.jupyter.widget-view+json">{}</script>': "a widget view",
        '<div class="cell tag_injected-parameters docutils container"></div>': "papermill's injected-parameters cell",
    }
    for body, expected in cases.items():
        html = chapter(body)
        problems = noise_problems(parse_page(html), html, ("/srv/book",))
        assert len(problems) == 1 and problems[0].startswith(expected), (body, problems)
    state = '<html><script type="application/vnd.jupyter.widget-state+json">{}</script><article></article></html>'
    assert noise_problems(parse_page(state), state) == ["widget state (a notebook's saved widgets) in the page"]


def test_check_site_looks_for_noise_on_every_page(site):
    html = site / "_build" / "html"
    (html / "generated" / "demo" / "demo.html").write_text(
        CITES.replace("</article>", figure("../../_images/good.png") + "</article>")
    )
    (html / "generated" / "api.html").write_text(chapter(f"<dt>f(cards_dir=PosixPath('{site}/book/model_cards'))</dt>"))
    (html / "_static").mkdir()
    (html / "_static" / "skip.html").write_text(chapter("PosixPath('x')"))  # theme files are not pages
    problems = check_site(html)
    assert list(problems) == ["generated/api.html"]
    assert problems["generated/api.html"][0].startswith("raw repr: ")
    assert any(p.startswith("machine path: ") for p in problems["generated/api.html"])
