"""Run time of the ground-truth chapter's measurements, stage by stage, with an empty basis cache.

Runs :func:`pullback_utils.ground_truth.truth_study` for each model with the chapter's default
parameters (read from the parameters cell of ``notebooks/ground_truth.md``; override with the flags)
into a fresh temporary cache, on one torch thread, and prints per model and stage the wall and CPU
seconds: data (images, tangent spaces, local PCA), bases (the local-basis sweep), pushed tangents
(the forward-mode JVPs through the inversion), denoiser and control (the denoiser-Jacobian and
random-weight bases at the held-out best t).

Run it on a quiet machine (timings on a shared one are meaningless)::

    python benchmarks/ground_truth_runtime.py
    python benchmarks/ground_truth_runtime.py --ddim-steps 20 --models disks
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

import torch

from pullback_utils import ground_truth as gt
from pullback_utils.chapters.parameters import parse_assignments

CHAPTER = Path(__file__).resolve().parents[1] / "notebooks" / "ground_truth.md"


def defaults() -> dict:
    """The chapter's parameters cell, parsed (literal values only)."""
    text = CHAPTER.read_text()
    cell = re.search(r"```\{code-cell\}\n:tags: \[parameters[^\n]*\n\n(.*?)```", text, re.S)
    if cell is None:
        raise SystemExit(f"no parameters cell found in {CHAPTER}")
    return parse_assignments(cell.group(1))


def main() -> None:
    p = defaults()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=p["models"])
    ap.add_argument("--n-samples", type=int, default=p["n_samples"])
    ap.add_argument("--ddim-steps", type=int, default=p["ddim_steps"])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    solver = {"method": p["method"], "tol": p["tol"], "max_iters": p["max_iters"], "seed": p["seed"]}
    total_wall, total_cpu = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory() as cache:
        for name in args.models:
            wall, cpu = time.perf_counter(), time.process_time()
            st = gt.truth_study(
                name,
                n=args.n_samples,
                data_seed=p["data_seed"],
                times=p["times"],
                k=p["k"],
                ddim_steps=args.ddim_steps,
                n_pool=p["n_pool"],
                n_neighbours=p["n_neighbours"],
                rank_rtol=p["rank_rtol"],
                cache_dir=cache,
                solver=solver,
                seed=p["seed"],
                progress=False,
            )
            stages = ", ".join(f"{k} {v:.1f} s" for k, v in st.seconds.items() if k != "total")
            print(f"{name}: wall {time.perf_counter() - wall:.1f} s, CPU {time.process_time() - cpu:.1f} s ({stages})")
    print(
        f"all models: wall {time.perf_counter() - total_wall:.1f} s, CPU {time.process_time() - total_cpu:.1f} s "
        f"({args.threads} thread(s), ddim_steps={args.ddim_steps}, n_samples={args.n_samples})"
    )


if __name__ == "__main__":
    main()
