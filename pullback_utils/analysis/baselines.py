"""Matched baselines and controls for the geometric claims.

A geometric effect (a distance, an energy share) is only an effect if it exceeds what a matched null
produces. This module builds those nulls:

- :func:`spectrum_matched` -- random bases with the *same power spectrum* as a given basis: every
  vector keeps the magnitude of its 2-D Fourier transform (per channel) and gets the phases of a
  white-noise draw, then the ``k`` vectors are orthonormalised. Distances between such bases measure
  what spectral narrowing alone does (a low-pass basis is "similar" to any other low-pass basis);
- :func:`random_weight_model` -- the same architecture with freshly initialised weights (the effect
  must be learned: a statistic that a random network also shows is a property of the architecture);
- :func:`noise_floor` -- the distance between two bases at the same point computed with different
  solver seeds: the resolution of every distance the book reports;
- :func:`normalised_distance` -- ``d / ((pi / 2) sqrt(k))``, a distance on the scale of its maximum;
- :func:`gaussian` -- the bases of the optimal denoiser of a Gaussian fitted to the model's training data
  (:mod:`pullback_utils.analysis.gaussian`): the strongest alternative explanation of a geometric claim (a
  linear denoiser has the same basis for every sample, the data's principal components, at every t).

Shapes: bases ``(..., k, C, H, W)`` (image-shaped x-side ``v`` or h-side ``u``); the FFT runs over the
last two dimensions.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch

from pullback_utils._validate import check_int
from pullback_utils.features.basis import freeze

__all__ = ["spectrum_matched", "random_weight_model", "noise_floor", "normalised_distance"]


def spectrum_matched(basis: torch.Tensor, *, seed: int = 0) -> torch.Tensor:
    """Random orthonormal bases with the per-vector, per-channel power spectra of ``basis``.

    Args:
        basis: ``(..., k, C, H, W)``; each ``(C, H, W)`` vector's spectrum is matched.
        seed: seed of the random phases (deterministic).

    Returns:
        ``(..., k, C, H, W)`` float64: for each leading index, ``k`` orthonormal vectors (as rows of the
        flattened ``(k, C*H*W)`` matrix). Before orthonormalisation every vector has exactly the
        magnitude spectrum of its original; orthonormalising mixes vectors of similar spectra and so
        keeps the radial spectrum up to the mixing.
    """
    if not isinstance(basis, torch.Tensor) or basis.dim() < 4:
        raise ValueError(
            f"basis must be a tensor (..., k, C, H, W), got "
            f"{tuple(basis.shape) if isinstance(basis, torch.Tensor) else type(basis).__name__}"
        )
    b = basis.detach().to(torch.float64)
    if not torch.isfinite(b).all():
        raise ValueError("basis contains NaN or infinite values")
    gen = torch.Generator().manual_seed(int(seed))
    noise = torch.randn(b.shape, generator=gen, dtype=torch.float64)
    mag = torch.fft.rfft2(b).abs()
    phase = torch.fft.rfft2(noise)
    phase = phase / phase.abs().clamp_min(1e-300)
    out = torch.fft.irfft2(mag * phase, s=b.shape[-2:])
    k = b.shape[-4]
    flat = out.reshape(-1, k, math.prod(b.shape[-3:]))
    q, r = torch.linalg.qr(flat.transpose(1, 2))  # (B, D, k)
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(1)
    return q.transpose(1, 2).reshape(out.shape)


def random_weight_model(model: Any, *, seed: int = 0) -> Any:
    """A copy of a :class:`~pullback_utils.models.diffusion_model.DiffusionModel` whose network has fresh
    random weights.

    The U-Net is rebuilt from its config (``type(unet).from_config``) under ``torch.manual_seed(seed)``,
    so it has the architecture and initialisation of the original's class; scheduler, text encoder
    and VAE are shared. Its name gets ``" (random weights, seed S)"``.
    """
    seed = check_int(seed, "seed", 0)
    unet = model.unet
    if not hasattr(type(unet), "from_config"):
        raise TypeError(f"the model's network ({type(unet).__name__}) cannot be rebuilt from a config")
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        fresh = type(unet).from_config(unet.config)
    finally:
        torch.random.set_rng_state(state)
    fresh = fresh.to(model.device)
    if model.dtype != torch.float32:  # from_config builds float32; cast only when needed (diffusers warns)
        fresh = fresh.to(model.dtype)
    fresh = freeze(fresh)
    out = copy.copy(model)
    out.unet = fresh
    out.name = f"{model.name} (random weights, seed {seed})"
    out._fingerprint = None
    out._prompt_memo = dict(model._prompt_memo)
    return out


def noise_floor(
    model: Any, x_t: torch.Tensor, t: Any, k: int, *, seeds: tuple[int, int] = (0, 1), side: str = "v", **solver: Any
) -> float:
    """Geodesic distance (rad) between two bases at the same ``(x_t, t)`` computed with solver seeds
    ``seeds``: how far apart two computations of "the same" tangent space can be."""
    from pullback_utils.analysis.geometry import geodesic_distance

    if side not in ("v", "u"):
        raise ValueError(f"side must be 'v' or 'u', got {side!r}")
    a, b = (model.local_basis(x_t, t, k, seed=s, **solver) for s in seeds)
    return float(geodesic_distance(getattr(a, side).reshape(k, -1).double(), getattr(b, side).reshape(k, -1).double()))


def normalised_distance(d: Any, k: int) -> Any:
    """``d / ((pi / 2) sqrt(k))``: 0 for equal subspaces, 1 for orthogonal ones."""
    return d / (math.pi / 2 * math.sqrt(check_int(k, "k", 1)))
