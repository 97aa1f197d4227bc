"""DDIM sampling and inversion: closed-form oracles (Gaussian data) and random-weight U-Nets.

For data N(mu, s^2 I) the optimal eps-predictor is linear, eps(x, a) = sqrt(1-a) d / sigma^2 with
d = x - sqrt(a) mu and sigma^2 = a s^2 + 1 - a (a = alpha_bar). Then:
- the probability-flow ODE keeps z = d / sigma constant (it maps the Gaussian marginals linearly);
- one DDIM step from a to b maps d_a to d_b = d_a K(a, b) / sigma_a^2 with
  K(a, b) = sqrt(a b) s^2 + sqrt((1-a)(1-b)); K = sigma_a sigma_b (exact ODE step) iff s = 0
  (Cauchy-Schwarz), so DDIM is exact for a point mass and first-order accurate otherwise.
"""

from __future__ import annotations

import math

import pytest
import torch
from diffusion_helpers import GaussianEps, save_pixel_pipeline, tiny_scheduler

from pullback_utils.diffusion.ddim import ddim_invert, ddim_sample, ddim_timesteps, resolve_time
from pullback_utils.models.diffusion_model import DiffusionModel
from pullback_utils.zoo.loading import load_model

SHAPE = (3, 4, 4)


def gaussian_model(s: float, seed: int = 0) -> tuple[DiffusionModel, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(SHAPE, generator=g, dtype=torch.float64)
    sched = tiny_scheduler("ddim")
    unet = GaussianEps(mu, s, sched.alphas_cumprod.double())
    return DiffusionModel(
        unet, sched, sample_shape=SHAPE, conditional=False, name="gaussian", checks_image_range=False
    ), mu  # Gaussian data, not images


def randn(seed: int, n: int = 1) -> torch.Tensor:
    return torch.randn((n, *SHAPE), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def alpha_bar(model: DiffusionModel, n: int) -> float:
    """Independent of the package: level 0 is clean data, level n >= 1 is alphas_cumprod[n - 1]."""
    return 1.0 if n == 0 else float(model.scheduler.alphas_cumprod[n - 1])


# ------------------------------------------------------------------ times and grids
def test_resolve_time_ints_and_fractions_agree():
    T = 1000
    assert resolve_time(1.0, T) == resolve_time(1000, T) == 1000
    assert resolve_time(0.5, T) == 500
    assert resolve_time(0.0, T) == resolve_time(0, T) == 0
    assert resolve_time(0.0005, T) == 1  # halves round up
    assert resolve_time(0.6, T) == 600  # 0.6 * 1000 = 599.999...: rounded, not truncated
    assert resolve_time(torch.tensor(7), T) == 7


@pytest.mark.parametrize(
    "bad, err",
    [
        (1001, ValueError),
        (-1, ValueError),
        (1.5, ValueError),
        (float("nan"), ValueError),
        (True, TypeError),
        ("0.5", TypeError),
    ],
)
def test_resolve_time_rejects(bad, err):
    with pytest.raises(err, match="t_from"):
        resolve_time(bad, 1000, name="t_from")


def test_grid_levels_and_shared_by_sampling_and_inversion():
    model, _ = gaussian_model(0.5)
    assert ddim_timesteps(model, 1.0, 0, 10) == list(range(1000, -1, -100))
    assert ddim_timesteps(model, 0.5, 0.0, 3) == [500, 333, 167, 0]
    assert ddim_timesteps(model, 0, 0.5, 3) == [0, 167, 333, 500]
    assert ddim_timesteps(model, 3, 0, 10) == [3, 2, 1, 0]  # at most one step per level
    assert ddim_timesteps(model, 0.3, 0.3, 4) == [300]


# ------------------------------------------------------------------ closed-form oracles
def test_point_mass_ddim_is_exact_on_the_ode():
    model, mu = gaussian_model(0.0)
    z = randn(1)
    x_top = math.sqrt(alpha_bar(model, 1000)) * mu + math.sqrt(1 - alpha_bar(model, 1000)) * z
    for steps, m in [(7, 300), (1, 420), (33, 1)]:
        x = ddim_sample(model, x_top, 1.0, m, steps=steps)
        expected = math.sqrt(alpha_bar(model, m)) * mu + math.sqrt(1 - alpha_bar(model, m)) * z
        torch.testing.assert_close(x, expected, rtol=0, atol=1e-10)
    torch.testing.assert_close(ddim_sample(model, x_top, 1.0, 0, steps=5), mu.expand(1, *SHAPE), rtol=0, atol=1e-10)


def _ddim_factor(model, s, a_level, b_level):
    a, b = alpha_bar(model, a_level), alpha_bar(model, b_level)
    K = math.sqrt(a * b) * s**2 + math.sqrt((1 - a) * (1 - b))
    return K / (a * s**2 + 1 - a)


@pytest.mark.parametrize("t_from, t_to, steps", [(1.0, 0, 10), (0.8, 0.35, 7), (613, 2, 40)])
def test_gaussian_ddim_matches_its_closed_form_recursion(t_from, t_to, steps):
    s = 0.5
    model, mu = gaussian_model(s)
    n_from = resolve_time(t_from, 1000)
    n_to = resolve_time(t_to, 1000)
    z = randn(2, n=2)
    sig_from = math.sqrt(alpha_bar(model, n_from) * s**2 + 1 - alpha_bar(model, n_from))
    x = math.sqrt(alpha_bar(model, n_from)) * mu + sig_from * z
    out, traj = ddim_sample(model, x, t_from, t_to, steps=steps, return_trajectory=True)
    assert traj.times[0] == n_from and traj.times[-1] == n_to and len(traj.times) == steps + 1
    assert traj.states.shape == (steps + 1, 2, *SHAPE)
    d = sig_from * z
    for i, (a_lvl, b_lvl) in enumerate(zip(traj.times[:-1], traj.times[1:])):
        d = d * _ddim_factor(model, s, a_lvl, b_lvl)
        expected = math.sqrt(alpha_bar(model, b_lvl)) * mu + d
        torch.testing.assert_close(traj.states[i + 1], expected, rtol=0, atol=1e-10)
    torch.testing.assert_close(out, traj.states[-1])


def test_gaussian_ddim_converges_to_the_probability_flow_ode_at_first_order():
    s = 0.5
    model, mu = gaussian_model(s)
    z = randn(3)
    a_top = alpha_bar(model, 1000)
    x_top = math.sqrt(a_top) * mu + math.sqrt(a_top * s**2 + 1 - a_top) * z
    ode = mu + s * z  # z is constant along the ODE; at clean data sigma = s
    errs = [float((ddim_sample(model, x_top, 1.0, 0, steps=S) - ode).norm() / (s * z).norm()) for S in (50, 100, 200)]
    assert errs[0] < 0.08 and errs[2] < 0.02
    for coarse, fine in zip(errs[:-1], errs[1:]):
        assert 1.7 < coarse / fine < 2.3  # halving the step halves the error


def test_gaussian_inversion_lands_on_the_requested_level_and_round_trips():
    s = 0.5
    model, mu = gaussian_model(s)
    x0 = mu + s * randn(4, n=2)
    xn, traj = ddim_invert(model, x0, 0.6, steps=20, fixed_point_iters=30, return_trajectory=True)
    assert traj.times[0] == 0 and traj.times[-1] == 600
    # Exact inverse of the DDIM sampler: d_b = d_a sigma_b^2 / K(a, b), step by step.
    d = x0 - mu
    for a_lvl, b_lvl in zip(traj.times[:-1], traj.times[1:]):
        d = d / _ddim_factor(model, s, b_lvl, a_lvl)
    torch.testing.assert_close(xn, math.sqrt(alpha_bar(model, 600)) * mu + d, rtol=0, atol=1e-9)
    back = ddim_sample(model, xn, 0.6, 0, steps=20)
    torch.testing.assert_close(back, x0, rtol=0, atol=1e-9)
    # With one step per level it approaches the ODE's own map x0 -> x_600 (z = (x0 - mu) / s kept).
    a = alpha_bar(model, 600)
    ode = math.sqrt(a) * mu + math.sqrt(a * s**2 + 1 - a) * (x0 - mu) / s
    fine = ddim_invert(model, x0, 0.6, steps=600, fixed_point_iters=2)
    assert float((fine - ode).norm() / (ode - math.sqrt(a) * mu).norm()) < 0.01


def test_explicit_inversion_round_trip_error_shrinks_with_steps():
    model, mu = gaussian_model(0.5)
    x0 = mu + 0.5 * randn(5)
    errs = []
    for steps in (10, 40):
        xn = ddim_invert(model, x0, 1.0, steps=steps)
        errs.append(float((ddim_sample(model, xn, 1.0, 0, steps=steps) - x0).norm() / x0.norm()))
    assert errs[1] < errs[0] / 3


# ------------------------------------------------------------------ random-weight diffusers U-Net
@pytest.fixture(scope="module")
def pixel_model(tmp_path_factory):
    return load_model(save_pixel_pipeline(tmp_path_factory.mktemp("ddpm")))


def test_random_unet_shapes_dtype_determinism_and_batch_independence(pixel_model):
    m = pixel_model
    x = m.noise(2, seed=3)
    assert x.shape == (2, 3, 16, 16) and x.dtype == torch.float32
    torch.testing.assert_close(x, m.noise(2, seed=3), rtol=0, atol=0)
    out, traj = ddim_sample(m, x, 1.0, 0.0, steps=4, return_trajectory=True)
    assert out.shape == x.shape and out.dtype == torch.float32 and torch.isfinite(out).all()
    assert traj.states.shape == (5, 2, 3, 16, 16) and traj.times == [1000, 750, 500, 250, 0]
    torch.testing.assert_close(traj.states[0], x, rtol=0, atol=0)
    torch.testing.assert_close(ddim_sample(m, x, 1.0, 0.0, steps=4), out, rtol=0, atol=0)
    one = ddim_sample(m, x[1:], 1.0, 0.0, steps=4)
    # batch 1 and batch 2 may take different float32 conv kernels: equal up to rounding, amplified by 4 steps
    torch.testing.assert_close(one, out[1:], rtol=1e-3, atol=2e-4)
    # Sampling in two legs with matching grids equals one run.
    mid = ddim_sample(m, x, 1.0, 0.5, steps=2)
    torch.testing.assert_close(ddim_sample(m, mid, 0.5, 0, steps=2), out, rtol=1e-5, atol=1e-5)
    assert torch.equal(ddim_sample(m, x, 0.5, 0.5, steps=3), x)


def test_eta_noise_is_seeded(pixel_model):
    m = pixel_model
    x = m.noise(1, seed=0)
    a = ddim_sample(m, x, 0.6, 0, steps=3, eta=1.0, seed=1)
    b = ddim_sample(m, x, 0.6, 0, steps=3, eta=1.0, seed=1)
    c = ddim_sample(m, x, 0.6, 0, steps=3, eta=1.0, seed=2)
    d0 = ddim_sample(m, x, 0.6, 0, steps=3, eta=0.0, seed=2)
    assert torch.equal(a, b) and not torch.allclose(a, c)
    assert torch.equal(d0, ddim_sample(m, x, 0.6, 0, steps=3))


def test_invert_then_sample_round_trips_on_a_random_unet(pixel_model):
    m = pixel_model
    x0 = m.noise(1, seed=5).clamp(-1, 1)
    xn = ddim_invert(m, x0, 0.3, steps=3, fixed_point_iters=6)
    back = ddim_sample(m, xn, 0.3, 0, steps=3)
    assert float((back - x0).abs().max()) < 1e-3


# ------------------------------------------------------------------ bad input
def test_bad_input_is_named(pixel_model):
    m = pixel_model
    x = m.noise(1)
    with pytest.raises(ValueError, match="steps"):
        ddim_sample(m, x, 1.0, 0, steps=0)
    with pytest.raises(TypeError, match="steps"):
        ddim_invert(m, x, 1.0, steps=2.0)
    with pytest.raises(ValueError, match="t_to"):
        ddim_sample(m, x, 0.3, 0.6, steps=2)
    with pytest.raises(ValueError, match="t_to"):
        ddim_invert(m, x, 0.3, t_from=0.6, steps=2)
    with pytest.raises(ValueError, match=r"x must have shape \(B, 3, 16, 16\)"):
        ddim_sample(m, torch.zeros(1, 4, 16, 16), 1.0, 0, steps=2)
    with pytest.raises(ValueError, match="x0 must have shape"):
        ddim_invert(m, torch.zeros(3, 16, 16), 1.0, steps=2)
    with pytest.raises(ValueError, match=r"x0 must be in the model range \[-1, 1\].*\[0, 255\]"):
        ddim_invert(m, torch.full((1, 3, 16, 16), 255.0), 1.0, steps=2)  # used to run (outputs up to +-190)
    with pytest.raises(ValueError, match="prompt"):
        ddim_sample(m, x, 1.0, 0, steps=2, prompt="a dog")
    with pytest.raises(ValueError, match="guidance_scale"):
        ddim_sample(m, x, 1.0, 0, steps=2, guidance_scale=3.0)
    with pytest.raises(ValueError, match="eta"):
        ddim_sample(m, x, 1.0, 0, steps=2, eta=2.0)
    with pytest.raises(ValueError, match="t_from"):
        ddim_sample(m, x, 2.0, 0, steps=2)
    with pytest.raises(ValueError, match="fixed_point_iters"):
        ddim_invert(m, x, 1.0, steps=2, fixed_point_iters=-1)
    with pytest.raises(ValueError, match="NaN"):
        ddim_sample(m, torch.full((1, 3, 16, 16), float("nan")), 1.0, 0, steps=2)
