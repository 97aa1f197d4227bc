"""Making a diffusers denoiser safe for forward-mode automatic differentiation.

Two things break ``torch.func.jvp`` / ``torch.autograd.forward_ad`` through stock diffusers models:

1. ``F.scaled_dot_product_attention`` dispatches on CPU (and CUDA) to fused kernels that have no
   forward-AD formula.
2. Reshapes with ``Tensor.view``: the attention output ``transpose(...).reshape(B, C, H, W)`` is a
   channels-last view, convolutions propagate that layout, and the forward-AD formula of
   ``group_norm`` then calls ``view`` on a channels-last tangent and raises.

Inside :func:`forward_ad_safe`:

- attention modules with the classic processors (``AttnProcessor2_0``, ``AttnProcessor``: U-Nets, DiT,
  PixArt) get :class:`ForwardADAttnProcessor`, which computes attention with plain matrix products and
  ``softmax`` and reshapes only with ``reshape`` (through the public ``set_processor``; the originals are
  put back afterwards, even on error);
- every other processor (SD3's joint attention, FLUX's joint and single-stream attention with rotary
  embeddings, diffusers' attention dispatcher) is left in place and ``scaled_dot_product_attention``
  runs on PyTorch's math backend (``torch.nn.attention.sdpa_kernel(SDPBackend.MATH)``), a composite of
  differentiable ops, so forward AD goes through the processor unchanged;
- forward pre-hooks on the ``GroupNorm`` modules hand them a contiguous input (removed on exit), and
  the model's parameters are made contiguous;
- ``GroupNorm`` and ``Conv2d`` run through the cheaper derivative rules of
  :mod:`pullback_utils.features.ad_rules` (issue 27; ``fast_rules=False`` or ``PULLBACK_FAST_AD=0``
  keeps PyTorch's own).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch
from torch import nn

from pullback_utils.features.ad_rules import fast_ad_rules

__all__ = ["ForwardADAttnProcessor", "forward_ad_safe", "attention_modules", "FAST_AD_ENV"]

#: set to "0" to keep PyTorch's own derivative rules inside :func:`forward_ad_safe` (for comparisons)
FAST_AD_ENV = "PULLBACK_FAST_AD"


def attention_modules(model: nn.Module) -> list[nn.Module]:
    """All diffusers attention modules inside ``model`` (``Attention`` and ``AttentionModuleMixin``, e.g. FLUX's)."""
    from diffusers.models.attention import AttentionModuleMixin
    from diffusers.models.attention_processor import Attention

    return [m for m in model.modules() if isinstance(m, (Attention, AttentionModuleMixin))]


def _classic(processor: object) -> bool:
    """Whether ``processor`` is one :class:`ForwardADAttnProcessor` reproduces (diffusers' plain processors)."""
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    return type(processor) in (AttnProcessor, AttnProcessor2_0, ForwardADAttnProcessor)


class ForwardADAttnProcessor:
    """Attention as explicit ``softmax(q kᵀ · scale) v``, safe under forward- and reverse-mode AD.

    Mathematically identical to diffusers' ``AttnProcessor2_0`` for the options used by the
    ``UNet2DModel``, ``UNet2DConditionModel``, DiT and PixArt blocks (spatial norm, group norm, cross-attention
    with ``norm_cross``, q/k norms, attention masks, residual connection, output rescaling).

    Shapes: ``hidden_states`` (B, C, H, W) or (B, N, C); ``encoder_hidden_states`` (B, L, D).
    """

    def __call__(
        self,
        attn: nn.Module,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args,
        **kwargs,
    ) -> torch.Tensor:
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)

        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch, channels, height, width = hidden_states.shape
            hidden_states = hidden_states.reshape(batch, channels, height * width).transpose(1, 2)

        batch, key_len, _ = hidden_states.shape if encoder_hidden_states is None else encoder_hidden_states.shape
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, key_len, batch)
            attention_mask = attention_mask.reshape(batch, attn.heads, -1, attention_mask.shape[-1])

        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        query = attn.to_q(hidden_states)
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)

        heads = attn.heads

        def split_heads(t: torch.Tensor) -> torch.Tensor:  # (B, N, heads*d) -> (B, heads, N, d)
            return t.reshape(batch, t.shape[1], heads, t.shape[2] // heads).transpose(1, 2)

        query, key, value = split_heads(query), split_heads(key), split_heads(value)
        if getattr(attn, "norm_q", None) is not None:
            query = attn.norm_q(query)
        if getattr(attn, "norm_k", None) is not None:
            key = attn.norm_k(key)

        dtype = query.dtype
        if getattr(attn, "upcast_attention", False):
            query, key = query.float(), key.float()
        scores = torch.matmul(query, key.transpose(-1, -2)) * attn.scale
        if attention_mask is not None:
            scores = scores + attention_mask
        if getattr(attn, "upcast_softmax", False):
            scores = scores.float()
        probs = scores.softmax(dim=-1).to(dtype)
        hidden_states = torch.matmul(probs, value)  # (B, heads, N, d)
        hidden_states = hidden_states.transpose(1, 2).reshape(batch, -1, heads * value.shape[-1])

        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)

        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch, channels, height, width)
            hidden_states = hidden_states.contiguous()  # reshape returned a channels-last view
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


@contextlib.contextmanager
def forward_ad_safe(model: nn.Module, *, fast_rules: bool | None = None) -> Iterator[nn.Module]:
    """Context manager: ``model`` with forward-AD-safe attention; original processors restored after.

    ``fast_rules`` (default ``None``: ``$PULLBACK_FAST_AD`` != ``"0"``, i.e. on): also run the model's
    ``GroupNorm`` and ``Conv2d`` layers through the cheaper derivative rules of
    :mod:`pullback_utils.features.ad_rules` (same outputs; J·v, Jᵀu to rounding).

    Example::

        with forward_ad_safe(unet):
            h, dh = torch.func.jvp(feature_fn, (x,), (v,))

    The forward output inside the context equals the stock one to float tolerance (tested).
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel

    if fast_rules is None:
        fast_rules = os.environ.get(FAST_AD_ENV, "1").strip() != "0"
    modules = [m for m in attention_modules(model) if _classic(m.processor)]
    saved = [m.processor for m in modules]
    safe = ForwardADAttnProcessor()
    for p in model.parameters():
        if not p.is_contiguous():
            p.data = p.data.contiguous()
    hooks = []
    try:
        for m in modules:
            m.set_processor(safe)
        for m in model.modules():
            if isinstance(m, nn.GroupNorm):
                hooks.append(m.register_forward_pre_hook(_contiguous_input))
        rules = fast_ad_rules(model) if fast_rules else contextlib.nullcontext(model)
        with sdpa_kernel([SDPBackend.MATH]), rules:
            yield model
    finally:
        for h in hooks:
            h.remove()
        for m, proc in zip(modules, saved):
            m.set_processor(proc)


def _contiguous_input(module: nn.Module, args: tuple) -> tuple:
    """Forward pre-hook: the first input in standard contiguous layout (forward-AD-safe norms)."""
    return (args[0].contiguous(), *args[1:])
