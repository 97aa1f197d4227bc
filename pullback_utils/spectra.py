"""Frequency content of the x-side bases of a sweep (the coarse-to-fine analysis).

Shapes: a :class:`~pullback_utils.sweeps.BasisSweep` with image-shaped ``v`` ``(n_t, n, k, C, H, W)``;
radial bins ``R``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .geometry import low_frequency_share, mean_frequency, radial_frequency_grid, radial_psd

__all__ = ["white_noise_low_share", "psd_summary"]


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
