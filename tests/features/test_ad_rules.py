"""The cheaper derivative rules of GroupNorm and Conv2d (issue 27): same values, same derivatives.

Oracles: PyTorch's own rules and central finite differences in float64 (``gradcheck``, which also checks
the forward-mode rule against them, and ``gradgradcheck`` for the backward's own derivative, which
reverse-over-reverse J·v needs); on a U-Net with attention, J·v and Jᵀu through the rules against
finite differences of the feature map and against the stock rules.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.func import jvp, vjp, vmap

from pullback_utils import feature_map
from pullback_utils.engine.operators import JacobianOperator
from pullback_utils.features.ad_rules import Conv2dAD, GroupNormAD, fast_ad_rules
from pullback_utils.features.ad_safe import forward_ad_safe


def _double(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("affine", [True, False])
def test_group_norm_rule_matches_finite_differences(affine):
    x = _double(2, 4, 3, 2, seed=0).requires_grad_()
    w = _double(4, seed=1).requires_grad_() if affine else None
    b = _double(4, seed=2).requires_grad_() if affine else None
    args = (x, w, b) if affine else (x,)
    fn = (
        (lambda x, w, b: GroupNormAD.apply(x, 2, w, b, 1e-5))
        if affine
        else (lambda x: GroupNormAD.apply(x, 2, None, None, 1e-5))
    )
    assert torch.autograd.gradcheck(fn, args, check_forward_ad=True)
    assert torch.autograd.gradgradcheck(fn, args)
    torch.testing.assert_close(
        GroupNormAD.apply(x, 2, w, b, 1e-5), nn.functional.group_norm(x, 2, w, b, 1e-5), rtol=0, atol=0
    )


@pytest.mark.parametrize("stride, padding, groups", [(1, 1, 1), (2, (1, 0), 2)])
def test_conv_rule_matches_finite_differences(stride, padding, groups):
    x = _double(1, 4, 5, 4, seed=0).requires_grad_()
    w = _double(2, 4 // groups, 3, 3, seed=1).requires_grad_()
    b = _double(2, seed=2).requires_grad_()

    def fn(x, w, b):
        return Conv2dAD.apply(x, w, b, stride, padding, 1, groups)

    assert torch.autograd.gradcheck(fn, (x, w, b), check_forward_ad=True)
    assert torch.autograd.gradgradcheck(fn, (x, w, b))


def test_rules_under_vmap_match_stock_rules():
    """J·v by forward mode and by reverse-over-reverse, and Jᵀu, on blocks (vmap), frozen weights."""
    gn, conv = nn.GroupNorm(4, 8).double(), nn.Conv2d(8, 6, 3, padding=1).double()
    for m in (gn, conv):
        m.requires_grad_(False)
    x = _double(1, 8, 6, 6, seed=3)
    V = _double(3, 1, 8, 6, 6, seed=4)
    U = _double(3, 1, 6, 6, 6, seed=5)

    def net(x):
        return conv(nn.functional.silu(gn(x)))

    def products():
        jv = vmap(lambda v: jvp(net, (x,), (v,))[1])(V)
        _, pull = vjp(net, x)
        block = vmap(lambda u: pull(u)[0])
        jtu = block(U)
        _, double = vjp(block, torch.zeros_like(U))
        return jv, jtu, double(V)[0]

    stock = products()
    with fast_ad_rules(_Both(gn, conv)):
        fast = products()
    for got, ref in zip(fast, stock):
        torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(fast[2], stock[0], rtol=1e-10, atol=1e-12)  # reverse-over-reverse = forward mode


class _Both(nn.Module):
    def __init__(self, *mods: nn.Module) -> None:
        super().__init__()
        self.mods = nn.ModuleList(mods)


def test_rules_are_installed_and_removed(tiny_unet):
    norms = [m for m in tiny_unet.modules() if type(m) is nn.GroupNorm]
    convs = [m for m in tiny_unet.modules() if type(m) is nn.Conv2d]
    assert norms and convs
    with pytest.raises(KeyError):
        with forward_ad_safe(tiny_unet):
            assert all("forward" in m.__dict__ for m in norms + convs)
            raise KeyError("boom")
    assert not any("forward" in m.__dict__ for m in norms + convs)
    with forward_ad_safe(tiny_unet, fast_rules=False):
        assert not any("forward" in m.__dict__ for m in norms + convs)


def test_unet_products_match_finite_differences_and_stock_rules(tiny_unet):
    """On a U-Net with attention (float64): J·v in both modes and Jᵀu with the rules equal the stock rules'
    to rounding, and J·v equals a central finite difference of the feature map."""
    unet = copy.deepcopy(tiny_unet).double()  # the session fixture stays float32 for the other tests
    fn = feature_map(unet, 500)
    x = _double(1, 3, 16, 16, seed=6)
    V = _double(3, 1, 3, 16, 16, seed=7)
    results = {}
    for fast in (False, True):
        with forward_ad_safe(unet, fast_rules=fast):
            fwd = JacobianOperator(fn, x, jvp_mode="forward")
            rev = JacobianOperator(fn, x, jvp_mode="reverse")
            jv = fwd.jvp(V)
            results[fast] = (jv, rev.jvp(V), fwd.vjp(jv))
            if fast:  # the U-Net runs its softmax in float32 (upcast): a step well above its rounding
                eps = 1e-3
                with torch.no_grad():
                    fd = torch.stack([(fn(x + eps * v) - fn(x - eps * v)) / (2 * eps) for v in V])
    for got, ref in zip(results[True], results[False]):
        torch.testing.assert_close(got, ref, rtol=1e-9, atol=1e-11)
    scale = float(fd.abs().max())
    torch.testing.assert_close(results[True][0], fd, rtol=0, atol=1e-3 * scale)
    # the two J·v modes round the float32 softmax differently
    torch.testing.assert_close(results[True][1], results[True][0], rtol=0, atol=1e-6 * scale)
