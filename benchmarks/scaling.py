"""Cost of a local basis at real model sizes: time, products and peak memory per basis, and the cost of
each product against one forward pass, for forward-mode and reverse-over-reverse J·v.

Models (random weights, seed 0; the architectures of the public checkpoints, so the cost is theirs):

- ``32``: google/ddpm-cifar10-32 -- UNet2DModel, block_out_channels (128, 256, 256, 256), attention at
  16x16, layers_per_block 2 (35.7M parameters); x 3x32x32, h 256x4x4.
- ``64``, ``128``, ``256``: google/ddpm-celebahq-256 (= ddpm-ema-celebahq-256, -church-256, -bedroom-256)
  -- UNet2DModel, block_out_channels (128, 128, 256, 256, 512, 512), attention at 16x16 (of 256),
  layers_per_block 2 (113.7M parameters), run at 64x64 and 128x128 too (Google published no 64/128
  DDPM; the network is convolutional, so this isolates the resolution); h 512x(s/32)x(s/32).
- ``sd``: stabilityai/stable-diffusion-2-1-base -- UNet2DConditionModel, block_out_channels
  (320, 640, 1280, 1280), attention_head_dim (5, 10, 20, 20), cross_attention_dim 1024, linear
  projections (865.9M parameters), at a 64x64 latent (512x512 images) with a random 77x1024 prompt
  embedding; h 1280x8x8.

Each case runs in its own process (so its peak resident memory, which includes the weights, is its
own). Per size and mode: the forward pass h = f(x) alone, then a block of b = k + 2 vectors through J·v
and through Jᵀu, timed on the second block (the first records the passes; later blocks of a solve cost
what the second does): seconds per vector, and the ratio to one forward pass (the target is at most 2x; both in
the same process, on the same clock: ``--clock cpu`` counts CPU time, which other jobs on a shared machine
do not inflate), ``--fast-ad on off`` runs each case with the derivative rules of
``pullback_utils/features/ad_rules.py`` and with PyTorch's own,
what ``jvp_mode="auto"`` picks, and a basis (block Krylov, tol 1e-3) to convergence, or one Krylov
block only where a whole basis takes too long on a CPU (``--block-only`` sizes; default 256 and sd).

    python benchmarks/scaling.py --sizes 32 64          # the quick path (minutes on 2 cores)
    python benchmarks/scaling.py                        # all sizes (hours on a CPU)
    python benchmarks/scaling.py --sizes 32 64 --modes default forward reverse --k 10 --threads 1
                                                        # the package default against both modes (issue 28)

Mode ``default`` passes no ``jvp_mode`` (the package's default: ``"auto"`` since issue 28, ``"reverse"``
before), so the same command measures the default before and after a change of it. For ``forward`` and
``reverse`` the first block's extra resident memory is also measured (a thread samples it every 2 ms),
against the activations one forward pass saves for backward (:func:`pullback_utils.engine.jvp_memory.saved_bytes`):
their ratio is what :data:`pullback_utils.engine.jvp_memory.BLOCK_FACTORS` must bound.

Run on a quiet machine with ``MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=4294967296``
(``make bench-scaling``). ``benchmarks/gpu_scaling.py`` runs the same cases on a CUDA device.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

SIZES = ("32", "64", "128", "256", "sd")
CIFAR32 = dict(
    block_out_channels=(128, 256, 256, 256),
    layers_per_block=2,
    down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
)
CELEBAHQ256 = dict(
    block_out_channels=(128, 128, 256, 256, 512, 512),
    layers_per_block=2,
    down_block_types=("DownBlock2D",) * 4 + ("AttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "AttnUpBlock2D") + ("UpBlock2D",) * 4,
)
SD21_BASE = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280),
    attention_head_dim=(5, 10, 20, 20),
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    cross_attention_dim=1024,
    use_linear_projection=True,
    flip_sin_to_cos=True,
    freq_shift=0,
    norm_eps=1e-5,
)
NAMES = {
    "32": "google/ddpm-cifar10-32",
    "64": "ddpm-celebahq-256 arch @64",
    "128": "ddpm-celebahq-256 arch @128",
    "256": "google/ddpm-celebahq-256",
    "sd": "SD-2.1-base UNet @64x64 latent",
}


def build(size: str, device: str = "cpu"):
    """(unet, x (1, C, H, W), encoder hidden states or None) of a size, random weights (seed 0)."""
    from diffusers import UNet2DConditionModel, UNet2DModel

    torch.manual_seed(0)
    if size == "sd":
        unet = UNet2DConditionModel(**SD21_BASE)
        cond = torch.randn(1, 77, 1024, generator=torch.Generator().manual_seed(1)).to(device)
    else:
        cfg = CIFAR32 if size == "32" else CELEBAHQ256
        unet = UNet2DModel(
            sample_size=int(size),
            in_channels=3,
            out_channels=3,
            downsample_padding=0,
            flip_sin_to_cos=False,
            freq_shift=1,
            norm_eps=1e-6,
            **cfg,
        )
        cond = None
    unet = unet.to(device).eval().requires_grad_(False)
    c, s = unet.config.in_channels, unet.config.sample_size
    x = torch.randn(1, c, s, s, generator=torch.Generator().manual_seed(2)).to(device)
    return unet, x, cond


class Clock:
    """Wall time of a block of work, synchronising CUDA around it; or, with ``kind="cpu"`` (CPU only), the
    process's CPU time, which a machine shared with other jobs does not inflate by preempting it (with
    one thread it is the work's own time; with several, their sum)."""

    def __init__(self, device: str, kind: str = "wall") -> None:
        self.cuda = str(device).startswith("cuda")
        self.now = time.process_time if kind == "cpu" and not self.cuda else time.perf_counter

    def __call__(self, work):
        if self.cuda:
            torch.cuda.synchronize()
        start = self.now()
        out = work()
        if self.cuda:
            torch.cuda.synchronize()
        return self.now() - start, out


def peak_bytes(device: str) -> int:
    if str(device).startswith("cuda"):
        return int(torch.cuda.max_memory_allocated())
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux: KiB


class PeakRSS:
    """The largest resident memory of this process while the block inside ``with`` runs, sampled every 2 ms."""

    def __enter__(self):
        import threading

        import psutil

        self.proc = psutil.Process()
        self.base = self.peak = self.proc.memory_info().rss
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()
        return self

    def _poll(self):
        while not self.stop.wait(0.002):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()

    @property
    def extra(self) -> int:
        return self.peak - self.base


def run_case(case: dict) -> dict:
    """One (size, jvp_mode, k) case (module doc); returns its measurements."""
    import warnings

    from pullback_utils import feature_map
    from pullback_utils.engine.jvp_memory import saved_bytes
    from pullback_utils.engine.operators import JacobianOperator, auto_choices
    from pullback_utils.engine.solvers import jacobian_svd
    from pullback_utils.features.ad_safe import forward_ad_safe
    from pullback_utils.features.basis import frozen

    warnings.filterwarnings("ignore", message=".*stopped after.*")  # one block is not meant to converge
    device, mode, k = case["device"], case["mode"], int(case["k"])
    jvp_mode = None if mode == "default" else mode  # None: the package's default
    torch.set_num_threads(int(case["threads"]))
    unet, x, cond = build(case["size"], device)
    clock = Clock(device, case.get("clock", "wall"))
    repeats = int(case.get("repeats", 1))
    fast = bool(case.get("fast_ad", True))
    fn = feature_map(unet, 0.5, encoder_hidden_states=cond)
    out = {**case, "params_M": sum(p.numel() for p in unet.parameters()) / 1e6}
    with frozen(unet), torch.no_grad(), forward_ad_safe(unet, fast_rules=fast):
        fn(x)  # warm-up
        out["forward_s"] = min(clock(lambda: fn(x))[0] for _ in range(max(2, repeats)))
    with frozen(unet), forward_ad_safe(unet, fast_rules=fast):
        b = k + 2
        chunk = case.get("chunk_size")
        op = JacobianOperator(fn, x, jvp_mode=jvp_mode, chunk_size=chunk)
        out["dim_x"], out["dim_h"] = op.dim_x, op.dim_h
        out["default_mode"] = op.jvp_mode
        V = torch.randn(b, *op.x_shape, generator=torch.Generator().manual_seed(3)).to(device)
        if device == "cpu" and op.jvp_mode != "auto":
            saved = saved_bytes(fn, x)
            op.vjp(torch.zeros(1, *op.h_shape))  # records the forward pass: not part of the block's memory
            with PeakRSS() as rss:
                Y = op.jvp(V)
            used = op.chunks_used["jvp"] or b  # chosen from the free memory unless --chunk-size fixed it
            out.update(
                saved_MB=saved / 1e6,
                block_extra_MB=rss.extra / 1e6,
                chunk_used=used,
                block_factor=rss.extra / (min(b, used) * saved) if saved else float("nan"),
            )
        else:
            Y = op.jvp(V)  # first block: records the passes (and, for "auto", times both modes)
        op.vjp(Y)
        t_jv, Y = min((clock(lambda: op.jvp(V)) for _ in range(repeats)), key=lambda r: r[0])  # warm blocks
        t_jtu = min(clock(lambda: op.vjp(Y))[0] for _ in range(repeats))
        out.update(jv_per_vector_s=t_jv / b, jtu_per_vector_s=t_jtu / b, mode_used=op.jvp_mode_used)
        if op.jvp_mode == "auto":
            out["auto_timing"] = next(iter(auto_choices().values()))[1:]
        op.release()  # frees the recorded passes before the basis runs
        op = Y = None
        if case["basis"] != "none":
            iters = 1 if case["basis"] == "block" else None
            sec, basis = clock(
                lambda: jacobian_svd(
                    fn, x, k, method="krylov", tol=1e-3, max_iters=iters, jvp_mode=jvp_mode, chunk_size=chunk
                )
            )
            info = basis.info
            out.update(
                basis_s=sec,
                products=info["n_jvp"] + info["n_vjp"],
                iterations=info["iterations"],
                angle_estimate=float(info["angle_estimate"]),
                converged=bool(info["converged"]),
            )
    out["peak_GB"] = peak_bytes(device) / 1e9
    return out


def plan(
    sizes,
    ks,
    modes,
    block_only,
    threads,
    device="cpu",
    chunk_size=None,
    fast_ad=(True,),
    clock="wall",
    repeats=1,
    no_basis=False,
) -> list[dict]:
    cases = []
    for size in sizes:
        for k in ks:
            if size in ("256", "sd") and k != ks[0] and size in block_only:
                continue  # one block at one k where even a block is minutes
            basis = "block" if (size in block_only or (size == "128" and k > 10)) else "full"
            for mode in modes:
                for fast in fast_ad:
                    cases.append(
                        dict(
                            size=size,
                            k=k,
                            mode=mode,
                            basis="none" if no_basis else basis,
                            threads=threads,
                            device=device,
                            chunk_size=chunk_size,
                            fast_ad=fast,
                            clock=clock,
                            repeats=repeats,
                        )
                    )
    return cases


def in_subprocess(case: dict, timeout: float) -> dict:
    try:
        proc = subprocess.run(
            [sys.executable, __file__, "--case", json.dumps(case)], capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return {**case, "error": f"timed out after {timeout:g} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode == -9:
        return {**case, "error": "killed (SIGKILL: out of memory? try a smaller --chunk-size)"}
    if proc.returncode or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
        return {**case, "error": f"exit {proc.returncode}: {tail[0][:200]}"}
    return json.loads(lines[-1])


def table(rows: list[dict]) -> str:
    head = (
        f"{'size':<5}{'model':<31}{'k':>3} {'J.v mode':<9}{'h fwd s':>8}{'J.v s/vec':>10}{'JTu s/vec':>10}"
        f"{'J.v/h':>6}{'JTu/h':>6}{'basis':>6}{'seconds':>9}{'products':>9}{'iters':>6}{'angle est':>10}"
        f"{'peak GB':>8}"
    )
    out = [head, "-" * len(head)]
    for r in rows:
        if "error" in r:
            out.append(f"{r['size']:<5}{NAMES[r['size']]:<31}{r['k']:>3} {r['mode']:<9}  {r['error']}")
            continue
        mode = r["mode"] if r["mode"] not in ("auto", "default") else f"{r['mode'][:4]}>{r['mode_used'][:3]}"
        mode = mode if r.get("fast_ad", True) else f"{mode[:3]}/stock"
        basis = (
            (f"{r['basis']:>6}{r['basis_s']:>9.1f}{r['products']:>9}{r['iterations']:>6}{r['angle_estimate']:>10.1e}")
            if "basis_s" in r
            else f"{'-':>6}{'':>34}"
        )
        out.append(
            f"{r['size']:<5}{NAMES[r['size']]:<31}{r['k']:>3} {mode:<9}{r['forward_s']:>8.2f}"
            f"{r['jv_per_vector_s']:>10.3f}{r['jtu_per_vector_s']:>10.3f}"
            f"{r['jv_per_vector_s'] / r['forward_s']:>6.1f}{r['jtu_per_vector_s'] / r['forward_s']:>6.1f}"
            f"{basis}{r['peak_GB']:>8.2f}"
        )
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", nargs="+", default=list(SIZES), choices=SIZES)
    p.add_argument("--k", type=int, nargs="+", default=[10, 50])
    p.add_argument(
        "--modes",
        nargs="+",
        default=["forward", "reverse", "auto"],
        choices=["default", "forward", "reverse", "auto"],
        help="J.v modes; 'default' passes none (the package's default)",
    )
    p.add_argument(
        "--block-only",
        nargs="*",
        default=["256", "sd"],
        choices=SIZES,
        help="sizes at which only one Krylov block is timed (default: 256 and sd)",
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--chunk-size",
        type=int,
        default=None,
        help="vectors per batched product (default: the package's: the largest block that fits in the "
        "free memory, at most 64); smaller bounds the memory of a product at large sizes",
    )
    p.add_argument(
        "--fast-ad",
        nargs="+",
        default=["on"],
        choices=["on", "off"],
        help="the derivative rules of features/ad_rules.py ('on', the package's default) or PyTorch's "
        "own ('off'); both: each case twice, in the same run",
    )
    p.add_argument(
        "--clock",
        default="wall",
        choices=["wall", "cpu"],
        help="'cpu': the process's CPU time (CPU runs on a shared machine; use --threads 1)",
    )
    p.add_argument("--repeats", type=int, default=1, help="timed blocks of J.v and JTu (the minimum is kept)")
    p.add_argument("--no-basis", action="store_true", help="time the products only (no basis)")
    p.add_argument("--timeout", type=float, default=4 * 3600, help="seconds per case")
    p.add_argument("--json", default=None, help="also write the rows to this file")
    p.add_argument("--case", default=None, help=argparse.SUPPRESS)  # internal: run one case, print JSON
    args = p.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(json.loads(args.case))))
        return 0
    cases = plan(
        args.sizes,
        args.k,
        args.modes,
        args.block_only,
        args.threads,
        chunk_size=args.chunk_size,
        fast_ad=tuple(f == "on" for f in args.fast_ad),
        clock=args.clock,
        repeats=args.repeats,
        no_basis=args.no_basis,
    )
    print(
        f"torch {torch.__version__}, {args.threads} threads, {len(cases)} cases, each in its own process, "
        f"chunk size {args.chunk_size or 'default'}, {args.clock} clock, {args.repeats} repeats"
    )
    rows = []
    for case in cases:
        started = time.perf_counter()
        rows.append(in_subprocess(case, args.timeout))
        print(
            f"  {case['size']:>4} k={case['k']:<3} {case['mode']:<8} "
            f"{'' if case['fast_ad'] else 'stock'} {case['basis']:<5} "
            f"{time.perf_counter() - started:7.1f} s  {rows[-1].get('error', '')}",
            flush=True,
        )
        print(f"    {json.dumps(rows[-1])}", flush=True)  # each row as it comes: a long run cut short keeps it
    print()
    print(table(rows))
    print(
        "\nJ.v/h, JTu/h: seconds per vector over one forward pass (target <= 2). 'block': one Krylov block "
        "(k + 2 J.v and JTu); 'full': block Krylov to tol 1e-3. auto>xxx: the mode jvp_mode='auto' measured faster."
    )
    memory = [r for r in rows if "block_factor" in r]
    if memory:
        print("\nMemory of the first J.v block (what jvp_memory.BLOCK_FACTORS bounds):")
        for r in memory:
            print(
                f"  {r['size']:<5}{r['mode']:<9} saved by one forward pass {r['saved_MB']:8.1f} MB, block of "
                f"{r['k'] + 2}: +{r['block_extra_MB']:8.1f} MB = {r['block_factor']:.2f} x m x saved"
            )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
