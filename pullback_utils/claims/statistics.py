"""The claims' statistics: each maps the chapter's measurements to one value per independent unit and
tests it (:mod:`pullback_utils.inference`). Each has an oracle test on a synthetic field with a known
effect and one with none (``tests/claims/test_statistics.py``).

Inputs are plain arrays: per-time, per-sample low-frequency shares ``(n_t, n)``; cross-sample distance
matrices ``(n_t, n, n)``; self-distance matrices ``(n, n_t, n_t)``; per-state prompt distance matrices
``(S, P, P)``; per-unit scores ``(n,)``. ``times`` are the ``n_t`` times as numbers (fractions of ``T``
or levels); "early" is the largest ``t`` and "late" the smallest.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import inference as inf

__all__ = [
    "coarse_to_fine", "paired_difference", "early_similarity", "early_similarity_excess",
    "adjacent_distance", "timestep_discrepancy", "prompt_similarity", "fading", "complexity_trend",
    "model_spread", "attribute_similarity", "partial_prompt_similarity", "residualise", "complexity_trend_nested",
]


def _times(times: Sequence[Any], n_t: int) -> tuple[int, int]:
    t = [float(x) for x in times]
    if len(t) != n_t or len(set(t)) < 2:
        raise ValueError(f"times must hold the {n_t} distinct times of the measurements (at least 2), got {list(times)}")
    return int(np.argmax(t)), int(np.argmin(t))


def _array(x: Any, name: str, ndim: int) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {a.shape}")
    if not np.isfinite(a).all():
        where = np.argwhere(~np.isfinite(a))[:5].tolist()
        raise ValueError(f"{name} has NaN or infinite entries (first at indices {where}): fix the sweep first")
    return a


def coarse_to_fine(low_share: Any, times: Sequence[Any], **test: Any) -> inf.TestResult:
    """Per sample, the low-frequency share of the basis at the earliest ``t`` minus at the latest.

    ``low_share``: ``(n_t, n)``. Sign-flip test over samples (claimed: > 0)."""
    low = _array(low_share, "low_share", 2)
    hi, lo = _times(times, low.shape[0])
    return inf.sign_flip_test(low[hi] - low[lo], unit="sample", **test)


def paired_difference(a: Any, b: Any, *, unit: str = "sample", **test: Any) -> inf.TestResult:
    """Per unit ``a - b`` (two measurements of the same units), sign-flip test of its mean."""
    x, y = _array(a, "a", 1), _array(b, "b", 1)
    if x.shape != y.shape:
        raise ValueError(f"a and b must measure the same units, got {x.size} and {y.size} values")
    return inf.sign_flip_test(x - y, unit=unit, **test)


def _pair_change(cross: np.ndarray, times: Sequence[Any]) -> np.ndarray:
    hi, lo = _times(times, cross.shape[0])
    if cross.shape[1] != cross.shape[2]:
        raise ValueError(f"cross must be (n_t, n, n), got {cross.shape}")
    return cross[lo] - cross[hi]


def early_similarity(cross: Any, times: Sequence[Any]) -> inf.TestResult:
    """Mean over sample pairs of ``d_late(i, j) - d_early(i, j)``; jackknife t over samples (claimed > 0).

    ``cross``: ``(n_t, n, n)`` cross-sample distances (:meth:`pullback_utils.sweeps.BasisSweep.cross_sample_distances`)."""
    return inf.pair_u_test(_pair_change(_array(cross, "cross", 3), times), unit="sample")


def early_similarity_excess(cross: Any, matched: Any, times: Sequence[Any]) -> inf.TestResult:
    """:func:`early_similarity` of the bases minus that of their spectrum-matched random twins, pair by pair."""
    c, m = _array(cross, "cross", 3), _array(matched, "matched", 3)
    if c.shape != m.shape:
        raise ValueError(f"cross and matched must have the same shape, got {c.shape} and {m.shape}")
    return inf.pair_u_test(_pair_change(c, times) - _pair_change(m, times), unit="sample")


def adjacent_distance(self_d: Any, times: Sequence[Any]) -> np.ndarray:
    """``(n,)`` each sample's mean distance between its bases at adjacent times (``self_d`` ``(n, n_t, n_t)``)."""
    d = _array(self_d, "self_d", 3)
    order = np.argsort([float(x) for x in times])
    if len(order) != d.shape[1] or len(order) < 2:
        raise ValueError(f"times must hold the {d.shape[1]} times of self_d (at least 2), got {list(times)}")
    return np.stack([d[:, order[i], order[i + 1]] for i in range(len(order) - 1)], 1).mean(1)


def timestep_discrepancy(self_d: Any, times: Sequence[Any], noise_floor: Any, **test: Any) -> inf.TestResult:
    """Per sample, adjacent-time distance minus the solver noise floor (a number or ``(n,)``); sign-flip (> 0)."""
    adj = adjacent_distance(self_d, times)
    floor = np.broadcast_to(np.asarray(noise_floor, dtype=np.float64), adj.shape)
    return inf.sign_flip_test(adj - floor, unit="sample", **test)


def attribute_similarity(attributes: Sequence[dict]) -> np.ndarray:
    """``(P, P)`` number of attributes two prompts share (e.g. colour, shape, size, position, background).

    ``attributes``: one dict per prompt; a key a prompt lacks matches nothing. The diagonal holds the
    number of a prompt's own attributes."""
    if len(attributes) < 2 or not all(isinstance(a, dict) for a in attributes):
        raise ValueError("attributes must be a list of at least 2 dicts, one per prompt")
    p = len(attributes)
    out = np.zeros((p, p))
    for i in range(p):
        for j in range(p):
            out[i, j] = sum(1 for k, v in attributes[i].items() if attributes[j].get(k) == v)
    return out


def prompt_similarity(distances: Any, similarity: Any, **test: Any) -> inf.TestResult:
    """Stratified Mantel test of prompt similarity against tangent distance (claimed: rho < 0).

    ``distances``: ``(S, P, P)`` distances between the bases under ``P`` prompts, per prompt-state;
    ``similarity``: ``(P, P)``."""
    return inf.mantel_test(_array(distances, "distances", 3), _array(similarity, "similarity", 2),
                           unit="prompt-state", **test)


def residualise(matrices: Any, given: Any) -> np.ndarray:
    """``(S, P, P)`` each stratum's pair values minus their least-squares fit (intercept + slope) on the pair
    values of ``given`` ``(P, P)``; the diagonal is 0. ``matrices``: ``(S, P, P)`` or ``(P, P)``."""
    m = np.asarray(matrices, dtype=np.float64)
    m = m[None] if m.ndim == 2 else m
    g = _array(given, "given", 2)
    m = _array(m, "matrices", 3)
    p = g.shape[0]
    if m.shape[1:] != (p, p) or g.shape != (p, p):
        raise ValueError(f"matrices must be (S, P, P) over the P = {p} items of given, got {m.shape}")
    iu = np.triu_indices(p, 1)
    design = np.stack([np.ones(iu[0].size), g[iu]], 1)
    out = np.zeros_like(m)
    for i in range(m.shape[0]):
        y = m[i][iu]
        out[i][iu] = y - design @ np.linalg.lstsq(design, y, rcond=None)[0]
    return out + out.transpose(0, 2, 1)


def partial_prompt_similarity(distances: Any, similarity: Any, given: Any, **test: Any) -> inf.TestResult:
    """Similar prompts beyond the text encoder: a partial Mantel test of the prompts' attribute similarity
    against the tangent distances, both with the encoder similarity ``given`` partialled out (claimed: rho < 0).

    Per prompt-state the pair distances, and once the attribute similarity, are replaced by their
    residuals from a linear fit on the encoder's pair similarities (Smouse, Long & Sokal 1986); the
    residual matrices go through :func:`pullback_utils.inference.mantel_test` (prompts permuted jointly in
    every state; ``min_p`` from the distinct labellings of the residual similarity). A random-weight
    U-Net reads the prompts only through the encoder, so what its cross-attention passes on is removed
    with the encoder similarity; what remains is attribute structure the trained U-Net adds.

    Why not the contrast "trained minus random-weight" at the same states: each network's distances
    carry their own prompt quirks (repeating in every state), so the contrast keeps a chance
    attribute-shaped component and a permutation test of it rejected a true null in 34 % of simulated
    runs (12 prompts, 5 states); the encoder similarity is a fixed matrix, so conditioning on it is
    exact (``tests/claims/test_redesigned_claims.py`` simulates both).

    ``distances``: ``(S, P, P)``; ``similarity``, ``given``: ``(P, P)``."""
    g = _array(given, "given", 2)
    return inf.mantel_test(residualise(distances, g), residualise(similarity, g)[0], unit="prompt-state", **test)


def fading(per_state: Any, times: Sequence[Any], **test: Any) -> inf.TestResult:
    """Per prompt-state, a distance at the latest ``t`` minus at the earliest; sign-flip (claimed < 0).

    ``per_state``: ``(S, n_t)`` e.g. the mean distance between bases under different prompts."""
    a = _array(per_state, "per_state", 2)
    hi, lo = _times(times, a.shape[1])
    return inf.sign_flip_test(a[:, lo] - a[:, hi], unit="prompt-state", **test)


def model_spread(cross: Any) -> float:
    """One model's consistency: mean cross-sample distance over sample pairs and times (``(n_t, n, n)``)."""
    c = _array(cross, "cross", 3)
    iu = np.triu_indices(c.shape[1], 1)
    if iu[0].size == 0:
        raise ValueError("cross needs at least 2 samples")
    return float(c[:, iu[0], iu[1]].mean())


def complexity_trend(factor_counts: Any, spreads: Any, **test: Any) -> inf.TestResult:
    """Permutation test of Spearman rho(factor count, model spread) over models (claimed > 0)."""
    return inf.permutation_trend_test(_array(factor_counts, "factor_counts", 1), _array(spreads, "spreads", 1),
                                      unit="model", **test)


def complexity_trend_nested(factor_counts: Any, rungs: Any, spreads: Any, **test: Any) -> inf.TestResult:
    """Dataset complexity with the rung (dataset) as the unit: Spearman rho of the rung means of the model
    spreads against the rung's factor count, all ``g!`` rung labellings enumerated (claimed > 0).

    ``factor_counts``, ``rungs``, ``spreads``: ``(n_models,)``; the training seeds of a rung are nested
    in it (:func:`pullback_utils.inference.nested_trend_test`)."""
    return inf.nested_trend_test(_array(factor_counts, "factor_counts", 1), list(rungs), _array(spreads, "spreads", 1),
                                 unit="rung", **test)
