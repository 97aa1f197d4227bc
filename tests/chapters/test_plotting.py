"""The book's figure style (pullback_utils.chapters.plotting): size, fonts, captions, and what check_figure reports."""

from __future__ import annotations

import base64
import json

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from pullback_utils.chapters.parameters import BOOK_ENV  # noqa: E402
from pullback_utils.chapters.plotting import (  # noqa: E402
    CONTENT_WIDTH_PX,
    FIGURE_DPI,
    MANIFEST,
    book_style,
    check_figure,
    save_figure,
    time_axis,
)


def _plot(**kw):
    fig, ax = plt.subplots(**kw)
    ax.plot([0.9, 0.5, 0.1], [1, 2, 3])
    ax.set_xlabel("t / T")
    ax.set_ylabel("distance")
    ax.set_title("a title")
    return fig, ax


def test_a_book_style_figure_fits_the_column_with_legible_text(tmp_path):
    with book_style():
        fig, _ = _plot()
    saved = save_figure(fig, tmp_path, "spectra", "The spectrum moves to high frequencies as t falls.")
    with Image.open(saved.path) as image:
        width = image.size[0]
    assert width == saved.width_px and CONTENT_WIDTH_PX - 40 < width <= CONTENT_WIDTH_PX
    assert saved.min_font_pt == 9.0  # tick labels; title and axis labels are 10
    assert check_figure(saved.path) == []
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    assert manifest["spectra"] == {
        "file": "spectra.png",
        "caption": saved.caption,
        "width_px": width,
        "height_px": saved.height_px,
        "dpi": FIGURE_DPI,
        "min_font_pt": 9.0,
    }
    assert not plt.fignum_exists(fig.number)  # closed: the inline backend does not show it twice


def test_check_figure_names_what_is_wrong(tmp_path):
    fig, ax = _plot(figsize=(14, 3))
    ax.set_title("tiny", fontsize=6)
    wide = save_figure(fig, tmp_path, "wide", "Too wide, text too small.")
    problems = check_figure(wide.path)
    assert len(problems) == 2
    assert problems[0].startswith(f"wide.png: {wide.width_px} px wide, wider than the 790 px content column")
    shown = 6 * FIGURE_DPI / 72 * CONTENT_WIDTH_PX / wide.width_px
    assert f"is {shown:.1f} px on the page, below 13.8 px" in problems[1]

    fig, _ = _plot(figsize=(4, 3))
    fig.savefig(tmp_path / "bare.png", dpi=FIGURE_DPI)  # saved without save_figure: no caption
    assert check_figure(tmp_path / "bare.png") == [
        "bare.png: no caption (save it with pullback_utils.chapters.plotting.save_figure)"
    ]
    assert check_figure(tmp_path / "missing.png") == ["missing.png: no such file"]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"name": "../x", "caption": "c"}, "name must be a file name"),
        ({"name": "x", "caption": "  "}, "caption must say what to see"),
        ({"name": "x", "caption": "c", "dpi": 0}, "dpi must be an int >= 1"),
    ],
)
def test_save_figure_refuses_bad_arguments(tmp_path, kwargs, match):
    fig, _ = _plot()
    with pytest.raises(ValueError, match=match):
        save_figure(fig, tmp_path, **kwargs)
    assert not list(tmp_path.iterdir())


def test_shown_in_the_book_as_a_numbered_figure_elsewhere_as_png_and_caption(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fig, _ = _plot()
    saved = save_figure(fig, ".", "edits", "Edits along v_1 at t = 0.7 and 0.3.")
    monkeypatch.setenv(BOOK_ENV, "1")
    bundle = saved._repr_mimebundle_()
    assert bundle["text/markdown"] == (
        "```{figure} edits.png\n:name: fig-edits\n:alt: Edits along v_1 at t = 0.7 and 0.3.\n\n"
        "Edits along v_1 at t = 0.7 and 0.3.\n```\n"
    )
    assert base64.b64decode(bundle["image/png"]) == saved.path.read_bytes()  # the executed notebook keeps the PNG
    monkeypatch.delenv(BOOK_ENV)
    assert set(saved._repr_mimebundle_()) == {"image/png", "text/plain"}  # Jupyter, Colab: the image


def test_book_style_keeps_interactive_mode_switched_on_inside():
    """Jupyter's inline backend, loaded by the first figure (inside the context), switches interactive
    mode on; a plain rc_context would switch it off again on exit and later figures would not show."""
    was = matplotlib.is_interactive()
    try:
        matplotlib.interactive(False)
        with book_style():
            matplotlib.interactive(True)  # what loading the inline backend does
        assert matplotlib.is_interactive()
        matplotlib.interactive(False)
        with matplotlib.rc_context({"font.size": 10}):  # the plain context, for reference
            matplotlib.interactive(True)
        assert not matplotlib.is_interactive()
    finally:
        matplotlib.interactive(was)


def test_time_axis_runs_from_T_to_0():
    fig, ax = _plot()
    time_axis(ax)
    left, right = ax.get_xlim()
    assert left > right and ax.get_xlabel() == "t / T"
    time_axis(ax)  # idempotent
    assert ax.get_xlim() == (left, right)
    plt.close(fig)


def test_a_wide_grid_is_shrunk_to_the_page_width_and_labels_are_legible():
    import torch

    from pullback_utils.chapters.plotting import FIGURE_WIDTH_IN, MIN_FONT_PT, show_grid

    fig = show_grid(
        torch.zeros(2, 12, 3, 8, 8), row_labels=["a", "b"], col_labels=[str(i) for i in range(12)], cell=1.5
    )
    assert fig.get_size_inches()[0] <= FIGURE_WIDTH_IN + 1e-9
    assert min(ax.title.get_fontsize() for ax in fig.axes if ax.get_title()) >= MIN_FONT_PT
