"""Top-k singular triplets of a Jacobian, matrix-free: the local latent basis engine.

For J = ∂fn/∂x at x (a :class:`~pullback_utils.engine.operators.JacobianOperator`), :func:`jacobian_svd`
returns the top-k right singular vectors v_i (the *local latent basis* in x-space), the left singular
vectors u_i = J v_i / σ_i (the *local tangent basis* in h-space) and the singular values σ_i.

Methods (``method=``):

``"exact"``
    Materialise J with batched products (columns by JVP or rows by VJP, whichever is fewer) and
    take its SVD. For small problems and tests.
``"power"``
    The official subspace iteration of Park et al. (2023): V ← right singular vectors of
    (J V)ᵀ J, k JVPs and k VJPs per iteration, at least 10 and at most 100 iterations. Its
    element-wise stopping test is sign-sensitive; here it stops when the largest principal angle
    between successive iterates falls below ``tol``. Kept as the baseline.
``"randomized"``
    Randomized subspace iteration (Halko, Martinsson & Tropp 2011) with ``oversample`` extra
    vectors and a Rayleigh–Ritz step after every iteration, stopping as soon as the estimated
    subspace error is below ``tol``.
``"krylov"``
    Block Krylov (block Lanczos with full re-orthogonalisation; Musco & Musco 2015): keeps every
    block of the Krylov space span{Ω, JᵀJΩ, (JᵀJ)²Ω, …} and extracts the Ritz vectors from all of
    it, converging in fewer products than subspace iteration. When dim h < dim x and the space
    would outgrow dim h (the bound on J's rank) unconverged, it finishes as ``"exact"``.
``"auto"``
    ``"exact"`` when J is small enough that materialising it costs no more than a few Krylov
    iterations, else ``"krylov"``.

Accuracy. Every method ends with a Rayleigh–Ritz step on the vectors it multiplied, so
J v_i = σ_i u_i holds to rounding error, and reports a posteriori, per vector, the residual
‖JᵀJ v_i − σ_i² v_i‖ / σ_i², and an estimate of the largest principal angle (radians) between the
returned subspace and the true one. That estimate is the smaller of

- the Davis–Kahan value ‖R‖₂ / (σ_k² − σ̂_{k+1}²), R the residual block, with the next Ritz value
  standing in for the unknown σ_{k+1}. It is safe but pessimistic: on U-Net Jacobians it
  exceeded the true angle by 50–100× (measured against exact SVDs);
- a convergence-rate extrapolation: with c_i the angle between the Ritz subspaces of iterations
  i−1 and i and ρ = c_i / c_{i−1} < 0.9, the remaining error of a geometrically converging
  iteration is about c_i · ρ / (1 − ρ). Its measured agreement with the true angle is within 2×.
  The extrapolation is used only from the third iteration on, when ρ < 0.9. It assumes geometric
  convergence, so at coarse tolerances (tol = 0.85, k = 20: estimate 0.25, true 1.1 rad) it can
  underestimate; at tol <= 1e-2 it was within 2x of the true angle in every benchmark (NOTES.md).

``tol`` bounds this estimate.

Rank. The singular values the solver saw (all Ritz values; for ``"exact"`` the whole spectrum)
give ``info["rank"]``, the number above ``info["rank_rtol"]`` × σ₁ with ``rank_rtol`` =
max(100, 10 √max(dim x, dim h)) × the machine epsilon of x's dtype (the noise floor of the
products; for the iterative methods a lower bound on the numerical rank). When k exceeds it, the
trailing vectors are arbitrary directions of the null space: ``info["degenerate"]`` is True,
``info["converged"]`` False, and a :class:`DegenerateJacobianWarning` names k and the rank.
:func:`basis_warnings` rebuilds a basis's warnings from its ``info`` (the cache replays them).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch
from tqdm.auto import tqdm

from pullback_utils.engine.operators import JacobianOperator
from pullback_utils.engine.ritz import (
    ErrorMonitor,
    Ritz,
    complete_rows,
    max_angle,
    noise_rtol,
    numerical_rank,
    orthonormal_rows,
    random_rows,
    rank_rtol,
    rayleigh_ritz,
)

__all__ = ["LocalBasis", "jacobian_svd", "METHODS", "DegenerateJacobianWarning", "basis_warnings"]

METHODS = ("auto", "exact", "power", "randomized", "krylov")
#: The defaults of the arguments that change a basis (the cache's key fills them in; one place).
SOLVER_DEFAULTS = MappingProxyType({"method": "auto", "tol": 1e-3, "max_iters": None, "oversample": None, "seed": 0})


class DegenerateJacobianWarning(RuntimeWarning):
    """k exceeds the numerical rank of the Jacobian: the trailing basis vectors are arbitrary."""


@dataclass
class LocalBasis:
    """Top-k singular triplets of a Jacobian J = ∂h/∂x at a point.

    Attributes:
        v: (k, *x_shape) unit-norm right singular vectors (local latent basis, x-space).
        u: (k, *h_shape) unit-norm left singular vectors u_i = J v_i / σ_i (tangent basis, h-space).
        s: (k,) singular values, descending.
        info: method, iterations, n_jvp, n_vjp, seconds, residuals (k,), angle_estimate, converged,
            rank, rank_rtol, degenerate, ... (module doc)
    """

    v: torch.Tensor
    u: torch.Tensor
    s: torch.Tensor
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def k(self) -> int:
        return int(self.s.shape[0])

    def __repr__(self) -> str:
        return (
            f"LocalBasis(k={self.k}, x_shape={tuple(self.v.shape[1:])}, h_shape={tuple(self.u.shape[1:])}, "
            f"method={self.info.get('method')!r}, s[:3]={[round(float(x), 4) for x in self.s[:3]]})"
        )


# --------------------------------------------------------------------------- methods
def _exact(op: JacobianOperator, k: int, progress: bool, **_: Any) -> tuple[Ritz, int]:
    dx, dh = op.dim_x, op.dim_h
    if dx <= dh:
        cols = []
        for i in tqdm(range(0, dx, op.chunk_size), disable=not progress, desc="exact J (JVP)"):
            n = min(op.chunk_size, dx - i)
            E = torch.zeros(n, dx, dtype=torch.float64)
            E[torch.arange(n), torch.arange(i, i + n)] = 1.0
            cols.append(op.jvp(E.reshape(n, *op.x_shape)).reshape(n, dh).double())
        J = torch.cat(cols).T  # (dh, dx)
    else:
        rows = []
        for i in tqdm(range(0, dh, op.chunk_size), disable=not progress, desc="exact J (VJP)"):
            n = min(op.chunk_size, dh - i)
            E = torch.zeros(n, dh, dtype=torch.float64)
            E[torch.arange(n), torch.arange(i, i + n)] = 1.0
            rows.append(op.vjp(E.reshape(n, *op.h_shape)).reshape(n, dx).double())
        J = torch.cat(rows)  # (dh, dx)
    Uf, S, Vh = torch.linalg.svd(J, full_matrices=False)
    m = min(k + 1, S.shape[0])
    Q = Vh[:m]
    ritz = rayleigh_ritz(Q, (J @ Q.T).T, (J.T @ (J @ Q.T)).T, k)
    ritz.spectrum = S
    return ritz, 1


def _power(op: JacobianOperator, k: int, tol: float, max_iters: int | None, seed: int, progress: bool,
           rank_rtol: float, callback: Callable | None = None, **_: Any) -> tuple[Ritz, int]:
    max_iters = max_iters or 100
    min_iters = min(10, max_iters)
    V = orthonormal_rows(random_rows(k, op.dim_x, seed))
    bar = tqdm(range(max_iters), disable=not progress, desc="power iteration")
    for it in bar:
        Y = op.jvp(V.reshape(k, *op.x_shape)).reshape(k, -1).double()
        W = op.vjp(Y.reshape(k, *op.h_shape)).reshape(k, -1).double()  # rows JᵀJ v_i
        _, S, Vh = torch.linalg.svd(W, full_matrices=False)  # S: σ_i² estimates
        V_new = Vh[:k]
        change = max_angle(V_new, V)
        bar.set_postfix(change=f"{change:.2e}")
        if callback is not None:
            callback(it + 1, V_new)
        # k above the rank: the trailing vectors are arbitrary and need not settle
        degenerate = numerical_rank(S.clamp_min(0).sqrt(), rank_rtol) < k
        if it + 1 >= min_iters and (change < tol or degenerate):
            break
        if it + 1 < max_iters:
            V = V_new
    ritz = rayleigh_ritz(V, Y, W, k)
    ritz.converged = change < tol
    return ritz, it + 1


def _randomized(op: JacobianOperator, k: int, tol: float, max_iters: int | None, oversample: int,
                seed: int, progress: bool, rank_rtol: float, callback: Callable | None = None,
                **_: Any) -> tuple[Ritz, int]:
    max_iters = max_iters or 30
    b = min(k + oversample, op.dim_x, op.dim_h)
    Q = orthonormal_rows(random_rows(b, op.dim_x, seed))
    monitor = ErrorMonitor()
    bar = tqdm(range(max_iters), disable=not progress, desc="randomized subspace iteration")
    for it in bar:
        m = Q.shape[0]
        Y = op.jvp(Q.reshape(m, *op.x_shape)).reshape(m, -1).double()
        Z = op.vjp(Y.reshape(m, *op.h_shape)).reshape(m, -1).double()
        ritz = monitor.update(rayleigh_ritz(Q, Y, Z, k))
        bar.set_postfix(angle=f"{ritz.angle_estimate:.2e}")
        if callback is not None:
            callback(it + 1, ritz.v)
        if ritz.angle_estimate <= tol or (it >= 1 and numerical_rank(ritz.spectrum, rank_rtol) < k):
            break
        # a rank-deficient J gives fewer directions than vectors: refill with random ones
        Q = complete_rows(orthonormal_rows(Z), b, seed + it + 1)
    return ritz, it + 1


def _krylov(op: JacobianOperator, k: int, tol: float, max_iters: int | None, oversample: int, seed: int,
            progress: bool, rank_rtol: float, callback: Callable | None = None,
            **_: Any) -> tuple[Ritz, int]:
    b = min(k + oversample, op.dim_x, op.dim_h)
    # The space lives in x: once it fills x, the Ritz vectors are exact. When dim h < dim x the
    # rank of J is at most dim h, but a Krylov space of that size need not hold the row space
    # numerically; there J is materialised from dim h VJPs (no dearer than the Krylov space
    # itself) when the space would outgrow dim h unconverged.
    wide = op.dim_h < op.dim_x
    max_iters = max_iters or (op.dim_h + 1 if wide else max(2, math.ceil(op.dim_x / b)))
    Qs, Ys, Zs = [], [], []
    Qb = orthonormal_rows(random_rows(b, op.dim_x, seed))
    monitor = ErrorMonitor()
    bar = tqdm(range(max_iters), disable=not progress, desc="block Krylov")
    for it in bar:
        m = Qb.shape[0]
        Y = op.jvp(Qb.reshape(m, *op.x_shape)).reshape(m, -1).double()
        Z = op.vjp(Y.reshape(m, *op.h_shape)).reshape(m, -1).double()
        Qs.append(Qb), Ys.append(Y), Zs.append(Z)
        Q, JQ, JtJQ = torch.cat(Qs), torch.cat(Ys), torch.cat(Zs)
        ritz = monitor.update(rayleigh_ritz(Q, JQ, JtJQ, k))
        bar.set_postfix(angle=f"{ritz.angle_estimate:.2e}", dim=Q.shape[0])
        if callback is not None:
            callback(it + 1, ritz.v)
        if ritz.angle_estimate <= tol or Q.shape[0] >= op.dim_x:
            break
        if it >= 1 and numerical_rank(ritz.spectrum, rank_rtol) < k:
            break  # k above the rank: more products cannot determine the trailing vectors
        if wide and Q.shape[0] + b > op.dim_h:
            ritz, _ = _exact(op, k, progress)
            ritz.converged = True
            break
        # next block: JᵀJ Q_b, orthogonalised twice against the whole space (CGS2); its new
        # directions below the products' rounding noise are dropped
        scale = float(Z.norm(dim=1).max())
        if not scale > 0:
            break  # JᵀJ Q_b = 0: span(Q) is invariant
        nxt = Z / scale
        for _ in range(2):
            nxt = nxt - (nxt @ Q.T) @ Q
        Qb = orthonormal_rows(nxt, rtol=noise_rtol(op.x.dtype), scale=1.0)
        if Qb.shape[0] == 0:  # invariant subspace found: Ritz values are exact
            break
    return ritz, it + 1


_SOLVERS: dict[str, Callable[..., tuple[Ritz, int]]] = {
    "exact": _exact,
    "power": _power,
    "randomized": _randomized,
    "krylov": _krylov,
}


def _pick_method(op: JacobianOperator, k: int, oversample: int) -> str:
    """'exact' when materialising J costs fewer products than ~10 Krylov iterations, else 'krylov'."""
    exact_cost = min(op.dim_x, op.dim_h)
    krylov_cost = 2 * 10 * (k + oversample)
    return "exact" if exact_cost <= krylov_cost else "krylov"


def validate_k(k: int, dim_x: int, dim_h: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"k must be an integer, got {type(k).__name__}")
    if k < 1 or k > min(dim_x, dim_h):
        raise ValueError(
            f"k must satisfy 1 <= k <= min(dim x, dim h) = min({dim_x}, {dim_h}) = {min(dim_x, dim_h)}, got {k}"
        )


def check_solver_args(method: str, tol: float, max_iters: int | None, oversample: int | None, seed: int) -> None:
    """Validate solver options (cheap; before any model evaluation)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid methods: {list(METHODS)}")
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not math.isfinite(tol) or tol <= 0:
        raise ValueError(f"tol must be a finite number > 0 (radians), got {tol!r}")
    if max_iters is not None and (isinstance(max_iters, bool) or not isinstance(max_iters, int) or max_iters < 1):
        raise ValueError(f"max_iters must be a positive integer or None, got {max_iters!r}")
    if oversample is not None and (isinstance(oversample, bool) or not isinstance(oversample, int) or oversample < 0):
        raise ValueError(f"oversample must be an integer >= 0 or None, got {oversample!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an integer, got {type(seed).__name__}")


def jacobian_svd(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    k: int,
    *,
    method: str = SOLVER_DEFAULTS["method"],
    tol: float = SOLVER_DEFAULTS["tol"],
    max_iters: int | None = SOLVER_DEFAULTS["max_iters"],
    oversample: int | None = SOLVER_DEFAULTS["oversample"],
    seed: int = SOLVER_DEFAULTS["seed"],
    chunk_size: int | None = None,
    progress: bool = False,
    jvp_mode: str | None = None,
    batching: str = "auto",
    callback: Callable[[int, torch.Tensor], None] | None = None,
) -> LocalBasis:
    """Top-k singular triplets of J = ∂fn/∂x at ``x``, matrix-free.

    Args:
        fn: torch function of one tensor (freeze any module parameters it uses first).
            If ``fn.per_sample`` is True, x carries a leading batch dimension of 1.
        x: the point, shape ``x_shape``.
        k: number of singular triplets, 1 ≤ k ≤ min(dim x, dim h).
        method: ``"auto"``, ``"exact"``, ``"power"``, ``"randomized"`` or ``"krylov"`` (module doc).
        tol: target largest principal angle (radians) between the returned and the true subspace,
            as estimated a posteriori; for ``"power"``, the change between iterates (module doc).
        max_iters: iteration cap (default: power 100, randomized 30, krylov until the Krylov space
            fills x or, when dim h < dim x, would outgrow dim h: then J is materialised from
            dim h VJPs and the answer is exact).
        oversample: extra vectors per block (default: krylov 2, randomized 10; power uses none).
        seed: seed of the random start; same arguments give the same numbers.
        chunk_size: at most this many vectors per batched product (bounds memory).
        progress: show a tqdm bar over iterations.
        jvp_mode, batching: how products are computed (see :class:`JacobianOperator`). The default
            (``None``: ``$PULLBACK_JVP_MODE``, else ``"auto"``) times forward mode against
            reverse-over-reverse on the first block and keeps the faster that fits in memory, per
            architecture (forward mode measured 1.5–1.9× faster per vector at 128–256 px on CPU).
        callback: called after every iteration of the iterative methods as
            ``callback(iteration, v)`` with the current basis estimate v (k, dim x) float64
            (for convergence monitoring; the benchmark uses it for time-to-accuracy curves).

    Returns:
        :class:`LocalBasis` with v (k, *x_shape), u (k, *h_shape), s (k,), info.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if not torch.isfinite(x).all():
        raise ValueError("x contains NaN or infinite values")
    check_solver_args(method, tol, max_iters, oversample, seed)
    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"k must be an integer, got {type(k).__name__}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if oversample is None:
        oversample = 10 if method == "randomized" else 2

    start = time.perf_counter()
    op = JacobianOperator(fn, x, chunk_size=chunk_size, batching=batching, jvp_mode=jvp_mode)
    validate_k(k, op.dim_x, op.dim_h)
    if not torch.isfinite(op.h).all():
        raise ValueError("fn(x) is not finite; cannot compute its Jacobian's singular vectors")
    chosen = _pick_method(op, k, oversample) if method == "auto" else method
    rtol = rank_rtol(op.x.dtype, op.dim_x, op.dim_h)
    ritz, iters = _SOLVERS[chosen](
        op, k, tol=tol, max_iters=max_iters, oversample=oversample, seed=seed, progress=progress,
        rank_rtol=rtol, callback=callback,
    )
    op.release()
    if ritz.s.shape[0] < k:
        raise RuntimeError(f"the Jacobian has numerical rank {ritz.s.shape[0]} < k = {k}")

    v, u = ritz.v, ritz.u
    # fix the sign convention: the largest-magnitude entry of each v_i is positive
    signs = torch.sign(v.gather(1, v.abs().argmax(dim=1, keepdim=True))).squeeze(1)
    signs[signs == 0] = 1
    v, u = v * signs[:, None], u * signs[:, None]
    rank = numerical_rank(ritz.spectrum, rtol)
    degenerate = rank < k
    if degenerate:
        converged = False  # the trailing vectors are not determined
    elif chosen == "exact":
        converged = True
    elif ritz.converged is not None:
        converged = bool(ritz.converged)
    else:
        converged = bool(ritz.angle_estimate <= tol)
    info = {
        "method": chosen,
        "requested_method": method,
        "iterations": iters,
        "n_jvp": op.n_jvp,
        "n_vjp": op.n_vjp,
        "seconds": time.perf_counter() - start,
        "residuals": ritz.residuals.float(),
        "angle_estimate": ritz.angle_estimate,
        "converged": converged,
        "rank": rank,
        "rank_rtol": rtol,
        "degenerate": degenerate,
        "tol": tol,
        "oversample": oversample,
        "seed": seed,
    }
    basis = LocalBasis(
        v=v.to(x.dtype).reshape(k, *op.x_shape),
        u=u.to(x.dtype).reshape(k, *op.h_shape),
        s=ritz.s.to(x.dtype),
        info=info,
    )
    for category, message in basis_warnings(basis):
        warnings.warn(message, category, stacklevel=2)
    return basis


def basis_warnings(basis: LocalBasis) -> list[tuple[type[Warning], str]]:
    """The warnings :func:`jacobian_svd` gives for ``basis``, rebuilt from ``basis.info`` alone.

    A degenerate basis (k above the numerical rank) gets a :class:`DegenerateJacobianWarning`;
    otherwise an unconverged one gets a ``RuntimeWarning``. The basis cache replays these on a hit.
    """
    info = basis.info
    if info.get("degenerate"):
        rank, k = int(info["rank"]), basis.k
        why = (
            "the Jacobian is zero here (no direction of x changes h), so every vector is arbitrary"
            if rank == 0
            else (f"vector {k} is an arbitrary direction" if rank + 1 == k
                  else f"vectors {rank + 1}..{k} are arbitrary directions") + f" of its null space; use k <= {rank}"
        )
        return [(
            DegenerateJacobianWarning,
            f"jacobian_svd({info.get('method')!r}): k = {k} exceeds the numerical rank {rank} of the "
            f"Jacobian (singular values <= {float(info.get('rank_rtol', 0.0)):.1e} x sigma_1 count as "
            f"zero; sigma_{k} = {abs(float(basis.s[-1])):.3g}): {why}",
        )]
    if info.get("converged") is False:
        return [(
            RuntimeWarning,
            f"jacobian_svd({info.get('method')!r}) stopped after {info.get('iterations')} iterations "
            f"with estimated angle {float(info.get('angle_estimate', float('nan'))):.2e} (power: change "
            f"between iterates) above tol={float(info.get('tol', float('nan'))):g}; raise max_iters or oversample",
        )]
    return []
