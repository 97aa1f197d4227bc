"""Benchmark of the local-basis solvers: time and products to reach a target accuracy.

For one U-Net at one (x_t, t) and several k, prints per method

- seconds and JVP+VJP count until the largest principal angle to the exact basis first falls to
  ``--target`` radians (measured after every iteration through ``jacobian_svd(callback=...)``,
  the callback's own time excluded), iterations, and the angle reached;
- the default call (``method="auto"``, ``tol=1e-3``) as a user runs it: seconds, products,
  iterations, true angle and the solver's own angle estimate;
- speed ratios to the official subspace iteration ("power" with forward-mode JVPs, as the
  official code computes them) at equal accuracy; "power (our products)" separates the gain of
  the products (reverse-over-reverse J·V, vmap batching) from the gain of the algorithm.

Timings on shared machines swing: run on a quiet machine, with
``MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=4294967296``; times are minima over
``--repeats``; compare ratios within one run.

    python benchmarks/basis_solvers.py                    # random 32x32 U-Net, k = 10 20 50
    python benchmarks/basis_solvers.py --model disks      # a bundled model (when trained)
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from pullback_utils import feature_map, jacobian_svd
from pullback_utils.ad_safe import forward_ad_safe
from pullback_utils.basis import frozen


def bundled_like_unet(seed: int = 0):
    """Random-weight 32x32 RGB UNet2DModel shaped like the bundled zoo models (~1.1M parameters)."""
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    return UNet2DModel(
        sample_size=32, in_channels=3, out_channels=3, block_out_channels=(32, 64, 64), layers_per_block=2,
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"), norm_num_groups=8,
    )


def load_unet(name: str):
    if name == "random32":
        return bundled_like_unet()
    from pullback_utils import load_model  # the plumbing layer (bundled names, folders, hub ids)

    return load_model(name).unet


def max_angle(A: torch.Tensor, B: torch.Tensor) -> float:
    qa, _ = torch.linalg.qr(A.reshape(A.shape[0], -1).double().T)
    qb, _ = torch.linalg.qr(B.reshape(B.shape[0], -1).double().T)
    return float(torch.linalg.matrix_norm(qa - qb @ (qb.T @ qa), ord=2).clamp(max=1.0).asin())


class _Reached(Exception):
    pass


def time_to_target(fn, x, k, method, ref_v, target, oversample, max_iters, **opts):
    """Run ``method`` until its basis is within ``target`` rad of ``ref_v``; seconds, products, iters."""
    block = k if method == "power" else k + oversample
    state = {"cb": 0.0, "angle": float("nan"), "it": 0}
    start = time.perf_counter()

    def callback(it, v):
        c0 = time.perf_counter()
        state["angle"], state["it"] = max_angle(v, ref_v), it
        if state["angle"] <= target:
            state["t"] = c0 - start - state["cb"]
            raise _Reached
        state["cb"] += time.perf_counter() - c0

    try:
        jacobian_svd(fn, x, k, method=method, tol=1e-12, max_iters=max_iters, oversample=oversample,
                     callback=callback, **opts)
        seconds = float("nan")  # never reached the target
    except _Reached:
        seconds = state["t"]
    return seconds, 2 * block * state["it"], state["it"], state["angle"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="random32", help="'random32' or a load_model name/path")
    p.add_argument("--k", type=int, nargs="+", default=[10, 20, 50])
    p.add_argument("--t", type=float, default=500.0, help="timestep")
    p.add_argument("--target", type=float, default=0.01, help="target max principal angle (rad)")
    p.add_argument("--oversample", type=int, default=10, help="oversampling of 'randomized'")
    p.add_argument("--tol", type=float, default=1e-3, help="tol of the default call")
    p.add_argument("--power-max-iters", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    unet = load_unet(args.model)
    gen = torch.Generator().manual_seed(args.seed)
    c, s = unet.config.in_channels, unet.config.sample_size
    s = s if isinstance(s, int) else s[0]
    x = torch.randn(1, c, s, s, generator=gen)
    fn = feature_map(unet, args.t)
    print(f"model={args.model}  x={tuple(x.shape)}  t={args.t}  torch threads={torch.get_num_threads()}  "
          f"params={sum(p.numel() for p in unet.parameters()) / 1e6:.2f}M")

    with frozen(unet), forward_ad_safe(unet):
        h = fn(x)
        print(f"dim x = {x.numel()}, dim h = {h.numel()} (h shape {tuple(h.shape)})")
        t0 = time.perf_counter()
        exact = jacobian_svd(fn, x, max(args.k), method="exact")
        t_exact = time.perf_counter() - t0
        print(f"exact reference: {t_exact:.1f} s, {exact.info['n_jvp'] + exact.info['n_vjp']} products; "
              f"top singular values {[round(float(v), 3) for v in exact.s[:5]]}")
        rows = []
        for k in args.k:
            ref_v = exact.v[:k]
            gap = float(exact.s[k - 1] / exact.s[k]) if k < exact.s.numel() else float("nan")
            print(f"\n== k = {k}  (sigma_k / sigma_k+1 = {gap:.4f}) ==")
            print(f"{'method (to target)':<24}{'seconds':>10}{'products':>10}{'iters':>7}{'angle':>10}{'estimate':>10}{'vs power':>10}")
            results = {}
            variants = [
                # the official algorithm with its products (forward-mode JVP) = the baseline
                ("power (official)", "power", dict(jvp_mode="forward")),
                ("power (our products)", "power", {}),
                ("randomized", "randomized", dict(oversample=args.oversample)),
                ("krylov", "krylov", {}),
            ]
            for label, method, opts in variants:
                best = None
                over = opts.pop("oversample", 2)
                for _ in range(args.repeats):
                    r = time_to_target(fn, x, k, method, ref_v, args.target, over,
                                       args.power_max_iters if method == "power" else 200, **opts)
                    best = r if best is None or r[0] < best[0] else best
                results[label] = best
            default = None
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                b = jacobian_svd(fn, x, k, method="auto", tol=args.tol)
                sec = time.perf_counter() - t0
                if default is None or sec < default[0]:
                    default = (sec, b.info["n_jvp"] + b.info["n_vjp"], b.info["iterations"],
                               max_angle(b.v, ref_v), b.info["angle_estimate"], b.info["method"])
            t_power = results["power (official)"][0]
            for method, (sec, prods, its, ang) in results.items():
                ratio = t_power / sec if sec == sec else float("nan")
                label = method
                print(f"{label:<24}{sec:>10.2f}{prods:>10}{its:>7}{ang:>10.1e}{'':>10}{ratio:>9.1f}x")
            sec, prods, its, ang, est, chosen = default
            label = f"auto->{chosen} tol={args.tol:g}"
            print(f"{label:<24}{sec:>10.2f}{prods:>10}{its:>7}{ang:>10.1e}{est:>10.1e}{t_power / sec:>9.1f}x")
            rows.append((k, t_power, sec, ang))
    print("\nsummary: k, official power seconds to target, default seconds, default angle, speed-up")
    for k, tp, td, ang in rows:
        print(f"  k={k:<3} power {tp:7.2f} s   default {td:6.2f} s   angle {ang:.1e}   speed-up {tp / td:5.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
