"""Guided edits against naive steps at a matched size of change (pullback_utils.editing.matched)."""

from __future__ import annotations

import pytest
import torch

from pullback_utils import editing as E
from pullback_utils.editing import EditConfig


@pytest.fixture(scope="module")
def matched(pixel):
    """2 samples x 2 times x 1 direction per sample x both signs."""
    times = [0.7, 0.4]
    states = E.states_at_times(pixel, pixel.noise(2, seed=7), times, sampling_steps=6)
    g = torch.Generator().manual_seed(3)
    dirs = torch.randn(2, 1, 3, 16, 16, generator=g)  # one unit direction per sample
    dirs = dirs / dirs.flatten(2).norm(dim=2)[..., None, None, None]
    cfg = EditConfig.for_model(pixel).replace(gamma=1.0, n_steps=2, sampling_steps=6)
    out = E.matched_edits(pixel, states, times, dirs, config=cfg, progress=False)
    return states, times, dirs, cfg, out


def test_matched_edits_agree_in_size_within_the_tolerance(matched):
    states, times, dirs, cfg, out = matched
    assert out.labels == ["+d1", "-d1"] and out.levels == [700, 400]
    assert out.guided.shape == out.naive.shape == (2, 2, 2, 3, 16, 16) and out.originals.shape == (2, 2, 3, 16, 16)
    assert out.alpha.shape == out.matched.shape == (2, 2, 2) and len(out.table) == 8
    assert bool(out.matched.all())
    for r in out.table:  # the documented tolerance: rtol = 0.05 of the guided change
        assert r["target"] == r["guided_size"] > 0
        assert abs(r["naive_size"] - r["guided_size"]) <= 0.05 * r["guided_size"]
        assert r["alpha"] > 0 and r["moved"] > 0
    assert {(r["t"], r["sample"], r["sign"]) for r in out.table} == {
        (t, i, s) for t in times for i in (0, 1) for s in (1, -1)
    }


def test_matched_edits_are_what_they_claim(pixel, matched):
    """Recomputed independently: the guided edit (edit_along), the naive step x_t + alpha (sign v), the sizes."""
    states, times, dirs, cfg, out = matched
    ti, i = 1, 0
    v = torch.stack([dirs[i, 0], -dirs[i, 0]])
    x0, _ = E.edit_along(pixel, states[ti][i : i + 1], times[ti], v, gamma=1.0, n_steps=2, sampling_steps=6)
    torch.testing.assert_close(out.x0_guided[ti, i], x0)
    orig = pixel.to_image(E.finish(pixel, states[ti][i : i + 1], times[ti], sampling_steps=6))
    torch.testing.assert_close(out.originals[ti, i : i + 1], orig, rtol=1e-5, atol=1e-5)
    for j, sign in enumerate((1, -1)):
        a = float(out.alpha[ti, i, j])
        naive = E.finish(pixel, states[ti][i : i + 1] + a * sign * dirs[i, 0], times[ti], sampling_steps=6)
        torch.testing.assert_close(out.x0_naive[ti, i, j : j + 1], naive, rtol=1e-5, atol=1e-5)
        row = next(r for r in out.table if r["t"] == times[ti] and r["sample"] == i and r["sign"] == sign)
        ref = out.originals[ti, i]
        assert row["naive_size"] == pytest.approx(float(E.change_size(out.naive[ti, i, j], ref)[0]), rel=1e-9)
        assert row["guided_size"] == pytest.approx(float(E.change_size(out.guided[ti, i, j], ref)[0]), rel=1e-9)


def test_matched_edits_to_a_fixed_size_and_one_time(pixel, matched):
    states, times, dirs, cfg, out = matched
    target = 0.5 * min(r["guided_size"] for r in out.table)
    one = E.matched_edits(
        pixel, states[0], times[0], dirs[0, :1], config=cfg, target=target, signs=(1,), progress=False
    )  # one set of directions shared by both samples
    assert one.labels == ["+d1"] and one.guided.shape == (1, 2, 1, 3, 16, 16)
    assert all(abs(r["naive_size"] - target) <= 0.05 * target and r["target"] == target for r in one.table)
    torch.testing.assert_close(one.guided[0, 0, 0], out.guided[0, 0, 0])  # the guided edit does not depend on target


def test_matched_edits_refuse_bad_input(no_compute):
    x = no_compute.noise(2)
    d = torch.ones(1, 3, 16, 16) / 768**0.5
    with pytest.raises(ValueError, match="target must be > 0"):
        E.matched_edits(no_compute, x, 0.5, d, target=-1.0)
    with pytest.raises(ValueError, match="target must be 'guided' or an RMS change > 0, got 'naive'"):
        E.matched_edits(no_compute, x, 0.5, d, target="naive")
    with pytest.raises(ValueError, match=r"signs must be \+1 or -1"):
        E.matched_edits(no_compute, x, 0.5, d, signs=(2,))
    with pytest.raises(ValueError, match="x_t must hold the states at each of the 2 times"):
        E.matched_edits(no_compute, [x], [0.5, 0.3], d)
    with pytest.raises(ValueError, match=r"directions must have shape \(K, \*\(3, 16, 16\)\) or \(n=2, K, ...\)"):
        E.matched_edits(no_compute, x, 0.5, torch.ones(3, 1, 3, 16, 16))
    with pytest.raises(ValueError, match="t=0 is clean data"):
        E.matched_edits(no_compute, x, 0, d)
    with pytest.raises(ValueError, match="eta_below must be a fraction"):
        E.matched_edits(no_compute, x, 0.5, d, eta_below=3)
    with pytest.raises(ValueError, match="rtol must be > 0"):
        E.matched_edits(no_compute, x, 0.5, d, rtol=0)
    with pytest.raises(ValueError, match="strengths must be > 0"):
        E.matched_edits(no_compute, x, 0.5, d, strengths=(1, -2))


def test_matched_edits_follow_the_guidance_prompt(text):
    x = E.states_at_times(text, text.noise(2, seed=4), [0.6], sampling_steps=4)[0]
    d = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    d = d / d.norm()
    cfg = EditConfig.for_model(text).replace(gamma=1.0, n_steps=2, sampling_steps=4, guidance_prompt="edit")
    out = E.matched_edits(
        text, x, 0.6, d, config=cfg, prompt="a dog", basis_prompt="a red disk", signs=(1,), progress=False
    )
    x0, _ = E.edit_along(
        text,
        x[1:],
        0.6,
        d,
        gamma=1.0,
        n_steps=2,
        sampling_steps=4,
        prompt="a dog",
        basis_prompt="a red disk",
        guidance_prompt="edit",
    )
    torch.testing.assert_close(out.x0_guided[0, 1], x0)
    assert all(abs(r["naive_size"] - r["guided_size"]) <= 0.05 * r["guided_size"] for r in out.table)
