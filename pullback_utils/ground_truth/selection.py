"""The best timestep, chosen so that choosing it does not inflate the statistic, and the test there.

The ground-truth chapter measures an energy fraction per timestep and image, ``(n_t, n)``, and asks
how it compares with a baseline "at the best t". Taking the argmax of the mean over all images and
evaluating there on the same images is biased upwards (the noise that made that t look best is in the
statistic). :func:`loo_best_index` picks the time for image ``j`` from the *other* images only
(leave-one-out), :func:`cross_fitted_best` evaluates the difference to a baseline there, and
:func:`excess_test` runs the sign-flip test over images on those differences.

Baselines are either per time and image ``(n_t, n)`` (e.g. a spectrum-matched twin of the basis at
every t) or one value per image ``(n,)`` (time-independent, or already measured at each image's
held-out time, e.g. a basis computed only there).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pullback_utils.analysis import inference as inf

__all__ = ["loo_best_index", "cross_fitted_best", "excess_test"]


def _values(values: Any) -> np.ndarray:
    a = np.asarray(values, dtype=float)
    if a.ndim != 2 or a.shape[1] < 2:
        raise ValueError(f"values must have shape (n_t, n) with n >= 2 samples, got {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError("values has NaN or infinite entries: fix the measurements first")
    return a


def loo_best_index(values: Any) -> np.ndarray:
    """``(n,)``: for each image ``j``, the argmax over times of the mean of the *other* images' values.

    ``values``: ``(n_t, n)`` (higher = better aligned)."""
    a = _values(values)
    n = a.shape[1]
    total = a.sum(axis=1)
    return np.array([int(np.argmax((total - a[:, j]) / (n - 1))) for j in range(n)])


def cross_fitted_best(values: Any, baseline: Any) -> dict[str, Any]:
    """Per-image difference to a baseline at the best time, with the best time chosen leave-one-out.

    Args:
        values: ``(n_t, n)`` a statistic per time and image (higher = better aligned).
        baseline: ``(n_t, n)`` per time and image, or ``(n,)`` per image (time-independent, or
            measured at each image's held-out time :func:`loo_best_index`).

    Returns:
        ``{"best_index"}`` argmax over times of the mean over all images (the reported best t);
        ``"diff"`` ``(n,)``: ``values[t*_{-j}, j] - baseline[(t*_{-j},) j]`` where ``t*_{-j}`` is the best
        time of the other images; ``"loo_index"`` ``(n,)`` the ``t*_{-j}``; ``"value"`` and
        ``"baseline"`` ``(n,)`` the two terms.
    """
    a = _values(values)
    b = np.asarray(baseline, dtype=float)
    n = a.shape[1]
    if b.shape not in (a.shape, (n,)):
        raise ValueError(
            f"baseline must have shape {a.shape} (per time and image) or ({n},) (per image), got {b.shape}"
        )
    if not np.isfinite(b).all():
        raise ValueError("baseline has NaN or infinite entries")
    loo = loo_best_index(a)
    cols = np.arange(n)
    val = a[loo, cols]
    base = b[loo, cols] if b.ndim == 2 else b
    return {
        "best_index": int(np.argmax(a.mean(axis=1))),
        "diff": val - base,
        "loo_index": loo,
        "value": val,
        "baseline": base,
    }


def excess_test(values: Any, baseline: Any, *, seed: int = 0, **test: Any) -> inf.TestResult:
    """Sign-flip test over images of :func:`cross_fitted_best`'s differences (claimed: > 0).

    The result's ``extra`` holds ``loo_index`` and ``best_index`` and the means of the two terms
    (``value_mean``, ``baseline_mean``)."""
    cf = cross_fitted_best(values, baseline)
    res = inf.sign_flip_test(cf["diff"], unit="image", seed=seed, **test)
    res.extra.update(
        {
            "loo_index": cf["loo_index"].tolist(),
            "best_index": cf["best_index"],
            "value_mean": float(cf["value"].mean()),
            "baseline_mean": float(cf["baseline"].mean()),
        }
    )
    return res
