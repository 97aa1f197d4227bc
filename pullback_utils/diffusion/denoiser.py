"""Calling a denoiser, family by family (the model's attributes only; nothing above the diffusion layer).

The network's time input (:func:`~pullback_utils.diffusion.architectures.network_timestep`), its conditioning keywords,
FLUX's packed latents and position ids, DiT's learned variance, and the conversion of a VP network's
output to eps (a flow network's velocity is returned as is; :mod:`pullback_utils.diffusion.flow` converts it).
``model`` is a :class:`~pullback_utils.models.diffusion_model.DiffusionModel` (any object with its attributes).
"""

from __future__ import annotations

from typing import Any

import torch

from pullback_utils.diffusion.architectures import latent_image_ids, network_timestep, pack_latents, unpack_latents
from pullback_utils.diffusion.prompts import Conditioning

__all__ = ["keywords", "flux_extras", "output", "to_prediction"]


def keywords(c: torch.Tensor | Conditioning | None) -> dict[str, Any]:
    """The denoiser's keyword arguments of conditioning ``c`` (a tensor is ``encoder_hidden_states``)."""
    if c is None:
        return {}
    return dict(c) if isinstance(c, Conditioning) else {"encoder_hidden_states": c}


def flux_extras(model: Any, x: torch.Tensor) -> dict[str, Any]:
    """FLUX's per-call keywords for latents ``x`` (B, C, H, W): ``img_ids`` and the embedded ``guidance``."""
    extras: dict[str, Any] = {"img_ids": latent_image_ids(x.shape[2], x.shape[3]).to(x.device, x.dtype)}
    if model.embedded_guidance is not None:
        extras["guidance"] = torch.full((x.shape[0],), float(model.embedded_guidance), device=x.device)
    return extras


def output(model: Any, x: torch.Tensor, level: int, c: torch.Tensor | Conditioning | None) -> torch.Tensor:
    """The denoiser's output at ``level`` for ``x`` ``(B, *sample_shape)``: DiT's learned variance dropped,
    FLUX's tokens unpacked; same shape as ``x``."""
    kwargs = keywords(c)
    T = model.num_train_timesteps
    sigma = model.flow_grid.sigma(level) if model.flow_grid is not None else None
    if model.family is not None:
        value = network_timestep(model.family, level, sigma, T)
    else:  # plain networks: the training index, or the flow scheduler's timestep sigma * T
        value = level - 1 if sigma is None else sigma * T
    dtype = torch.long if isinstance(value, int) else torch.float64 if x.dtype == torch.float64 else torch.float32
    ts = torch.full((x.shape[0],), value, dtype=dtype, device=x.device)
    packed = model.family is not None and model.family.tokens
    if model.family is None:
        out = model.unet(x, ts, **kwargs) if kwargs else model.unet(x, ts)
    elif packed:
        out = model.unet(pack_latents(x), timestep=ts, return_dict=False, **kwargs, **flux_extras(model, x))
    else:
        out = model.unet(x, timestep=ts, return_dict=False, **kwargs)
    if hasattr(out, "sample"):
        out = out.sample
    elif isinstance(out, (tuple, list)):
        out = out[0]
    if packed:
        return unpack_latents(out, x.shape[2], x.shape[3])
    if out.shape[1] == 2 * x.shape[1]:  # learned variance (DiT, PixArt): the first half is the prediction
        out = out[:, : x.shape[1]]
    return out


def to_prediction(model: Any, x: torch.Tensor, level: int, out: torch.Tensor) -> torch.Tensor:
    """eps from a VP network's output (by the scheduler's prediction type); a flow network's velocity unchanged."""
    if model.prediction_type in ("epsilon", "flow"):
        return out
    a = float(model.alphas_cumprod[level - 1])
    if model.prediction_type == "v_prediction":
        return a**0.5 * out + (1 - a) ** 0.5 * x
    return (x - a**0.5 * out) / (1 - a) ** 0.5  # "sample"
