"""Images <-> latents through a diffusers VAE (the ``AutoencoderKL`` of the latent families).

``x_0 = (E(image) - shift) * scaling_factor`` with ``E`` the posterior mean, and back
``image = D(x_0 / scaling_factor + shift)``; ``shift`` is the config's ``shift_factor`` (SD3, FLUX) or 0.
Images are (B, 3, H, W) in [-1, 1]; latents (B, C, H / f, W / f) with ``f`` the VAE's downsampling factor.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["config_get", "decode", "encode"]


def config_get(cfg: Any, key: str, default: Any) -> Any:
    """``cfg[key]`` for a dict config, ``cfg.key`` for a diffusers ``FrozenDict``/object; else ``default``."""
    if isinstance(cfg, dict):
        return cfg.get(key, default)
    return getattr(cfg, key, default)


@torch.no_grad()
def encode(vae: Any, images: torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(B, 3, H, W) images -> (B, C, h, w) scaled latents in ``dtype`` (the posterior mean, no sampling);
    the VAE runs on ``device`` in its own dtype."""
    z = vae.encode(images.to(device, vae.dtype)).latent_dist.mean
    shift = config_get(vae.config, "shift_factor", None) or 0.0
    return ((z - shift) * vae.config.scaling_factor).to(dtype)


@torch.no_grad()
def decode(vae: Any, latents: torch.Tensor, device: torch.device) -> torch.Tensor:
    """(B, C, h, w) scaled latents -> (B, 3, H, W) images in about [-1, 1] (not clamped), decoded on ``device``."""
    shift = config_get(vae.config, "shift_factor", None) or 0.0
    return vae.decode(latents.to(device, vae.dtype) / vae.config.scaling_factor + shift).sample
