"""What one local basis costs on the real SDXL, DiT, SD3 and FLUX denoisers: counted, and optionally timed.

Counting (always; seconds on a CPU, nothing allocated): each denoiser of
``pullback_utils.features.flops.REAL_CONFIGS`` is built from its public config on the meta device and the
engine's feature map and products run on meta tensors, giving exact parameter counts, FLOPs of the
forward pass to the default layer and of one J·v and one Jᵀ·u per vector, and the bytes of the
activations one backward pass keeps (bfloat16 by default).

Timing (``--device cuda``; run it on a GPU, or a quiet CPU): the same configs with random weights,
*truncated after the feature layer* (blocks after it never run in a feature map, so the compute is
that of the full checkpoint while the weights that do not matter are left out: SDXL's up blocks stay,
U-Nets need them to build). Reports wall seconds per J·v and Jᵀ·u vector (minimum over ``--repeats``
blocks of ``--block`` vectors, after a warm-up), the FLOP rate that implies, peak device memory, and
with ``--k`` one whole ``local_basis`` (Krylov, ``--max-iters``) with its products and seconds.

    python benchmarks/architectures_cost.py                       # counts only
    python benchmarks/architectures_cost.py --device cuda --k 8   # counts, timed products, one basis
    python benchmarks/architectures_cost.py --only "FLUX.1-dev (1024 px)" --size 64 --device cuda
"""

from __future__ import annotations

import argparse
import time

import torch

from pullback_utils.features import flops as costs
from pullback_utils.features.basis import network_basis


def truncated(spec: dict, layer: str) -> dict:
    """The config with every block after ``layer`` removed (transformers only)."""
    cfg = dict(spec["config"])
    head, _, idx = layer.rpartition(".")
    if spec["cls"] == "FluxTransformer2DModel" and head == "single_transformer_blocks":
        cfg["num_single_layers"] = int(idx) + 1
    elif spec["cls"] == "FluxTransformer2DModel":
        cfg["num_layers"], cfg["num_single_layers"] = int(idx) + 1, 0
    elif head == "transformer_blocks":
        cfg["num_layers"] = int(idx) + 1
    return cfg


def timed(spec: dict, c: costs.BasisCost, args) -> str:
    import diffusers

    import pullback_utils as pu
    from pullback_utils.engine.operators import JacobianOperator
    from pullback_utils.features.ad_safe import forward_ad_safe
    from pullback_utils.features.basis import frozen

    dev, dtype = torch.device(args.device), getattr(torch, args.dtype)
    torch.manual_seed(0)
    net = getattr(diffusers, spec["cls"])(**truncated(spec, c.layer)).to(dev, dtype).eval().requires_grad_(False)
    meta_x, cond = costs._dummy_conditioning(
        costs.meta_denoiser(spec["cls"], spec["config"], dtype), tuple(spec["sample_shape"]), spec["text_tokens"]
    )
    x = torch.randn(meta_x.shape, device=dev, dtype=dtype)
    cond = {
        k: (
            torch.randn(v.shape, device=dev, dtype=dtype)
            if isinstance(v, torch.Tensor) and k != "img_ids"
            else v.to(dev)
            if isinstance(v, torch.Tensor)
            else {s: torch.randn(t.shape, device=dev, dtype=dtype) for s, t in v.items()}
            if isinstance(v, dict)
            else v
        )
        for k, v in cond.items()
    }
    if "img_ids" in cond:
        h, w = spec["sample_shape"][1:]
        cond["img_ids"] = pu.diffusion.architectures.latent_image_ids(h, w).to(dev, dtype)
    fn = pu.feature_map(net, 0.5, layer=c.layer, **cond)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    out = []
    with frozen(net), forward_ad_safe(net):
        op = JacobianOperator(fn, x, chunk_size=args.block)
        for name, make, apply in (
            ("jvp", lambda: torch.randn(args.block, *x.shape, device=dev, dtype=dtype), op.jvp),
            ("vjp", lambda: torch.randn(args.block, *op.h_shape, device=dev, dtype=dtype), op.vjp),
        ):
            best = float("inf")
            for r in range(args.repeats + 1):  # the first block is a warm-up
                vecs = make()
                sync()
                t0 = time.perf_counter()
                apply(vecs)
                sync()
                if r:
                    best = min(best, (time.perf_counter() - t0) / args.block)
            flops = c.jvp_flops if name == "jvp" else c.vjp_flops
            out.append(f"{name} {best:.3f} s/vector ({flops / best / 1e12:.1f} TFLOP/s)")
    if dev.type == "cuda":
        out.append(f"peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    if args.k:
        t0 = time.perf_counter()
        b = network_basis(
            net, x, 0.5, args.k, layer=c.layer, method="krylov", max_iters=args.max_iters, chunk_size=args.block, **cond
        )
        sync()
        out.append(f"basis k={args.k}: {time.perf_counter() - t0:.1f} s, {b.info['n_jvp']}+{b.info['n_vjp']} products")
    return "; ".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", choices=list(costs.REAL_CONFIGS))
    parser.add_argument("--size", type=int, help="latent height = width instead of the checkpoint's")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--device", help="time the products on this device (e.g. cuda)")
    parser.add_argument("--block", type=int, default=4, help="vectors per batched product")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--k", type=int, default=0, help="also time one basis of k vectors")
    parser.add_argument("--max-iters", type=int, default=3)
    args = parser.parse_args()
    for name in args.only or list(costs.REAL_CONFIGS):
        spec = dict(costs.REAL_CONFIGS[name])
        if args.size:
            spec["sample_shape"] = (spec["sample_shape"][0], args.size, args.size)
        c = costs.basis_costs(
            spec["cls"],
            spec["config"],
            spec["sample_shape"],
            text_tokens=spec["text_tokens"],
            block=2,
            dtype=getattr(torch, args.dtype),
        )
        line = (
            f"{name:26s} x {tuple(spec['sample_shape'])} layer {c.layer}: {c.params / 1e9:.3f} B parameters "
            f"({c.param_bytes / 2**30:.1f} GiB), activations {c.saved_bytes / 2**30:.2f} GiB, forward "
            f"{c.forward_flops / 1e12:.2f} TFLOP, J·v {c.jvp_flops / 1e12:.2f} + Jᵀ·u {c.vjp_flops / 1e12:.2f} "
            "TFLOP per vector"
        )
        print(line, flush=True)
        if args.device:
            print("    measured: " + timed(spec, c, args), flush=True)


if __name__ == "__main__":
    main()
