"""The zoo's architecture and noise schedule: one U-Net family and one DDPM schedule for every model.

- :func:`build_unet`: a 32x32 RGB diffusers U-Net, ``UNet2DModel`` (``kind="pixel"``) or
  ``UNet2DConditionModel`` with cross-attention on MiniLM token embeddings (``kind="text"``);
- :func:`make_scheduler`: DDPM, :data:`NUM_TRAIN_TIMESTEPS` steps, linear betas 1e-4..0.02,
  v-prediction (:data:`PREDICTION_TYPE`);
- :func:`check_channels`: the U-Net widths (``block_out_channels``) a caller may ask for.
"""

from __future__ import annotations

import torch

from pullback_utils.zoo.registry import DEFAULT_CHANNELS

__all__ = [
    "NUM_TRAIN_TIMESTEPS",
    "PREDICTION_TYPE",
    "DEFAULT_CHANNELS",
    "TINY_CHANNELS",
    "CROSS_ATTENTION_DIM",
    "TEXT_MAX_LENGTH",
    "check_channels",
    "build_unet",
    "make_scheduler",
]

NUM_TRAIN_TIMESTEPS = 1000
PREDICTION_TYPE = "v_prediction"
#: ``block_out_channels`` of the small test U-Net (``tiny=True``) and of the ladder's models.
TINY_CHANNELS: tuple[int, int, int] = (16, 32, 32)
#: The text model's encoder hidden states (MiniLM): (B, TEXT_MAX_LENGTH, CROSS_ATTENTION_DIM).
CROSS_ATTENTION_DIM = 384
TEXT_MAX_LENGTH = 16


def check_channels(channels) -> tuple[int, int, int]:
    """Validate ``block_out_channels``: three positive multiples of 8 (group norm with 8 groups,
    attention heads of width 8); returns them as a tuple."""
    try:
        ch = tuple(int(c) for c in channels)
    except (TypeError, ValueError):
        ch = ()
    if len(ch) != 3 or any(c < 8 or c % 8 for c in ch) or tuple(channels) != ch:
        raise ValueError(
            f"channels: expected three positive multiples of 8 (block_out_channels, "
            f"e.g. {DEFAULT_CHANNELS}), got {channels!r}"
        )
    return ch


def build_unet(kind: str, tiny: bool = False, channels: tuple[int, int, int] | None = None) -> torch.nn.Module:
    """The zoo U-Net for ``kind`` ``"pixel"`` (``UNet2DModel``) or ``"text"`` (``UNet2DConditionModel``).

    Channels (32, 64, 64), one ResNet layer per block (1.11M parameters for ``"pixel"``).
    Input x: (B, 3, 32, 32) in [-1, 1]; resolutions 32 -> 16 -> 8, the last down block
    (attention / cross-attention) and the mid block (attention) at 8x8; mid-block h: (B, 64, 8, 8).
    Text: encoder_hidden_states (B, 16, 384). ``tiny`` gives a small variant for tests;
    ``channels`` overrides ``block_out_channels`` (a larger model for a GPU run, e.g. (64, 128, 128)).
    """
    from diffusers import UNet2DConditionModel, UNet2DModel

    ch = check_channels(channels) if channels is not None else (TINY_CHANNELS if tiny else DEFAULT_CHANNELS)
    common = dict(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        block_out_channels=ch,
        layers_per_block=1,
        norm_num_groups=8,
        attention_head_dim=8,
    )
    if kind == "pixel":
        return UNet2DModel(
            down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
            up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
            **common,
        )
    if kind == "text":
        return UNet2DConditionModel(
            down_block_types=("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
            cross_attention_dim=CROSS_ATTENTION_DIM,
            **common,
        )
    raise ValueError(f"kind: expected 'pixel' or 'text', got {kind!r}")


def make_scheduler():
    """The training noise schedule (DDPM, 1000 steps, linear betas 1e-4..0.02, v-prediction).

    ``clip_sample=True`` is diffusers' default for ``DDPMPipeline``; the package's own sampler
    (:func:`pullback_utils.diffusion.ddim.ddim_sample`) reads only ``alphas_cumprod`` and ``prediction_type``.
    """
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=NUM_TRAIN_TIMESTEPS,
        beta_schedule="linear",
        beta_start=1e-4,
        beta_end=0.02,
        prediction_type=PREDICTION_TYPE,
        clip_sample=True,
    )
