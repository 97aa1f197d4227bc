"""The known data manifold of a procedural dataset: its tangent spaces, and energy fractions in them.

For the procedural zoo datasets (``disks``, ``shapes``, ``scenes``, the ladder ``ladder-1..5``) every
image is ``render(factors)`` with a differentiable renderer, so the true tangent space of the data
manifold at an image is the span of the renderer's derivatives with respect to its continuous factors
(:func:`pullback_utils.zoo.datasets.factor_jacobian`). This module measures how much of a set of
directions (a local latent basis, random directions, local PCA of nearby data) lies in such a span.

Shapes (``D`` = number of pixels times channels, e.g. 3*32*32; ``K`` factors; ``r <= K`` the rank of
the tangent space; ``m`` directions):

- a tangent basis ``Q``: ``(r, D)`` float64 with orthonormal rows (:func:`tangent_basis`);
- directions: ``(m, ...)`` with ``prod(...) = D`` (any trailing shape, flattened);
- :func:`energy_fraction` of directions in ``span(Q)``: ``(m,)`` values ``||Q v||^2 / ||v||^2`` in [0, 1];
- a random unit direction has expected energy ``r / D`` (:func:`random_energy`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from pullback_utils._validate import is_int
from pullback_utils.analysis.geometry import principal_angles
from pullback_utils.zoo.datasets import PROCEDURAL

__all__ = [
    "GROUND_TRUTH_DATASETS",
    "tangent_basis",
    "data_tangent_bases",
    "energy_fraction",
    "random_energy",
    "random_energy_mc",
    "smallest_angle",
    "local_pca",
]

#: Zoo datasets with a differentiable renderer (continuous factors): all but ``textures``.
GROUND_TRUTH_DATASETS: tuple[str, ...] = PROCEDURAL


def _as_int(value: Any, name: str, minimum: int) -> int:
    if not is_int(value) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _flat(x: Any, name: str) -> torch.Tensor:
    """(m, ...) tensor/array -> (m, D) float64 tensor."""
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if t.dim() < 2:
        raise ValueError(f"{name} must have shape (m, ...) with at least 2 dimensions, got {tuple(t.shape)}")
    t = t.detach().reshape(t.shape[0], -1).to("cpu", torch.float64)
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} has non-finite values")
    return t


def tangent_basis(jacobian: torch.Tensor, *, rtol: float = 1e-6) -> torch.Tensor:
    """Orthonormal basis of the column span of a Jacobian, with a rank tolerance.

    Args:
        jacobian: ``(D, K)``: column ``j`` is ``d image / d factor j`` (flattened).
        rtol: singular values ``<= rtol * s_max`` count as zero (e.g. the rotation column of a circle,
            which is identically zero, or two factors with the same effect).

    Returns:
        ``(r, D)`` float64 with orthonormal rows spanning ``col(jacobian)``, ``r`` its numerical rank
        (``r = 0`` for an all-zero Jacobian). The left singular vectors, not Gram-Schmidt, so zero and
        dependent columns are handled.
    """
    if not isinstance(jacobian, torch.Tensor) or jacobian.dim() != 2:
        shape = tuple(jacobian.shape) if hasattr(jacobian, "shape") else type(jacobian).__name__
        raise ValueError(f"jacobian must be a (D, K) tensor, got {shape}")
    if not (isinstance(rtol, (int, float)) and 0 <= rtol < 1):
        raise ValueError(f"rtol must be in [0, 1), got {rtol!r}")
    j = jacobian.detach().to("cpu", torch.float64)
    if not torch.isfinite(j).all():
        raise ValueError("jacobian has non-finite values")
    u, s, _ = torch.linalg.svd(j, full_matrices=False)
    if s.numel() == 0 or float(s[0]) == 0.0:
        return torch.zeros(0, j.shape[0], dtype=torch.float64)
    r = int((s > rtol * s[0]).sum())
    return u[:, :r].T.contiguous()


def data_tangent_bases(
    name: str, factors: torch.Tensor, discrete: dict[str, torch.Tensor] | None = None, *, rtol: float = 1e-6
) -> list[torch.Tensor]:
    """True tangent spaces of a procedural dataset at ``N`` images.

    Args:
        name: a dataset of :data:`GROUND_TRUTH_DATASETS`.
        factors: ``(N, K)`` continuous factors (e.g. ``make_dataset(...).factors``).
        discrete: the images' discrete labels (``None`` for disks).
        rtol: rank tolerance of :func:`tangent_basis`.

    Returns:
        ``N`` tensors ``(r_i, D)`` (float64, orthonormal rows); the Jacobian is taken in float64.
    """
    from pullback_utils.zoo.datasets import factor_jacobian

    if name not in GROUND_TRUTH_DATASETS:
        raise ValueError(f"name must be one of {list(GROUND_TRUTH_DATASETS)} (datasets with factors), got {name!r}")
    jac = factor_jacobian(name, factors.detach().double(), discrete)
    return [tangent_basis(jac[i], rtol=rtol) for i in range(jac.shape[0])]


#: How far ``Q Q^T`` may deviate from the identity (max entry) for :func:`energy_fraction` to accept ``Q``:
#: float32 bases from the engine are orthonormal to about 1e-6; 1e-4 leaves room for float32 storage.
_ORTHONORMAL_TOL = 1e-4


def energy_fraction(vectors: Any, basis: Any) -> torch.Tensor:
    """Share of each direction's squared norm inside ``span(basis)``.

    Args:
        vectors: ``(m, ...)`` directions (any trailing shape, flattened to ``D``; need not be unit).
        basis: ``(r, D)`` with orthonormal rows (from :func:`tangent_basis`); ``r = 0`` allowed. Rows
            that are not orthonormal (``Q Q^T`` off the identity by more than :data:`_ORTHONORMAL_TOL`)
            are refused.

    Returns:
        ``(m,)`` float64 ``||Q v||^2 / ||v||^2`` in [0, 1]. For orthonormal ``vectors`` the mean equals
        the mean ``cos^2`` of the principal angles between ``span(vectors)`` and ``span(basis)``
        (when ``m <= r``).
    """
    v = _flat(vectors, "vectors")
    q = torch.as_tensor(basis).detach().to("cpu", torch.float64)
    if q.dim() != 2:
        raise ValueError(f"basis must have shape (r, D), got {tuple(q.shape)}")
    if q.shape[1] != v.shape[1]:
        raise ValueError(f"vectors have {v.shape[1]} entries each but basis vectors have {q.shape[1]}")
    if q.shape[0]:
        if not bool(torch.isfinite(q).all()):
            raise ValueError("basis contains NaN or infinite values")
        err = float((q @ q.T - torch.eye(q.shape[0], dtype=q.dtype)).abs().max())
        if err > _ORTHONORMAL_TOL:
            raise ValueError(
                f"basis rows must be orthonormal (Q Q^T = I to {_ORTHONORMAL_TOL:g}), got a deviation of {err:.3g}; "
                "the formula ||Q v||^2 / ||v||^2 holds only then (values above 1 otherwise): orthonormalise "
                "with torch.linalg.qr(basis.T).Q.T or use tangent_basis"
            )
    norm2 = (v * v).sum(1)
    if (norm2 == 0).any():
        raise ValueError("vectors must be non-zero")
    return ((v @ q.T) ** 2).sum(1) / norm2


def random_energy(r: int, dim: int) -> float:
    """Expected :func:`energy_fraction` of a uniformly random direction in an ``r``-dim subspace of R^dim:
    ``r / dim``."""
    _as_int(dim, "dim", 1)
    if not is_int(r) or not 0 <= r <= dim:
        raise ValueError(f"r must be an int in [0, dim={dim}], got {r!r}")
    return float(r) / float(dim)


def random_energy_mc(basis: torch.Tensor, n: int, *, seed: int = 0) -> torch.Tensor:
    """:func:`energy_fraction` of ``n`` random Gaussian directions (uniform on the sphere): ``(n,)`` float64."""
    q = torch.as_tensor(basis).detach().to("cpu", torch.float64)
    if q.dim() != 2:
        raise ValueError(f"basis must have shape (r, D), got {tuple(q.shape)}")
    n = _as_int(n, "n", 1)
    g = torch.randn(n, q.shape[1], generator=torch.Generator().manual_seed(int(seed)), dtype=torch.float64)
    return energy_fraction(g, q)


def smallest_angle(vectors: Any, basis: torch.Tensor) -> float:
    """Smallest principal angle (radians) between ``span(vectors)`` (``(m, ...)``) and ``span(basis)`` (``(r, D)``);
    ``pi/2`` when ``r = 0``."""
    q = torch.as_tensor(basis)
    if q.dim() != 2:
        raise ValueError(f"basis must have shape (r, D), got {tuple(q.shape)}")
    if q.shape[0] == 0:
        return math.pi / 2
    return float(principal_angles(_flat(vectors, "vectors"), q.to(torch.float64))[0])


def local_pca(pool: Any, x: Any, n_neighbours: int, k: int) -> torch.Tensor:
    """Top-``k`` principal directions of the ``n_neighbours`` pool points nearest to ``x`` (L2).

    "Plain PCA of nearby data": the neighbours are centred on their mean (not on ``x``).

    Args:
        pool: ``(M, ...)`` data points (e.g. images), ``M >= n_neighbours``.
        x: ``(...)`` the query point (same trailing shape; it need not be in the pool).
        n_neighbours: neighbours used, ``> k`` (centred points span at most ``n_neighbours - 1`` dims).
        k: directions returned, ``1 <= k <= D``.

    Returns:
        ``(k, D)`` float64 orthonormal rows, by decreasing variance.
    """
    p = torch.as_tensor(np.asarray(pool) if not isinstance(pool, torch.Tensor) else pool).detach()
    if p.dim() < 2:
        raise ValueError(f"pool must have shape (M, ...) with at least 2 dimensions, got {tuple(p.shape)}")
    p = p.reshape(p.shape[0], -1)  # kept in its dtype: only the neighbours are copied to float64
    if not p.is_floating_point():
        p = p.double()
    q = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).detach().reshape(-1).to(p)
    if q.numel() != p.shape[1]:
        raise ValueError(f"x has {q.numel()} entries but pool points have {p.shape[1]}")
    k = _as_int(k, "k", 1)
    if k > p.shape[1]:
        raise ValueError(f"k={k} must not exceed the dimension D={p.shape[1]}")
    n_neighbours = _as_int(n_neighbours, "n_neighbours", 1)
    if n_neighbours <= k:
        raise ValueError(
            f"n_neighbours={n_neighbours} must be > k={k} (centred neighbours span at most n_neighbours - 1 directions)"
        )
    if n_neighbours > p.shape[0]:
        raise ValueError(f"n_neighbours={n_neighbours} exceeds the pool size {p.shape[0]}")
    d = torch.cdist(q[None], p)[0]
    idx = torch.topk(d, n_neighbours, largest=False).indices
    nb = p[idx].to(torch.float64)
    if not torch.isfinite(nb).all():
        raise ValueError("pool has non-finite values among the nearest neighbours")
    _, _, vh = torch.linalg.svd(nb - nb.mean(0, keepdim=True), full_matrices=False)
    return vh[:k].contiguous()
