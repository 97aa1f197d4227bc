"""Ground truth on procedural data: how much of the local latent basis lies in the data's tangent space.

For the procedural zoo datasets (``disks``, ``shapes``, ``scenes``) every image is ``render(factors)``
with a differentiable renderer, so the true tangent space of the data manifold at an image is the span
of the renderer's derivatives with respect to its continuous factors
(:func:`pullback_utils.zoo.datasets.factor_jacobian`). This module measures how much of a set of
directions (a local latent basis, random directions, local PCA of nearby data) lies in that span.

Shapes (``D`` = number of pixels times channels, e.g. 3*32*32; ``K`` factors; ``r <= K`` the rank of
the tangent space; ``m`` directions):

- a tangent basis ``Q``: ``(r, D)`` float64 with orthonormal rows (:func:`tangent_basis`);
- directions: ``(m, ...)`` with ``prod(...) = D`` (any trailing shape, flattened);
- :func:`energy_fraction` of directions in ``span(Q)``: ``(m,)`` values ``||Q v||^2 / ||v||^2`` in [0, 1];
- a random unit direction has expected energy ``r / D`` (:func:`random_energy`).

The statistics of the chapter ``notebooks/ground_truth.ipynb`` (:func:`alignment_stats`,
:func:`per_t_summary`, :func:`cross_fitted_best`) compare the local basis at each timestep with those
baselines; the best timestep is chosen leave-one-out so the claim at "the best t" is not inflated by
choosing t on the same samples it is evaluated on.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch

from .ddim import Time, ddim_invert_to_times
from .geometry import principal_angles, random_subspace_angles

__all__ = [
    "GROUND_TRUTH_DATASETS",
    "tangent_basis",
    "data_tangent_bases",
    "energy_fraction",
    "random_energy",
    "random_energy_mc",
    "smallest_angle",
    "local_pca",
    "invert_to_times",
    "alignment_stats",
    "per_t_summary",
    "cross_fitted_best",
]

#: Zoo datasets with a differentiable renderer (continuous factors).
GROUND_TRUTH_DATASETS: tuple[str, ...] = ("disks", "shapes", "shapes-text", "scenes")


def _as_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
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


def data_tangent_bases(name: str, factors: torch.Tensor, discrete: dict[str, torch.Tensor] | None = None,
                       *, rtol: float = 1e-6) -> list[torch.Tensor]:
    """True tangent spaces of a procedural dataset at ``N`` images.

    Args:
        name: a dataset of :data:`GROUND_TRUTH_DATASETS`.
        factors: ``(N, K)`` continuous factors (e.g. ``make_dataset(...).factors``).
        discrete: the images' discrete labels (``None`` for disks).
        rtol: rank tolerance of :func:`tangent_basis`.

    Returns:
        ``N`` tensors ``(r_i, D)`` (float64, orthonormal rows); the Jacobian is taken in float64.
    """
    from .zoo.datasets import factor_jacobian

    if name not in GROUND_TRUTH_DATASETS:
        raise ValueError(f"name must be one of {list(GROUND_TRUTH_DATASETS)} (datasets with factors), got {name!r}")
    jac = factor_jacobian(name, factors.detach().double(), discrete)
    return [tangent_basis(jac[i], rtol=rtol) for i in range(jac.shape[0])]


def energy_fraction(vectors: Any, basis: Any) -> torch.Tensor:
    """Share of each direction's squared norm inside ``span(basis)``.

    Args:
        vectors: ``(m, ...)`` directions (any trailing shape, flattened to ``D``; need not be unit).
        basis: ``(r, D)`` with orthonormal rows (from :func:`tangent_basis`); ``r = 0`` allowed.

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
    norm2 = (v * v).sum(1)
    if (norm2 == 0).any():
        raise ValueError("vectors must be non-zero")
    return ((v @ q.T) ** 2).sum(1) / norm2


def random_energy(r: int, dim: int) -> float:
    """Expected :func:`energy_fraction` of a uniformly random direction in an ``r``-dim subspace of R^dim: ``r / dim``."""
    _as_int(dim, "dim", 1)
    if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or not 0 <= r <= dim:
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
        raise ValueError(f"n_neighbours={n_neighbours} must be > k={k} (centred neighbours span at most "
                         "n_neighbours - 1 directions)")
    if n_neighbours > p.shape[0]:
        raise ValueError(f"n_neighbours={n_neighbours} exceeds the pool size {p.shape[0]}")
    d = torch.cdist(q[None], p)[0]
    idx = torch.topk(d, n_neighbours, largest=False).indices
    nb = p[idx].to(torch.float64)
    if not torch.isfinite(nb).all():
        raise ValueError("pool has non-finite values among the nearest neighbours")
    _, _, vh = torch.linalg.svd(nb - nb.mean(0, keepdim=True), full_matrices=False)
    return vh[:k].contiguous()


@torch.no_grad()
def invert_to_times(model, x0: torch.Tensor, times: Sequence[Time], *, steps: int = 20) -> torch.Tensor:
    """Deterministic DDIM inversion of clean ``x0`` ``(n, *sample_shape)`` to every time of ``times``.

    One run up through the times in increasing order; each leg gets its proportional share of
    ``steps`` (steps over the whole ``[0, T]``, at least one per leg). Returns
    ``(len(times), n, *sample_shape)`` in the order of ``times``.
    """
    return ddim_invert_to_times(model, x0.to(model.device, model.dtype), times, steps=steps)


def alignment_stats(v: torch.Tensor, tangents: Sequence[torch.Tensor], pca: Sequence[torch.Tensor] | None = None,
                    *, n_random: int = 200, seed: int = 0) -> dict[str, np.ndarray]:
    """Alignment of local bases, random directions and local PCA with the true tangent spaces.

    Args:
        v: ``(n_t, n, k, ...)`` local latent bases (x-side) of ``n`` images at ``n_t`` times.
        tangents: ``n`` true tangent bases ``(r_j, D)`` (:func:`data_tangent_bases`), one per image.
        pca: ``n`` local-PCA bases ``(k, D)`` (:func:`local_pca`), or ``None``.
        n_random: random directions per image for the Monte-Carlo random baseline.
        seed: seed of the random directions and random subspaces.

    Returns:
        numpy arrays: ``energy`` ``(n_t, n)`` mean energy fraction of the k vectors; ``energy_v1``
        ``(n_t, n)`` that of ``v_1`` alone; ``angle`` ``(n_t, n)`` smallest principal angle (degrees)
        between ``span(v_1..k)`` and the tangent space; ``rank`` ``(n,)``; ``random`` ``(n,)`` closed
        form ``r_j / D``; ``random_mc`` ``(n,)`` mean energy of ``n_random`` random directions;
        ``random_angle`` ``(n,)`` median smallest angle of random k-subspaces (degrees); with ``pca``:
        ``pca_energy``, ``pca_energy_v1``, ``pca_angle`` ``(n,)``.
    """
    if not isinstance(v, torch.Tensor) or v.dim() < 4:
        raise ValueError(f"v must be a (n_t, n, k, ...) tensor, got {tuple(getattr(v, 'shape', ()))}")
    n_t, n, k = (int(s) for s in v.shape[:3])
    dim = int(np.prod(v.shape[3:]))
    if len(tangents) != n:
        raise ValueError(f"tangents has {len(tangents)} entries for n={n} images")
    if pca is not None and len(pca) != n:
        raise ValueError(f"pca has {len(pca)} entries for n={n} images")
    out: dict[str, np.ndarray] = {
        "energy": np.zeros((n_t, n)), "energy_v1": np.zeros((n_t, n)), "angle": np.zeros((n_t, n)),
        "rank": np.zeros(n, dtype=int), "random": np.zeros(n), "random_mc": np.zeros(n), "random_angle": np.zeros(n),
    }
    if pca is not None:
        out.update(pca_energy=np.zeros(n), pca_energy_v1=np.zeros(n), pca_angle=np.zeros(n))
    for j in range(n):
        q = tangents[j]
        if q.dim() != 2 or q.shape[1] != dim:
            raise ValueError(f"tangents[{j}] must have shape (r, {dim}), got {tuple(q.shape)}")
        r = int(q.shape[0])
        out["rank"][j] = r
        out["random"][j] = random_energy(r, dim)
        out["random_mc"][j] = float(random_energy_mc(q, n_random, seed=seed + j).mean())
        out["random_angle"][j] = (
            90.0 if r == 0 else
            float(np.degrees(np.median(random_subspace_angles(dim, k, 200, seed=seed + j, k_other=r)[:, 0])))
        )
        for i in range(n_t):
            e = energy_fraction(v[i, j], q)
            out["energy"][i, j] = float(e.mean())
            out["energy_v1"][i, j] = float(e[0])
            out["angle"][i, j] = math.degrees(smallest_angle(v[i, j], q))
        if pca is not None:
            e = energy_fraction(pca[j], q)
            out["pca_energy"][j] = float(e.mean())
            out["pca_energy_v1"][j] = float(e[0])
            out["pca_angle"][j] = math.degrees(smallest_angle(pca[j], q))
    return out


def per_t_summary(values: np.ndarray, *, n_boot: int = 2000, seed: int = 0) -> dict[str, np.ndarray]:
    """Mean over samples of ``values`` ``(n_t, n)`` per time with a 95% bootstrap CI over samples.

    Returns ``{"mean", "low", "high"}``, each ``(n_t,)``.
    """
    from .stats import bootstrap_ci

    a = np.asarray(values, dtype=float)
    if a.ndim != 2 or a.shape[1] < 2:
        raise ValueError(f"values must have shape (n_t, n) with n >= 2 samples, got {a.shape}")
    est, lo, hi = bootstrap_ci(a.T, statistic=lambda s: s.mean(axis=0), n_boot=n_boot, seed=seed)
    return {"mean": np.asarray(est), "low": np.asarray(lo), "high": np.asarray(hi)}


def cross_fitted_best(values: np.ndarray, baseline: np.ndarray) -> dict[str, Any]:
    """Per-sample difference to a baseline at the best time, with the best time chosen leave-one-out.

    Args:
        values: ``(n_t, n)`` a statistic per time and sample (higher = better aligned).
        baseline: ``(n,)`` per-sample baseline (time-independent).

    Returns:
        ``{"best_index"}`` argmax over times of the mean over all samples (the reported best t);
        ``"diff"`` ``(n,)``: ``values[t*_{-j}, j] - baseline[j]`` where ``t*_{-j}`` is the best time of
        the other samples, so that choosing t does not use the sample it is evaluated on (a plain
        "value at the argmax" is biased upwards); ``"loo_index"`` ``(n,)`` the ``t*_{-j}``.
    """
    a = np.asarray(values, dtype=float)
    b = np.asarray(baseline, dtype=float)
    if a.ndim != 2 or a.shape[1] < 2:
        raise ValueError(f"values must have shape (n_t, n) with n >= 2 samples, got {a.shape}")
    if b.shape != (a.shape[1],):
        raise ValueError(f"baseline must have shape ({a.shape[1]},), got {b.shape}")
    n = a.shape[1]
    total = a.sum(axis=1)
    loo = np.array([int(np.argmax((total - a[:, j]) / (n - 1))) for j in range(n)])
    return {"best_index": int(np.argmax(a.mean(axis=1))), "diff": a[loo, np.arange(n)] - b, "loo_index": loo}
