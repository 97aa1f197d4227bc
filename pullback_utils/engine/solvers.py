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
    between successive iterates falls below ``tol`` (reported as ``info["stopped_changing"]``; a
    settled iterate can be far from the answer). Kept as the baseline.
``"randomized"``
    Randomized subspace iteration (Halko, Martinsson & Tropp 2011) with ``oversample`` extra
    vectors and a Rayleigh–Ritz step after every iteration, stopping as soon as the estimated
    subspace error is below ``tol``.
``"krylov"``
    Block Krylov (block Lanczos with full re-orthogonalisation; Musco & Musco 2015): keeps every
    block of the Krylov space span{Ω, JᵀJΩ, (JᵀJ)²Ω, …} and extracts the Ritz vectors from all of
    it, converging in fewer products than subspace iteration. When dim h < dim x and the space
    would outgrow dim h (the bound on J's rank) unconverged, it finishes as ``"exact"``. At most
    :data:`KRYLOV_MAX_ITERS` blocks unless ``max_iters`` says otherwise (fewer when the space fills x
    first): without it a spectrum with no verifiable gap at k would run until the space holds dim h
    vectors (at 256 x 256, dim h = 32768: days at ~10 s a block on 2 cores; a random-weight replica's
    k = 2 estimate stayed π/2 for 16 blocks before its gap was verified); capped, it stops unconverged
    and says so.
``"auto"``
    ``"exact"`` when J is small enough that materialising it costs no more than a few Krylov
    iterations, else ``"krylov"``.

Accuracy. Every method ends with a Rayleigh–Ritz step on the vectors it multiplied, so
J v_i = σ_i u_i holds to rounding error, and reports a posteriori, per vector, the residual
‖JᵀJ v_i − σ_i² v_i‖ / σ_i², and an estimate of the largest principal angle (radians) between the
returned subspace and the true one, ``info["angle_estimate"]``:

- a **verified gap** first: with θ_j = σ̂_j² the Ritz values of the whole block (k + oversample
  vectors; Krylov: the whole space) and r_j their residual norms, θ_j ≤ λ_j and an eigenvalue lies
  within r_j of θ_j, so λ_{k+1} ≤ max_{j>k}(θ_j + r_j) unless the block missed an eigenvalue
  entirely (random starts make that unlikely). ``info["gap"]`` = (θ_k − that bound) / θ_k. Without a
  positive gap (a flat or clustered spectrum at k, or too early) nothing is claimed: the estimate
  is π/2, ``converged`` False, ``info["reason"]`` says so and a warning names k and the gap;
- with a verified gap, the Davis–Kahan bound ‖R‖₂ / (θ_k − bound on λ_{k+1}), R the residual block
  of the top k. It is safe but pessimistic (10–50× on the test spectra);
- sharpened, when smaller, by a convergence-rate extrapolation: with c_i the angle between the
  Ritz subspaces of iterations i−1 and i and ρ the larger of the last two ratios c_i / c_{i−1}
  (< 0.9), the remaining error of a geometrically converging iteration is about c_i · ρ / (1 − ρ).

``converged`` is True only when the gap is verified and the estimate is at most ``tol`` (in (0, π/2)).
On random slowly decaying, geometric, clustered, flat and U-Net-shaped spectra every claim was
within 2× (true angle ≤ 2 tol, estimate ≥ true / 2; ``tests/test_solver_honesty.py``,
``benchmarks/solver_honesty.py``). ``"power"`` has no (k+1)-th Ritz value: after its official rule
stops it (``info["stopped_changing"]``: the iterate changed by less than ``tol``), an independent
block-Krylov check to tol / 4 (at most 50 iterations, its products in ``info["verify_products"]``
and in the counts, its time in ``info["verify_seconds"]``) gives the estimate ∠(V, V_Krylov) + e_Krylov.
``"exact"`` has rounding-level residuals but still needs the gap: a tie at k leaves the subspace undetermined.

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
#: ``block_size`` is not among them: its default (None: k + oversample) enters no cache key, so the bases
#: cached before it existed stay valid; a given block size does (features/cache.py).
SOLVER_DEFAULTS = MappingProxyType({"method": "auto", "tol": 1e-3, "max_iters": None, "oversample": None, "seed": 0})


class DegenerateJacobianWarning(RuntimeWarning):
    """k exceeds the numerical rank of the Jacobian: the trailing basis vectors are arbitrary."""


@dataclass
class LocalBasis:
    """Top-k singular triplets of a Jacobian J = ∂h/∂x at a point.

    Attributes:
        v: ``(k, *x_shape)`` unit-norm right singular vectors (local latent basis, x-space).
        u: ``(k, *h_shape)`` unit-norm left singular vectors u_i = J v_i / σ_i (tangent basis, h-space).
        s: (k,) singular values, descending.
        info: method, iterations, n_jvp, n_vjp, seconds, residuals (k,), angle_estimate, converged,
            reason ("" when converged), gap (relative, verified when > 0), rank, rank_rtol,
            degenerate, power only: stopped_changing, verify_products ... (module doc)
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
def _block_products(op: JacobianOperator, Q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The block step of the iterative methods: Q (m, dim x) -> (J Q, JᵀJ Q) as rows, (m, dim h) and
    (m, dim x), float64 (m J·v and m Jᵀu products)."""
    m = Q.shape[0]
    Y = op.jvp(Q.reshape(m, *op.x_shape)).reshape(m, -1).double()
    Z = op.vjp(Y.reshape(m, *op.h_shape)).reshape(m, -1).double()
    return Y, Z


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
    # past min(dim x, dim h) singular values J annihilates everything: σ_{k+1} = 0 there
    ritz = rayleigh_ritz(Q, (J @ Q.T).T, (J.T @ (J @ Q.T)).T, k, beyond=0.0 if m == k else None)
    ritz.spectrum = S
    return ritz, 1


def _power(
    op: JacobianOperator,
    k: int,
    tol: float,
    max_iters: int | None,
    seed: int,
    progress: bool,
    rank_rtol: float,
    callback: Callable | None = None,
    **_: Any,
) -> tuple[Ritz, int]:
    max_iters = max_iters or 100
    min_iters = min(10, max_iters)
    V = orthonormal_rows(random_rows(k, op.dim_x, seed))
    monitor_changes: list[float] = []
    bar = tqdm(range(max_iters), disable=not progress, desc="power iteration")
    for it in bar:
        Y, W = _block_products(op, V)  # rows J v_i, JᵀJ v_i
        _, S, Vh = torch.linalg.svd(W, full_matrices=False)  # S: σ_i² estimates
        V_new = Vh[:k]
        change = max_angle(V_new, V)
        monitor_changes.append(change)
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
    ritz.stopped_changing = bool(change < tol)
    _verify_power(op, ritz, k, tol, seed, rank_rtol)
    return ritz, it + 1


#: iteration cap of the block-Krylov check of a power iterate (about 50 (k + 2) J·v and as many Jᵀu)
POWER_CHECK_MAX_ITERS = 50
#: default iteration cap of ``"krylov"`` (``max_iters=None``): 50 blocks, a space of 50 (k + 2) vectors
#: (the default book's bases converge within 12; power's default is 100 iterations of k vectors)
KRYLOV_MAX_ITERS = 50


def _verify_power(op: JacobianOperator, ritz: Ritz, k: int, tol: float, seed: int, rank_rtol: float) -> None:
    """The power iterate's error estimate (module doc, 'Accuracy'): power iteration has no (k+1)-th
    Ritz value, so no gap can be verified from its own block (on a cluster at k its iterate settles
    inside the cluster, where span(V, JᵀJ V) sees nothing of the missing direction). An independent
    block-Krylov solve to tol / 4 (seed + 1) gives a verified subspace V_K with error bound e_K; the
    largest principal angle is a metric on subspaces, so the iterate's error is at most
    ∠(V, V_K) + e_K and at least ∠(V, V_K) − e_K. Its products are counted in ``n_jvp``/``n_vjp``
    and apart in ``info["verify_products"]``."""
    before, t0 = op.n_jvp + op.n_vjp, time.perf_counter()
    check, _ = _krylov(
        op,
        k,
        tol=tol / 4,
        max_iters=POWER_CHECK_MAX_ITERS,
        oversample=2,
        seed=seed + 1,
        progress=False,
        rank_rtol=rank_rtol,
    )
    ritz.verify_products = op.n_jvp + op.n_vjp - before
    ritz.verify_seconds = time.perf_counter() - t0
    ritz.spectrum = check.spectrum  # the Ritz values of a larger space (for the rank)
    ritz.gap = check.gap
    if check.verified:
        ritz.bound = min(max_angle(ritz.v, check.v) + check.bound, math.pi / 2)
        ritz.angle_estimate = min(max_angle(ritz.v, check.v) + check.angle_estimate, math.pi / 2)
    else:
        ritz.bound = ritz.angle_estimate = math.pi / 2


def _randomized(
    op: JacobianOperator,
    k: int,
    tol: float,
    max_iters: int | None,
    oversample: int,
    seed: int,
    progress: bool,
    rank_rtol: float,
    callback: Callable | None = None,
    **_: Any,
) -> tuple[Ritz, int]:
    max_iters = max_iters or 30
    b = min(k + oversample, op.dim_x, op.dim_h)
    Q = orthonormal_rows(random_rows(b, op.dim_x, seed))
    monitor = ErrorMonitor()
    bar = tqdm(range(max_iters), disable=not progress, desc="randomized subspace iteration")
    for it in bar:
        Y, Z = _block_products(op, Q)
        ritz = monitor.update(rayleigh_ritz(Q, Y, Z, k))
        bar.set_postfix(angle=f"{ritz.angle_estimate:.2e}")
        if callback is not None:
            callback(it + 1, ritz.v)
        if (ritz.verified and ritz.angle_estimate <= tol) or (it >= 1 and numerical_rank(ritz.spectrum, rank_rtol) < k):
            break
        # a rank-deficient J gives fewer directions than vectors: refill with random ones
        Q = complete_rows(orthonormal_rows(Z), b, seed + it + 1)
    return ritz, it + 1


def krylov_block_size(
    k: int, oversample: int | None = None, block_size: int | None = None, max_iters: int | None = None
) -> int:
    """Vectors per block of block Krylov (before the cap at min(dim x, dim h)).

    ``block_size`` when given; else ``k + oversample`` (``oversample`` default 2). With ``max_iters`` the
    block is raised to ``ceil((k + 2) / max_iters)`` if smaller, so that the Krylov space of
    ``max_iters`` blocks can hold k + 2 vectors: the top k and the (k+1)-th Ritz value a verified gap
    needs (the guard for k above the Krylov space).
    """
    if block_size is not None:
        b = block_size
    else:
        b = k + (2 if oversample is None else oversample)
    if max_iters is not None:
        b = max(b, math.ceil((k + 2) / max_iters))
    return max(1, b)


def small_krylov_block(k: int) -> int:
    """ceil(k / 4) + 1: a block smaller than k (``jacobian_svd(block_size=small_krylov_block(k))``; opt-in).

    On the random 32×32 U-Net of ``benchmarks/basis_solvers.py`` it reaches tol 1e-3 with 35-50 % fewer
    products than the default k + 2 (NOTES.md, issue 27). Not the default: a block smaller than the
    number of (nearly) equal singular values around σ_k can miss some of their directions entirely, and
    the verified-gap rule then over-claims (``tests/engine/test_solver_honesty.py`` at b = 3, k = 6:
    true angle π/2 on flat and clustered spectra, estimate below tol)."""
    return math.ceil(k / 4) + 1


def _krylov(
    op: JacobianOperator,
    k: int,
    tol: float,
    max_iters: int | None,
    oversample: int | None,
    seed: int,
    progress: bool,
    rank_rtol: float,
    callback: Callable | None = None,
    block_size: int | None = None,
    **_: Any,
) -> tuple[Ritz, int]:
    b = min(krylov_block_size(k, oversample, block_size, max_iters or KRYLOV_MAX_ITERS), op.dim_x, op.dim_h)
    # The space lives in x: once it fills x, the Ritz vectors are exact. When dim h < dim x the
    # rank of J is at most dim h, but a Krylov space of that size need not hold the row space
    # numerically; there J is materialised from dim h VJPs (no dearer than the Krylov space
    # itself) when the space would outgrow dim h unconverged.
    wide = op.dim_h < op.dim_x
    max_iters = max_iters or min(KRYLOV_MAX_ITERS, op.dim_h + 1 if wide else max(2, math.ceil(op.dim_x / b)))
    Qs, Ys, Zs = [], [], []
    Qb = orthonormal_rows(random_rows(b, op.dim_x, seed))
    monitor = ErrorMonitor()
    bar = tqdm(range(max_iters), disable=not progress, desc="block Krylov")
    for it in bar:
        Y, Z = _block_products(op, Qb)
        Qs.append(Qb), Ys.append(Y), Zs.append(Z)
        Q, JQ, JtJQ = torch.cat(Qs), torch.cat(Ys), torch.cat(Zs)
        ritz = rayleigh_ritz(Q, JQ, JtJQ, k)
        ritz.block_size = b
        if Q.shape[0] >= k:  # a space of fewer than k dimensions has no top-k subspace to compare yet
            ritz = monitor.update(ritz)
            if callback is not None:
                callback(it + 1, ritz.v)
        bar.set_postfix(angle=f"{ritz.angle_estimate:.2e}", tol=f"{tol:g}", dim=Q.shape[0])
        if (ritz.verified and ritz.angle_estimate <= tol) or Q.shape[0] >= op.dim_x:
            break
        # k above the rank: more products cannot determine the trailing vectors. Judged from the second
        # block on and only once the space holds more than k vectors (always so when b >= k): a space of
        # at most k dimensions has at most k Ritz values whatever the rank (the guard for k above the
        # Krylov space, for blocks smaller than k)
        if it >= 1 and Q.shape[0] > k and numerical_rank(ritz.spectrum, rank_rtol) < k:
            break
        if wide and Q.shape[0] + b > op.dim_h:
            ritz, _ = _exact(op, k, progress)  # exact: its estimate is rounding over the gap at k
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
        if Qb.shape[0] == 0:  # invariant subspace found: Ritz values are exact, J ≈ 0 on the rest
            ritz = rayleigh_ritz(Q, JQ, JtJQ, k, beyond=0.0)
            ritz.block_size = b
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


def check_solver_args(
    method: str, tol: float, max_iters: int | None, oversample: int | None, seed: int, block_size: int | None = None
) -> None:
    """Validate solver options (cheap; before any model evaluation)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid methods: {list(METHODS)}")
    if (
        isinstance(tol, bool)
        or not isinstance(tol, (int, float))
        or not math.isfinite(tol)
        or not 0 < tol < math.pi / 2
    ):
        raise ValueError(
            f"tol must be a number in (0, pi/2) = (0, {math.pi / 2:.4f}) radians (a largest principal angle; "
            f"at pi/2 every subspace passes), got {tol!r}"
        )
    if max_iters is not None and (isinstance(max_iters, bool) or not isinstance(max_iters, int) or max_iters < 1):
        raise ValueError(f"max_iters must be a positive integer or None, got {max_iters!r}")
    if oversample is not None and (isinstance(oversample, bool) or not isinstance(oversample, int) or oversample < 0):
        raise ValueError(f"oversample must be an integer >= 0 or None, got {oversample!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an integer, got {type(seed).__name__}")
    if block_size is not None and (isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1):
        raise ValueError(f"block_size must be a positive integer or None (the default block), got {block_size!r}")


def _modules_of(fn: Any) -> list[torch.nn.Module]:
    """The torch modules ``fn`` evidently uses: itself, its attributes, a bound method's object, closure
    cells and ``functools.partial`` arguments (one level deep; for the stochastic-module check)."""
    found: list[torch.nn.Module] = []
    seen: list[Any] = []
    todo = [fn, getattr(fn, "__self__", None), getattr(fn, "func", None)]
    todo += list(getattr(fn, "args", ()) or ()) if not isinstance(fn, torch.nn.Module) else []
    todo += [c.cell_contents for c in (getattr(fn, "__closure__", None) or ()) if _filled(c)]
    if not isinstance(fn, torch.nn.Module):
        todo += [v for v in getattr(fn, "__dict__", {}).values()]
    for obj in todo:
        if isinstance(obj, torch.nn.Module) and not any(obj is o for o in seen):
            seen.append(obj)
            found.append(obj)
    return found


def _filled(cell: Any) -> bool:
    try:
        cell.cell_contents
    except ValueError:  # an empty cell
        return False
    return True


def check_deterministic_modules(fn: Any) -> None:
    """Refuse a ``fn`` that runs a dropout module in training mode (its Jacobian is random)."""
    for root in _modules_of(fn):
        for name, mod in root.named_modules():
            if isinstance(mod, torch.nn.modules.dropout._DropoutNd) and mod.training and mod.p > 0:
                where = f"{type(root).__name__}.{name}" if name else type(root).__name__
                raise ValueError(
                    f"fn runs {type(mod).__name__}(p={mod.p:g}) in training mode ({where}): every evaluation "
                    f"draws a new mask, so its Jacobian is random and no basis of it is meaningful; call "
                    f".eval() on the model first (e.g. f.eval(), or wrap the call in "
                    f"pullback_utils.features.basis.frozen(model))"
                )


def check_repeatable(fn: Callable, x: torch.Tensor, h: torch.Tensor, rtol: float = 1e-4) -> None:
    """Refuse a ``fn`` whose second evaluation at ``x`` differs from the first ``h`` (a stochastic
    function: dropout or noise in training mode). ``rtol`` × max |h| allows nondeterministic kernels."""
    with torch.no_grad():
        again = fn(x)
    if again.shape != h.shape:
        raise ValueError(f"fn(x) changed shape between two evaluations: {tuple(h.shape)} then {tuple(again.shape)}")
    scale = float(h.abs().max()) if h.numel() else 0.0
    diff = float((again.to(h.dtype) - h).abs().max()) if h.numel() else 0.0
    if not diff <= rtol * scale:
        raise ValueError(
            f"fn is not deterministic: two evaluations at the same x differ by {diff:.3g} (max |fn(x)| = "
            f"{scale:.3g}); a module in training mode (Dropout, noise) makes its Jacobian random. Call "
            f".eval() on the model (f.eval()) or fix its random seed inside fn"
        )


def jacobian_svd(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    k: int,
    *,
    method: str = SOLVER_DEFAULTS["method"],
    tol: float = SOLVER_DEFAULTS["tol"],
    max_iters: int | None = SOLVER_DEFAULTS["max_iters"],
    oversample: int | None = SOLVER_DEFAULTS["oversample"],
    block_size: int | None = None,
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
        tol: target largest principal angle (radians), in (0, π/2), between the returned and the
            true subspace, as estimated a posteriori with a verified spectral gap (module doc,
            'Accuracy'); for ``"power"`` also its official stopping rule (change between iterates).
        max_iters: iteration cap (default: power 100, randomized 30, krylov :data:`KRYLOV_MAX_ITERS`
            or fewer: until the Krylov space fills x or, when dim h < dim x, would outgrow dim h:
            then J is materialised from dim h VJPs and the answer is exact). A solve stopped by the
            cap reports ``converged`` False with its angle estimate (and warns).
        oversample: extra vectors per block (default: krylov 2, randomized 10; power uses none).
        block_size: vectors per block of block Krylov (``"krylov"``, and ``"auto"`` when it picks it),
            overriding k + oversample; raised to ceil((k + 2) / max_iters) when ``max_iters`` is given
            (so the space can hold k + 2 vectors). Blocks smaller than k (e.g.
            :func:`small_krylov_block`) measured 35-50 % fewer products to tol on a U-Net (issue 27,
            NOTES.md) but can miss directions of a cluster of equal singular values at k and then claim
            a convergence they do not have; the default is safe there. Ignored by the other methods.
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
        :class:`LocalBasis` with v ``(k, *x_shape)``, u ``(k, *h_shape)``, s (k,), info.

    Raises:
        ValueError: bad arguments (before any evaluation); ``fn`` runs a dropout module in training
            mode, or two evaluations of ``fn`` at x differ (a stochastic function: call ``.eval()``).
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if not torch.isfinite(x).all():
        raise ValueError("x contains NaN or infinite values")
    check_solver_args(method, tol, max_iters, oversample, seed, block_size)
    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"k must be an integer, got {type(k).__name__}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if oversample is None:
        oversample = 10 if method == "randomized" else 2
    check_deterministic_modules(fn)

    start = time.perf_counter()
    op = JacobianOperator(fn, x, chunk_size=chunk_size, batching=batching, jvp_mode=jvp_mode)
    validate_k(k, op.dim_x, op.dim_h)
    if not torch.isfinite(op.h).all():
        raise ValueError("fn(x) is not finite; cannot compute its Jacobian's singular vectors")
    check_repeatable(fn, op.x, op.h)  # one more forward pass (no products): a stochastic fn is refused
    chosen = _pick_method(op, k, oversample) if method == "auto" else method
    rtol = rank_rtol(op.x.dtype, op.dim_x, op.dim_h)
    ritz, iters = _SOLVERS[chosen](
        op,
        k,
        tol=tol,
        max_iters=max_iters,
        oversample=oversample,
        block_size=block_size,
        seed=seed,
        progress=progress,
        rank_rtol=rtol,
        callback=callback,
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
    s_k2 = float(ritz.s[-1]) ** 2
    gap = ritz.gap / s_k2 if s_k2 > 0 and not math.isnan(ritz.gap) else ritz.gap  # relative to σ_k²
    if degenerate:
        converged, reason = False, f"k = {k} exceeds the numerical rank {rank}"
    elif not ritz.verified:
        converged = False
        reason = (
            f"no spectral gap after sigma_{k} could be verified (relative gap {gap:.2g})"
            if not math.isnan(gap)
            else f"no (k+1)-th Ritz value to verify a gap after sigma_{k} (oversample={oversample})"
        )
    elif ritz.angle_estimate <= tol:
        converged, reason = True, ""
    else:
        converged, reason = False, f"estimated angle {ritz.angle_estimate:.2e} above tol={tol:g}"
    info = {
        "method": chosen,
        "requested_method": method,
        "iterations": iters,
        "n_jvp": op.n_jvp,
        "n_vjp": op.n_vjp,
        "seconds": time.perf_counter() - start,
        "residuals": ritz.residuals.float(),
        "angle_estimate": float(ritz.angle_estimate),
        "converged": converged,
        "reason": reason,
        "gap": float(gap),
        "rank": rank,
        "rank_rtol": rtol,
        "degenerate": degenerate,
        "tol": tol,
        "oversample": oversample,
        "seed": seed,
    }
    if ritz.block_size is not None:
        info["block_size"] = int(ritz.block_size)  # krylov: vectors per block
    if chosen == "power":
        info["stopped_changing"] = bool(ritz.stopped_changing)  # the official rule: change < tol
        info["verify_products"] = int(ritz.verify_products)  # of the Krylov check (in n_jvp + n_vjp)
        info["verify_seconds"] = float(ritz.verify_seconds)  # of the Krylov check (in seconds)
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
            else (
                f"vector {k} is an arbitrary direction"
                if rank + 1 == k
                else f"vectors {rank + 1}..{k} are arbitrary directions"
            )
            + f" of its null space; use k <= {rank}"
        )
        return [
            (
                DegenerateJacobianWarning,
                f"jacobian_svd({info.get('method')!r}): k = {k} exceeds the numerical rank {rank} of the "
                f"Jacobian (singular values <= {float(info.get('rank_rtol', 0.0)):.1e} x sigma_1 count as "
                f"zero; sigma_{k} = {abs(float(basis.s[-1])):.3g}): {why}",
            )
        ]
    if info.get("converged") is False:
        est = float(info.get("angle_estimate", float("nan")))
        tol = float(info.get("tol", float("nan")))
        reason = str(info.get("reason", ""))
        if reason.startswith("no spectral gap") or reason.startswith("no (k+1)"):
            return [
                (
                    RuntimeWarning,
                    f"jacobian_svd({info.get('method')!r}) cannot bound the error of the top k = {basis.k} "
                    f"subspace: {reason}, so its largest principal angle to the true one is unknown (up to "
                    f"pi/2) after {info.get('iterations')} iterations. Either sigma_{basis.k} is (nearly) tied with "
                    f"sigma_{basis.k + 1} (choose a k at a gap in the spectrum) or the iteration stopped too early "
                    f"(raise max_iters or oversample)",
                )
            ]
        power = " (the power iterate stopped changing)" if info.get("stopped_changing") else ""
        return [
            (
                RuntimeWarning,
                f"jacobian_svd({info.get('method')!r}) stopped after {info.get('iterations')} iterations{power} "
                f"with estimated angle {est:.2e} above tol={tol:g}; raise max_iters or oversample",
            )
        ]
    return []
