"""network_basis on random-weight diffusers U-Nets with attention: every method vs the exact SVD; local_basis on
a map."""

from __future__ import annotations

import pytest
import torch
from oracles import dense_jacobian, max_angle

import pullback_utils as pu
from pullback_utils import feature_map, local_basis
from pullback_utils.features.basis import network_basis

K = 4


@pytest.fixture(scope="module")
def unet_case(tiny_unet):
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    exact = network_basis(tiny_unet, x, 600, K, method="exact")
    return x, exact


def test_exact_equals_dense_autograd_jacobian(tiny_unet, unet_case):
    x, exact = unet_case
    fn = feature_map(tiny_unet, 600)
    J = dense_jacobian(fn, x)  # stock attention, reverse mode: independent of our products
    _, s, Vh = torch.linalg.svd(J)
    torch.testing.assert_close(exact.s.double(), s[:K], rtol=1e-4, atol=1e-5)
    assert max_angle(exact.v, Vh[:K]) < 1e-3
    # u = J v / σ
    u = (J @ exact.v.reshape(K, -1).double().T).T / exact.s.double()[:, None]
    torch.testing.assert_close(u, exact.u.reshape(K, -1).double(), atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    "method, opts",
    [
        ("krylov", {}),
        ("randomized", {}),
        ("auto", {}),
        ("power", {"tol": 1e-5, "max_iters": 400}),
        ("krylov", {"jvp_mode": "forward"}),
        ("krylov", {"batching": "batch", "chunk_size": 7}),
    ],
)
def test_methods_match_exact_on_unet2d(tiny_unet, unet_case, method, opts):
    x, exact = unet_case
    basis = network_basis(tiny_unet, x, 600, K, method=method, **opts)
    assert basis.v.shape == (K, 1, 3, 16, 16) and basis.u.shape == (K, 1, 32, 4, 4)
    assert max_angle(basis.v, exact.v) < 1e-2
    assert max_angle(basis.u, exact.u) < 1e-2
    torch.testing.assert_close(basis.s, exact.s, rtol=1e-3, atol=1e-4)
    assert basis.info["level"] == 600 and basis.info["timestep"] == 599 and basis.info["layer"] == "mid"


def test_conditional_unet_krylov_vs_exact(tiny_cond_unet):
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(1, 4, 8, 8, generator=gen)
    ehs = torch.randn(1, 5, 24, generator=gen)
    exact = network_basis(tiny_cond_unet, x, 250, 3, encoder_hidden_states=ehs, method="exact")
    fast = network_basis(tiny_cond_unet, x, 250, 3, encoder_hidden_states=ehs, method="krylov", tol=1e-4)
    assert max_angle(fast.v, exact.v) < 1e-2
    torch.testing.assert_close(fast.s, exact.s, rtol=1e-3, atol=1e-4)
    other = network_basis(
        tiny_cond_unet, x, 250, 3, encoder_hidden_states=torch.randn(1, 5, 24, generator=gen), method="exact"
    )
    assert max_angle(other.v, exact.v) > 1e-2  # the prompt changes the basis


def test_other_layer(tiny_unet):
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    b = network_basis(tiny_unet, x, 100, 2, layer="down.1", method="krylov")
    assert b.u.shape == (2, 1, 32, 4, 4) and b.info["layer"] == "down.1"


def test_parameters_and_processors_restored(tiny_unet):
    from diffusers import UNet2DModel

    unet = UNet2DModel(
        sample_size=16,
        block_out_channels=(16, 32),
        layers_per_block=1,
        norm_num_groups=8,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
    )
    procs = [type(m.processor) for m in unet.modules() if hasattr(m, "processor")]
    network_basis(unet, torch.randn(1, 3, 16, 16), 10, 2, method="krylov")
    assert all(p.requires_grad for p in unet.parameters()) and unet.training
    assert [type(m.processor) for m in unet.modules() if hasattr(m, "processor")] == procs


@pytest.mark.parametrize(
    "x_shape, kwargs, match",
    [
        ((3, 16, 16), {}, r"x_t must have shape \(1, 3, H, W\)"),
        ((1, 4, 16, 16), {}, r"x_t must have shape \(1, 3, H, W\)"),
        ((2, 3, 16, 16), {}, r"x_t must have shape"),
        ((1, 3, 15, 16), {}, "multiples of 4"),
        ((1, 3, 16, 16), {"k": 0}, "k must"),
        ((1, 3, 16, 16), {"k": 513}, r"min\(dim x, dim h\)"),
        ((1, 3, 16, 16), {"tol": 0.0}, "tol must"),
        ((1, 3, 16, 16), {"layer": "bottleneck"}, "valid layers"),
        ((1, 3, 16, 16), {"t": -3}, "outside the training grid"),
        ((1, 3, 16, 16), {"t": 2000, "num_train_timesteps": 1000}, "outside the training grid"),
        ((1, 3, 16, 16), {"t": 5000}, r"t=5000 is outside the training grid"),
    ],
)
def test_bad_input(tiny_unet, x_shape, kwargs, match):
    k = kwargs.pop("k", 2)
    t = kwargs.pop("t", 10)
    with pytest.raises((ValueError, TypeError), match=match):
        network_basis(tiny_unet, torch.zeros(x_shape), t, k, **kwargs)


def test_non_finite_x_rejected(tiny_unet):
    x = torch.zeros(1, 3, 16, 16)
    x[0, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="NaN or infinite"):
        network_basis(tiny_unet, x, 10, 2)


# ------------------------------------------------------------------ issue 14: one call shape for every family
def test_named_submodule_layer_vs_exact(tiny_unet):
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(6))
    layer = "down_blocks.1.attentions.0"
    b = network_basis(tiny_unet, x, 300, 3, layer=layer, method="krylov", tol=1e-5)
    J = dense_jacobian(feature_map(tiny_unet, 300, layer=layer), x)
    _, s, Vh = torch.linalg.svd(J)
    torch.testing.assert_close(b.s.double(), s[:3], rtol=1e-3, atol=1e-4)
    assert max_angle(b.v, Vh[:3]) < 1e-2 and b.info["layer"] == layer


def test_conditioning_and_solver_keywords_share_the_call():
    from unet_factories import make_tiny_dit

    dit = make_tiny_dit()
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(7))
    a = network_basis(dit, x, 0.5, 2, class_labels=1, method="krylov", seed=3)
    b = network_basis(dit, x, 0.5, 2, class_labels=torch.tensor([2]), method="krylov", seed=3)
    assert a.info["layer"] == "transformer_blocks.2" and a.v.shape == (2, 1, 4, 8, 8) and a.u.shape == (2, 1, 16, 16)
    assert max_angle(a.v, b.v) > 1e-3  # the class changes the basis
    with pytest.raises(ValueError, match=r"takes no conditioning keyword \['tolerance'\].*solver options are"):
        network_basis(dit, x, 0.5, 2, class_labels=1, tolerance=1e-3)


# ------------------------------------------------------------------ issue 23: one basis call per level
def test_local_basis_of_a_map_is_the_exact_svd():
    """pu.local_basis(fn, x, k) on a nonlinear map: the top-k SVD of its Jacobian (dense oracle)."""
    gen = torch.Generator().manual_seed(8)
    A, B = (
        torch.randn(12, 20, generator=gen, dtype=torch.float64),
        torch.randn(20, 12, generator=gen, dtype=torch.float64),
    )
    x = torch.randn(20, generator=gen, dtype=torch.float64)

    def fn(z):
        return A @ torch.tanh(z) + (B.T @ z) ** 2

    b = local_basis(fn, x, 3, method="exact")
    _, s, Vh = torch.linalg.svd(dense_jacobian(fn, x))
    torch.testing.assert_close(b.s, s[:3])
    assert max_angle(b.v, Vh[:3]) < 1e-8


def test_local_basis_freezes_a_module_and_restores_it():
    net = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 4)).double().train()
    x = torch.randn(6, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    b = local_basis(net, x, 2, method="krylov", tol=1e-6)
    _, s, _ = torch.linalg.svd(dense_jacobian(net, x))
    torch.testing.assert_close(b.s, s[:2], rtol=1e-6, atol=1e-8)
    assert all(p.requires_grad for p in net.parameters()) and net.training


def test_local_basis_refuses_a_denoiser_and_unknown_options(tiny_unet):
    with pytest.raises(TypeError, match=r"DiffusionModel.local_basis\(x_t, t, k, prompt=...\).*network_basis"):
        local_basis(tiny_unet, torch.zeros(1, 3, 16, 16), 2)
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['layer'\]"):
        local_basis(lambda z: z, torch.zeros(3), 2, layer="mid")
    with pytest.raises(TypeError, match="fn must be a differentiable"):
        local_basis(None, torch.zeros(3), 2)


def test_top_level_jacobian_svd_is_deprecated():
    with pytest.warns(FutureWarning, match="pu.local_basis"):
        pu.jacobian_svd
