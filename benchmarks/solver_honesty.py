"""Does ``jacobian_svd`` claim a convergence it does not have? Estimate vs true angle on test spectra.

For linear maps fn(x) = A x, A (200, 300) = U diag(s) Vᵀ with random orthonormal U, V and a chosen
spectrum s, the true top-k right singular subspace is known exactly, so every call's reported
``angle_estimate`` and ``converged`` can be checked against the true largest principal angle.

Spectra (200 singular values each; k = 5 unless ``--k``):

- ``slow``: falling linearly from 1 to 0.6 (the issue-25 case: no usable gap at k);
- ``geometric``: 0.97^i (a clear gap everywhere);
- ``clustered``: ten clusters of four values (spread 1e-4) from 1 to 0.5, then a geometric tail;
  k = 5 cuts a cluster (no gap), k = 4 or 8 a cluster boundary;
- ``flat``: 1 + 1e-6 · uniform noise (no gap anywhere);
- ``unet``: the top 200 of the bundled ``disks`` model's mid-block Jacobian spectrum, σ_i / σ_1 (exact
  SVD at t = 500; see ``unet_like``): one large σ_1, then a slow decay (σ_5 / σ_6 = 1.06).

A row is a LIE when the call reports ``converged=True`` but the true angle exceeds 2·tol or the
estimate is below half the true angle. Runs in seconds on one thread; it needs no model and no git
revision: run it on two checkouts and compare the printed tables
(``benchmarks/results-solver_honesty-before.txt`` / ``results-solver_honesty.txt``).

    python benchmarks/solver_honesty.py [--k 5] [--tols 1e-3 1e-2 0.1 0.5] [--threads 1]
    python benchmarks/solver_honesty.py --unet-k 5 10 20   # + products of the default call on a U-Net

``--unet-k`` adds the cost side: Jacobian products (J·v plus Jᵀu) of the default call
``jacobian_svd(feature_map(unet, 500), x, k)`` (method "auto", tol 1e-3) on the random-weight 32×32
U-Net of ``benchmarks/basis_solvers.py``, for each k. Products, unlike seconds, do not depend on the
machine's load.
"""

from __future__ import annotations

import argparse
import warnings

import torch

from pullback_utils.engine.solvers import jacobian_svd


def unet_like(n: int = 200) -> torch.Tensor:
    """(n,) the top of a spectrum shaped like the disks U-Net's mid-block Jacobian (σ_i / σ_1).

    Measured once (exact SVD of the Jacobian, 3072 values, from 3072 forward-mode JVPs, t = 500,
    ``load_model("disks").noise(1, seed=3)``): σ_i / σ_1 at the indices ``UNET_INDEX``; between them
    interpolated log-linearly in i; only the top 200 are used.
    """
    idx = torch.tensor(UNET_INDEX, dtype=torch.float64)
    val = torch.tensor(UNET_VALUES, dtype=torch.float64).log()
    i = torch.arange(n, dtype=torch.float64)
    j = torch.searchsorted(idx, i, right=True).clamp(1, idx.numel() - 1)
    w = (i - idx[j - 1]) / (idx[j] - idx[j - 1])
    return (val[j - 1] * (1 - w) + val[j] * w).exp()


UNET_INDEX = [0, 1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 50, 100, 200, 400, 800, 1600, 3071]
UNET_VALUES = [
    1.0,
    0.4206,
    0.3089,
    0.2686,
    0.2505,
    0.2361,
    0.2205,
    0.2054,
    0.1908,
    0.1636,
    0.1486,
    0.1235,
    0.0923,
    0.0504,
    0.0248,
    0.0111,
    0.0053,
    0.0022,
    0.0001,
]


def spectra(n: int = 200) -> dict[str, torch.Tensor]:
    i = torch.arange(n, dtype=torch.float64)
    gen = torch.Generator().manual_seed(1)
    clusters = [
        c + 1e-4 * torch.rand(4, generator=gen, dtype=torch.float64)
        for c in torch.linspace(1, 0.5, 10, dtype=torch.float64)
    ]
    tail = 0.45 * 0.98 ** torch.arange(n - 40, dtype=torch.float64)
    return {
        "slow": torch.linspace(1, 0.6, n, dtype=torch.float64),
        "geometric": 0.97**i,
        "clustered": torch.sort(torch.cat([*clusters, tail]), descending=True).values,
        "flat": torch.sort(1 + 1e-6 * torch.rand(n, generator=gen, dtype=torch.float64), descending=True).values,
        "unet": unet_like(n),
    }


def linear_map(s: torch.Tensor, dim_x: int = 300, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A (dim h, dim x) with singular values s and its right singular vectors (rows, (dim h, dim x))."""
    gen = torch.Generator().manual_seed(seed)
    dim_h = s.numel()
    U, _ = torch.linalg.qr(torch.randn(dim_h, dim_h, generator=gen, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(dim_x, dim_h, generator=gen, dtype=torch.float64))
    return U @ torch.diag(s) @ V.T, V.T


def true_angle(v: torch.Tensor, ref: torch.Tensor) -> float:
    """Largest principal angle between the row spans of v (k, D) and ref (k, D), sine form."""
    qa, _ = torch.linalg.qr(v.reshape(v.shape[0], -1).double().T)
    qb, _ = torch.linalg.qr(ref.double().T)
    return float(torch.linalg.matrix_norm(qa - qb @ (qb.T @ qa), ord=2).clamp(max=1.0).asin())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--tols", type=float, nargs="+", default=[1e-3, 1e-2, 0.1, 0.5])
    ap.add_argument("--methods", nargs="+", default=["power", "randomized", "krylov"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--unet-k", type=int, nargs="*", default=[], help="also count the default call's products")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    k = args.k
    print(
        f"{'spectrum':<10}{'method':<11}{'tol':>7}  {'conv':<6}{'settled':<8}{'estimate':>9}{'true':>9}"
        f"{'products':>9}{'iters':>6}  verdict"
    )
    lies = 0
    for name, s in spectra().items():
        A, Vt = linear_map(s)
        x = torch.zeros(A.shape[1], dtype=torch.float64)
        for method in args.methods:
            for tol in args.tols:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    b = jacobian_svd(lambda z: A @ z, x, k, method=method, tol=tol)
                info = b.info
                true = true_angle(b.v, Vt[:k])
                est = float(info["angle_estimate"])
                conv = bool(info["converged"])
                settled = info.get("stopped_changing")
                lie = conv and (true > 2 * tol or not est >= true / 2)
                lies += lie
                verdict = "LIE" if lie else ("ok" if conv else "not converged")
                print(
                    f"{name:<10}{method:<11}{tol:>7g}  {str(conv):<6}{'-' if settled is None else str(settled):<8}"
                    f"{est:>9.2e}{true:>9.2e}{info['n_jvp'] + info['n_vjp']:>9}{info['iterations']:>6}  {verdict}",
                    flush=True,
                )
    print(
        f"\n{lies} of {len(spectra()) * len(args.methods) * len(args.tols)} calls claimed a convergence "
        f"they did not have (converged=True with true angle > 2 tol or estimate < true / 2)"
    )
    if args.unet_k:
        unet_products(args.unet_k)


def unet_products(ks: list[int], t: int = 500) -> None:
    """Products of the default call on the random-weight 32x32 U-Net (benchmarks/basis_solvers.py)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from basis_solvers import bundled_like_unet

    from pullback_utils import feature_map
    from pullback_utils.features.ad_safe import forward_ad_safe
    from pullback_utils.features.basis import frozen

    unet = bundled_like_unet()
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    print(f"\ndefault call on the random-weight 32x32 U-Net, t = {t}: jacobian_svd(fn, x, k)")
    print(f"{'k':>4}{'method':>8}{'products':>10}{'iters':>7}{'estimate':>10}  converged")
    with frozen(unet), forward_ad_safe(unet):  # attention with a second derivative on CPU
        fn = feature_map(unet, t)
        for k in ks:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                b = jacobian_svd(fn, x, k)
            info = b.info
            print(
                f"{k:>4}{info['method']:>8}{info['n_jvp'] + info['n_vjp']:>10}{info['iterations']:>7}"
                f"{float(info['angle_estimate']):>10.2e}  {info['converged']}",
                flush=True,
            )


if __name__ == "__main__":
    main()
