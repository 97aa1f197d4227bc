"""Frequency content of basis vectors: radial power spectra, low-frequency share, mean frequency, and the
summary of a whole sweep (the coarse-to-fine analysis).

Shapes: a :class:`~pullback_utils.sweeps.bases.BasisSweep` with image-shaped ``v`` ``(n_t, n, k, C, H, W)``;
radial bins ``R``.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import torch

from pullback_utils.analysis.geometry import ArrayLike, _out, _to_float64_tensor

__all__ = [
    "radial_frequency_grid",
    "radial_psd",
    "low_frequency_share",
    "mean_frequency",
    "white_noise_low_share",
    "psd_summary",
]


def white_noise_low_share(h: int, w: int, cutoff: float) -> float:
    """Expected low-frequency share (bins ``<= cutoff``) of white noise: the fraction of such frequencies."""
    return float((np.rint(radial_frequency_grid(h, w)) <= cutoff).mean())


def psd_summary(sweep: Any, *, low_fraction: float = 0.25) -> dict[str, Any]:
    """Frequency content of the x-side bases at every time.

    Args:
        sweep: a sweep of image-shaped ``v`` (``(n_t, n, k, C, H, W)``).
        low_fraction: the low band is radial frequency ``<= low_fraction * min(H, W) / 2`` (cycles per
            image); 0.25 = the lowest quarter up to the Nyquist frequency.

    Returns:
        dict with ``freqs`` ``(R,)``; ``psd`` ``(n_t, n, R)`` radially averaged power, averaged over the
        k vectors; ``low_share`` ``(n_t, n)`` and ``mean_freq`` ``(n_t, n)`` averaged over the k vectors;
        ``cutoff`` and ``white_noise_low_share`` (the flat-spectrum baseline of ``low_share``).
    """
    if sweep.v.dim() != 6:
        raise ValueError(f"psd_summary needs image-shaped bases (n_t, n, k, C, H, W), got {tuple(sweep.v.shape)}")
    if not 0 < float(low_fraction) <= 1:
        raise ValueError(f"low_fraction must lie in (0, 1], got {low_fraction!r}")
    h, w = sweep.v.shape[-2:]
    cutoff = float(low_fraction) * min(h, w) / 2
    psd, share, mf = [], [], []
    for i in range(sweep.v.shape[0]):  # one timestep at a time: float64 copies stay small
        v = sweep.v[i].double()
        freqs, p = radial_psd(v)  # (n, k, R)
        psd.append(p.mean(dim=1))
        share.append(low_frequency_share(v, cutoff).mean(dim=1))  # (n,)
        mf.append(mean_frequency(v).mean(dim=1))
    return {
        "freqs": np.asarray(freqs),
        "psd": torch.stack(psd).numpy(),
        "low_share": torch.stack(share).numpy(),
        "mean_freq": torch.stack(mf).numpy(),
        "cutoff": cutoff,
        "white_noise_low_share": white_noise_low_share(h, w, cutoff),
    }


# --------------------------------------------------------------------------------------------------
# radial power spectral density
# --------------------------------------------------------------------------------------------------
def radial_frequency_grid(h: int, w: int) -> np.ndarray:
    """``(h, w)`` radial frequency ``sqrt(fy^2 + fx^2)`` in cycles per image, in ``torch.fft.fft2``
    order (``fy = fftfreq(h) * h``, ``fx = fftfreq(w) * w``, integers in ``[-n/2, n/2)``)."""
    fy = np.fft.fftfreq(h) * h
    fx = np.fft.fftfreq(w) * w
    return np.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)


def _power(vectors: ArrayLike, name: str = "vectors") -> tuple[torch.Tensor, bool]:
    """``(..., C, H, W)`` -> channel-averaged ``|FFT2_ortho|^2`` shaped ``(..., H, W)``."""
    t = _to_float64_tensor(vectors, name)
    if t.ndim < 3:
        raise ValueError(f"{name} must have shape (..., C, H, W), got shape {tuple(t.shape)}")
    if min(t.shape[-3:]) == 0:
        raise ValueError(f"{name} has an empty channel or spatial dimension: shape {tuple(t.shape)}")
    spec = torch.fft.fft2(t, norm="ortho")
    return (spec.real**2 + spec.imag**2).mean(dim=-3), isinstance(vectors, torch.Tensor)


def radial_psd(
    vectors: ArrayLike,
    *,
    reduce: Literal["none", "mean"] = "none",
    bin_stat: Literal["mean", "sum"] = "mean",
) -> tuple[np.ndarray, torch.Tensor | np.ndarray]:
    """Radially binned power spectral density of images/basis vectors.

    Args:
        vectors: ``(..., C, H, W)``, e.g. ``(k, C, H, W)`` or ``(n, k, C, H, W)``.
        reduce: ``"none"`` keeps the leading dims; ``"mean"`` averages over all of them.
        bin_stat: ``"mean"`` (default) averages the power of the frequencies in each bin (the
            radially averaged spectrum: white noise is flat); ``"sum"`` adds them (energy per bin:
            with it ``psd.sum(-1) == (vectors**2).sum((-2, -1)).mean(-1)``, Parseval).

    Returns:
        ``(freqs, psd)``: ``freqs`` ``(R,)`` integer radial frequencies ``0, 1, ..., R-1`` (numpy);
        ``psd`` ``(..., R)`` (or ``(R,)`` with ``reduce="mean"``), float64, torch if the input is.

    Definition: per channel ``P = |FFT2(x)|^2`` with the orthonormal FFT (so ``sum P = sum x^2``),
    averaged over channels. Frequency ``(fy, fx)`` in cycles per image (integers, see
    :func:`radial_frequency_grid`) falls in bin ``round(sqrt(fy^2 + fx^2))`` (numpy rounding, halves
    to even). ``R - 1`` is the largest bin, ``round(sqrt((H/2)^2 + (W/2)^2))``; bins above
    ``min(H, W)/2`` hold only the corners of the spectrum. Empty bins get 0.
    """
    if reduce not in ("none", "mean"):
        raise ValueError(f"reduce must be 'none' or 'mean', got {reduce!r}")
    if bin_stat not in ("mean", "sum"):
        raise ValueError(f"bin_stat must be 'mean' or 'sum', got {bin_stat!r}")
    power, as_torch = _power(vectors)
    h, w = power.shape[-2:]
    bins = np.rint(radial_frequency_grid(h, w)).astype(np.int64).ravel()
    nbins = int(bins.max()) + 1
    lead = power.shape[:-2]
    flat = power.reshape(-1, h * w)
    idx = torch.from_numpy(bins).to(flat.device)
    psd = torch.zeros(flat.shape[0], nbins, dtype=torch.float64, device=flat.device)
    psd.index_add_(1, idx, flat)
    if bin_stat == "mean":
        counts = torch.bincount(idx, minlength=nbins).to(torch.float64)
        psd = psd / counts.clamp(min=1)
    psd = psd.reshape(*lead, nbins)
    if reduce == "mean" and len(lead):
        psd = psd.reshape(-1, nbins).mean(dim=0)
    return np.arange(nbins), _out(psd, as_torch)


def low_frequency_share(vectors: ArrayLike, cutoff: float) -> torch.Tensor | np.ndarray:
    """Fraction of each vector's energy at radial frequency up to ``cutoff``.

    Args:
        vectors: ``(..., C, H, W)``.
        cutoff: radial frequency (cycles per image); frequencies whose bin (the rounded radius, as
            in :func:`radial_psd`) is ``<= cutoff`` count as low. ``cutoff=0`` gives the DC share.

    Returns:
        ``(...)`` shares in ``[0, 1]`` (all channels together), float64; torch if the input is.

    Raises:
        ValueError: negative/non-finite ``cutoff``, or a vector with zero energy.
    """
    if not isinstance(cutoff, (int, float, np.integer, np.floating)) or not math.isfinite(cutoff) or cutoff < 0:
        raise ValueError(f"cutoff must be a finite number >= 0, got {cutoff!r}")
    power, as_torch = _power(vectors)
    h, w = power.shape[-2:]
    mask = torch.from_numpy(np.rint(radial_frequency_grid(h, w)) <= cutoff).to(power.device)
    total = power.sum(dim=(-2, -1))
    if bool((total <= 0).any()):
        raise ValueError("vectors contains a vector with zero energy; its frequency share is undefined")
    share = (power * mask).sum(dim=(-2, -1)) / total
    return _out(share, as_torch)


def mean_frequency(vectors: ArrayLike) -> torch.Tensor | np.ndarray:
    """Energy-weighted mean radial frequency (cycles per image, unrounded radius) of each vector.

    Args:
        vectors: ``(..., C, H, W)``.

    Returns:
        ``(...)`` float64 ``sum_f r(f) P(f) / sum_f P(f)`` with ``P`` the channel-summed power;
        torch if the input is.
    """
    power, as_torch = _power(vectors)
    h, w = power.shape[-2:]
    r = torch.from_numpy(radial_frequency_grid(h, w)).to(power.device)
    total = power.sum(dim=(-2, -1))
    if bool((total <= 0).any()):
        raise ValueError("vectors contains a vector with zero energy; its mean frequency is undefined")
    return _out((power * r).sum(dim=(-2, -1)) / total, as_torch)
