"""Tangent-space ground truth (pullback_utils.ground_truth): known answers on a renderer that is linear in
its factors, the real renderer against finite differences, baselines, and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pullback_utils import ground_truth as gt
from pullback_utils.geometry import principal_angles
from pullback_utils.zoo import datasets as zd

D, K = 60, 4


def _linear(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(D, K, generator=g, dtype=torch.float64), torch.randn(D, generator=g, dtype=torch.float64)


def _jacobian_of(render, z: torch.Tensor) -> torch.Tensor:
    return torch.func.jacfwd(render)(z)  # (D, K)


def test_linear_renderer_tangent_basis_spans_col_a():
    A, b = _linear()
    z = torch.randn(K, dtype=torch.float64)
    Q = gt.tangent_basis(_jacobian_of(lambda f: A @ f + b, z))
    assert Q.shape == (K, D)
    assert torch.allclose(Q @ Q.T, torch.eye(K, dtype=torch.float64), atol=1e-12)
    qa, _ = torch.linalg.qr(A)
    assert float(principal_angles(Q, qa.T).max()) < 1e-7


def test_energy_fraction_inside_and_orthogonal():
    A, _ = _linear(1)
    Q = gt.tangent_basis(A)
    g = torch.Generator().manual_seed(2)
    inside = (A @ torch.randn(K, 5, generator=g, dtype=torch.float64)).T  # (5, D) in span(A)
    outside = torch.randn(5, D, generator=g, dtype=torch.float64)
    outside = outside - (outside @ Q.T) @ Q  # orthogonal to span(A)
    assert torch.allclose(gt.energy_fraction(inside, Q), torch.ones(5, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(gt.energy_fraction(outside, Q), torch.zeros(5, dtype=torch.float64), atol=1e-12)
    mixed = inside[0] / inside[0].norm() + outside[0] / outside[0].norm()  # 45 degrees: half the energy
    assert float(gt.energy_fraction(mixed[None], Q)[0]) == pytest.approx(0.5, abs=1e-12)
    assert gt.smallest_angle(inside[:2], Q) == pytest.approx(0.0, abs=1e-6)
    assert gt.smallest_angle(outside[:2], Q) == pytest.approx(math.pi / 2, abs=1e-6)


@pytest.mark.parametrize("defect", ["zero", "duplicate"])
def test_rank_deficient_jacobian(defect):
    A, _ = _linear(3)
    A = A.clone()
    A[:, 2] = 0 if defect == "zero" else 2.5 * A[:, 0]
    Q = gt.tangent_basis(A)
    assert Q.shape == (K - 1, D)
    assert torch.allclose(Q @ Q.T, torch.eye(K - 1, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(gt.energy_fraction(A.T[[0, 1, 3]], Q), torch.ones(3, dtype=torch.float64), atol=1e-12)
    assert gt.tangent_basis(torch.zeros(D, K)).shape == (0, D)


def test_local_pca_of_linear_data_recovers_span():
    A, b = _linear(4)
    g = torch.Generator().manual_seed(5)
    z = 0.05 * torch.randn(400, K, generator=g, dtype=torch.float64)
    pool = z @ A.T + b + 1e-4 * torch.randn(400, D, generator=g, dtype=torch.float64)
    P = gt.local_pca(pool, b, n_neighbours=100, k=K)
    assert P.shape == (K, D)
    assert float(principal_angles(P, gt.tangent_basis(A)).max()) < 0.01
    assert float(gt.energy_fraction(P, gt.tangent_basis(A)).min()) > 0.999


def test_random_baseline_closed_form_matches_monte_carlo():
    A, _ = _linear(6)
    Q = gt.tangent_basis(A)
    mc = gt.random_energy_mc(Q, 4000, seed=0)
    assert gt.random_energy(K, D) == K / D
    se = float(mc.std()) / math.sqrt(mc.numel())
    assert abs(float(mc.mean()) - K / D) < 4 * se


def test_disk_tangent_basis_matches_finite_differences():
    factors, discrete = zd.sample_factors("disks", 2, seed=7)
    Q = gt.data_tangent_bases("disks", factors, discrete)
    assert [q.shape for q in Q] == [(6, 3 * 32 * 32)] * 2
    f = factors.double()
    eps = 1e-5
    for i in range(2):
        cols = []
        for j in range(f.shape[1]):
            e = torch.zeros_like(f[i:i + 1])
            e[0, j] = eps
            cols.append(((zd.render("disks", f[i:i + 1] + e) - zd.render("disks", f[i:i + 1] - e)) / (2 * eps)).reshape(-1))
        fd = torch.stack(cols, 1)
        assert torch.allclose(fd, zd.factor_jacobian("disks", f[i:i + 1])[0], rtol=1e-4, atol=1e-4 * float(fd.abs().max()))
        assert float(principal_angles(Q[i], fd.T).max()) < 1e-4


def test_circle_in_shapes_has_lower_rank():
    factors, discrete = zd.sample_factors("shapes", 8, seed=1)
    discrete = dict(discrete, shape=torch.tensor([0, 1, 2, 3, 0, 1, 2, 3]))
    ranks = [q.shape[0] for q in gt.data_tangent_bases("shapes", factors, discrete)]
    assert ranks == [9, 10, 10, 10, 9, 10, 10, 10]  # a circle does not change under rotation


def test_alignment_stats_and_cross_fitting():
    A, _ = _linear(8)
    Q = gt.tangent_basis(A)
    inside = torch.linalg.qr(A)[0].T[:2]  # (2, D) orthonormal in span(A)
    g = torch.randn(D, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    outside = torch.linalg.qr(g - Q.T @ (Q @ g))[0].T  # (2, D) orthonormal, orthogonal to span(A)
    v = torch.stack([torch.stack([inside, inside, inside]), torch.stack([outside, outside, outside])])  # (2, 3, 2, D)
    st = gt.alignment_stats(v, [Q] * 3, [inside] * 3, n_random=50)
    assert np.allclose(st["energy"][0], 1) and np.allclose(st["energy"][1], 0, atol=1e-12)
    assert np.allclose(st["angle"][0], 0, atol=1e-4) and np.allclose(st["angle"][1], 90, atol=1e-4)
    assert np.allclose(st["pca_energy"], 1) and list(st["rank"]) == [K] * 3
    assert np.allclose(st["random"], K / D)
    cf = gt.cross_fitted_best(st["energy"], st["random"])
    assert cf["best_index"] == 0 and np.allclose(cf["diff"], 1 - K / D)
    # leave-one-out: a sample's own value does not pick its time
    vals = np.array([[1.0, 0.0, 0.0], [0.0, 0.1, 0.1]])
    assert list(gt.cross_fitted_best(vals, np.zeros(3))["loo_index"]) == [1, 0, 0]
    s = gt.per_t_summary(st["energy"], n_boot=100)
    assert s["mean"].shape == (2,) and np.all(s["low"] <= s["mean"] + 1e-12)


def test_bad_input_names_the_parameter():
    A, b = _linear()
    Q = gt.tangent_basis(A)
    with pytest.raises(ValueError, match="jacobian"):
        gt.tangent_basis(torch.zeros(D))
    with pytest.raises(ValueError, match="basis"):
        gt.energy_fraction(torch.ones(2, D), torch.ones(D))
    with pytest.raises(ValueError, match="entries"):
        gt.energy_fraction(torch.ones(2, D + 1), Q)
    with pytest.raises(ValueError, match="vectors"):
        gt.energy_fraction(torch.ones(D), Q)
    pool = torch.randn(30, D, dtype=torch.float64)
    with pytest.raises(ValueError, match="k="):
        gt.local_pca(pool, b, n_neighbours=20, k=D + 1)
    with pytest.raises(ValueError, match="n_neighbours"):
        gt.local_pca(pool, b, n_neighbours=2, k=3)
    with pytest.raises(ValueError, match="n_neighbours"):
        gt.local_pca(pool, b, n_neighbours=31, k=3)
    with pytest.raises(ValueError, match="x has"):
        gt.local_pca(pool, b[:-1], n_neighbours=10, k=3)
    with pytest.raises(ValueError, match="r must"):
        gt.random_energy(D + 1, D)
    with pytest.raises(ValueError, match="name"):
        gt.data_tangent_bases("textures", torch.zeros(1, 6))
    with pytest.raises(ValueError, match="tangents"):
        gt.alignment_stats(torch.zeros(1, 2, 1, D), [Q])
    with pytest.raises(ValueError, match="baseline"):
        gt.cross_fitted_best(np.zeros((2, 3)), np.zeros(2))


def test_invert_to_times_matches_one_inversion_on_the_same_grid():
    import pullback_utils as pu
    from pullback_utils.zoo.registry import available_models

    if "disks" not in available_models():
        pytest.skip("bundled disks model not installed")
    m = pu.load_model("disks")
    x0 = zd.make_dataset("disks", 2, seed=10_000).images
    xs = gt.invert_to_times(m, x0, [0.3, 0.1], steps=10)  # legs 0 -> 100 (1 step), 100 -> 300 (2 steps)
    assert xs.shape == (2, 2, *m.sample_shape)
    assert torch.allclose(xs[0], pu.ddim_invert(m, x0, 0.3, steps=3), atol=1e-5)
    assert torch.allclose(xs[1], pu.ddim_invert(m, x0, 0.1, steps=1), atol=1e-5)
    with pytest.raises(ValueError, match="steps"):
        gt.invert_to_times(m, x0, [0.3], steps=0)
