"""Differentiable rendering primitives of the procedural datasets (soft, anti-aliased shapes).

Coverage of a pixel by a shape is ``sigmoid(signed distance / EDGE_SOFTNESS)``, so every image is a
smooth function of its continuous factors and the data manifold's tangent space at an image is the
renderer's Jacobian (:func:`factor_jacobian`).

Shapes: pixel grids ``(2, R, R)``; signed distances and coverages ``(N, R, R)`` for ``N`` shapes;
``R = RESOLUTION``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from pullback_utils.zoo.vocab import EDGE_SOFTNESS, RESOLUTION, SHAPES

__all__ = ["pixel_grid", "shape_sdf", "coverage", "disk_coverage", "hsv_to_rgb", "jacobian_columns"]


def pixel_grid(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Pixel centres, (2, R, R): [0] = x (column), [1] = y (row, pointing down), in (0, 1)."""
    c = (torch.arange(RESOLUTION, device=device, dtype=dtype) + 0.5) / RESOLUTION
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([xx, yy])


def shape_sdf(
    kind: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor, size: torch.Tensor, rot: torch.Tensor
) -> torch.Tensor:
    """Signed distance (positive inside, image-width units) of each shape to every pixel centre.

    kind: (N,) long index into :data:`~pullback_utils.zoo.vocab.SHAPES`; cx, cy, size, rot: (N,).
    Returns (N, R, R). ``size`` is the circumradius (the circle's radius; half the square's
    diagonal; the plus's arm reach). Exact inside the shapes and along edge normals, which is all a
    soft edge needs.
    """
    g = pixel_grid(cx.device, cx.dtype)
    dx = g[0][None] - cx[:, None, None]
    dy = g[1][None] - cy[:, None, None]
    c, s = torch.cos(rot)[:, None, None], torch.sin(rot)[:, None, None]
    u = c * dx + s * dy  # coordinates in the shape's rotated frame
    v = -s * dx + c * dy
    sz = size[:, None, None]
    out = torch.empty_like(dx)
    for k in range(len(SHAPES)):
        sel = kind == k
        if bool(sel.any()):
            out = out.index_put((sel,), _sdf_one(k, dx[sel], dy[sel], u[sel], v[sel], sz[sel]))
    return out


def _sdf_one(
    k: int, dx: torch.Tensor, dy: torch.Tensor, u: torch.Tensor, v: torch.Tensor, sz: torch.Tensor
) -> torch.Tensor:
    """Signed distance of shape ``SHAPES[k]``; u, v: pixel offsets in the shape's rotated frame."""
    if k == 0:  # circle of radius size
        return sz - torch.sqrt(dx * dx + dy * dy + 1e-12)
    if k == 1:  # square of half-diagonal size
        half = sz / math.sqrt(2.0)
        return torch.minimum(half - u.abs(), half - v.abs())
    if k == 2:  # equilateral triangle, apex up before rotation: three edge half-planes, apothem size/2
        ap = sz / 2.0
        tri = None
        for j in range(3):
            ang = math.pi / 2 + 2 * math.pi * j / 3  # outward normals at 90, 210, 330 degrees
            nx, ny = math.cos(ang), -math.sin(ang)  # y points down
            d = ap - (u * nx + v * ny)
            tri = d if tri is None else torch.minimum(tri, d)
        return tri
    arm = sz * 0.35  # plus: two bars of half-length size and half-width 0.35 size
    return torch.maximum(torch.minimum(sz - u.abs(), arm - v.abs()), torch.minimum(arm - u.abs(), sz - v.abs()))


def coverage(sd: torch.Tensor) -> torch.Tensor:
    """Soft coverage in (0, 1) of a signed distance field."""
    return torch.sigmoid(sd / EDGE_SOFTNESS)


def disk_coverage(cx: torch.Tensor, cy: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    """(N, 1, R, R) soft coverage of disks with centres ``(cx, cy)`` and radii ``radius``, each (N,)."""
    kind = torch.zeros(cx.shape[0], dtype=torch.long, device=cx.device)
    return coverage(shape_sdf(kind, cx, cy, radius, torch.zeros_like(cx)))[:, None]


def hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """h, s, v: (N,) in [0, 1] -> (N, 3) RGB in [0, 1]."""
    k = torch.stack([(5 + h * 6) % 6, (3 + h * 6) % 6, (1 + h * 6) % 6], dim=1)
    return v[:, None] - v[:, None] * s[:, None] * torch.clamp(torch.minimum(k, 4 - k), 0, 1)


def jacobian_columns(render_fn: Callable[[torch.Tensor], torch.Tensor], factors: torch.Tensor) -> torch.Tensor:
    """Per-image Jacobian of ``render_fn`` (factors (N, K) -> images (N, ...)): (N, prod(...), K).

    Column k is d image / d factor k (flattened), computed by forward-mode AD, one factor at a time.
    """
    n, k = factors.shape
    cols = []
    for j in range(k):
        e = torch.zeros_like(factors)
        e[:, j] = 1
        _, jv = torch.func.jvp(render_fn, (factors,), (e,))
        cols.append(jv.reshape(n, -1))
    return torch.stack(cols, dim=-1)
