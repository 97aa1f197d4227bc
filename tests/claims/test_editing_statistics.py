"""The statistics added or changed by issue 24 (items 1-3): editing efficacy and dose-response, the ablated
discrepancies on the same-time scale, and the Gaussian-control excess records on their parents' statistics.
Each has an oracle with a known answer and a calibration simulation (false positives at alpha = 0.05 within
3 standard errors, and power) at the size the chapters use it at: 20 samples, a 3 x 2 dose grid; 20 samples
and 5 times; 5 rungs x 3 seeds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pullback_utils import claims
from pullback_utils.analysis import inference as inf
from pullback_utils.claims import statistics as cs

ALPHA = 0.05
N = 20  # samples of the editing and timestep chapters (defaults)
DOSE = np.outer([0.5, 1.0, 2.0], [4, 8])  # the editing chapter's default grid (gamma multiples x N): ties included


def tol(n: int) -> float:
    return ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / n)


def _rate(flags) -> float:
    return float(np.mean(flags))


# ---------------------------------------------------------------------------------------------- efficacy
def test_efficacy_is_the_slope_through_the_origin():
    rng = np.random.default_rng(0)
    dx = rng.uniform(1, 10, (3, 2, 5))
    slope = rng.uniform(0.1, 1.0, 5)
    assert np.allclose(cs.efficacy(slope * dx, dx), slope)
    noisy = slope * dx + rng.standard_normal(dx.shape)
    x, y = dx.reshape(-1, 5), noisy.reshape(-1, 5)
    ls = [np.linalg.lstsq(x[:, j : j + 1], y[:, j], rcond=None)[0][0] for j in range(5)]
    assert np.allclose(cs.efficacy(noisy, dx), ls)


def test_efficacy_ratio_oracle_and_errors():
    rng = np.random.default_rng(1)
    dx = rng.uniform(1, 10, (3, 2, N))
    naive = rng.uniform(0.1, 1.0, N) * dx
    res = cs.efficacy_ratio(1.25 * naive, naive, dx, seed=0)
    assert res.estimate == pytest.approx(math.log(1.25)) and res.p_greater < 1e-3
    assert res.extra["guided_efficacy"] == pytest.approx(1.25 * res.extra["naive_efficacy"])
    with pytest.raises(ValueError, match="same dose grid"):
        cs.efficacy_ratio(naive[:, :1], naive, dx)
    with pytest.raises(ValueError, match="did not change"):
        cs.efficacy_ratio(0 * naive, naive, dx)
    with pytest.raises(ValueError, match="state never changed"):
        cs.efficacy(naive, 0 * dx)


def _efficacy_data(rng, effect: float):
    """Per sample a state change that grows with the dose and factor changes whose slopes vary between samples
    (log-normal, sd 0.3) and cells (noise 20 %); guided slope = naive slope * exp(effect)."""
    dx = DOSE[..., None] * rng.uniform(0.6, 1.4, N) + rng.uniform(0, 0.5, (*DOSE.shape, N))
    base = np.exp(rng.normal(0, 0.5, N))
    guided = base * np.exp(effect + rng.normal(0, 0.3, N)) * dx * np.exp(rng.normal(0, 0.2, dx.shape))
    naive = base * np.exp(rng.normal(0, 0.3, N)) * dx * np.exp(rng.normal(0, 0.2, dx.shape))
    return guided, naive, dx


def test_efficacy_ratio_calibrated_at_the_chapter_size():
    rng = np.random.default_rng(2)
    sims = 600
    fp = [cs.efficacy_ratio(*_efficacy_data(rng, 0.0), n_draws=499, seed=i).p_value < ALPHA for i in range(sims)]
    assert _rate(fp) <= tol(sims)
    # per-sample sd of the log ratio ~0.42 here: power ~0.5 at the margin's 25 %, >= 0.8 at 50 % more efficacy
    power = [
        cs.efficacy_ratio(*_efficacy_data(rng, math.log(1.5)), n_draws=499, seed=i).p_value < ALPHA for i in range(200)
    ]
    assert _rate(power) >= 0.8


def test_efficacy_equivalence_at_the_registry_margin():
    """TOST of the per-sample log ratios within the registry's margin (log 1.25): false positives at the
    margin <= alpha (+3 se), and power >= 0.8 when guided and naive are equally efficient (sd 0.3 per sample
    as in the simulation above; the chapter reports its own sd)."""
    margin = claims.get("editing_efficacy").margin
    assert margin == pytest.approx(math.log(1.25), abs=1e-3)
    rng = np.random.default_rng(3)
    sims = 600
    at_margin = [
        inf.tost_test(rng.normal(margin, 0.3, N), margin, n_draws=499, seed=i).extra["equivalent"] for i in range(sims)
    ]
    assert _rate(at_margin) <= tol(sims)
    inside = [
        inf.tost_test(rng.normal(0.0, 0.3, N), margin, n_draws=499, seed=i).extra["equivalent"] for i in range(200)
    ]
    assert _rate(inside) >= 0.8


def test_equivalence_field_is_built_from_the_registry_and_validated():
    rng = np.random.default_rng(4)
    eq = claims.equivalence("editing_efficacy", rng.normal(0, 0.05, N))
    assert eq["margin"] == claims.get("editing_efficacy").margin and eq["equivalent"]
    rec = claims.record(
        "editing_efficacy",
        cs.efficacy_ratio(*_efficacy_data(rng, 0.0)),
        model="disks",
        baselines={"naive_efficacy": 0.3},
    )
    claims.check_record("editing_efficacy", {**rec, "equivalence": eq})
    with pytest.raises(claims.MetricsError, match="equivalent"):
        claims.check_record("editing_efficacy", {**rec, "equivalence": {**eq, "equivalent": False}})
    with pytest.raises(ValueError, match="no equivalence margin"):
        claims.equivalence("coarse_to_fine", rng.normal(0, 1, N))


# ---------------------------------------------------------------------------------------------- dose-response
def test_dose_response_oracle():
    resp = np.log1p(DOSE)[..., None] * np.linspace(1, 2, N)  # monotone in the dose for every sample
    res = cs.dose_response(DOSE, resp, seed=0)
    assert res.estimate == pytest.approx(1.0) and res.p_greater < 1e-3 and res.extra["cells"] == 6
    flat = cs.dose_response(DOSE, np.ones((3, 2, N)), seed=0)
    assert flat.estimate == 0.0
    with pytest.raises(ValueError, match="one row per dose cell"):
        cs.dose_response(DOSE, np.ones((4, N)))
    with pytest.raises(ValueError, match="distinct doses"):
        cs.dose_response(np.ones(6), np.ones((6, N)))


def test_dose_response_calibrated_at_the_chapter_size():
    """Responses that do not depend on the dose (cells exchangeable, with the grid's tied doses): false
    positives <= alpha + 3 se at 20 samples; power >= 0.8 at a monotone trend (slope 0.5 noise sd per
    log-dose unit)."""
    rng = np.random.default_rng(5)
    sims = 800
    fp = [
        cs.dose_response(DOSE, rng.standard_normal((3, 2, N)), n_draws=499, seed=i).p_value < ALPHA for i in range(sims)
    ]
    assert _rate(fp) <= tol(sims)
    trend = np.log(DOSE)[..., None]
    power = [
        cs.dose_response(DOSE, 0.5 * trend + rng.standard_normal((3, 2, N)), n_draws=499, seed=i).p_value < ALPHA
        for i in range(200)
    ]
    assert _rate(power) >= 0.8


# ---------------------------------------------------------------------------------------------- ablation scale
def test_relative_change_oracle_and_calibration():
    ref = np.linspace(2.0, 3.0, N)
    res = cs.relative_change(0.5 * ref, ref, sesoi=0.25, seed=0)
    assert res.estimate == pytest.approx(0.5) and res.p_greater < 1e-3
    assert res.extra["reference_distance"] == pytest.approx(2.5)
    with pytest.raises(ValueError, match="reference distance is 0"):
        cs.relative_change(ref, 0 * ref, sesoi=0.25)
    rng = np.random.default_rng(6)
    sims = 600
    # ratios centred on the SESOI (skewed, as ratios of distances are): a true null of "no more than 0.25"
    fp = []
    for i in range(sims):
        r = rng.uniform(1.5, 3.5, N)
        d = r * (0.25 + 0.1 * (rng.gamma(2.0, 1.0, N) - 2.0) / math.sqrt(2))
        fp.append(cs.relative_change(d, r, sesoi=0.25, n_draws=499, seed=i).p_greater < ALPHA / 2)
    assert _rate(fp) <= tol(sims) / 2 + 0.01
    power = [
        cs.relative_change(rng.uniform(1.5, 3.5, N) * 0, np.ones(N), sesoi=0.25, n_draws=99, seed=i).p_less < ALPHA
        for i in range(20)
    ]
    assert all(power)  # a discrepancy of 0 is told from the SESOI at every run


# ---------------------------------------------------------------------------------------------- Gaussian excess
def test_pair_trends_atol_ignores_rounding_noise_of_identical_bases():
    rng = np.random.default_rng(7)
    times = [0.9, 0.7, 0.5, 0.3, 0.1]
    noise = np.abs(rng.standard_normal((5, 6, 6))) * 1e-15
    noise = noise + noise.transpose(0, 2, 1)
    assert np.abs(cs.pair_trends(noise, times)).max() > 0.5  # ranked rounding noise looks like a trend
    assert np.abs(cs.pair_trends(noise, times, atol=1e-9)).max() == 0.0
    real = np.arange(5)[:, None, None] * np.ones((5, 6, 6))  # grows as t falls
    assert np.allclose(cs.pair_trends(real, times, atol=1e-9)[np.triu_indices(6, 1)], 1.0)
    with pytest.raises(ValueError, match="atol"):
        cs.pair_trends(real, times, atol=-1)


def test_similarity_trend_excess_over_a_constant_baseline():
    """Against the Gaussian control (identical bases, 1 - O = 0 up to rounding), the excess is the trained trend
    itself; with exchangeable times it is calibrated at 20 samples x 5 times (jackknife t over samples)."""
    rng = np.random.default_rng(8)
    times = [0.9, 0.7, 0.5, 0.3, 0.1]
    gauss = np.abs(rng.standard_normal((5, N, N))) * 1e-16
    gauss = gauss + gauss.transpose(0, 2, 1)

    def field(effect: float) -> np.ndarray:
        z = rng.standard_normal((5, N))  # per-sample noise: pairs share samples
        d = z[:, :, None] + z[:, None, :] + effect * np.arange(5)[:, None, None] + rng.standard_normal((5, N, N))
        return d + d.transpose(0, 2, 1)

    d = field(0.5)
    ex = cs.similarity_trend_excess(d, gauss, times, matched_atol=1e-9)
    assert ex.estimate == pytest.approx(cs.similarity_trend(d, times).estimate)
    sims = 600
    fp = [cs.similarity_trend_excess(field(0.0), gauss, times, matched_atol=1e-9).p_value < ALPHA for _ in range(sims)]
    assert _rate(fp) <= tol(sims)
    power = [
        cs.similarity_trend_excess(field(0.5), gauss, times, matched_atol=1e-9).p_value < ALPHA for _ in range(100)
    ]
    assert _rate(power) >= 0.8


def _ladder(rng, slope: float, rungs: int = 5, seeds: int = 3):
    x = np.repeat(np.arange(1, rungs + 1), seeds)
    g = np.repeat(np.arange(rungs), seeds)
    tau = rng.normal(0, 1.0, rungs)[g]
    spreads = slope * x + tau + rng.normal(0, 0.5, x.size)
    baseline = rng.normal(0, 0.01, x.size)  # the Gaussian's spreads: ~0, no trend
    return x, g, spreads, baseline


def test_complexity_trend_nested_excess_oracle_and_calibration():
    rng = np.random.default_rng(9)
    x, g, s, b = _ladder(rng, 1.0)
    ex = cs.complexity_trend_nested_excess(x, g, s, b, seed=0)
    ref = cs.complexity_trend_nested(x, g, s - b, seed=0)
    assert ex.estimate == ref.estimate and ex.p_value == ref.p_value and ex.n_units == 5 and ex.unit == "rung"
    assert ex.min_p == pytest.approx(2 / 120)
    with pytest.raises(ValueError, match="one value per model"):
        cs.complexity_trend_nested_excess(x, g, s, b[:-1])
    sims = 500
    fp = [cs.complexity_trend_nested_excess(*_ladder(rng, 0.0), n_boot=1, seed=i).p_value < ALPHA for i in range(sims)]
    assert _rate(fp) <= tol(sims)
    # 5 rungs: only a perfect order is significant; a strong rung-level effect reaches it in most runs
    power = [
        cs.complexity_trend_nested_excess(*_ladder(rng, 3.0), n_boot=1, seed=i).p_value < ALPHA for i in range(100)
    ]
    assert _rate(power) >= 0.8
