"""The one time convention, the grid rule and its legs; one DDIM run through kept times."""

from __future__ import annotations

import pytest
import torch
from diffusion_helpers import GaussianEps, tiny_scheduler

from pullback_utils.diffusion import schedule as sc
from pullback_utils.diffusion.ddim import ddim_invert, ddim_invert_to_times, ddim_sample, ddim_sample_to_times
from pullback_utils.features.basis import network_basis
from pullback_utils.features.feature_maps import feature_map
from pullback_utils.models.diffusion_model import DiffusionModel

SHAPE = (3, 4, 4)


def gaussian_model(s: float = 0.5) -> DiffusionModel:
    mu = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    sched = tiny_scheduler("ddim")
    return DiffusionModel(
        GaussianEps(mu, s, sched.alphas_cumprod.double()),
        sched,
        sample_shape=SHAPE,
        conditional=False,
        name="gaussian",
        checks_image_range=False,
    )


def test_unet_timestep_is_level_minus_one_and_refuses_clean_data():
    assert sc.unet_timestep(1.0, 1000) == 999 and sc.unet_timestep(0.5, 1000) == 499
    assert sc.unet_timestep(500, 1000) == 499 and sc.unet_timestep(1, 1000) == 0
    for bad, err, msg in [
        (0, ValueError, "clean data"),
        (0.0, ValueError, "clean data"),
        (5000, ValueError, "outside the training grid"),
        (True, TypeError, "got bool"),
        ("0.5", TypeError, "got str"),
        (float("inf"), ValueError, "fraction of T"),
    ]:
        with pytest.raises(err, match=msg):
            sc.unet_timestep(bad, 1000, name="t_edit")


def test_legs_follow_the_proportional_rule():
    # by hand: 20 steps over [0, 1000]; legs 1000->900 (2), 900->500 (8), 500->100 (8), 100->0 (2)
    assert sc.legs(1000, [100, 900, 500, 0], 20, 1000) == [(1000, 900, 2), (900, 500, 8), (500, 100, 8), (100, 0, 2)]
    assert sc.legs(0, [700, 300, 300], 10, 1000) == [(0, 300, 3), (300, 700, 4)]
    assert sc.legs(1000, [999, 1000], 20, 1000) == [(1000, 999, 1)]  # at least one step
    with pytest.raises(ValueError, match="one side of start"):
        sc.legs(500, [100, 900], 20, 1000)
    g = sc.TimeGrid(1000, 20)
    assert g.levels(1.0, 0.5) == list(range(1000, 499, -50))
    assert g.legs(1.0, [0.9, 0.5]) == [(1000, 900, 2), (900, 500, 8)]
    assert g.to_dict() == {"rule": "ddim-proportional-legs", "num_train_timesteps": 1000, "steps": 20}
    with pytest.raises(ValueError, match="steps must be >= 1"):
        sc.TimeGrid(1000, 0)


def test_sample_to_times_equals_the_legs_run_by_hand():
    m = gaussian_model()
    x = torch.randn(2, *SHAPE, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    states, x0 = ddim_sample_to_times(m, x, [0.5, 0.9, 0.1], steps=20, final=True)
    ref, cur, kept = x, 1000, {}
    for lvl in (900, 500, 100, 0):
        ref = ddim_sample(m, ref, cur, lvl, steps=max(1, round(20 * (cur - lvl) / 1000)))
        kept[lvl], cur = ref, lvl
    torch.testing.assert_close(states, torch.stack([kept[500], kept[900], kept[100]]), rtol=0, atol=0)
    torch.testing.assert_close(x0, kept[0], rtol=0, atol=0)
    s2, none = ddim_sample_to_times(m, x, [1.0, 0.5], steps=20)
    assert none is None and torch.equal(s2[0], x)  # the top level is x_T itself


def test_invert_to_times_equals_one_inversion_per_leg():
    m = gaussian_model(s=0.0)
    x0 = torch.randn(2, *SHAPE, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    up = ddim_invert_to_times(m, x0, [0.8, 0.3], steps=10)
    a = ddim_invert(m, x0, 300, steps=3)
    b = ddim_invert(m, a, 800, steps=5, t_from=300)
    torch.testing.assert_close(up, torch.stack([b, a]), rtol=0, atol=0)


def test_one_convention_for_the_engine_and_the_model(tiny_unet):
    from diffusers import DDPMScheduler

    m = DiffusionModel(tiny_unet, DDPMScheduler(num_train_timesteps=1000), name="tiny")
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    a = network_basis(tiny_unet, x, 0.5, 2, method="exact")
    b = network_basis(tiny_unet, x, 500, 2, method="exact")
    c = m.local_basis(x, 0.5, 2, method="exact")
    torch.testing.assert_close(a.s, b.s, rtol=0, atol=0)
    torch.testing.assert_close(a.s, c.s, rtol=0, atol=0)
    assert a.info["level"] == 500 and a.info["timestep"] == 499
    # the feature map at 0.5 is the stock network at timestep 499 (not 0.5)
    with torch.no_grad():
        got = feature_map(tiny_unet, 0.5, layer="up.0")(x)
        ref = feature_map(tiny_unet, 500, layer="up.0")(x)
    torch.testing.assert_close(got, ref, rtol=0, atol=0)
    with pytest.raises(ValueError, match="t=5000 is outside the training grid"):
        network_basis(tiny_unet, x, 5000, 2)
