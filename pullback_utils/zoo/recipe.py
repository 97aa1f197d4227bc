"""The closed forms of the zoo's training recipe: a leaf module (imports nothing of the package).

- :func:`learning_rate`: linear warm-up, constant, optional cosine annealing;
- :func:`loss_weights`: per-sample weights of the v-prediction loss (none, or min-SNR-gamma).

The trainer (:mod:`pullback_utils.zoo.train`) runs them; the model cards describe the recorded runs
with them.
"""

from __future__ import annotations

import math

import torch

from pullback_utils._validate import check_real

__all__ = ["LOSS_WEIGHTINGS", "learning_rate", "loss_weights", "check_loss_weighting"]

LOSS_WEIGHTINGS: tuple[str, ...] = ("none", "min-snr")


def learning_rate(
    step: int, lr: float, warmup: int, steps: int, decay_from: int | None = None, lr_final: float | None = None
) -> float:
    """Learning rate of optimizer step ``step`` (0-based): linear warm-up over ``warmup`` steps to
    ``lr``, constant, then (if ``decay_from`` is given) cosine annealing to ``lr_final`` at ``steps``."""
    if decay_from is not None and step >= decay_from:
        frac = min(1.0, (step - decay_from) / max(1, steps - decay_from))
        return lr_final + (lr - lr_final) * 0.5 * (1.0 + math.cos(math.pi * frac))
    return lr * min(1.0, (step + 1) / warmup) if warmup > 0 else lr


def loss_weights(alpha_bar: torch.Tensor, weighting: str = "none", snr_gamma: float = 5.0) -> torch.Tensor:
    """Per-sample weights of the v-prediction MSE, same shape as ``alpha_bar`` (abar_t of each sample).

    ``"none"``: 1. ``"min-snr"`` (min-SNR-gamma, Hang et al. 2023, for v-prediction):
    ``min(SNR, gamma) / (SNR + 1)`` with ``SNR = abar / (1 - abar)``, i.e. ``abar`` where
    ``SNR <= gamma`` and ``gamma (1 - abar)`` above: the eps-loss weighted by ``min(SNR, gamma)``
    (the v-loss is ``SNR + 1`` times the eps-loss).
    """
    check_loss_weighting(weighting, snr_gamma)
    if weighting == "none":
        return torch.ones_like(alpha_bar)
    snr = alpha_bar / (1 - alpha_bar)
    return snr.clamp(max=snr_gamma) / (snr + 1)


def check_loss_weighting(weighting: object, snr_gamma: object) -> None:
    """``ValueError`` naming the parameter unless ``weighting`` is one of :data:`LOSS_WEIGHTINGS`
    and ``snr_gamma`` a finite number > 0."""
    if weighting not in LOSS_WEIGHTINGS:
        raise ValueError(f"loss_weighting: expected one of {list(LOSS_WEIGHTINGS)}, got {weighting!r}")
    check_real(snr_gamma, "snr_gamma:", positive=True)
