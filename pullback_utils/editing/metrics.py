"""Measures of an edit.

Image-space, any model:

- :func:`change_size`: RMS change of the image;
- :func:`change_frequency`: energy-weighted mean radial frequency of the change (low = global,
  high = local/detail);
- :func:`distance_from_data`: the model's own denoising error on the result (small for images the
  model finds typical; the model judges its own output, so use it with the measures below);
- :func:`match_naive`: the naive step ``x_t + alpha v`` with the same size of change as an edit.

Model-independent, for the procedural zoo datasets (their renderer is the judge, not the network):

- :func:`renderer_residual`: RMS between an image and the best-fitting rendering of its dataset's
  renderer (:func:`pullback_utils.zoo.fitting.fit_factors`): about 0 for an image the renderer can
  draw, large for artefacts and noise;
- :func:`renderer_iou`: foreground IoU of the image and that rendering
  (:func:`pullback_utils.zoo.fitting.foreground_iou`): 1 when the image's shape *is* a clean shape.

And in h-space: :func:`h_alignment`, the cosine between the h-space change ``J (x_new - x_t)`` of an
edit and a tangent vector ``u`` (e.g. the basis's ``u_i``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import torch

from pullback_utils._validate import check_batch, check_int, check_real
from pullback_utils.analysis.spectra import mean_frequency
from pullback_utils.diffusion.ddim import Prompt, Time
from pullback_utils.editing.checks import _check_range, check_edit_time, direction_batch, state_batch
from pullback_utils.editing.guidance import _cosine_rows, feature_jvp_fd
from pullback_utils.editing.pipeline import finish

if TYPE_CHECKING:  # pragma: no cover
    from pullback_utils.models.diffusion_model import DiffusionModel

__all__ = [
    "change_size",
    "change_frequency",
    "distance_from_data",
    "match_naive",
    "match_naive_batch",
    "renderer_fit",
    "renderer_residual",
    "renderer_iou",
    "h_alignment",
]

DEFAULT_STRENGTHS: tuple[float, ...] = (0.5, 1, 2, 4, 8, 16, 32, 64)


# --------------------------------------------------------------------------------------------------
# image-space measures
# --------------------------------------------------------------------------------------------------
def _pair(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
        raise TypeError("images must be torch.Tensors")
    a = a.unsqueeze(0) if a.dim() == 3 else a
    b = b.unsqueeze(0) if b.dim() == 3 else b
    if a.dim() != 4 or b.dim() != 4:
        raise ValueError(f"images must have shape (B, C, H, W), got {tuple(a.shape)} and {tuple(b.shape)}")
    a, b = torch.broadcast_tensors(a.double(), b.double())
    return a, b


def change_size(edited: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """(B,) RMS per-pixel change ``sqrt(mean((edited - original)^2))`` (model range [-1, 1])."""
    a, b = _pair(edited, original)
    return (a - b).pow(2).mean(dim=(1, 2, 3)).sqrt()


def change_frequency(edited: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """(B,) energy-weighted mean radial frequency (cycles per image) of the change.

    Low values: a global change (colour, position, size); high values: local detail. NaN where
    the images are identical (no change, no frequency). See :func:`pullback_utils.analysis.spectra.mean_frequency`.
    """
    a, b = _pair(edited, original)
    diff = a - b
    out = torch.full((diff.shape[0],), float("nan"), dtype=torch.float64)
    nz = diff.pow(2).sum(dim=(1, 2, 3)) > 0
    if nz.any():
        out[nz] = mean_frequency(diff[nz]).cpu()
    return out


@torch.no_grad()
def distance_from_data(
    model: "DiffusionModel",
    x0: torch.Tensor,
    *,
    times: Sequence[Time] = (0.1, 0.2, 0.3),
    n_noise: int = 2,
    seed: int = 0,
    prompt: Prompt = None,
) -> torch.Tensor:
    """(B,) the model's own denoising error on ``x0``: how atypical the images are for the model.

    For each time ``t`` in ``times`` and ``n_noise`` noise draws (the same draws for every image, so
    comparisons are paired), noise ``x0`` to ``x_t = sqrt(a) x0 + sqrt(1 - a) e``, predict the clean
    image ``x0_hat`` (:meth:`DiffusionModel.predict`; ``(x_t - sqrt(1 - a) eps) / sqrt(a)`` for VP models),
    and return the RMS of
    ``x0_hat - x0`` averaged over times and draws. Images on the data manifold are denoised back
    almost exactly; off-manifold edits (noise, artefacts) are not. ``x0``: ``(B, *sample_shape)``
    (latents for latent models).
    """
    if not isinstance(x0, torch.Tensor):
        raise TypeError(f"x0 must be a torch.Tensor, got {type(x0).__name__}")
    x0 = x0.unsqueeze(0) if x0.dim() == len(model.sample_shape) else x0
    check_batch(x0, model.sample_shape, "x0", "x_0")
    n_noise = check_int(n_noise, "n_noise", 1)
    levels = [check_edit_time(model, t, "times") for t in times]
    if not levels:
        raise ValueError("times must not be empty")
    x0 = x0.to(model.device, model.dtype)
    gen = torch.Generator().manual_seed(int(seed))
    total = torch.zeros(x0.shape[0], dtype=torch.float64)
    for n in levels:
        a, sg = model.coefficients(n)  # x_t = a x0 + sg eps (VP and flow-matching models alike)
        for _ in range(n_noise):
            e = torch.randn(model.sample_shape, generator=gen).to(model.device, model.dtype)
            xt = a * x0 + sg * e
            x0_hat, _ = model.predict(xt, n, prompt)
            total += (x0_hat - x0).double().pow(2).mean(dim=(1, 2, 3)).sqrt().cpu()
    return total / (len(levels) * n_noise)


# --------------------------------------------------------------------------------------------------
# the naive step of a given size of change
# --------------------------------------------------------------------------------------------------
def _interpolate(bracket: tuple[float, float, float, float]) -> float:
    """The zero of the line through (lo_a, lo_f) and (hi_a, hi_f), f = size - target (lo_f < 0 <= hi_f)."""
    lo_a, lo_f, hi_a, hi_f = bracket
    return lo_a + (hi_a - lo_a) * (-lo_f) / max(hi_f - lo_f, 1e-12)


@torch.no_grad()
def match_naive_batch(
    model: "DiffusionModel",
    x_t: torch.Tensor,
    t: Time,
    directions: torch.Tensor,
    targets: Sequence[float] | torch.Tensor,
    originals: torch.Tensor,
    *,
    strengths: Sequence[float] = DEFAULT_STRENGTHS,
    sampling_steps: int = 20,
    prompt: Prompt = None,
    eta_below: float | None = None,
    seed: int = 0,
    rtol: float | None = None,
    max_refine: int = 4,
) -> dict[str, Any]:
    """:func:`match_naive` for P pairs at once (one finish of all P x S naive steps, one per refinement).

    Args:
        x_t: ``(P | 1, *sample_shape)`` states at ``t``; directions: ``(P, *sample_shape)`` unit directions.
        targets: P RMS changes (model range) to match; originals: ``(P | 1, *image_shape)`` unedited images.
        strengths: the grid of ``alpha`` (> 0) finished first.
        rtol: when given, after the linear interpolation refine ``alpha`` inside its bracket (regula
            falsi, Illinois variant) until ``|size - target| <= rtol * target`` or ``max_refine``
            more finishes.

    Returns:
        dict of per-pair results: ``alpha`` (P,), ``x0`` ``(P, *sample_shape)``, ``image`` ``(P, *image_shape)``,
        ``size`` (P,) achieved, ``matched`` (P,) bool (False: no strength reached the target, the
        largest was used), ``grid`` P lists of (alpha, size).
    """
    alphas = sorted(check_real(a, "strengths", positive=True) for a in strengths)
    if not alphas:
        raise ValueError("strengths must not be empty")
    tg = [check_real(float(v), "target", nonneg=True) for v in torch.as_tensor(targets).reshape(-1).tolist()]
    d = direction_batch(model, directions)
    x = state_batch(model, x_t)
    p = d.shape[0]
    if len(tg) != p or x.shape[0] not in (1, p):
        raise ValueError(f"x_t (batch {x.shape[0]}), directions ({p}) and targets ({len(tg)}) must match")
    x = x.expand(p, *x.shape[1:])
    if not isinstance(originals, torch.Tensor):
        raise TypeError(f"originals must be a torch.Tensor, got {type(originals).__name__}")
    orig = originals.unsqueeze(0) if originals.dim() == 3 else originals
    if orig.shape[0] not in (1, p):
        raise ValueError(f"originals (batch {orig.shape[0]}) must hold 1 or {p} images")
    orig = orig.expand(p, *orig.shape[1:])
    rtol = None if rtol is None else check_real(rtol, "rtol", positive=True)
    max_refine = check_int(max_refine, "max_refine", 0)
    kw = dict(sampling_steps=sampling_steps, prompt=prompt, eta_below=eta_below, seed=seed)

    def finished(rows: list[int], a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x0 (R * S, ...), images (R * S, ...) and sizes (R, S) of x_i + a_ij d_i for the R ``rows``
        and a (R, S), finished in one batch."""
        r, s = a.shape
        xs = (x[rows, None] + a.to(x)[:, :, None, None, None] * d[rows, None]).reshape(r * s, *x.shape[1:])
        x0 = finish(model, xs, t, **kw)
        img = model.to_image(x0)
        return x0, img, change_size(img, orig[rows].repeat_interleave(s, 0)).reshape(r, s)

    every = list(range(p))
    _, _, sizes = finished(every, torch.tensor([alphas] * p))
    grids = [list(zip(alphas, row)) for row in sizes.tolist()]
    brackets: list[tuple[float, float, float, float] | None] = []  # (lo_a, lo_f, hi_a, hi_f)
    for g, target in zip(grids, tg):
        lo, br = (0.0, -target), None
        for a, s in g:
            if s >= target:
                br = (lo[0], lo[1], a, s - target)
                break
            lo = (a, s - target)
        brackets.append(br)
    matched = [b is not None for b in brackets]
    alpha = [_interpolate(b) if b else alphas[-1] for b in brackets]
    x0, img, size = finished(every, torch.tensor(alpha)[:, None])
    size = size[:, 0]
    kept: list[str | None] = [None] * p  # which end of the bracket the last refinement kept
    for _ in range(max_refine if rtol is not None else 0):
        todo = [i for i in every if matched[i] and abs(float(size[i]) - tg[i]) > rtol * tg[i]]
        if not todo:
            break
        for i in todo:  # replace one end of the bracket with the point just finished
            lo_a, lo_f, hi_a, hi_f = brackets[i]
            f = float(size[i]) - tg[i]
            if f < 0:
                brackets[i] = (alpha[i], f, hi_a, hi_f / 2 if kept[i] == "hi" else hi_f)
                kept[i] = "hi"
            else:
                brackets[i] = (lo_a, lo_f / 2 if kept[i] == "lo" else lo_f, alpha[i], f)
                kept[i] = "lo"
            alpha[i] = _interpolate(brackets[i])
        x0_r, img_r, size_r = finished(todo, torch.tensor([alpha[i] for i in todo])[:, None])
        x0[todo], img[todo], size[todo] = x0_r, img_r, size_r[:, 0]
    return {
        "alpha": torch.tensor(alpha, dtype=torch.float64),
        "x0": x0,
        "image": img,
        "size": size,
        "matched": torch.tensor(matched),
        "grid": grids,
    }


@torch.no_grad()
def match_naive(
    model: "DiffusionModel",
    x_t: torch.Tensor,
    t: Time,
    direction: torch.Tensor,
    target: float,
    original: torch.Tensor,
    *,
    strengths: Sequence[float] = DEFAULT_STRENGTHS,
    sampling_steps: int = 20,
    prompt: Prompt = None,
    eta_below: float | None = None,
    seed: int = 0,
    rtol: float | None = None,
    max_refine: int = 4,
) -> dict[str, Any]:
    """The naive step ``x_t + alpha v`` whose finished image changes by ``target`` (RMS) from ``original``.

    Finishes every ``alpha`` of ``strengths`` (one batch), interpolates the change size linearly
    between the two that bracket ``target`` (from ``(0, 0)`` below the first) and finishes that
    ``alpha``. If no strength reaches it, the largest is used (``matched`` False). With ``rtol``, the
    interpolation is refined inside the bracket (:func:`match_naive_batch`).

    Args:
        x_t: ``(1, *sample_shape)`` state at ``t``; direction: unit ``(*sample_shape)``.
        target: RMS change (model range) to match, e.g. ``change_size(edit, original)``.
        original: ``(1, *image_shape)`` the unedited image.

    Returns:
        dict: ``alpha``, ``x0`` ``(1, *sample_shape)``, ``image`` ``(1, *image_shape)``, ``size`` (achieved),
        ``matched`` (bool), ``grid`` (list of (alpha, size)).
    """
    target = check_real(target, "target", nonneg=True)
    d = direction_batch(model, direction)[:1]
    out = match_naive_batch(
        model,
        x_t,
        t,
        d,
        [target],
        original,
        strengths=strengths,
        sampling_steps=sampling_steps,
        prompt=prompt,
        eta_below=eta_below,
        seed=seed,
        rtol=rtol,
        max_refine=max_refine,
    )
    return {
        "alpha": float(out["alpha"][0]),
        "x0": out["x0"],
        "image": out["image"],
        "size": float(out["size"][0]),
        "matched": bool(out["matched"][0]),
        "grid": out["grid"][0],
    }


# --------------------------------------------------------------------------------------------------
# model-independent measures (procedural zoo datasets)
# --------------------------------------------------------------------------------------------------
def _family(dataset: Any) -> str:
    """The renderer family fitted to ``dataset`` (:func:`pullback_utils.zoo.fitting.fit_family`)."""
    from pullback_utils.zoo.datasets import DATASETS
    from pullback_utils.zoo.fitting import fit_family

    family = fit_family(dataset) if isinstance(dataset, str) else None
    if family is None:
        valid = [d for d in DATASETS if fit_family(d)]
        raise ValueError(
            f"dataset: renderer measures need a zoo dataset with a fitted renderer, one of {valid}; got {dataset!r}"
        )
    return family


def _zoo_images(images: Any) -> torch.Tensor:
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or tuple(images.shape[1:]) != (3, 32, 32):
        got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a (N, 3, 32, 32) tensor of zoo images in [-1, 1], got {got}")
    _check_range(images, "images")
    return images


def renderer_fit(images: torch.Tensor, dataset: str, *, iters: int = 100, progress: bool = False) -> dict:
    """The best fit of ``dataset``'s renderer to ``images`` (N, 3, 32, 32) in [-1, 1]
    (:func:`pullback_utils.zoo.fitting.fit_factors`): ``rmse`` (N,), ``factors``, (shapes) ``shape``."""
    from pullback_utils.zoo.fitting import fit_factors

    family = _family(dataset)
    return fit_factors(family, _zoo_images(images), iters=check_int(iters, "iters", 1), progress=progress)


def _fit_for(images: torch.Tensor, dataset: str, fit: dict | None, iters: int, progress: bool) -> dict:
    if fit is None:
        return renderer_fit(images, dataset, iters=iters, progress=progress)
    _family(dataset)
    _zoo_images(images)
    if not isinstance(fit, dict) or "factors" not in fit or "rmse" not in fit or len(fit["factors"]) != len(images):
        raise ValueError(f"fit must be renderer_fit(images, dataset) of these {len(images)} images")
    return fit


def renderer_residual(
    images: torch.Tensor, dataset: str, *, fit: dict | None = None, iters: int = 100, progress: bool = False
) -> torch.Tensor:
    """(N,) RMS per pixel between each image and its best-fitting rendering, in pixel units [0, 1]
    (the unit of the zoo cards' ``FIDELITY_RMSE`` = 0.04). ``fit``: a :func:`renderer_fit` of the
    same images, to share one fit with :func:`renderer_iou`."""
    return _fit_for(images, dataset, fit, iters, progress)["rmse"]


def renderer_iou(
    images: torch.Tensor, dataset: str, *, fit: dict | None = None, iters: int = 100, progress: bool = False
) -> torch.Tensor:
    """(N,) foreground IoU in [0, 1] of each image and its best-fitting rendering
    (:func:`pullback_utils.zoo.fitting.foreground_iou`; the zoo cards count >= 0.9 as a clean shape)."""
    from pullback_utils.zoo.fitting import foreground_iou

    f = _fit_for(images, dataset, fit, iters, progress)
    return foreground_iou(_family(dataset), images, f)


# --------------------------------------------------------------------------------------------------
# h-space
# --------------------------------------------------------------------------------------------------
@torch.no_grad()
def h_alignment(
    model: "DiffusionModel",
    x_t: torch.Tensor,
    t: Time,
    change: torch.Tensor,
    u: torch.Tensor,
    *,
    prompt: Prompt = None,
    layer: str = "mid",
    fd_step: float = 1e-2,
) -> torch.Tensor:
    """(B,) cosine between the h-space change ``J (x_new - x_t)`` of an edit and a tangent ``u``.

    ``change``: ``(B, *sample_shape)`` ``x_new - x_t`` (e.g. ``iterates[-1] - iterates[0]``), with
    ``x_t`` ``(1 | B, *sample_shape)``; ``u``: ``(*h_shape)`` for every row, or ``(B, *h_shape)``. Each change
    is scaled to unit length and pushed through the feature map's Jacobian at ``(x_t, t)`` by a
    central difference with step ``fd_step`` (:func:`~pullback_utils.editing.guidance.feature_jvp_fd`;
    ``J`` is linear, so the cosine is that of ``J (x_new - x_t)``). NaN where the change is zero.
    """
    c = direction_batch(model, change, "change").double()
    norm = c.flatten(1).norm(dim=1)
    unit = (c / norm.clamp_min(1e-30).view(-1, *([1] * (c.dim() - 1)))).to(model.dtype)
    jw = feature_jvp_fd(model, x_t, t, unit, prompt=prompt, layer=layer, fd_step=fd_step)
    cos = _cosine_rows(jw, u, layer)
    return torch.where(norm.to(cos.device) > 0, cos, torch.full_like(cos, float("nan")))
