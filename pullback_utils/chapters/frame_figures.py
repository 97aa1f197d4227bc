"""The frames of the chapters' interactive figures (:mod:`pullback_utils.chapters.frames`): one figure per
frame, all of the same size and axes, in the book's style (:func:`pullback_utils.chapters.plotting.book_style`).

Frames made of images alone use :func:`pullback_utils.chapters.plotting.show_grid` directly; this module
holds the frames that combine panels.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from pullback_utils.chapters.plotting import FIGURE_WIDTH_IN, MIN_FONT_PT, book_style

__all__ = ["basis_spectrum_frames"]


def _signed_rgb(v: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """(C, H, W) in [-1, 1] -> an image for imshow and its keywords: RGB for 3 channels (grey is zero),
    a diverging map for one channel."""
    if v.shape[0] == 1:
        return v[0], {"cmap": "RdBu_r", "vmin": -1.0, "vmax": 1.0}
    return np.clip((np.transpose(v[:3], (1, 2, 0)) + 1) / 2, 0, 1), {}


def basis_spectrum_frames(
    vectors: Any, freqs: Any, psd: Any, times: Sequence[float], *, nyquist: int, flat: float, height: float = 3.0
) -> Iterator[Any]:
    """One figure per time: the basis vectors of one sample at that time (left, each scaled to its largest
    absolute entry) beside the mean power spectrum of the basis at every time (right: grey, the current
    time in colour, white noise dotted), on axes that are the same in every frame.

    Args:
        vectors: (n_t, K, C, H, W) basis vectors of one sample (K <= 6 are shown, in a 2 x 3 grid).
        freqs: (R,) radial frequencies; psd: (n_t, n, R) power per frequency of every sample's basis.
        times: the n_t times (fractions of T); nyquist: the last frequency bin drawn; flat: white noise's
            power per frequency.
    Yields:
        n_t matplotlib figures (the caller saves and closes them: :func:`~pullback_utils.chapters.frames.save_frames`).
    """
    import matplotlib.pyplot as plt

    v = np.asarray(vectors, dtype=np.float64)
    p = np.asarray(psd, dtype=np.float64)
    f = np.asarray(freqs, dtype=np.float64)
    times = [float(t) for t in times]
    if v.ndim != 5 or v.shape[0] != len(times):
        raise ValueError(f"vectors must have shape (n_t={len(times)}, K, C, H, W), got {v.shape}")
    if p.ndim != 3 or p.shape[0] != len(times) or p.shape[2] != f.shape[0]:
        raise ValueError(f"psd must have shape (n_t={len(times)}, n, R={f.shape[0]}), got {p.shape}")
    if not 0 <= int(nyquist) < f.shape[0]:
        raise ValueError(f"nyquist must index freqs (0..{f.shape[0] - 1}), got {nyquist!r}")
    cut = int(nyquist) + 1
    mean = p.mean(axis=1)[:, :cut]
    positive = mean[mean > 0]
    lo = min(float(positive.min()) if positive.size else flat, flat) / 2
    hi = max(float(mean.max()), flat) * 2
    k = min(v.shape[1], 6)
    scale = np.abs(v[:, :k].reshape(len(times), k, -1)).max(axis=2).clip(min=1e-12)
    colours = plt.cm.viridis(np.linspace(0, 0.85, len(times)))  # no pale yellow on white
    for i, t in enumerate(times):
        with book_style(height):
            fig = plt.figure(figsize=(FIGURE_WIDTH_IN, height))
            left, right = fig.subfigures(1, 2, width_ratios=[1.0, 1.15])
            axes = left.subplots(2, 3)
            for j, ax in enumerate(axes.flat):
                ax.set_xticks([])
                ax.set_yticks([])
                if j < k:
                    img, kw = _signed_rgb(v[i, j] / scale[i, j])
                    ax.imshow(img, interpolation="nearest", **kw)
                    ax.set_title(f"v{j + 1}", fontsize=MIN_FONT_PT)
                else:
                    ax.set_frame_on(False)
            left.suptitle(f"basis of sample 0 at t = {t:g}", fontsize=MIN_FONT_PT + 1)
            ax = right.subplots()
            for j, s in enumerate(times):
                if j != i:
                    ax.semilogy(f[:cut], mean[j], color="0.8", lw=1)
            ax.semilogy(f[:cut], mean[i], color=colours[i], lw=2.5, label=f"t = {t:g}")
            ax.axhline(flat, color="grey", ls=":", label="white noise")
            ax.plot([], [], color="0.8", lw=1, label="other times")
            ax.set_ylim(lo, hi)
            ax.set_xlim(f[0], f[cut - 1])
            ax.set_xlabel("radial frequency (cycles per image)")
            ax.set_ylabel("mean power per frequency")
            ax.grid(alpha=0.3)
            ax.legend(loc="upper right")
        yield fig
