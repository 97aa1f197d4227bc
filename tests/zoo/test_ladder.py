"""The dataset-complexity ladder: determinism, factor counts, nesting, renderer Jacobian, catalogue."""

from __future__ import annotations

import pytest
import torch

from pullback_utils.zoo import datasets as ds
from pullback_utils.zoo import ladder, registry

EXPECTED_COUNTS = {1: 2, 2: 3, 3: 6, 4: 9, 5: 15}


@pytest.mark.parametrize("rung", ladder.RUNGS)
def test_rung_deterministic_counted_and_in_range(rung):
    name = ladder.dataset_name(rung)
    a, b, c = ds.make_dataset(name, 12, seed=5), ds.make_dataset(name, 12, seed=5), ds.make_dataset(name, 12, seed=6)
    assert torch.equal(a.images, b.images) and torch.equal(a.factors, b.factors)
    assert not torch.equal(a.images, c.images)
    assert a.images.shape == (12, 3, 32, 32) and a.images.min() >= -1 and a.images.max() <= 1
    assert a.factors.shape[1] == ladder.n_factors(rung) == EXPECTED_COUNTS[rung] == len(ds.FACTOR_NAMES[name])
    # the renderer's rank at a generic image is the factor count: every free factor moves the image
    jac = ladder.factor_jacobian(rung, a.factors[:1].double())[0]
    assert torch.linalg.matrix_rank(jac, rtol=1e-6) == EXPECTED_COUNTS[rung]


def test_rungs_are_nested():
    # for one seed, rung r + 1 draws the same values for the factors it shares with rung r
    for r in ladder.RUNGS[:-1]:
        lo, hi = ladder.sample_factors(r, 20, seed=3), ladder.sample_factors(r + 1, 20, seed=3)
        assert torch.equal(hi[:, : lo.shape[1]], lo)
    # and with the extra factors set to the fixed values, rung r + 1 renders rung r's image
    f4 = ladder.sample_factors(4, 6, seed=1)
    f5 = torch.cat([f4, torch.tensor(ladder.FIXED[9:]).expand(6, -1)], 1)
    assert torch.allclose(ladder.render(5, f5), ladder.render(4, f4), atol=1e-6)
    f1 = ladder.sample_factors(1, 6, seed=1)
    assert torch.allclose(ladder.render(1, f1).amax(dim=(1, 2, 3)), torch.full((6,), 0.9), atol=1e-3)


@pytest.mark.parametrize("rung", [2, 5])
def test_ladder_jacobian_matches_finite_differences(rung):
    f = ladder.sample_factors(rung, 2, seed=11).double()
    jac = ladder.factor_jacobian(rung, f)
    h = 1e-5
    for k in range(f.shape[1]):
        e = torch.zeros_like(f)
        e[:, k] = h
        fd = (ladder.render(rung, f + e) - ladder.render(rung, f - e)).reshape(2, -1) / (2 * h)
        assert (jac[..., k] - fd).abs().max() / fd.abs().max().clamp_min(1.0) < 1e-4, ladder.ALL_FACTORS[k]


def test_unknown_rung_and_seed_name_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown ladder rung 6; valid rungs: \[1, 2, 3, 4, 5\]"):
        ladder.dataset_name(6)
    with pytest.raises(ValueError, match="valid datasets"):
        ds.make_dataset("ladder-9", 4, seed=0)
    with pytest.raises(ValueError, match=r"rungs \[1, 2, 3, 4, 5\], seeds \[0, 1, 2\]"):
        registry.check_model_name("ladder-2-s7")
    with pytest.raises(ValueError, match="did you mean 'shapes'"):
        registry.check_model_name("shapez")
    with pytest.raises(ValueError, match=r"factors: expected shape \(N, 3\)"):
        ladder.render(2, torch.zeros(4, 2))


def test_catalogue_covers_every_rung_and_seed_with_one_recipe():
    assert len(registry.LADDER_MODELS) == len(ladder.RUNGS) * len(registry.LADDER_SEEDS)
    seen = {(registry.MODELS[n]["rung"], registry.MODELS[n]["seed"]) for n in registry.LADDER_MODELS}
    assert seen == {(r, s) for r in ladder.RUNGS for s in registry.LADDER_SEEDS}
    assert {registry.MODELS[n]["channels"] for n in registry.LADDER_MODELS} == {registry.LADDER_RECIPE["channels"]}
    # seed-major order: every rung's first seed comes before any second seed
    first = registry.LADDER_MODELS[: len(ladder.RUNGS)]
    assert [registry.MODELS[n]["seed"] for n in first] == [0] * len(ladder.RUNGS)
    assert registry.default_folder("ladder-3-s1").parts[-2:] == ("ladder", "ladder-3-s1")
