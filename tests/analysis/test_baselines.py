"""Matched baselines: spectrum-matched random bases keep the power spectrum and nothing else."""

from __future__ import annotations

import math

import pytest
import torch

from pullback_utils.analysis import baselines as bl
from pullback_utils.analysis.geometry import geodesic_distance
from pullback_utils.analysis.spectra import low_frequency_share, radial_psd


def _lowpass_basis(k: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(k, 3, 16, 16, generator=g, dtype=torch.float64)
    f = torch.fft.rfft2(x)
    fy = torch.fft.fftfreq(16).abs()[:, None]
    fx = torch.fft.rfftfreq(16)[None]
    f = f * ((fy**2 + fx**2).sqrt() < 0.12)
    v = torch.fft.irfft2(f, s=(16, 16)).reshape(k, -1)
    q, _ = torch.linalg.qr(v.T)
    return q.T.reshape(k, 3, 16, 16)


def test_one_vector_keeps_its_exact_magnitude_spectrum():
    v = _lowpass_basis(1, 0)
    m = bl.spectrum_matched(v, seed=3)
    torch.testing.assert_close(torch.fft.rfft2(m).abs(), torch.fft.rfft2(v).abs(), rtol=1e-8, atol=1e-10)
    assert not torch.allclose(m, v) and not torch.allclose(m, -v)  # the phases are new


def test_bases_are_orthonormal_spectrum_kept_and_alignment_destroyed():
    v = torch.stack([_lowpass_basis(4, 1), _lowpass_basis(4, 2)])  # (2, k, C, H, W)
    m = bl.spectrum_matched(v, seed=0)
    assert m.shape == v.shape
    for i in range(2):
        flat = m[i].reshape(4, -1)
        torch.testing.assert_close(flat @ flat.T, torch.eye(4, dtype=torch.float64), rtol=0, atol=1e-10)
    # a low-pass basis stays low-pass (radial spectra agree, here within a few per cent of the energy)
    cut = 3.0
    assert (low_frequency_share(m, cut) - low_frequency_share(v, cut)).abs().max() < 0.05
    _, p_m = radial_psd(m)
    _, p_v = radial_psd(v)
    assert (p_m.mean(1) - p_v.mean(1)).abs().sum(-1).max() < 0.1
    # two draws of the same basis are as far apart as two unrelated low-pass bases, far from 0
    a, b = bl.spectrum_matched(v[0], seed=1), bl.spectrum_matched(v[0], seed=2)
    d = geodesic_distance(a.reshape(4, -1), b.reshape(4, -1))
    assert d > 1.0
    torch.testing.assert_close(bl.spectrum_matched(v, seed=0), m, rtol=0, atol=0)  # deterministic


def test_random_weight_model_same_architecture_fresh_weights(tiny_unet):
    from diffusers import DDPMScheduler

    from pullback_utils.models.diffusion_model import DiffusionModel

    m = DiffusionModel(tiny_unet, DDPMScheduler(num_train_timesteps=1000), name="tiny")
    r1, r2 = bl.random_weight_model(m, seed=1), bl.random_weight_model(m, seed=1)
    assert r1.unet.config == m.unet.config and r1.unet is not m.unet and "random weights" in r1.name
    p0, p1, p2 = (next(x.unet.parameters()) for x in (m, r1, r2))
    assert not torch.equal(p0, p1) and torch.equal(p1, p2)
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(m.eps(x, 500), r1.eps(x, 500))
    assert r1.fingerprint != m.fingerprint


def test_normalised_distance_and_bad_input():
    assert bl.normalised_distance(math.pi / 2 * 2.0, 4) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="basis must be a tensor"):
        bl.spectrum_matched(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="NaN"):
        bl.spectrum_matched(torch.full((2, 1, 4, 4), float("nan")))
