"""Image input and output: real images into a model's size and range, tensors out to grids.

Model range: float images in [-1, 1], shape (B, C, H, W). :func:`check_image_range` is the one
check that a tensor is in it (with a tolerance, :data:`IMAGE_RANGE_TOL`). Where images enter the model
(``DiffusionModel.to_latent``, ``ddim_invert`` from clean data, ``edit_image``) the tolerance is the
wider :data:`SAMPLE_RANGE_TOL`, so the package's own samples, which overshoot [-1, 1] a little, can be
inverted and edited.

One rule for floating-point pixel values: a *tensor* is in the model range [-1, 1]; *pixel data*
(files, PIL images, uint8 / uint16 arrays, and float arrays in [0, 1]) are converted by
:func:`load_image` (``pullback_utils.diffusion.images.load_image``). ``edit_image`` refuses float numpy arrays,
whose range ([0, 1] or [-1, 1]) cannot be told from the values.

Bit depths: 8-bit images map 0..255 to [-1, 1]; 16-bit grayscale (PIL modes ``I;16*``, and
``I``, as PIL opens 16-bit PGM files) maps 0..65535; float images (mode ``F``) must be in [0, 1].
16-bit colour PNGs are opened by PIL at 8 bits per channel.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Protocol, Sequence, Union

import numpy as np
import torch
from PIL import Image

from pullback_utils._validate import check_int, is_int


class ImageModel(Protocol):
    """What :func:`load_image` reads of a model (a :class:`~pullback_utils.models.diffusion_model.DiffusionModel`);
    a protocol, so that models can import this module without a cycle."""

    image_shape: tuple[int, int, int]
    device: torch.device
    dtype: torch.dtype


ImageSource = Union[str, os.PathLike, Image.Image, np.ndarray]

__all__ = [
    "load_image",
    "resize_center_crop",
    "to_pil",
    "save_grid",
    "make_grid",
    "check_image_range",
    "IMAGE_RANGE_TOL",
    "SAMPLE_RANGE_TOL",
]

#: How far outside [-1, 1] an image may reach by default (float rounding of loaded or resized images).
IMAGE_RANGE_TOL = 0.05
#: How far outside [-1, 1] an image entering the model (encoding, inversion, editing) may reach. The
#: package's own DDIM samples overshoot: 32 draws of each zoo model at 10 and 50 steps reached up to
#: 0.34 beyond [-1, 1] (textures, 50 steps; disks 0.19), so 0.5 admits them, while [0, 255] data, the
#: mistake the check exists for, lie far outside it.
SAMPLE_RANGE_TOL = 0.5
# single-channel PIL modes with more than 8 bits; 0..max maps to [0, 1]
_WIDE_MODES = {"I;16": 65535, "I;16L": 65535, "I;16B": 65535, "I;16N": 65535, "I": 65535, "F": 1.0}


def check_image_range(x: torch.Tensor, name: str = "images", *, tol: float = IMAGE_RANGE_TOL) -> None:
    """``ValueError`` unless ``x`` is finite and within the model range [-1 - tol, 1 + tol].

    Cheap (one min/max); call it where images enter the model (encoding, inversion, editing).
    """
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    if x.numel() == 0:
        return
    lo, hi = float(x.min()), float(x.max())
    if lo >= -1 - tol and hi <= 1 + tol:
        return
    if lo >= -tol and 1 + tol < hi <= 255 + tol:
        guess = "; this looks like [0, 255] pixel values: use x / 127.5 - 1"
    else:
        guess = "; clamp decoded images with .clamp(-1, 1), map [0, 1] images with 2 * x - 1"
    raise ValueError(
        f"{name} must be in the model range [-1, 1] (tolerance {tol:g}), got values in "
        f"[{lo:.4g}, {hi:.4g}]{guess}; pullback_utils.diffusion.images.load_image reads files and arrays "
        "into this range"
    )


def _size2(size: Any, name: str = "size") -> tuple[int, int]:
    if is_int(size):
        size = (int(size), int(size))
    if not isinstance(size, (tuple, list)) or len(size) != 2 or not all(is_int(s) and s >= 1 for s in size):
        raise ValueError(f"{name} must be an int >= 1 or a pair (height, width) of them, got {size!r}")
    return int(size[0]), int(size[1])


def _to_pil(source: ImageSource) -> Image.Image:
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"image: no such file {path}")
        with Image.open(path) as im:
            im.load()
            return im.copy()
    if isinstance(source, np.ndarray):
        a = source
        if a.ndim == 3 and a.shape[2] == 1:
            a = a[:, :, 0]
        if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
            raise ValueError(
                f"image as a numpy array must have shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {a.shape}"
            )
        if a.dtype == np.uint8:
            pass
        elif a.dtype == np.uint16:
            if a.ndim == 2:
                return Image.fromarray(np.ascontiguousarray(a))  # mode I;16: kept at 16 bits
            a = np.round(a.astype(np.float64) / 257.0).astype(np.uint8)
        elif np.issubdtype(a.dtype, np.floating):
            if not np.isfinite(a).all() or a.min() < -1e-6 or a.max() > 1 + 1e-6:
                raise ValueError(
                    "image as a float array must hold values in [0, 1] "
                    f"(got [{float(np.nanmin(a)):.3g}, {float(np.nanmax(a)):.3g}]); "
                    "pass uint8 for 0..255 values"
                )
            a = np.round(np.clip(a, 0.0, 1.0) * 255.0).astype(np.uint8)
        else:
            raise TypeError(f"image as a numpy array must be uint8, uint16 or float in [0, 1], got dtype {a.dtype}")
        return Image.fromarray(np.ascontiguousarray(a))
    raise TypeError(f"image must be a file path, a PIL.Image or a numpy array, got {type(source).__name__}")


def resize_center_crop(image: Image.Image, size: int | tuple[int, int]) -> Image.Image:
    """Scale ``image`` (Lanczos) to cover ``size`` = (height, width), then crop its centre."""
    h, w = _size2(size)
    W0, H0 = image.size
    scale = max(h / H0, w / W0)
    nw, nh = max(w, math.ceil(W0 * scale - 1e-9)), max(h, math.ceil(H0 * scale - 1e-9))
    if (nw, nh) != (W0, H0):
        image = image.resize((nw, nh), Image.Resampling.LANCZOS)
    left, top = (nw - w) // 2, (nh - h) // 2
    return image.crop((left, top, left + w, top + h))


def load_image(
    source: ImageSource,
    size: int | tuple[int, int] | None = None,
    *,
    model: ImageModel | None = None,
    channels: int | None = None,
) -> torch.Tensor:
    """Load an image into model range: (1, C, H, W) float in [-1, 1].

    Args:
        source: a file path, a ``PIL.Image``, or a numpy array (H, W[, 1 | 3 | 4]) of uint8
            (0..255), uint16 (0..65535) or floats in [0, 1]. Alpha is dropped. 16-bit and float
            grayscale images keep their precision (module doc).
        size: target (height, width) or an int for a square; defaults to the model's image size.
            The image is scaled to cover it and centre-cropped (aspect ratio kept).
        model: a :class:`~pullback_utils.models.diffusion_model.DiffusionModel`: gives size, channels, device, dtype.
        channels: 1 (grayscale) or 3 (RGB); defaults to the model's image channels, else 3.
    """
    if model is not None:
        c_m, h_m, w_m = model.image_shape
        size = (h_m, w_m) if size is None else size
        channels = c_m if channels is None else channels
    channels = 3 if channels is None else channels
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")
    im = _to_pil(source)
    if im.mode in _WIDE_MODES:
        a = _wide_gray(im, size)[:, :, None].repeat(channels, axis=2)
    else:
        im = im.convert("L" if channels == 1 else "RGB")
        if size is not None:
            im = resize_center_crop(im, size)
        a = np.asarray(im, dtype=np.float32)
    if a.ndim == 2:
        a = a[:, :, None]
    x = torch.from_numpy(a.copy()).permute(2, 0, 1).unsqueeze(0) / 127.5 - 1.0
    if model is not None:
        x = x.to(model.device, model.dtype)
    return x


def _wide_gray(im: Image.Image, size: Any) -> np.ndarray:
    """(H, W) float32 in 0..255 of a 16-bit, 32-bit integer or float grayscale image, resized in
    floating point (no rounding to 8 bits)."""
    a = np.asarray(im).astype(np.float64)
    top = _WIDE_MODES[im.mode]
    if not np.isfinite(a).all() or a.min() < 0 or a.max() > top * (1 + 1e-6):
        valid = "0..65535 (read as 16 bits)" if top > 1 else "[0, 1]"
        raise ValueError(
            f"image of mode {im.mode!r} must hold values in {valid}, got "
            f"[{float(np.nanmin(a)):.6g}, {float(np.nanmax(a)):.6g}]; convert it to 8 or 16 bits first"
        )
    f = Image.fromarray((a * (255.0 / top)).astype(np.float32), mode="F")
    if size is not None:
        f = resize_center_crop(f, size)
    return np.clip(np.asarray(f, dtype=np.float32), 0.0, 255.0)  # Lanczos rings a little


def _as_batch(images: torch.Tensor | Sequence[torch.Tensor], name: str = "images") -> torch.Tensor:
    if isinstance(images, torch.Tensor):
        x = images
    elif isinstance(images, (list, tuple)) and images and all(isinstance(i, torch.Tensor) for i in images):
        shapes = {tuple(i.shape[-3:]) if i.dim() >= 3 else tuple(i.shape) for i in images}
        if len(shapes) != 1:
            raise ValueError(f"{name} must all have the same (C, H, W); got shapes {sorted(shapes)}")
        x = torch.cat([i.reshape(-1, *i.shape[-3:]) for i in images])
    else:
        raise TypeError(f"{name} must be a tensor or a non-empty list of tensors, got {type(images).__name__}")
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"{name} must have shape (N, C, H, W) or (C, H, W) with C = 1 or 3, got {tuple(x.shape)}")
    return x


def _to_uint8(x: torch.Tensor, value_range: tuple[float, float]) -> np.ndarray:
    lo, hi = value_range
    if not hi > lo:
        raise ValueError(f"value_range must be (low, high) with high > low, got {value_range!r}")
    finite = torch.isfinite(x.detach())
    if not bool(finite.all()):
        bad = sorted({int(i) for i in torch.nonzero(~finite.flatten(1).all(1)).flatten()})
        raise ValueError(
            f"images {bad[:10]}{' ...' if len(bad) > 10 else ''} contain NaN or infinite values; they would be "
            "written as black or white pixels, so nothing is drawn (find where the NaN arose)"
        )
    y = ((x.detach().float().cpu() - lo) / (hi - lo)).clamp(0, 1)
    return (y * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def to_pil(
    images: torch.Tensor | Sequence[torch.Tensor], value_range: tuple[float, float] = (-1.0, 1.0)
) -> list[Image.Image]:
    """(N, C, H, W) tensors in ``value_range`` (default model range) -> N PIL images (clamped)."""
    a = _to_uint8(_as_batch(images), value_range)
    return [Image.fromarray(i[:, :, 0] if i.shape[2] == 1 else i) for i in a]


def make_grid(
    images: torch.Tensor | Sequence[torch.Tensor],
    nrow: int = 8,
    *,
    padding: int = 2,
    pad_value: float = 1.0,
    value_range: tuple[float, float] = (-1.0, 1.0),
    scale: int = 1,
) -> Image.Image:
    """A PIL grid of ``images`` (N, C, H, W), ``nrow`` images per row, ``padding`` px between.

    The canvas is ``cols * W + (cols + 1) * padding`` wide and ``rows * H + (rows + 1) * padding``
    high, with ``cols = min(nrow, N)`` and ``rows = ceil(N / nrow)``; image ``i`` sits in row ``i // nrow``,
    column ``i % nrow``.
    ``pad_value`` is in [0, 1] (1 = white). ``scale`` (an int >= 1) enlarges the whole canvas by
    that factor with nearest-neighbour upscaling (each pixel becomes a ``scale`` x ``scale`` block).
    """
    check_int(nrow, "nrow", 1), check_int(scale, "scale", 1), check_int(padding, "padding", 0)
    x = _as_batch(images)
    n, c, h, w = x.shape
    cols = min(int(nrow), n)
    rows = math.ceil(n / nrow)
    a = _to_uint8(x, value_range)
    fill = int(round(float(np.clip(pad_value, 0, 1)) * 255))
    canvas = np.full((rows * h + (rows + 1) * padding, cols * w + (cols + 1) * padding, c), fill, np.uint8)
    for i in range(n):
        r, q = divmod(i, int(nrow))
        top, left = padding + r * (h + padding), padding + q * (w + padding)
        canvas[top : top + h, left : left + w] = a[i]
    if scale > 1:
        canvas = canvas.repeat(int(scale), axis=0).repeat(int(scale), axis=1)
    return Image.fromarray(canvas[:, :, 0] if c == 1 else canvas)


def save_grid(
    images: torch.Tensor | Sequence[torch.Tensor],
    path: str | os.PathLike,
    nrow: int = 8,
    **kwargs: Any,
) -> Image.Image:
    """Save :func:`make_grid` of ``images`` (model range [-1, 1] by default) to ``path``; returns it.

    The format follows the file suffix (``.png`` recommended); parent folders are created.
    """
    grid = make_grid(images, nrow, **kwargs)
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)
    return grid
