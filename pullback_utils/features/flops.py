"""What one local basis costs on a denoiser, counted without running it: parameters, FLOPs and saved bytes.

The denoiser is built from its config on PyTorch's ``meta`` device (no memory is allocated, nothing is
computed) and the engine's own feature map and Jacobian products run on meta tensors, so the counts
are those of the real architecture at its real resolution:

- parameters and their bytes in the chosen dtype;
- FLOPs (multiply-adds count 2) of the forward pass to the layer, and per vector of ``J·v``
  (in ``jvp_mode``, reverse-over-reverse unless told; never ``"auto"``, whose first block also runs its
  timing trial) and ``Jᵀ·u`` in a block of ``block`` vectors, summed
  over every operator PyTorch's flop counter has a formula for (matrix products, convolutions,
  attention; elementwise work is not counted);
- bytes of the tensors the forward pass keeps for the backward pass (the activations a ``Jᵀ·u``
  needs; the frozen weights it keeps are the parameters and are not counted again).

Time then follows from an explicit formula, :func:`seconds_per_basis`: ``F_forward + n_jvp F_jvp +
n_vjp F_vjp`` FLOPs at a sustained rate (a measured one, or an assumption the caller states).
:data:`REAL_CONFIGS` holds the public configs of the denoisers of DiT-XL/2-256, SDXL base, SD3
medium and FLUX.1-dev, and of the paper's CelebA-HQ DDPM U-Net.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from pullback_utils.features.basis import freeze

__all__ = ["BasisCost", "REAL_CONFIGS", "meta_denoiser", "basis_costs", "seconds_per_basis", "count_flops"]

#: Public denoiser configs (diffusers ``config.json`` fields), their latent shape and text tokens.
REAL_CONFIGS: dict[str, dict[str, Any]] = {
    "DiT-XL/2 (256 px)": dict(
        cls="DiTTransformer2DModel",
        sample_shape=(4, 32, 32),
        text_tokens=0,
        config=dict(
            num_attention_heads=16,
            attention_head_dim=72,
            in_channels=4,
            out_channels=8,
            num_layers=28,
            sample_size=32,
            patch_size=2,
            num_embeds_ada_norm=1000,
        ),
    ),
    "SDXL base (1024 px)": dict(
        cls="UNet2DConditionModel",
        sample_shape=(4, 128, 128),
        text_tokens=77,
        config=dict(
            sample_size=128,
            in_channels=4,
            out_channels=4,
            block_out_channels=(320, 640, 1280),
            layers_per_block=2,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            transformer_layers_per_block=(1, 2, 10),
            attention_head_dim=(5, 10, 20),
            cross_attention_dim=2048,
            addition_embed_type="text_time",
            addition_time_embed_dim=256,
            projection_class_embeddings_input_dim=2816,
            use_linear_projection=True,
        ),
    ),
    "SD3 medium (1024 px)": dict(
        cls="SD3Transformer2DModel",
        sample_shape=(16, 128, 128),
        text_tokens=333,
        config=dict(
            sample_size=128,
            patch_size=2,
            in_channels=16,
            num_layers=24,
            attention_head_dim=64,
            num_attention_heads=24,
            joint_attention_dim=4096,
            caption_projection_dim=1536,
            pooled_projection_dim=2048,
            out_channels=16,
            pos_embed_max_size=192,
        ),
    ),
    "FLUX.1-dev (1024 px)": dict(
        cls="FluxTransformer2DModel",
        sample_shape=(16, 128, 128),
        text_tokens=512,
        config=dict(
            patch_size=1,
            in_channels=64,
            num_layers=19,
            num_single_layers=38,
            attention_head_dim=128,
            num_attention_heads=24,
            joint_attention_dim=4096,
            pooled_projection_dim=768,
            guidance_embeds=True,
            axes_dims_rope=(16, 56, 56),
        ),
    ),
    "CelebA-HQ DDPM (256 px)": dict(
        cls="UNet2DModel",
        sample_shape=(3, 256, 256),
        text_tokens=0,
        config=dict(
            sample_size=256,
            in_channels=3,
            out_channels=3,
            block_out_channels=(128, 128, 256, 256, 512, 512),
            layers_per_block=2,
            down_block_types=("DownBlock2D",) * 4 + ("AttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "AttnUpBlock2D") + ("UpBlock2D",) * 4,
            attention_head_dim=None,
            norm_eps=1e-6,
            freq_shift=1,
            flip_sin_to_cos=False,
            downsample_padding=0,
        ),
    ),
}


@dataclasses.dataclass(frozen=True)
class BasisCost:
    """Counts of one architecture at one resolution and layer (see the module doc)."""

    layer: str
    params: int
    param_bytes: int
    x_shape: tuple[int, ...]
    h_shape: tuple[int, ...]
    forward_flops: float
    jvp_flops: float
    vjp_flops: float
    saved_bytes: int


class _FlopCount(TorchDispatchMode):
    """Sums ``torch.utils.flop_counter``'s formulas over the operators that run (no module tracking, so
    it composes with ``torch.func``)."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += int(formula(*args, **kwargs, out_val=out))
        return out


def count_flops(fn, *args: Any) -> tuple[Any, int]:
    """``(fn(*args), FLOPs of the operators it ran)``."""
    with _FlopCount() as fc:
        out = fn(*args)
    return out, fc.total


def meta_denoiser(cls: str, config: dict[str, Any], dtype: torch.dtype = torch.bfloat16) -> torch.nn.Module:
    """A diffusers denoiser of class ``cls`` built from ``config`` on the meta device, frozen, in ``dtype``."""
    import diffusers
    from diffusers.utils import logging as dlogging

    with torch.device("meta"):
        net = getattr(diffusers, cls)(**config)
    verbosity = dlogging.get_verbosity()
    dlogging.set_verbosity_error()  # diffusers warns about casting a model with .to(dtype)
    try:
        return freeze(net.to(dtype))
    finally:
        dlogging.set_verbosity(verbosity)


def _dummy_conditioning(
    net: torch.nn.Module, sample_shape: tuple[int, ...], text_tokens: int
) -> tuple[torch.Tensor, dict]:
    """Meta ``x`` ``(1, *input)`` and conditioning keywords of the right shapes (values do not matter)."""
    from pullback_utils.diffusion.architectures import family_of, latent_image_ids

    fam, cfg = family_of(net), net.config
    dtype = next(net.parameters()).dtype
    z = torch.zeros(1, *sample_shape, device="meta", dtype=dtype)

    def t(*shape):
        return torch.zeros(*shape, device="meta", dtype=dtype)

    if fam.name == "flux":
        h, w = sample_shape[1:]
        x = torch.zeros(1, (h // 2) * (w // 2), sample_shape[0] * 4, device="meta", dtype=dtype)
        cond: dict[str, Any] = dict(
            encoder_hidden_states=t(1, text_tokens, cfg.joint_attention_dim),
            pooled_projections=t(1, cfg.pooled_projection_dim),
            img_ids=latent_image_ids(h, w).to("meta", dtype),
        )
        if cfg.guidance_embeds:
            cond["guidance"] = 3.5
        return x, cond
    if fam.name == "sd3":
        return z, dict(
            encoder_hidden_states=t(1, text_tokens, cfg.joint_attention_dim),
            pooled_projections=t(1, cfg.pooled_projection_dim),
        )
    if fam.name == "dit":
        return z, dict(class_labels=0)
    if type(net).__name__ == "UNet2DConditionModel":
        cond = dict(encoder_hidden_states=t(1, text_tokens, cfg.cross_attention_dim))
        if cfg.addition_embed_type == "text_time":
            p = cfg.projection_class_embeddings_input_dim - 6 * cfg.addition_time_embed_dim
            cond["added_cond_kwargs"] = {"text_embeds": t(1, p), "time_ids": t(1, 6)}
        return z, cond
    return z, {}


def basis_costs(
    cls: str,
    config: dict[str, Any],
    sample_shape: tuple[int, ...],
    *,
    text_tokens: int = 0,
    layer: str | None = None,
    t: float = 0.5,
    block: int = 8,
    dtype: torch.dtype = torch.bfloat16,
    jvp_mode: str = "reverse",
) -> BasisCost:
    """Counts of one local basis's building blocks for the denoiser ``cls(**config)`` (module doc).

    ``sample_shape`` is (C, H, W) of the latents (FLUX: unpacked); ``text_tokens`` the prompt length;
    ``layer`` the feature layer (default: the architecture's); ``block`` the vectors per batched product;
    ``jvp_mode`` how J·v is counted ("reverse" or "forward").
    """
    if jvp_mode not in ("forward", "reverse"):
        raise ValueError(f"jvp_mode must be 'forward' or 'reverse', got {jvp_mode!r}")
    from pullback_utils.engine.operators import JacobianOperator
    from pullback_utils.features.ad_safe import forward_ad_safe
    from pullback_utils.features.basis import frozen
    from pullback_utils.features.feature_maps import feature_map

    net = meta_denoiser(cls, config, dtype)
    x, cond = _dummy_conditioning(net, tuple(sample_shape), int(text_tokens))
    fn = feature_map(net, t, layer=layer, **cond)
    params = {id(p) for p in net.parameters()}
    saved: dict[int, int] = {}

    def pack(s: torch.Tensor) -> torch.Tensor:
        base = s._base if s._base is not None else s
        if id(base) not in params:
            saved[id(base)] = max(saved.get(id(base), 0), base.nelement() * base.element_size())
        return s

    with frozen(net), forward_ad_safe(net):
        h, f_fwd = count_flops(fn, x)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda s: s):
            fn(x.clone().requires_grad_(True))
        op = JacobianOperator(fn, x, chunk_size=block, jvp_mode=jvp_mode)  # type: ignore[arg-type]
        _, f_jvp = count_flops(op.jvp, torch.zeros(block, *x.shape, device="meta", dtype=x.dtype))
        _, f_vjp = count_flops(op.vjp, torch.zeros(block, *op.h_shape, device="meta", dtype=x.dtype))
    n = sum(p.numel() for p in net.parameters())
    return BasisCost(
        layer=fn.layer,
        params=n,
        param_bytes=sum(p.numel() * p.element_size() for p in net.parameters()),
        x_shape=tuple(x.shape),
        h_shape=tuple(h.shape),
        forward_flops=float(f_fwd),
        jvp_flops=f_jvp / block,
        vjp_flops=f_vjp / block,
        saved_bytes=sum(saved.values()),
    )


def seconds_per_basis(cost: BasisCost, n_jvp: int, n_vjp: int, flops_per_second: float) -> float:
    """``(F_forward + n_jvp F_jvp + n_vjp F_vjp) / flops_per_second``: the time of one basis at that rate."""
    if not flops_per_second > 0:
        raise ValueError(f"flops_per_second must be > 0, got {flops_per_second!r}")
    return (cost.forward_flops + n_jvp * cost.jvp_flops + n_vjp * cost.vjp_flops) / float(flops_per_second)
