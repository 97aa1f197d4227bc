"""The basis of a :class:`~pullback_utils.models.diffusion_model.DiffusionModel`: the engine's inputs for one
state, so that ``DiffusionModel.local_basis`` and ``DiffusionModel.feature_map`` are the engine called on the
denoiser (FLUX: packed tokens, ``v`` unpacked), and the basis cache around it. The denoiser calls themselves
are :mod:`pullback_utils.diffusion.denoiser`. The functions read the model's attributes only.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from pullback_utils._validate import check_batch
from pullback_utils.diffusion.architectures import pack_latents, unpack_latents
from pullback_utils.diffusion.denoiser import flux_extras, keywords
from pullback_utils.diffusion.prompts import Conditioning

__all__ = ["model_feature_map", "model_local_basis"]


def _engine_inputs(model: Any, x_t: torch.Tensor, t: Any, prompt: Any, layer: str | None):
    """``(x_in, level, layer, conditioning, keywords)`` of the engine call at one state.

    ``x_in`` is the denoiser's input (FLUX: packed), ``keywords`` its conditioning keywords plus
    ``num_train_timesteps`` (and ``scheduler`` for flow models); ``layer`` resolved to the default.
    """
    if isinstance(x_t, torch.Tensor) and x_t.dim() == 3:
        x_t = x_t.unsqueeze(0)
    check_batch(x_t, model.sample_shape, "x_t", "x_t")
    if x_t.shape[0] != 1:
        raise ValueError(f"x_t must hold one sample (batch 1), got batch {x_t.shape[0]}")
    level = model.unet_timestep(t) + 1
    c = model.conditioning(prompt, batch=1)
    kwargs = keywords(c)
    x_in = x_t.to(model.device, model.dtype)
    kwargs["num_train_timesteps"] = model.num_train_timesteps
    if model.flow_grid is not None:
        kwargs["scheduler"] = model.scheduler
    if model.family is not None and model.family.tokens:
        kwargs.update(flux_extras(model, x_in))
        x_in = pack_latents(x_in)
    if layer is None:
        from pullback_utils.features.feature_maps import default_layer

        layer = default_layer(model.unet)
    return x_in, level, layer, c, kwargs


class _PackedFeatureMap:
    """A FLUX feature map on (B, C, H, W) latents: packs them into the transformer's tokens first."""

    per_sample = True

    def __init__(self, fn: Any) -> None:
        self.fn = fn
        self.level, self.timestep, self.sigma, self.layer = fn.level, fn.timestep, fn.sigma, fn.layer

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(pack_latents(x))


def model_feature_map(model: Any, t: Any, prompt: Any = None, layer: str | None = None):
    """``DiffusionModel.feature_map``: the engine's feature map of the denoiser, on ``(B, *sample_shape)``."""
    from pullback_utils.features.feature_maps import feature_map

    x0 = torch.zeros((1, *model.sample_shape), device=model.device, dtype=model.dtype)
    _, level, layer, _, kwargs = _engine_inputs(model, x0, t, prompt, layer)
    fn = feature_map(model.unet, level, layer=layer, **kwargs)
    return _PackedFeatureMap(fn) if model.family is not None and model.family.tokens else fn


def _unpack_basis(model: Any, basis: Any) -> Any:
    """A basis on FLUX's packed tokens with ``v`` unpacked to ``(k, 1, *sample_shape)``; others unchanged.

    Packing is a permutation of the entries, so the singular values and ``u`` are those of ∂h/∂x_t.
    """
    if model.family is None or not model.family.tokens:
        return basis
    k = basis.v.shape[0]
    v = unpack_latents(basis.v.reshape(k, *basis.v.shape[2:]), *model.sample_shape[1:])
    return dataclasses.replace(basis, v=v.unsqueeze(1))


def model_local_basis(
    model: Any,
    x_t: torch.Tensor,
    t: Any,
    k: int,
    prompt: Any,
    layer: str | None,
    cache_dir: Any,
    solver: dict[str, Any],
) -> Any:
    """``DiffusionModel.local_basis``: the engine on the denoiser (FLUX: packed, ``v`` unpacked), optionally cached."""
    x_in, level, layer, c, kwargs = _engine_inputs(model, x_t, t, prompt, layer)
    from pullback_utils.features import basis as engine

    def compute():
        return _unpack_basis(model, engine.network_basis(model.unet, x_in, level, k, layer=layer, **kwargs, **solver))

    from pullback_utils.features.cache import BasisCache, basis_key_fields, resolve_cache_dir, tensor_hash

    cache_dir = resolve_cache_dir(cache_dir)  # None or "": no cache
    if cache_dir is None:
        return compute()

    x_key = (x_t if x_t.dim() == 4 else x_t.unsqueeze(0)).to(model.device, model.dtype)
    fields = basis_key_fields(
        model.fingerprint,
        x_key,
        level - 1,
        k,
        layer=layer,
        cond=c if not isinstance(c, Conditioning) else None,
        solver=solver,
    )
    if isinstance(c, Conditioning):
        fields["cond"] = {n: tensor_hash(v) for n, v in sorted(c.tensors().items())}
    meta = {"model": model.name, "prompt": prompt if isinstance(prompt, (str, list)) else None}
    return BasisCache(cache_dir).get_or_compute(fields, compute, meta=meta)
