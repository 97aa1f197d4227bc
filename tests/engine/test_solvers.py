"""jacobian_svd against exact SVDs: linear maps with a known SVD and a small nonlinear MLP."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from oracles import dense_jacobian, max_angle

from pullback_utils import LocalBasis
from pullback_utils.engine.solvers import DegenerateJacobianWarning, jacobian_svd

ITERATIVE = ["power", "randomized", "krylov", "auto"]


def known_linear_map(dim_x=60, dim_h=40, seed=0):
    """fn(x) = A x with A = U diag(s) Vᵀ, s = 10·0.8^i (well separated), x shaped (6, 10)."""
    gen = torch.Generator().manual_seed(seed)
    U, _ = torch.linalg.qr(torch.randn(dim_h, dim_h, generator=gen, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(dim_x, dim_x, generator=gen, dtype=torch.float64))
    s = 10 * 0.8 ** torch.arange(min(dim_x, dim_h), dtype=torch.float64)
    A = U[:, : s.numel()] @ torch.diag(s) @ V[:, : s.numel()].T

    def fn(x):
        return (A.to(x.dtype) @ x.reshape(-1)).reshape(4, 10)

    return fn, A, U, s, V


def mlp(seed=0):
    gen = torch.Generator().manual_seed(seed)
    W1 = torch.randn(32, 24, generator=gen, dtype=torch.float64) / 5
    W2 = torch.randn(20, 32, generator=gen, dtype=torch.float64) / 6

    def fn(x):
        return W2 @ torch.tanh(W1 @ x.reshape(-1)) + 0.1 * torch.sin(W2 @ torch.tanh(W1 @ x.reshape(-1)))

    return fn


@pytest.mark.parametrize("method", ["exact", *ITERATIVE])
def test_linear_map_recovers_known_svd(method):
    fn, A, U, s, V = known_linear_map()
    x = torch.zeros(6, 10, dtype=torch.float64)
    k = 5
    tol = 1e-6 if method == "power" else 1e-4
    basis = jacobian_svd(fn, x, k, method=method, tol=tol)
    assert isinstance(basis, LocalBasis)
    assert basis.v.shape == (k, 6, 10) and basis.u.shape == (k, 4, 10) and basis.s.shape == (k,)
    torch.testing.assert_close(basis.s, s[:k], rtol=1e-6, atol=0)
    assert max_angle(basis.v, V[:, :k].T) < 1e-4
    assert max_angle(basis.u, U[:, :k].T) < 1e-4
    # each triplet: J v_i = σ_i u_i, unit norms, descending σ
    Jv = (A @ basis.v.reshape(k, -1).T).T
    torch.testing.assert_close(Jv, basis.s[:, None] * basis.u.reshape(k, -1), atol=1e-6, rtol=0)
    torch.testing.assert_close(basis.v.reshape(k, -1).norm(dim=1), torch.ones(k, dtype=torch.float64))
    assert torch.all(basis.s[:-1] >= basis.s[1:])
    assert basis.info["n_jvp"] > 0 or basis.info["n_vjp"] > 0


@pytest.mark.parametrize("method", ITERATIVE)
def test_mlp_matches_dense_svd(method):
    fn = mlp()
    x = torch.randn(24, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    J = dense_jacobian(fn, x)
    _, s_true, Vh = torch.linalg.svd(J)
    k = 4
    extra = dict(tol=1e-7, max_iters=3000) if method == "power" else dict(tol=1e-5)
    basis = jacobian_svd(fn, x, k, method=method, **extra)
    torch.testing.assert_close(basis.s, s_true[:k], rtol=1e-5, atol=0)
    assert max_angle(basis.v, Vh[:k]) < 1e-4
    # a-posteriori residual agrees with a direct evaluation on the dense Jacobian
    v = basis.v.reshape(k, -1).T
    direct = ((J.T @ J @ v) - v * basis.s**2).norm(dim=0) / basis.s**2
    assert torch.all(basis.info["residuals"].double() <= direct.max() * 10 + 1e-6)


def test_angle_estimate_tracks_true_error():
    """The a-posteriori angle estimate falls with iterations and stays within a small factor of the truth."""
    fn, A, U, s, V = known_linear_map(dim_x=200, dim_h=150)
    x = torch.zeros(20, 10, dtype=torch.float64)

    def fn200(z):
        return (A @ z.reshape(-1)).reshape(15, 10)

    k = 6
    estimates, truths = [], []
    for iters in (1, 2, 3):
        b = jacobian_svd(fn200, x, k, method="randomized", max_iters=iters, tol=1e-14, oversample=2)
        estimates.append(b.info["angle_estimate"])
        truths.append(max_angle(b.v, V[:, :k].T))
    assert estimates[0] > estimates[-1]
    assert all(0 <= e <= math.pi / 2 for e in estimates)
    for est, true in zip(estimates, truths):
        assert true <= 3 * est + 1e-12


def test_seed_determinism_and_difference():
    fn = mlp()
    x = torch.randn(24, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    a = jacobian_svd(fn, x, 3, method="randomized", seed=7, max_iters=1, tol=1e-12)
    b = jacobian_svd(fn, x, 3, method="randomized", seed=7, max_iters=1, tol=1e-12)
    c = jacobian_svd(fn, x, 3, method="randomized", seed=8, max_iters=1, tol=1e-12)
    assert torch.equal(a.v, b.v) and torch.equal(a.s, b.s)
    assert not torch.equal(a.v, c.v)


def test_power_is_sign_safe_and_counts_products():
    fn, A, U, s, V = known_linear_map()
    x = torch.zeros(6, 10, dtype=torch.float64)
    b = jacobian_svd(fn, x, 3, method="power", tol=1e-8)
    assert b.info["iterations"] >= 10  # official minimum
    # k J·v and k Jᵀu per iteration, plus the products of the Krylov check behind its error estimate
    assert b.info["n_jvp"] + b.info["n_vjp"] - b.info["verify_products"] == 6 * b.info["iterations"]
    assert b.info["n_jvp"] == b.info["n_vjp"] and b.info["verify_products"] > 0
    assert max_angle(b.v, V[:, :3].T) < 1e-6


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(k=0), "k must"),
        (dict(k=41), r"min\(dim x, dim h\)"),
        (dict(k=2.5), "k must be an integer"),
        (dict(k=2, tol=0), "tol must"),
        (dict(k=2, tol=-1.0), "tol must"),
        (dict(k=2, method="lanczos"), "valid methods"),
        (dict(k=2, max_iters=0), "max_iters"),
        (dict(k=2, oversample=-1), "oversample"),
    ],
)
def test_bad_arguments(kwargs, match):
    fn, *_ = known_linear_map()
    x = torch.zeros(6, 10, dtype=torch.float64)
    k = kwargs.pop("k")
    with pytest.raises((ValueError, TypeError), match=match):
        jacobian_svd(fn, x, k, **kwargs)


def test_non_finite_x_rejected_before_evaluation():
    calls = []

    def fn(x):
        calls.append(1)
        return x * 2

    x = torch.ones(5)
    x[2] = math.nan
    with pytest.raises(ValueError, match="NaN"):
        jacobian_svd(fn, x, 1)
    assert not calls


def test_unconverged_run_warns():
    fn = mlp()
    x = torch.randn(24, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with pytest.warns(RuntimeWarning, match="raise max_iters"):
        b = jacobian_svd(fn, x, 4, method="power", max_iters=3, tol=1e-9)
    assert b.info["converged"] is False


# ------------------------------------------------------------------ dim h < dim x (issue 13, item 2)
def wide_map(dim_h=20, dim_x=100, rank=None, seed=123):
    """fn(z) = A z with A (dim_h, dim_x) Gaussian, or of the given rank; its exact SVD."""
    gen = torch.Generator().manual_seed(seed)
    A = torch.randn(dim_h, dim_x, generator=gen, dtype=torch.float64)
    if rank is not None:
        A = (
            torch.randn(dim_h, rank, generator=gen, dtype=torch.float64)
            @ torch.randn(rank, dim_x, generator=gen, dtype=torch.float64)
            / dim_x**0.5
        )
    _, S, Vh = torch.linalg.svd(A)
    return (lambda z: A @ z), A, S, Vh


@pytest.mark.parametrize(
    "method, oversample", [("krylov", None), ("krylov", 0), ("krylov", 20), ("randomized", None), ("randomized", 20)]
)
def test_wide_jacobian_matches_exact_svd(method, oversample):
    """dim h = 20 < dim x = 100: the answer must be the exact SVD, without a warning."""
    fn, A, S, Vh = wide_map()
    x = torch.zeros(100, dtype=torch.float64)
    k = 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        b = jacobian_svd(fn, x, k, method=method, oversample=oversample, tol=1e-6)
    torch.testing.assert_close(b.s, S[:k], rtol=1e-8, atol=0)
    assert max_angle(b.v, Vh[:k]) < 1e-6
    assert b.info["converged"] is True


@pytest.mark.parametrize("dim_h", [1, 2, 5])
def test_rank_one_wide_map(dim_h):
    """A rank-1 map with tiny h: σ₁ = ‖A‖ exactly and v₁ its row direction."""
    gen = torch.Generator().manual_seed(5)
    a = torch.randn(100, generator=gen, dtype=torch.float64)
    c = torch.randn(dim_h, generator=gen, dtype=torch.float64)
    A = torch.outer(c / c.norm(), a / a.norm())  # σ₁ = 1
    b = jacobian_svd(lambda z: A @ z, torch.zeros(100, dtype=torch.float64), 1, method="krylov", tol=1e-8)
    assert float(b.s[0]) == pytest.approx(1.0, rel=1e-10)
    assert max_angle(b.v, a[None]) < 1e-6


# ------------------------------------------------------------------ rank-deficient Jacobians (item 3)
@pytest.mark.parametrize("method", ["exact", "power", "randomized", "krylov"])
def test_zero_jacobian_is_flagged(method):
    x = torch.ones(30, dtype=torch.float64)
    with pytest.warns(DegenerateJacobianWarning, match=r"k = 2 exceeds the numerical rank 0"):
        b = jacobian_svd(lambda z: 0 * z[:10], x, 2, method=method)
    assert b.info["rank"] == 0 and b.info["degenerate"] is True and b.info["converged"] is False
    assert torch.all(b.s == 0) and b.v.shape == (2, 30)


@pytest.mark.parametrize("method", ["exact", "power", "randomized", "krylov"])
def test_k_above_rank_is_flagged_and_the_top_vectors_are_right(method):
    fn, A, S, Vh = wide_map(dim_h=12, dim_x=40, rank=2)
    x = torch.zeros(40, dtype=torch.float64)
    with pytest.warns(DegenerateJacobianWarning, match=r"k = 3 exceeds the numerical rank 2"):
        b = jacobian_svd(fn, x, 3, method=method, tol=1e-8)
    assert b.info["rank"] == 2 and b.info["degenerate"] is True
    torch.testing.assert_close(b.s[:2], S[:2], rtol=1e-7, atol=0)
    assert max_angle(b.v[:2], Vh[:2]) < 1e-5


@pytest.mark.parametrize("method", ["exact", "power", "randomized", "krylov"])
def test_full_rank_reports_rank_and_no_flag(method):
    fn, A, S, Vh = wide_map(dim_h=12, dim_x=40, rank=4)
    x = torch.zeros(40, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        b = jacobian_svd(fn, x, 4, method=method, tol=1e-8, max_iters=3000 if method == "power" else None)
    assert b.info["degenerate"] is False and b.info["rank"] >= 4
    torch.testing.assert_close(b.s, S[:4], rtol=1e-7, atol=0)


# ------------------------------------------------------------------ issue 27: Krylov blocks smaller than k
@pytest.mark.parametrize("block_size", [1, 2, 3])
def test_krylov_blocks_smaller_than_k_recover_the_known_svd(block_size):
    """The Krylov space outgrows k after a few blocks: the space of fewer than k + 1 vectors is not taken for
    'k above the rank' (the guard), and the answer is the exact top-k subspace."""
    fn, A, U, s, V = known_linear_map()
    x = torch.zeros(6, 10, dtype=torch.float64)
    basis = jacobian_svd(fn, x, 6, method="krylov", tol=1e-6, block_size=block_size)
    assert basis.info["block_size"] == block_size and basis.info["converged"] and not basis.info["degenerate"]
    torch.testing.assert_close(basis.s, s[:6], rtol=1e-8, atol=0)
    assert max_angle(basis.v, V[:, :6].T) < 1e-6
    assert basis.info["n_jvp"] % block_size == 0 and basis.info["n_jvp"] == basis.info["n_vjp"]


def test_krylov_block_is_raised_so_max_iters_blocks_can_hold_k_plus_two():
    fn, *_ = known_linear_map()
    x = torch.zeros(6, 10, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        basis = jacobian_svd(fn, x, 6, method="krylov", max_iters=2, block_size=1)
    assert basis.info["block_size"] == 4 and basis.info["iterations"] <= 2 and basis.s.shape == (6,)
    with pytest.raises(ValueError, match="block_size"):
        jacobian_svd(fn, x, 2, method="krylov", block_size=0)


def test_krylov_without_max_iters_stops_at_its_cap_unconverged_and_says_so():
    """A flat spectrum has no gap to verify: uncapped, block Krylov would run until its space outgrew dim h
    (here 75 blocks of 4, then an exact SVD). The default cap stops it after KRYLOV_MAX_ITERS blocks with
    converged False, the reason and a warning, after (k + 2) J·v per block."""
    from pullback_utils.engine.solvers import KRYLOV_MAX_ITERS

    gen = torch.Generator().manual_seed(0)
    dim_x, dim_h = 400, 300
    U, _ = torch.linalg.qr(torch.randn(dim_h, dim_h, generator=gen, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(dim_x, dim_h, generator=gen, dtype=torch.float64))
    s = 1 + 1e-9 * torch.rand(dim_h, generator=gen, dtype=torch.float64)
    A = U @ torch.diag(s) @ V.T

    def fn(x):
        return A @ x

    x = torch.zeros(dim_x, dtype=torch.float64)
    with pytest.warns(RuntimeWarning):
        b = jacobian_svd(fn, x, 2, method="krylov", tol=1e-3)
    assert b.info["iterations"] == KRYLOV_MAX_ITERS == 50
    assert b.info["converged"] is False and b.info["reason"]
    assert b.info["n_jvp"] == 4 * KRYLOV_MAX_ITERS
