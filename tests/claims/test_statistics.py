"""Oracles for the claims' statistics: synthetic basis fields with a known effect and with none.

False-positive rates are simulated at the book's default sizes (20 samples, 10 prompt-states x 8
prompts, 15 ladder models) and must stay within nominal + 3 Monte-Carlo standard errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pullback_utils.analysis.geometry import pairwise_geodesic_distances
from pullback_utils.analysis.spectra import low_frequency_share
from pullback_utils.claims import statistics as cs

ALPHA = 0.05
TIMES = [0.9, 0.5, 0.1]


def tol(n: int) -> float:
    return ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / n)


def smooth(n: int, k: int, cutoff: float, gen: torch.Generator) -> torch.Tensor:
    """(n, k, 1, 16, 16) random vectors low-passed at a radial cutoff (cycles per image)."""
    x = torch.randn(n, k, 1, 16, 16, generator=gen, dtype=torch.float64)
    fy = torch.fft.fftfreq(16).abs()[:, None] * 16
    fx = torch.fft.rfftfreq(16)[None] * 16
    return torch.fft.irfft2(torch.fft.rfft2(x) * ((fy**2 + fx**2).sqrt() <= cutoff), s=(16, 16))


def test_coarse_to_fine_detects_a_spectral_shift_and_not_its_absence():
    gen = torch.Generator().manual_seed(0)
    early, late = smooth(20, 4, 3.0, gen), torch.randn(20, 4, 1, 16, 16, generator=gen, dtype=torch.float64)
    share = torch.stack([low_frequency_share(early, 4.0).mean(1), low_frequency_share(late, 4.0).mean(1)]).numpy()
    r = cs.coarse_to_fine(share, [0.9, 0.1])
    assert r.estimate > 0.5 and r.p_value < 1e-3
    rej = []
    for i in range(300):  # no effect: both times drawn from the same spectrum
        a = torch.randn(20, 2, 1, 16, 16, generator=gen, dtype=torch.float64)
        b = torch.randn(20, 2, 1, 16, 16, generator=gen, dtype=torch.float64)
        s = torch.stack([low_frequency_share(a, 4.0).mean(1), low_frequency_share(b, 4.0).mean(1)]).numpy()
        rej.append(cs.coarse_to_fine(s, [0.9, 0.1], n_draws=999, seed=i).p_value < ALPHA)
    assert np.mean(rej) <= tol(300)


def field(
    n: int, shared: float, gen: torch.Generator, dim: int = 40, k: int = 3, common: torch.Tensor | None = None
) -> torch.Tensor:
    """(n, k, dim) bases: a common subspace mixed with a sample's own at weight ``shared`` in [0, 1]."""
    if common is None:
        common = torch.randn(k, dim, generator=gen, dtype=torch.float64)
    own = torch.randn(n, k, dim, generator=gen, dtype=torch.float64)
    return shared * common + (1 - shared) * own


def cross(bases_by_t: list[torch.Tensor]) -> np.ndarray:
    return np.stack([np.asarray(pairwise_geodesic_distances(b)) for b in bases_by_t])


def test_early_similarity_on_shared_early_tangents_and_under_the_null():
    gen = torch.Generator().manual_seed(1)
    c = cross([field(20, 0.8, gen), field(20, 0.4, gen), field(20, 0.0, gen)])
    r = cs.early_similarity(c, TIMES)
    assert r.estimate > 0.3 and r.p_value < 1e-3 and r.n_units == 20
    rej = []
    for _ in range(200):  # no effect: one population of bases at every time (pairs still share samples)
        common = torch.randn(3, 40, generator=gen, dtype=torch.float64)
        c0 = cross([field(20, 0.5, gen, common=common) for _ in range(3)])
        rej.append(cs.early_similarity(c0, TIMES).p_value < ALPHA)
    assert np.mean(rej) <= tol(200)
    # the excess over a matched null that narrows exactly as much is zero: not significant
    same = cs.early_similarity_excess(c, c, TIMES)
    assert same.estimate == 0.0 and same.p_value >= ALPHA


def test_timestep_discrepancy_on_a_drifting_field_and_a_constant_one():
    gen = torch.Generator().manual_seed(2)
    n, n_t = 20, 4
    base = torch.randn(n, 3, 30, generator=gen, dtype=torch.float64)
    drift = torch.randn(n, 3, 30, generator=gen, dtype=torch.float64)
    const, moving = [], []
    for j in range(n):
        ts_const = [base[j] + 1e-3 * torch.randn(3, 30, generator=gen, dtype=torch.float64) for _ in range(n_t)]
        ts_move = [base[j] + 0.5 * i * drift[j] for i in range(n_t)]
        const.append(np.asarray(pairwise_geodesic_distances(torch.stack(ts_const))))
        moving.append(np.asarray(pairwise_geodesic_distances(torch.stack(ts_move))))
    times = [0.8, 0.6, 0.4, 0.2]
    floor = cs.adjacent_distance(np.stack(const), times)  # the constant field's distances are the noise floor
    r = cs.timestep_discrepancy(np.stack(moving), times, floor)
    assert r.estimate > 0.1 and r.p_value < 1e-3
    # a field that does not move beyond its noise: the floor measured on an independent repeat
    rep = []
    for j in range(n):
        rep.append(
            np.asarray(
                pairwise_geodesic_distances(
                    torch.stack(
                        [base[j] + 1e-3 * torch.randn(3, 30, generator=gen, dtype=torch.float64) for _ in range(n_t)]
                    )
                )
            )
        )
    null = cs.timestep_discrepancy(np.stack(rep), times, floor)
    assert abs(null.estimate) < 1e-3 and null.p_value >= ALPHA


def _prompt_field(n_states: int, attrs: list[dict], effect: float, gen: torch.Generator) -> np.ndarray:
    """Bases under each prompt: one direction per attribute value, mixed in with weight ``effect``."""
    values = sorted({(k, v) for a in attrs for k, v in a.items()})
    dirs = {kv: torch.randn(2, 24, generator=gen, dtype=torch.float64) for kv in values}
    out = []
    for _ in range(n_states):
        own = [torch.randn(2, 24, generator=gen, dtype=torch.float64) for _ in attrs]
        bases = torch.stack([o + effect * sum(dirs[kv] for kv in a.items()) for o, a in zip(own, attrs)])
        out.append(np.asarray(pairwise_geodesic_distances(bases)))
    return np.stack(out)


ATTRS = [
    {"colour": c, "shape": s, "size": z}
    for c, s, z in [
        ("red", "disk", "small"),
        ("red", "disk", "large"),
        ("red", "square", "small"),
        ("blue", "disk", "small"),
        ("blue", "square", "large"),
        ("green", "square", "small"),
        ("green", "disk", "large"),
        ("blue", "square", "small"),
    ]
]


def test_prompt_similarity_by_attributes_with_and_without_an_effect():
    gen = torch.Generator().manual_seed(3)
    sim = cs.attribute_similarity(ATTRS)
    assert sim[0, 1] == 2 and sim[0, 4] == 0 and sim[3, 3] == 3
    r = cs.prompt_similarity(_prompt_field(10, ATTRS, 1.0, gen), sim)
    assert r.estimate < -0.3 and r.p_value < 0.01 and r.n_units == 10
    rej = [
        cs.prompt_similarity(_prompt_field(10, ATTRS, 0.0, gen), sim, n_draws=999, exact_max=1).p_value < ALPHA
        for _ in range(100)
    ]
    assert np.mean(rej) <= tol(100)


def test_fading_and_complexity_trend():
    rng = np.random.default_rng(4)
    per_state = np.stack([np.array([1.5, 1.0, 0.6]) + 0.1 * rng.standard_normal(3) for _ in range(10)])
    r = cs.fading(per_state, [0.9, 0.5, 0.1])  # distances fall as t -> 0: the claimed direction is "less"
    assert r.estimate < -0.5 and r.p_greater > 0.5 and r.p_value < 0.01
    counts = np.repeat([2, 3, 6, 9, 15], 3)
    spreads = 0.05 * counts + 0.1 * rng.standard_normal(15)
    t = cs.complexity_trend(counts, spreads)
    assert t.estimate > 0.7 and t.p_value < 0.01 and t.n_units == 15
    assert cs.model_spread(np.ones((2, 3, 3)) - np.eye(3)) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.array([[0.1, np.nan], [0.2, 0.3]]), r"NaN or infinite entries \(first at indices \[\[0, 1\]\]\)"),
        (np.zeros(3), "must have 2 dimensions"),
    ],
)
def test_bad_sweeps_give_clear_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        cs.coarse_to_fine(bad, [0.9, 0.1])


def test_too_few_units_is_underpowered_not_a_number():
    from pullback_utils import claims

    r = cs.coarse_to_fine(np.array([[0.5, 0.6, 0.7], [0.1, 0.2, 0.1]]), [0.9, 0.1])
    rec = claims.record(
        "coarse_to_fine", r, model="disks", baselines={"white_noise_low_share": 0.1}, controls={"random_weights": 0.0}
    )
    assert rec["verdict"] == "underpowered" and rec["n_needed"] == 6


def test_a_control_showing_the_effect_is_named_and_said():
    from pullback_utils.claims.report import controls_showing_effect, sentence

    base = {
        "null": 0.0,
        "direction": "less",
        "baselines": {},
        "verdict": "reproduced",
        "statistic": "rho",
        "estimate": -0.5,
        "ci": [-0.6, -0.4],
        "test": "Mantel",
        "n_units": 10,
        "unit": "prompt-state",
        "p_value": 0.002,
        "model": "m",
    }
    same = dict(base, controls={"random_weights": {"estimate": -0.6, "ci": [-0.7, -0.5], "p_value": 0.001}})
    other = dict(base, controls={"random_weights": {"estimate": 0.6, "ci": [0.5, 0.7], "p_value": 0.001}})
    weak = dict(base, controls={"random_weights": {"estimate": -0.1, "ci": [-0.3, 0.1], "p_value": 0.4}})
    bare = dict(base, controls={"random_weights": -0.9})  # a number carries no test
    tiny = dict(base, controls={"random_weights": {"estimate": -0.01, "ci": [-0.02, -0.005], "p_value": 0.001}})
    assert controls_showing_effect(tiny) == []  # significant, but 2 % of the effect
    assert controls_showing_effect(same) == ["random_weights"]
    assert controls_showing_effect(other) == controls_showing_effect(weak) == controls_showing_effect(bare) == []
    assert "not evidence of something the model learned" in sentence("similar_prompts", same)
    assert "not evidence" not in sentence("similar_prompts", weak)


def test_excess_over_a_baseline_model_detects_a_larger_shift_and_is_calibrated_at_its_size():
    """coarse_to_fine_excess / complexity_trend_excess: per unit, the claim's value minus a baseline model's
    (the Gaussian control repeats one value for every unit). A shift larger than the baseline's is found;
    a shift equal to it (plus symmetric noise) is rejected at most at the nominal rate (n = 20, the book's size)."""
    rng = np.random.default_rng(0)
    times = [0.9, 0.1]
    base = np.stack([np.full(20, 0.99), np.full(20, 0.80)])  # the baseline's shift: 0.19 for every unit
    low = np.stack([0.99 + 0.02 * rng.standard_normal(20), 0.60 + 0.02 * rng.standard_normal(20)])
    r = cs.coarse_to_fine_excess(low, base, times)
    assert abs(r.estimate - (0.39 - 0.19)) < 0.02 and r.p_value < 1e-3
    rej = []
    for i in range(300):  # the same shift as the baseline's
        same = np.stack([0.99 + 0.03 * rng.standard_normal(20), 0.80 + 0.03 * rng.standard_normal(20)])
        rej.append(cs.coarse_to_fine_excess(same, base, times, n_draws=999, seed=i).p_value < ALPHA)
    assert np.mean(rej) <= tol(300)
    with pytest.raises(ValueError, match="same shape"):
        cs.coarse_to_fine_excess(low, base[:, :5], times)
    x = np.repeat([2, 3, 6, 9, 15], 3)
    spreads = 0.1 * x + 0.05 * rng.standard_normal(15)
    ex = cs.complexity_trend_excess(x, spreads, np.zeros(15), seed=0)
    plain = cs.complexity_trend(x, spreads, seed=0)
    assert ex.estimate == plain.estimate and ex.p_value == plain.p_value  # a zero baseline changes nothing
    with pytest.raises(ValueError, match="one value per model"):
        cs.complexity_trend_excess(x, spreads, np.zeros(3))


# ---------------------------------------------------------------- timestep discrepancy on the same-time scale
def _geo(bases: torch.Tensor) -> np.ndarray:
    """(m, m) geodesic distances of m bases (m, k, D), batched (the simulations' fast path; checked against
    :func:`pairwise_geodesic_distances` below)."""
    q, _ = np.linalg.qr(np.asarray(bases, dtype=np.float64).transpose(0, 2, 1))
    c = np.einsum("adk,bdl->abkl", q, q)
    cos = np.clip(np.linalg.svd(c, compute_uv=False), -1.0, 1.0)
    d = np.sqrt((np.arccos(cos) ** 2).sum(-1))
    np.fill_diagonal(d, 0.0)
    return d


def _two_time_field(
    n: int, move: float, gen: torch.Generator, common: torch.Tensor, dim: int = 40, k: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """Bases of ``n`` samples at two times: a common subspace plus a sample's own part; the second time's own
    part is ``cos(move)`` the first's plus ``sin(move)`` a fresh draw (``move = pi/2``: the sample at the
    other time is exchangeable with another sample -- adjacent-time and cross-sample distances equal).
    Returns ``self_d`` ``(n, 2, 2)`` and ``cross`` ``(2, n, n)``."""
    own = torch.randn(n, k, dim, generator=gen, dtype=torch.float64)
    fresh = torch.randn(n, k, dim, generator=gen, dtype=torch.float64)
    a = 0.5 * common + 0.5 * own
    b = 0.5 * common + 0.5 * (math.cos(move) * own + math.sin(move) * fresh)
    d = _geo(torch.cat([a, b]))
    cross_ = np.stack([d[:n, :n], d[n:, n:]])
    self_d = np.zeros((n, 2, 2))
    self_d[:, 0, 1] = self_d[:, 1, 0] = np.diagonal(d[:n, n:])
    return self_d, cross_


def test_relative_discrepancy_false_positives_at_20_samples_and_power():
    """The test can fail: where a sample's basis at the other time is just another sample (ratio 1 in
    expectation), testing against a smallest effect of 1 rejects at most alpha (+ MC error) at the book's 20
    samples; a basis that moves a quarter of the way is told apart from 1 and from a smallest effect 0.05."""
    gen = torch.Generator().manual_seed(5)
    common = torch.randn(3, 40, generator=gen, dtype=torch.float64)
    probe = torch.randn(5, 3, 40, generator=gen, dtype=torch.float64)
    assert np.allclose(_geo(probe), np.asarray(pairwise_geodesic_distances(probe)), atol=1e-6)
    rej = []
    for i in range(300):
        s, c = _two_time_field(20, math.pi / 2, gen, common)
        r = cs.relative_discrepancy(s, c, [0.55, 0.5], 0.5, 0.55, sesoi=1.0, n_draws=999, seed=i)
        rej.append(r.p_value < ALPHA)
    assert np.mean(rej) <= tol(300)
    s, c = _two_time_field(20, 0.3, gen, common)
    small = cs.relative_discrepancy(s, c, [0.55, 0.5], 0.5, 0.55, sesoi=1.0)
    assert small.estimate < 0.6 and small.p_less < 1e-3  # significantly closer than another sample
    above = cs.relative_discrepancy(s, c, [0.55, 0.5], 0.5, 0.55, sesoi=0.05)
    assert above.p_greater < 1e-3 and above.extra["delta_t"] == pytest.approx(0.05)
    power = np.mean(
        [
            cs.relative_discrepancy(
                *_two_time_field(20, 0.9, gen, common), [0.55, 0.5], 0.5, 0.55, sesoi=0.5, n_draws=999
            ).p_greater
            < ALPHA / 2
            for _ in range(50)
        ]
    )
    assert power >= 0.8
    lags = cs.discrepancy_over_lags(s, c, [0.55, 0.5], 0.5, [0.05])
    assert np.allclose(lags[0.05]["ratio"] * lags[0.05]["reference"], s[:, 0, 1])
    with pytest.raises(ValueError, match="not among the measured times"):
        cs.relative_discrepancy(s, c, [0.55, 0.5], 0.5, 0.6, sesoi=0.25)


def test_same_time_reference_by_hand():
    c = np.zeros((2, 3, 3))
    c[0] = [[0, 1, 2], [1, 0, 3], [2, 3, 0]]
    c[1] = 2 * c[0]
    assert np.allclose(cs.same_time_reference(c, [0.6, 0.5], 0.5, 0.6), 1.5 * np.array([1.5, 2.0, 2.5]))


# ---------------------------------------------------------------- early similarity as a trend over all times
def test_pair_trends_by_hand_and_similarity_trend_calibration():
    d = np.zeros((3, 2, 2))
    d[:, 0, 1] = d[:, 1, 0] = [1.0, 2.0, 3.0]  # distance grows as t falls
    assert cs.pair_trends(d, [0.9, 0.5, 0.1])[0, 1] == pytest.approx(1.0)
    assert cs.pair_trends(d, [0.1, 0.5, 0.9])[0, 1] == pytest.approx(-1.0)
    assert cs.pair_trends(np.ones((3, 2, 2)), [0.9, 0.5, 0.1])[0, 1] == 0.0
    gen = torch.Generator().manual_seed(6)
    times = [0.9, 0.7, 0.5, 0.3, 0.1]
    # a real but non-monotone narrowing is still found over all times (20 samples, 5 times)
    shared = [0.7, 0.5, 0.55, 0.3, 0.2]
    r = cs.similarity_trend(cross([field(20, w, gen) for w in shared]), times)
    assert r.estimate > 0.3 and r.p_value < 1e-3
    rej = []
    for _ in range(200):  # no trend: one population of bases at every time (pairs share samples)
        common = torch.randn(3, 40, generator=gen, dtype=torch.float64)
        c0 = np.stack([_geo(field(20, 0.5, gen, common=common)) for _ in times])
        rej.append(cs.similarity_trend(c0, times).p_value < ALPHA)
    assert np.mean(rej) <= tol(200)
    same = cs.similarity_trend_excess(
        cross([field(20, w, gen) for w in shared]), cross([field(20, w, gen) for w in shared]), times
    )
    assert abs(same.estimate) < 0.3
