"""x-space guidance, naive traversal, parallel transport and h-space alignment (pullback_utils.editing.guidance)."""

from __future__ import annotations

import math

import pytest
import torch

from pullback_utils import editing as E
from pullback_utils.engine.operators import JacobianOperator
from pullback_utils.engine.solvers import LocalBasis
from pullback_utils.features.ad_safe import forward_ad_safe
from pullback_utils.features.feature_maps import feature_map


# ---------------------------------------------------------------------------- guidance
def test_gamma_zero_or_no_steps_leave_x_t_unchanged(pixel, edit):
    it = E.xspace_guidance(pixel, edit.x_t, 0.6, edit.direction, gamma=0.0, n_steps=3)
    assert it.shape == (4, *edit.x_t.shape) and all(torch.equal(x, edit.x_t) for x in it)
    it = E.xspace_guidance(pixel, edit.x_t, 0.6, edit.direction, gamma=2.0, n_steps=0)
    assert it.shape == (1, *edit.x_t.shape) and torch.equal(it[0], edit.x_t)


def test_one_step_is_the_formula(pixel, edit):
    """x^(1) = x + gamma [eps(x + s v) - eps(x)], evaluated independently."""
    x, v = edit.x_t, edit.direction[None]
    it = E.xspace_guidance(pixel, x, 0.6, v, gamma=0.7, n_steps=1, step_size=0.3)
    want = x + 0.7 * (pixel.eps(x + 0.3 * v, 0.6) - pixel.eps(x, 0.6))
    torch.testing.assert_close(it[1], want, rtol=0, atol=1e-5)


def test_plus_and_minus_v_move_in_opposite_directions(pixel, edit):
    v = edit.direction
    s = 0.05
    both = E.xspace_guidance(pixel, edit.x_t, 0.6, torch.stack([v, -v]), gamma=1.0, n_steps=1, step_size=s)
    dp, dm = (both[1] - both[0]).flatten(1)
    cos = float(dp @ dm / (dp.norm() * dm.norm()))
    assert cos < -0.99
    assert float((dp + dm).norm()) < 0.1 * float(dp.norm())  # what is left is second order in s


def test_guidance_refuses_bad_input(no_compute):
    x = no_compute.noise(1)
    v = torch.zeros(3, 16, 16)
    with pytest.raises(ValueError, match=r"t=0 is clean data"):
        E.xspace_guidance(no_compute, x, 0, v, gamma=1.0, n_steps=1)
    with pytest.raises(ValueError, match="prompt='dog' was given, but model 'tiny-pixel' is unconditional"):
        E.xspace_guidance(no_compute, x, 0.5, v, gamma=1.0, n_steps=1, prompt="dog")
    with pytest.raises(ValueError, match=r"direction must have shape \(3, 16, 16\)"):
        E.xspace_guidance(no_compute, x, 0.5, torch.zeros(3, 8, 8), gamma=1.0, n_steps=1)
    with pytest.raises(ValueError, match=r"do not broadcast"):
        E.xspace_guidance(no_compute, no_compute.noise(2), 0.5, torch.zeros(3, 3, 16, 16), gamma=1.0, n_steps=1)
    with pytest.raises(ValueError, match="direction contains NaN"):
        E.xspace_guidance(no_compute, x, 0.5, torch.full((3, 16, 16), math.nan), gamma=1.0, n_steps=1)


# ---------------------------------------------------------------------------- naive traversal
def test_naive_traverse():
    x = torch.zeros(1, 3, 4, 4)
    v = torch.ones(3, 4, 4)
    out = E.naive_traverse(x, v, [0.0, 1.0, -2.0])
    assert out.shape == (3, 1, 3, 4, 4)
    assert torch.equal(out[0], x) and torch.equal(out[2], -2 * torch.ones(1, 3, 4, 4))
    with pytest.raises(ValueError, match="strengths"):
        E.naive_traverse(x, v, [])


# ---------------------------------------------------------------------------- h-space alignment
def test_basis_directions_align_with_their_tangent_vectors(pixel, edit):
    B = edit.basis
    for i in range(B.k):
        cos = E.tangent_alignment(pixel, edit.x_t, 0.6, torch.stack([B.v[i, 0], -B.v[i, 0]]), B.u[i])
        assert float(cos[0]) > 0.97 and float(cos[1]) < -0.97  # J v_i = s_i u_i


def test_feature_jvp_fd_matches_the_exact_jvp(pixel64, pixel, edit):
    """The central difference against J w by automatic differentiation (reverse over reverse).

    In float64 the difference is O(e^2) (e = 1e-2: relative error ~1e-6); in float32 rounding of h
    dominates (error ~ float32 eps * |h| / (e |J w|); a few percent here)."""
    g = torch.Generator().manual_seed(1)
    w = torch.randn(2, 3, 16, 16, generator=g, dtype=torch.float64)
    w = w / w.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    x = edit.x_t.double()
    fd = E.feature_jvp_fd(pixel64, x, 0.6, w)
    fn = feature_map(pixel64.unet, pixel64.level(0.6), num_train_timesteps=pixel64.num_train_timesteps)
    with forward_ad_safe(pixel64.unet):
        exact = JacobianOperator(fn, x).jvp(w[:, None]).flatten(1)
    assert fd.shape == exact.shape == (2, 32 * 4 * 4)
    assert float(((fd - exact).norm(dim=1) / exact.norm(dim=1)).max()) < 1e-4
    fd32 = E.feature_jvp_fd(pixel, edit.x_t, 0.6, w.float())
    assert float(((fd32 - exact).norm(dim=1) / exact.norm(dim=1)).max()) < 0.1


# ---------------------------------------------------------------------------- parallel transport
def _basis(v, u):
    return LocalBasis(v=v, u=u, s=torch.ones(v.shape[0]))


def test_transport_onto_itself_is_the_identity(edit):
    for i in range(edit.basis.k):
        v, c = E.parallel_transport(edit.basis, edit.basis, i, return_coefficients=True)
        torch.testing.assert_close(v, edit.basis.v[i], atol=1e-5, rtol=0)
        torch.testing.assert_close(c, torch.eye(edit.basis.k)[i], atol=1e-5, rtol=0)


def test_transport_formula_and_refusals():
    g = torch.Generator().manual_seed(0)
    V = torch.linalg.qr(torch.randn(6, 3, generator=g))[0].T  # (3, 6) orthonormal rows
    U = torch.linalg.qr(torch.randn(5, 3, generator=g))[0].T
    b1 = _basis(V.reshape(3, 1, 6), U.reshape(3, 1, 5))
    u0 = (U[0] + 2 * U[2]) / math.sqrt(5)
    b0 = _basis(V.reshape(3, 1, 6), u0.reshape(1, 1, 5))
    v = E.parallel_transport(b0, b1, 0)
    torch.testing.assert_close(v.reshape(-1), (V[0] + 2 * V[2]) / math.sqrt(5), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="index=1 is not a direction of a basis of k = 1"):
        E.parallel_transport(b0, b1, 1)
    with pytest.raises(ValueError, match="h shapes differ"):
        E.parallel_transport(_basis(V.reshape(3, 1, 6), torch.ones(3, 1, 4)), b1, 0)
    ortho = torch.linalg.qr(torch.cat([U.T, torch.randn(5, 1, generator=g)], 1))[0][:, 3]
    with pytest.raises(ValueError, match="orthogonal"):
        E.parallel_transport(_basis(V[:1].reshape(1, 1, 6), ortho.reshape(1, 1, 5)), b1, 0)
    with pytest.raises(TypeError, match="basis_from must be a LocalBasis"):
        E.parallel_transport(object(), b1, 0)
