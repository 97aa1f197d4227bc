"""The diffusers denoisers the package drives, and what differs between their families.

=====================================  ======  ==================  ===============================================
class                                  family  network's timestep  conditioning keywords (required ones first)
=====================================  ======  ==================  ===============================================
``UNet2DModel``                        unet    level - 1           ``class_labels`` (class-conditional configs)
``UNet2DConditionModel`` (SD, SDXL)    unet    level - 1           ``encoder_hidden_states`` (1, L, D);
                                                                   ``added_cond_kwargs={"text_embeds": (1, P),
                                                                   "time_ids": (1, 6)}`` for SDXL (``text_time``)
``DiTTransformer2DModel``              dit     level - 1           ``class_labels`` (1,) ints
``PixArtTransformer2DModel``           pixart  level - 1           ``encoder_hidden_states``, ``added_cond_kwargs``
                                                                   (default: no resolution conditions),
                                                                   ``encoder_attention_mask``
``SD3Transformer2DModel``              sd3     sigma * T           ``encoder_hidden_states``, ``pooled_projections``
``FluxTransformer2DModel``             flux    sigma * T / 1000    ``encoder_hidden_states``, ``pooled_projections``,
                                                                   ``img_ids`` (N, 3), ``txt_ids`` (L, 3; default
                                                                   zeros), ``guidance`` (guidance-distilled configs)
=====================================  ======  ==================  ===============================================

``level`` is the package's time (:mod:`pullback_utils.diffusion.schedule`); ``sigma`` that level's flow-matching
noise level (:mod:`pullback_utils.diffusion.flow`). Every conditioning tensor describes one sample (batch 1);
feature maps expand it to the batch of ``x``. The input ``x`` is the denoiser's own: (1, C, H, W)
latents, except FLUX, whose transformer takes packed latents (1, N, C) (:func:`pack_latents`).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from pullback_utils._validate import is_int, is_real

__all__ = [
    "SUPPORTED_DENOISERS",
    "Family",
    "family_of",
    "check_conditioning",
    "check_input",
    "network_timestep",
    "expand_conditioning",
    "pack_latents",
    "unpack_latents",
    "latent_image_ids",
]

#: The denoiser classes the package drives.
SUPPORTED_DENOISERS = (
    "UNet2DModel",
    "UNet2DConditionModel",
    "DiTTransformer2DModel",
    "PixArtTransformer2DModel",
    "SD3Transformer2DModel",
    "FluxTransformer2DModel",
)
# forward arguments that are not conditioning: the input, the time, output format, per-call tweaks
_NOT_CONDITIONING = frozenset({"self", "sample", "hidden_states", "timestep", "return_dict", "args", "kwargs"})
# keywords whose tensors do not carry a batch dimension (FLUX's rotary position ids)
_UNBATCHED = frozenset({"img_ids", "txt_ids"})


@dataclass(frozen=True)
class Family:
    """What differs between denoisers: time input, block lists (in execution order), flow or not."""

    name: str
    time_input: str  # "index" (level - 1), "sigma*T" or "sigma*T/1000"
    blocks: tuple[str, ...]
    tokens: bool = False  # x is a token sequence (FLUX) rather than (C, H, W)

    @property
    def flow(self) -> bool:
        """Whether the denoiser is a flow-matching (velocity) model."""
        return self.time_input != "index"


_UNET_BLOCKS = ("down_blocks", "mid_block", "up_blocks")
_FAMILIES = {
    "UNet2DModel": Family("unet", "index", _UNET_BLOCKS),
    "UNet2DConditionModel": Family("unet", "index", _UNET_BLOCKS),
    "DiTTransformer2DModel": Family("dit", "index", ("transformer_blocks",)),
    "PixArtTransformer2DModel": Family("pixart", "index", ("transformer_blocks",)),
    "SD3Transformer2DModel": Family("sd3", "sigma*T", ("transformer_blocks",)),
    "FluxTransformer2DModel": Family(
        "flux", "sigma*T/1000", ("transformer_blocks", "single_transformer_blocks"), tokens=True
    ),
}


def family_of(denoiser: Any) -> Family:
    """The :class:`Family` of a diffusers denoiser; ``TypeError`` naming the supported classes otherwise."""
    for cls in type(denoiser).__mro__:
        if cls.__name__ in _FAMILIES and cls.__module__.startswith("diffusers"):
            return _FAMILIES[cls.__name__]
    raise TypeError(
        f"denoiser must be one of the supported diffusers classes {list(SUPPORTED_DENOISERS)}, "
        f"got {type(denoiser).__name__}"
    )


def _conditioning_keywords(denoiser: nn.Module) -> list[str]:
    """The keyword arguments of ``denoiser.forward`` that condition it (everything but x, t and options)."""
    params = inspect.signature(denoiser.forward).parameters
    return [p for p in params if p not in _NOT_CONDITIONING]


def _required_conditioning(denoiser: nn.Module) -> list[str]:
    """Conditioning keywords ``denoiser`` cannot run without (see the module table)."""
    name, cfg = type(denoiser).__name__, denoiser.config
    if name == "UNet2DConditionModel":
        req = ["encoder_hidden_states"]
        return req + (["added_cond_kwargs"] if cfg.get("addition_embed_type") == "text_time" else [])
    if name == "UNet2DModel":
        return ["class_labels"] if (cfg.get("class_embed_type") or cfg.get("num_class_embeds")) else []
    if name == "DiTTransformer2DModel":
        return ["class_labels"]
    if name == "PixArtTransformer2DModel":
        return ["encoder_hidden_states"]
    if name == "SD3Transformer2DModel":
        return ["encoder_hidden_states", "pooled_projections"]
    if name == "FluxTransformer2DModel":
        return ["encoder_hidden_states", "pooled_projections", "img_ids"] + (
            ["guidance"] if cfg.get("guidance_embeds") else []
        )
    return []


def _text_dim(denoiser: nn.Module) -> int | None:
    cfg, name = denoiser.config, type(denoiser).__name__
    if name == "UNet2DConditionModel":
        return cfg.get("encoder_hid_dim") or cfg.get("cross_attention_dim")
    if name == "PixArtTransformer2DModel":
        return cfg.get("caption_channels")
    return cfg.get("joint_attention_dim")


def _check_tensor(value: Any, name: str, shape: tuple, what: str) -> torch.Tensor:
    """``value`` as a tensor of ``shape`` (None = any size there); ValueError naming ``name`` otherwise."""
    if (
        not isinstance(value, torch.Tensor)
        or value.ndim != len(shape)
        or any(s is not None and value.shape[i] != s for i, s in enumerate(shape))
    ):
        want = "(" + ", ".join("·" if s is None else str(s) for s in shape) + ")"
        got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise ValueError(f"{name} must be {what} of shape {want}, got {got}")
    return value


def check_conditioning(denoiser: nn.Module, conditioning: dict[str, Any]) -> dict[str, Any]:
    """Checked conditioning keywords of ``denoiser`` (one sample), with the family's defaults filled in.

    Raises ``ValueError`` naming the keyword and the expected shape (or the accepted keywords) before
    any network runs. Floats given for ``guidance`` become (1,) tensors.
    """
    family_of(denoiser)
    name, cfg = type(denoiser).__name__, denoiser.config
    accepted = _conditioning_keywords(denoiser)
    unknown = [k for k, v in conditioning.items() if k not in accepted and v is not None]  # None = not given
    if unknown:
        raise ValueError(f"{name} takes no conditioning keyword {unknown}; its conditioning keywords are {accepted}")
    cond = {k: v for k, v in conditioning.items() if v is not None}
    for key in _required_conditioning(denoiser):
        if key == "added_cond_kwargs" and key not in cond:
            raise ValueError(
                "added_cond_kwargs is required for this SDXL-style UNet2DConditionModel (addition_embed_type "
                "'text_time'): give {'text_embeds': (1, P) pooled text embedding, 'time_ids': (1, 6)}"
            )
        if key not in cond:
            if key == "encoder_hidden_states" and name == "UNet2DConditionModel":
                raise ValueError(
                    "encoder_hidden_states is required for a UNet2DConditionModel "
                    "(shape (1, L, cross_attention_dim); use the empty prompt's embedding for 'no prompt')"
                )
            raise ValueError(f"{key} is required for a {name} (conditioning keywords: {accepted})")
    if "encoder_hidden_states" in cond:
        dim = _text_dim(denoiser)
        ehs = cond["encoder_hidden_states"]
        if not isinstance(ehs, torch.Tensor) or ehs.ndim != 3 or (dim is not None and ehs.shape[-1] != dim):
            got = tuple(ehs.shape) if isinstance(ehs, torch.Tensor) else type(ehs).__name__
            raise ValueError(f"encoder_hidden_states must have shape (1, L, {dim}), got {got}")
        if ehs.shape[0] != 1:
            raise ValueError(f"encoder_hidden_states must describe one prompt (batch 1), got batch {ehs.shape[0]}")
    if "pooled_projections" in cond:
        _check_tensor(
            cond["pooled_projections"],
            "pooled_projections",
            (1, cfg.get("pooled_projection_dim")),
            "the pooled text embedding",
        )
    if "class_labels" in cond:
        cond["class_labels"] = _check_labels(denoiser, cond["class_labels"])
    if name == "UNet2DConditionModel" and cfg.get("addition_embed_type") == "text_time":
        added = cond["added_cond_kwargs"]
        if not isinstance(added, dict) or {"text_embeds", "time_ids"} - set(added):
            raise ValueError("added_cond_kwargs must be a dict with 'text_embeds' (1, P) and 'time_ids' (1, 6)")
        p = cfg.get("projection_class_embeddings_input_dim") - 6 * cfg.get("addition_time_embed_dim")
        _check_tensor(added["text_embeds"], "added_cond_kwargs['text_embeds']", (1, p), "the pooled text embedding")
        _check_tensor(
            added["time_ids"], "added_cond_kwargs['time_ids']", (1, 6), "(original size, crop top-left, target size)"
        )
    if name == "PixArtTransformer2DModel":
        cond.setdefault("added_cond_kwargs", {"resolution": None, "aspect_ratio": None})
    if name == "FluxTransformer2DModel":
        _check_tensor(cond["img_ids"], "img_ids", (None, 3), "the image tokens' rotary position ids")
        L = cond["encoder_hidden_states"].shape[1]
        cond.setdefault("txt_ids", torch.zeros(L, 3, dtype=cond["img_ids"].dtype, device=cond["img_ids"].device))
        _check_tensor(cond["txt_ids"], "txt_ids", (L, 3), "the text tokens' rotary position ids")
        if "guidance" in cond:
            g = cond["guidance"]
            if is_real(g):
                g = torch.tensor([float(g)])
            cond["guidance"] = _check_tensor(g, "guidance", (1,), "the embedded guidance scale")
        elif cfg.get("guidance_embeds"):
            raise ValueError(
                "guidance is required: this FLUX transformer embeds the guidance scale (e.g. guidance=3.5)"
            )
    return cond


def _check_labels(denoiser: nn.Module, labels: Any) -> torch.Tensor:
    if is_int(labels):
        labels = torch.tensor([int(labels)])
    if not isinstance(labels, torch.Tensor) or labels.shape != (1,) or labels.is_floating_point():
        got = tuple(labels.shape) if isinstance(labels, torch.Tensor) else repr(labels)
        raise ValueError(f"class_labels must be one integer class id (an int or a (1,) long tensor), got {got}")
    n = denoiser.config.get("num_embeds_ada_norm") or denoiser.config.get("num_class_embeds")
    if n is not None:
        rows = int(n)
        if type(denoiser).__name__ == "DiTTransformer2DModel":  # an extra "null" row when trained with label dropout
            rows = denoiser.transformer_blocks[0].norm1.emb.class_embedder.embedding_table.num_embeddings
        if not 0 <= int(labels[0]) < rows:
            null = f" ({int(n)} is the unconditional 'null' class of classifier-free guidance)" if rows > int(n) else ""
            raise ValueError(
                f"class_labels={int(labels[0])} is not a class of this model: ids run 0..{int(n) - 1}{null}"
            )
    return labels.long()


def check_input(denoiser: nn.Module, x: Any, name: str = "x_t") -> None:
    """``x`` must be one sample (batch 1) of the denoiser's input, finite; ValueError/TypeError otherwise."""
    fam = family_of(denoiser)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    cfg = denoiser.config
    c = int(cfg.in_channels)
    if fam.tokens:
        if x.ndim != 3 or x.shape[0] != 1 or x.shape[2] != c:
            raise ValueError(
                f"{name} must be packed latents of shape (1, N, {c}) for this {type(denoiser).__name__} "
                f"(pack (1, {c // 4}, H, W) latents with pack_latents), got {tuple(x.shape)}"
            )
    else:
        what = "U-Net" if fam.name == "unet" else type(denoiser).__name__
        if x.ndim != 4 or x.shape[0] != 1 or x.shape[1] != c:
            raise ValueError(f"{name} must have shape (1, {c}, H, W) for this {what}, got {tuple(x.shape)}")
        m = 2 ** (len(denoiser.down_blocks) - 1) if fam.name == "unet" else int(cfg.patch_size)
        if x.shape[2] % m or x.shape[3] % m:
            raise ValueError(
                f"{name}'s height and width must be multiples of {m} for this {what}, got {tuple(x.shape[2:])}"
            )
        top = cfg.get("pos_embed_max_size")
        if top and max(x.shape[2:]) > top * m:
            raise ValueError(
                f"{name}'s height and width must be at most {top * m} (pos_embed_max_size {top} patches), "
                f"got {tuple(x.shape[2:])}"
            )
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")


def network_timestep(family: Family, level: int, sigma: float | None, num_train_timesteps: int) -> int | float:
    """The value the denoiser receives as ``timestep`` at ``level`` (``sigma``: that level's flow noise)."""
    if family.time_input == "index":
        return int(level) - 1
    if family.time_input == "sigma*T":
        return float(sigma) * num_train_timesteps
    return float(sigma) * num_train_timesteps / 1000.0


def expand_conditioning(cond: dict[str, Any], batch: int, like: torch.Tensor) -> dict[str, Any]:
    """``cond`` with every batch-1 tensor expanded to ``batch`` and float tensors cast to ``like``'s dtype."""
    out: dict[str, Any] = {}
    for k, v in cond.items():
        if isinstance(v, dict):
            out[k] = expand_conditioning(v, batch, like)
        elif isinstance(v, torch.Tensor):
            v = v.to(device=like.device, dtype=like.dtype if v.is_floating_point() else v.dtype)
            out[k] = v.expand(batch, *v.shape[1:]) if (k not in _UNBATCHED and v.ndim and v.shape[0] == 1) else v
        else:
            out[k] = v
    return out


# ------------------------------------------------------------------ FLUX's packed latents
def pack_latents(latents: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) latents -> (B, H/2 * W/2, 4C) tokens of 2x2 patches (FluxPipeline._pack_latents)."""
    b, c, h, w = latents.shape
    x = latents.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // 2) * (w // 2), c * 4)


def unpack_latents(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Inverse of :func:`pack_latents`: (B, H/2 * W/2, 4C) -> (B, C, H, W) (``height``, ``width`` of the latents)."""
    b, _, d = tokens.shape
    x = tokens.reshape(b, height // 2, width // 2, d // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, d // 4, height, width)


def latent_image_ids(height: int, width: int) -> torch.Tensor:
    """(H/2 * W/2, 3) rotary position ids of packed latents of ``height`` x ``width`` (row, column in 1, 2)."""
    ids = torch.zeros(height // 2, width // 2, 3)
    ids[..., 1] = torch.arange(height // 2)[:, None]
    ids[..., 2] = torch.arange(width // 2)[None, :]
    return ids.reshape(-1, 3)
