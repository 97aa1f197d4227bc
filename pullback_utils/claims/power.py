"""Power of the dataset-complexity design (rungs x training seeds) at an effect size, by simulation.

The claim's test (:func:`pullback_utils.analysis.inference.nested_trend_test`) ranks the ``g`` rung means; its
null distribution is Spearman's rho of ``g`` distinct values, the same for every data set, so it is
enumerated once per ``g`` and each simulated design only needs its rho (a lookup, not a permutation
test). The effect is a two-level model of a model's spread::

    spread(rung r, seed s) = slope * r + tau * eta_r + sigma * eps_rs,   eta, eps ~ N(0, 1)

with ``r = 1..g`` the rung's rank, ``tau`` the rung-level deviation (its data draw: shared by its seeds)
and ``sigma`` the seed noise. :func:`fit_effect` estimates the three from one run's spreads (one-way
ANOVA within rungs, a least-squares line through the rung means); :func:`design_power` simulates a
design; :func:`needed_design` searches the smallest design that reaches a target power. Used by
``notebooks/dataset_complexity.md`` and ``benchmarks/complexity_power.py``; checked against direct
simulation of the test in ``tests/claims/test_redesigned_claims.py``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from pullback_utils.analysis.inference import ALPHA

__all__ = ["Effect", "fit_effect", "critical_rho", "design_power", "needed_design"]


class Effect(tuple):
    """``(slope, tau, sigma)`` in the units of the spread (rad) per rung step."""

    def __new__(cls, slope: float, tau: float, sigma: float) -> "Effect":
        for name, v in (("slope", slope), ("tau", tau), ("sigma", sigma)):
            if not math.isfinite(float(v)) or (name != "slope" and float(v) < 0):
                raise ValueError(f"{name} must be a finite number{' >= 0' if name != 'slope' else ''}, got {v!r}")
        return super().__new__(cls, (float(slope), float(tau), float(sigma)))

    slope = property(lambda self: self[0])
    tau = property(lambda self: self[1])
    sigma = property(lambda self: self[2])


def fit_effect(levels: Any, groups: Sequence[Any], values: Any) -> Effect:
    """Estimate ``(slope, tau, sigma)`` from one run: ``levels``/``groups``/``values`` ``(n,)`` per model.

    ``sigma``: the pooled within-rung standard deviation (0 with one seed per rung); ``slope``: least
    squares of the rung means on the rung's rank; ``tau``: the rung means' residual variance beyond
    ``sigma^2 / seeds`` (0 when negative)."""
    x = np.asarray(levels, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    lab = np.asarray(groups)
    if not (x.shape == y.shape == lab.shape) or x.ndim != 1:
        raise ValueError(f"levels, groups and values must be (n,) each, got {x.shape}, {lab.shape}, {y.shape}")
    names = list(dict.fromkeys(lab.tolist()))
    if len(names) < 3:
        raise ValueError(f"fitting a slope and its scatter needs at least 3 rungs, got {len(names)}")
    lv = np.array([x[lab == g][0] for g in names])
    means = np.array([y[lab == g].mean() for g in names])
    reps = np.array([(lab == g).sum() for g in names])
    within = sum(((y[lab == g] - y[lab == g].mean()) ** 2).sum() for g in names)
    dof = int((reps - 1).sum())
    sigma = math.sqrt(within / dof) if dof > 0 else 0.0
    rank = np.argsort(np.argsort(lv)) + 1.0
    a = np.stack([np.ones_like(rank), rank], 1)
    coef, *_ = np.linalg.lstsq(a, means, rcond=None)
    resid = means - a @ coef
    tau2 = resid @ resid / (len(names) - 2) - sigma**2 * float(np.mean(1.0 / reps))
    return Effect(float(coef[1]), math.sqrt(max(tau2, 0.0)), sigma)


@lru_cache(maxsize=16)
def _null_rho(g: int, draws: int = 200_000) -> np.ndarray:
    """Spearman's rho of ``g`` distinct values under all ``g!`` orders (``g <= 9``), else Monte Carlo."""
    base = np.arange(g, dtype=np.float64) - (g - 1) / 2
    den = float(base @ base)
    if g <= 9:
        perms = np.array(list(itertools.permutations(range(g))), dtype=np.float64) - (g - 1) / 2
    else:
        rng = np.random.default_rng(12345)
        perms = np.argsort(rng.random((draws, g)), 1).astype(np.float64) - (g - 1) / 2
    return np.sort(perms @ base / den)


def critical_rho(g: int, alpha: float = ALPHA) -> float:
    """Smallest rho whose two-sided exact p (the test's ``2 * P(rho_null >= rho)``) is below ``alpha``;
    ``inf`` when no rho reaches it (``g <= 4``)."""
    null = _null_rho(int(g))
    support = np.unique(np.round(null, 10))
    p = np.array([2.0 * np.mean(null >= v - 1e-9) for v in support])
    ok = support[p < alpha]
    return float(ok.min()) if ok.size else math.inf


def design_power(
    effect: Effect, rungs: int, seeds: int, *, sims: int = 4000, seed: int = 0, alpha: float = ALPHA
) -> float:
    """Share of simulated designs (``rungs`` x ``seeds``) whose nested test is significant on the
    claimed (positive) side at ``alpha`` two-sided."""
    if rungs < 2 or seeds < 1:
        raise ValueError(f"a design needs rungs >= 2 and seeds >= 1, got {rungs} x {seeds}")
    crit = critical_rho(rungs, alpha)
    if not math.isfinite(crit):
        return 0.0
    rng = np.random.default_rng(seed)
    slope, tau, sigma = effect
    r = np.arange(1, rungs + 1, dtype=np.float64)
    means = (
        slope * r
        + tau * rng.standard_normal((sims, rungs))
        + sigma / math.sqrt(seeds) * rng.standard_normal((sims, rungs))
    )
    ranks = np.argsort(np.argsort(means, 1), 1).astype(np.float64) - (rungs - 1) / 2
    base = r - r.mean()
    rho = ranks @ base / float(base @ base)
    return float(np.mean(rho >= crit - 1e-9))


def needed_design(
    effect: Effect,
    *,
    target: float = 0.8,
    rungs: Sequence[int] = range(5, 16),
    seeds: Sequence[int] = (1, 2, 3, 5),
    sims: int = 4000,
    seed: int = 0,
) -> dict[str, Any] | None:
    """The cheapest design (fewest models, then fewest rungs) with power >= ``target``:
    ``{"rungs", "seeds", "models", "power"}``, or ``None`` when none in the grid reaches it."""
    best = None
    for g in rungs:
        for s in seeds:
            if best is not None and g * s >= best["models"]:
                continue
            pw = design_power(effect, g, s, sims=sims, seed=seed)
            if pw >= target:
                best = {"rungs": int(g), "seeds": int(s), "models": int(g * s), "power": pw}
    return best
