"""The feature map f_t: x_t ↦ h of a diffusers U-Net, stopped at a chosen block.

``h``-space (Asyrp; Park et al.) is the output of the U-Net's ``mid_block``: the network run through
``conv_in`` and all down blocks and the mid block, with the time embedding (and, for text-to-image
U-Nets, the prompt's encoder hidden states through cross-attention) held fixed. Other blocks can be
chosen: ``"down.i"`` (output of down block ``i``) and ``"up.i"`` (output of up block ``i``, which
needs the down blocks' skip activations and so runs the network up to that block).

The computation mirrors ``UNet2DModel.forward`` and ``UNet2DConditionModel.forward`` and stops at
the requested block, so nothing after it runs; tests check it against a forward hook on the stock
forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .schedule import DEFAULT_NUM_TRAIN_TIMESTEPS, resolve_time, unet_timestep

__all__ = ["FeatureMap", "feature_map", "layer_names"]


def _is_conditional(unet: nn.Module) -> bool:
    from diffusers import UNet2DConditionModel

    return isinstance(unet, UNet2DConditionModel)


def layer_names(unet: nn.Module) -> list[str]:
    """Valid ``layer`` names for ``unet``: ``"down.0"``, …, ``"mid"``, ``"up.0"``, …"""
    names = [f"down.{i}" for i in range(len(unet.down_blocks))]
    if getattr(unet, "mid_block", None) is not None:
        names.append("mid")
    names += [f"up.{i}" for i in range(len(unet.up_blocks))]
    return names


@dataclass
class FeatureMap:
    """Callable ``x ↦ h`` for a U-Net at a fixed time (and prompt).

    ``timestep`` is the network's input (diffusers' training index, ``level - 1``); ``level`` the time
    on the package's grid (:mod:`pullback_utils.schedule`).

    ``__call__`` takes ``x`` of shape (B, C, H, W) and returns ``h`` of shape (B, *h_shape); each
    sample is processed independently (``per_sample`` is True), which the Jacobian products use to
    batch vectors through the batch dimension. Build it with :func:`feature_map`.
    """

    unet: nn.Module
    timestep: int
    layer: str
    encoder_hidden_states: torch.Tensor | None = None
    per_sample: bool = True
    level: int | None = None

    def __post_init__(self) -> None:
        self._emb_cache: dict[tuple, torch.Tensor] = {}

    # -- embeddings that do not depend on x: computed once, expanded to the batch ------------
    def _time_embedding(self, x: torch.Tensor) -> torch.Tensor:
        key = (x.device, x.dtype)
        if key not in self._emb_cache:
            unet = self.unet
            with torch.no_grad():
                t = torch.tensor([self.timestep], dtype=torch.float32, device=x.device)
                t_emb = unet.time_proj(t).to(dtype=x.dtype)
                if _is_conditional(unet):
                    emb = unet.time_embedding(t_emb, None)
                    if unet.config.addition_embed_type is not None:
                        raise NotImplementedError(
                            f"addition_embed_type={unet.config.addition_embed_type!r} "
                            "(SDXL/Kandinsky-style extra conditioning) is not supported"
                        )
                    if unet.time_embed_act is not None:
                        emb = unet.time_embed_act(emb)
                else:
                    emb = unet.time_embedding(t_emb)
                if getattr(unet, "class_embedding", None) is not None:
                    raise NotImplementedError("class-conditional U-Nets are not supported")
            self._emb_cache[key] = emb
        emb = self._emb_cache[key]
        return emb.expand(x.shape[0], *emb.shape[1:])

    def _context(self, x: torch.Tensor) -> torch.Tensor | None:
        ehs = self.encoder_hidden_states
        if ehs is None:
            return None
        ehs = ehs.to(device=x.device, dtype=x.dtype)
        if getattr(self.unet, "encoder_hid_proj", None) is not None:
            ehs = self.unet.encoder_hid_proj(ehs)
        return ehs.expand(x.shape[0], *ehs.shape[1:])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """h = f_t(x). x: (B, C, H, W) -> h: (B, C_h, H_h, W_h)."""
        unet = self.unet
        emb = self._time_embedding(x)
        context = self._context(x)
        target_kind, _, target_index = self.layer.partition(".")
        target_index = int(target_index) if target_index else -1

        if unet.config.center_input_sample:
            x = 2 * x - 1.0
        sample = unet.conv_in(x)
        res_samples: tuple[torch.Tensor, ...] = (sample,)
        for i, block in enumerate(unet.down_blocks):
            if getattr(block, "has_cross_attention", False):
                sample, res = block(hidden_states=sample, temb=emb, encoder_hidden_states=context)
            elif hasattr(block, "skip_conv"):
                raise NotImplementedError("skip-connection (score-SDE style) down blocks are not supported")
            else:
                sample, res = block(hidden_states=sample, temb=emb)
            res_samples += res
            if target_kind == "down" and i == target_index:
                return sample

        if unet.mid_block is not None:
            if getattr(unet.mid_block, "has_cross_attention", False):
                sample = unet.mid_block(sample, emb, encoder_hidden_states=context)
            else:
                sample = unet.mid_block(sample, emb)
        if target_kind == "mid":
            return sample

        up_factor = 2 ** getattr(unet, "num_upsamplers", 0)
        forward_upsample_size = any(d % up_factor != 0 for d in x.shape[-2:])
        for i, block in enumerate(unet.up_blocks):
            res = res_samples[-len(block.resnets):]
            res_samples = res_samples[: -len(block.resnets)]
            is_final = i == len(unet.up_blocks) - 1
            kwargs = {}
            if _is_conditional(unet):
                kwargs["upsample_size"] = (
                    res_samples[-1].shape[2:] if (forward_upsample_size and not is_final) else None
                )
            if getattr(block, "has_cross_attention", False):
                sample = block(
                    hidden_states=sample, temb=emb, res_hidden_states_tuple=res,
                    encoder_hidden_states=context, **kwargs,
                )
            else:
                sample = block(hidden_states=sample, temb=emb, res_hidden_states_tuple=res, **kwargs)
            if i == target_index:
                return sample
        raise AssertionError(f"layer {self.layer!r} not reached")  # unreachable after validation


def feature_map(
    unet: nn.Module,
    t: float | int | torch.Tensor,
    *,
    layer: str = "mid",
    encoder_hidden_states: torch.Tensor | None = None,
    num_train_timesteps: int | None = None,
) -> FeatureMap:
    """The feature map ``x ↦ h`` of ``unet`` at time ``t``, up to and including ``layer``.

    Args:
        unet: a diffusers ``UNet2DModel`` or ``UNet2DConditionModel``.
        t: time on the package's grid (:mod:`pullback_utils.schedule`): an int level in ``1..T`` or a
            float fraction of ``T`` in ``(0, 1]``; the network sees timestep ``level - 1``.
        layer: ``"mid"`` (default, h-space), ``"down.i"`` or ``"up.i"``; see :func:`layer_names`.
        encoder_hidden_states: (1, L, D) prompt embedding for text-conditional U-Nets, else None.
        num_train_timesteps: the schedule's ``T`` (default 1000, diffusers' and the paper's value).

    Returns:
        A :class:`FeatureMap`: x (B, C, H, W) ↦ h (B, C_h, H_h, W_h).
    """
    from diffusers import UNet2DConditionModel, UNet2DModel

    if not isinstance(unet, (UNet2DModel, UNet2DConditionModel)):
        raise TypeError(
            f"unet must be a diffusers UNet2DModel or UNet2DConditionModel, got {type(unet).__name__}"
        )
    T = DEFAULT_NUM_TRAIN_TIMESTEPS if num_train_timesteps is None else int(num_train_timesteps)
    timestep = unet_timestep(t, T)
    valid = layer_names(unet)
    if layer not in valid:
        raise ValueError(f"unknown layer {layer!r}; valid layers for this U-Net: {valid}")
    conditional = _is_conditional(unet)
    if conditional:
        if encoder_hidden_states is None:
            raise ValueError(
                "encoder_hidden_states is required for a UNet2DConditionModel "
                "(shape (1, L, cross_attention_dim); use the empty prompt's embedding for 'no prompt')"
            )
        expected = unet.config.encoder_hid_dim or unet.config.cross_attention_dim
        if encoder_hidden_states.ndim != 3 or encoder_hidden_states.shape[-1] != expected:
            raise ValueError(
                "encoder_hidden_states must have shape (1, L, "
                f"{expected}), got {tuple(encoder_hidden_states.shape)}"
            )
        if encoder_hidden_states.shape[0] != 1:
            raise ValueError(
                f"encoder_hidden_states must describe one prompt (batch 1), got batch {encoder_hidden_states.shape[0]}"
            )
    elif encoder_hidden_states is not None:
        raise ValueError("encoder_hidden_states was given, but this UNet2DModel is unconditional")
    return FeatureMap(unet=unet, timestep=timestep, layer=layer, encoder_hidden_states=encoder_hidden_states,
                      level=resolve_time(t, T))
