"""The frames of the chapters' interactive figures (pullback_utils.chapters.frame_figures)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from pullback_utils.chapters.frame_figures import basis_spectrum_frames  # noqa: E402
from pullback_utils.chapters.frames import save_frames  # noqa: E402
from pullback_utils.chapters.plotting import check_figure  # noqa: E402


def _data(n_t=3, k=4, n=2, r=9, seed=0):
    rng = np.random.default_rng(seed)
    return (
        rng.standard_normal((n_t, k, 3, 8, 8)),
        np.arange(r, dtype=float),
        rng.uniform(0.01, 1.0, (n_t, n, r)),
        [0.9, 0.5, 0.1][:n_t],
    )


def test_one_frame_per_time_on_the_same_axes_with_that_time_highlighted(tmp_path):
    v, f, psd, times = _data()
    figs = list(basis_spectrum_frames(v, f, psd, times, nyquist=6, flat=0.05))
    assert len(figs) == 3
    limits = set()
    for i, fig in enumerate(figs):
        spectrum = next(ax for ax in fig.axes if ax.get_yscale() == "log")
        limits.add(spectrum.get_ylim())
        thick = [ln for ln in spectrum.get_lines() if ln.get_linewidth() > 2]
        assert len(thick) == 1 and thick[0].get_label() == f"t = {times[i]:g}"
        np.testing.assert_allclose(thick[0].get_ydata(), psd[i].mean(0)[:7])  # the mean over samples, to nyquist
        grey = [ln for ln in spectrum.get_lines() if ln.get_linewidth() == 1 and len(ln.get_xdata()) == 7]
        assert len(grey) == 2  # the other times
        shown = [ax.get_images()[0].get_array() for ax in fig.axes if ax.get_images()]
        assert len(shown) == 4
        # v_1 scaled to its largest absolute entry, shown as signed RGB (grey = 0)
        np.testing.assert_allclose(shown[0], (np.transpose(v[i, 0], (1, 2, 0)) / np.abs(v[i, 0]).max() + 1) / 2)
    assert len(limits) == 1  # the same y axis in every frame: a slider compares like with like
    lo, hi = limits.pop()
    assert lo < min(psd.mean(1)[:, :7].min(), 0.05) and hi > psd.mean(1)[:, :7].max()
    fr = save_frames(figs, tmp_path, "c2f", labels=[f"t = {t}" for t in times], caption="c")
    assert all(check_figure(p) == [] for p in fr.paths)  # page width, legible


def test_bad_shapes_are_refused():
    v, f, psd, times = _data()
    with pytest.raises(ValueError, match=r"vectors must have shape \(n_t=3, K, C, H, W\)"):
        next(basis_spectrum_frames(v[:2], f, psd, times, nyquist=6, flat=0.05))
    with pytest.raises(ValueError, match=r"psd must have shape \(n_t=3, n, R=5\), got \(3, 2, 9\)"):
        next(basis_spectrum_frames(v, f[:5], psd, times, nyquist=4, flat=0.05))
    with pytest.raises(ValueError, match=r"nyquist must index freqs \(0..8\)"):
        next(basis_spectrum_frames(v, f, psd, times, nyquist=9, flat=0.05))
    plt.close("all")
