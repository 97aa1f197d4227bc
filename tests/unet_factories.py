"""Tiny random-weight diffusers denoisers, fast on 2 CPU cores, shared by the tests: U-Nets with attention,
and SDXL-, DiT-, PixArt-, SD3- and FLUX-shaped models (issue 14)."""

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


# ---------------------------------------------------------------------------------------------------
# the other architectures (issue 14): tiny random-weight SDXL-, DiT-, PixArt-, SD3- and FLUX-shaped denoisers
def make_tiny_sdxl_unet(seed: int = 0, cross_attention_dim: int = 32, pooled_dim: int = 16):
    """A random SDXL-style ``UNet2DConditionModel``: cross-attention plus ``text_time`` added conditions.

    x: (1, 4, 8, 8); encoder_hidden_states (1, L, 32); added_cond_kwargs = {"text_embeds": (1, 16),
    "time_ids": (1, 6)} -> mid-block h: (1, 32, 4, 4).
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
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=pooled_dim + 6 * 8,
    )
    return unet.eval().requires_grad_(False)


def make_tiny_dit(seed: int = 0, num_classes: int = 10, num_layers: int = 4):
    """A random class-conditional ``DiTTransformer2DModel`` (learned variance): x (1, 4, 8, 8), 2x2 patches.

    h at ``transformer_blocks.i``: (1, 16, 16) (16 tokens of width 16); the default layer is block 2.
    """
    from diffusers import DiTTransformer2DModel

    torch.manual_seed(seed)
    dit = DiTTransformer2DModel(
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=4,
        out_channels=8,
        num_layers=num_layers,
        sample_size=8,
        patch_size=2,
        num_embeds_ada_norm=num_classes,
    )
    return dit.eval().requires_grad_(False)


def make_tiny_pixart(seed: int = 0):
    """A random ``PixArtTransformer2DModel`` (cross-attention to (1, L, 24) captions): x (1, 4, 8, 8)."""
    from diffusers import PixArtTransformer2DModel

    torch.manual_seed(seed)
    pix = PixArtTransformer2DModel(
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=4,
        out_channels=8,
        num_layers=2,
        sample_size=8,
        patch_size=2,
        cross_attention_dim=16,
        caption_channels=24,
    )
    return pix.eval().requires_grad_(False)


def make_tiny_sd3(seed: int = 0, joint_attention_dim: int = 32, pooled_projection_dim: int = 16):
    """A random ``SD3Transformer2DModel`` (joint attention, RMS q/k norms, an SD3.5 dual-attention block).

    x: (1, 4, 8, 8); encoder_hidden_states (1, L, 32), pooled_projections (1, 16); h: (1, 16, 16).
    """
    from diffusers import SD3Transformer2DModel

    torch.manual_seed(seed)
    sd3 = SD3Transformer2DModel(
        sample_size=8,
        patch_size=2,
        in_channels=4,
        num_layers=3,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=joint_attention_dim,
        caption_projection_dim=16,
        pooled_projection_dim=pooled_projection_dim,
        out_channels=4,
        pos_embed_max_size=8,
        qk_norm="rms_norm",
        dual_attention_layers=(0,),
    )
    return sd3.eval().requires_grad_(False)


def make_tiny_flux(
    seed: int = 0, joint_attention_dim: int = 32, pooled_projection_dim: int = 16, guidance_embeds: bool = True
):
    """A random ``FluxTransformer2DModel`` (1 double + 2 single blocks, RoPE, guidance embedding).

    x: packed latents (1, N, 16) of (1, 4, H, W) latents (N = H/2 * W/2), img_ids (N, 3);
    encoder_hidden_states (1, L, 32), pooled_projections (1, 16); h: (1, N, 16).
    """
    from diffusers import FluxTransformer2DModel

    torch.manual_seed(seed)
    flux = FluxTransformer2DModel(
        patch_size=1,
        in_channels=16,
        num_layers=1,
        num_single_layers=2,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=joint_attention_dim,
        pooled_projection_dim=pooled_projection_dim,
        guidance_embeds=guidance_embeds,
        axes_dims_rope=(2, 2, 4),
    )
    return flux.eval().requires_grad_(False)
