"""Tests of pullback_utils.analysis.descriptive: bootstrap CIs and the trend statistic (verdicts: test_inference.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from pullback_utils.analysis.descriptive import (
    bootstrap_ci,
    bootstrap_ci_from_index,
    bootstrap_diff_ci,
    bootstrap_pairwise_mean_ci,
    spearman,
    spearman_trend,
)


def test_bootstrap_ci_basic_and_deterministic() -> None:
    x = np.random.default_rng(0).normal(2.0, 1.0, size=50)
    est, low, high = bootstrap_ci(x, n_boot=1000, seed=3)
    assert est == pytest.approx(x.mean())
    assert low < est < high
    # close to the normal-theory interval
    se = x.std(ddof=1) / math.sqrt(50)
    assert low == pytest.approx(est - 1.96 * se, abs=0.6 * se)
    assert high == pytest.approx(est + 1.96 * se, abs=0.6 * se)
    assert bootstrap_ci(x, n_boot=1000, seed=3) == (est, low, high)
    assert bootstrap_ci(x, n_boot=1000, seed=4) != (est, low, high)
    # a wider level gives a wider interval
    _, l99, h99 = bootstrap_ci(x, n_boot=1000, seed=3, ci=0.99)
    assert l99 < low and h99 > high


def test_bootstrap_ci_coverage_near_nominal() -> None:
    # 200 normal samples of n=40; the 90% percentile-bootstrap CI of the mean should cover the true
    # mean about 90% of the time (binomial sd ~2.1%; percentile CIs run slightly narrow).
    rng = np.random.default_rng(1)
    hits = 0
    reps = 200
    for r in range(reps):
        x = rng.normal(0.5, 2.0, size=40)
        _, low, high = bootstrap_ci(x, n_boot=400, ci=0.90, seed=r)
        hits += low <= 0.5 <= high
    assert 0.82 <= hits / reps <= 0.96


def test_bootstrap_ci_axis_and_vector_statistic() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 30)) + np.array([[0.0], [5.0], [-5.0]])
    est, low, high = bootstrap_ci(x, lambda a: a.mean(axis=1), n_boot=300, axis=1)
    assert est.shape == low.shape == high.shape == (3,)
    assert np.all(low < est) and np.all(est < high)
    assert high[2] < low[0] < high[0] < low[1]


def test_bootstrap_paired_tuple_and_diff() -> None:
    rng = np.random.default_rng(3)
    base = rng.normal(0.0, 5.0, size=30)  # large shared per-unit variation
    a = base + 0.5 + rng.normal(0.0, 0.2, size=30)
    b = base
    est_p, lo_p, hi_p = bootstrap_diff_ci(a, b, paired=True, n_boot=500)
    est_t, lo_t, hi_t = bootstrap_ci((a, b), lambda u, v: np.mean(u - v), n_boot=500)
    assert (est_p, lo_p, hi_p) == pytest.approx((est_t, lo_t, hi_t))
    assert lo_p > 0  # pairing removes the shared variation
    est_u, lo_u, hi_u = bootstrap_diff_ci(a, b, paired=False, n_boot=500)
    assert est_u == pytest.approx(est_p)
    assert lo_u < 0 < hi_u  # unpaired: swamped by the per-unit variation
    # unequal sizes work unpaired only
    est, lo, hi = bootstrap_diff_ci(rng.normal(1, 1, 40), rng.normal(0, 1, 25), n_boot=300)
    assert lo < est < hi
    with pytest.raises(ValueError, match="same length"):
        bootstrap_diff_ci(np.ones(4), np.ones(5), paired=True)


def test_bootstrap_from_index_and_pairwise_mean() -> None:
    rng = np.random.default_rng(4)
    pts = rng.normal(size=(25, 3))
    d = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
    est, low, high = bootstrap_pairwise_mean_ci(d, n_boot=300)
    iu = np.triu_indices(25, 1)
    assert est == pytest.approx(d[iu].mean())
    assert low < est < high
    # self-pairs of resampled duplicates are excluded, so the interval is not biased towards 0
    assert low > 0.8 * est
    e2, l2, h2 = bootstrap_ci_from_index(25, lambda i: pts[i, 0].mean(), n_boot=300)
    assert e2 == pytest.approx(pts[:, 0].mean()) and l2 < e2 < h2


def test_spearman_matches_scipy_and_trend() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=30)
    y = x + rng.normal(size=30)
    y[3] = y[4]  # a tie
    assert spearman(x, y) == pytest.approx(scipy.stats.spearmanr(x, y).statistic)
    assert math.isnan(spearman(x, np.ones(30)))
    t = np.linspace(0.05, 1.0, 10)
    # (n, m) form: 12 samples, distances growing with t plus per-sample offsets
    ys = t[None, :] + rng.normal(0, 0.5, size=(12, 1)) + rng.normal(0, 0.1, size=(12, 10))
    rho, low, high = spearman_trend(t, ys, n_boot=300)
    assert 0 < low < rho < high
    # (m,) form, no trend
    rho0, low0, high0 = spearman_trend(t, rng.normal(size=10), n_boot=300, seed=1)
    assert low0 < rho0 < high0
    assert spearman_trend(t, ys, n_boot=300) == (rho, low, high)


def test_spearman_trend_bad_input() -> None:
    with pytest.raises(ValueError, match="x"):
        spearman_trend([1.0], [2.0])
    with pytest.raises(ValueError, match="columns"):
        spearman_trend([1.0, 2.0, 3.0], np.ones((4, 2)))
    with pytest.raises(ValueError, match="y"):
        spearman_trend([1.0, 2.0], [1.0, np.nan])


def test_bootstrap_bad_input() -> None:
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_ci(np.ones(5), n_boot=0)
    with pytest.raises(ValueError, match="ci"):
        bootstrap_ci(np.ones(5), ci=1.0)
    with pytest.raises(ValueError, match="non-finite"):
        bootstrap_ci(np.array([1.0, np.inf]))
    with pytest.raises(ValueError, match="empty"):
        bootstrap_ci(np.array([]))
    with pytest.raises(ValueError, match="axis"):
        bootstrap_ci(np.ones(5), axis=1)
    with pytest.raises(ValueError, match="square"):
        bootstrap_pairwise_mean_ci(np.ones((2, 3)))
    with pytest.raises(ValueError, match="n >= 2"):
        bootstrap_pairwise_mean_ci(np.zeros((1, 1)))
