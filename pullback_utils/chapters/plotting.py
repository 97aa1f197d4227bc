"""Small, generic matplotlib helpers for the book's chapters: image strips and grids, and the book's
figure style.

Images are tensors in model range [-1, 1], shaped (N, C, H, W) (C = 1 or 3).

The figure style: the book's content column is :data:`CONTENT_WIDTH_PX` (790) pixels wide. A figure
drawn inside ``with book_style():`` is :data:`FIGURE_WIDTH_IN` inches wide at :data:`FIGURE_DPI`, so
its PNG fits the column without being scaled down, and its smallest text is :data:`MIN_FONT_PT` points
(13.75 px on the page). :func:`save_figure` saves it at that dpi with its caption, recorded in
``figures.json`` next to the PNG (with the measured width and smallest font size), and shows it as a
numbered, captioned figure in the built book. :func:`check_figure` says what is wrong with a saved
figure; the book's build checks run it on every figure. Time axes run from T (left) to 0
(:func:`time_axis`), the direction of generation.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from pullback_utils._io import atomic_write, write_text
from pullback_utils._validate import check_int, check_real
from pullback_utils.chapters.parameters import in_book_run

__all__ = [
    "show_strip",
    "show_grid",
    "show_signed",
    "book_style",
    "save_figure",
    "check_figure",
    "time_axis",
    "SavedFigure",
    "CONTENT_WIDTH_PX",
    "FIGURE_DPI",
    "FIGURE_WIDTH_IN",
    "MIN_FONT_PT",
    "MANIFEST",
    "ROLES",
    "PALETTE",
]

CONTENT_WIDTH_PX = 790  # the content column of the book's pages (sphinx-book-theme, 1280 px window)
FIGURE_DPI = 110
FIGURE_WIDTH_IN = 7.1  # 781 px at FIGURE_DPI
MIN_FONT_PT = 9.0
MANIFEST = "figures.json"

#: The book's colours (seaborn's colour-blind-safe "colorblind" palette), one per thing a chapter compares,
#: the same in every chapter: the trained network, its random-weight control, the matched baseline (random
#: bases with the same spectrum, shuffled prompts), the Gaussian control, and a reference level (chance,
#: white noise, a noise floor). Defined here only.
ROLES: dict[str, str] = {
    "trained": "#0173b2",
    "random_weights": "#d55e00",
    "matched": "#de8f05",
    "gaussian": "#029e73",
    "reference": "#949494",
}
#: The palette of :func:`book_style` (seaborn's "colorblind": the roles first, then other colours).
PALETTE = ["#0173b2", "#d55e00", "#de8f05", "#029e73", "#cc78bc", "#56b4e9", "#ca9161", "#fbafe4", "#949494", "#ece133"]


def _hwc(image: torch.Tensor, value_range: tuple[float, float]) -> Any:
    lo, hi = value_range
    a = ((image.detach().float().cpu() - lo) / (hi - lo)).clamp(0, 1)
    a = a.permute(1, 2, 0).numpy()
    return a[:, :, 0] if a.shape[2] == 1 else a


def show_grid(
    images: torch.Tensor | Sequence[torch.Tensor],
    *,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    title: str | None = None,
    cell: float = 1.1,
    value_range: tuple[float, float] = (-1.0, 1.0),
    ax_fontsize: float = MIN_FONT_PT,
):
    """Show (R, K, C, H, W) images as an R x K grid (or (N, C, H, W) as one row, or a list of R (K, C, H, W)
    rows); returns the figure.

    ``row_labels``/``col_labels`` label rows (left) and columns (top), wrapped to fit. ``cell`` is inches per image,
    reduced so that the grid fits the book's page width (``FIGURE_WIDTH_IN``).
    """
    import matplotlib.pyplot as plt

    if isinstance(images, (list, tuple)):
        images = torch.stack([torch.as_tensor(im).detach().float().cpu() for im in images])
    x = images if images.dim() == 5 else images.unsqueeze(0)
    if x.dim() != 5:
        raise ValueError(f"images must have shape (R, K, C, H, W) or (N, C, H, W), got {tuple(images.shape)}")
    rows, cols = x.shape[:2]
    if row_labels is not None and len(row_labels) != rows:
        raise ValueError(f"row_labels has {len(row_labels)} entries for {rows} rows")
    if col_labels is not None and len(col_labels) != cols:
        raise ValueError(f"col_labels has {len(col_labels)} entries for {cols} columns")
    if row_labels is not None:  # wrapped to at most 24 characters a line; the margin grows to hold them
        row_labels = [_wrap(str(lab), 24) for lab in row_labels]
    longest = max((len(line) for lab in row_labels or [] for line in lab.split("\n")), default=0)
    margin = max(0.9, longest * 0.6 * ax_fontsize / 72 + 0.15) if row_labels else 0.1
    cell = min(cell, (FIGURE_WIDTH_IN - margin) / cols)
    if col_labels is not None:  # wrapped to the cell's width (a character is about 0.6 em wide)
        col_labels = [_wrap(str(lab), cell * 72 / (0.6 * ax_fontsize)) for lab in col_labels]
    title_lines = max((lab.count("\n") + 1 for lab in col_labels), default=1) if col_labels is not None else 0
    top = (0.45 if title else 0.15) + 0.2 * max(title_lines - 1, 0)
    fig, axes = plt.subplots(rows, cols, figsize=(cell * cols + margin, cell * rows + top), squeeze=False)
    for r in range(rows):
        for c in range(cols):
            ax = axes[r, c]
            img = _hwc(x[r, c], value_range)
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0 and col_labels is not None:
                ax.set_title(col_labels[c], fontsize=ax_fontsize)
            if c == 0 and row_labels is not None:
                ax.set_ylabel(row_labels[r], fontsize=ax_fontsize, rotation=0, ha="right", va="center")
    if title:
        fig.suptitle(title, fontsize=ax_fontsize + 2)
    fig.tight_layout()
    return fig


def _wrap(label: str, width_chars: float) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(label, max(int(width_chars), 4)) or [label])


def show_signed(
    vectors: torch.Tensor,
    *,
    labels: Sequence[str] | None = None,
    ncols: int | None = None,
    cell: float = 1.6,
    cmap: str = "RdBu_r",
    colorbar_label: str = "channel mean / max |.|",
):
    """Show (N, C, H, W) signed vectors (basis vectors, edits) as large images on a diverging colour map
    with a colour bar: each vector's channel mean divided by its largest absolute value, on the symmetric
    scale [-1, 1] (0 is the map's neutral middle). Returns the figure.

    ``labels``: one title per vector; ``ncols``: vectors per row (default: all in one row); ``cell``: inches
    per image, reduced so that a row fits the page.
    """
    import matplotlib.pyplot as plt

    if not isinstance(vectors, torch.Tensor) or vectors.dim() != 4:
        raise ValueError(f"vectors must be a tensor of shape (N, C, H, W), got {getattr(vectors, 'shape', vectors)}")
    n = vectors.shape[0]
    if labels is not None and len(labels) != n:
        raise ValueError(f"labels has {len(labels)} entries for {n} vectors")
    cols = check_int(ncols, "ncols", 1) if ncols is not None else n
    rows = -(-n // cols)
    mean = vectors.detach().float().cpu().mean(1)
    mean = (mean / mean.flatten(1).abs().amax(1).clamp_min(1e-12)[:, None, None]).numpy()
    cell = min(cell, (FIGURE_WIDTH_IN - 1.1) / cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(cell * cols + 1.1, (cell + 0.3) * rows + 0.1), squeeze=False, layout="constrained"
    )
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= n:
            ax.set_axis_off()
            continue
        im = ax.imshow(mean[i], cmap=cmap, vmin=-1, vmax=1, interpolation="nearest")
        if labels is not None:
            ax.set_title(_wrap(str(labels[i]), cell * 72 / (0.6 * MIN_FONT_PT)), fontsize=MIN_FONT_PT)
    fig.colorbar(im, ax=list(axes.flat), shrink=min(0.9, 0.5 * rows), label=colorbar_label, ticks=[-1, -0.5, 0, 0.5, 1])
    return fig


def show_strip(
    images: torch.Tensor,
    labels: Sequence[str] | None = None,
    *,
    title: str | None = None,
    cell: float = 1.1,
    value_range: tuple[float, float] = (-1.0, 1.0),
):
    """Show (N, C, H, W) images side by side, with optional per-image ``labels``; returns the figure."""
    if images.dim() != 4:
        raise ValueError(f"images must have shape (N, C, H, W), got {tuple(images.shape)}")
    return show_grid(images.unsqueeze(0), col_labels=labels, title=title, cell=cell, value_range=value_range)


# --------------------------------------------------------------------------------------------------
# The book's figure style


@contextlib.contextmanager
def book_style(height: float = 3.2) -> Iterator[None]:
    """A matplotlib rc context for book figures, with the book's seaborn theme: ``FIGURE_WIDTH_IN`` x
    ``height`` inches at ``FIGURE_DPI``, constrained layout, fonts of at least ``MIN_FONT_PT`` points, a white
    grid and the colour-blind-safe :data:`PALETTE` (:data:`ROLES` names its colours).

    Use as ``with book_style(): fig, ax = plt.subplots()``. Pass ``figsize`` only to change the height.
    """
    import matplotlib

    check_real(height, "height (inches)", positive=True)
    with matplotlib.rc_context():
        _book_theme(height)
        yield
        # a backend first loaded inside the context (Jupyter's inline backend) switches interactive mode
        # on; restoring the rc would switch it off, and later figures would no longer show by themselves
        interactive = matplotlib.is_interactive()
    matplotlib.interactive(interactive)


def _book_theme(height: float) -> None:
    """The book's theme through :func:`seaborn.set_theme` (white grid, the :data:`PALETTE`, the sizes below)."""
    import seaborn as sns

    small, normal = MIN_FONT_PT, MIN_FONT_PT + 1
    sns.set_theme(
        context="notebook",
        style="whitegrid",
        palette=PALETTE,
        font="DejaVu Sans",
        rc={
            "figure.figsize": (FIGURE_WIDTH_IN, float(height)),
            "figure.dpi": FIGURE_DPI,
            "savefig.dpi": FIGURE_DPI,
            "figure.constrained_layout.use": True,
            "font.size": normal,
            "axes.titlesize": normal,
            "axes.labelsize": normal,
            "figure.titlesize": normal + 1,
            "xtick.labelsize": small,
            "ytick.labelsize": small,
            "legend.fontsize": small,
            "legend.title_fontsize": small,
            "legend.framealpha": 0.85,
            "grid.alpha": 0.5,
            "lines.markersize": 5,
            "axes.edgecolor": "0.3",
            "image.cmap": "viridis",
        },
    )


def time_axis(ax, label: str = "t / T") -> None:
    """Make ``ax``'s x axis a time axis running from T (left) to 0 (right), as generation does."""
    lo, hi = sorted(ax.get_xlim())
    ax.set_xlim(hi, lo)
    ax.set_xlabel(label)


def _min_font_pt(fig) -> float | None:
    """The smallest font size (points) of the figure's visible, non-empty texts (after drawing)."""
    from matplotlib.text import Text

    sizes = [
        t.get_fontsize()
        for t in fig.findobj(Text)
        if t.get_visible() and t.get_text().strip() and t.get_figure() is not None
    ]
    return float(min(sizes)) if sizes else None


def _png_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as image:
        return image.size


@dataclass(frozen=True)
class SavedFigure:
    """A figure saved by :func:`save_figure`. Shown in a notebook (the last expression of a cell, or
    ``display(...)``), it is the PNG with its caption below; in a chapter run by the book runner, a
    MyST ``figure`` that the book numbers ("Figure 3") and captions."""

    path: Path
    caption: str
    width_px: int
    height_px: int
    min_font_pt: float | None
    label: str

    def myst(self) -> str:
        """The MyST ``figure`` directive of this figure (path relative to the current folder)."""
        rel = os.path.relpath(self.path, Path.cwd()).replace(os.sep, "/")
        return f"```{{figure}} {rel}\n:name: {self.label}\n:alt: {_one_line(self.caption)}\n\n{self.caption}\n```\n"

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, Any]:
        png = base64.b64encode(self.path.read_bytes()).decode()
        if in_book_run():  # the book picks text/markdown (nb_mime_priority_overrides)
            return {"text/markdown": self.myst(), "image/png": png, "text/plain": self.caption}
        return {"image/png": png, "text/plain": f"Figure {self.path.name}: {self.caption}"}

    def _ipython_display_(self) -> None:
        from IPython.display import Markdown, display

        display(self._repr_mimebundle_(), raw=True)
        if not in_book_run():
            display(Markdown(f"*{self.caption}*"))


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _write_manifest(folder: Path, name: str, entry: dict[str, Any]) -> None:
    path = folder / MANIFEST
    try:
        data = json.loads(path.read_text()) if path.is_file() else {}
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    data[name] = entry
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def save_figure(
    fig,
    output_dir: str | os.PathLike,
    name: str,
    caption: str,
    *,
    dpi: int = FIGURE_DPI,
    label: str | None = None,
    close: bool = True,
) -> SavedFigure:
    """Save ``fig`` as ``<output_dir>/<name>.png`` at ``dpi`` and record its caption in
    ``<output_dir>/figures.json`` (with its pixel size and smallest font size).

    ``caption``: what to see in the figure (one or more sentences, MyST Markdown allowed);
    ``label``: the figure's name for cross-references (default ``fig-<name>``; unique in the book);
    ``close``: close the figure, so that the notebook's inline backend does not show it a second time.
    Returns a :class:`SavedFigure`: make it the last expression of the cell (or ``display`` it) to show
    the figure with its caption.
    """
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise ValueError(f"name must be a file name without folders or suffix (letters, digits, _ . -), got {name!r}")
    if not isinstance(caption, str) or not caption.strip():
        raise ValueError(f"caption must say what to see in the figure, got {caption!r}")
    check_int(dpi, "dpi", 1)
    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=dpi, bbox_inches="tight", pad_inches=0.05)
    width, height = _png_size(path)
    min_font = _min_font_pt(fig)
    _write_manifest(
        folder,
        name,
        {
            "file": path.name,
            "caption": caption.strip(),
            "width_px": width,
            "height_px": height,
            "dpi": dpi,
            "min_font_pt": min_font,
        },
    )
    if close:
        import matplotlib.pyplot as plt

        plt.close(fig)
    return SavedFigure(path, caption.strip(), width, height, min_font, label or f"fig-{name}")


def check_figure(
    path: str | os.PathLike, max_width_px: int = CONTENT_WIDTH_PX, min_font_pt: float = MIN_FONT_PT
) -> list[str]:
    """What is wrong with a saved figure (``[]``: nothing): wider than the content column (the page
    scales it down, and its text with it), no caption, or text below ``min_font_pt`` at its dpi.

    Reads the PNG's pixel width, and the caption and smallest font size from ``figures.json`` next to
    it (written by :func:`save_figure`; a figure saved otherwise has no caption).
    """
    path = Path(path)
    if not path.is_file():
        return [f"{path.name}: no such file"]
    width, _ = _png_size(path)
    problems = []
    scale = min(1.0, max_width_px / width)
    if width > max_width_px:
        problems.append(
            f"{path.name}: {width} px wide, wider than the {max_width_px} px content column "
            f"(shown at {scale:.0%}, its text with it)"
        )
    manifest = path.parent / MANIFEST
    try:
        entries = json.loads(manifest.read_text()) if manifest.is_file() else {}
    except ValueError:
        entries = {}
    entry = next((e for e in entries.values() if isinstance(e, dict) and e.get("file") == path.name), None)
    if entry is None or not str(entry.get("caption", "")).strip():
        problems.append(f"{path.name}: no caption (save it with pullback_utils.chapters.plotting.save_figure)")
    elif entry.get("min_font_pt") is not None:
        dpi = float(entry.get("dpi") or FIGURE_DPI)
        shown_px = float(entry["min_font_pt"]) * dpi / 72 * scale
        needed_px = min_font_pt * FIGURE_DPI / 72
        if shown_px < needed_px - 1e-9:
            problems.append(
                f"{path.name}: smallest text {entry['min_font_pt']:g} pt at dpi {dpi:g} is "
                f"{shown_px:.1f} px on the page, below {needed_px:.1f} px ({min_font_pt:g} pt at dpi {FIGURE_DPI})"
            )
    return problems
