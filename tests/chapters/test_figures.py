"""The chapters' seaborn figures (pullback_utils.chapters.figures) against the data they plot: the lines are the
means, the bands the intervals of the tests (Student-t over samples, jackknife over sample pairs), the
heatmap's numbers the mean distances; the book theme's colours and fonts; image helpers."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402
from scipy import stats  # noqa: E402

from pullback_utils.analysis.inference import pair_u_test  # noqa: E402
from pullback_utils.chapters import figures  # noqa: E402
from pullback_utils.chapters.plotting import MIN_FONT_PT, PALETTE, ROLES, book_style, show_grid, show_signed  # noqa: E402

TIMES = [0.9, 0.5, 0.1]


def _t_interval(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = x.shape[1]
    half = stats.t.ppf(0.975, n - 1) * x.std(axis=1, ddof=1) / np.sqrt(n)
    return x.mean(1) - half, x.mean(1) + half


def _band(poly: PolyCollection, xs) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper edge of a fill_between band at each x."""
    v = poly.get_paths()[0].vertices
    lo = [v[np.isclose(v[:, 0], x), 1].min() for x in xs]
    hi = [v[np.isclose(v[:, 0], x), 1].max() for x in xs]
    return np.array(lo), np.array(hi)


def _pairs(rng, n_t: int, n: int) -> np.ndarray:
    a = rng.uniform(0.5, 1.5, (n_t, n, n))
    a = a + a.transpose(0, 2, 1)
    for k in range(n_t):
        np.fill_diagonal(a[k], 0.0)
    return a


def test_over_t_draws_the_means_and_their_student_t_bands():
    rng = np.random.default_rng(0)
    low, ctrl = rng.uniform(0.2, 0.9, (3, 10)), rng.uniform(0.2, 0.9, (2, 6))
    fig = figures.over_t(
        [
            {"label": "trained", "values": low, "role": "trained"},
            {"label": "random weights", "values": ctrl, "times": [0.9, 0.1], "role": "random_weights"},
        ],
        TIMES,
        ylabel="share",
        lines=[(0.07, "white noise", ":")],
    )
    ax = fig.axes[0]
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    for label, data, ts in (("trained", low, TIMES), ("random weights", ctrl, [0.9, 0.1])):
        order = np.argsort(ts)
        np.testing.assert_allclose(lines[label].get_xdata(), np.asarray(ts)[order])
        np.testing.assert_allclose(lines[label].get_ydata(), data.mean(1)[order])
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(bands) == 2
    for band, data, ts in zip(bands, (low, ctrl), (TIMES, [0.9, 0.1])):
        lo, hi = _band(band, ts)
        want_lo, want_hi = _t_interval(data)
        np.testing.assert_allclose(lo, want_lo, rtol=1e-9)
        np.testing.assert_allclose(hi, want_hi, rtol=1e-9)
        assert to_hex(band.get_facecolor()[0]) == ROLES["trained" if data is low else "random_weights"]
    assert ax.get_xlim()[0] > ax.get_xlim()[1]  # time runs from T (left) to 0
    assert lines["white noise"].get_ydata()[0] == 0.07
    plt.close(fig)


def test_distances_over_t_bands_are_the_jackknife_intervals_over_samples():
    rng = np.random.default_rng(1)
    cross, matched = _pairs(rng, 3, 8), _pairs(rng, 3, 8)
    fig = figures.distances_over_t([{"title": "u", "cross": cross, "matched": matched, "random": 2.0}], TIMES)
    ax = fig.axes[0]
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    for band, data in zip(bands, (cross, matched)):
        res = [pair_u_test(c) for c in data]
        lo, hi = _band(band, TIMES)
        np.testing.assert_allclose(lo, [r.ci[0] for r in res], rtol=1e-9)
        np.testing.assert_allclose(hi, [r.ci[1] for r in res], rtol=1e-9)
    plt.close(fig)


def test_self_distance_heatmap_annotates_the_mean_distances_with_a_colour_bar():
    rng = np.random.default_rng(2)
    selfd = rng.uniform(0, 3, (5, 3, 3))
    fig = figures.self_distance_heatmap([{"title": "u", "self": selfd, "vmax": 3.5}], TIMES)
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert texts == [f"{v:.1f}" for v in selfd.mean(0).ravel()]
    assert min(t.get_fontsize() for t in ax.texts) >= MIN_FONT_PT
    cbar = fig.axes[1]
    assert cbar.get_ylabel() == "rad" and cbar.get_ylim() == (0.0, 3.5)
    plt.close(fig)


def test_ablation_bars_are_the_means_with_their_t_intervals_and_the_samples_as_points():
    rng = np.random.default_rng(3)
    p = {
        "title": "u",
        "time_only": rng.uniform(0, 1, 7),
        "state_only": rng.uniform(0, 1, 7),
        "total": rng.uniform(0, 1, 7),
        "floor": 0.05,
    }
    fig = figures.ablation_bars([p])
    ax = fig.axes[0]
    heights = [b.get_height() for b in ax.patches]
    np.testing.assert_allclose(heights, [p[k].mean() for k in ("time_only", "state_only", "total")])
    data = np.stack([p[k] for k in ("time_only", "state_only", "total")])
    lo, hi = _t_interval(data)
    bars = sorted(
        (np.nanmean(ln.get_xdata()), np.nanmin(ln.get_ydata()), np.nanmax(ln.get_ydata()))
        for ln in ax.get_lines()
        if len(ln.get_xdata()) > 2
    )  # error bar with caps, left to right
    np.testing.assert_allclose([b[1:] for b in bars], np.stack([lo, hi], 1), rtol=1e-9)
    points = np.concatenate([c.get_offsets()[:, 1] for c in ax.collections if len(c.get_offsets())])
    np.testing.assert_allclose(np.sort(points), np.sort(data.ravel()))
    plt.close(fig)


def test_the_book_theme_sets_the_palette_and_keeps_fonts_legible():
    import matplotlib as mpl

    with book_style():
        colours = [to_hex(c["color"]) for c in mpl.rcParams["axes.prop_cycle"]]
        assert colours == PALETTE
        assert min(mpl.rcParams[k] for k in ("font.size", "xtick.labelsize", "legend.fontsize")) >= MIN_FONT_PT
        assert mpl.rcParams["axes.grid"]
    assert not mpl.rcParams["axes.grid"] or mpl.rcParamsDefault["axes.grid"]  # restored on exit
    assert set(ROLES) == {"trained", "random_weights", "matched", "gaussian", "reference"}
    assert len(set(ROLES.values())) == len(ROLES) and set(ROLES.values()) <= set(PALETTE)


def test_grid_column_titles_are_wrapped_so_they_do_not_overlap():
    labels = ["unedited", "guidance on the generation prompt", "guidance on the edit prompt"]
    fig = show_grid(torch.zeros(1, 3, 3, 8, 8), col_labels=labels, cell=1.1)
    fig.canvas.draw()
    boxes = [ax.title.get_window_extent() for ax in fig.axes]
    for a, b in zip(boxes, boxes[1:]):
        assert a.x1 <= b.x0, "column titles overlap"
    assert [ax.get_title().replace("\n", " ") for ax in fig.axes] == labels
    plt.close(fig)


def test_show_signed_draws_each_vectors_channel_mean_on_a_symmetric_scale():
    v = torch.randn(5, 3, 6, 6)
    fig = show_signed(v, labels=[f"v{i}" for i in range(5)], ncols=3)
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 5
    for i, im in enumerate(images):
        mean = v[i].mean(0)
        np.testing.assert_allclose(im.get_array(), (mean / mean.abs().max()).numpy(), rtol=1e-6)
        assert im.get_clim() == (-1.0, 1.0)
    assert any(ax.get_ylabel() == "channel mean / max |.|" for ax in fig.axes)  # the colour bar
    plt.close(fig)
