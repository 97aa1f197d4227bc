"""Small, generic matplotlib helpers for the book's chapters: image strips and grids.

Images are tensors in model range [-1, 1], shaped (N, C, H, W) (C = 1 or 3).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

__all__ = ["show_strip", "show_grid"]


def _hwc(image: torch.Tensor, value_range: tuple[float, float]) -> Any:
    lo, hi = value_range
    a = ((image.detach().float().cpu() - lo) / (hi - lo)).clamp(0, 1)
    a = a.permute(1, 2, 0).numpy()
    return a[:, :, 0] if a.shape[2] == 1 else a


def show_grid(
    images: torch.Tensor,
    *,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    title: str | None = None,
    cell: float = 1.1,
    value_range: tuple[float, float] = (-1.0, 1.0),
    ax_fontsize: int = 8,
):
    """Show (R, K, C, H, W) images as an R x K grid (or (N, C, H, W) as one row); returns the figure.

    ``row_labels``/``col_labels`` label rows (left) and columns (top). ``cell`` is inches per image.
    """
    import matplotlib.pyplot as plt

    x = images if images.dim() == 5 else images.unsqueeze(0)
    if x.dim() != 5:
        raise ValueError(f"images must have shape (R, K, C, H, W) or (N, C, H, W), got {tuple(images.shape)}")
    rows, cols = x.shape[:2]
    if row_labels is not None and len(row_labels) != rows:
        raise ValueError(f"row_labels has {len(row_labels)} entries for {rows} rows")
    if col_labels is not None and len(col_labels) != cols:
        raise ValueError(f"col_labels has {len(col_labels)} entries for {cols} columns")
    fig, axes = plt.subplots(rows, cols, figsize=(cell * cols + (0.9 if row_labels else 0.1), cell * rows + (0.45 if title else 0.15)), squeeze=False)
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
