"""Tests of pullback_utils.analysis.geometry against scipy and closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import scipy.stats
import torch

from pullback_utils.analysis.geometry import (
    geodesic_distance,
    pairwise_geodesic_distances,
    principal_angles,
    random_subspace_angles,
    random_subspace_distance,
)
from pullback_utils.analysis.spectra import low_frequency_share, mean_frequency, radial_psd


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _scipy_angles(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sort(scipy.linalg.subspace_angles(a.reshape(len(a), -1).T, b.reshape(len(b), -1).T))


def _random_orthogonal(n: int, rng: np.random.Generator) -> np.ndarray:
    return scipy.stats.ortho_group.rvs(n, random_state=rng)


# ------------------------------------------------------------------ principal angles
@pytest.mark.parametrize("ka,kb", [(3, 3), (2, 5), (5, 2), (1, 4)])
def test_matches_scipy_random(ka: int, kb: int) -> None:
    rng = _rng(ka * 10 + kb)
    a = rng.standard_normal((ka, 3, 4, 4))
    b = rng.standard_normal((kb, 3, 4, 4))
    got = principal_angles(a, b)
    assert isinstance(got, np.ndarray) and got.shape == (min(ka, kb),)
    np.testing.assert_allclose(got, _scipy_angles(a, b), atol=1e-12)
    assert np.all(np.diff(got) >= 0)


def test_matches_scipy_mixed_small_and_large_angles() -> None:
    # Angles 1e-9, 0.3, 1.2, pi/2 built explicitly, then hidden behind random bases of the spans.
    rng = _rng(1)
    dim = 12
    q = _random_orthogonal(dim, rng)
    theta = np.array([1e-9, 0.3, 1.2, math.pi / 2])
    a = q[:, :4].T
    b = np.cos(theta)[:, None] * q[:, :4].T + np.sin(theta)[:, None] * q[:, 4:8].T
    b = rng.standard_normal((4, 4)) @ b  # a non-orthonormal basis of the same span
    got = principal_angles(a, b)
    np.testing.assert_allclose(got, theta, rtol=1e-6, atol=1e-14)
    np.testing.assert_allclose(got[1:], _scipy_angles(a, b)[1:], atol=1e-10)


def test_tiny_angle_relative_accuracy() -> None:
    for eps in (1e-6, 1e-9, 1e-12):
        a = np.array([[1.0, 0.0, 0.0]])
        b = np.array([[math.cos(eps), math.sin(eps), 0.0]])
        got = principal_angles(a, b)[0]
        assert abs(got - eps) <= 1e-6 * eps, (eps, got)


def test_identical_spans_zero() -> None:
    rng = _rng(2)
    a = rng.standard_normal((4, 20))
    b = rng.standard_normal((4, 4)) @ a  # another basis of the same span
    np.testing.assert_allclose(principal_angles(a, b), 0.0, atol=1e-7)
    assert geodesic_distance(a, a) < 1e-7


def test_orthogonal_spans_half_pi() -> None:
    q = _random_orthogonal(10, _rng(3))
    got = principal_angles(q[:3], q[3:7])
    np.testing.assert_allclose(got, np.full(3, math.pi / 2), atol=1e-12)
    assert geodesic_distance(q[:3], q[3:6]) == pytest.approx(math.pi / 2 * math.sqrt(3), abs=1e-12)


@pytest.mark.parametrize("theta", [0.0, 1e-7, 0.4, math.pi / 4, 1.3, math.pi / 2])
def test_plane_rotation(theta: float) -> None:
    # line span(e1) vs the line rotated by theta in the plane
    a = np.array([[1.0, 0.0]])
    b = np.array([[math.cos(theta), math.sin(theta)]])
    assert principal_angles(a, b)[0] == pytest.approx(theta, rel=1e-9, abs=1e-15)
    # in R^4: span(e1, e3) vs span(R e1, e3) -> angles (0, theta)
    a4 = np.eye(4)[[0, 2]]
    b4 = np.array([[math.cos(theta), math.sin(theta), 0, 0], [0, 0, 1, 0]])
    np.testing.assert_allclose(np.sort(principal_angles(a4, b4)), sorted([0.0, theta]), atol=1e-12)
    assert geodesic_distance(a4, b4) == pytest.approx(theta, abs=1e-12)


def test_invariances_basis_change_scaling_sign_rotation() -> None:
    rng = _rng(4)
    a = rng.standard_normal((3, 15))
    b = rng.standard_normal((3, 15))
    ref = principal_angles(a, b)
    g = rng.standard_normal((3, 3))  # change of basis within the span
    scale = np.array([1e-6, 3.0, -2e5])[:, None]  # per-vector scaling and sign
    signs = np.array([-1.0, 1.0, -1.0])[:, None]
    np.testing.assert_allclose(principal_angles(g @ a, scale * b), ref, atol=1e-10)
    np.testing.assert_allclose(principal_angles(signs * a, -b), ref, atol=1e-12)
    r = _random_orthogonal(15, rng)  # the same rotation of both spans
    np.testing.assert_allclose(principal_angles(a @ r.T, b @ r.T), ref, atol=1e-10)
    # symmetric in its arguments
    np.testing.assert_allclose(principal_angles(b, a), ref, atol=1e-12)


def test_torch_in_torch_out_float32() -> None:
    rng = _rng(5)
    a = rng.standard_normal((3, 2, 5, 5))
    b = rng.standard_normal((3, 2, 5, 5))
    got = principal_angles(torch.tensor(a, dtype=torch.float32), torch.tensor(b, dtype=torch.float32))
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), _scipy_angles(a, b), atol=1e-5)
    mixed = principal_angles(torch.tensor(a), b)
    assert isinstance(mixed, torch.Tensor)
    d = geodesic_distance(torch.tensor(a), torch.tensor(b))
    assert isinstance(d, float) and d == pytest.approx(np.sqrt(np.sum(_scipy_angles(a, b) ** 2)))


def test_geodesic_distance_bounds() -> None:
    rng = _rng(6)
    for _ in range(5):
        a = rng.standard_normal((4, 9))
        b = rng.standard_normal((4, 9))
        assert 0.0 <= geodesic_distance(a, b) <= math.pi / 2 * 2 + 1e-12


@pytest.mark.parametrize(
    "a,b,match",
    [
        (np.ones((2, 3)), np.ones((2, 4)), "different sizes"),
        (np.zeros((0, 3)), np.ones((1, 3)), "k=0"),
        (np.array([[1.0, np.nan]]), np.ones((1, 2)), "non-finite"),
        (np.ones(3), np.ones((1, 3)), "at least 2 dimensions"),
        (np.array([[1.0, 0.0], [2.0, 0.0]]), np.eye(2), "linearly dependent"),
        (np.array([[0.0, 0.0]]), np.eye(2)[:1], "zero vector"),
        (np.ones((3, 2)), np.ones((1, 2)), "cannot be independent"),
    ],
)
def test_bad_input(a: np.ndarray, b: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        principal_angles(a, b)


# ------------------------------------------------------------------ pairwise
def test_pairwise_matches_single_calls() -> None:
    rng = _rng(7)
    bases = rng.standard_normal((5, 3, 2, 3, 3))
    bases[3] = (rng.standard_normal((3, 3)) @ bases[1].reshape(3, -1)).reshape(3, 2, 3, 3)  # span of 1
    bases[4] = bases[0] + 1e-8 * rng.standard_normal(bases[0].shape)  # tiny angles -> refined
    d = pairwise_geodesic_distances(bases)
    assert d.shape == (5, 5)
    np.testing.assert_allclose(d, d.T)
    np.testing.assert_allclose(np.diag(d), 0.0)
    for i in range(5):
        for j in range(5):
            if i != j:
                assert d[i, j] == pytest.approx(geodesic_distance(bases[i], bases[j]), rel=1e-6, abs=1e-12)
    assert d[1, 3] < 1e-6
    assert 1e-10 < d[0, 4] < 1e-6
    # list of torch bases, and the two-collection form
    dt = pairwise_geodesic_distances([torch.tensor(b) for b in bases])
    assert isinstance(dt, torch.Tensor)
    np.testing.assert_allclose(dt.numpy(), d, atol=1e-12)
    cross = pairwise_geodesic_distances(bases[:2], bases[2:])
    np.testing.assert_allclose(cross, d[:2, 2:], atol=1e-12)


def test_pairwise_bad_input() -> None:
    with pytest.raises(ValueError, match=r"bases\[1\]"):
        pairwise_geodesic_distances([np.ones((1, 4)), np.ones((1, 5))])
    with pytest.raises(ValueError, match="empty"):
        pairwise_geodesic_distances([])


# ------------------------------------------------------------------ random baseline
def test_random_subspace_trace_identity_and_determinism() -> None:
    # E[sum cos^2] = k * k' / dim exactly (both samplers: dim < k+k' uses full Gaussians).
    for dim, k, k2 in [(40, 3, 3), (5, 3, 4), (1000, 4, 2)]:
        th = random_subspace_angles(dim, k, 3000, seed=1, k_other=k2)
        assert th.shape == (3000, min(k, k2))
        mean = np.mean(np.sum(np.cos(th) ** 2, axis=1))
        se = np.std(np.sum(np.cos(th) ** 2, axis=1)) / math.sqrt(3000)
        assert abs(mean - k * k2 / dim) < 4 * se + 1e-12, (dim, k, k2, mean)
    d1 = random_subspace_distance(50, 4, 10, seed=3)
    np.testing.assert_array_equal(d1, random_subspace_distance(50, 4, 10, seed=3))
    assert np.all(d1 <= math.pi / 2 * 2 + 1e-12) and np.all(d1 > 0)


def test_random_subspace_matches_direct_sampling() -> None:
    # Independent reference: full Gaussian bases in R^dim, numpy QR, arccos of the cosines.
    dim, k, n = 12, 3, 2000
    fast = random_subspace_distance(dim, k, n, seed=0)
    rng = _rng(11)
    qa = np.linalg.qr(rng.standard_normal((n, dim, k)))[0]
    qb = np.linalg.qr(rng.standard_normal((n, dim, k)))[0]
    cos = np.linalg.svd(np.swapaxes(qa, 1, 2) @ qb, compute_uv=False)
    direct = np.sqrt(np.sum(np.arccos(np.clip(cos, -1, 1)) ** 2, axis=1))
    assert scipy.stats.ks_2samp(fast, direct).pvalue > 1e-3
    assert abs(fast.mean() - direct.mean()) < 0.05


def test_random_subspace_high_dim_near_orthogonal() -> None:
    d = random_subspace_distance(196608, 50, 5, seed=0)  # paper-scale latent, cheap
    assert np.all(d < math.pi / 2 * math.sqrt(50))
    assert np.all(d > math.pi / 2 * math.sqrt(50) * 0.97)


def test_random_subspace_bad_input() -> None:
    with pytest.raises(ValueError, match="k"):
        random_subspace_distance(10, 0, 5)
    with pytest.raises(ValueError, match="dim"):
        random_subspace_distance(3, 4, 5)


# ------------------------------------------------------------------ radial PSD
def test_parseval() -> None:
    rng = _rng(8)
    v = rng.standard_normal((2, 5, 3, 8, 6))
    freqs, psd = radial_psd(v, bin_stat="sum")
    assert psd.shape == (2, 5, len(freqs))
    np.testing.assert_allclose(psd.sum(-1), (v**2).sum((-2, -1)).mean(-1), rtol=1e-12)
    _, psd_mean = radial_psd(v, reduce="mean", bin_stat="sum")
    np.testing.assert_allclose(psd_mean, psd.reshape(-1, len(freqs)).mean(0))
    # torch in -> torch out
    _, pt = radial_psd(torch.tensor(v, dtype=torch.float32), bin_stat="sum")
    assert isinstance(pt, torch.Tensor)
    np.testing.assert_allclose(pt.numpy(), psd, rtol=1e-5)


@pytest.mark.parametrize("fy,fx", [(0, 3), (4, 0), (3, 4), (1, 1)])
def test_cosine_peaks_at_its_frequency(fy: int, fx: int) -> None:
    h = w = 16
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    img = np.cos(2 * np.pi * (fy * yy / h + fx * xx / w))
    v = np.stack([img, 0.5 * img])[None]  # (1, C=2, H, W)
    freqs, psd = radial_psd(v, bin_stat="sum")
    r = int(np.rint(math.hypot(fy, fx)))
    assert int(freqs[np.argmax(psd[0])]) == r
    # all energy in that bin
    assert psd[0, r] == pytest.approx(psd[0].sum(), rel=1e-12)
    assert low_frequency_share(v, r)[0] == pytest.approx(1.0)
    assert low_frequency_share(v, r - 1)[0] == pytest.approx(0.0, abs=1e-12)
    assert mean_frequency(v)[0] == pytest.approx(math.hypot(fy, fx))


def test_white_noise_flat_mean_psd_and_shares() -> None:
    rng = _rng(9)
    v = rng.standard_normal((200, 1, 16, 16))
    freqs, psd = radial_psd(v, reduce="mean")  # bin_stat="mean": radially averaged
    # expected power per frequency is 1 for white noise of unit variance
    assert np.all(np.abs(psd[1:12] - 1.0) < 0.25)
    share = low_frequency_share(v, 4)
    assert share.shape == (200,)
    assert np.all((share >= 0) & (share <= 1))
    # smooth vectors are low-frequency dominated
    smooth = np.cumsum(np.cumsum(v, axis=-1), axis=-2)
    assert np.mean(low_frequency_share(smooth, 2)) > np.mean(share) + 0.3
    assert np.mean(mean_frequency(smooth)) < np.mean(mean_frequency(v))


def test_psd_bad_input() -> None:
    with pytest.raises(ValueError, match="vectors"):
        radial_psd(np.ones((4, 4)))
    with pytest.raises(ValueError, match="reduce"):
        radial_psd(np.ones((1, 4, 4)), reduce="sum")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cutoff"):
        low_frequency_share(np.ones((1, 4, 4)), -1)
    with pytest.raises(ValueError, match="zero energy"):
        low_frequency_share(np.zeros((1, 4, 4)), 1)
    with pytest.raises(ValueError, match="non-finite"):
        mean_frequency(np.full((1, 4, 4), np.inf))


# ---------------------------------------------------------------- sigma-weighted projection overlap
def test_weighted_overlap_oracles():
    from pullback_utils.analysis.geometry import pairwise_weighted_overlaps, weighted_overlap

    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((30, 6)))
    a, b = q[:, :3].T, q[:, 3:].T  # orthonormal, mutually orthogonal
    s = np.array([3.0, 2.0, 1.0])
    assert weighted_overlap(a, s, a, s) == pytest.approx(1.0)
    assert weighted_overlap(a, s, a, 5 * s) == pytest.approx(1.0)  # scale-free
    assert weighted_overlap(a, s, b, s) == pytest.approx(0.0, abs=1e-12)
    # a rotation within a block of equal singular values changes nothing; within unequal ones it does
    c, si = math.cos(0.7), math.sin(0.7)
    rot = a.copy()
    rot[0], rot[1] = c * a[0] + si * a[1], -si * a[0] + c * a[1]
    flat = np.array([2.0, 2.0, 1.0])
    assert weighted_overlap(a, flat, rot, flat) == pytest.approx(1.0)
    assert weighted_overlap(a, s, rot, s) < 0.99
    # closed form for one vector each: cos^2 of the angle
    v, w = q[:, 0], math.cos(0.4) * q[:, 0] + math.sin(0.4) * q[:, 1]
    assert weighted_overlap(v[None], [1.0], w[None], [2.0]) == pytest.approx(math.cos(0.4) ** 2)
    # brute force: the Frobenius cosine of the two weighted operators
    ga = (a.T * s) @ a
    m = rng.standard_normal((3, 30))
    mu = m / np.linalg.norm(m, axis=1, keepdims=True)
    gb = (mu.T * s) @ mu
    want = np.sum(ga * gb) / (np.linalg.norm(ga) * np.linalg.norm(gb))
    assert weighted_overlap(a, s, m, s) == pytest.approx(want)
    # a weak trailing vector moves it little, where the geodesic distance jumps
    swapped = np.stack([a[0], a[1], b[0]])
    s_gap = np.array([3.0, 2.0, 0.05])
    assert weighted_overlap(a, s_gap, swapped, s_gap) > 0.99
    # the pairwise version agrees with the pair function and is symmetric
    bases = rng.standard_normal((4, 3, 2, 15))
    sig = rng.uniform(0.5, 2.0, (4, 3))
    p = pairwise_weighted_overlaps(bases, sig)
    assert p.shape == (4, 4) and np.allclose(p, p.T) and np.allclose(np.diag(p), 1.0)
    assert p[1, 3] == pytest.approx(weighted_overlap(bases[1], sig[1], bases[3], sig[3]))
    assert isinstance(pairwise_weighted_overlaps(torch.from_numpy(bases), torch.from_numpy(sig)), torch.Tensor)
    with pytest.raises(ValueError, match="sigmas must be"):
        pairwise_weighted_overlaps(bases, sig[:, :2])
    with pytest.raises(ValueError, match="sa must hold one singular value per basis vector"):
        weighted_overlap(a, s[:2], a, s)
