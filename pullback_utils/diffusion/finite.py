"""Refusing non-finite results where they arise, with the input that caused them named.

The samplers, the inverter and x-space guidance check their state after every step (one
``isfinite`` reduction, negligible next to a network call). When it stops being finite they raise
:class:`NonFiniteError` naming the step and the inputs that are out of scale, so a NaN image is never
handed on. The inputs are checked first where a bound is known (NaN embeddings, guidance scales
beyond :data:`MAX_GUIDANCE_SCALE`); this module is the net for what only shows in the result.
"""

from __future__ import annotations

from typing import Sequence

import torch

__all__ = [
    "NonFiniteError",
    "MAX_GUIDANCE_SCALE",
    "STATE_SCALE",
    "MAX_STATE_ABS",
    "check_state_scale",
    "refuse_non_finite",
    "scale_causes",
]

#: The largest ``|guidance_scale|`` accepted. Classifier-free guidance is used at 1..20 (the paper and
#: diffusers' pipelines use 7.5 and below); at 1e3 the guided noise is 1e3 x the (small) difference of
#: the two branches and the sample is no longer an image, and at 1e30 the product overflows float32.
MAX_GUIDANCE_SCALE = 1000.0
#: A state whose largest ``|value|`` exceeds this is named as a likely cause: ``x_t = alpha x_0 + sigma eps``
#: has values of order 1 at every time (images in [-1, 1], latents scaled to unit variance, eps ~ N(0, 1)).
STATE_SCALE = 100.0
#: States with a larger ``|value|`` are refused before any network call: ``x_t = alpha x_0 + sigma eps`` stays
#: within about +-10 (images in [-1, 1], SD latents within +-5 after scaling, eps ~ N(0, 1)), so 1e4 is
#: three orders beyond any state and marks a unit mistake (x_T = 1e20 gave a 4e20 "image" on disks).
MAX_STATE_ABS = 1e4


class NonFiniteError(ValueError):
    """A computation produced NaN or infinite values; the message names the step and the likely input."""


def scale_causes(**inputs: torch.Tensor | float | None) -> list[str]:
    """Descriptions of the inputs that are out of scale: tensors with values above :data:`STATE_SCALE`,
    numbers above it in absolute value (``None`` entries are skipped)."""
    out = []
    for name, value in inputs.items():
        if value is None:
            continue
        if isinstance(value, torch.Tensor):
            if value.numel() == 0:
                continue
            finite = torch.isfinite(value)
            if not bool(finite.all()):
                out.append(f"{name} (contains NaN or infinite values)")
                continue
            m = float(value.detach().abs().max())
            if m > STATE_SCALE:
                out.append(f"{name} (largest |value| {m:.3g}; states, images and directions have values of order 1)")
        elif abs(float(value)) > STATE_SCALE:
            out.append(f"{name}={float(value):g}")
    return out


def refuse_non_finite(x: torch.Tensor, where: str, causes: Sequence[str] = ()) -> None:
    """Raise :class:`NonFiniteError` unless every entry of ``x`` is finite.

    ``where`` says which computation and step produced ``x``; ``causes`` (from :func:`scale_causes`)
    are the inputs named as the likely cause, or, when none is out of scale, the message says so.
    """
    if bool(torch.isfinite(x).all()):
        return
    bad = int((~torch.isfinite(x)).sum())
    why = (
        ("; caused by " + ", ".join(causes))
        if causes
        else ("; no input is out of scale (check the model's weights and the conditioning)")
    )
    raise NonFiniteError(f"{where} produced {bad} NaN or infinite values of {x.numel()}{why}")


def check_state_scale(x: torch.Tensor, name: str) -> None:
    """``ValueError`` when a state's largest ``|value|`` exceeds :data:`MAX_STATE_ABS` (a unit mistake)."""
    if x.numel() == 0:
        return
    m = float(x.detach().abs().max())
    if m > MAX_STATE_ABS:
        raise ValueError(
            f"{name} has values up to |{m:.3g}|, beyond {MAX_STATE_ABS:g}: states x_t = alpha x_0 + sigma eps "
            "have values of order 1 (images in [-1, 1], noise N(0, 1); x_T is model.noise(n, seed))"
        )
