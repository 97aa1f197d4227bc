"""Helpers for the plumbing tests: tiny random pipelines saved to disk, a closed-form eps model."""

from __future__ import annotations

import json
import string
from pathlib import Path

import torch
from unet_factories import make_tiny_unet2d, make_tiny_unet2d_condition


def tiny_scheduler(kind: str = "ddim", **kw):
    from diffusers import DDIMScheduler, DDPMScheduler

    cls = DDIMScheduler if kind == "ddim" else DDPMScheduler
    return cls(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02, **kw)


def save_pixel_pipeline(folder: Path, kind: str = "ddpm", seed: int = 0) -> Path:
    """A random-weight DDPMPipeline / DDIMPipeline (16x16 RGB U-Net with attention) in ``folder``."""
    from diffusers import DDIMPipeline, DDPMPipeline

    unet = make_tiny_unet2d(seed=seed)
    pipe_cls = DDIMPipeline if kind == "ddim" else DDPMPipeline
    pipe_cls(unet=unet, scheduler=tiny_scheduler(kind)).save_pretrained(folder)
    return Path(folder)


def tiny_clip_tokenizer(folder: Path, max_length: int = 12):
    """A CLIPTokenizer over a 58-token BPE vocabulary (letters, end-of-word letters, 'dog')."""
    from transformers import CLIPTokenizer

    letters = string.ascii_lowercase
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in letters:
        vocab[c] = len(vocab)
    for c in letters:
        vocab[c + "</w>"] = len(vocab)
    vocab["do"] = len(vocab)
    vocab["dog</w>"] = len(vocab)
    merges = [("d", "o"), ("do", "g</w>")]
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=max_length)


def save_sd_pipeline(folder: Path, seed: int = 0) -> Path:
    """A tiny random StableDiffusionPipeline: 16x16 RGB images <-> 4x8x8 latents, CLIP width 24."""
    from diffusers import AutoencoderKL, StableDiffusionPipeline
    from transformers import CLIPTextConfig, CLIPTextModel

    tok = tiny_clip_tokenizer(folder)
    torch.manual_seed(seed)
    te = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tok.get_vocab()),
            hidden_size=24,
            intermediate_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=tok.model_max_length,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
    ).eval()
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        sample_size=16,
        layers_per_block=1,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 16),
        norm_num_groups=4,
    )
    unet = make_tiny_unet2d_condition(seed=seed, cross_attention_dim=24)
    sched = tiny_scheduler("ddim", clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=te,
        tokenizer=tok,
        unet=unet,
        scheduler=sched,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder)
    return Path(folder)


def save_zoo_folder(folder: Path, kind: str = "pixel", name: str = "fake-zoo", seed: int = 0) -> Path:
    """A folder in the bundled-zoo format (zoo.json, unet/, scheduler/, model_index.json)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "pixel":
        unet, cls = make_tiny_unet2d(seed=seed), "DDPMPipeline"
    else:
        unet, cls = make_tiny_unet2d_condition(seed=seed, cross_attention_dim=24), "ZooTextPipeline"
    unet.save_pretrained(folder / "unet")
    tiny_scheduler("ddpm").save_pretrained(folder / "scheduler")
    (folder / "model_index.json").write_text(
        json.dumps(
            {
                "_class_name": cls,
                "unet": ["diffusers", type(unet).__name__],
                "scheduler": ["diffusers", "DDPMScheduler"],
            }
        )
    )
    info = {"name": name, "kind": kind, "dataset": "fake"}
    if kind == "text":
        info["text_encoder"] = "minilm"
    (folder / "zoo.json").write_text(json.dumps(info))
    return folder


class FakeTextEncoder:
    """Deterministic stand-in for the zoo's MiniLM: (B, L, hidden_size) from character codes."""

    def __init__(self, hidden_size: int = 24, max_length: int = 6) -> None:
        self.hidden_size = hidden_size
        self.max_length = max_length
        g = torch.Generator().manual_seed(0)
        self.table = torch.randn(128, hidden_size, generator=g)
        self.calls = 0

    def encode(self, prompts: list[str]) -> torch.Tensor:
        self.calls += 1
        out = torch.zeros(len(prompts), self.max_length, self.hidden_size)
        for i, p in enumerate(prompts):
            for j, ch in enumerate(p[: self.max_length]):
                out[i, j] = self.table[ord(ch) % 128]
        return out


class GaussianEps(torch.nn.Module):
    """The exact eps-predictor for data N(mu, s^2 I): eps = sqrt(1 - a) (x - sqrt(a) mu) / (a s^2 + 1 - a).

    Called like a diffusers U-Net, ``(x, timestep) -> tensor``, with ``a = alphas_cumprod[timestep]``.
    """

    def __init__(self, mu: torch.Tensor, s: float, alphas_cumprod: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mu", mu.clone())
        self.s = float(s)
        self.register_buffer("ac", torch.as_tensor(alphas_cumprod, dtype=mu.dtype).clone())

    def forward(self, x: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        a = self.ac[timestep.long()].view(-1, *([1] * (x.dim() - 1)))
        return (1 - a).sqrt() * (x - a.sqrt() * self.mu) / (a * self.s**2 + 1 - a)
