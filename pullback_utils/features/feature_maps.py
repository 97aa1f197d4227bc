"""The feature map f_t: x_t ↦ h of any supported diffusers denoiser, stopped at a named layer.

``h``-space (Asyrp; Park et al.) is the output of a U-Net's ``mid_block``; for a diffusion
transformer the package's default is the middle transformer block. Any named submodule can be
chosen (``"transformer_blocks.12"``, ``"mid_block"``, ``"down_blocks.2.resnets.1"``), and for U-Nets the
short names ``"down.i"``, ``"mid"`` and ``"up.i"`` (outputs of ``down_blocks.i``, ``mid_block`` and
``up_blocks.i``) keep working. Defaults (:func:`default_layer`): ``"mid"`` for U-Nets,
``transformer_blocks.{n // 2}`` for DiT, PixArt and SD3, and the middle block of FLUX's double-then-
single stack (``single_transformer_blocks.9`` of FLUX.1's 19 + 38).

The map runs the denoiser's own forward pass with the time (and conditioning) held fixed and stops
at the layer: a forward hook on it raises a private exception carrying its output, so nothing after
the layer runs and ``h`` is by construction what a hook on the stock forward pass sees (tested for
every family). A block that returns several streams gives its image stream: the second output of
SD3's ``JointTransformerBlock`` and FLUX's blocks, ``(encoder_hidden_states, hidden_states)``; the
first tensor of any other tuple (a U-Net down block's ``(sample, skips)``, an attention module's
``(hidden_states, encoder_hidden_states)``).

Times follow :mod:`pullback_utils.diffusion.schedule`; for flow-matching denoisers (SD3, FLUX) a level is mapped to
its sigma by the scheduler's grid (:class:`~pullback_utils.diffusion.flow.FlowGrid`; unshifted without one).
Conditioning keywords are the denoiser's own (:mod:`pullback_utils.diffusion.architectures`).
"""

from __future__ import annotations

import difflib
from typing import Any

import torch
from torch import nn

from pullback_utils.diffusion.architectures import (
    check_conditioning,
    expand_conditioning,
    family_of,
    network_timestep,
)
from pullback_utils.diffusion.flow import FlowGrid, is_flow_scheduler
from pullback_utils.diffusion.schedule import DEFAULT_NUM_TRAIN_TIMESTEPS, resolve_time, unet_timestep

__all__ = ["FeatureMap", "feature_map", "layer_names", "default_layer", "resolve_layer"]

_ALIASES = {"down": "down_blocks", "mid": "mid_block", "up": "up_blocks"}
# blocks returning (encoder_hidden_states, hidden_states): h is the image stream, the second output
_SECOND_STREAM = frozenset({"JointTransformerBlock", "FluxTransformerBlock", "FluxSingleTransformerBlock"})


class _Stop(Exception):
    """Raised by the layer's forward hook to end the forward pass; carries the layer's output."""

    def __init__(self, output: Any) -> None:
        super().__init__("feature layer reached")
        self.output = output


def _blocks(denoiser: nn.Module) -> list[str]:
    """Block-level layer names in execution order (U-Nets: the short names)."""
    fam = family_of(denoiser)
    if fam.name == "unet":
        names = [f"down.{i}" for i in range(len(denoiser.down_blocks))]
        names += ["mid"] if getattr(denoiser, "mid_block", None) is not None else []
        return names + [f"up.{i}" for i in range(len(denoiser.up_blocks))]
    return [f"{b}.{i}" for b in fam.blocks for i in range(len(getattr(denoiser, b)))]


def layer_names(denoiser: nn.Module, *, submodules: bool = False) -> list[str]:
    """Valid ``layer`` names: the blocks in execution order (U-Nets: ``"down.0"``, …, ``"mid"``, ``"up.0"``,
    …; transformers: ``"transformer_blocks.0"``, …), and with ``submodules`` every named submodule path."""
    names = _blocks(denoiser)
    if submodules:
        names += [n for n, _ in denoiser.named_modules() if n and n not in names]
    return names


def default_layer(denoiser: nn.Module) -> str:
    """The package's default feature layer of ``denoiser`` (see the module doc)."""
    fam = family_of(denoiser)
    if fam.name == "unet":
        return "mid" if getattr(denoiser, "mid_block", None) is not None else f"up.{len(denoiser.up_blocks) // 2}"
    blocks = _blocks(denoiser)
    return blocks[len(blocks) // 2]


def _ranges(names: list[str]) -> str:
    """The names, quoted, with runs of consecutive indices collapsed: ``'blocks.0'..'blocks.27'``."""
    out: list[str] = []
    i = 0
    while i < len(names):
        head, _, idx = names[i].rpartition(".")
        j = i
        if idx.isdigit():
            while j + 1 < len(names) and names[j + 1] == f"{head}.{int(idx) + (j + 1 - i)}":
                j += 1
        out += [repr(n) for n in names[i : j + 1]] if j - i < 4 else [f"{names[i]!r}..{names[j]!r}"]
        i = j + 1
    return ", ".join(out)


def resolve_layer(denoiser: nn.Module, layer: str) -> nn.Module:
    """The submodule named ``layer``; ``ValueError`` listing the valid names near it otherwise."""
    if not isinstance(layer, str):
        raise TypeError(f"layer must be a str (a block or submodule name), got {type(layer).__name__}")
    modules = dict(denoiser.named_modules())
    kind, _, index = layer.partition(".")
    path = layer
    if family_of(denoiser).name == "unet" and kind in _ALIASES and (index.isdigit() or (kind == "mid" and not index)):
        path = _ALIASES[kind] + (f".{index}" if index else "")
    if path and path in modules:
        return modules[path]
    blocks = _blocks(denoiser)
    near = difflib.get_close_matches(layer, list(dict.fromkeys(blocks + [n for n in modules if n])), n=5, cutoff=0.6)
    hint = f"; did you mean {near}?" if near else ""
    raise ValueError(
        f"unknown layer {layer!r}; valid layers for this {type(denoiser).__name__}: blocks {_ranges(blocks)} "
        f"(in execution order; any named submodule path also works, see layer_names(denoiser, submodules=True)){hint}"
    )


def _stream(module: nn.Module, output: Any) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    if hasattr(output, "sample"):
        return output.sample
    if isinstance(output, (tuple, list)):
        if type(module).__name__ in _SECOND_STREAM:
            return output[1]
        for o in output:
            if isinstance(o, torch.Tensor):
                return o
    raise TypeError(f"layer output of {type(module).__name__} holds no tensor ({type(output).__name__})")


class FeatureMap:
    """Callable ``x ↦ h`` of a denoiser at a fixed time and conditioning. Build it with :func:`feature_map`.

    ``__call__`` takes ``x`` of shape ``(B, *x_shape)`` (the denoiser's input; (B, C, H, W) latents, or FLUX's
    (B, N, C) packed latents) and returns ``h`` of shape ``(B, *h_shape)``. Each sample is processed
    independently (``per_sample`` is True): conditioning of batch 1 is expanded to the batch, which
    the Jacobian products use to batch vectors through the batch dimension.

    Attributes: ``denoiser`` (also ``unet``), ``layer`` (the name given), ``module`` (the submodule),
    ``level`` (the package's time), ``timestep`` (the network's time input: ``level - 1``, or the flow
    timestep), ``sigma`` (flow noise level; None for variance-preserving models), ``conditioning``.
    """

    per_sample = True

    def __init__(
        self,
        denoiser: nn.Module,
        *,
        layer: str,
        module: nn.Module,
        level: int,
        timestep: int | float,
        sigma: float | None,
        conditioning: dict[str, Any],
    ) -> None:
        self.denoiser, self.layer, self.module = denoiser, layer, module
        self.level, self.timestep, self.sigma = level, timestep, sigma
        self.conditioning = conditioning

    @property
    def unet(self) -> nn.Module:
        return self.denoiser

    @property
    def encoder_hidden_states(self) -> torch.Tensor | None:
        return self.conditioning.get("encoder_hidden_states")

    def _hook(self, module: nn.Module, args: Any, output: Any) -> None:
        raise _Stop(_stream(module, output))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """h = f_t(x). x: ``(B, *x_shape)`` -> h: ``(B, *h_shape)``."""
        b = x.shape[0]
        dtype = (
            torch.long
            if isinstance(self.timestep, int)
            else torch.float64
            if x.dtype == torch.float64
            else torch.float32
        )
        ts = torch.full((b,), self.timestep, dtype=dtype, device=x.device)
        kwargs = expand_conditioning(self.conditioning, b, x)
        handle = self.module.register_forward_hook(self._hook)
        try:
            self.denoiser(x, timestep=ts, return_dict=False, **kwargs)
        except _Stop as stop:
            return stop.output
        finally:
            handle.remove()
        raise RuntimeError(f"layer {self.layer!r} did not run in the forward pass of {type(self.denoiser).__name__}")


def _time_inputs(
    denoiser: nn.Module,
    t: Any,
    *,
    num_train_timesteps: int | None = None,
    scheduler: Any = None,
    image_seq_len: int | None = None,
) -> tuple[int, int | float, float | None]:
    """``(level, network timestep, sigma)`` of time ``t`` for ``denoiser`` (sigma None for VP models).

    ``scheduler``: the denoiser's scheduler; for flow-matching denoisers its (shifted) grid, else
    only ``num_train_timesteps`` is read. ``image_seq_len``: image tokens, for resolution-shifted grids.
    """
    fam = family_of(denoiser)
    if scheduler is not None and num_train_timesteps is None:
        num_train_timesteps = scheduler.config.get("num_train_timesteps")
    T = DEFAULT_NUM_TRAIN_TIMESTEPS if num_train_timesteps is None else int(num_train_timesteps)
    unet_timestep(t, T)  # refuses clean data and out-of-range times, naming t
    level = resolve_time(t, T)
    if not fam.flow:
        return level, level - 1, None
    if scheduler is not None and not is_flow_scheduler(scheduler):
        raise TypeError(
            f"a {type(denoiser).__name__} is a flow-matching model: scheduler must be a "
            f"FlowMatchEulerDiscreteScheduler, got {type(scheduler).__name__}"
        )
    grid = FlowGrid.from_scheduler(scheduler, image_seq_len=image_seq_len, num_train_timesteps=T)
    sigma = grid.sigma(level)
    return level, network_timestep(fam, level, sigma, T), sigma


def feature_map(
    denoiser: nn.Module,
    t: float | int | torch.Tensor,
    *,
    layer: str | None = None,
    num_train_timesteps: int | None = None,
    scheduler: Any = None,
    image_seq_len: int | None = None,
    **conditioning: Any,
) -> FeatureMap:
    """The feature map ``x ↦ h`` of ``denoiser`` at time ``t``, up to and including ``layer``.

    Args:
        denoiser: a supported diffusers denoiser (:data:`~pullback_utils.diffusion.architectures.SUPPORTED_DENOISERS`).
        t: time on the package's grid (:mod:`pullback_utils.diffusion.schedule`): an int level in ``1..T`` or a
            float fraction of ``T`` in ``(0, 1]``; VP networks see timestep ``level - 1``, flow networks
            their grid's sigma at that level (:mod:`pullback_utils.diffusion.flow`).
        layer: a block or submodule name (:func:`layer_names`); ``None``: :func:`default_layer`.
        num_train_timesteps: the schedule's ``T`` (default: the scheduler's, else 1000).
        scheduler: the denoiser's scheduler (flow models: its shifted sigma grid; None = unshifted).
        image_seq_len: image tokens, needed only for resolution-shifted (FLUX) grids.
        **conditioning: the denoiser's conditioning keywords (:mod:`pullback_utils.diffusion.architectures`), each for
            one sample, e.g. ``encoder_hidden_states=(1, L, D)``, ``class_labels=3``,
            ``added_cond_kwargs={...}``, ``pooled_projections=(1, P)``, ``img_ids=(N, 3)``, ``guidance=3.5``.

    Returns:
        A :class:`FeatureMap`: x ``(B, *x_shape)`` ↦ h ``(B, *h_shape)``.
    """
    fam = family_of(denoiser)
    if (
        fam.name == "unet"
        and type(denoiser).__name__ == "UNet2DModel"
        and conditioning.get("encoder_hidden_states") is not None
    ):
        raise ValueError("encoder_hidden_states was given, but this UNet2DModel is unconditional")
    if image_seq_len is None and fam.tokens and isinstance(conditioning.get("img_ids"), torch.Tensor):
        image_seq_len = conditioning["img_ids"].shape[0]
    level, timestep, sigma = _time_inputs(
        denoiser, t, num_train_timesteps=num_train_timesteps, scheduler=scheduler, image_seq_len=image_seq_len
    )
    layer = default_layer(denoiser) if layer is None else layer
    module = resolve_layer(denoiser, layer)
    cond = check_conditioning(denoiser, conditioning)
    return FeatureMap(
        denoiser, layer=layer, module=module, level=level, timestep=timestep, sigma=sigma, conditioning=cond
    )
