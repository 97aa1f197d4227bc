"""Block size of block Krylov: products, seconds and true angle against the block b it runs with.

The package runs block Krylov with b = k + 2 vectors per block by default; ``jacobian_svd(block_size=...)``
(issue 27) sets another, e.g. ``solvers.small_krylov_block(k)`` = ceil(k / 4) + 1.
This probe tries other blocks, b < k included, through the private ``solvers._krylov`` (``block_size=b``), on the
random-weight 32x32 U-Net of ``basis_solvers.py`` against its exact basis:

    python benchmarks/krylov_block_size.py --k 5 10 20 50 --fractions 0.5 0.8 1.0 --tol 1e-3

``--fractions`` give b = round(f * k); the default b = k + 2 is always run as well. Results of
2026-12-02 are in ``benchmarks/results-basis_solvers.txt`` and NOTES.md.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from basis_solvers import bundled_like_unet, max_angle  # noqa: E402

from pullback_utils import feature_map
from pullback_utils.engine import solvers  # noqa: E402
from pullback_utils.engine.operators import JacobianOperator  # noqa: E402
from pullback_utils.engine.ritz import rank_rtol  # noqa: E402
from pullback_utils.engine.solvers import jacobian_svd
from pullback_utils.features.ad_safe import forward_ad_safe  # noqa: E402
from pullback_utils.features.basis import frozen  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--k", type=int, nargs="+", default=[5, 10, 20, 50])
    p.add_argument("--fractions", type=float, nargs="+", default=[0.5, 0.8, 1.0])
    p.add_argument("--tol", type=float, nargs="+", default=[1e-3])
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=".*stopped after.*")
    unet = bundled_like_unet()
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    fn = feature_map(unet, 500)
    with frozen(unet), forward_ad_safe(unet):
        exact = jacobian_svd(fn, x, max(args.k), method="exact")
        print(f"{'k':>3}{'tol':>8}{'b':>4}{'iters':>6}{'products':>9}{'seconds':>8}{'angle':>9}{'estimate':>9}")
        for k in args.k:
            blocks = sorted({max(1, round(f * k)) for f in args.fractions} | {k + 2, solvers.small_krylov_block(k)})
            for tol in args.tol:
                for b in blocks:
                    op = JacobianOperator(fn, x, jvp_mode="auto")
                    start = time.perf_counter()
                    ritz, iters = solvers._krylov(
                        op, k, tol, None, None, 0, False, rank_rtol(x.dtype, op.dim_x, op.dim_h), block_size=b
                    )
                    sec = time.perf_counter() - start
                    print(
                        f"{k:>3}{tol:>8.0e}{b:>4}{iters:>6}{op.n_jvp + op.n_vjp:>9}{sec:>8.2f}"
                        f"{max_angle(ritz.v, exact.v[:k]):>9.1e}{ritz.angle_estimate:>9.1e}",
                        flush=True,
                    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
