"""Dense linear algebra of the local-basis solvers: orthonormal blocks, the Rayleigh–Ritz step,
error and rank estimates (see :mod:`pullback_utils.engine.solvers`, 'Accuracy' and 'Rank').

All in float64; blocks of vectors are rows: Q (m, D_x) orthonormal rows, JQ (m, D_h) their images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = [
    "ErrorMonitor", "Ritz", "complete_rows", "max_angle", "noise_rtol", "numerical_rank",
    "orthonormal_rows", "random_rows", "rank_rtol", "rayleigh_ritz",
]


def orthonormal_rows(M: torch.Tensor, rtol: float = 1e-10, scale: float | None = None) -> torch.Tensor:
    """Orthonormal basis (as rows) of the row space of M (m, D); float64.

    Drops the directions whose new part (QR diagonal) is at most ``rtol`` × ``scale`` (default
    scale: the largest row norm of M), so an all-zero M gives no rows.
    """
    if M.shape[0] == 0:
        return M.clone()
    Q, R = torch.linalg.qr(M.T)
    diag = R.diagonal().abs()
    ref = float(M.norm(dim=1).max()) if scale is None else scale
    keep = diag > rtol * ref
    return Q[:, keep].T.contiguous()


def complete_rows(Q: torch.Tensor, m: int, seed: int) -> torch.Tensor:
    """Q (r, D) orthonormal rows, completed to m rows by random directions orthogonal to them."""
    while Q.shape[0] < m:
        extra = random_rows(m - Q.shape[0], Q.shape[1], seed)
        for _ in range(2):
            extra = extra - (extra @ Q.T) @ Q
        Q = torch.cat([Q, orthonormal_rows(extra)])
        seed += 1
    return Q[:m]


def noise_rtol(dtype: torch.dtype) -> float:
    """Relative size below which a product's component is rounding noise (64 machine epsilons)."""
    return 64 * torch.finfo(dtype).eps


def rank_rtol(dtype: torch.dtype, dim_x: int, dim_h: int) -> float:
    """σ_i ≤ this × σ₁ counts as zero (:mod:`pullback_utils.engine.solvers`, 'Rank')."""
    return max(100.0, 10.0 * math.sqrt(max(dim_x, dim_h))) * torch.finfo(dtype).eps


def numerical_rank(spectrum: torch.Tensor, rtol: float) -> int:
    """Number of singular values above rtol × the largest (0 for an all-zero spectrum)."""
    if spectrum.numel() == 0 or not float(spectrum.max()) > 0:
        return 0
    return int((spectrum > rtol * spectrum.max()).sum())


def max_angle(A: torch.Tensor, B: torch.Tensor) -> float:
    """Largest principal angle (radians) between row spaces of orthonormal A (k, D) and B (k, D)."""
    cos = torch.linalg.svdvals(A @ B.T).clamp(max=1.0)
    # sine form is accurate for small angles: sin θ_max = ‖(I − BᵀB) Aᵀ‖₂
    resid = A - (A @ B.T) @ B
    sin_max = float(torch.linalg.matrix_norm(resid, ord=2)) if resid.numel() else 0.0
    return float(min(math.asin(min(sin_max, 1.0)), math.acos(float(cos.min()))) if cos.numel() else 0.0)


@dataclass
class Ritz:
    v: torch.Tensor  # (k, D_x) float64
    u: torch.Tensor  # (k, D_h) float64
    s: torch.Tensor  # (k,)
    residuals: torch.Tensor  # (k,)
    angle_estimate: float
    spectrum: torch.Tensor  # every singular value estimate seen (descending), for the rank
    converged: bool | None = None  # None: decided by angle_estimate <= tol


def rayleigh_ritz(Q: torch.Tensor, JQ: torch.Tensor, JtJQ: torch.Tensor | None, k: int) -> Ritz:
    """Best rank-k approximation of J from span(Q).

    Q: (m, D_x) orthonormal rows; JQ: (m, D_h) rows J q_i; JtJQ: (m, D_x) rows JᵀJ q_i or None.
    """
    A, S, Bh = torch.linalg.svd(JQ, full_matrices=False)  # JQ = A diag(S) Bh
    V = A.T @ Q  # rows: Ritz vectors in x
    U = Bh  # rows: left vectors in h (unit norm)
    s = S[:k]
    if JtJQ is None:
        resid = torch.full((k,), float("nan"), dtype=S.dtype)
        angle = float("nan")
    else:
        AV = (A.T @ JtJQ)[:k]
        R = AV - (s**2)[:, None] * V[:k]
        resid = R.norm(dim=1) / (s**2).clamp_min(1e-300)
        if S.shape[0] > k:
            gap = float(S[k - 1] ** 2 - S[k] ** 2)
            angle = float(torch.linalg.matrix_norm(R, ord=2)) / gap if gap > 0 else math.pi / 2
            angle = min(angle, math.pi / 2)  # principal angles never exceed π/2
        else:
            angle = float("nan")
    return Ritz(v=V[:k], u=U[:k], s=s, residuals=resid, angle_estimate=angle, spectrum=S)


class ErrorMonitor:
    """Tracks successive Ritz subspaces and sharpens the angle estimate (:mod:`pullback_utils.engine.solvers`, 'Accuracy')."""

    def __init__(self) -> None:
        self.prev_v: torch.Tensor | None = None
        self.changes: list[float] = []

    def update(self, ritz: Ritz) -> Ritz:
        if self.prev_v is not None:
            self.changes.append(max_angle(ritz.v, self.prev_v))
        self.prev_v = ritz.v
        if len(self.changes) >= 2 and self.changes[-2] > 0:
            rho = self.changes[-1] / self.changes[-2]
            if rho < 0.9:
                extrapolated = self.changes[-1] * rho / (1 - rho)
                if not math.isfinite(ritz.angle_estimate) or extrapolated < ritz.angle_estimate:
                    ritz.angle_estimate = extrapolated
        return ritz


def random_rows(m: int, d: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(int(seed))
    return torch.randn(m, d, generator=gen, dtype=torch.float64)
