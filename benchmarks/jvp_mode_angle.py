"""Does the J·V mode change a basis? The principal angle between bases computed with reverse-over-reverse
(the default before issue 28), the package default (``auto``) and forward mode, on a bundled model.

    python benchmarks/jvp_mode_angle.py                 # disks, k = 8, tol 0.01 (the tutorial's), t = 0.3 and 0.6

Measured 2026-12-07 (NOTES.md, "The default J·V mode"): at most 1.3e-6 rad between forward and reverse,
far below tol, which is why ``jvp_mode`` stays out of the basis cache key.
"""

from __future__ import annotations

import argparse
import time

import torch


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="disks")
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--tol", type=float, default=0.01)
    p.add_argument("--times", type=float, nargs="+", default=[0.3, 0.6])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    import pullback_utils as pu
    from pullback_utils.engine import operators as products

    m = pu.load_model(args.model)
    for t in args.times:
        x_t = pu.sweeps.bases.sample_trajectories(m, 1, args.seed, [t], steps=20).x[0]
        bases = {}
        for mode in ("reverse", None, "forward"):
            start = time.perf_counter()
            bases[mode] = (
                m.local_basis(x_t, t, args.k, method="krylov", tol=args.tol, seed=args.seed, jvp_mode=mode),
                time.perf_counter() - start,
            )
        ref = bases["reverse"][0]
        for mode, label in ((None, "default"), ("forward", "forward")):
            b, sec = bases[mode]
            angle = float(pu.principal_angles(ref.v, b.v).max())
            ds = float((ref.s - b.s).abs().max() / ref.s.max())
            print(
                f"t={t}: {label} vs reverse: largest principal angle {angle:.2e} rad (tol {args.tol}), singular "
                f"values within {ds:.1e} relative, {b.info['n_jvp']} vs {ref.info['n_jvp']} J.v, {sec:.1f} s vs "
                f"{bases['reverse'][1]:.1f} s",
                flush=True,
            )
        print(f"  auto: (mode, s forward, s reverse) per block: {list(products.auto_choices().values())}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
