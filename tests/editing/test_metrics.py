"""Measures of an edit (pullback_utils.editing.metrics): image change, the model's denoising error, the
matched naive step, renderer fit residual and IoU, h-space alignment."""

from __future__ import annotations

import math

import pytest
import torch
from diffusion_helpers import GaussianEps, tiny_scheduler

from pullback_utils import editing as E
from pullback_utils.engine.operators import JacobianOperator
from pullback_utils.features.ad_safe import forward_ad_safe
from pullback_utils.features.feature_maps import feature_map
from pullback_utils.models.diffusion_model import DiffusionModel


# ---------------------------------------------------------------------------- image change
def test_change_metrics():
    a = torch.zeros(2, 3, 8, 8)
    b = a.clone()
    b[1] += 0.5
    torch.testing.assert_close(E.change_size(b, a), torch.tensor([0.0, 0.5], dtype=torch.float64))
    f = E.change_frequency(b, a)
    assert math.isnan(f[0]) and f[1] == 0.0  # a constant change has frequency 0 (global)
    yy, xx = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    wave = torch.cos(2 * math.pi * 3 * xx / 8).expand(1, 3, 8, 8)
    torch.testing.assert_close(
        E.change_frequency(wave, torch.zeros(1, 3, 8, 8)), torch.tensor([3.0], dtype=torch.float64)
    )


def test_distance_from_data_is_small_on_the_data():
    sched = tiny_scheduler("ddpm")
    mu = torch.zeros(1, 4, 4)
    m = DiffusionModel(
        GaussianEps(mu, 0.1, sched.alphas_cumprod), sched, name="gauss", sample_shape=(1, 4, 4), conditional=False
    )
    g = torch.Generator().manual_seed(0)
    on = 0.1 * torch.randn(4, 1, 4, 4, generator=g)
    off = on + 1.0
    d_on, d_off = E.distance_from_data(m, on), E.distance_from_data(m, off)
    assert d_on.shape == (4,) and bool((d_on < d_off).all())
    assert torch.equal(d_on, E.distance_from_data(m, on))  # same noise draws: deterministic


# ---------------------------------------------------------------------------- the matched naive step
def test_match_naive_reaches_the_target(pixel, edit):
    target = float(E.change_size(edit.edited, edit.original)[0])
    out = E.match_naive(
        pixel, edit.x_t, 0.6, edit.direction, target, edit.original, sampling_steps=6, strengths=(0.25, 1, 4, 16, 64)
    )
    assert out["matched"] and out["alpha"] > 0
    assert out["size"] == pytest.approx(target, rel=0.25)
    sizes = [s for _, s in out["grid"]]
    assert sizes == sorted(sizes)
    # the result is the naive step it claims to be
    x0 = E.finish(pixel, edit.x_t + out["alpha"] * edit.direction, 0.6, sampling_steps=6)
    torch.testing.assert_close(out["x0"], x0, rtol=1e-5, atol=1e-5)
    # refined: within rtol of the target
    fine = E.match_naive(
        pixel,
        edit.x_t,
        0.6,
        edit.direction,
        target,
        edit.original,
        sampling_steps=6,
        strengths=(0.25, 1, 4, 16, 64),
        rtol=0.01,
        max_refine=8,
    )
    assert fine["matched"] and abs(fine["size"] - target) <= 0.01 * target
    assert fine["grid"] == out["grid"]


def test_match_naive_batch_is_match_naive_per_pair(pixel, edit):
    v = edit.direction
    d = torch.stack([v, -v])
    targets = [0.5 * float(E.change_size(edit.edited, edit.original)[0]), 1e9]  # the second cannot be reached
    out = E.match_naive_batch(pixel, edit.x_t, 0.6, d, targets, edit.original, sampling_steps=6, strengths=(1, 4, 16))
    assert out["matched"].tolist() == [True, False] and out["alpha"][1] == 16
    one = E.match_naive(pixel, edit.x_t, 0.6, v, targets[0], edit.original, sampling_steps=6, strengths=(1, 4, 16))
    assert out["alpha"][0] == pytest.approx(one["alpha"], rel=1e-4)
    assert float(out["size"][0]) == pytest.approx(one["size"], rel=1e-4)
    with pytest.raises(ValueError, match="target must be >= 0"):
        E.match_naive(pixel, edit.x_t, 0.6, v, -1.0, edit.original)


class TanhEps(torch.nn.Module):
    """A saturating noise predictor, eps = tanh(2 x): the change of the finished image is far from
    linear in the step length alpha."""

    def forward(self, x: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        return torch.tanh(2 * x)


def test_refinement_reaches_the_tolerance_where_interpolation_does_not():
    m = DiffusionModel(TanhEps(), tiny_scheduler("ddpm"), name="tanh", sample_shape=(1, 4, 4), conditional=False)
    x = 0.3 * torch.randn(1, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    v = torch.ones(1, 4, 4) / 4
    orig = m.to_image(E.finish(m, x, 0.6, sampling_steps=6))
    true_alpha = [3.0, 6.0, 12.0]
    targets = [
        float(E.change_size(m.to_image(E.finish(m, x + a * v, 0.6, sampling_steps=6)), orig)[0]) for a in true_alpha
    ]
    d = v.expand(3, 1, 4, 4)
    kw = dict(sampling_steps=6, strengths=(1, 16))
    lin = E.match_naive_batch(m, x, 0.6, d, targets, orig, **kw)
    fine = E.match_naive_batch(m, x, 0.6, d, targets, orig, rtol=1e-3, max_refine=8, **kw)
    t = torch.tensor(targets, dtype=torch.float64)
    assert bool(((lin["size"] - t).abs() > 0.1 * t).all())  # one linear interpolation is far off here
    assert bool(((fine["size"] - t).abs() <= 1e-3 * t).all()) and bool(fine["matched"].all())
    torch.testing.assert_close(fine["alpha"], torch.tensor(true_alpha, dtype=torch.float64), rtol=1e-2, atol=0)


# ---------------------------------------------------------------------------- renderer fit (model-independent)
@pytest.fixture(scope="module")
def shapes_probe():
    """Rendered shapes images, the same with noise of known RMS, a noise image and a blank image."""
    from pullback_utils.zoo.datasets import make_dataset

    g = torch.Generator().manual_seed(0)
    clean = make_dataset("shapes", 2, seed=123).images
    sigma = 0.06  # model range: 0.03 in the fit's pixel units [0, 1]
    noisy = (clean + sigma * torch.randn(clean.shape, generator=g)).clamp(-1, 1)
    noise = torch.rand(1, 3, 32, 32, generator=g) * 2 - 1
    blank = -torch.ones(1, 3, 32, 32)
    x = torch.cat([clean, noisy, noise, blank])
    fit = E.renderer_fit(x, "shapes")
    return x, fit, ((noisy - clean) / 2).pow(2).mean(dim=(1, 2, 3)).sqrt()


def test_renderer_residual_oracle(shapes_probe):
    x, fit, noisy_rms = shapes_probe
    r = E.renderer_residual(x, "shapes", fit=fit)
    assert r.shape == (6,)
    assert bool((r[:2] < 0.01).all())  # a rendered image is drawn back by its renderer
    # a rendered image plus noise of RMS sigma: the residual is the noise (the fit cannot absorb it)
    assert bool(((r[2:4] - noisy_rms).abs() < 0.25 * noisy_rms).all())
    assert float(r[4]) > 0.2  # uniform noise is no rendering
    assert float(r[5]) < 0.01  # a blank image is a (background-only) rendering: the IoU tells it apart
    torch.testing.assert_close(E.renderer_residual(x[:1], "shapes"), r[:1], rtol=0, atol=1e-3)  # fits itself


def test_renderer_iou_oracle(shapes_probe):
    x, fit, _ = shapes_probe
    iou = E.renderer_iou(x, "shapes", fit=fit)
    assert bool((iou[:2] > 0.95).all()) and bool((iou[2:4] > 0.8).all())
    assert float(iou[4]) < 0.5 and float(iou[5]) == 0.0  # noise; no shape at all


def test_renderer_measures_refuse_bad_input():
    x = torch.zeros(1, 3, 32, 32)
    with pytest.raises(
        ValueError,
        match=r"dataset: renderer measures need a zoo dataset with a fitted renderer, "
        r"one of \['disks', 'shapes'.*got 'textures'",
    ):
        E.renderer_residual(x, "textures")
    with pytest.raises(ValueError, match=r"images must be a \(N, 3, 32, 32\) tensor"):
        E.renderer_iou(torch.zeros(1, 3, 16, 16), "disks")
    with pytest.raises(ValueError, match=r"images must be in the model range"):
        E.renderer_residual(x + 127.0, "disks")
    with pytest.raises(ValueError, match="fit must be renderer_fit"):
        E.renderer_iou(torch.zeros(2, 3, 32, 32), "disks", fit={"factors": torch.zeros(1, 6), "rmse": torch.zeros(1)})
    with pytest.raises(ValueError, match="images must be in the model range"):
        E.renderer_iou(
            torch.full((1, 3, 32, 32), 2.0), "disks", fit={"factors": torch.zeros(1, 6), "rmse": torch.zeros(1)}
        )


# ---------------------------------------------------------------------------- h-space alignment
def test_h_alignment_matches_the_exact_jvp(pixel64, edit):
    """The finite-difference cosine against J (x_new - x_t) by automatic differentiation, float64."""
    x = edit.x_t.double()
    g = torch.Generator().manual_seed(2)
    change = torch.cat(
        [
            (edit.iterates[-1] - edit.iterates[0]).double(),
            3.0 * torch.randn(1, 3, 16, 16, generator=g, dtype=torch.float64),
        ]
    )
    fn = feature_map(pixel64.unet, pixel64.level(0.6), num_train_timesteps=pixel64.num_train_timesteps)
    with forward_ad_safe(pixel64.unet):
        jc = JacobianOperator(fn, x).jvp(change[:, None]).flatten(1)
    u = torch.randn(jc.shape[1], generator=g, dtype=torch.float64) + jc[0]  # a tangent partly along J c_0
    want = (jc @ u) / (jc.norm(dim=1) * u.norm())
    got = E.h_alignment(pixel64, x, 0.6, change, u.reshape(32, 4, 4))
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    # one u per row; the change's own image is perfectly aligned; a zero change has no direction
    own = E.h_alignment(pixel64, x, 0.6, change, jc.reshape(2, 32, 4, 4))
    torch.testing.assert_close(own, torch.ones(2, dtype=torch.float64), rtol=0, atol=1e-6)
    zero = E.h_alignment(pixel64, x, 0.6, torch.zeros(1, 3, 16, 16, dtype=torch.float64), u)
    assert math.isnan(float(zero[0]))
    with pytest.raises(ValueError, match="u has 7 entries, but h at layer 'mid' has 512"):
        E.h_alignment(pixel64, x, 0.6, change, torch.ones(7))


def test_h_alignment_is_scale_free_and_agrees_with_tangent_alignment(pixel, edit):
    """A change c * v_1 (any c > 0) is aligned with u_1 (J v_1 = s_1 u_1); -v_1 anti-aligned."""
    v, u = edit.direction, edit.basis.u[1]
    change = torch.stack([5.0 * v, 0.2 * v, -3.0 * v])
    cos = E.h_alignment(pixel, edit.x_t, 0.6, change, u)
    direct = E.tangent_alignment(pixel, edit.x_t, 0.6, torch.stack([v, v, -v]), u)
    torch.testing.assert_close(cos, direct, rtol=0, atol=1e-4)
    assert float(cos[0]) > 0.97 and float(cos[2]) < -0.97
