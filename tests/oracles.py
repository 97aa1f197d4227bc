"""Independent oracles shared by the engine tests: dense Jacobians and subspace angles."""

from __future__ import annotations

import torch


def dense_jacobian(fn, x: torch.Tensor) -> torch.Tensor:
    """Full Jacobian of fn at x by ``torch.autograd.functional.jacobian``: (dim h, dim x), float64."""
    J = torch.autograd.functional.jacobian(fn, x, vectorize=True)
    h = fn(x)
    return J.reshape(h.numel(), x.numel()).double()


def max_angle(A: torch.Tensor, B: torch.Tensor) -> float:
    """Largest principal angle (radians) between the spans of the rows of A (k, ...) and B (k, ...)."""
    qa, _ = torch.linalg.qr(A.reshape(A.shape[0], -1).double().T)
    qb, _ = torch.linalg.qr(B.reshape(B.shape[0], -1).double().T)
    # sine form: accurate for small angles
    resid = qa - qb @ (qb.T @ qa)
    return float(torch.linalg.matrix_norm(resid, ord=2).clamp(max=1.0).asin())
