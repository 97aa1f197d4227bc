"""Input checks of the editing modules (cheap; each runs before any network evaluation).

Every check raises ``ValueError`` (``TypeError`` for a wrong type) whose message names the parameter
and says what would be valid. Generic checks (ints, reals, fractions, choices) are in
:mod:`pullback_utils._validate`; these are the ones that need the editing vocabulary (edit times,
basis indices, signs, prompts, directions, image range).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from pullback_utils._validate import check_batch, check_real, is_int
from pullback_utils.diffusion.ddim import Prompt, Time
from pullback_utils.diffusion.finite import check_state_scale
from pullback_utils.diffusion.images import IMAGE_RANGE_TOL, SAMPLE_RANGE_TOL, check_image_range

if TYPE_CHECKING:  # pragma: no cover
    from pullback_utils.models.diffusion_model import DiffusionModel

__all__ = [
    "check_edit_time",
    "check_index",
    "check_sign",
    "check_prompt",
    "check_eta_below",
    "direction_batch",
    "state_batch",
    "check_start",
    "_check_range",
]

#: How far beyond [-1, 1] image values may lie (float rounding of decoded or resized images).


def check_edit_time(model: "DiffusionModel", t: Time, name: str = "t_edit") -> int:
    """Level of ``t`` after checking it lies in (0, T]."""
    T = model.num_train_timesteps
    try:
        n = model.level(t, name=name)
    except (TypeError, ValueError) as e:
        raise type(e)(f"{e}; edits need {name} in (0, T] = (0, {T}] (int level) or (0, 1] (fraction)") from None
    if n < 1:
        raise ValueError(
            f"{name}={t!r} is clean data (level 0); edits need {name} in (0, T]: an int level 1..{T} "
            "or a fraction in (0, 1]"
        )
    return n


def check_index(index: Any, k: int, name: str = "index") -> int:
    """``index`` as a basis index in ``0..k-1``."""
    if not is_int(index):
        raise ValueError(f"{name} must be an int basis index in 0..{k - 1} (k = {k}), got {index!r}")
    i = int(index)
    if not 0 <= i < k:
        raise ValueError(
            f"{name}={i} is not a direction of a basis of k = {k} vectors; valid indices are 0..{k - 1}"
            + (" (raise k to use it)" if i >= k else "")
        )
    return i


def check_sign(sign: Any, name: str = "sign") -> int:
    """``sign`` as +1 or -1."""
    if isinstance(sign, bool) or sign not in (1, -1):
        raise ValueError(f"{name} must be +1 or -1, got {sign!r}")
    return int(sign)


def check_prompt(model: "DiffusionModel", prompt: Prompt, name: str) -> None:
    """One prompt (a string or encoder hidden states) for a conditional model, or ``None``."""
    if prompt is not None and not model.is_conditional:
        raise ValueError(
            f"{name}={prompt!r} was given, but model {model.name!r} is unconditional (it takes no "
            f"text); pass {name}=None"
        )
    if prompt is not None and not isinstance(prompt, (str, torch.Tensor)):
        raise ValueError(f"{name} must be one string or encoder hidden states, got {type(prompt).__name__}")


def check_eta_below(value: Any, name: str = "eta_below") -> float | None:
    """``None`` (deterministic finish) or a fraction of T in [0, 1]."""
    if value is None:
        return None
    try:
        v = check_real(value, name)
    except ValueError:
        raise ValueError(f"{name} must be a fraction of T in [0, 1] or None, got {value!r}") from None
    if not 0.0 <= v <= 1.0:
        raise ValueError(f"{name} must be a fraction of T in [0, 1] or None, got {value!r}")
    return v


def direction_batch(model: "DiffusionModel", direction: torch.Tensor, name: str = "direction") -> torch.Tensor:
    """``direction`` ``(*sample_shape)``, (1, ...) or (B, ...) as a finite ``(B, *sample_shape)`` batch on
    the model's device."""
    if not isinstance(direction, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(direction).__name__}")
    shape = tuple(model.sample_shape)
    d = direction.unsqueeze(0) if direction.dim() == len(shape) else direction
    if d.dim() != len(shape) + 1 or tuple(d.shape[1:]) != shape:
        raise ValueError(
            f"{name} must have shape {shape}, (1, {', '.join(map(str, shape))}) or (B, ...) of x_t's "
            f"shape, got {tuple(direction.shape)}"
        )
    if not torch.isfinite(d).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return d.to(model.device, model.dtype)


def state_batch(model: "DiffusionModel", x: torch.Tensor, name: str = "x_t") -> torch.Tensor:
    """``x`` ``(*sample_shape)`` or ``(B, *sample_shape)`` as a ``(B, *sample_shape)`` batch on the model's device."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    x = x.unsqueeze(0) if x.dim() == len(model.sample_shape) else x
    check_batch(x, model.sample_shape, name, name)
    check_state_scale(x, name)
    return x.to(model.device, model.dtype)


def _check_range(x: torch.Tensor, name: str = "image", tol: float = IMAGE_RANGE_TOL) -> None:
    """Refuse images outside the model range [-1 - tol, 1 + tol] or not finite
    (:func:`pullback_utils.diffusion.images.check_image_range`)."""
    if not isinstance(x, torch.Tensor) or x.numel() == 0:
        return
    check_image_range(x, name, tol=tol)


def check_start(model: "DiffusionModel", image_or_noise: Any, is_noise: bool) -> Any:
    """``image_or_noise`` checked: a ``(1, *sample_shape)`` x_T (``is_noise``), a ``(1, *image_shape)`` image
    tensor in [-1, 1], or a file path / PIL image / uint8 or uint16 array for
    :func:`~pullback_utils.diffusion.images.load_image`.

    One rule for float pixel values: a tensor is in the model range [-1, 1] (tolerance
    :data:`~pullback_utils.diffusion.images.SAMPLE_RANGE_TOL`, so the package's own samples pass); a float numpy
    array is refused, since [0, 1] and [-1, 1] data cannot be told apart by their values. A tensor whose
    values all lie in [0, 1] is taken as model range with a warning (it may be a [0, 1] image)."""
    if image_or_noise is None:
        return None
    if is_noise:
        x = image_or_noise
        if isinstance(x, torch.Tensor) and x.dim() == len(model.sample_shape):
            x = x.unsqueeze(0)
        check_batch(x, model.sample_shape, "noise", "x_T")
        if x.shape[0] != 1:
            raise ValueError(f"edit_image edits one image at a time; noise has batch {x.shape[0]}")
        return x
    if isinstance(image_or_noise, torch.Tensor):
        img = image_or_noise.unsqueeze(0) if image_or_noise.dim() == 3 else image_or_noise
        check_batch(img, model.image_shape, "image", "an image in [-1, 1]")
        if img.shape[0] != 1:
            raise ValueError(f"edit_image edits one image at a time; image has batch {img.shape[0]}")
        _check_range(img, "image", SAMPLE_RANGE_TOL)
        if img.numel() and float(img.min()) >= 0.0 and float(img.max()) <= 1.0:
            warnings.warn(
                "image: every value lies in [0, 1]; a tensor is read as the model range [-1, 1], so this is "
                "a bright image there; if it is a [0, 1] image, pass 2 * image - 1",
                stacklevel=3,
            )
        return img
    if isinstance(image_or_noise, np.ndarray) and np.issubdtype(image_or_noise.dtype, np.floating):
        raise ValueError(
            "image: a float numpy array is ambiguous ([0, 1] pixel data or the model range [-1, 1]); pass "
            "torch.from_numpy(a) for an image already in the model range (CHW), or "
            "pullback_utils.diffusion.images.load_image(a) for [0, 1] pixel data (HWC); uint8 / uint16 arrays, PIL "
            "images and files are read by load_image"
        )
    return image_or_noise
