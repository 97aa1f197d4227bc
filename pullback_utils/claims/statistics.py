"""The claims' statistics: each maps the chapter's measurements to one value per independent unit and
tests it (:mod:`pullback_utils.analysis.inference`). Each has an oracle test on a synthetic field with a known
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
from scipy import stats as _sps

from pullback_utils.analysis import inference as inf

__all__ = [
    "coarse_to_fine",
    "paired_difference",
    "early_similarity",
    "early_similarity_excess",
    "adjacent_distance",
    "timestep_discrepancy",
    "prompt_similarity",
    "fading",
    "complexity_trend",
    "model_spread",
    "attribute_similarity",
    "coarse_to_fine_excess",
    "complexity_trend_excess",
    "pair_trends",
    "similarity_trend",
    "similarity_trend_excess",
    "same_time_reference",
    "relative_discrepancy",
    "discrepancy_over_lags",
    "model_spread",
    "attribute_similarity",
    "partial_prompt_similarity",
    "residualise",
    "complexity_trend_nested",
    "complexity_trend_nested_excess",
    "relative_change",
    "efficacy",
    "efficacy_ratio",
    "dose_response",
]


def _times(times: Sequence[Any], n_t: int) -> tuple[int, int]:
    t = [float(x) for x in times]
    if len(t) != n_t or len(set(t)) < 2:
        raise ValueError(
            f"times must hold the {n_t} distinct times of the measurements (at least 2), got {list(times)}"
        )
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


def coarse_to_fine_excess(low_share: Any, baseline_low_share: Any, times: Sequence[Any], **test: Any) -> inf.TestResult:
    """:func:`coarse_to_fine`'s per-sample value minus the same value of a baseline model on the same units.

    ``low_share``, ``baseline_low_share``: ``(n_t, n)`` (e.g. the Gaussian control's, which repeats one
    basis for every sample). Per sample ``(low[early] - low[late]) - (base[early] - base[late])``;
    sign-flip test over samples (claimed: > 0, a shift beyond the baseline's)."""
    low, base = _array(low_share, "low_share", 2), _array(baseline_low_share, "baseline_low_share", 2)
    if low.shape != base.shape:
        raise ValueError(f"low_share and baseline_low_share must have the same shape, got {low.shape} and {base.shape}")
    hi, lo = _times(times, low.shape[0])
    return inf.sign_flip_test((low[hi] - low[lo]) - (base[hi] - base[lo]), unit="sample", **test)


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

    ``cross``: ``(n_t, n, n)`` cross-sample distances
    (:meth:`pullback_utils.sweeps.bases.BasisSweep.cross_sample_distances`)."""
    return inf.pair_u_test(_pair_change(_array(cross, "cross", 3), times), unit="sample")


def early_similarity_excess(cross: Any, matched: Any, times: Sequence[Any]) -> inf.TestResult:
    """:func:`early_similarity` of the bases minus that of their spectrum-matched random twins, pair by pair."""
    c, m = _array(cross, "cross", 3), _array(matched, "matched", 3)
    if c.shape != m.shape:
        raise ValueError(f"cross and matched must have the same shape, got {c.shape} and {m.shape}")
    return inf.pair_u_test(_pair_change(c, times) - _pair_change(m, times), unit="sample")


def pair_trends(dissimilarity: Any, times: Sequence[Any], *, atol: float = 0.0) -> np.ndarray:
    """``(n, n)`` per sample pair, Spearman's rho between lateness ``-t`` and the pair's dissimilarity over all
    ``n_t`` times (+1: the two samples drift apart monotonically as ``t -> 0``; a pair whose dissimilarity is
    constant gets 0). ``dissimilarity``: ``(n_t, n, n)``, e.g. geodesic distances or ``1 - overlap``.
    ``atol``: a pair whose dissimilarity varies over time by at most this much counts as constant (rho 0), so
    rounding noise of identical bases (the Gaussian control's) is not ranked as a trend."""
    d = _array(dissimilarity, "dissimilarity", 3)
    _times(times, d.shape[0])
    if d.shape[1] != d.shape[2]:
        raise ValueError(f"dissimilarity must be (n_t, n, n), got {d.shape}")
    if not (isinstance(atol, (int, float)) and atol >= 0 and np.isfinite(atol)):
        raise ValueError(f"atol must be a finite number >= 0, got {atol!r}")
    if atol > 0:
        d = np.where(np.ptp(d, axis=0) <= atol, 0.0, d)
    late = _sps.rankdata(-np.asarray([float(x) for x in times]))
    late = late - late.mean()
    r = _sps.rankdata(d, axis=0) - (d.shape[0] + 1) / 2  # ranks over time, centred, per pair
    den = np.sqrt((r**2).sum(0) * (late**2).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.where(den > 0, np.tensordot(late, r, axes=(0, 0)) / np.where(den > 0, den, 1.0), 0.0)
    rho = 0.5 * (rho + rho.T)
    np.fill_diagonal(rho, 0.0)
    return rho


def similarity_trend(dissimilarity: Any, times: Sequence[Any]) -> inf.TestResult:
    """Early similarity over *all* times: the mean over sample pairs of :func:`pair_trends` (Spearman rho of
    the pair's dissimilarity against ``-t``), jackknife t over samples (pairs share samples; claimed > 0)."""
    return inf.pair_u_test(pair_trends(dissimilarity, times), unit="sample")


def similarity_trend_excess(
    dissimilarity: Any, matched: Any, times: Sequence[Any], *, matched_atol: float = 0.0
) -> inf.TestResult:
    """:func:`similarity_trend` of the bases minus that of their matched twins (or of a control model's bases on
    the same samples, e.g. the Gaussian control's), pair by pair. ``matched_atol``: :func:`pair_trends`'s
    ``atol`` for ``matched``."""
    d = _array(dissimilarity, "dissimilarity", 3)
    m = _array(matched, "matched", 3)
    if d.shape != m.shape:
        raise ValueError(f"dissimilarity and matched must have the same shape, got {d.shape} and {m.shape}")
    return inf.pair_u_test(pair_trends(d, times) - pair_trends(m, times, atol=matched_atol), unit="sample")


def same_time_reference(cross: Any, times: Sequence[Any], t: Any, t_other: Any) -> np.ndarray:
    """``(n,)`` per sample, its mean distance to the *other* samples at the same time, averaged over ``t`` and
    ``t_other``: the scale of "another sample" against which one sample's change over time is measured.
    ``cross``: ``(n_t, n, n)``."""
    c = _array(cross, "cross", 3)
    idx = [_index(times, x, c.shape[0]) for x in (t, t_other)]
    n = c.shape[1]
    if n < 2:
        raise ValueError("cross needs at least 2 samples")
    return np.mean([c[i].sum(1) / (n - 1) for i in idx], axis=0)


def _index(times: Sequence[Any], t: Any, n_t: int) -> int:
    ts = [float(x) for x in times]
    if len(ts) != n_t:
        raise ValueError(f"times must hold the {n_t} times of the measurements, got {list(times)}")
    hits = [i for i, x in enumerate(ts) if abs(x - float(t)) < 1e-9]
    if not hits:
        raise ValueError(f"time {t} is not among the measured times {ts}")
    return hits[0]


def relative_discrepancy(
    self_d: Any, cross: Any, times: Sequence[Any], t: Any, t_other: Any, *, sesoi: float, **test: Any
) -> inf.TestResult:
    """Timestep discrepancy on the right scale: per sample, the distance between its bases at ``t`` and
    ``t_other`` divided by its mean distance to the other samples at the same time
    (:func:`same_time_reference`): 0 = the basis does not move with t, 1 = it moves as far as switching to
    another sample. Sign-flip test over samples of ``ratio - sesoi`` (claimed: > ``sesoi``, the smallest
    effect of interest fixed in the registry).

    ``self_d``: ``(n, n_t, n_t)``; ``cross``: ``(n_t, n, n)``; both over ``times``."""
    d = _array(self_d, "self_d", 3)
    i, j = _index(times, t, d.shape[1]), _index(times, t_other, d.shape[1])
    if i == j:
        raise ValueError(f"t and t_other must differ, got {t} twice")
    ref = same_time_reference(cross, times, t, t_other)
    if ref.shape[0] != d.shape[0]:
        raise ValueError(f"self_d and cross must hold the same samples, got {d.shape[0]} and {ref.shape[0]}")
    if np.any(ref <= 0):
        raise ValueError("a sample's same-time reference distance is 0: the samples' bases coincide")
    adj = d[:, i, j]
    res = inf.sign_flip_test(adj / ref, null=float(sesoi), unit="sample", **test)
    res.extra.update(
        {
            "adjacent_distance": float(adj.mean()),
            "reference_distance": float(ref.mean()),
            "delta_t": abs(float(times[i]) - float(times[j])),
            "t": float(times[i]),
            "t_other": float(times[j]),
            "sesoi": float(sesoi),
        }
    )
    return res


def relative_change(distance: Any, reference: Any, *, sesoi: float, **test: Any) -> inf.TestResult:
    """Per sample, a distance between two of its tangent spaces divided by its same-time reference distance to
    the other samples (:func:`same_time_reference`), tested against the smallest effect of interest ``sesoi``
    by a sign-flip test over samples (claimed: > ``sesoi``). The scale of :func:`relative_discrepancy`, for
    distances that are not on the sweep's time grid (the state / time-input ablation's crossed bases).

    ``distance``, ``reference``: ``(n,)`` one value per sample."""
    d, ref = _array(distance, "distance", 1), _array(reference, "reference", 1)
    if d.shape != ref.shape:
        raise ValueError(f"distance and reference must hold the same samples, got {d.size} and {ref.size}")
    if np.any(ref <= 0):
        raise ValueError("a sample's same-time reference distance is 0: the samples' bases coincide")
    res = inf.sign_flip_test(d / ref, null=float(sesoi), unit="sample", **test)
    res.extra.update({"distance": float(d.mean()), "reference_distance": float(ref.mean()), "sesoi": float(sesoi)})
    return res


def discrepancy_over_lags(
    self_d: Any, cross: Any, times: Sequence[Any], anchor: Any, lags: Sequence[float]
) -> dict[float, dict[str, np.ndarray]]:
    """For each lag ``dt``: per sample, ``{"distance", "reference", "ratio"}`` ``(n,)`` between its bases at
    ``anchor`` and ``anchor + dt`` (the distance as a function of the gap, on the same-time scale)."""
    d = _array(self_d, "self_d", 3)
    a = _index(times, anchor, d.shape[1])
    out = {}
    for lag in lags:
        b = _index(times, float(anchor) + float(lag), d.shape[1])
        ref = same_time_reference(cross, times, anchor, float(anchor) + float(lag))
        out[float(lag)] = {"distance": d[:, a, b], "reference": ref, "ratio": d[:, a, b] / ref}
    return out


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
    return inf.mantel_test(
        _array(distances, "distances", 3), _array(similarity, "similarity", 2), unit="prompt-state", **test
    )


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
    residual matrices go through :func:`pullback_utils.analysis.inference.mantel_test` (prompts permuted jointly in
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


def complexity_trend_excess(factor_counts: Any, spreads: Any, baseline_spreads: Any, **test: Any) -> inf.TestResult:
    """:func:`complexity_trend` of each model's spread minus a baseline's spread for the same model
    (e.g. the Gaussian control of its training data), per model."""
    a, b = _array(spreads, "spreads", 1), _array(baseline_spreads, "baseline_spreads", 1)
    if a.shape != b.shape:
        raise ValueError(f"spreads and baseline_spreads must hold one value per model, got {a.size} and {b.size}")
    return complexity_trend(factor_counts, a - b, **test)


def complexity_trend(factor_counts: Any, spreads: Any, **test: Any) -> inf.TestResult:
    """Permutation test of Spearman rho(factor count, model spread) over models (claimed > 0)."""
    return inf.permutation_trend_test(
        _array(factor_counts, "factor_counts", 1), _array(spreads, "spreads", 1), unit="model", **test
    )


def complexity_trend_nested_excess(
    factor_counts: Any, rungs: Any, spreads: Any, baseline_spreads: Any, **test: Any
) -> inf.TestResult:
    """:func:`complexity_trend_nested` of each model's spread minus a baseline's spread for the same model (e.g.
    the Gaussian control of its rung's data): the rung is the unit, seeds averaged within it."""
    a, b = _array(spreads, "spreads", 1), _array(baseline_spreads, "baseline_spreads", 1)
    if a.shape != b.shape:
        raise ValueError(f"spreads and baseline_spreads must hold one value per model, got {a.size} and {b.size}")
    return complexity_trend_nested(factor_counts, rungs, a - b, **test)


def efficacy(factor_change: Any, state_change: Any) -> np.ndarray:
    """``(n,)`` per sample, the least-squares slope through the origin of the renderer-factor change against the
    state change over the dose grid: ``sum(df * dx) / sum(dx ** 2)`` (factor standard deviations per unit of
    ``||x^(N) - x_t||``). ``factor_change``, ``state_change``: ``(..., n)``, the dose cells in the leading axes."""
    f, x = np.asarray(factor_change, dtype=np.float64), np.asarray(state_change, dtype=np.float64)
    if f.shape != x.shape or f.ndim < 2:
        raise ValueError(
            f"factor_change and state_change must both be (..., n) over the same dose grid, got {f.shape} and {x.shape}"
        )
    f, x = _array(f.reshape(-1, f.shape[-1]), "factor_change", 2), _array(x.reshape(-1, x.shape[-1]), "state_change", 2)
    den = (x**2).sum(0)
    if np.any(den <= 0):
        raise ValueError("a sample's state never changed over the dose grid: its efficacy is undefined")
    return (f * x).sum(0) / den


def efficacy_ratio(guided_change: Any, naive_change: Any, state_change: Any, **test: Any) -> inf.TestResult:
    """The editing efficacy record: per sample ``log(efficacy(guided) / efficacy(naive))`` at the same state
    changes (the naive step moved x_t as far as guidance did, cell by cell); sign-flip test over samples
    (claimed: > 0, guidance changes the renderer's factors more per unit of change). ``(..., n)`` each."""
    eg, en = efficacy(guided_change, state_change), efficacy(naive_change, state_change)
    if np.any(eg <= 0) or np.any(en <= 0):
        raise ValueError("an efficacy is 0: the renderer's factors did not change for some sample")
    res = inf.sign_flip_test(np.log(eg / en), unit="sample", **test)
    res.extra.update({"guided_efficacy": float(eg.mean()), "naive_efficacy": float(en.mean())})
    return res


def dose_response(dose: Any, response: Any, **test: Any) -> inf.TestResult:
    """Per sample, Spearman rho between the dose of each grid cell and the sample's response there (ties
    averaged); sign-flip test of the mean rho over samples (claimed: > 0). Under a response that does not
    depend on the dose the cells are exchangeable and rho is symmetric about 0, so the sign-flip null holds.

    ``dose``: ``(G,)`` or the grid's shape ``(..)``; ``response``: ``(.., n)``, the grid's cells first."""
    dz = _array(np.asarray(dose, dtype=np.float64).reshape(-1), "dose", 1)
    r = np.asarray(response, dtype=np.float64)
    r = _array(r.reshape(-1, r.shape[-1]) if r.ndim >= 2 else r, "response", 2)
    if r.shape[0] != dz.size or np.unique(dz).size < 2:
        raise ValueError(
            f"response must hold one row per dose cell ({dz.size}, at least 2 distinct doses), got {r.shape[0]} rows"
        )
    rd = _sps.rankdata(dz) - (dz.size + 1) / 2
    rr = _sps.rankdata(r, axis=0) - (dz.size + 1) / 2
    den = np.sqrt((rd**2).sum() * (rr**2).sum(0))
    rho = np.where(den > 0, (rd[:, None] * rr).sum(0) / np.where(den > 0, den, 1.0), 0.0)
    res = inf.sign_flip_test(rho, unit="sample", **test)
    res.extra.update({"cells": int(dz.size)})
    return res


def complexity_trend_nested(factor_counts: Any, rungs: Any, spreads: Any, **test: Any) -> inf.TestResult:
    """Dataset complexity with the rung (dataset) as the unit: Spearman rho of the rung means of the model
    spreads against the rung's factor count, all ``g!`` rung labellings enumerated (claimed > 0).

    ``factor_counts``, ``rungs``, ``spreads``: ``(n_models,)``; the training seeds of a rung are nested
    in it (:func:`pullback_utils.analysis.inference.nested_trend_test`)."""
    return inf.nested_trend_test(
        _array(factor_counts, "factor_counts", 1), list(rungs), _array(spreads, "spreads", 1), unit="rung", **test
    )
