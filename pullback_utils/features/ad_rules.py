"""Cheaper forward-mode AD rules for the hot operators of diffusers U-Nets (issue 27, item 4).

The profile of forward-mode J·v on the CelebA-HQ-256 U-Net (``benchmarks/profile_products.py``, NOTES.md)
shows two stock formulas doing more work than the tangent needs:

- ``group_norm``: PyTorch's forward-AD formula rebuilds the normalisation from about ten full-size
  element-wise passes over the tangent and the point (and layout copies); the tangent of
  y = w ⊙ x̂ + b, x̂ = (x − μ) ρ per group (ρ = 1 / σ), is

      ẏ = w ⊙ ρ (ẋ − mean(ẋ) − x̂ · mean(ẋ ⊙ x̂))        (means over each group).

  The normalisation's Jacobian is symmetric (∂x̂/∂x = ρ (I − 11ᵀ/n − x̂x̂ᵀ/n) per group), so this is
  PyTorch's fused group-norm *backward* kernel applied to ẋ, times w: measured 4x less CPU time than
  the stock rule on a block of 8 tangents of a 128×64×64 activation (10.8 against 46 ms).
- ``conv2d``: with frozen weights the weight tangent is undefined, but the stock formula
  materialises it as zeros and runs a second convolution of the point with it, and adds the two;
  here ẏ = conv(ẋ, W) alone.

:class:`GroupNormAD` and :class:`Conv2dAD` are ``torch.autograd.Function`` s with these ``jvp`` rules, a
``backward`` written in differentiable torch operations (so Jᵀu, reverse-over-reverse J·v and
``torch.func.vmap`` over blocks all go through them: ``generate_vmap_rule``) and the statistics
recomputed from the saved input (so higher derivatives with respect to x stay right). Weight and bias
tangents, when a caller gives them, are handled too. :func:`fast_ad_rules` installs them on every
``nn.GroupNorm`` and ``nn.Conv2d`` of a model for the duration of a ``with`` block;
:func:`~pullback_utils.features.ad_safe.forward_ad_safe` does so unless told not to.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn import grad as nn_grad

__all__ = ["GroupNormAD", "Conv2dAD", "group_norm_ad", "conv2d_ad", "fast_ad_rules"]


def _channel(w: torch.Tensor, ndim: int) -> torch.Tensor:
    """A per-channel vector (C,) shaped to broadcast against (N, C, *) of ``ndim`` dimensions."""
    return w.reshape(-1, *([1] * (ndim - 2)))


def _statistics(x: torch.Tensor, groups: int, eps: float) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int, int]]:
    """(μ, ρ) of x (N, C, *) per group, each (N, G), detached (as PyTorch's own group_norm saves them: its
    backward kernel's derivative accounts for their dependence on x), and (N, C, prod(*))."""
    n, c = x.shape[0], x.shape[1]
    hw = x[0, 0].numel()
    with torch.no_grad():
        _, mean, rstd = torch.ops.aten.native_group_norm(x, None, None, n, c, hw, groups, eps)
    return mean, rstd, (n, c, hw)


def _project(t: torch.Tensor, x: torch.Tensor, groups: int, eps: float) -> torch.Tensor:
    """ρ (t − mean(t) − x̂ mean(t ⊙ x̂)) per group, t like x (N, C, *): PyTorch's fused group-norm backward
    kernel (two passes over t; it has no derivative of its own, so only the J·v rule uses it)."""
    mean, rstd, (n, c, hw) = _statistics(x, groups, eps)
    return torch.ops.aten.native_group_norm_backward(t, x, mean, rstd, None, n, c, hw, groups, [True, False, False])[0]


class GroupNormAD(torch.autograd.Function):
    """y = group_norm(x, groups, w, b, eps) with the forward-AD rule and backward of the module doc.

    Shapes: x ``(N, C, *)``, w and b ``(C,)`` or None; y like x. The tangent is the fused backward kernel applied
    to ẋ (the normalisation's Jacobian is symmetric), times w; that kernel has no derivative, so a
    second forward-mode derivative through this rule (jvp of jvp) is not supported. Its backward is
    composite and differentiable to any order.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(
        x: torch.Tensor, groups: int, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float
    ) -> torch.Tensor:
        """``F.group_norm(x, groups, weight, bias, eps)``."""
        return F.group_norm(x, groups, weight, bias, eps)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: torch.Tensor) -> None:
        """Saves ``x`` and the weight for the tangent and the backward."""
        x, groups, weight, bias, eps = inputs
        ctx.save_for_backward(x, weight)
        ctx.save_for_forward(x, weight)
        ctx.groups, ctx.eps, ctx.has_bias = groups, eps, bias is not None

    @staticmethod
    def jvp(
        ctx: Any, x_t: torch.Tensor | None, _g: Any, w_t: torch.Tensor | None, b_t: torch.Tensor | None, _e: Any
    ) -> torch.Tensor:
        x, weight = ctx.saved_tensors
        if x_t is None:
            out = torch.zeros_like(x)
        else:
            out = _project(x_t.contiguous(), x, ctx.groups, ctx.eps)
            if weight is not None:
                out = out * _channel(weight, x.ndim)
        if w_t is not None:
            out = out + F.group_norm(x, ctx.groups, None, None, ctx.eps) * _channel(w_t, x.ndim)
        if b_t is not None:
            out = out + _channel(b_t, x.ndim)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple:
        # composite operations (differentiable: reverse-over-reverse differentiates this in grad, and any
        # order in x is right since the statistics are recomputed from x), as PyTorch's own rule does when
        # grad mode is on, which torch.func always has
        x, weight = ctx.saved_tensors
        xhat, rstd = _normalised(x, ctx.groups, ctx.eps)
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            g = grad * _channel(weight, x.ndim) if weight is not None else grad
            t = g.reshape(xhat.shape)
            gx = rstd * (t - t.mean(dim=-1, keepdim=True) - xhat * (t * xhat).mean(dim=-1, keepdim=True))
            gx = gx.reshape(x.shape)
        reduce = [0, *range(2, x.ndim)]
        if weight is not None and ctx.needs_input_grad[2]:
            gw = (grad * xhat.reshape(x.shape)).sum(dim=reduce)
        if ctx.has_bias and ctx.needs_input_grad[3]:
            gb = grad.sum(dim=reduce)
        return gx, None, gw, gb, None


def _normalised(x: torch.Tensor, groups: int, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(x̂, ρ): x (N, C, *) as (N, G, C/G · prod(*)) normalised per group, and ρ = 1/σ (N, G, 1); differentiable."""
    xr = x.reshape(x.shape[0], groups, -1)
    centred = xr - xr.mean(dim=-1, keepdim=True)
    rstd = torch.rsqrt(centred.square().mean(dim=-1, keepdim=True) + eps)
    return centred * rstd, rstd


class Conv2dAD(torch.autograd.Function):
    """y = conv2d(x, w, b, stride, padding, dilation, groups) whose J·v skips the zero weight tangent.

    Shapes: x (N, C_in, H, W), w (C_out, C_in / groups, kH, kW), b (C_out,) or None; padding as
    ``F.conv2d`` takes it (numbers or a pair; not the strings ``"same"``/``"valid"``).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        stride: Any,
        padding: Any,
        dilation: Any,
        groups: int,
    ) -> torch.Tensor:
        """``F.conv2d(x, weight, bias, stride, padding, dilation, groups)``."""
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: torch.Tensor) -> None:
        """Saves ``x`` and the weight for the tangent and the backward."""
        x, weight, bias, stride, padding, dilation, groups = inputs
        ctx.save_for_backward(x, weight)
        ctx.save_for_forward(x, weight)
        ctx.conf = (stride, padding, dilation, groups)
        ctx.has_bias = bias is not None

    @staticmethod
    def jvp(
        ctx: Any, x_t: torch.Tensor | None, w_t: torch.Tensor | None, b_t: torch.Tensor | None, *_: Any
    ) -> torch.Tensor:
        x, weight = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.conf
        out = None
        if x_t is not None:
            out = F.conv2d(x_t, weight, None, stride, padding, dilation, groups)
        if w_t is not None:
            part = F.conv2d(x, w_t, None, stride, padding, dilation, groups)
            out = part if out is None else out + part
        if b_t is not None:
            part = _channel(b_t, 4).expand_as(out) if out is not None else None
            out = part if out is None else out + part
        if out is None:  # no tangent at all (not reached through torch.func.jvp)
            out = torch.zeros_like(F.conv2d(x, weight, None, stride, padding, dilation, groups))
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple:
        x, weight = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.conf
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = nn_grad.conv2d_input(x.shape, weight, grad, stride, padding, dilation, groups)
        if ctx.needs_input_grad[1]:
            gw = nn_grad.conv2d_weight(x, weight.shape, grad, stride, padding, dilation, groups)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = grad.sum(dim=(0, 2, 3))
        return gx, gw, gb, None, None, None, None


def group_norm_ad(
    x: torch.Tensor,
    groups: int,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    eps: float = 1e-5,
) -> torch.Tensor:
    """``F.group_norm`` with the cheaper forward-AD rule (:class:`GroupNormAD`)."""
    return GroupNormAD.apply(x, groups, weight, bias, eps)


def conv2d_ad(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
) -> torch.Tensor:
    """``F.conv2d`` whose J·v skips the weight tangent when there is none (:class:`Conv2dAD`)."""
    return Conv2dAD.apply(x, weight, bias, stride, padding, dilation, groups)


def _group_norm_forward(module: nn.GroupNorm, x: torch.Tensor) -> torch.Tensor:
    return group_norm_ad(x, module.num_groups, module.weight, module.bias, module.eps)


def _conv2d_forward(module: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    if module.padding_mode != "zeros":
        x = F.pad(x, module._reversed_padding_repeated_twice, mode=module.padding_mode)
        return conv2d_ad(x, module.weight, module.bias, module.stride, 0, module.dilation, module.groups)
    return conv2d_ad(x, module.weight, module.bias, module.stride, module.padding, module.dilation, module.groups)


@contextlib.contextmanager
def fast_ad_rules(model: nn.Module, *, conv: bool = True) -> Iterator[nn.Module]:
    """Context manager: every ``nn.GroupNorm`` (and, with ``conv``, ``nn.Conv2d``; exact classes) of ``model``
    runs through :class:`GroupNormAD` / :class:`Conv2dAD` inside the block; their own ``forward`` is back
    afterwards, even on error. Outputs equal the stock ones (the same ``F`` calls); only derivatives are
    computed differently, to rounding."""
    patched = []
    try:
        for m in model.modules():
            if "forward" in m.__dict__:  # an instance-level forward (someone else's patch): left alone
                continue
            if type(m) is nn.GroupNorm:
                m.forward = _group_norm_forward.__get__(m)  # type: ignore[method-assign]
            elif conv and type(m) is nn.Conv2d and not isinstance(m.padding, str):
                m.forward = _conv2d_forward.__get__(m)  # type: ignore[method-assign]
            else:
                continue
            patched.append(m)
        yield model
    finally:
        for m in patched:
            del m.forward
