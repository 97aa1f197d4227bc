"""Explain an image by the renderer of its dataset: fit the factors, then score the shape.

A *family* names the renderer that is fitted: ``"disks"``, ``"shapes"`` (also for ``shapes-text``)
or a ladder rung ``"ladder-1"`` ... ``"ladder-5"`` (:func:`fit_family` maps a dataset to it).

- :func:`fit_factors` fits the family's free factors to images by Adam from moment-based starts
  (shapes: every shape type and several starting rotations; ladder rung 5: the foreground split
  into two disks by colour and by position, each in both painting orders), keeping the best start;
- :func:`foreground_iou` asks whether the image's shape *is* the fitted rendering's: intersection
  over union of their foregrounds, a pixel being foreground when its colour is nearer one of the
  fitted shape colours than the fitted background colour (one rule for image and rendering; for one
  shape it is "more than halfway from the background to the shape colour along their axis");
- :func:`visible` says whether each fitted shape stands out (contrast and size thresholds).

Images: (N, 3, 32, 32) in [-1, 1]; errors and colours in pixel range [0, 1].
"""

from __future__ import annotations

import math

import torch

from pullback_utils.zoo import ladder
from pullback_utils.zoo.datasets import render
from pullback_utils.zoo.vocab import RESOLUTION, SHAPES

__all__ = [
    "FIT_ROTATIONS",
    "VISIBLE_CONTRAST",
    "VISIBLE_SIZE",
    "fit_family",
    "fit_factors",
    "shape_layout",
    "visible",
    "foreground_iou",
]

FIT_ROTATIONS = {
    "circle": (0.0,),
    "square": (0.0, math.pi / 4),
    "triangle": (0.0, math.pi / 3, 2 * math.pi / 3),
    "plus": (0.0, math.pi / 4),
}
#: A fitted shape is visible when its colour differs from the background by more than this (RGB
#: distance, [0, 1] units) and its size is at least :data:`VISIBLE_SIZE` (image widths).
VISIBLE_CONTRAST = 0.25
VISIBLE_SIZE = 0.08
_FAMILIES = ("disks", "shapes") + tuple(ladder.dataset_name(r) for r in ladder.RUNGS)
_AREA_COEF = torch.tensor([math.pi, 2.0, 3 * math.sqrt(3) / 4, 2.31])  # area / size^2 per shape


def fit_family(dataset: str) -> str | None:
    """The renderer family fitted to samples of ``dataset``, or ``None`` (scenes, textures)."""
    if dataset == "shapes-text":
        return "shapes"
    return dataset if dataset in _FAMILIES else None


def _check_family(family: str) -> str:
    if family not in _FAMILIES:
        raise ValueError(f"family: fitting is defined for {list(_FAMILIES)}, got {family!r}")
    return family


def _blobs(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Centroid cx, cy (N,), area (N,) as a fraction of the image, and mean colour (N, 3) of the
    pixels in ``mask`` (N, H, W) of images ``x`` (N, 3, H, W) in [0, 1]."""
    g = (torch.arange(RESOLUTION) + 0.5) / RESOLUTION
    msum = mask.sum((1, 2)).clamp_min(1.0)
    cx = (mask * g[None, None, :]).sum((1, 2)) / msum
    cy = (mask * g[None, :, None]).sum((1, 2)) / msum
    area = mask.sum((1, 2)).clamp_min(4.0) / RESOLUTION**2
    colour = (x * mask[:, None]).sum((2, 3)) / msum[:, None]
    return cx, cy, area, colour


def _border_median(x: torch.Tensor) -> torch.Tensor:
    border = torch.cat([x[:, :, 0], x[:, :, -1], x[:, :, :, 0], x[:, :, :, -1]], dim=2)
    return border.median(dim=2).values


def _two_means(points: torch.Tensor, iters: int = 10) -> torch.Tensor:
    """Labels (P,) in {0, 1} of a 2-means clustering of ``points`` (P, d), started from the two
    points at the ends of their principal axis."""
    if len(points) < 2:
        return torch.zeros(len(points), dtype=torch.long)
    c = points - points.mean(0)
    axis = torch.linalg.svd(c, full_matrices=False).Vh[0]
    proj = c @ axis
    centres = torch.stack([points[proj.argmin()], points[proj.argmax()]])
    for _ in range(iters):
        lab = torch.cdist(points, centres).argmin(1)
        for k in (0, 1):
            if bool((lab == k).any()):
                centres[k] = points[lab == k].mean(0)
    return torch.cdist(points, centres).argmin(1)


def _shape_starts(family: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Starts of the ``disks`` / ``shapes`` fit: (image index (S,), factors (S, K), shape (S,))."""
    n = len(x)
    bg = _border_median(x) if family == "shapes" else torch.zeros(n, 3)
    mask = ((x - bg[:, :, None, None]).norm(dim=1) > VISIBLE_CONTRAST).float()
    cx, cy, area, fg = _blobs(x, mask)
    hyp = [
        (i, k, r)
        for i in range(n)
        for k in (range(len(SHAPES)) if family == "shapes" else (0,))
        for r in (FIT_ROTATIONS[SHAPES[k]] if family == "shapes" else (0.0,))
    ]
    hi = torch.tensor([h[0] for h in hyp])
    hk = torch.tensor([h[1] for h in hyp])
    size0 = (area[hi] / _AREA_COEF[hk]).sqrt().clamp(0.06, 0.35)
    if family == "disks":
        f0 = torch.cat([cx[hi, None], cy[hi, None], size0[:, None], fg[hi]], 1)
    else:
        f0 = torch.cat(
            [cx[hi, None], cy[hi, None], size0[:, None], torch.tensor([h[2] for h in hyp])[:, None], fg[hi], bg[hi]], 1
        )
    return hi, f0, hk


def _ladder_starts(rung: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Starts of a ladder rung's fit: (image index (S,), free factors (S, K)). Rung 5: four per
    image (foreground split into two disks by colour and by position, both painting orders)."""
    n, k = len(x), ladder.n_factors(rung)
    fixed = torch.tensor(ladder.FIXED)
    bg = _border_median(x) if rung >= 4 else fixed[6:9].expand(n, 3)
    mask = ((x - bg[:, :, None, None]).norm(dim=1) > VISIBLE_CONTRAST).float()

    def disk(m: torch.Tensor) -> torch.Tensor:  # (N, 6): cx, cy, radius, r, g, b of each blob
        cx, cy, area, colour = _blobs(x, m)
        return torch.cat([cx[:, None], cy[:, None], (area / math.pi).sqrt().clamp(0.06, 0.35)[:, None], colour], 1)

    if rung < 5:
        full = torch.cat([disk(mask), bg, fixed[9:].expand(n, 6)], 1)
        return torch.arange(n), full[:, :k]
    g = (torch.arange(RESOLUTION) + 0.5) / RESOLUTION
    yy, xx = torch.meshgrid(g, g, indexing="ij")
    splits = []
    for by_colour in (True, False):
        m1, m2 = torch.zeros_like(mask), torch.zeros_like(mask)
        for i in range(n):
            on = mask[i] > 0
            pts = x[i][:, on].T if by_colour else torch.stack([xx[on], yy[on]], 1)
            lab = _two_means(pts)
            m1[i][on], m2[i][on] = (lab == 0).float(), (lab == 1).float()
        splits.append((disk(m1), disk(m2)))
    starts = [torch.cat([a, bg, b], 1) for d1, d2 in splits for a, b in ((d1, d2), (d2, d1))]
    return torch.arange(n).repeat(len(starts)), torch.cat(starts)


def _render_fit(family: str, factors: torch.Tensor, shape: torch.Tensor | None) -> torch.Tensor:
    return render(family, factors, {"shape": shape} if family == "shapes" else None)


def fit_factors(family: str, images: torch.Tensor, iters: int = 100, lr: float = 0.015, progress: bool = True) -> dict:
    """Fit the renderer of ``family`` to ``images`` (N, 3, 32, 32) in [-1, 1] (Adam on the per-pixel
    squared error from every start, keeping the best start per image).

    Returns ``rmse`` (N,) per-pixel RMS error in [0, 1] units, ``factors`` (N, K) (the family's
    factor layout: ``datasets.FACTOR_NAMES``) and, for shapes, ``shape`` (N,).
    """
    from tqdm.auto import tqdm

    _check_family(family)
    x = (images.detach().float().cpu().clamp(-1, 1) + 1) / 2
    n = len(x)
    if family in ("disks", "shapes"):
        hi, f0, hk = _shape_starts(family, x)
    else:
        (hi, f0), hk = _ladder_starts(ladder.rung_of(family), x), None
    f = f0.clone().requires_grad_(True)
    target = x[hi] * 2 - 1
    opt = torch.optim.Adam([f], lr=lr)
    for _ in tqdm(range(iters), desc=f"fit {family}", disable=not progress):
        opt.zero_grad()
        loss = ((_render_fit(family, f, hk) - target) ** 2).mean(dim=(1, 2, 3))
        loss.sum().backward()
        opt.step()
    with torch.no_grad():
        err = ((_render_fit(family, f, hk) - target) / 2).pow(2).mean(dim=(1, 2, 3)).sqrt()
    # per image (the starts with hi == i), the first start that reaches the lowest error
    err_img = torch.full((n,), float("inf")).scatter_reduce(0, hi, err, "amin")
    s_all = len(hi)
    first = torch.where(err == err_img[hi], torch.arange(s_all), s_all)
    best = torch.full((n,), s_all).scatter_reduce(0, hi, first, "amin")
    out = {"rmse": err_img, "factors": f.detach()[best]}
    if family == "shapes":
        out["shape"] = hk[best]
    return out


def shape_layout(family: str, factors: torch.Tensor) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
    """Background colour (N, 3) and, per shape of the family, (colour (N, 3), size (N,)) of
    factors (N, K) in the family's layout (ladder: the rung's fixed factors filled in)."""
    _check_family(family)
    f = factors
    if family == "disks":
        return torch.zeros_like(f[:, 3:6]), [(f[:, 3:6], f[:, 2])]
    if family == "shapes":
        return f[:, 7:10], [(f[:, 4:7], f[:, 2])]
    rung = ladder.rung_of(family)
    full = ladder.full_factors(rung, f)
    disks = [(full[:, 3:6], full[:, 2])] + ([(full[:, 12:15], full[:, 11])] if rung == 5 else [])
    return full[:, 6:9], disks


def visible(family: str, fit: dict) -> torch.Tensor:
    """(N,) bool: every fitted shape differs from the fitted background by more than
    :data:`VISIBLE_CONTRAST` and has size >= :data:`VISIBLE_SIZE`."""
    bg, shapes = shape_layout(family, fit["factors"])
    ok = torch.ones(len(bg), dtype=torch.bool)
    for colour, size in shapes:
        ok &= ((colour - bg).norm(dim=1) > VISIBLE_CONTRAST) & (size >= VISIBLE_SIZE)
    return ok


def foreground_iou(family: str, images: torch.Tensor, fit: dict) -> torch.Tensor:
    """Intersection over union of the images' foreground and the fitted rendering's, (N,) in [0, 1].

    A pixel is foreground when its colour is nearer one of the fitted shape colours than the fitted
    background colour (the same rule for the image and for the rendering of the fit), so the score
    ignores the background that dominates the per-pixel RMS error and asks whether the image's
    shape *is* the fitted disk / square / ... (ladder rung 5: the union of both disks).
    images: (N, 3, 32, 32) in [-1, 1]; fit: :func:`fit_factors` output for them (or the true
    factors, with ``shape`` for shapes). An empty union (no foreground in either) scores 0.
    """
    ff = fit["factors"]
    bg, shapes = shape_layout(family, ff)
    x = (images.detach().float().cpu().clamp(-1, 1) + 1) / 2
    with torch.no_grad():
        r = (_render_fit(family, ff, fit.get("shape")) + 1) / 2

    def fore(img: torch.Tensor) -> torch.Tensor:
        d_bg = (img - bg[:, :, None, None]).pow(2).sum(1)
        d_fg = torch.stack([(img - c[:, :, None, None]).pow(2).sum(1) for c, _ in shapes]).min(0).values
        return d_fg < d_bg

    a, b = fore(x), fore(r)
    inter = (a & b).sum((1, 2)).float()
    union = (a | b).sum((1, 2)).float()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.zeros_like(union))
