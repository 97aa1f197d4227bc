"""A uniform interface to diffusion models (:class:`DiffusionModel`); loading is in :mod:`pullback_utils.loading`.

:func:`pullback_utils.load_model` takes a bundled model name (the offline zoo), a local folder (a
diffusers ``save_pretrained`` pipeline folder, or a zoo folder holding ``zoo.json``) or a Hugging Face
hub id, and returns a :class:`DiffusionModel`: unconditional pixel models (``UNet2DModel``), latent
text-to-image models (Stable Diffusion: ``UNet2DConditionModel`` + ``AutoencoderKL`` + CLIP text
encoder) and the zoo's text-conditional pixel model (``UNet2DConditionModel`` + MiniLM).

Times follow :mod:`pullback_utils.schedule`: an int level ``n`` in ``0..T`` (0 = clean data; the
U-Net sees timestep ``n - 1``) or a float fraction of ``T`` in ``[0, 1]``.
"""

from __future__ import annotations

import inspect
import math
import numbers
import os
from typing import Any, Sequence

import torch

from pullback_utils.ddim import Prompt
from pullback_utils.images import check_image_range
from pullback_utils.schedule import Time, resolve_time, unet_timestep

__all__ = ["DiffusionModel"]



def _frozen(module: torch.nn.Module | None) -> torch.nn.Module | None:
    if module is not None and isinstance(module, torch.nn.Module):
        module.eval().requires_grad_(False)
    return module


def _as_tuple2(size: Any) -> tuple[int, int]:
    if isinstance(size, numbers.Integral):
        return int(size), int(size)
    h, w = size
    return int(h), int(w)


class DiffusionModel:
    """A diffusion model with a uniform interface (pixel or latent, unconditional or text).

    Attributes:
        unet: the noise-prediction U-Net (``UNet2DModel`` or ``UNet2DConditionModel``), frozen, eval.
        scheduler: its diffusers scheduler (only ``alphas_cumprod``, ``num_train_timesteps`` and
            ``prediction_type`` are used).
        vae: ``AutoencoderKL`` of latent models, else ``None``.
        text_encoder, tokenizer: CLIP text encoder and tokenizer (Stable Diffusion), or an encoder
            object with ``.encode(list[str]) -> (B, L, D)`` (the zoo's MiniLM) and no tokenizer.
        sample_shape: (C, H, W) of x_t (latents for latent models).
        image_shape: (C, H, W) of images in model range [-1, 1].
        name: where the model came from.
    """

    def __init__(
        self,
        unet: torch.nn.Module,
        scheduler: Any,
        *,
        vae: torch.nn.Module | None = None,
        text_encoder: Any = None,
        tokenizer: Any = None,
        name: str = "",
        sample_shape: Sequence[int] | None = None,
        conditional: bool | None = None,
        uncond_embedding: torch.Tensor | None = None,
        checks_image_range: bool = True,
    ) -> None:
        self.unet = _frozen(unet)
        #: whether images (clean pixel data) are checked against the model range [-1, 1]; False for
        #: synthetic models whose data are not images (e.g. closed-form Gaussian test models)
        self.checks_image_range = bool(checks_image_range)
        self.scheduler = scheduler
        self.vae = _frozen(vae)
        self.text_encoder = _frozen(text_encoder) if isinstance(text_encoder, torch.nn.Module) else text_encoder
        self.tokenizer = tokenizer
        self.name = name
        if conditional is None:
            params = inspect.signature(unet.forward).parameters
            conditional = "encoder_hidden_states" in params
        self.is_conditional = bool(conditional)
        if sample_shape is None:
            cfg = unet.config
            h, w = _as_tuple2(cfg.sample_size)
            sample_shape = (int(cfg.in_channels), h, w)
        self.sample_shape: tuple[int, int, int] = tuple(int(s) for s in sample_shape)  # type: ignore[assignment]
        self._uncond = uncond_embedding
        self._prompt_memo: dict[tuple[str, ...], torch.Tensor] = {}
        self._fingerprint: tuple[tuple, str] | None = None  # (state token, sha256)
        ac = getattr(scheduler, "alphas_cumprod", None)
        if ac is None:
            betas = torch.as_tensor(scheduler.betas, dtype=torch.float64)
            ac = torch.cumprod(1.0 - betas, 0)
        self.alphas_cumprod = torch.as_tensor(ac).detach().to(torch.float64).cpu()
        cfg = getattr(scheduler, "config", {})
        self.num_train_timesteps = int(_cfg_get(cfg, "num_train_timesteps", len(self.alphas_cumprod)))
        if len(self.alphas_cumprod) < self.num_train_timesteps:
            raise ValueError(
                f"scheduler has {len(self.alphas_cumprod)} alphas_cumprod for "
                f"num_train_timesteps={self.num_train_timesteps}"
            )
        self.prediction_type = str(_cfg_get(cfg, "prediction_type", "epsilon"))
        if self.prediction_type not in ("epsilon", "v_prediction", "sample"):
            raise ValueError(f"unsupported scheduler prediction_type {self.prediction_type!r}")

    # ---------------------------------------------------------------- properties
    def __repr__(self) -> str:
        kind = ("latent" if self.is_latent else "pixel") + (", text" if self.is_conditional else "")
        return f"DiffusionModel({self.name!r}, {kind}, sample_shape={self.sample_shape}, T={self.num_train_timesteps})"

    @property
    def device(self) -> torch.device:
        for p in list(self.unet.parameters()) + list(self.unet.buffers()):
            return p.device
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        for p in list(self.unet.parameters()) + list(self.unet.buffers()):
            if p.is_floating_point():
                return p.dtype
        return torch.float32

    @property
    def is_latent(self) -> bool:
        """Whether x_t lives in a VAE latent space."""
        return self.vae is not None

    @property
    def vae_scale_factor(self) -> int:
        """Spatial down-sampling factor of the VAE (1 for pixel models)."""
        if self.vae is None:
            return 1
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of images in model range [-1, 1]."""
        if self.vae is None:
            return self.sample_shape
        f = self.vae_scale_factor
        c = int(self.vae.config.in_channels)
        return (c, self.sample_shape[1] * f, self.sample_shape[2] * f)

    @property
    def has_unconditional_branch(self) -> bool:
        """Whether an unconditional (empty-prompt) embedding is available for CFG."""
        return self.is_conditional and (self._uncond is not None or self.text_encoder is not None)

    @property
    def fingerprint(self) -> str:
        """sha256 of the U-Net's class, config and weights (the basis cache's model key).

        Re-hashed only when a parameter or buffer was replaced, moved, cast or changed in place
        since the last call (:func:`~pullback_utils.cache.module_state_token`; edits through
        ``.data`` are not seen).
        """
        from pullback_utils import cache

        token = cache.module_state_token(self.unet)
        if self._fingerprint is None or self._fingerprint[0] != token:
            self._fingerprint = (token, cache.module_fingerprint(self.unet))
        return self._fingerprint[1]

    # ---------------------------------------------------------------- times
    def level(self, t: Time, *, name: str = "t") -> int:
        """Level ``n`` in ``0..T`` of time ``t`` (see :mod:`pullback_utils.schedule`)."""
        return resolve_time(t, self.num_train_timesteps, name=name)

    def unet_timestep(self, t: Time, *, name: str = "t") -> int:
        """The U-Net's timestep input (diffusers training index, ``level - 1``) at time ``t`` > 0."""
        return unet_timestep(t, self.num_train_timesteps, name=name)

    def alpha_bar(self, t: Time) -> float:
        """alpha_bar at time ``t`` (1.0 for clean data)."""
        n = self.level(t)
        return 1.0 if n == 0 else float(self.alphas_cumprod[n - 1])

    # ---------------------------------------------------------------- prompts
    def encode_prompt(self, prompt: str | Sequence[str] | None) -> torch.Tensor | None:
        """Encoder hidden states (B, L, D) of prompt(s); ``None`` -> the empty prompt.

        Unconditional models return ``None`` for ``None`` and raise ``ValueError`` for a prompt.
        """
        if not self.is_conditional:
            if prompt is None:
                return None
            raise ValueError(
                f"prompt={prompt!r} was given, but model {self.name!r} is unconditional "
                "(it takes no text); pass prompt=None"
            )
        if prompt is None:
            return self.unconditional_embedding()
        prompts = _prompt_list(prompt)
        if self.text_encoder is None:
            raise ValueError(
                f"model {self.name!r} has no text encoder, so it cannot encode prompt={prompt!r}; "
                "pass encoder hidden states (a tensor) instead"
            )
        key = tuple(prompts)
        if key not in self._prompt_memo:  # text encoders are deterministic (eval mode)
            if len(self._prompt_memo) >= 64:
                self._prompt_memo.pop(next(iter(self._prompt_memo)))
            self._prompt_memo[key] = self._encode(prompts)
        return self._prompt_memo[key].to(self.device, self.dtype)

    @torch.no_grad()
    def _encode(self, prompts: list[str]) -> torch.Tensor:
        te = self.text_encoder
        if self.tokenizer is None:  # an encoder object such as the zoo's MiniLM
            out = te.encode(prompts)
        else:
            tok = self.tokenizer
            ids = tok(
                prompts,
                padding="max_length",
                max_length=tok.model_max_length,
                truncation=True,
                return_tensors="pt",
            )
            kwargs = {}
            if getattr(te.config, "use_attention_mask", False):
                kwargs["attention_mask"] = ids.attention_mask.to(te.device)
            out = te(ids.input_ids.to(te.device), **kwargs)[0]
        return out.to(self.device, self.dtype)

    def unconditional_embedding(self) -> torch.Tensor:
        """(1, L, D) encoder hidden states of the empty prompt (cached)."""
        if not self.has_unconditional_branch:
            raise ValueError(
                f"model {self.name!r} has no unconditional branch (no text encoder and no "
                "unconditional embedding); pass conditioning explicitly and guidance_scale=1"
            )
        if self._uncond is None:
            self._uncond = self._encode([""])
        return self._uncond.to(self.device, self.dtype)

    def conditioning(
        self, prompt: Prompt, *, batch: int = 1, guidance_scale: float = 1.0
    ) -> torch.Tensor | None:
        """Validate ``prompt``/``guidance_scale`` and return (batch | 1, L, D) hidden states or None.

        ``prompt`` may be a string, a list of strings (one per sample or one in all), a tensor of
        encoder hidden states ((L, D) or (1 | batch, L, D)), or ``None``.
        """
        if (
            isinstance(guidance_scale, bool)
            or not isinstance(guidance_scale, numbers.Real)
            or not math.isfinite(float(guidance_scale))
        ):
            raise ValueError(f"guidance_scale must be a finite number, got {guidance_scale!r}")
        if float(guidance_scale) != 1.0 and not self.has_unconditional_branch:
            why = "is unconditional" if not self.is_conditional else "has no unconditional branch (no text encoder)"
            raise ValueError(
                f"guidance_scale={guidance_scale} needs classifier-free guidance, but model "
                f"{self.name!r} {why}; use guidance_scale=1.0"
            )
        if not self.is_conditional:
            if prompt is not None:
                raise ValueError(
                    f"prompt={_short(prompt)} was given, but model {self.name!r} is unconditional "
                    "(it takes no text); pass prompt=None"
                )
            return None
        if isinstance(prompt, torch.Tensor):
            c = prompt if prompt.dim() == 3 else prompt.unsqueeze(0) if prompt.dim() == 2 else None
            dim = self._cross_attention_dim()
            if c is None or c.shape[0] not in (1, batch) or (dim is not None and c.shape[-1] != dim):
                raise ValueError(
                    f"prompt as encoder hidden states must have shape (L, {dim}) or (1 | {batch}, L, "
                    f"{dim}), got {tuple(prompt.shape)}"
                )
            return c.to(self.device, self.dtype)
        c = self.encode_prompt(prompt)
        if c is not None and c.shape[0] not in (1, batch):
            raise ValueError(f"got {c.shape[0]} prompts for a batch of {batch}; give 1 or {batch}")
        return c

    def _cross_attention_dim(self) -> int | None:
        dim = _cfg_get(getattr(self.unet, "config", {}), "cross_attention_dim", None)
        return int(dim) if isinstance(dim, numbers.Integral) else None

    # ---------------------------------------------------------------- images
    def _check(self, x: torch.Tensor, shape: tuple[int, ...], name: str, what: str) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 4 or tuple(x.shape[1:]) != tuple(shape):
            hint = ""
            if x.dim() == 4 and x.shape[1] != shape[0]:
                hint = f" (wrong channel count: {x.shape[1]} instead of {shape[0]})"
            raise ValueError(
                f"{name} must be {what} of shape (B, {', '.join(map(str, shape))}), "
                f"got {tuple(x.shape)}{hint}"
            )

    @torch.no_grad()
    def to_latent(self, images: torch.Tensor) -> torch.Tensor:
        """(B, *image_shape) images in [-1, 1] -> (B, *sample_shape) x_0 (identity for pixel models).

        Images outside [-1, 1] beyond :data:`~pullback_utils.images.IMAGE_RANGE_TOL` are refused.

        Latent models use the VAE posterior mean times ``vae.config.scaling_factor``.
        """
        self._check(images, self.image_shape, "images", "images in [-1, 1]")
        if self.checks_image_range:
            check_image_range(images, "images")
        if self.vae is None:
            return images
        images = images.to(self.device, self.vae.dtype)
        z = self.vae.encode(images).latent_dist.mean
        shift = _cfg_get(self.vae.config, "shift_factor", None) or 0.0
        return ((z - shift) * self.vae.config.scaling_factor).to(self.dtype)

    @torch.no_grad()
    def to_image(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, *sample_shape) x_0 -> (B, *image_shape) images in about [-1, 1] (not clamped)."""
        self._check(latents, self.sample_shape, "latents", "x_0")
        if self.vae is None:
            return latents
        shift = _cfg_get(self.vae.config, "shift_factor", None) or 0.0
        z = latents.to(self.device, self.vae.dtype) / self.vae.config.scaling_factor + shift
        return self.vae.decode(z).sample

    def noise(self, n: int = 1, seed: int = 0) -> torch.Tensor:
        """(n, *sample_shape) standard normal x_T, drawn on the CPU from ``seed`` (device-independent)."""
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
            raise ValueError(f"n must be an int >= 1, got {n!r}")
        gen = torch.Generator().manual_seed(int(seed))
        return torch.randn((int(n), *self.sample_shape), generator=gen).to(self.device, self.dtype)

    # ---------------------------------------------------------------- the network
    def eps(
        self,
        x_t: torch.Tensor,
        t: Time,
        cond: Prompt = None,
        guidance_scale: float = 1.0,
    ) -> torch.Tensor:
        """(B, *sample_shape) noise prediction at time ``t`` (level >= 1).

        ``cond``: prompt(s) or encoder hidden states (see :meth:`conditioning`); ``None`` is the
        unconditional branch. ``guidance_scale`` != 1 applies classifier-free guidance
        ``eps_u + w (eps_c - eps_u)`` (one batched U-Net call). v- and x0-predicting models are
        converted to eps.
        """
        self._check(x_t, self.sample_shape, "x_t", "x_t")
        timestep = self.unet_timestep(t)
        c = self.conditioning(cond, batch=x_t.shape[0], guidance_scale=guidance_scale)
        b = x_t.shape[0]
        if c is not None and c.shape[0] != b:
            c = c.expand(b, *c.shape[1:])
        w = float(guidance_scale)
        if w != 1.0:
            u = self.unconditional_embedding()
            u = u.expand(b, *u.shape[1:])
            out = self._unet(torch.cat([x_t, x_t]), timestep, torch.cat([u, c]))
            out = self._to_eps(torch.cat([x_t, x_t]), timestep, out)
            e_u, e_c = out.chunk(2)
            return e_u + w * (e_c - e_u)
        return self._to_eps(x_t, timestep, self._unet(x_t, timestep, c))

    def _unet(self, x: torch.Tensor, timestep: int, c: torch.Tensor | None) -> torch.Tensor:
        ts = torch.full((x.shape[0],), timestep, dtype=torch.long, device=x.device)
        out = self.unet(x, ts, encoder_hidden_states=c) if self.is_conditional else self.unet(x, ts)
        if hasattr(out, "sample"):
            return out.sample
        if isinstance(out, (tuple, list)):
            return out[0]
        return out

    def _to_eps(self, x: torch.Tensor, timestep: int, out: torch.Tensor) -> torch.Tensor:
        if self.prediction_type == "epsilon":
            return out
        a = float(self.alphas_cumprod[timestep])
        if self.prediction_type == "v_prediction":
            return a**0.5 * out + (1 - a) ** 0.5 * x
        return (x - a**0.5 * out) / (1 - a) ** 0.5  # "sample"

    # ---------------------------------------------------------------- the engine
    def local_basis(
        self,
        x_t: torch.Tensor,
        t: Time,
        k: int,
        prompt: Prompt = None,
        layer: str = "mid",
        cache_dir: str | os.PathLike | None = None,
        **solver: Any,
    ):
        """Top-``k`` local latent basis of the feature map at (x_t, t), via the engine.

        Args:
            x_t: (1, *sample_shape) or (*sample_shape) state at time ``t``.
            t: time (level >= 1 or fraction > 0); the U-Net sees ``unet_timestep(t)``.
            k: number of singular vectors.
            prompt: prompt or encoder hidden states (conditional models; None = empty prompt).
            layer: feature layer (``"mid"``, ``"down.i"``, ``"up.i"``).
            cache_dir: opt-in on-disk cache (:mod:`pullback_utils.cache`); ``None`` = no cache.
            **solver: keyword arguments of :func:`pullback_utils.jacobian_svd`.

        Returns:
            ``LocalBasis`` with ``v`` (k, 1, *sample_shape), ``u`` (k, *h.shape), ``s`` (k,), ``info``.
        """
        if isinstance(x_t, torch.Tensor) and x_t.dim() == 3:
            x_t = x_t.unsqueeze(0)
        self._check(x_t, self.sample_shape, "x_t", "x_t")
        if x_t.shape[0] != 1:
            raise ValueError(f"x_t must hold one sample (batch 1), got batch {x_t.shape[0]}")
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
            raise ValueError(f"k must be an int >= 1, got {k!r}")
        timestep = self.unet_timestep(t)
        ehs = self.conditioning(prompt, batch=1)
        x_t = x_t.to(self.device, self.dtype)
        from pullback_utils.basis import local_basis as engine_local_basis

        def compute():
            return engine_local_basis(
                self.unet,
                x_t,
                timestep + 1,  # the level: the engine reads times on the package's grid
                int(k),
                layer=layer,
                encoder_hidden_states=ehs,
                num_train_timesteps=self.num_train_timesteps,
                **solver,
            )

        if cache_dir is None:
            return compute()
        from pullback_utils.cache import BasisCache, basis_key_fields

        fields = basis_key_fields(
            self.fingerprint, x_t, timestep, int(k), layer=layer, cond=ehs, solver=solver
        )
        meta = {"model": self.name, "prompt": prompt if isinstance(prompt, (str, list)) else None}
        return BasisCache(cache_dir).get_or_compute(fields, compute, meta=meta)


# -------------------------------------------------------------------- helpers
def _cfg_get(cfg: Any, key: str, default: Any) -> Any:
    if isinstance(cfg, dict):
        return cfg.get(key, default)
    return getattr(cfg, key, default)


def _prompt_list(prompt: Any) -> list[str]:
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, (list, tuple)) and prompt and all(isinstance(p, str) for p in prompt):
        return list(prompt)
    raise TypeError(
        f"prompt must be a string, a non-empty list of strings or encoder hidden states, got {_short(prompt)}"
    )


def _short(obj: Any) -> str:
    if isinstance(obj, torch.Tensor):
        return f"a tensor of shape {tuple(obj.shape)}"
    r = repr(obj)
    return r if len(r) < 80 else r[:77] + "..."


