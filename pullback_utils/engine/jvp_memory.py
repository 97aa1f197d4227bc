"""Memory of one block of J·V in each mode, estimated before running it, and the memory free for it.

``jvp_mode="auto"`` (:mod:`pullback_utils.engine.operators`) times a block of J·V both ways; at real sizes one
of the two can exhaust the machine (reverse-over-reverse was killed for memory on the SD-2.1 U-Net at a
block of 12 vectors on a 24 GB machine, NOTES.md). So before the trial each mode's extra memory is
estimated from the activations the function's forward pass saves for its backward pass, and a mode
whose estimate does not fit in what the device has free is not tried.

The estimate: ``factor[mode] · m · saved_bytes`` for a block of ``m`` vectors, where ``saved_bytes``
is what one forward pass at the point saves for backward (counted with autograd's saved-tensor hooks,
the weights excluded) and ``factor`` bounds what was measured on diffusers U-Nets (the first block's
extra peak resident memory over ``m · saved_bytes``, m = 12, CPU, 1 thread; ``benchmarks/scaling.py``
prints it for its forward and reverse cases): cifar10-32 architecture forward 1.11, reverse 3.13;
CelebA-HQ-256 architecture at 64×64 forward 0.56, reverse 1.84, at 128×128 forward 0.42. The factors
(1.5 and 4.0) are the largest of these with a third of margin.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

__all__ = ["BLOCK_FACTORS", "HEADROOM", "saved_bytes", "block_bytes", "available_bytes", "fitting_modes"]

#: extra bytes of a block of m vectors ≈ factor · m · saved bytes of one forward pass (measured: module doc)
BLOCK_FACTORS: dict[str, float] = {"forward": 1.5, "reverse": 4.0}
#: a mode is tried only when its estimate is at most this fraction of the free memory
HEADROOM = 0.8


def saved_bytes(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> int:
    """Bytes of the tensors one forward pass ``fn(x)`` saves for backward, each storage once; the
    parameters of ``fn.unet`` (when there is one) are not counted. Runs ``fn`` once."""
    net = getattr(fn, "unet", None)
    weights = {p.untyped_storage().data_ptr() for p in net.parameters()} if isinstance(net, torch.nn.Module) else set()
    seen: dict[int, int] = {}

    def pack(s: torch.Tensor) -> torch.Tensor:
        if s.device.type != "meta":
            ptr = s.untyped_storage().data_ptr()
            if ptr not in weights:
                seen[ptr] = max(seen.get(ptr, 0), s.untyped_storage().nbytes())
        return s

    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda s: s):
        fn(x.detach().clone().requires_grad_(True))
    return int(sum(seen.values()))


def block_bytes(mode: str, saved: int, m: int) -> int:
    """Estimated extra bytes of one block of ``m`` vectors of J·V in ``mode`` ("forward" or "reverse")."""
    if mode not in BLOCK_FACTORS:
        raise ValueError(f"mode must be one of {sorted(BLOCK_FACTORS)}, got {mode!r}")
    return int(BLOCK_FACTORS[mode] * m * saved)


def _cgroup_free() -> int | None:
    """Bytes left under this process's cgroup (v2) memory limit, or None when there is no limit."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit == "max":
            return None
        return int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
    except (OSError, ValueError):
        return None


def available_bytes(device: torch.device | str) -> int | None:
    """Free memory for new tensors on ``device``: CUDA's free memory, or on the CPU the system's
    available memory (and the cgroup's, if smaller). None when it cannot be read."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type != "cpu":
        return None
    try:
        import psutil
    except ImportError:
        return None
    free = int(psutil.virtual_memory().available)
    cgroup = _cgroup_free()
    return min(free, cgroup) if cgroup is not None else free


def fitting_modes(saved: int, m: int, available: int | None) -> dict[str, bool]:
    """{mode: whether a block of ``m`` vectors fits in ``HEADROOM · available``}; all True when the free
    memory is unknown."""
    return {mode: available is None or block_bytes(mode, saved, m) <= HEADROOM * available for mode in BLOCK_FACTORS}
