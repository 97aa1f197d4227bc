"""The claims redesigned around what the U-Net learned (issue 24, item 5): the Mantel test's design floor
from distinct labellings, the trained-minus-random prompt contrast, dataset complexity with the rung as
the unit, and the equivalence test. Each new test is calibrated by simulation at the size it is used at."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from pullback_utils.analysis import inference as inf
from pullback_utils.claims import statistics as cs

ALPHA = 0.05


def tol(n: int) -> float:
    return ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / n)


def _design(*levels: int) -> np.ndarray:
    """(P, P) attributes shared by the prompts of a full factorial design."""
    cells = list(itertools.product(*[range(n) for n in levels]))
    return np.array([[sum(a == b for a, b in zip(c, d)) for d in cells] for c in cells], dtype=float)


def test_automorphisms_against_brute_force_and_the_cube():
    assert inf.automorphisms(_design(2, 2, 2)) == 48  # 3! attribute orders x 2^3 value swaps
    assert inf.automorphisms(_design(3, 2, 2)) == 3 * 2 * 2 * 2 * 2  # colour 3!, 2 x 2 swaps, the two binary attributes
    rng = np.random.default_rng(0)
    for s in (_design(3, 2), rng.integers(0, 3, (6, 6))):
        s = np.triu(s, 1) + np.triu(s, 1).T + np.diag(np.diag(s))
        brute = sum(np.array_equal(s[np.ix_(q, q)], s) for q in itertools.permutations(range(6)))
        assert inf.automorphisms(s) == brute
    x = rng.standard_normal((7, 2))
    assert inf.automorphisms(-np.linalg.norm(x[:, None] - x[None], axis=-1)) == 1


def test_mantel_min_p_counts_distinct_labellings():
    s = _design(2, 2, 2)
    d = np.random.default_rng(1).standard_normal((3, 8, 8))
    d = d + d.transpose(0, 2, 1)
    r = inf.mantel_test(d, s)
    assert r.extra["distinct_labellings"] == 840 and r.min_p == pytest.approx(2 / 840)
    # the exact p is a multiple of 1/840: each labelling is counted 48 times
    assert (r.p_greater * 840) == pytest.approx(round(r.p_greater * 840))
    r12 = inf.mantel_test(np.tile(_design(3, 2, 2)[None], (2, 1, 1)) * -1 + np.eye(12), _design(3, 2, 2), n_draws=999)
    assert r12.extra["distinct_labellings"] == math.factorial(12) // 48 and r12.min_p == pytest.approx(2 / 1000)


def _prompt_data(rng, n_s, sim, learned, shared=1.5, enc_noise=0.5, curve=1.0):
    """Tangent distances under 12 prompts at ``n_s`` states: the encoder similarity ``enc`` (the attribute
    similarity plus pair noise) shapes them with ``shared`` per unit (the path a random cross-attention
    passes on; ``curve`` > 1 makes it non-linear), prompt quirks repeat in every state, and training adds
    ``learned`` per shared attribute."""
    p = sim.shape[0]
    noise = rng.standard_normal((p, p))
    enc = sim + enc_noise * (noise + noise.T) / 2
    quirk = rng.standard_normal(p)

    def draw(slope):
        e = rng.standard_normal((n_s, p, p))
        return (
            quirk[:, None]
            + quirk[None]
            + (e + e.transpose(0, 2, 1)) / 2
            - shared * (enc - enc.min()) ** curve
            - slope * sim
        )

    return draw(learned), draw(0.0), enc


def test_partial_mantel_is_calibrated_when_training_adds_nothing_beyond_the_encoder():
    sim = _design(3, 2, 2)  # the chapter's 12 prompts (3 colours x 2 positions x 2 backgrounds)
    rng = np.random.default_rng(2)
    sims = 150
    for enc_noise, curve in ((0.5, 1.0), (0.3, 1.5)):  # the encoder close to the attributes; a curved path
        rej, plain = [], []
        for i in range(sims):
            tr, rw, enc = _prompt_data(rng, 10, sim, learned=0.0, enc_noise=enc_noise, curve=curve)
            rej.append(cs.partial_prompt_similarity(tr, sim, enc, n_draws=199, seed=i).p_value < ALPHA)
            if i < 20:
                plain.append(cs.prompt_similarity(tr, sim, n_draws=199, seed=i).p_value < ALPHA)
        assert np.mean(rej) <= tol(sims)
        assert np.mean(plain) > 0.9  # the plain Mantel "reproduces" what the encoder alone gives
    pw = [
        cs.partial_prompt_similarity(
            *_prompt_data(rng, 10, sim, learned=1.0, enc_noise=1.0)[::2], sim, n_draws=199, seed=i
        )
        for i in range(60)
    ]
    assert np.mean([r.p_value < ALPHA and r.estimate < 0 for r in pw]) >= 0.8


def test_the_trained_minus_random_contrast_would_be_anticonservative():
    """Why the chapter partials out the encoder instead: a Mantel test of the rank contrast of trained and
    random-weight distances (same states, same encoder path, separate prompt quirks) rejects too often."""
    from pullback_utils.analysis.inference import _rank

    sim = _design(3, 2, 2)
    iu = np.triu_indices(12, 1)
    rng = np.random.default_rng(6)

    def z(d):
        r = _rank(d[:, iu[0], iu[1]])
        return (r - r.mean(1, keepdims=True)) / r.std(1, keepdims=True)

    rej = []
    for i in range(60):
        q = rng.standard_normal(12)
        tr, _, enc = _prompt_data(rng, 5, sim, learned=0.0)
        rw = tr - (q[:, None] + q[None]) * 1.0  # same encoder path, another quirk pattern
        c = np.zeros_like(tr)
        c[:, iu[0], iu[1]] = z(tr) - z(rw)
        rej.append(inf.mantel_test(c + c.transpose(0, 2, 1), sim, n_draws=199, seed=i).p_value < ALPHA)
    assert np.mean(rej) > 0.15


def test_residualise_removes_the_given_matrix_exactly():
    sim = _design(2, 2, 2)
    enc = sim + 0.1 * np.arange(64).reshape(8, 8) % 3
    enc = (enc + enc.T) / 2
    d = np.stack([2.0 * enc + 1.0, -enc])
    assert np.abs(cs.residualise(d, enc)).max() == pytest.approx(0.0, abs=1e-10)
    with pytest.raises(ValueError, match="items"):
        cs.residualise(d[:, :4, :4], enc)


def _ladder(rng, rungs, seeds, slope, tau=1.0, sigma=0.5):
    """Model spreads: a rung effect shared by the rung's seeds (data draw) plus seed noise."""
    levels = np.arange(1, rungs + 1, dtype=float)
    rung_effect = slope * levels + tau * rng.standard_normal(rungs)
    y = np.repeat(rung_effect, seeds) + sigma * rng.standard_normal(rungs * seeds)
    return np.repeat(levels, seeds), np.repeat(np.arange(rungs), seeds), y


def test_nested_trend_exact_small_case_and_design_floor():
    r = inf.nested_trend_test([2, 2, 3, 3, 6, 6], ["a", "a", "b", "b", "c", "c"], [0.1, 0.3, 0.4, 0.6, 0.8, 1.0])
    assert r.estimate == pytest.approx(1.0) and r.p_greater == pytest.approx(1 / 6) and r.n_units == 3
    assert r.extra["group_means"] == pytest.approx({"a": 0.2, "b": 0.5, "c": 0.9})
    # five rungs: 120 labellings, min p 2/120; a perfect order reaches it, rho = 0.9 gives 10/120
    x = np.repeat([2, 3, 6, 9, 15], 3)
    g = np.repeat(range(5), 3)
    assert inf.nested_trend_test(x, g, np.repeat([1, 2, 3, 4, 5.0], 3)).p_value == pytest.approx(2 / 120)
    assert inf.nested_trend_test(x, g, np.repeat([2, 1, 3, 4, 5.0], 3)).p_value == pytest.approx(10 / 120)
    assert (
        inf.decide(
            *(lambda t: (t.p_value, t.estimate))(inf.nested_trend_test([1, 2], [0, 1], [1, 2.0])), "greater", min_p=1.0
        )
        == inf.UNDERPOWERED
    )
    with pytest.raises(ValueError, match="one level"):
        inf.nested_trend_test([1, 2, 3], [0, 0, 1], [1.0, 2.0, 3.0])


def test_model_level_trend_is_anticonservative_with_rung_effects_the_nested_test_is_not():
    rng = np.random.default_rng(3)
    sims = 300
    nested, flat = [], []
    for i in range(sims):
        x, g, y = _ladder(rng, 5, 3, slope=0.0)
        nested.append(inf.nested_trend_test(x, g, y, n_boot=1).p_value < ALPHA)
        if i < 100:
            flat.append(inf.permutation_trend_test(x, y, n_draws=499, seed=i).p_value < ALPHA)
    assert np.mean(nested) <= tol(sims)
    assert np.mean(flat) > 0.15  # seeds of a rung share its data draw: treating them as units inflates it


def test_tost_calibrated_at_the_margin_and_powerful_inside_it():
    rng = np.random.default_rng(5)
    sims = 400
    at_margin = [
        inf.tost_test(rng.standard_normal(20) + 0.8, 0.8, n_draws=499, seed=i).extra["p_tost"] < ALPHA
        for i in range(sims)
    ]
    assert np.mean(at_margin) <= tol(sims)
    inside = [
        inf.tost_test(rng.standard_normal(20) * 1.0, 0.8, n_draws=499, seed=i).extra["equivalent"] for i in range(100)
    ]
    assert np.mean(inside) >= 0.8
    with pytest.raises(ValueError, match="margin"):
        inf.tost_test([1.0, 2.0], 0.0)


def test_power_lookup_matches_the_test_and_the_fit_recovers_the_effect():
    from pullback_utils.claims import power as pw

    assert pw.critical_rho(5) == pytest.approx(1.0)  # five rungs: only the perfect order reaches p < 0.05
    assert pw.critical_rho(4) == math.inf
    assert pw.design_power(pw.Effect(1.0, 0.0, 0.1), 4, 3) == 0.0
    rng = np.random.default_rng(7)
    eff = pw.Effect(0.3, 0.5, 0.5)
    direct = np.mean(
        [
            inf.nested_trend_test(*_ladder(rng, 6, 2, 0.3, tau=0.5, sigma=0.5), n_boot=1).p_greater * 2 < ALPHA
            for _ in range(300)
        ]
    )
    assert pw.design_power(eff, 6, 2, sims=4000) == pytest.approx(direct, abs=0.08)
    fits = [pw.fit_effect(*_ladder(rng, 10, 3, 0.3, tau=0.5, sigma=0.5)) for _ in range(200)]
    assert np.mean([f.slope for f in fits]) == pytest.approx(0.3, abs=0.03)
    assert np.mean([f.sigma for f in fits]) == pytest.approx(0.5, abs=0.05)
    assert np.mean([f.tau for f in fits]) == pytest.approx(0.5, abs=0.12)
    need = pw.needed_design(eff, sims=2000)
    assert need is not None and need["power"] >= 0.8
    assert pw.design_power(eff, need["rungs"], need["seeds"], sims=2000, seed=1) >= 0.75
