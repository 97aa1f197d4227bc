"""Where the time of a Jacobian product goes: torch.profiler over one block of J·v (forward mode or
reverse-over-reverse) and of Jᵀu on a random-weight U-Net of ``benchmarks/scaling.py``'s sizes.

Per mode, after a warm-up block (which records the passes): one forward pass h = f(x) and one block of
m products under ``torch.profiler``; the table lists the operators with the largest self CPU time and
their share of the block, and the block's seconds against the forward pass's (per vector: / m).

    python benchmarks/profile_products.py --size 256 --m 4 --modes forward reverse vjp --top 15

Operators are aten names: ``aten::native_group_norm`` and its backward are the normalisation,
``aten::convolution*`` / ``mkldnn_convolution`` the convolutions (forward-mode tangents of a convolution
are convolutions too), ``aten::bmm``/``aten::mm`` the attention and linear layers, ``aten::copy_`` /
``aten::clone`` / ``aten::contiguous`` layout copies, ``aten::mul``/``aten::add`` element-wise tangent
formulas.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scaling import SIZES, build  # noqa: E402

from pullback_utils import feature_map  # noqa: E402
from pullback_utils.engine.operators import JacobianOperator  # noqa: E402
from pullback_utils.features.ad_safe import forward_ad_safe  # noqa: E402
from pullback_utils.features.basis import frozen  # noqa: E402


def profile_block(work, top: int) -> tuple[float, list[tuple[str, float, int]]]:
    """(seconds of ``work()``, [(op name, self CPU seconds, calls)] largest first) under the profiler."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        work()
        seconds = time.perf_counter() - start
    rows = [(e.key, e.self_cpu_time_total / 1e6, e.count) for e in prof.key_averages()]
    rows.sort(key=lambda r: -r[1])
    return seconds, rows[:top]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", default="256", choices=SIZES)
    p.add_argument("--m", type=int, default=4, help="vectors per block")
    p.add_argument("--modes", nargs="+", default=["forward", "reverse", "vjp"], choices=["forward", "reverse", "vjp"])
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--repeats", type=int, default=2, help="forward passes and blocks timed (minimum) outside the profiler"
    )
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    unet, x, cond = build(args.size)
    fn = feature_map(unet, 0.5, encoder_hidden_states=cond)
    print(f"size {args.size}, x {tuple(x.shape)}, m = {args.m}, torch {torch.__version__}, {args.threads} threads")
    with frozen(unet), forward_ad_safe(unet):
        with torch.no_grad():
            fn(x)
            t_fwd = min(_timed(lambda: fn(x)) for _ in range(args.repeats))
        s_fwd, rows = profile_block(lambda: fn(x), args.top)
        print(f"\n== forward pass h = f(x): {t_fwd:.3f} s (min of {args.repeats}; {s_fwd:.3f} s profiled)")
        _print(rows, s_fwd)
        for mode in args.modes:
            op = JacobianOperator(fn, x, jvp_mode="forward" if mode == "vjp" else mode, chunk_size=args.m)
            V = torch.randn(args.m, *op.x_shape, generator=torch.Generator().manual_seed(3))
            U = op.jvp(V)  # records the passes
            work = (lambda: op.vjp(U)) if mode == "vjp" else (lambda: op.jvp(V))
            work()
            t = min(_timed(work) for _ in range(args.repeats))
            s, rows = profile_block(work, args.top)
            label = "J^T u" if mode == "vjp" else f"J.v ({mode})"
            print(
                f"\n== {label}, block of {args.m}: {t:.3f} s = {t / args.m / t_fwd:.2f} x forward per vector "
                f"(min of {args.repeats}; {s:.3f} s profiled)"
            )
            _print(rows, s)
            op.release()
    return 0


def _timed(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def _print(rows, total: float) -> None:
    print(f"  {'op':<44}{'self s':>9}{'share':>7}{'calls':>7}")
    for name, sec, calls in rows:
        print(f"  {name[:44]:<44}{sec:>9.3f}{sec / total:>7.0%}{calls:>7}")


if __name__ == "__main__":
    sys.exit(main())
