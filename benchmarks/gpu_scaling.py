"""Bases per second on a CUDA GPU at the paper's sizes: the cases of ``benchmarks/scaling.py`` on the card.

For each model of ``scaling.py`` (google/ddpm-cifar10-32, the ddpm-celebahq-256 architecture at 64, 128
and 256, and the SD-2.1-base U-Net at a 64x64 latent; random weights), k and J·v mode: a whole basis by
block Krylov to tol 1e-3, on the GPU, with forward-mode AD through the attention layers (the package's
AD-safe processor replaces the fused CUDA attention kernels, which have no forward-AD formula), its
seconds, products, peak GPU memory and bases per second; then the wall time of the paper's protocols
on one such card (CelebA-HQ-256: 20 timesteps x 100 samples; Stable Diffusion: 10 timesteps x 50
captions).

    python benchmarks/gpu_scaling.py                      # all sizes, k = 10 and 50, forward and reverse
    python benchmarks/gpu_scaling.py --sizes 256 sd --k 50 --modes auto

Needs a CUDA device (it says so and exits with status 2 otherwise). Each case runs in its own process.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from scaling import NAMES, SIZES, in_subprocess, table

PROTOCOLS = {
    "256": ("CelebA-HQ-256, 20 timesteps x 100 samples", 2000),
    "sd": ("Stable Diffusion, 10 timesteps x 50 captions", 500),
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", nargs="+", default=list(SIZES), choices=SIZES)
    p.add_argument("--k", type=int, nargs="+", default=[10, 50])
    p.add_argument("--modes", nargs="+", default=["forward", "reverse"], choices=["forward", "reverse", "auto"])
    p.add_argument("--device", default="cuda", help="a CUDA device, e.g. cuda or cuda:1")
    p.add_argument("--timeout", type=float, default=3600, help="seconds per case")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print(
            f"gpu_scaling.py needs a CUDA device: torch.cuda.is_available() is False (torch {torch.__version__}, "
            f"built with CUDA {torch.version.cuda}). Run benchmarks/scaling.py for the CPU.",
            file=sys.stderr,
        )
        return 2
    card = torch.cuda.get_device_name(torch.device(args.device))
    print(f"{card} ({args.device}), torch {torch.__version__}, CUDA {torch.version.cuda}")
    rows = []
    for size in args.sizes:
        for k in args.k:
            for mode in args.modes:
                case = dict(size=size, k=k, mode=mode, basis="full", threads=1, device=args.device)
                started = time.perf_counter()
                rows.append(in_subprocess(case, args.timeout))
                print(
                    f"  {size:>4} k={k:<3} {mode:<8} {time.perf_counter() - started:7.1f} s  "
                    f"{rows[-1].get('error', '')}",
                    flush=True,
                )
    print()
    print(table(rows).replace("peak GB", "GPU GB "))
    print(f"\nbases per second on one {card} (block Krylov, tol 1e-3):")
    for r in rows:
        if "basis_s" in r:
            line = (
                f"  {NAMES[r['size']]:<31} k={r['k']:<3} {r['mode']:<8} {1 / r['basis_s']:8.3f} bases/s  "
                f"({r['basis_s']:.2f} s, {r['products']} products)"
            )
            if r["size"] in PROTOCOLS:
                what, n = PROTOCOLS[r["size"]]
                line += f"; {what}: {n * r['basis_s'] / 3600:.1f} h"
            print(line)
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
