"""Random-weight replicas of the paper's hub pipelines, written offline as local pipeline folders.

``book/params/paper.yaml`` names ``google/ddpm-ema-celebahq-256`` and ``stabilityai/stable-diffusion-2-1-base``;
a replica is a folder with the same components and configurations (so the same shapes, parameter counts,
memory and FLOPs) and random weights, made without a network. Pointed at with the model map
(``--model-map ID=FOLDER`` or ``$PULLBACK_MODEL_MAP``, :func:`pullback_utils.zoo.loading.model_map`), it lets the
paper's file run unchanged on a machine that cannot download the checkpoints: a rehearsal of the path
(``benchmarks/paper_rehearsal.py``), not of the results.

Where the configurations come from: the ``config.json`` / ``scheduler_config.json`` files of the two hub
repositories as published (``unet/``, ``scheduler/``, ``vae/``, ``text_encoder/``, ``tokenizer/``); the
CelebA-HQ U-Net's matches the copy of the identical ``google/ddpm-*-256`` family config in
whaler404/Hf-Learn (``diffusers_learn/api/models/unets/unet2dmodel/unet2dmodel.md``) and
:data:`pullback_utils.features.flops.REAL_CONFIGS`; SD-2.1-base's U-Net matches ``benchmarks/scaling.py``
(865.9M parameters). The text encoder is OpenCLIP-ViT-H's text tower as diffusers ships it (1024 wide,
23 layers, 16 heads, 4096 MLP, GELU, 77 positions, 49408 tokens). Only the tokenizer's vocabulary differs:
the real BPE vocabulary is data, not configuration, so :func:`clip_tokenizer` generates one of the same
size (49408 tokens: the 2 specials, the 256 byte symbols with and without ``</w>``, and merges of them);
prompts are therefore tokenized differently, into ids of the same range and length 77.

    python -m pullback_utils.zoo.replicas google/ddpm-ema-celebahq-256 replicas/celebahq
    python -m pullback_utils.zoo.replicas stabilityai/stable-diffusion-2-1-base replicas/sd21   # ~5.2 GB
"""

from __future__ import annotations

import argparse
import copy
import os
from pathlib import Path
from typing import Any

import torch

__all__ = ["REPLICAS", "replica_config", "clip_tokenizer", "write_replica", "main"]

_CELEBAHQ_UNET: dict[str, Any] = dict(
    sample_size=256,
    in_channels=3,
    out_channels=3,
    center_input_sample=False,
    time_embedding_type="positional",
    freq_shift=1,
    flip_sin_to_cos=False,
    down_block_types=("DownBlock2D",) * 4 + ("AttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "AttnUpBlock2D") + ("UpBlock2D",) * 4,
    block_out_channels=(128, 128, 256, 256, 512, 512),
    layers_per_block=2,
    mid_block_scale_factor=1,
    downsample_padding=0,
    act_fn="silu",
    attention_head_dim=None,
    norm_num_groups=32,
    norm_eps=1e-6,
)
_CELEBAHQ_SCHEDULER: dict[str, Any] = dict(
    num_train_timesteps=1000,
    beta_start=0.0001,
    beta_end=0.02,
    beta_schedule="linear",
    trained_betas=None,
    variance_type="fixed_small",
    clip_sample=True,
)
_SD21_UNET: dict[str, Any] = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    center_input_sample=False,
    flip_sin_to_cos=True,
    freq_shift=0,
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    only_cross_attention=False,
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    downsample_padding=1,
    mid_block_scale_factor=1,
    act_fn="silu",
    norm_num_groups=32,
    norm_eps=1e-5,
    cross_attention_dim=1024,
    attention_head_dim=(5, 10, 20, 20),
    dual_cross_attention=False,
    use_linear_projection=True,
    num_class_embeds=None,
    upcast_attention=False,
)
_SD21_VAE: dict[str, Any] = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    act_fn="silu",
    latent_channels=4,
    norm_num_groups=32,
    sample_size=768,
    scaling_factor=0.18215,
)
_SD21_TEXT: dict[str, Any] = dict(
    vocab_size=49408,
    hidden_size=1024,
    intermediate_size=4096,
    num_hidden_layers=23,
    num_attention_heads=16,
    max_position_embeddings=77,
    hidden_act="gelu",
    layer_norm_eps=1e-5,
    projection_dim=512,
    bos_token_id=0,
    eos_token_id=2,
    pad_token_id=1,
)
_SD21_SCHEDULER: dict[str, Any] = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    trained_betas=None,
    skip_prk_steps=True,
    set_alpha_to_one=False,
    prediction_type="epsilon",
    steps_offset=1,
)

#: hub id -> {component: config} of the pipelines :func:`write_replica` can write
REPLICAS: dict[str, dict[str, dict[str, Any]]] = {
    "google/ddpm-ema-celebahq-256": {"unet": _CELEBAHQ_UNET, "scheduler": _CELEBAHQ_SCHEDULER},
    "stabilityai/stable-diffusion-2-1-base": {
        "unet": _SD21_UNET,
        "vae": _SD21_VAE,
        "text_encoder": _SD21_TEXT,
        "scheduler": _SD21_SCHEDULER,
        "tokenizer": dict(vocab_size=49408, model_max_length=77),
    },
}


def replica_config(hub_id: str, overrides: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """The components' configs of ``hub_id`` (a key of :data:`REPLICAS`), with ``overrides``
    ({component: {field: value}}, e.g. a narrower U-Net for a test) applied; ValueError naming the argument."""
    if hub_id not in REPLICAS:
        raise ValueError(f"hub_id must be one of {sorted(REPLICAS)}, got {hub_id!r}")
    cfg = copy.deepcopy(REPLICAS[hub_id])
    for comp, fields in (overrides or {}).items():
        if comp not in cfg:
            raise ValueError(f"overrides: {hub_id} has no component {comp!r}; components: {sorted(cfg)}")
        cfg[comp].update(fields)
    return cfg


def clip_tokenizer(vocab_size: int = 49408, model_max_length: int = 77) -> Any:
    """A byte-level BPE ``CLIPTokenizer`` with a generated vocabulary of exactly ``vocab_size`` tokens:
    ``<|startoftext|>``, ``<|endoftext|>``, the 256 byte symbols with and without ``</w>``, then merges of
    lowercase letters and digits (pairs, then longer) until the size is reached. Pad token ``!`` as SD-2.x."""
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    symbols = list(bytes_to_unicode().values())
    vocab: dict[str, int] = {"<|startoftext|>": 0, "<|endoftext|>": 1}  # ids as in the real file: specials first
    for s in symbols:
        vocab[s] = len(vocab)
    for s in symbols:
        vocab[s + "</w>"] = len(vocab)
    if vocab_size < len(vocab):
        raise ValueError(f"vocab_size must be >= {len(vocab)} (the byte symbols and specials), got {vocab_size}")
    alphabet = list("abcdefghijklmnopqrstuvwxyz0123456789")
    merges: list[tuple[str, str]] = []
    words = list(alphabet)
    while len(vocab) < vocab_size:
        longer = []
        for w in words:
            for c in alphabet:
                for left, right in ((w, c), (w, c + "</w>")):
                    token = left + right
                    if len(vocab) >= vocab_size:
                        break
                    if token not in vocab:
                        vocab[token] = len(vocab)
                        merges.append((left, right))
                if not w.endswith("</w>"):
                    longer.append(w + c)
        words = longer
    # CLIP's ids: <|startoftext|> 49406, <|endoftext|> 49407 in the real file; here 0 and 1 (the text
    # encoder's bos/eos ids are read from the tokenizer at encoding time, never assumed)
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length, pad_token="!")


def write_replica(
    hub_id: str,
    folder: str | os.PathLike,
    *,
    seed: int = 0,
    overrides: dict[str, dict[str, Any]] | None = None,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Write a random-weight replica of ``hub_id`` into ``folder`` (created; must be new or empty) as a
    diffusers pipeline folder (``model_index.json`` + components, safetensors); returns the folder.

    ``seed`` seeds the weights; ``overrides`` changes configs (:func:`replica_config`; tests use it for
    small sizes); ``dtype`` the stored weights. Peak memory is about twice the weights (SD-2.1-base in
    float32: 1.29 B parameters, ~5.2 GB on disk)."""
    from pullback_utils._validate import check_int

    seed = check_int(seed, "seed", 0)
    cfg = replica_config(hub_id, overrides)
    out = Path(folder).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"folder must be new or an empty folder, got {out} (it exists and is not empty)")
    import diffusers

    def cast(module: torch.nn.Module) -> torch.nn.Module:  # no-op cast avoided: diffusers warns about .to(dtype)
        return (module if dtype == torch.float32 else module.to(dtype)).eval()

    torch.manual_seed(seed)
    unet_cls = diffusers.UNet2DConditionModel if "vae" in cfg else diffusers.UNet2DModel
    parts: dict[str, Any] = {"unet": cast(unet_cls(**cfg["unet"]))}
    if "vae" in cfg:
        from transformers import CLIPTextConfig, CLIPTextModel

        parts["vae"] = cast(diffusers.AutoencoderKL(**cfg["vae"]))
        parts["text_encoder"] = cast(CLIPTextModel(CLIPTextConfig(**cfg["text_encoder"])))
        parts["tokenizer"] = clip_tokenizer(**cfg["tokenizer"])
        parts["scheduler"] = diffusers.PNDMScheduler(**cfg["scheduler"])
        pipe = diffusers.StableDiffusionPipeline(
            **parts, safety_checker=None, feature_extractor=None, requires_safety_checker=False
        )
    else:
        parts["scheduler"] = diffusers.DDPMScheduler(**cfg["scheduler"])
        pipe = diffusers.DDPMPipeline(**parts)
    out.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(out, safe_serialization=True)
    (out / "REPLICA.txt").write_text(
        f"random-weight replica of {hub_id} (seed {seed}), written by "
        f"pullback_utils.zoo.replicas; configuration overrides: {overrides or 'none'}\n"
    )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m pullback_utils.zoo.replicas",
        description="write a random-weight replica of a paper hub pipeline (offline)",
    )
    p.add_argument("hub_id", choices=sorted(REPLICAS))
    p.add_argument("folder", type=Path, help="new or empty folder")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    out = write_replica(args.hub_id, args.folder, seed=args.seed)
    print(f"wrote {out}; use it with --model-map {args.hub_id}={out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
