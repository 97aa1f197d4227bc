"""Interactive figures from pre-rendered frames (pullback_utils.chapters.frames): the frames written, the HTML
and MyST they show as, and the refusals."""

from __future__ import annotations

import base64
import json
import re
from html.parser import HTMLParser

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from pullback_utils.chapters.frames import MAX_FRAMES, save_frames  # noqa: E402
from pullback_utils.chapters.parameters import BOOK_ENV  # noqa: E402
from pullback_utils.chapters.plotting import FIGURE_DPI, MANIFEST, check_figure  # noqa: E402

COLOURS = [(1.0, 0.0, 0.0), (0.0, 0.6, 0.0), (0.0, 0.0, 1.0), (0.9, 0.8, 0.1)]


def _solid(colour, size=(4.0, 2.0)):
    """A figure filled with one colour (the frame's oracle: its PNG is that colour everywhere)."""
    fig = plt.figure(figsize=size, facecolor=colour)
    fig.text(0.5, 0.5, "frame", fontsize=10, color=colour)  # same colour as the background: invisible
    return fig


def _save(tmp_path, n=3, **kw):
    args = dict(
        labels=[f"t = {0.9 - 0.2 * i:.1f}" for i in range(n)], caption="What moves as t falls.", control_label="t / T"
    )
    args.update(kw)
    return save_frames((_solid(c) for c in COLOURS[:n]), tmp_path, "demo", **args)


class _Tags(HTMLParser):
    """Tags in order, with attributes; unbalanced or misnested non-void tags raise."""

    VOID = {"img", "input", "br", "hr", "meta", "link", "source"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags, self.stack, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):  # <img ... />
        self.handle_starttag(tag, attrs)
        if tag not in self.VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:] or 'nothing'}"
        self.stack.pop()

    def handle_data(self, data):
        if data.strip():
            self.text.append((self.stack[-1] if self.stack else "", data.strip()))


def _parse(html: str) -> _Tags:
    p = _Tags()
    p.feed(html)
    p.close()
    assert not p.stack, f"unclosed tags {p.stack}"
    return p


def test_frames_are_written_in_order_the_same_size_and_recorded(tmp_path):
    fr = _save(tmp_path, n=3)
    assert [p.name for p in fr.paths] == ["demo-0.png", "demo-1.png", "demo-2.png"]
    for path, colour in zip(fr.paths, COLOURS):
        with Image.open(path) as image:
            assert image.size == (4 * FIGURE_DPI, 2 * FIGURE_DPI) == (fr.width_px, fr.height_px)
            pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
        expected = np.round(np.array(colour) * 255)
        assert np.abs(pixels - expected).max() <= 1  # frame i is figure i: labels match frames
    assert fr.labels == ("t = 0.9", "t = 0.7", "t = 0.5") and fr.label == "fig-demo" and fr.control == "range"
    assert fr.min_font_pt == 10.0
    assert fr.total_bytes == sum(p.stat().st_size for p in fr.paths)
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    assert [manifest[f"demo-{i}"]["frame"] for i in range(3)] == [0, 1, 2]
    assert all(manifest[f"demo-{i}"]["caption"] == fr.caption for i in range(3))
    assert all(check_figure(p) == [] for p in fr.paths)  # the book's figure check: fits, legible, captioned
    assert not plt.get_fignums()  # every figure closed


def test_the_book_markdown_is_a_figure_of_the_first_frame_with_the_control_and_the_others(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(BOOK_ENV, "1")
    fr = _save(tmp_path, n=3, caption="A caption with $v_1$.")
    bundle = fr._repr_mimebundle_()
    assert set(bundle) == {"text/markdown", "image/png", "text/plain"}
    assert base64.b64decode(bundle["image/png"]) == fr.paths[0].read_bytes()
    md = bundle["text/markdown"]
    lines = md.splitlines()
    assert lines[:4] == [
        "````{figure} demo-0.png",
        ":name: fig-demo",
        ":figclass: pb-frames",
        ":alt: t = 0.9: A caption with $v_1$.",
    ]
    assert lines[5] == "A caption with $v_1$." and lines[-1] == "````"
    assert re.findall(r"```\{image\} (\S+)\n:class: pb-frame\n:alt: (t = [0-9.]+): A caption", md) == [
        ("demo-1.png", "t = 0.7"),
        ("demo-2.png", "t = 0.5"),
    ]
    block = md.split("\n\n")[2]  # the HTML block between the caption and the other frames
    assert "\n\n" not in block and block.startswith('<div class="pb-frames-controls" hidden>')
    tags = _parse(block)
    ((_, inp),) = [t for t in tags.tags if t[0] == "input"]
    assert inp["type"] == "range" and (inp["min"], inp["max"], inp["value"]) == ("0", "2", "0")
    assert json.loads(inp["data-labels"]) == list(fr.labels) and inp["aria-valuetext"] == "t = 0.9"
    ((_, label),) = [t for t in tags.tags if t[0] == "label"]
    assert label["for"] == inp["id"] and ("label", "t / T") in tags.text and ("output", "t = 0.9") in tags.text


def test_the_book_markdown_renders_as_one_figure_holding_every_frame(tmp_path, monkeypatch):
    """Through the MyST parser and docutils' HTML writer (what the book's build does with the output)."""
    from docutils.core import publish_string
    from myst_parser.parsers.docutils_ import Parser

    monkeypatch.chdir(tmp_path)
    fr = _save(
        tmp_path,
        n=4,
        control="select",
        control_label="sample",
        labels=["sample 0", "sample 1", "sample 2", "sample <3>"],
    )
    html = publish_string(
        fr.myst(),
        parser=Parser(),
        writer_name="html5",
        settings_overrides={"output_encoding": "unicode", "report_level": 2, "halt_level": 2},
    )
    body = html[html.index("<figure") : html.index("</figure>") + len("</figure>")]
    tags = _parse(body)
    assert tags.tags[0][0] == "figure" and "pb-frames" in tags.tags[0][1]["class"]
    assert [a["src"] for t, a in tags.tags if t == "img"] == [p.name for p in fr.paths]
    assert [("pb-frame" in a.get("class", "")) for t, a in tags.tags if t == "img"] == [False, True, True, True]
    ((_, select),) = [t for t in tags.tags if t[0] == "select"]
    options = [a["value"] for t, a in tags.tags if t == "option"]
    assert options == ["0", "1", "2", "3"] and json.loads(select["data-labels"])[3] == "sample <3>"
    assert [x for tag, x in tags.text if tag == "option"] == list(fr.labels)


def test_outside_the_book_the_figure_is_self_contained_html(tmp_path, monkeypatch):
    monkeypatch.delenv(BOOK_ENV, raising=False)
    fr = _save(tmp_path, n=2)
    bundle = fr._repr_mimebundle_()
    assert "text/markdown" not in bundle
    tags = _parse(bundle["text/html"])
    srcs = [a["src"] for t, a in tags.tags if t == "img"]
    assert len(srcs) == 3  # the shown image, then every frame (hidden) for the handler to copy from
    decoded = [base64.b64decode(s.split(",", 1)[1]) for s in srcs]
    assert decoded == [fr.paths[0].read_bytes(), fr.paths[0].read_bytes(), fr.paths[1].read_bytes()]
    ((_, div),) = [t for t in tags.tags if t[0] == "div"]
    assert "hidden" not in div  # shown: the inline handler wires it
    ((_, inp),) = [t for t in tags.tags if t[0] == "input"]
    assert "oninput" in inp and ("figcaption", fr.caption) in tags.text


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"labels": ["only one"]}, "labels must hold 2 to"),
        ({"labels": [f"f{i}" for i in range(MAX_FRAMES + 1)]}, "labels must hold 2 to"),
        ({"labels": ["a", "a", "b"]}, "labels must be unique"),
        ({"labels": ["a", "", "b"]}, "labels must be non-empty strings; entry 1"),
        ({"labels": "abc"}, "labels must be a list"),
        ({"caption": " "}, "caption must say what to see"),
        ({"caption": "one.\n\ntwo."}, "caption must be one paragraph"),
        ({"control": "slider"}, "control must be one of ('range', 'select')"),
        ({"control_label": ""}, "control_label must say"),
        ({"alts": ["x", "y"]}, "alts must hold one entry per frame (3)"),
        ({"name": "a/b"}, "name must be a file name"),
        ({"label": "fig one"}, "label must be a name"),
        ({"dpi": 0}, "dpi must be an int >= 1"),
    ],
)
def test_bad_arguments_are_refused_before_any_figure_is_drawn(tmp_path, kwargs, message):
    def never():
        raise AssertionError("a figure was drawn before the arguments were checked")
        yield

    args = dict(labels=["a", "b", "c"], caption="c", name="demo")
    args.update(kwargs)
    name = args.pop("name")
    with pytest.raises(ValueError, match=re.escape(message)):
        save_frames(never(), tmp_path, name, **args)
    assert not list(tmp_path.iterdir())


def test_frames_that_do_not_match_the_labels_or_the_page_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"one figure per label \(3\), got 2"):
        save_frames([_solid(c) for c in COLOURS[:2]], tmp_path, "few", labels=["a", "b", "c"], caption="c")
    with pytest.raises(ValueError, match=r"one figure per label \(2\), got more"):
        save_frames([_solid(c) for c in COLOURS[:3]], tmp_path, "many", labels=["a", "b"], caption="c")
    with pytest.raises(ValueError, match=r"same size: frame 0 is 440 x 220 px, frame 1 \('b'\) is 462 x 220 px"):
        save_frames(
            [_solid(COLOURS[0]), _solid(COLOURS[1], size=(4.2, 2.0))], tmp_path, "sizes", labels=["a", "b"], caption="c"
        )
    with pytest.raises(ValueError, match="880 px wide at dpi 110, wider than the 790 px content column"):
        save_frames([_solid(c, size=(8.0, 2.0)) for c in COLOURS[:2]], tmp_path, "wide", labels=["a", "b"], caption="c")
    plt.close("all")
