"""A uniform interface to diffusion models (:class:`DiffusionModel`); loading is in :mod:`pullback_utils.zoo.loading`.

:func:`pullback_utils.load_model` takes a bundled model name (the offline zoo), a local folder (a
diffusers ``save_pretrained`` pipeline folder, or a zoo folder holding ``zoo.json``) or a Hugging Face
hub id, and returns a :class:`DiffusionModel` that hides the family: unconditional pixel U-Nets,
Stable Diffusion and SDXL U-Nets, class-conditional DiT, and the flow-matching transformers of SD3
and FLUX (families: :mod:`pullback_utils.diffusion.architectures`; prompts: :mod:`pullback_utils.diffusion.prompts`).

Times follow :mod:`pullback_utils.diffusion.schedule`: an int level ``n`` in ``0..T`` (0 = clean data) or a float
fraction of ``T`` in ``[0, 1]``. A state at time ``t`` is ``x_t = alpha_t x_0 + sigma_t eps``
(:meth:`DiffusionModel.coefficients`): ``(sqrt(alpha_bar), sqrt(1 - alpha_bar))`` for variance-preserving
models (VP U-Nets see timestep ``n - 1``), ``(1 - sigma_n, sigma_n)`` on the scheduler's sigma grid for
flow-matching models (:mod:`pullback_utils.diffusion.flow`), whose velocity output ``v`` the model exposes as the
noise ``eps = x + (1 - sigma) v`` (:meth:`DiffusionModel.eps`) and the clean estimate ``x - sigma v``
(:meth:`DiffusionModel.predict`), so DDIM, inversion and x-space guidance run unchanged on both.
"""

from __future__ import annotations

import inspect
import math
import numbers
import os
from typing import Any, Sequence

import torch

from pullback_utils._validate import check_batch, check_int
from pullback_utils.diffusion import denoiser
from pullback_utils.diffusion import prompts as conds
from pullback_utils.diffusion import vae as vae_io
from pullback_utils.diffusion.architectures import Family, family_of
from pullback_utils.diffusion.ddim import Prompt
from pullback_utils.diffusion.flow import FlowGrid, is_flow_scheduler, velocity_to_eps, velocity_to_x0
from pullback_utils.diffusion.images import SAMPLE_RANGE_TOL, check_image_range
from pullback_utils.diffusion.prompts import Conditioning
from pullback_utils.diffusion.schedule import Time, resolve_time, unet_timestep
from pullback_utils.diffusion.vae import config_get
from pullback_utils.features.basis import freeze
from pullback_utils.models import model_basis as network

__all__ = ["DiffusionModel"]

#: latent size of FLUX pipelines when the transformer's config has none (FluxPipeline.default_sample_size)
_FLUX_DEFAULT_SAMPLE_SIZE = 128


def _as_tuple2(size: Any) -> tuple[int, int]:
    if isinstance(size, numbers.Integral):
        return int(size), int(size)
    h, w = size
    return int(h), int(w)


def _family(net: Any) -> Family | None:
    try:
        return family_of(net)
    except TypeError:  # a plain torch network called like a U-Net (tests, closed-form models)
        return None


class DiffusionModel:
    """A diffusion model with a uniform interface: pixel or latent, unconditional, class or text, VP or flow.

    Attributes:
        unet: the denoiser, whatever its class (the name is historical): a diffusers U-Net or
            transformer (:data:`~pullback_utils.diffusion.architectures.SUPPORTED_DENOISERS`) or any network called
            as ``net(x, timestep[, encoder_hidden_states=])``; frozen, eval. Also ``denoiser``.
        scheduler: its diffusers scheduler: VP (``alphas_cumprod``/``betas``, ``prediction_type``) or
            ``FlowMatchEulerDiscreteScheduler`` (its sigma grid, :mod:`pullback_utils.diffusion.flow`).
        family: the denoiser's :class:`~pullback_utils.diffusion.architectures.Family` (None for plain networks).
        pipeline: the diffusers pipeline whose encoders turn prompts into conditioning (SDXL, SD3,
            FLUX, DiT labels), else ``None``.
        vae: ``AutoencoderKL`` of latent models, else ``None``.
        text_encoder, tokenizer: CLIP text encoder and tokenizer (Stable Diffusion), or an encoder
            object with ``.encode(list[str]) -> (B, L, D)`` (the zoo's MiniLM) and no tokenizer.
        sample_shape: (C, H, W) of x_t (latents for latent models; FLUX's unpacked latents).
        image_shape: (C, H, W) of images in model range [-1, 1].
        flow_grid: the :class:`~pullback_utils.diffusion.flow.FlowGrid` of flow-matching models, else ``None``.
        embedded_guidance: FLUX's distilled guidance value passed as ``guidance=`` (3.5, the pipeline's
            default); classifier-free guidance is ``guidance_scale`` as for every model.
        max_sequence_length: text tokens of SD3/FLUX prompts (None: the pipeline's default).
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
        pipeline: Any = None,
    ) -> None:
        self.unet = freeze(unet) if isinstance(unet, torch.nn.Module) else unet
        #: whether images (clean pixel data) are checked against the model range [-1, 1]; False for
        #: synthetic models whose data are not images (e.g. closed-form Gaussian test models)
        self.checks_image_range = bool(checks_image_range)
        self.scheduler = scheduler
        self.vae = freeze(vae) if isinstance(vae, torch.nn.Module) else vae
        self.text_encoder = freeze(text_encoder) if isinstance(text_encoder, torch.nn.Module) else text_encoder
        self.tokenizer = tokenizer
        self.pipeline = pipeline
        self.name = name
        self.family = _family(unet)
        self.embedded_guidance: float | None = (
            3.5 if config_get(getattr(unet, "config", {}), "guidance_embeds", False) else None
        )
        self.max_sequence_length: int | None = None
        if conditional is None:
            conditional = "encoder_hidden_states" in inspect.signature(unet.forward).parameters or (
                self.family is not None and self.family.name == "dit"
            )
        self.is_conditional = bool(conditional)
        if sample_shape is None:
            sample_shape = self._default_sample_shape()
        self.sample_shape: tuple[int, int, int] = tuple(int(s) for s in sample_shape)  # type: ignore[assignment]
        self._uncond = uncond_embedding
        self._prompt_memo: dict[tuple, Any] = {}
        self._fingerprint: tuple[tuple, str] | None = None  # ((state token, value probe), sha256)
        cfg = getattr(scheduler, "config", {})
        self.flow_grid: FlowGrid | None = None
        if is_flow_scheduler(scheduler):
            patch = 2 if self._packed else max(1, int(config_get(getattr(unet, "config", {}), "patch_size", 1) or 1))
            seq = (self.sample_shape[1] // patch) * (self.sample_shape[2] // patch)  # image tokens
            self.flow_grid = FlowGrid.from_scheduler(scheduler, image_seq_len=seq)
            self.num_train_timesteps = self.flow_grid.num_train_timesteps
            sig = self.flow_grid.sigmas()[1:]
            self.alphas_cumprod = (1 - sig) ** 2 / ((1 - sig) ** 2 + sig**2)  # the VP state of equal SNR
            self.prediction_type = "flow"
            return
        if self.family is not None and self.family.flow:
            raise ValueError(
                f"a {type(unet).__name__} is a flow-matching model; its scheduler must be a "
                f"FlowMatchEulerDiscreteScheduler, got {type(scheduler).__name__}"
            )
        ac = getattr(scheduler, "alphas_cumprod", None)
        if ac is None:
            betas = torch.as_tensor(scheduler.betas, dtype=torch.float64)
            ac = torch.cumprod(1.0 - betas, 0)
        self.alphas_cumprod = torch.as_tensor(ac).detach().to(torch.float64).cpu()
        self.num_train_timesteps = int(config_get(cfg, "num_train_timesteps", len(self.alphas_cumprod)))
        if len(self.alphas_cumprod) < self.num_train_timesteps:
            raise ValueError(
                f"scheduler has {len(self.alphas_cumprod)} alphas_cumprod for "
                f"num_train_timesteps={self.num_train_timesteps}"
            )
        self.prediction_type = str(config_get(cfg, "prediction_type", "epsilon"))
        if self.prediction_type not in ("epsilon", "v_prediction", "sample"):
            raise ValueError(f"unsupported scheduler prediction_type {self.prediction_type!r}")

    def _default_sample_shape(self) -> tuple[int, int, int]:
        cfg = self.unet.config
        size = config_get(cfg, "sample_size", None)
        if self._packed:
            h = w = int(size or _FLUX_DEFAULT_SAMPLE_SIZE)
            return (int(cfg.in_channels) // 4, h, w)
        h, w = _as_tuple2(size)
        return (int(cfg.in_channels), h, w)

    @property
    def _packed(self) -> bool:
        """Whether the denoiser takes packed latent tokens (FLUX)."""
        return self.family is not None and self.family.tokens

    # ---------------------------------------------------------------- properties
    def __repr__(self) -> str:
        dit = self.family is not None and self.family.name == "dit"
        kind = ("latent" if self.is_latent else "pixel") + (
            (", class" if dit else ", text") if self.is_conditional else ""
        )
        kind += f", {self.family.name}" if self.family is not None and self.family.name != "unet" else ""
        return f"DiffusionModel({self.name!r}, {kind}, sample_shape={self.sample_shape}, T={self.num_train_timesteps})"

    @property
    def denoiser(self) -> torch.nn.Module:
        """The denoising network (the same object as ``unet``)."""
        return self.unet

    @property
    def is_flow(self) -> bool:
        """Whether the model is a flow-matching (velocity) model on a sigma grid."""
        return self.flow_grid is not None

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
        """Whether an unconditional branch (empty prompt, null class) is available for CFG."""
        if not self.is_conditional:
            return False
        if self.family is not None and self.family.name == "dit":
            return conds.dit_null_class(self) is not None
        return self._uncond is not None or self.text_encoder is not None

    @property
    def fingerprint(self) -> str:
        """sha256 of the denoiser's class, config and weights (the basis cache's model key).

        Re-hashed when a parameter or buffer was replaced, moved, cast or changed in place since the
        last call (:func:`~pullback_utils.features.cache.module_state_token`), edits through ``.data`` included
        (:func:`~pullback_utils.features.cache.module_value_probe`, read on every call: the full hash for
        the zoo's models, 20-120 ms measured on a loaded 2-core machine; a sample and a sum of
        every tensor for larger ones).
        """
        from pullback_utils.features import cache

        token = cache.module_state_token(self.unet)
        probe = cache.module_value_probe(self.unet)
        if self._fingerprint is None or self._fingerprint[0] != (token, probe):
            nbytes = sum(t.numel() * t.element_size() for t in self.unet.state_dict().values())
            full = probe if nbytes <= cache.FULL_PROBE_BYTES else cache.module_fingerprint(self.unet)
            self._fingerprint = ((token, probe), full)
        return self._fingerprint[1]

    # ---------------------------------------------------------------- times
    def level(self, t: Time, *, name: str = "t") -> int:
        """Level ``n`` in ``0..T`` of time ``t`` (see :mod:`pullback_utils.diffusion.schedule`)."""
        return resolve_time(t, self.num_train_timesteps, name=name)

    def unet_timestep(self, t: Time, *, name: str = "t") -> int:
        """The training index ``level - 1`` at time ``t`` > 0 (VP networks' timestep input)."""
        return unet_timestep(t, self.num_train_timesteps, name=name)

    def sigma(self, t: Time) -> float:
        """Flow noise level ``sigma_t`` of flow-matching models (ValueError for VP models)."""
        if self.flow_grid is None:
            raise ValueError(f"model {self.name!r} is not a flow-matching model; use alpha_bar(t)")
        return self.flow_grid.sigma(t)

    def alpha_bar(self, t: Time) -> float:
        """alpha_bar at time ``t`` (1.0 for clean data); for flow models that of the equal-SNR VP state."""
        n = self.level(t)
        return 1.0 if n == 0 else float(self.alphas_cumprod[n - 1])

    def coefficients(self, t: Time) -> tuple[float, float]:
        """``(alpha_t, sigma_t)`` of ``x_t = alpha_t x_0 + sigma_t eps`` at time ``t`` (module doc)."""
        if self.flow_grid is not None:
            s = self.flow_grid.sigma(t)
            return 1.0 - s, s
        a = self.alpha_bar(t)
        return math.sqrt(a), math.sqrt(1.0 - a)

    # ---------------------------------------------------------------- prompts
    def encode_prompt(self, prompt: Any) -> torch.Tensor | Conditioning | None:
        """Conditioning of prompt(s) (:mod:`pullback_utils.diffusion.prompts`); ``None`` -> the unconditional branch.

        Text U-Nets: encoder hidden states (B, L, D); SDXL, SD3, FLUX, DiT: a
        :class:`~pullback_utils.diffusion.prompts.Conditioning`. Unconditional models return ``None`` for
        ``None`` and raise ``ValueError`` for a prompt. Encodings are memoised per model.
        """
        return conds.encode_prompt(self, prompt)

    def unconditional_embedding(self) -> torch.Tensor | Conditioning:
        """(1, ...) conditioning of the unconditional branch: the empty prompt, SDXL's zeros, DiT's null class
        (cached)."""
        if not self.has_unconditional_branch:
            raise ValueError(
                f"model {self.name!r} has no unconditional branch (no text encoder and no "
                "unconditional embedding); pass conditioning explicitly and guidance_scale=1"
            )
        if self._uncond is None:
            self._uncond = conds.unconditional(self)
        return self._uncond.to(self.device, self.dtype)

    def conditioning(
        self, prompt: Prompt, *, batch: int = 1, guidance_scale: float = 1.0
    ) -> torch.Tensor | Conditioning | None:
        """Validate ``prompt``/``guidance_scale`` and return conditioning of batch ``batch`` or 1 (or None).

        ``prompt`` may be a string, a list of strings (one per sample or one in all), a tensor of
        encoder hidden states ((L, D) or (1 | batch, L, D)) for text U-Nets, a
        :class:`~pullback_utils.diffusion.prompts.Conditioning` (or dict of the denoiser's keywords), class
        ids or label names for DiT, or ``None``. Text U-Nets return a tensor, other families a
        ``Conditioning`` (:func:`pullback_utils.diffusion.prompts.resolve`).
        """
        return conds.resolve(self, prompt, batch=batch, guidance_scale=guidance_scale)

    # ---------------------------------------------------------------- images
    @torch.no_grad()
    def to_latent(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, *image_shape)`` images in [-1, 1] -> ``(B, *sample_shape)`` x_0 (identity for pixel models).

        Images outside [-1, 1] beyond :data:`~pullback_utils.diffusion.images.SAMPLE_RANGE_TOL` are refused (the
        tolerance admits the package's own decoded samples, which overshoot a little).

        Latent models use the VAE posterior mean times ``vae.config.scaling_factor``.
        """
        check_batch(images, self.image_shape, "images", "images in [-1, 1]")
        if self.checks_image_range:
            check_image_range(images, "images", tol=SAMPLE_RANGE_TOL)
        return images if self.vae is None else vae_io.encode(self.vae, images, self.device, self.dtype)

    @torch.no_grad()
    def to_image(self, latents: torch.Tensor) -> torch.Tensor:
        """``(B, *sample_shape)`` x_0 -> ``(B, *image_shape)`` images in about [-1, 1] (not clamped)."""
        check_batch(latents, self.sample_shape, "latents", "x_0")
        return latents if self.vae is None else vae_io.decode(self.vae, latents, self.device)

    def noise(self, n: int = 1, seed: int = 0) -> torch.Tensor:
        """``(n, *sample_shape)`` standard normal x_T, drawn on the CPU from ``seed`` (device-independent)."""
        n = check_int(n, "n", 1)
        gen = torch.Generator().manual_seed(check_int(seed, "seed"))  # 1.7 is refused, not truncated
        return torch.randn((int(n), *self.sample_shape), generator=gen).to(self.device, self.dtype)

    # ---------------------------------------------------------------- the network
    def eps(
        self,
        x_t: torch.Tensor,
        t: Time,
        cond: Prompt = None,
        guidance_scale: float = 1.0,
    ) -> torch.Tensor:
        """``(B, *sample_shape)`` noise prediction at time ``t`` (level >= 1).

        ``cond``: prompt(s) or conditioning (see :meth:`conditioning`); ``None`` is the unconditional
        branch. ``guidance_scale`` != 1 applies classifier-free guidance ``eps_u + w (eps_c - eps_u)``
        (one batched network call). v- and x0-predicting models are converted to eps; flow models'
        velocity ``v`` to ``eps = x + (1 - sigma) v`` (the flow relation; CFG on eps equals CFG on v).
        """
        level, out = self._guided(x_t, t, cond, guidance_scale)
        if self.flow_grid is not None:
            return velocity_to_eps(x_t, out, self.flow_grid.sigma(level))
        return out

    def predict(
        self, x_t: torch.Tensor, t: Time, cond: Prompt = None, guidance_scale: float = 1.0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x0_hat, eps_hat)`` at time ``t``: the clean estimate and the noise, each ``(B, *sample_shape)``.

        VP models: ``x0 = (x - sqrt(1 - a) eps) / sqrt(a)``; flow models from the velocity,
        ``x0 = x - sigma v`` and ``eps = x + (1 - sigma) v``, which stay finite at sigma = 1.
        """
        level, out = self._guided(x_t, t, cond, guidance_scale)
        if self.flow_grid is not None:
            s = self.flow_grid.sigma(level)
            return velocity_to_x0(x_t, out, s), velocity_to_eps(x_t, out, s)
        a = self.alpha_bar(level)
        return (x_t - math.sqrt(1.0 - a) * out) / math.sqrt(a), out

    def _guided(self, x_t: torch.Tensor, t: Time, cond: Prompt, guidance_scale: float) -> tuple[int, torch.Tensor]:
        """(level, eps for VP models or velocity for flow models, with classifier-free guidance)."""
        check_batch(x_t, self.sample_shape, "x_t", "x_t")
        level = self.unet_timestep(t) + 1
        c = self.conditioning(cond, batch=x_t.shape[0], guidance_scale=guidance_scale)
        b = x_t.shape[0]
        c = conds.expand_batch(c, b)
        w = float(guidance_scale)
        if w != 1.0:
            u = conds.expand_batch(self.unconditional_embedding(), b)
            both = Conditioning.cat([u, c]) if isinstance(c, Conditioning) else torch.cat([u, c])
            xx = torch.cat([x_t, x_t])
            o_u, o_c = denoiser.to_prediction(self, xx, level, denoiser.output(self, xx, level, both)).chunk(2)
            return level, o_u + w * (o_c - o_u)
        return level, denoiser.to_prediction(self, x_t, level, denoiser.output(self, x_t, level, c))

    # ---------------------------------------------------------------- the engine
    def feature_map(self, t: Time, prompt: Prompt = None, layer: str | None = None):
        """The feature map ``x (B, *sample_shape) ↦ h`` at time ``t`` (and prompt), through the engine's
        :func:`~pullback_utils.features.feature_maps.feature_map` (FLUX latents packed first). ``layer=None``: the
        architecture's default."""
        return network.model_feature_map(self, t, prompt, layer)

    def local_basis(
        self,
        x_t: torch.Tensor,
        t: Time,
        k: int,
        prompt: Prompt = None,
        layer: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        **solver: Any,
    ):
        """Top-``k`` local latent basis of the feature map at (x_t, t), via the engine.

        Args:
            x_t: ``(1, *sample_shape)`` or ``(*sample_shape)`` state at time ``t``.
            t: time (level >= 1 or fraction > 0). An int is a level, not a diffusers timestep: the
                network sees timestep ``t - 1`` (diffusers' timestep ``tau`` is ``t = tau + 1``;
                :mod:`pullback_utils.diffusion.schedule`); ``info["timestep"]`` records it.
            k: number of singular vectors.
            prompt: prompt or conditioning (conditional models; None = the unconditional branch).
            layer: feature layer (``None``: the architecture's default, ``"mid"`` for U-Nets, the middle
                transformer block for DiTs; :func:`~pullback_utils.features.feature_maps.layer_names`).
            cache_dir: opt-in on-disk cache (:mod:`pullback_utils.features.cache`); ``None`` or ``""`` = no
                cache; ``~`` and environment variables are expanded (an unset one is refused).
            **solver: keyword arguments of :func:`~pullback_utils.engine.solvers.jacobian_svd`.

        Returns:
            ``LocalBasis`` with ``v`` ``(k, 1, *sample_shape)``, ``u`` ``(k, *h.shape)``, ``s`` (k,), ``info``.
            FLUX: the basis is computed on the packed tokens and ``v`` unpacked (packing is a
            permutation, so the singular values are those of ∂h/∂x_t).
        """
        k = check_int(k, "k", 1)
        return network.model_local_basis(self, x_t, t, int(k), prompt, layer, cache_dir, solver)
