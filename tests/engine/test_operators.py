"""JacobianOperator: finite differences, adjointness, and agreement of all product paths."""

from __future__ import annotations

import pytest
import torch

from pullback_utils import feature_map
from pullback_utils.engine.operators import JacobianOperator
from pullback_utils.features.ad_safe import forward_ad_safe


@pytest.fixture(scope="module")
def unet_op(tiny_unet):
    fn = feature_map(tiny_unet, 400)
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with forward_ad_safe(tiny_unet):
        yield fn, x


@pytest.mark.parametrize("jvp_mode", ["forward", "reverse"])
def test_jvp_matches_central_finite_differences(jvp_mode):
    from unet_factories import make_tiny_unet2d

    unet64 = make_tiny_unet2d(seed=5).double()  # float64 for a clean finite-difference oracle
    fn = feature_map(unet64, 400)
    gen = torch.Generator().manual_seed(1)
    x64 = torch.randn(1, 3, 16, 16, dtype=torch.float64, generator=gen)
    V = torch.randn(3, 1, 3, 16, 16, dtype=torch.float64, generator=gen)
    with forward_ad_safe(unet64):
        JV = JacobianOperator(fn, x64, jvp_mode=jvp_mode).jvp(V)
    eps = 1e-5
    with torch.no_grad():
        fd = torch.stack([(fn(x64 + eps * v) - fn(x64 - eps * v)) / (2 * eps) for v in V])
    torch.testing.assert_close(JV, fd, rtol=1e-6, atol=1e-6)


def test_adjoint_identity(unet_op):
    fn, x = unet_op
    op = JacobianOperator(fn, x)
    gen = torch.Generator().manual_seed(2)
    V = torch.randn(4, *op.x_shape, generator=gen)
    U = torch.randn(4, *op.h_shape, generator=gen)
    lhs = (U * op.jvp(V)).flatten(1).sum(1)  # <u, J v>
    rhs = (op.vjp(U) * V).flatten(1).sum(1)  # <Jᵀ u, v>
    torch.testing.assert_close(lhs, rhs, rtol=1e-4, atol=1e-4)
    assert op.n_jvp == 4 and op.n_vjp == 4


@pytest.mark.parametrize(
    "batching, jvp_mode, chunk",
    [
        ("vmap", "forward", None),
        ("batch", "reverse", None),
        ("vmap", "reverse", 2),
        ("batch", "forward", 3),
    ],
)
def test_all_product_paths_agree(unet_op, batching, jvp_mode, chunk):
    fn, x = unet_op
    ref = JacobianOperator(fn, x, batching="batch", jvp_mode="forward")
    op = JacobianOperator(fn, x, batching=batching, jvp_mode=jvp_mode, chunk_size=chunk)
    gen = torch.Generator().manual_seed(3)
    V = torch.randn(5, *ref.x_shape, generator=gen)
    U = torch.randn(5, *ref.h_shape, generator=gen)
    torch.testing.assert_close(op.jvp(V), ref.jvp(V), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(op.vjp(U), ref.vjp(U), rtol=1e-4, atol=1e-5)


def test_bad_options():
    f = lambda z: z * 2  # noqa: E731
    with pytest.raises(ValueError, match="chunk_size"):
        JacobianOperator(f, torch.ones(3), chunk_size=0)
    with pytest.raises(ValueError, match="per-sample"):
        JacobianOperator(f, torch.ones(3), batching="batch")
    with pytest.raises(ValueError, match="jvp_mode"):
        JacobianOperator(f, torch.ones(3), jvp_mode="sideways")
    op = JacobianOperator(f, torch.ones(3))
    with pytest.raises(ValueError, match="expected vectors of shape"):
        op.jvp(torch.ones(2, 4))


class _SlowTanh(torch.autograd.Function):
    """tanh whose forward-mode rule (``slow="forward"``) or backward (``slow="reverse"``) sleeps 0.2 s."""

    generate_vmap_rule = True
    slow = "forward"
    jvp_calls = 0

    @staticmethod
    def forward(x):
        return torch.tanh(x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output)
        ctx.save_for_forward(output)

    @staticmethod
    def backward(ctx, g):
        import time

        if _SlowTanh.slow == "reverse":
            time.sleep(0.2)
        (y,) = ctx.saved_tensors
        return g * (1 - y * y)

    @staticmethod
    def jvp(ctx, t):
        import time

        _SlowTanh.jvp_calls += 1
        if _SlowTanh.slow == "forward":
            time.sleep(0.2)
        (y,) = ctx.saved_tensors
        return t * (1 - y * y)


@pytest.mark.parametrize("slow, expect", [("forward", "reverse"), ("reverse", "forward")])
def test_auto_jvp_mode_measures_the_faster_mode_and_remembers_it(slow, expect):
    from pullback_utils.engine import operators as products

    W = torch.randn(5, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def fn(x):
        return _SlowTanh.apply(x @ W.T)

    fn.__qualname__ = f"slow_{slow}"  # one architecture per case
    _SlowTanh.slow = slow
    x = torch.randn(7, dtype=torch.float64)
    V = torch.randn(3, 7, dtype=torch.float64)
    exact = (1 - torch.tanh(W @ x) ** 2)[None] * (V @ W.T)  # J V in closed form
    op = JacobianOperator(fn, x, jvp_mode="auto")
    assert op.jvp_mode_used is None
    torch.testing.assert_close(op.jvp(V), exact)
    assert op.jvp_mode_used == expect and op.n_jvp == 3
    ((key, (mode, t_fwd, t_rev)),) = [(k, v) for k, v in products.auto_choices().items() if k[0] == f"slow_{slow}"]
    assert mode == expect and (t_fwd > t_rev if expect == "reverse" else t_rev > t_fwd)
    # a second operator of the same architecture uses the choice without timing both again
    calls = _SlowTanh.jvp_calls
    again = JacobianOperator(fn, x + 0.1, jvp_mode="auto")
    again.jvp(V)
    assert again.jvp_mode_used == expect
    assert _SlowTanh.jvp_calls == calls + (1 if expect == "forward" else 0)


def test_auto_jvp_mode_on_a_unet_agrees_with_both_modes(unet_op):
    from pullback_utils.engine import operators as products

    fn, x = unet_op
    V = torch.randn(3, *x.shape, generator=torch.Generator().manual_seed(1))
    auto = JacobianOperator(fn, x, jvp_mode="auto")
    out = auto.jvp(V)
    assert auto.jvp_mode_used in ("forward", "reverse")
    torch.testing.assert_close(out, JacobianOperator(fn, x, jvp_mode="reverse").jvp(V), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out, JacobianOperator(fn, x, jvp_mode="forward").jvp(V), rtol=1e-4, atol=1e-5)
    key = next(k for k in products.auto_choices() if k[0] == "UNet2DModel" and k[-2] == 3)  # this block size
    assert key[2:] == ("mid", tuple(x.shape), "torch.float32", "cpu", 3, "vmap")
