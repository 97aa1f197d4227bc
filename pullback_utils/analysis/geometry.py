"""Geometry of sets of basis vectors: principal angles and Grassmannian distances.

Conventions
-----------
* A *basis* is an array shaped ``(k, ...)``: ``k`` vectors, each of any trailing shape (for example a
  local latent basis ``(k, C, H, W)`` or a tangent basis ``(k, C_h, H_h, W_h)``). The trailing
  dimensions are flattened, so a basis is the ``D x k`` matrix of its vectors as columns.
* Bases need not be orthonormal: they are orthonormalised internally (QR after scaling every vector
  to unit length, so the result is invariant to per-vector scaling and sign). Linearly dependent
  vectors are rejected with a :class:`ValueError`.
* All computation is done in float64, on the device of the input for torch tensors.
* Return kind follows the input: if any array argument is a :class:`torch.Tensor` the array results
  are float64 torch tensors, otherwise float64 numpy arrays. Scalar results are Python floats.

Principal angles ``0 <= theta_1 <= ... <= theta_m <= pi/2`` (``m = min(k_A, k_B)``) between
``span(A)`` and ``span(B)``: with orthonormal ``Q_A, Q_B`` the cosines are the singular values of
``Q_A^T Q_B``. ``arccos`` of a cosine near 1 loses all precision for tiny angles, so (as in
``scipy.linalg.subspace_angles`` and Knyazev & Argentati 2002) angles below ``pi/4`` are taken from
their sines, the singular values of ``(I - Q_A Q_A^T) Q_B`` (residual of the smaller basis projected
onto the larger one), and angles from ``pi/4`` up from the cosines.

Grassmannian geodesic distance: ``d(A, B) = sqrt(sum_i theta_i^2)``, in ``[0, (pi/2) sqrt(m)]``.

Gap-robust similarity (:func:`weighted_overlap`): the distance above compares the top-k *spans* and so
hinges on the k-th vector, which is arbitrary where the spectrum is flat (``sigma_k ~ sigma_{k+1}``). The
sigma-weighted projection overlap compares the truncated operators ``G_A = sum_i sigma_i a_i a_i^T``
instead: the cosine of the two in the Frobenius inner product,

    ``O(A, B) = sum_ij sigma_i tau_j (a_i . b_j)^2 / (||G_A||_F ||G_B||_F)``,  ``||G_A||_F^2 = sum_ij sigma_i
    sigma_j (a_i . a_j)^2`` (``= sum_i sigma_i^2`` for orthonormal vectors),

in ``[0, 1]``: 1 iff ``G_A`` is a positive multiple of ``G_B`` (identical bases and spectra up to scale), 0
iff the spans are orthogonal; unchanged by any rotation within a block of equal singular values (``G_A``
does not see it), and a weak vector (small ``sigma_i``) moves it by at most its weight's share.

Radial power spectra of basis vectors: :mod:`pullback_utils.analysis.spectra`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Union

import numpy as np
import torch

from pullback_utils._validate import is_int

__all__ = [
    "principal_angles",
    "geodesic_distance",
    "pairwise_geodesic_distances",
    "random_subspace_distance",
    "random_subspace_angles",
    "weighted_overlap",
    "pairwise_weighted_overlaps",
]

ArrayLike = Union[torch.Tensor, np.ndarray, Sequence[Any]]

# Vectors whose component orthogonal to the span of the previous ones is below this fraction of
# their length are treated as linearly dependent.
_RANK_TOL = 1e-10


# --------------------------------------------------------------------------------------------------
# input handling
# --------------------------------------------------------------------------------------------------
def _is_torch(*xs: Any) -> bool:
    return any(isinstance(x, torch.Tensor) for x in xs)


def _to_float64_tensor(x: Any, name: str, device: torch.device | None = None) -> torch.Tensor:
    """Any array-like -> float64 torch tensor (no grad), checking it is real and finite."""
    if isinstance(x, torch.Tensor):
        if x.is_complex():
            raise ValueError(f"{name} must be real, got a complex tensor")
        t = x.detach().to(dtype=torch.float64)
    else:
        arr = np.asarray(x)
        if np.iscomplexobj(arr):
            raise ValueError(f"{name} must be real, got a complex array")
        try:
            arr = arr.astype(np.float64, copy=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} must be a numeric array, got dtype {arr.dtype}") from exc
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if device is not None:
        t = t.to(device)
    if t.numel() and not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains non-finite values (nan or inf)")
    return t


def _as_columns(x: Any, name: str, device: torch.device | None = None) -> torch.Tensor:
    """Basis ``(k, ...)`` -> float64 matrix ``(D, k)`` with the k vectors as columns."""
    t = _to_float64_tensor(x, name, device)
    if t.ndim < 2:
        raise ValueError(
            f"{name} must have shape (k, ...) with at least 2 dimensions (k vectors of any shape), "
            f"got shape {tuple(t.shape)}; for a single vector v pass v[None]"
        )
    k = t.shape[0]
    if k == 0:
        raise ValueError(f"{name} holds k=0 vectors; need at least one")
    d = int(np.prod(t.shape[1:]))
    if d == 0:
        raise ValueError(f"{name} has vectors of size 0 (shape {tuple(t.shape)})")
    if k > d:
        raise ValueError(f"{name} has k={k} vectors of dimension {d}; more than {d} vectors cannot be independent")
    return t.reshape(k, d).T


def _orthonormalize(m: torch.Tensor, name: str) -> torch.Tensor:
    """``(D, k)`` -> orthonormal ``(D, k)`` with the same column span (thin QR)."""
    norms = torch.linalg.vector_norm(m, dim=0)
    zero = torch.nonzero(norms == 0).flatten()
    if zero.numel():
        raise ValueError(f"{name} contains a zero vector (index {int(zero[0])})")
    q, r = torch.linalg.qr(m / norms, mode="reduced")
    diag = torch.abs(torch.diagonal(r))
    bad = torch.nonzero(diag < _RANK_TOL).flatten()
    if bad.numel():
        raise ValueError(f"{name} is linearly dependent: vector {int(bad[0])} lies in the span of the previous ones")
    return q


def _basis_shape(x: Any) -> tuple[int, ...]:
    return tuple(x.shape) if hasattr(x, "shape") else tuple(np.shape(x))


def _check_same_dim(a: torch.Tensor, b: torch.Tensor, name_a: str, name_b: str, sa: Any, sb: Any) -> None:
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"{name_a} and {name_b} have vectors of different sizes: trailing shapes "
            f"{_basis_shape(sa)[1:]} vs {_basis_shape(sb)[1:]}"
        )


def _angles_orthonormal(qa: torch.Tensor, qb: torch.Tensor) -> torch.Tensor:
    """Ascending principal angles between orthonormal ``(..., D, k_A)`` and ``(..., D, k_B)``
    (leading batch dims broadcast) -> ``(..., min(k_A, k_B))``."""
    if qa.shape[-1] < qb.shape[-1]:
        qa, qb = qb, qa  # now k_A >= k_B; there are k_B angles
    qat = qa.transpose(-2, -1)
    c = qat @ qb  # (k_A, k_B)
    cos = torch.linalg.svdvals(c)  # descending cosines = ascending angles
    resid = qb - qa @ c  # (I - Q_A Q_A^T) Q_B
    resid = resid - qa @ (qat @ resid)  # one re-orthogonalisation for accuracy
    sin = torch.linalg.svdvals(resid).flip(-1)  # ascending sines = ascending angles
    theta_cos = torch.arccos(torch.clamp(cos, -1.0, 1.0))
    theta_sin = torch.arcsin(torch.clamp(sin, -1.0, 1.0))
    theta = torch.where(cos * cos >= 0.5, theta_sin, theta_cos)
    return torch.sort(theta, dim=-1).values


def _out(t: torch.Tensor, as_torch: bool) -> torch.Tensor | np.ndarray:
    return t if as_torch else t.cpu().numpy()


# --------------------------------------------------------------------------------------------------
# principal angles and distances
# --------------------------------------------------------------------------------------------------
def principal_angles(A: ArrayLike, B: ArrayLike) -> torch.Tensor | np.ndarray:
    """Principal angles between ``span(A)`` and ``span(B)``, ascending, in radians.

    Args:
        A: ``(k_A, ...)`` -- k_A vectors of any trailing shape (flattened); need not be orthonormal.
        B: ``(k_B, ...)`` -- same trailing size as ``A``.

    Returns:
        ``(min(k_A, k_B),)`` float64 angles in ``[0, pi/2]``, ascending. A torch tensor (on the
        input's device) if ``A`` or ``B`` is a tensor, else a numpy array.

    Accurate for tiny angles (sine-based below ``pi/4``). Agrees with
    ``np.sort(scipy.linalg.subspace_angles(A.reshape(k_A, -1).T, B.reshape(k_B, -1).T))``.

    Raises:
        ValueError: fewer than 2 dimensions, k=0, non-finite or complex values, trailing sizes that
            differ, zero or linearly dependent vectors.
    """
    device = next((x.device for x in (A, B) if isinstance(x, torch.Tensor)), None)
    ma = _as_columns(A, "A", device)
    mb = _as_columns(B, "B", device)
    _check_same_dim(ma, mb, "A", "B", A, B)
    theta = _angles_orthonormal(_orthonormalize(ma, "A"), _orthonormalize(mb, "B"))
    return _out(theta, _is_torch(A, B))


def geodesic_distance(A: ArrayLike, B: ArrayLike) -> float:
    """Grassmannian geodesic distance ``sqrt(sum_i theta_i^2)`` between ``span(A)`` and ``span(B)``.

    Args:
        A: ``(k_A, ...)`` basis (need not be orthonormal).
        B: ``(k_B, ...)`` basis with the same trailing size.

    Returns:
        A float in ``[0, (pi/2) sqrt(min(k_A, k_B))]``; 0 iff the spans coincide (for k_A = k_B).
    """
    theta = principal_angles(A, B)
    if isinstance(theta, torch.Tensor):
        theta = theta.cpu().numpy()
    return float(np.sqrt(np.sum(theta**2)))


def _stack_orthonormal(bases: Any, name: str, device: torch.device | None) -> tuple[torch.Tensor, int]:
    """``(n, k, ...)`` tensor/array or list of n ``(k, ...)`` -> (orthonormal ``(D, n*k)``, n):
    columns ``i*k:(i+1)*k`` are the orthonormalised basis i."""
    if isinstance(bases, (torch.Tensor, np.ndarray)):
        if bases.ndim < 3:
            raise ValueError(f"{name} must have shape (n, k, ...) with at least 3 dimensions, got {tuple(bases.shape)}")
        items = [bases[i] for i in range(bases.shape[0])]
    else:
        items = list(bases)
    if len(items) == 0:
        raise ValueError(f"{name} is empty; need at least one basis")
    qs = []
    shape0 = _basis_shape(items[0])
    for i, b in enumerate(items):
        if _basis_shape(b) != shape0:
            raise ValueError(
                f"{name}[{i}] has shape {_basis_shape(b)} but {name}[0] has shape {shape0}; "
                "all bases must share one shape (k, ...)"
            )
        qs.append(_orthonormalize(_as_columns(b, f"{name}[{i}]", device), f"{name}[{i}]"))
    return torch.cat(qs, dim=1), len(qs)


def pairwise_geodesic_distances(
    bases: ArrayLike | Sequence[ArrayLike],
    others: ArrayLike | Sequence[ArrayLike] | None = None,
    *,
    refine_below: float = 1e-4,
) -> torch.Tensor | np.ndarray:
    """Geodesic distances between many bases, orthonormalising each basis only once.

    Args:
        bases: ``(n, k, ...)`` array/tensor, or a list of n bases ``(k, ...)`` of one shape.
        others: optional second collection ``(m, k', ...)`` (same trailing size; k' may differ from
            k). If omitted the distances are among ``bases`` themselves (symmetric, zero diagonal).
        refine_below: pairs whose smallest angle (from the cosines) is below this value are
            recomputed with the accurate sine-based formula of :func:`principal_angles`.

    Returns:
        ``(n, n)`` (or ``(n, m)``) float64 distances; a torch tensor if any input is one.

    Cost: one ``k x k'`` product per pair, i.e. ``O(n m D k k')`` flops, and memory for the
    orthonormal float64 copies, ``8 (n k + m k') D`` bytes.
    """
    probe = bases if others is None else others
    first = [x for x in (bases, probe) if isinstance(x, torch.Tensor)]
    if not first:
        for coll in (bases, probe):
            if isinstance(coll, (list, tuple)) and coll and isinstance(coll[0], torch.Tensor):
                first.append(coll[0])
    as_torch = bool(first)
    device = first[0].device if first else None
    qa, n = _stack_orthonormal(bases, "bases", device)
    symmetric = others is None
    qb, m = (qa, n) if symmetric else _stack_orthonormal(others, "others", device)
    if qa.shape[0] != qb.shape[0]:
        raise ValueError(f"bases and others have vectors of different sizes ({qa.shape[0]} vs {qb.shape[0]})")
    ka, kb = qa.shape[1] // n, qb.shape[1] // m
    dist = torch.zeros(n, m, dtype=torch.float64, device=qa.device)
    for i in range(n):
        j0 = i + 1 if symmetric else 0
        if j0 >= m:
            continue
        qi = qa[:, i * ka : (i + 1) * ka]
        c = (qi.T @ qb[:, j0 * kb :]).reshape(ka, m - j0, kb).transpose(0, 1)  # (m-j0, ka, kb)
        cos = torch.linalg.svdvals(c)  # (m - j0, min(ka, kb)) descending
        theta = torch.arccos(torch.clamp(cos, -1.0, 1.0))
        row = torch.sqrt(torch.sum(theta**2, dim=1))
        small = torch.nonzero(theta.min(dim=1).values < refine_below).flatten()
        for s in small.tolist():
            j = j0 + s
            th = _angles_orthonormal(qi, qb[:, j * kb : (j + 1) * kb])
            row[s] = torch.sqrt(torch.sum(th**2))
        dist[i, j0:] = row
    if symmetric:
        dist = dist + dist.T
    return _out(dist, as_torch)


def random_subspace_angles(dim: int, k: int, n: int, seed: int = 0, k_other: int | None = None) -> np.ndarray:
    """Principal angles between pairs of independent uniformly random subspaces of ``R^dim``.

    Args:
        dim: ambient dimension D.
        k: dimension of the first subspace of each pair.
        n: number of pairs.
        seed: seed of the numpy generator (deterministic).
        k_other: dimension of the second subspace (default ``k``).

    Returns:
        ``(n, min(k, k_other))`` ascending angles.

    Exact in distribution and cheap for any ``dim``: by rotation invariance the first subspace is
    fixed to the first ``k`` coordinates; when ``dim >= k + k_other`` the second one, a Gaussian
    ``dim x k_other`` matrix ``G``, is replaced by ``[G_1; L^T]`` where ``G_1`` is its first k rows
    and ``L L^T`` a Bartlett-sampled ``Wishart(dim - k, I)`` with the law of the Gram matrix of the
    remaining rows -- angles to the first k coordinates depend only on ``G_1`` and that Gram matrix.
    Cost ``O(n (k + k_other)^3)``, independent of ``dim``.
    """
    k2 = k if k_other is None else k_other
    for val, nm in ((dim, "dim"), (k, "k"), (k2, "k_other"), (n, "n")):
        if not is_int(val) or val < 1:
            raise ValueError(f"{nm} must be a positive integer, got {val!r}")
    if k > dim or k2 > dim:
        raise ValueError(f"k={k} and k_other={k2} must not exceed dim={dim}")
    rng = np.random.default_rng(seed)
    if dim < k + k2:
        qa = torch.eye(dim, dtype=torch.float64)[:, :k]
        g = rng.standard_normal((n, dim, k2))
    else:
        qa = torch.eye(k + k2, dtype=torch.float64)[:, :k]
        g1 = rng.standard_normal((n, k, k2))
        low = np.tril(rng.standard_normal((n, k2, k2)), -1)
        diag = np.arange(k2)
        low[:, diag, diag] = np.sqrt(rng.chisquare(dim - k - diag, size=(n, k2)))
        g = np.concatenate([g1, low.transpose(0, 2, 1)], axis=1)
    qb, _ = torch.linalg.qr(torch.from_numpy(g))
    return _angles_orthonormal(qa, qb).numpy()


def random_subspace_distance(dim: int, k: int, n: int, seed: int = 0, k_other: int | None = None) -> np.ndarray:
    """Baseline: geodesic distances between ``n`` pairs of independent random subspaces.

    Args:
        dim: ambient dimension (e.g. ``C*H*W`` of the latent, or of h-space).
        k: subspace dimension (``k_other`` for the second subspace, default ``k``).
        n: number of sampled pairs.
        seed: seed (deterministic).

    Returns:
        ``(n,)`` float64 distances.

    Cross-check: ``E[sum_i cos^2 theta_i] = E tr(P_A P_B) = k k_other / dim`` exactly, so for
    ``dim >> k k_other`` random subspaces are nearly orthogonal and distances approach
    ``(pi/2) sqrt(min(k, k_other))`` from below. See :func:`random_subspace_angles`.
    """
    theta = random_subspace_angles(dim, k, n, seed, k_other)
    return np.sqrt(np.sum(theta**2, axis=1))


# --------------------------------------------------------------------------------------------------
# sigma-weighted projection overlap (gap-robust similarity)
# --------------------------------------------------------------------------------------------------
def _weights(s: Any, k: int, name: str, device: torch.device | None) -> torch.Tensor:
    w = _to_float64_tensor(s, name, device).reshape(-1)
    if w.numel() != k:
        raise ValueError(f"{name} must hold one singular value per basis vector ({k}), got {w.numel()}")
    if bool((w < 0).any()) or not bool((w > 0).any()):
        raise ValueError(f"{name} must be non-negative singular values, not all zero, got {w.tolist()}")
    return w


def _unit_columns(m: torch.Tensor, name: str) -> torch.Tensor:
    norms = torch.linalg.vector_norm(m, dim=-2, keepdim=True)
    if bool((norms == 0).any()):
        raise ValueError(f"{name} contains a zero vector")
    return m / norms


def weighted_overlap(A: ArrayLike, sa: ArrayLike, B: ArrayLike, sb: ArrayLike) -> float:
    """Sigma-weighted projection overlap of two bases (module doc): a similarity in ``[0, 1]``.

    Args:
        A: ``(k_A, ...)`` basis vectors (singular vectors; scaled to unit length here).
        sa: ``(k_A,)`` their singular values (weights; non-negative, not all zero).
        B, sb: the same for the other basis (same trailing size; ``k_B`` may differ).

    Returns:
        ``sum_ij sa_i sb_j (a_i . b_j)^2 / (||G_A||_F ||G_B||_F)`` with ``G_A = sum_i sa_i a_i a_i^T``.
    """
    device = next((x.device for x in (A, B) if isinstance(x, torch.Tensor)), None)
    ma, mb = _as_columns(A, "A", device), _as_columns(B, "B", device)
    _check_same_dim(ma, mb, "A", "B", A, B)
    ma, mb = _unit_columns(ma, "A"), _unit_columns(mb, "B")
    wa, wb = _weights(sa, ma.shape[1], "sa", device), _weights(sb, mb.shape[1], "sb", device)
    cross = (wa[:, None] * (ma.T @ mb) ** 2 * wb[None]).sum()
    na = torch.sqrt((wa[:, None] * (ma.T @ ma) ** 2 * wa[None]).sum())
    nb = torch.sqrt((wb[:, None] * (mb.T @ mb) ** 2 * wb[None]).sum())
    return float(torch.clamp(cross / (na * nb), 0.0, 1.0))


def pairwise_weighted_overlaps(bases: ArrayLike, sigmas: ArrayLike) -> torch.Tensor | np.ndarray:
    """:func:`weighted_overlap` between every pair of ``n`` bases: ``(n, n)``, ones on the diagonal.

    Args:
        bases: ``(n, k, ...)`` bases of one shape.
        sigmas: ``(n, k)`` their singular values.

    Returns a float64 torch tensor if ``bases`` is one, else a numpy array. Cost ``O(n^2 D k^2)``.
    """
    as_torch = _is_torch(bases, sigmas)
    device = bases.device if isinstance(bases, torch.Tensor) else None
    b = _to_float64_tensor(bases, "bases", device)
    if b.ndim < 3:
        raise ValueError(f"bases must have shape (n, k, ...) with at least 3 dimensions, got {tuple(b.shape)}")
    n, k = b.shape[0], b.shape[1]
    w = _to_float64_tensor(sigmas, "sigmas", device)
    if tuple(w.shape) != (n, k):
        raise ValueError(f"sigmas must be (n, k) = {(n, k)}, one singular value per basis vector, got {tuple(w.shape)}")
    if bool((w < 0).any()) or not bool((w > 0).any(dim=1).all()):
        raise ValueError("sigmas must be non-negative with at least one positive value per basis")
    m = _unit_columns(b.reshape(n, k, -1).transpose(1, 2), "bases")  # (n, D, k)
    flat = m.transpose(0, 1).reshape(m.shape[1], n * k)  # (D, n k)
    c2 = ((flat.T @ flat) ** 2).reshape(n, k, n, k)
    g = torch.einsum("ia,iajb,jb->ij", w, c2, w)  # (n, n) Frobenius inner products of the G's
    norm = torch.sqrt(torch.diagonal(g))
    out = torch.clamp(g / (norm[:, None] * norm[None]), 0.0, 1.0)
    out.fill_diagonal_(1.0)
    return _out(out, as_torch)
