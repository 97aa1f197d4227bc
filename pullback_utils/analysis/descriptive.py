"""Bootstrap confidence intervals and trend statistics (descriptive intervals; tests live in inference).

Bootstrap
---------
Percentile bootstrap: the statistic is recomputed on ``n_boot`` resamples drawn with replacement
(indices from ``numpy.random.default_rng(seed)``, so results are deterministic for a seed); the CI at
level ``ci`` is the ``(1-ci)/2`` and ``(1+ci)/2`` quantiles of the replicates, and the point estimate
is the statistic on the original data. Resampling is always over *units* (rows along ``axis``):
paired data share one index per replicate; statistics of a pairwise matrix over samples (e.g. the
mean cross-sample geodesic distance) resample the samples, not the pairs
(:func:`bootstrap_pairwise_mean_ci`); anything else can be written as a function of the resampled
index (:func:`bootstrap_ci_from_index`).

Verdicts are not made here: the tests and the verdict rule are in :mod:`pullback_utils.analysis.inference`
(percentile intervals under-cover at the book's small sample sizes).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from pullback_utils._validate import is_int

__all__ = [
    "bootstrap_ci",
    "bootstrap_ci_from_index",
    "bootstrap_diff_ci",
    "bootstrap_pairwise_mean_ci",
    "spearman",
    "spearman_trend",
]

Estimate = Any  # float, or an ndarray when the statistic returns an array


def _check_boot_args(n_boot: int, ci: float) -> None:
    if not is_int(n_boot) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    if not isinstance(ci, (float, int, np.floating)) or not (0.0 < float(ci) < 1.0):
        raise ValueError(f"ci must be a number strictly between 0 and 1, got {ci!r}")


def _scalarize(x: Any) -> Estimate:
    arr = np.asarray(x, dtype=np.float64)
    return float(arr) if arr.ndim == 0 else arr


def _percentile_interval(reps: np.ndarray, ci: float) -> tuple[Any, Any]:
    """Quantiles over axis 0 of the replicates, ignoring non-finite replicates (with a warning)."""
    bad = ~np.isfinite(reps.reshape(reps.shape[0], -1)).all(axis=1)
    n_bad = int(bad.sum())
    if n_bad:
        if n_bad == reps.shape[0]:
            raise ValueError("statistic was non-finite on every bootstrap resample")
        warnings.warn(
            f"{n_bad} of {reps.shape[0]} bootstrap replicates were non-finite and were ignored",
            RuntimeWarning,
            stacklevel=3,
        )
        reps = reps[~bad]
    alpha = (1.0 - float(ci)) / 2.0
    low = np.quantile(reps, alpha, axis=0)
    high = np.quantile(reps, 1.0 - alpha, axis=0)
    return _scalarize(low), _scalarize(high)


def bootstrap_ci_from_index(
    n: int,
    statistic: Callable[[np.ndarray], Any],
    *,
    n_boot: int = 2000,
    ci: float = 0.95,
    seed: int = 0,
) -> tuple[Estimate, Estimate, Estimate]:
    """Percentile bootstrap of any statistic written as a function of a unit index.

    Args:
        n: number of units (samples) to resample.
        statistic: ``f(idx)`` with ``idx`` an int array ``(n,)`` of unit indices; it is called once
            with ``np.arange(n)`` for the estimate, then on ``n_boot`` resamples. May return a
            scalar or a fixed-shape array.
        n_boot, ci, seed: number of replicates, CI level, seed.

    Returns:
        ``(estimate, low, high)`` (floats, or arrays of the statistic's shape).
    """
    if not is_int(n) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    _check_boot_args(n_boot, ci)
    estimate = _scalarize(statistic(np.arange(n)))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    reps = np.stack([np.asarray(statistic(i), dtype=np.float64) for i in idx])
    low, high = _percentile_interval(reps, ci)
    return estimate, low, high


def _as_sample_tuple(samples: Any, axis: int, name: str) -> tuple[tuple[np.ndarray, ...], int]:
    arrays = samples if isinstance(samples, tuple) else (samples,)
    out = []
    n = None
    for j, s in enumerate(arrays):
        label = name if len(arrays) == 1 else f"{name}[{j}]"
        a = np.asarray(s.detach().cpu().numpy() if hasattr(s, "detach") else s, dtype=np.float64)
        if a.ndim == 0:
            raise ValueError(f"{label} must be an array of samples, got a scalar")
        if not -a.ndim <= axis < a.ndim:
            raise ValueError(f"axis={axis} is out of range for {label} with shape {a.shape}")
        if not np.isfinite(a).all():
            raise ValueError(f"{label} contains non-finite values (nan or inf)")
        if a.shape[axis] == 0:
            raise ValueError(f"{label} is empty along axis {axis}")
        if n is None:
            n = a.shape[axis]
        elif a.shape[axis] != n:
            raise ValueError(
                f"paired samples must have the same length along axis {axis}: "
                f"{name}[0] has {n}, {label} has {a.shape[axis]}"
            )
        out.append(a)
    return tuple(out), int(n)  # type: ignore[arg-type]


def bootstrap_ci(
    samples: Any,
    statistic: Callable[..., Any] = np.mean,
    n_boot: int = 2000,
    ci: float = 0.95,
    seed: int = 0,
    *,
    axis: int = 0,
) -> tuple[Estimate, Estimate, Estimate]:
    """Percentile bootstrap CI of ``statistic(samples)``.

    Args:
        samples: array ``(n, ...)`` (units along ``axis``), or a tuple of arrays with the same
            length along ``axis`` -- *paired* data, resampled with one shared index; ``statistic``
            then receives one resampled array per element (e.g.
            ``lambda a, b: np.mean(a - b)``).
        statistic: function of the resampled array(s); default ``np.mean`` (over all elements).
            Must not depend on the order of units. May return an array (then CIs are per entry).
        n_boot: number of bootstrap replicates.
        ci: confidence level in (0, 1).
        seed: seed of ``numpy.random.default_rng``.
        axis: the axis of units that is resampled.

    Returns:
        ``(estimate, low, high)``.
    """
    arrays, n = _as_sample_tuple(samples, axis, "samples")

    def stat_of_index(idx: np.ndarray) -> Any:
        return statistic(*(np.take(a, idx, axis=axis) for a in arrays))

    return bootstrap_ci_from_index(n, stat_of_index, n_boot=n_boot, ci=ci, seed=seed)


def bootstrap_diff_ci(
    a: Any,
    b: Any,
    statistic: Callable[[np.ndarray], Any] = np.mean,
    n_boot: int = 2000,
    ci: float = 0.95,
    seed: int = 0,
    *,
    paired: bool = False,
    axis: int = 0,
) -> tuple[Estimate, Estimate, Estimate]:
    """Bootstrap CI of ``statistic(a) - statistic(b)`` (default: difference of means).

    Args:
        a: ``(n_a, ...)`` samples.
        b: ``(n_b, ...)`` samples.
        statistic: applied to each group separately.
        paired: if True, ``a`` and ``b`` are paired (``n_a == n_b``, unit i of both measured
            together) and are resampled with one shared index; otherwise they are resampled
            independently (two-sample bootstrap).
        n_boot, ci, seed, axis: as in :func:`bootstrap_ci`.

    Returns:
        ``(estimate, low, high)`` of the difference ``a - b``.
    """
    if paired:
        return bootstrap_ci(
            (a, b), lambda x, y: np.asarray(statistic(x)) - np.asarray(statistic(y)), n_boot, ci, seed, axis=axis
        )
    (xa,), na = _as_sample_tuple(a, axis, "a")
    (xb,), nb = _as_sample_tuple(b, axis, "b")
    _check_boot_args(n_boot, ci)
    estimate = _scalarize(np.asarray(statistic(xa)) - np.asarray(statistic(xb)))
    rng = np.random.default_rng(seed)
    ia = rng.integers(0, na, size=(n_boot, na))
    ib = rng.integers(0, nb, size=(n_boot, nb))
    reps = np.stack(
        [
            np.asarray(statistic(np.take(xa, i, axis=axis)), dtype=np.float64)
            - np.asarray(statistic(np.take(xb, j, axis=axis)), dtype=np.float64)
            for i, j in zip(ia, ib)
        ]
    )
    low, high = _percentile_interval(reps, ci)
    return estimate, low, high


def _pairwise_mean(d: np.ndarray, idx: np.ndarray) -> float:
    sub = d[np.ix_(idx, idx)]
    keep = idx[:, None] != idx[None, :]  # drop pairs of a resampled unit with its own copy
    return float(sub[keep].mean()) if keep.any() else math.nan


def bootstrap_pairwise_mean_ci(
    dist: Any,
    n_boot: int = 2000,
    ci: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Mean off-diagonal entry of a symmetric ``(n, n)`` matrix (e.g. cross-sample geodesic
    distances) with a bootstrap CI that resamples the n *samples* (rows and columns together).

    Pairs of a resampled sample with a copy of itself are left out of each replicate (their
    distance is 0 by construction, not a measurement). Needs ``n >= 2``.
    """
    d = np.asarray(dist.detach().cpu().numpy() if hasattr(dist, "detach") else dist, dtype=np.float64)
    if d.ndim != 2 or d.shape[0] != d.shape[1]:
        raise ValueError(f"dist must be a square (n, n) matrix, got shape {d.shape}")
    if d.shape[0] < 2:
        raise ValueError(f"dist must have n >= 2 samples, got n={d.shape[0]}")
    if not np.isfinite(d).all():
        raise ValueError("dist contains non-finite values (nan or inf)")
    return bootstrap_ci_from_index(d.shape[0], lambda i: _pairwise_mean(d, i), n_boot=n_boot, ci=ci, seed=seed)


def spearman(x: Any, y: Any) -> float:
    """Spearman rank correlation (average ranks for ties); nan if either input is constant."""
    from scipy.stats import rankdata

    rx = rankdata(np.asarray(x, dtype=np.float64))
    ry = rankdata(np.asarray(y, dtype=np.float64))
    rx = rx - rx.mean()
    ry = ry - ry.mean()
    den = math.sqrt(float(rx @ rx) * float(ry @ ry))
    return float(rx @ ry / den) if den > 0 else math.nan


def spearman_trend(
    x: Any,
    y: Any,
    n_boot: int = 2000,
    ci: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Monotone trend of ``y`` in ``x``: Spearman's rho with a bootstrap CI.

    Args:
        x: ``(m,)`` the ordered variable (e.g. timesteps t/T).
        y: ``(m,)`` one measurement per ``x`` -- the ``m`` (x, y) pairs are resampled; or
            ``(n, m)``, row ``i`` the measurements of unit ``i`` (e.g. sample i) at every ``x`` --
            rho is computed on all ``n*m`` pooled pairs and the ``n`` units (rows) are resampled
            (cluster bootstrap, respecting that a unit's measurements are correlated).
        n_boot, ci, seed: as in :func:`bootstrap_ci`.

    Returns:
        ``(rho, low, high)``; rho > 0 means y grows with x. Replicates where rho is undefined
        (constant resample) are dropped with a warning.
    """
    xv = np.asarray(x, dtype=np.float64)
    yv = np.asarray(y, dtype=np.float64)
    if xv.ndim != 1 or xv.size < 2:
        raise ValueError(f"x must be 1-D with at least 2 values, got shape {xv.shape}")
    if not np.isfinite(xv).all():
        raise ValueError("x contains non-finite values (nan or inf)")
    if not np.isfinite(yv).all():
        raise ValueError("y contains non-finite values (nan or inf)")
    m = xv.size
    if yv.ndim == 1:
        if yv.size != m:
            raise ValueError(f"y must have the same length as x ({m}), got {yv.size}")

        def stat(i: np.ndarray) -> float:
            return spearman(xv[i], yv[i])

        n_units = m
    elif yv.ndim == 2:
        if yv.shape[1] != m:
            raise ValueError(f"y shaped (n, m) must have m = len(x) = {m} columns, got {yv.shape}")
        xx = np.broadcast_to(xv, yv.shape)

        def stat(i: np.ndarray) -> float:
            return spearman(xx[i].ravel(), yv[i].ravel())

        n_units = yv.shape[0]
    else:
        raise ValueError(f"y must be (m,) or (n, m), got shape {yv.shape}")
    est, low, high = bootstrap_ci_from_index(n_units, stat, n_boot=n_boot, ci=ci, seed=seed)
    return float(est), float(low), float(high)
