"""The units panel (pullback_utils.chapters.units): the points drawn are the values the test was given, the
interval drawn is the test's own, and points that are not the test's are refused."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import LineCollection, PathCollection  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402

from pullback_utils.analysis import inference as inf  # noqa: E402
from pullback_utils.chapters.plotting import ROLES  # noqa: E402
from pullback_utils.chapters.units import claim_units, unit_values  # noqa: E402


def _points(ax) -> list[np.ndarray]:
    """The y values of each strip of points, left to right."""
    strips = [c for c in ax.collections if isinstance(c, PathCollection) and len(c.get_offsets())]
    strips.sort(key=lambda c: float(np.mean(c.get_offsets()[:, 0])))
    return [np.asarray(c.get_offsets())[:, 1] for c in strips], strips


def _intervals(ax) -> list[tuple[float, float]]:
    """The (low, high) of each vertical error bar, left to right."""
    bars = []
    for c in ax.collections:
        if isinstance(c, LineCollection):
            for seg in c.get_segments():
                if len(seg) == 2 and np.isclose(seg[0][0], seg[1][0]):
                    bars.append((float(seg[0][0]), min(seg[0][1], seg[1][1]), max(seg[0][1], seg[1][1])))
    return [(lo, hi) for _, lo, hi in sorted(bars)]


def test_points_are_the_units_and_the_interval_is_the_tests():
    rng = np.random.default_rng(3)
    trained, control = rng.normal(0.3, 0.2, 12), rng.normal(0.0, 0.1, 9)
    res, ctrl = inf.sign_flip_test(trained, seed=0), inf.sign_flip_test(control, seed=0)
    fig = claim_units(
        [
            {
                "title": "c",
                "ylabel": "shift",
                "null": 0.0,
                "groups": {"trained": (res, trained), "random_weights": (ctrl, control)},
            }
        ]
    )
    ax = fig.axes[0]
    values, strips = _points(ax)
    assert len(values) == 2
    np.testing.assert_allclose(np.sort(values[0]), np.sort(trained))
    np.testing.assert_allclose(np.sort(values[1]), np.sort(control))
    assert to_hex(strips[0].get_facecolor()[0]) == ROLES["trained"]
    assert to_hex(strips[1].get_facecolor()[0]) == ROLES["random_weights"]
    # the drawn interval is the test's (a Student-t interval, computed here independently)
    from scipy import stats

    for got, x in zip(_intervals(ax), (trained, control)):
        half = stats.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size)
        np.testing.assert_allclose(got, (x.mean() - half, x.mean() + half), rtol=1e-9)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["trained\n(n = 12)", "random\nweights\n(n = 9)"]
    plt.close(fig)


def test_an_interval_passed_in_a_record_is_drawn_as_given():
    x = np.array([0.1, 0.4, 0.2, 0.3])
    record = {"estimate": 0.25, "ci": [-1.0, 2.0], "test": "sign-flip (exact)"}
    fig = claim_units([{"title": "c", "ylabel": "y", "null": 0.0, "groups": {"trained": (record, x)}}])
    assert _intervals(fig.axes[0]) == [(-1.0, 2.0)]
    plt.close(fig)


def test_points_that_are_not_the_tests_units_are_refused():
    x = np.linspace(0, 1, 10)
    res = inf.sign_flip_test(x, seed=0)
    with pytest.raises(ValueError, match="not the test's estimate"):
        claim_units([{"title": "c", "ylabel": "y", "null": 0.0, "groups": {"trained": (res, x + 0.1)}}])
    with pytest.raises(ValueError, match="roles"):
        claim_units([{"title": "c", "ylabel": "y", "null": 0.0, "groups": {"model": (res, x)}}])


def test_pair_values_become_each_units_mean_over_its_pairs():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(8, 8))
    pairs = a + a.T
    np.fill_diagonal(pairs, 0.0)
    units = unit_values(pairs)
    # oracle: a loop over the other units
    np.testing.assert_allclose(units, [np.mean([pairs[i, j] for j in range(8) if j != i]) for i in range(8)])
    # their mean is the mean over pairs, which is the jackknife test's estimate: the panel accepts them
    res = inf.pair_u_test(pairs)
    assert np.isclose(units.mean(), res.estimate)
    fig = claim_units([{"title": "c", "ylabel": "rho", "null": 0.0, "groups": {"matched": (res, pairs)}}])
    np.testing.assert_allclose(np.sort(_points(fig.axes[0])[0][0]), np.sort(units))
    plt.close(fig)


def test_a_mantel_result_supplies_its_own_per_state_units():
    rng = np.random.default_rng(1)
    p, s = 6, 5
    sim = rng.integers(0, 3, (p, p)).astype(float)
    sim = sim + sim.T
    d = rng.uniform(size=(s, p, p))
    d = d + d.transpose(0, 2, 1)
    for k in range(s):
        np.fill_diagonal(d[k], 0.0)
    res = inf.mantel_test(d, sim, n_draws=199)
    fig = claim_units([{"title": "c", "ylabel": "rho", "null": 0.0, "groups": {"trained": (res, None)}}])
    np.testing.assert_allclose(np.sort(_points(fig.axes[0])[0][0]), np.sort(res.extra["per_stratum"]))
    assert _intervals(fig.axes[0]) == [pytest.approx(res.ci)]
    plt.close(fig)


def test_a_trend_claim_draws_the_group_means_against_their_covariate():
    x = np.repeat([1.0, 2.0, 3.0, 4.0], 2)
    y = x * 0.1 + np.array([0.01, -0.01] * 4)
    res = inf.nested_trend_test(x, np.repeat(list("abcd"), 2), y, n_boot=50)
    fig = claim_units(
        [
            {
                "title": "c",
                "ylabel": "spread",
                "null": 0.0,
                "xlabel": "factors",
                "x": {"trained": [1.0, 2.0, 3.0, 4.0]},
                "groups": {"trained": (res, None)},
                "replicates": {"trained": (x, y)},
            }
        ]
    )
    seeds = [c for c in fig.axes[0].collections if isinstance(c, PathCollection)]
    np.testing.assert_allclose(seeds[0].get_offsets(), np.stack([x, y], 1))
    line = fig.axes[0].get_lines()[0]
    np.testing.assert_allclose(line.get_xdata(), [1, 2, 3, 4])
    np.testing.assert_allclose(line.get_ydata(), list(res.extra["group_means"].values()))
    assert fig.axes[0].get_legend().get_texts()[0].get_text().startswith(f"trained: {res.estimate:.2f}")
    plt.close(fig)
