"""The Gaussian control against independent oracles: the dense closed form, a Monte-Carlo posterior mean
(least squares on simulated pairs), dense autograd Jacobians, the package's own engine on a linear
"network", and a dense fit for the low-rank form."""

from __future__ import annotations

import math

import pytest
import torch
from oracles import dense_jacobian, max_angle

from pullback_utils.analysis import gaussian as G
from pullback_utils.engine.solvers import jacobian_svd
from pullback_utils.sweeps import gaussian_control as GC

SHAPE = (1, 2, 3)  # D = 6: small enough for dense oracles


def _spd(d: int, seed: int, scale: float = 2.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    lam = scale * torch.linspace(3.0, 0.05, d, dtype=torch.float64) ** 2  # distinct, some above and below 1
    return q @ torch.diag(lam) @ q.T


def _exact_fit(mu: torch.Tensor, sigma: torch.Tensor, shape=SHAPE) -> G.GaussianFit:
    lam, vec = torch.linalg.eigh(sigma)
    return G.GaussianFit(
        mean=mu,
        components=vec.flip(1).T.contiguous(),
        variances=lam.flip(0).contiguous(),
        noise_variance=0.0,
        shape=shape,
        n_images=0,
    )


def _closed_form(mu, sigma, x, a):
    d = mu.numel()
    A = math.sqrt(a) * sigma @ torch.linalg.inv(a * sigma + (1 - a) * torch.eye(d, dtype=torch.float64))
    return mu + (x - math.sqrt(a) * mu) @ A.T, A


@pytest.mark.parametrize("a", [0.05, 0.5, 0.95])
def test_denoiser_equals_the_dense_closed_form(a):
    d = math.prod(SHAPE)
    mu = torch.linspace(-0.5, 0.5, d, dtype=torch.float64)
    sigma = _spd(d, 0)
    fit = _exact_fit(mu, sigma)
    x = torch.randn(5, d, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x0, A = _closed_form(mu, sigma, x, a)
    got = G.denoise(fit, x.reshape(5, *SHAPE), a, "sample").reshape(5, d)
    torch.testing.assert_close(got, x0, rtol=1e-10, atol=1e-12)
    eps = (x - math.sqrt(a) * x0) / math.sqrt(1 - a)
    v = math.sqrt(a) * eps - math.sqrt(1 - a) * x0  # the definition of v, not the module's rearrangement
    torch.testing.assert_close(
        G.denoise(fit, x.reshape(5, *SHAPE), a, "epsilon").reshape(5, d), eps, rtol=1e-10, atol=1e-12
    )
    torch.testing.assert_close(
        G.denoise(fit, x.reshape(5, *SHAPE), a, "v_prediction").reshape(5, d), v, rtol=1e-10, atol=1e-12
    )


def test_denoiser_is_the_posterior_mean_by_simulation():
    """Simulate (x0, eps) from the Gaussian; the least-squares regression of each target on (x_t, 1) is
    the posterior mean (it is linear); the module's predictions match it to Monte-Carlo error."""
    d, a, n = math.prod(SHAPE), 0.4, 400_000
    mu = torch.tensor([0.3, -0.2, 0.1, 0.0, 0.5, -0.4], dtype=torch.float64)
    sigma = _spd(d, 2, scale=0.5)
    g = torch.Generator().manual_seed(3)
    x0 = mu + torch.randn(n, d, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(sigma).T
    eps = torch.randn(n, d, generator=g, dtype=torch.float64)
    xt = math.sqrt(a) * x0 + math.sqrt(1 - a) * eps
    v = math.sqrt(a) * eps - math.sqrt(1 - a) * x0
    design = torch.cat([xt, torch.ones(n, 1, dtype=torch.float64)], 1)
    fit = _exact_fit(mu, sigma)
    probe = torch.randn(7, d, generator=g, dtype=torch.float64)
    for target, output in ((x0, "sample"), (eps, "epsilon"), (v, "v_prediction")):
        coef = torch.linalg.lstsq(design, target).solution
        mc = torch.cat([probe, torch.ones(7, 1, dtype=torch.float64)], 1) @ coef
        got = G.denoise(fit, probe.reshape(7, *SHAPE), a, output).reshape(7, d)
        assert (got - mc).abs().max() < 0.02, output


def test_fit_recovers_mean_and_covariance_of_gaussian_data():
    d = math.prod(SHAPE)
    mu = torch.linspace(-1, 1, d, dtype=torch.float64)
    sigma = _spd(d, 4, scale=0.3)
    g = torch.Generator().manual_seed(5)
    x = mu + torch.randn(200_000, d, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(sigma).T
    fit = G.fit_gaussian(x.reshape(-1, *SHAPE))
    assert fit.rank == d and fit.noise_variance == 0.0
    assert (fit.mean - mu).abs().max() < 0.01
    assert (fit.covariance() - sigma).abs().max() < 0.02 * sigma.abs().max()
    xt = torch.randn(3, *SHAPE, generator=g, dtype=torch.float64)
    exact, _ = _closed_form(mu, sigma, xt.reshape(3, d), 0.3)
    assert (G.denoise(fit, xt, 0.3).reshape(3, d) - exact).abs().max() < 0.02


@pytest.mark.parametrize("a", [0.1, 0.45, 0.9])
def test_jacobians_of_the_three_outputs_share_eigenvectors(a):
    """Dense autograd Jacobians: symmetric, commuting (same eigenvectors), affine in A, with the module's
    eigenvalues along the principal components."""
    d = math.prod(SHAPE)
    mu = torch.zeros(d, dtype=torch.float64)
    fit = _exact_fit(mu, _spd(d, 6))
    x = torch.randn(1, *SHAPE, dtype=torch.float64)
    J = {o: dense_jacobian(lambda z, o=o: G.denoise(fit, z, a, o), x) for o in G.OUTPUTS}
    A = J["sample"]
    eye = torch.eye(d, dtype=torch.float64)
    torch.testing.assert_close(J["epsilon"], (eye - math.sqrt(a) * A) / math.sqrt(1 - a), rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(J["v_prediction"], (math.sqrt(a) * eye - A) / math.sqrt(1 - a), rtol=1e-9, atol=1e-10)
    U = fit.components
    for o, Jo in J.items():
        torch.testing.assert_close(Jo, Jo.T, rtol=1e-9, atol=1e-10)
        torch.testing.assert_close(J["sample"] @ Jo, Jo @ J["sample"], rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(
            U @ Jo @ U.T, torch.diag(G.jacobian_eigenvalues(fit.variances, a, o)), rtol=1e-9, atol=1e-9
        )


@pytest.mark.parametrize("output", G.OUTPUTS)
@pytest.mark.parametrize("a", [0.1, 0.9])
@pytest.mark.parametrize("method", ["exact", "krylov"])
def test_engine_on_a_linear_network_reproduces_the_control(output, a, method):
    """A training-free module set to the Gaussian denoiser, pushed through the package's jacobian_svd,
    gives the basis gaussian_basis computes in closed form (principal angles < 1e-5)."""
    d, k = math.prod(SHAPE), 3
    fit = _exact_fit(torch.full((d,), 0.2, dtype=torch.float64), _spd(d, 7))
    net = G.GaussianDenoiser(fit, a, output)
    x = torch.randn(1, *SHAPE, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    fn = lambda z: net(z.unsqueeze(0))[0]  # noqa: E731
    engine = jacobian_svd(fn, x[0], k, method=method, tol=1e-9)
    ctrl = G.gaussian_basis(fit, a, k, output)
    assert not ctrl.info["degenerate"]
    assert max_angle(engine.v, ctrl.v) < 1e-5
    assert max_angle(engine.u, ctrl.u) < 1e-5
    torch.testing.assert_close(engine.s.double(), ctrl.s, rtol=1e-6, atol=1e-9)
    # J v = s u for the control's own triplets
    Jv = torch.stack([fn(x[0] + vi) - fn(x[0]) for vi in ctrl.v])
    torch.testing.assert_close(Jv, ctrl.s[:, None, None, None] * ctrl.u, rtol=1e-9, atol=1e-9)


def test_orderings_differ_between_outputs():
    """x0_hat ranks by variance at every t; eps_hat by inverse variance; v_hat by variance at small alpha_bar
    and by smallest variance at large alpha_bar."""
    d = math.prod(SHAPE)
    fit = _exact_fit(torch.zeros(d, dtype=torch.float64), _spd(d, 9))
    top, bottom = fit.components[:1], fit.components[-1:]
    for a in (0.01, 0.99):
        assert max_angle(G.gaussian_basis(fit, a, 1, "sample").v.reshape(1, -1), top) < 1e-9
        assert max_angle(G.gaussian_basis(fit, a, 1, "epsilon").v.reshape(1, -1), bottom) < 1e-9
    assert max_angle(G.gaussian_basis(fit, 0.01, 1, "v_prediction").v.reshape(1, -1), top) < 1e-9
    assert max_angle(G.gaussian_basis(fit, 0.99, 1, "v_prediction").v.reshape(1, -1), bottom) < 1e-9


def _lowrank_data(d: int, r: int, n: int, seed: int, noise: float = 0.01):
    g = torch.Generator().manual_seed(seed)
    W = torch.linalg.qr(torch.randn(d, r, generator=g, dtype=torch.float64))[0].T
    scales = torch.linspace(3.0, 1.0, r, dtype=torch.float64)
    x = (torch.randn(n, r, generator=g, dtype=torch.float64) * scales) @ W
    return x + noise**0.5 * torch.randn(n, d, generator=g, dtype=torch.float64), W


def test_low_rank_plus_isotropic_agrees_with_dense():
    shape, r = (2, 4, 4), 4
    d = math.prod(shape)
    x, W = _lowrank_data(d, r, 20_000, 10)
    dense = G.fit_gaussian(x.reshape(-1, *shape))
    low = G.fit_gaussian(x.reshape(-1, *shape), rank=r)
    assert low.rank == r and abs(low.noise_variance - 0.01) < 0.001  # the PPCA remainder variance
    assert max_angle(low.components, W) < 0.02
    torch.testing.assert_close(low.variances, dense.variances[:r], rtol=1e-10, atol=1e-12)
    xt = torch.randn(4, *shape, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    for a in (0.1, 0.6):
        # the low-rank operator is the dense formula on its own covariance (up to the dense inverse's rounding) ...
        exact, _ = _closed_form(low.mean, low.covariance(), xt.reshape(4, d), a)
        torch.testing.assert_close(G.denoise(low, xt, a).reshape(4, d), exact, rtol=1e-7, atol=1e-8)
        # ... and close to the dense fit's denoiser (the remainder is nearly isotropic here)
        diff = (G.denoise(low, xt, a) - G.denoise(dense, xt, a)).abs().max()
        assert diff < 0.02 * G.denoise(dense, xt, a).abs().max()
        assert max_angle(G.gaussian_basis(low, a, r).v, G.gaussian_basis(dense, a, r).v) < 1e-9


def test_thin_svd_path_for_few_images_matches_the_eigendecomposition():
    shape, r = (2, 4, 4), 4
    x, _ = _lowrank_data(math.prod(shape), r, 20, 19)  # N = 20 < D = 32: the thin-SVD path
    thin = G.fit_gaussian(x.reshape(-1, *shape), rank=r)
    full = G.fit_gaussian(x.reshape(-1, *shape))  # rank D: the dense eigendecomposition
    assert max_angle(thin.components, full.components[:r]) < 1e-8
    torch.testing.assert_close(thin.variances, full.variances[:r], rtol=1e-9, atol=1e-12)
    assert abs(thin.noise_variance - float(full.variances[r:].mean())) < 1e-9


def test_randomized_fit_for_large_d_matches_the_dense_truncation(monkeypatch):
    shape, r = (3, 6, 6), 5
    d = math.prod(shape)
    x, _ = _lowrank_data(d, r, 3000, 12)
    dense = G.fit_gaussian(x.reshape(-1, *shape), rank=r)
    monkeypatch.setattr(G, "MAX_DENSE_DIM", 10)
    with pytest.raises(ValueError, match="rank must be given"):
        G.fit_gaussian(x.reshape(-1, *shape))
    rand = G.fit_gaussian(x.reshape(-1, *shape), rank=r)
    assert max_angle(rand.components, dense.components) < 1e-6
    torch.testing.assert_close(rand.variances, dense.variances, rtol=1e-6, atol=1e-9)
    assert abs(rand.noise_variance - dense.noise_variance) < 1e-6 * dense.variances[0]


def test_basis_in_the_isotropic_remainder_is_flagged_degenerate():
    shape, r = (2, 4, 4), 4
    x, _ = _lowrank_data(math.prod(shape), r, 5000, 13)
    low = G.fit_gaussian(x.reshape(-1, *shape), rank=r)
    b = G.gaussian_basis(low, 0.95, 3, "v_prediction")  # the smallest variances win: the remainder
    assert b.info["from_isotropic_rest"] == 3 and b.info["degenerate"]
    flat = b.v.reshape(3, -1)
    torch.testing.assert_close(flat @ flat.T, torch.eye(3, dtype=torch.float64), rtol=0, atol=1e-10)
    assert (flat @ low.components.T).abs().max() < 1e-10
    assert not G.gaussian_basis(low, 0.05, 3, "v_prediction").info["degenerate"]


class _Schedule:
    prediction_type = "v_prediction"

    def alpha_bar(self, t):
        return 1.0 - 0.98 * float(t)


def test_sweep_repeats_one_basis_so_cross_sample_distances_vanish():
    from pullback_utils.claims import statistics as cs

    d = math.prod(SHAPE)
    fit = _exact_fit(torch.zeros(d, dtype=torch.float64), _spd(d, 14))
    times = [0.9, 0.5, 0.1]
    sw = GC.gaussian_sweep(fit, _Schedule(), times, 2, 12)
    assert sw.v.shape == (3, 12, 2, *SHAPE) and sw.s.shape == (3, 12, 2)
    assert sw.info[0][0]["output"] == "v_prediction"
    cross = sw.cross_sample_distances("u")
    assert cross.shape == (3, 12, 12) and abs(cross).max() < 1e-3  # float32 storage
    res = cs.early_similarity(cross, times)
    assert abs(res.estimate) < 1e-3
    torch.testing.assert_close(
        GC.gaussian_sweep(fit, _Schedule(), times, 2, 12, output="sample").v[0, 3],
        fit.components[:2].reshape(2, *SHAPE).float(),
    )


def test_gaussian_share():
    shape = (2, 4, 4)
    x, _ = _lowrank_data(math.prod(shape), 4, 2000, 15)
    fit = G.fit_gaussian(x.reshape(-1, *shape), rank=8)
    own = fit.components[:3].reshape(3, *shape)
    torch.testing.assert_close(G.gaussian_share(own, fit, 3), torch.ones(3, dtype=torch.float64))
    rnd = torch.randn(20000, *shape, generator=torch.Generator().manual_seed(16), dtype=torch.float64)
    assert abs(float(G.gaussian_share(rnd, fit, 8).mean()) - 8 / 32) < 0.01  # K / D for random directions
    with pytest.raises(ValueError, match="K must be <="):
        G.gaussian_share(own, fit, 9)


def test_energy_low_share_counts_the_remainder_exactly():
    """With all D directions of equal variance the Jacobian is a multiple of I: its energy low share is
    the white-noise share, whether the directions are explicit components or the isotropic remainder."""
    from pullback_utils.analysis.spectra import white_noise_low_share

    shape = (1, 8, 8)
    d = math.prod(shape)
    q = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(17), dtype=torch.float64))[0]
    full = G.GaussianFit(
        torch.zeros(d, dtype=torch.float64), q.T.contiguous(), torch.full((d,), 0.7, dtype=torch.float64), 0.0, shape, 0
    )
    part = G.GaussianFit(
        torch.zeros(d, dtype=torch.float64),
        q.T[:5].contiguous(),
        torch.full((5,), 0.7, dtype=torch.float64),
        0.7,
        shape,
        0,
    )
    white = white_noise_low_share(8, 8, 2.0)
    for fit in (full, part):
        assert abs(G.energy_low_share(fit, 0.3, 2.0) - white) < 1e-9


def test_fit_dataset_is_cached_and_keyed(tmp_path):
    a = G.fit_dataset("disks", n_images=40, seed=3, rank=8, cache_dir=tmp_path)
    files = list((tmp_path / "gaussian").glob("disks-*.safetensors"))
    assert len(files) == 1
    b = G.fit_dataset("disks", n_images=40, seed=3, rank=8, cache_dir=tmp_path)
    torch.testing.assert_close(a.components, b.components, rtol=0, atol=0)
    assert a.noise_variance == b.noise_variance and a.shape == b.shape == (3, 32, 32)
    c = G.fit_dataset("disks", n_images=40, seed=4, rank=8, cache_dir=tmp_path)  # another seed: another entry
    assert len(list((tmp_path / "gaussian").glob("*.safetensors"))) == 2 and not torch.equal(a.mean, c.mean)


def test_bad_input_is_refused_with_the_parameter_named():
    d = math.prod(SHAPE)
    fit = _exact_fit(torch.zeros(d, dtype=torch.float64), _spd(d, 18))
    with pytest.raises(ValueError, match="output must be one of"):
        G.gaussian_basis(fit, 0.5, 2, "x0")
    with pytest.raises(ValueError, match="alpha_bar must lie"):
        G.denoise(fit, torch.zeros(1, *SHAPE), 1.0, "epsilon")
    with pytest.raises(ValueError, match="rank must be <="):
        G.fit_gaussian(torch.randn(10, *SHAPE), rank=7)
    with pytest.raises(ValueError, match="x_t must be"):
        G.denoise(fit, torch.zeros(1, 6), 0.5)
    with pytest.raises(ValueError, match="dataset must be a zoo dataset"):
        G.fit_dataset("celeba")
