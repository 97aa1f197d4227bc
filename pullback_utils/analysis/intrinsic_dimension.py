"""Intrinsic dimension of a point cloud (data sets of the zoo): the TwoNN estimator."""

from __future__ import annotations

import math

import numpy as np
import torch

from pullback_utils.analysis.descriptive import bootstrap_ci

__all__ = ["twonn_dimension"]


def twonn_dimension(
    x: torch.Tensor | np.ndarray, *, n_boot: int = 500, seed: int = 0, discard: float = 0.1
) -> tuple[float, float, float]:
    """TwoNN intrinsic-dimension estimate (Facco et al. 2017) with a bootstrap CI over points.

    For every point, ``mu = r2 / r1`` (distances to its second and first nearest neighbour) is
    Pareto-distributed with exponent ``d`` on a locally uniform ``d``-dimensional manifold, so
    ``-log(1 - F(mu)) = d log(mu)``. ``d`` is the slope of that line through the origin, fitted on the
    empirical distribution of ``mu`` without its largest ``discard`` fraction (the estimator of the
    paper). Points with ``r1 = 0`` (duplicates) are ignored.

    Args:
        x: ``(N, ...)`` points (flattened), ``N >= 3``.
        n_boot, seed: bootstrap over points (their ``mu`` values).

    Returns:
        ``(estimate, low, high)``.
    """
    a = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).reshape(len(x), -1).double()
    if a.shape[0] < 3:
        raise ValueError(f"need at least 3 points, got {a.shape[0]}")
    d = torch.cdist(a, a)
    d.fill_diagonal_(float("inf"))
    r = torch.topk(d, 2, dim=1, largest=False).values.numpy()
    ok = r[:, 0] > 0
    logmu = np.log(r[ok, 1] / r[ok, 0])

    def fit(s: np.ndarray) -> float:
        s = np.sort(s)
        m = len(s)
        keep = max(2, int(math.floor(m * (1 - discard))))
        y = -np.log(1.0 - np.arange(1, m + 1) / (m + 1.0))
        xs, ys = s[:keep], y[:keep]
        return float(np.sum(xs * ys) / np.sum(xs * xs))

    est, lo, hi = bootstrap_ci(logmu, statistic=fit, n_boot=n_boot, seed=seed)
    return float(est), float(lo), float(hi)
