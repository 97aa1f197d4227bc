"""Tiny random-weight diffusers U-Nets with attention (fast on 2 CPU cores), shared by the tests."""

from __future__ import annotations

import torch


def make_tiny_unet2d(seed: int = 0, sample_size: int = 16):
    """A random ``UNet2DModel`` with self-attention in a down block and in the mid block.

    x: (1, 3, 16, 16) -> mid-block h: (1, 32, 4, 4). Parameters frozen, eval mode.
    """
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    unet = UNet2DModel(
        sample_size=sample_size,
        in_channels=3,
        out_channels=3,
        block_out_channels=(16, 32, 32),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
        attention_head_dim=8,
    )
    return unet.eval().requires_grad_(False)


def make_tiny_unet2d_condition(seed: int = 0, cross_attention_dim: int = 24):
    """A random ``UNet2DConditionModel`` with cross-attention (4-channel 8x8 latents).

    x: (1, 4, 8, 8), encoder_hidden_states: (1, L, 24) -> mid-block h: (1, 32, 2, 2).
    """
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(16, 32),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=8,
        norm_num_groups=8,
    )
    return unet.eval().requires_grad_(False)
