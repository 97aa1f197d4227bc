"""Time and peak memory of one local basis on the CelebA-HQ-256 DDPM architecture (random weights).

The U-Net is ``google/ddpm-ema-celebahq-256``'s ``UNet2DModel`` config (checked against the
hub's ``unet/config.json``, as reproduced in public copies of that file): 256x256 RGB,
block_out_channels (128, 128, 256, 256, 512, 512), two ResNet layers per block, self-attention
in the fifth down block (16x16) and in the mid block, no attention head dim (one head),
GroupNorm 32, eps 1e-6, ``freq_shift`` 1, ``flip_sin_to_cos`` False, ``downsample_padding`` 0;
h-space (mid block output) is 512x8x8. Its scheduler: 1000 linear betas 1e-4..0.02.
The weights are random: the cost of the products does not depend on their values (the number of
solver iterations can).

It reports wall seconds of ``DiffusionModel.local_basis(x_t, t, k)`` at t/T = 0.5 (default
k = 50, ``method="auto"``, ``tol=1e-3``), the products and iterations it used, and the resident
memory: before the call (model loaded), the peak during it (sampled every 20 ms from
/proc/self/status, and the kernel's high-water mark ``ru_maxrss``), and their difference.

    MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=4294967296 \\
        python benchmarks/celebahq_basis.py --k 50 --t 0.5 --chunk-size 4

On 2 CPU cores one J or J^T product on this architecture costs seconds, so a converged k = 50
basis takes many minutes per solver iteration; ``--max-iters 1`` measures the floor (one block of
k + oversample products each way) and the time per iteration. Run it on a quiet machine:
timings swing several-fold under contention.

Measured (2026-11-27, 2 shared CPU cores, load average 5-7 from other jobs, torch 2.13 CPU,
``--k 50 --t 0.5 --chunk-size 4 --max-iters 1``): 113.67 M parameters; one h forward 4.9 s;
one Krylov block (60 JVPs + 60 VJPs, the floor of any k = 50 solver) 1231 s, i.e. about 20 s
per JVP+VJP pair; resident memory 0.95 GiB before, 4.7 GiB peak (+3.8 GiB; about 0.8 GiB per
vector in a VJP chunk). With random weights the spectrum is flat (top singular values
0.578, 0.573, 0.563, ...), so one block is far from tol = 1e-3; a converged basis costs this
figure times the number of solver iterations.
"""

from __future__ import annotations

import argparse
import json
import resource
import threading
import time

import torch

from pullback_utils.zoo.replicas import REPLICAS

# google/ddpm-ema-celebahq-256's published configuration, one copy (the replicas of the paper's path)
CELEBAHQ_256_UNET = REPLICAS["google/ddpm-ema-celebahq-256"]["unet"]
CELEBAHQ_256_SCHEDULER = REPLICAS["google/ddpm-ema-celebahq-256"]["scheduler"]


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class PeakRSS:
    """Samples the resident set size in a background thread; ``peak`` in MiB."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval, self.peak, self._stop = interval, rss_mib(), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mib())
            time.sleep(self.interval)

    def __enter__(self) -> "PeakRSS":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mib())


def build_model(seed: int = 0):
    from diffusers import DDPMScheduler, UNet2DModel

    from pullback_utils import DiffusionModel

    torch.manual_seed(seed)
    unet = UNet2DModel(**CELEBAHQ_256_UNET)
    return DiffusionModel(
        unet, DDPMScheduler(**CELEBAHQ_256_SCHEDULER), name="celebahq-256 architecture, random weights"
    )


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--k", type=int, default=50)
    p.add_argument("--t", type=float, default=0.5, help="time as a fraction of T (level round(t*T))")
    p.add_argument("--method", default="auto")
    p.add_argument("--tol", type=float, default=1e-3)
    p.add_argument("--chunk-size", type=int, default=None, help="vectors per batched product")
    p.add_argument(
        "--max-iters",
        type=int,
        default=None,
        help="cap on solver iterations (1 = one block of J and of J^T products: the floor)",
    )
    p.add_argument("--layer", default="mid")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--progress", action="store_true")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    model = build_model(args.seed)
    n_params = sum(p.numel() for p in model.unet.parameters())
    x_t = model.noise(1, seed=args.seed)
    fn_t0 = time.perf_counter()
    from pullback_utils import feature_map

    with torch.no_grad():
        h = feature_map(
            model.unet, model.level(args.t), layer=args.layer, num_train_timesteps=model.num_train_timesteps
        )(x_t)
    forward_s = time.perf_counter() - fn_t0
    before = rss_mib()
    solver = dict(method=args.method, tol=args.tol, seed=args.seed, progress=args.progress)
    if args.chunk_size:
        solver["chunk_size"] = args.chunk_size
    if args.max_iters:
        solver["max_iters"] = args.max_iters
    with PeakRSS() as peak:
        t0 = time.perf_counter()
        basis = model.local_basis(x_t, args.t, args.k, layer=args.layer, **solver)
        seconds = time.perf_counter() - t0
    info = basis.info
    result = {
        "architecture": "google/ddpm-ema-celebahq-256 UNet2DModel (random weights)",
        "parameters_M": round(n_params / 1e6, 2),
        "x_shape": list(x_t.shape),
        "h_shape": list(h.shape),
        "t_level": model.level(args.t),
        "unet_timestep": model.unet_timestep(args.t),
        "k": args.k,
        "torch_threads": torch.get_num_threads(),
        "solver": {k: v for k, v in solver.items() if k != "progress"},
        "h_forward_seconds": round(forward_s, 2),
        "seconds": round(seconds, 1),
        "method": info.get("method"),
        "iterations": info.get("iterations"),
        "n_jvp": info.get("n_jvp"),
        "n_vjp": info.get("n_vjp"),
        "angle_estimate": info.get("angle_estimate"),
        "rss_before_MiB": round(before),
        "rss_peak_MiB": round(peak.peak),
        "rss_peak_increase_MiB": round(peak.peak - before),
        "ru_maxrss_MiB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "top_singular_values": [round(float(s), 3) for s in basis.s[:5]],
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
