"""Interactive figures that work offline, without a kernel: pre-rendered frames and a control.

A chapter draws one matplotlib figure per frame (all the same size, at most the content column wide),
and :func:`save_frames` writes them as ``<output_dir>/<name>-<i>.png`` (recorded in ``figures.json``
like :func:`pullback_utils.chapters.plotting.save_figure`'s figures) and returns a :class:`Frames`.
Made the last expression of a cell it shows:

- in the book (a chapter run by the book runner): a numbered MyST ``figure`` of the first frame whose
  caption is followed by the control (an ``<input type="range">`` or a ``<select>``, with a ``<label>``
  and an ``<output>`` naming the frame shown) and the other frames as images. Every frame is thus an
  image node, so Sphinx copies it into the site with the execution-off build; the book's script
  ``book/_static/pb-frames.js`` (listed in ``_config.yml``'s ``html_js_files``) moves the control
  under the image and shows the chosen frame by changing the image's ``src`` and ``alt``;
  ``book/_static/pb-frames.css`` hides the other frames. Without JavaScript the first frame and the
  caption show and the control stays hidden.
- elsewhere (Jupyter, Colab): the same ``<figure>`` as HTML with the frames embedded as data URLs and a
  one-line inline handler, so the control works in a trusted notebook too.

Both are keyboard-accessible: the native range input (arrow keys, Home, End) and select; the range
carries ``aria-valuetext`` and the ``<output>`` is a polite live region.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pullback_utils._io import atomic_write
from pullback_utils.chapters.parameters import in_book_run
from pullback_utils.chapters.plotting import CONTENT_WIDTH_PX, FIGURE_DPI, MANIFEST, _min_font_pt, _png_size

__all__ = ["Frames", "save_frames", "CONTROLS", "MAX_FRAMES", "FIGURE_CLASS", "FRAME_CLASS", "CONTROLS_CLASS"]

#: The kinds of control: a slider over ordered frames (times, strengths) or a list to pick from (samples).
CONTROLS = ("range", "select")
#: The most frames one figure may have (every frame is downloaded with the page).
MAX_FRAMES = 40
#: Classes the book's script and style sheet look for (``book/_static/pb-frames.{js,css}``).
FIGURE_CLASS, FRAME_CLASS, CONTROLS_CLASS = "pb-frames", "pb-frame", "pb-frames-controls"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class Frames:
    """An interactive figure saved by :func:`save_frames`.

    Attributes:
        paths: the frame PNGs, in order (the first is the one shown without JavaScript).
        labels: one label per frame, shown by the control (``"t = 0.9"``, ``"sample 2"``).
        caption: what to see in the figure (one paragraph, MyST Markdown allowed).
        control: ``"range"`` or ``"select"``; control_label: what the control chooses (``"t / T"``).
        alts: one text alternative per frame; label: the figure's name for cross-references.
        width_px, height_px: the frames' common size; min_font_pt: their smallest text (points).
    """

    paths: tuple[Path, ...]
    labels: tuple[str, ...]
    caption: str
    control: str
    control_label: str
    alts: tuple[str, ...]
    label: str
    width_px: int
    height_px: int
    min_font_pt: float | None

    @property
    def total_bytes(self) -> int:
        """The frames' size on disk (what a reader downloads with the page)."""
        return sum(p.stat().st_size for p in self.paths)

    @property
    def _control_id(self) -> str:
        return "pb-frames-" + re.sub(r"[^A-Za-z0-9_-]", "-", self.label)

    def controls_html(self, handler: str = "") -> str:
        """The control's HTML: a ``<div>`` (hidden until a script wires it) holding a ``<label>``, the
        ``<input type="range">`` or ``<select>`` (its ``data-labels`` the frame labels as JSON) and an
        ``<output>`` with the current label. No blank line inside (a MyST HTML block ends at one)."""
        cid, n = self._control_id, len(self.paths)
        data = html.escape(json.dumps(list(self.labels)), quote=True)
        on = f' oninput="{html.escape(handler, quote=True)}"' if handler else ""
        if self.control == "range":
            widget = (
                f'<input type="range" id="{cid}" min="0" max="{n - 1}" step="1" value="0" '
                f'aria-valuetext="{html.escape(self.labels[0], quote=True)}" data-labels="{data}"{on}>'
            )
        else:
            options = "".join(
                f'<option value="{i}"{" selected" if i == 0 else ""}>{html.escape(lab)}</option>'
                for i, lab in enumerate(self.labels)
            )
            widget = f'<select id="{cid}" data-labels="{data}"{on}>{options}</select>'
        return "\n".join(
            [
                f'<div class="{CONTROLS_CLASS}" hidden>',
                f'<label for="{cid}">{html.escape(self.control_label)}</label>',
                widget,
                f'<output for="{cid}" aria-live="polite">{html.escape(self.labels[0])}</output>',
                "</div>",
            ]
        )

    def myst(self) -> str:
        """The MyST of the figure in the book: a numbered ``figure`` of the first frame with the caption,
        then the control and the other frames (paths relative to the current folder, as
        :meth:`pullback_utils.chapters.plotting.SavedFigure.myst`)."""
        rel = [os.path.relpath(p, Path.cwd()).replace(os.sep, "/") for p in self.paths]
        lines = [
            f"````{{figure}} {rel[0]}",
            f":name: {self.label}",
            f":figclass: {FIGURE_CLASS}",
            f":alt: {_one_line(self.alts[0])}",
            "",
            self.caption,
            "",
            self.controls_html(),
            "",
        ]
        for path, alt in zip(rel[1:], self.alts[1:]):
            lines += [f"```{{image}} {path}", f":class: {FRAME_CLASS}", f":alt: {_one_line(alt)}", "```", ""]
        return "\n".join(lines + ["````", ""])

    def html(self) -> str:
        """A self-contained ``<figure>`` (frames as data URLs, an inline handler on the control) for a
        notebook outside the book."""
        srcs = ["data:image/png;base64," + base64.b64encode(p.read_bytes()).decode() for p in self.paths]
        handler = (
            "var f=this.closest('figure'),i=+this.value,im=f.querySelectorAll('img');"
            "im[0].src=im[i+1].src;im[0].alt=im[i+1].alt;"
            "var l=JSON.parse(this.dataset.labels)[i];f.querySelector('output').value=l;"
            "this.setAttribute('aria-valuetext',l)"
        )
        controls = self.controls_html(handler).replace(" hidden>", ">", 1)
        hidden = "".join(f'<img src="{s}" alt="{html.escape(a, quote=True)}" hidden>' for s, a in zip(srcs, self.alts))
        return (
            f'<figure class="{FIGURE_CLASS}" style="max-width:{self.width_px}px">'
            f'<img src="{srcs[0]}" alt="{html.escape(self.alts[0], quote=True)}" width="{self.width_px}" '
            f'height="{self.height_px}" style="max-width:100%;height:auto">{controls}{hidden}'
            f"<figcaption>{html.escape(self.caption)}</figcaption></figure>"
        )

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        png = base64.b64encode(self.paths[0].read_bytes()).decode()
        text = f"Interactive figure {self.label} ({len(self.paths)} frames: {', '.join(self.labels)}): {self.caption}"
        if in_book_run():  # the book picks text/markdown (nb_mime_priority_overrides)
            return {"text/markdown": self.myst(), "image/png": png, "text/plain": text}
        return {"text/html": self.html(), "image/png": png, "text/plain": text}


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _check_text_list(values: Any, name: str, n: int | None = None) -> tuple[str, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise ValueError(f"{name} must be a list of non-empty strings, one per frame, got {values!r}")
    out = tuple(values)
    bad = [i for i, v in enumerate(out) if not isinstance(v, str) or not v.strip()]
    if bad:
        raise ValueError(f"{name} must be non-empty strings; entry {bad[0]} is {out[bad[0]]!r}")
    if n is not None and len(out) != n:
        raise ValueError(f"{name} must hold one entry per frame ({n}), got {len(out)}")
    return tuple(v.strip() for v in out)


def save_frames(
    figures: Iterable[Any],
    output_dir: str | os.PathLike,
    name: str,
    *,
    labels: Sequence[str],
    caption: str,
    control: str = "range",
    control_label: str = "frame",
    alts: Sequence[str] | None = None,
    label: str | None = None,
    dpi: int = FIGURE_DPI,
    max_width_px: int = CONTENT_WIDTH_PX,
    close: bool = True,
) -> Frames:
    """Save one matplotlib figure per frame as ``<output_dir>/<name>-<i>.png`` and return the
    interactive figure (:class:`Frames`); make it the last expression of a cell to show it.

    Args:
        figures: the frames' figures, in the order of ``labels`` (a generator is drawn one at a time);
            each saved at ``dpi`` without cropping, so figures of the same ``figsize`` give frames of
            the same pixel size, which is required.
        labels: one unique, non-empty label per frame (2 to :data:`MAX_FRAMES` frames).
        caption: what to see and what the control changes (one paragraph; MyST Markdown allowed).
        control: ``"range"`` (a slider, for ordered frames) or ``"select"`` (a list).
        control_label: what the control chooses (e.g. ``"t / T"``, ``"sample"``).
        alts: a text alternative per frame (default: ``"<label>: <caption>"``).
        label: the figure's name for cross-references (default ``fig-<name>``).
        max_width_px: the widest a frame may be (the book's content column).
        close: close each figure once saved.

    Raises:
        ValueError: naming the argument, for a bad name, caption, control, labels or alts (checked
            before any figure is drawn), for a number of figures that differs from the labels, for
            frames of different sizes, or for frames wider than ``max_width_px``.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"name must be a file name without folders or suffix (letters, digits, _ . -), got {name!r}")
    if not isinstance(caption, str) or not caption.strip():
        raise ValueError(f"caption must say what to see in the figure and what the control changes, got {caption!r}")
    if re.search(r"\n\s*\n", caption.strip()):
        raise ValueError("caption must be one paragraph (no blank line): the rest would not be part of the caption")
    if control not in CONTROLS:
        raise ValueError(f"control must be one of {CONTROLS}, got {control!r}")
    if not isinstance(control_label, str) or not control_label.strip():
        raise ValueError(f"control_label must say what the control chooses (e.g. 't / T'), got {control_label!r}")
    labels_t = _check_text_list(labels, "labels")
    if not 2 <= len(labels_t) <= MAX_FRAMES:
        raise ValueError(
            f"labels must hold 2 to {MAX_FRAMES} frames (one frame is a static figure: use "
            f"Chapter.figure), got {len(labels_t)}"
        )
    if len(set(labels_t)) != len(labels_t):
        dup = next(lab for lab in labels_t if labels_t.count(lab) > 1)
        raise ValueError(f"labels must be unique (the control names the frame shown), {dup!r} repeats")
    n = len(labels_t)
    alts_t = (
        _check_text_list(alts, "alts", n)
        if alts is not None
        else tuple(f"{lab}: {_one_line(caption)}" for lab in labels_t)
    )
    if label is not None and (not isinstance(label, str) or not _NAME.fullmatch(label)):
        raise ValueError(f"label must be a name of letters, digits, _ . - (a cross-reference target), got {label!r}")
    if isinstance(dpi, bool) or not isinstance(dpi, int) or dpi < 1:
        raise ValueError(f"dpi must be an int >= 1, got {dpi!r}")

    import matplotlib.pyplot as plt

    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    sizes: list[tuple[int, int]] = []
    fonts: list[float] = []
    width = len(str(n - 1))
    for i, fig in enumerate(figures):
        if i >= n:
            if close:
                plt.close(fig)
            raise ValueError(f"figures must hold one figure per label ({n}), got more")
        path = folder / f"{name}-{i:0{width}d}.png"
        with atomic_write(path, "wb") as f:
            fig.savefig(f, format="png", dpi=dpi)  # no cropping: the same figsize gives the same pixel size
        sizes.append(_png_size(path))
        font = _min_font_pt(fig)
        if font is not None:
            fonts.append(font)
        if close:
            plt.close(fig)
        paths.append(path)
        if sizes[-1] != sizes[0]:
            raise ValueError(
                f"figures must all have the same size: frame 0 is {sizes[0][0]} x {sizes[0][1]} px, "
                f"frame {i} ({labels_t[i]!r}) is {sizes[-1][0]} x {sizes[-1][1]} px"
            )
    if len(paths) != n:
        raise ValueError(f"figures must hold one figure per label ({n}), got {len(paths)}")
    w, h = sizes[0]
    if w > max_width_px:
        raise ValueError(
            f"figures are {w} px wide at dpi {dpi}, wider than the {max_width_px} px content column: "
            f"draw them at most {max_width_px / dpi:.2f} inches wide"
        )
    min_font = min(fonts) if fonts else None
    _record(folder, name, paths, caption.strip(), w, h, dpi, min_font)
    return Frames(
        tuple(paths),
        labels_t,
        caption.strip(),
        control,
        control_label.strip(),
        alts_t,
        label or f"fig-{name}",
        w,
        h,
        min_font,
    )


def _record(
    folder: Path, name: str, paths: list[Path], caption: str, width: int, height: int, dpi: int, min_font: float | None
) -> None:
    """One ``figures.json`` entry per frame (the book's checks read the width and smallest font)."""
    from pullback_utils._io import read_json, write_json

    manifest = folder / MANIFEST
    try:
        data = read_json(manifest) if manifest.is_file() else {}
    except ValueError:
        data = {}
    for i, path in enumerate(paths):
        data[path.stem] = {
            "file": path.name,
            "caption": caption,
            "width_px": width,
            "height_px": height,
            "dpi": dpi,
            "min_font_pt": min_font,
            "frame_of": name,
            "frame": i,
        }
    write_json(manifest, data)
