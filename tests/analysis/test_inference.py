"""The claim tests: false-positive rate under a true null and power at a stated effect, by simulation at
the sizes the book uses (n = 20 samples, 15 ladder models, 8 prompts x 10 prompt-states), plus exact
small cases against hand counts. Monte-Carlo tolerance: nominal + 3 standard errors."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from pullback_utils.analysis import inference as inf

ALPHA = 0.05


def _tol(n_sims: int, p: float = ALPHA) -> float:
    return p + 3 * math.sqrt(p * (1 - p) / n_sims)


def test_sign_flip_exact_small_case_by_hand():
    # values 1, 2, 3 (n = 3): of the 8 sign patterns only (+,+,+) reaches mean 2 -> p_greater = 1/8
    r = inf.sign_flip_test([1.0, 2.0, 3.0])
    assert r.p_greater == pytest.approx(1 / 8) and r.p_less == pytest.approx(1.0)
    assert r.p_value == pytest.approx(0.25) and r.min_p == pytest.approx(0.25) and r.test.endswith("(exact)")
    assert inf.decide(r.p_value, r.estimate, "greater", min_p=r.min_p) == inf.UNDERPOWERED
    # n = 6: min attainable two-sided p = 2/64 < 0.05, so the design can decide
    assert inf.sign_flip_test(np.arange(1.0, 7.0)).min_p == pytest.approx(2 / 64)


@pytest.mark.parametrize("dist", ["normal", "t3"])
def test_sign_flip_false_positive_rate_and_power_at_n20(dist):
    rng = np.random.default_rng(0)
    sims, n = 600, 20
    draw = (lambda size: rng.standard_normal(size)) if dist == "normal" else (lambda size: rng.standard_t(3, size))
    rej = [inf.sign_flip_test(draw(n), n_draws=999, seed=i).p_value < ALPHA for i in range(sims)]
    assert np.mean(rej) <= _tol(sims)
    # power at a shift of 0.8 standard deviations: a t-test has about 0.92 here
    pw = [inf.sign_flip_test(rng.standard_normal(n) + 0.8, n_draws=999, seed=i).p_value < ALPHA for i in range(200)]
    assert np.mean(pw) >= 0.8


def test_sign_flip_interval_coverage_at_n20():
    rng = np.random.default_rng(1)
    cover = []
    for i in range(600):
        r = inf.sign_flip_test(rng.standard_normal(20) + 0.3, n_draws=99, seed=i)
        cover.append(r.ci[0] <= 0.3 <= r.ci[1])
    assert np.mean(cover) >= 0.95 - 3 * math.sqrt(0.05 * 0.95 / 600)


def _pair_null(rng, n, effect=0.0):
    a = rng.standard_normal(n)  # unit effects: pairs that share a unit are correlated
    e = rng.standard_normal((n, n))
    m = a[:, None] + a[None, :] + (e + e.T) / 2 + effect
    return m


@pytest.mark.parametrize("n", [inf.PAIR_MIN_UNITS, 12])
def test_pair_u_test_calibrated_at_its_smallest_sizes(n):
    rng = np.random.default_rng(n)
    sims = 800
    rej = [inf.pair_u_test(_pair_null(rng, n)).p_value < ALPHA for _ in range(sims)]
    assert np.mean(rej) <= _tol(sims)
    small = inf.pair_u_test(_pair_null(rng, inf.PAIR_MIN_UNITS - 1, effect=5.0))
    assert (
        small.min_p == 1.0
        and inf.decide(small.p_value, small.estimate, "greater", min_p=small.min_p) == inf.UNDERPOWERED
    )


def test_pair_u_test_calibrated_where_pairs_as_units_is_not():
    rng = np.random.default_rng(2)
    sims, n = 800, 20
    rej, naive = [], []
    iu = np.triu_indices(n, 1)
    for _ in range(sims):
        m = _pair_null(rng, n)
        rej.append(inf.pair_u_test(m).p_value < ALPHA)
        v = m[iu]  # treating the 190 pairs as independent units
        t = v.mean() / (v.std(ddof=1) / math.sqrt(v.size))
        naive.append(abs(t) > 1.97)
    assert np.mean(rej) <= _tol(sims)
    assert np.mean(naive) > 0.3  # the oracle: the pair-level test is badly anti-conservative here
    # power at a shift of 1.6 (unit effects of sd 1 make the mean over pairs vary by about 0.45)
    pw = [inf.pair_u_test(_pair_null(rng, n, effect=1.6)).p_value < ALPHA for _ in range(200)]
    assert np.mean(pw) >= 0.8


def test_pair_u_test_jackknife_matches_explicit_deletion():
    rng = np.random.default_rng(3)
    m = _pair_null(rng, 7)
    r = inf.pair_u_test(m)
    loo = []
    for i in range(7):
        keep = [j for j in range(7) if j != i]
        sub = m[np.ix_(keep, keep)]
        loo.append(sub[np.triu_indices(6, 1)].mean())
    loo = np.array(loo)
    assert r.extra["se"] == pytest.approx(math.sqrt(6 / 7 * ((loo - loo.mean()) ** 2).sum()))


def test_trend_test_exact_small_case_and_calibration_at_15_models():
    # 3 units, covariate 1, 2, 3: 6 labellings; a perfectly increasing y reaches rho = 1 only once
    r = inf.permutation_trend_test([1, 2, 3], [0.1, 0.5, 0.9])
    assert r.estimate == pytest.approx(1.0) and r.p_greater == pytest.approx(1 / 6)
    assert (
        r.min_p == pytest.approx(2 / 6)
        and inf.decide(r.p_value, r.estimate, "greater", min_p=r.min_p) == inf.UNDERPOWERED
    )
    # four models at four levels: even a perfect trend has exact p = 1/24 one-sided -> 1/12 two-sided
    assert inf.permutation_trend_test([2, 3, 6, 9], [1, 2, 3, 4]).min_p == pytest.approx(2 / 24)
    rng = np.random.default_rng(4)
    cov = np.repeat([2, 3, 6, 9, 15], 3)
    sims = 400
    rej = [
        inf.permutation_trend_test(cov, rng.standard_normal(15), n_draws=999, seed=i).p_value < ALPHA
        for i in range(sims)
    ]
    assert np.mean(rej) <= _tol(sims)
    # power for a linear trend of 0.25 sd per factor (seed noise 1 sd)
    pw = [
        inf.permutation_trend_test(cov, 0.25 * cov + rng.standard_normal(15), n_draws=999, seed=i).p_value < ALPHA
        for i in range(200)
    ]
    assert np.mean(pw) >= 0.8


def _mantel_data(rng, n_s, p, effect):
    pts = rng.standard_normal((p, 2))
    sim = -np.linalg.norm(pts[:, None] - pts[None], axis=-1)  # similar items are close
    item = rng.standard_normal(p)  # an idiosyncratic item effect that repeats in every stratum
    out = []
    for _ in range(n_s):
        e = rng.standard_normal((p, p))
        dmat = item[:, None] + item[None, :] + (e + e.T) / 2 - effect * sim
        out.append(dmat)
    return np.stack(out), sim


def test_mantel_exact_for_four_items_and_calibrated_at_8_prompts_10_states():
    rng = np.random.default_rng(5)
    d, s = _mantel_data(rng, 1, 4, effect=0.0)
    r = inf.mantel_test(d, s)
    assert r.test.endswith("(exact)") and r.min_p == pytest.approx(2 / 24)
    # by hand: the statistic over all 24 item permutations, p = share at least as extreme
    iu = np.triu_indices(4, 1)
    from scipy.stats import spearmanr

    vals = [spearmanr(s[iu], d[0][np.ix_(q, q)][iu]).statistic for q in itertools.permutations(range(4))]
    assert r.p_greater == pytest.approx(np.mean(np.array(vals) >= r.estimate - 1e-12))
    sims = 150
    rej = [inf.mantel_test(*_mantel_data(rng, 10, 8, 0.0)).p_value < ALPHA for _ in range(sims)]
    assert np.mean(rej) <= _tol(sims)
    # power when the distance grows by 2 per unit of dissimilarity (item effects of sd 1 repeat in every state)
    pw = [inf.mantel_test(*_mantel_data(rng, 10, 8, 2.0)).p_value < ALPHA for _ in range(60)]
    assert np.mean(pw) >= 0.8


def test_holm_against_hand_computation():
    assert inf.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert inf.holm([0.5]) == [0.5]
    with pytest.raises(ValueError, match="p_values"):
        inf.holm([0.2, 1.5])


def test_decide_and_bad_input():
    assert inf.decide(0.01, 0.3, "greater") == inf.REPRODUCED
    assert inf.decide(0.01, -0.3, "greater") == inf.NOT_REPRODUCED
    assert inf.decide(0.2, 0.3, "less") == inf.INCONCLUSIVE
    with pytest.raises(ValueError, match="direction"):
        inf.decide(0.01, 1.0, "up")
    with pytest.raises(ValueError, match=r"non-finite entries at units \[1\]"):
        inf.sign_flip_test([0.1, float("nan"), 0.2])
    with pytest.raises(ValueError, match="at least 2 units"):
        inf.sign_flip_test([0.1])
    assert inf.required_units(lambda n: 2.0 / 2**n) == 6
