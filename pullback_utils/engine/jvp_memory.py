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

**The chunk size from the memory** (issue 27): unless ``chunk_size`` or ``$PULLBACK_CHUNK_SIZE`` fixes it, the
operator runs blocks of the largest size ``m`` (at most the default cap) whose need, ``saved_bytes`` (the
recorded forward pass that Jᵀ reuses) plus the block's estimate, is at most ``HEADROOM`` of the free memory
(:func:`max_chunk`, :func:`choose_chunk`). A Jᵀu block is bounded with the forward factor (:data:`VJP_FACTOR`:
the backward of a recorded pass holds at most one cotangent per saved activation per vector; not measured
separately). When not even one vector fits, :class:`MemoryBudgetError` says so before any product runs.
``$PULLBACK_MEMORY_LIMIT`` (e.g. ``12GB``) caps what is counted as free, for a machine shared with others.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch

__all__ = [
    "BLOCK_FACTORS",
    "HEADROOM",
    "VJP_FACTOR",
    "MEMORY_LIMIT_ENV",
    "MemoryBudgetError",
    "saved_bytes",
    "block_bytes",
    "available_bytes",
    "fitting_modes",
    "memory_limit",
    "max_chunk",
    "choose_chunk",
    "format_bytes",
]

#: extra bytes of a block of m vectors ≈ factor · m · saved bytes of one forward pass (measured: module doc)
BLOCK_FACTORS: dict[str, float] = {"forward": 1.5, "reverse": 4.0}
#: a mode is tried only when its estimate is at most this fraction of the free memory
HEADROOM = 0.8
#: extra bytes of a block of m Jᵀu products ≈ VJP_FACTOR · m · saved bytes (the forward factor: module doc)
VJP_FACTOR = BLOCK_FACTORS["forward"]
#: environment variable that caps the memory counted as free (bytes, or a number with KB/MB/GB/TB)
MEMORY_LIMIT_ENV = "PULLBACK_MEMORY_LIMIT"
_UNITS = {
    "": 1,
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
}


class MemoryBudgetError(MemoryError):
    """Not even one vector of a Jacobian product fits in the free memory (raised before any product runs)."""


def format_bytes(n: float) -> str:
    """``n`` bytes as GB (10⁹) with two decimals, or MB below 0.1 GB."""
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def memory_limit() -> int | None:
    """``$PULLBACK_MEMORY_LIMIT`` in bytes (``12GB``, ``500MB``, ``8GiB`` or a plain byte count), None when
    unset; ValueError naming the variable otherwise."""
    import re

    raw = os.environ.get(MEMORY_LIMIT_ENV, "").strip()
    if not raw:
        return None
    match = re.fullmatch(r"([0-9]*\.?[0-9]+)\s*([A-Za-z]*)", raw)
    unit = match.group(2).upper() if match else ""
    if unit and not unit.endswith("B"):
        unit += "B"
    if not match or unit not in _UNITS or float(match.group(1)) <= 0:
        raise ValueError(
            f"environment variable {MEMORY_LIMIT_ENV} must be a positive size such as 12GB, 500MB or 8GiB, got {raw!r}"
        )
    return int(float(match.group(1)) * _UNITS[unit])


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
    available memory (and the cgroup's, if smaller), at most ``$PULLBACK_MEMORY_LIMIT``. None when it
    cannot be read and no limit is set."""
    device = torch.device(device)
    limit = memory_limit()
    free: int | None = None
    if device.type == "cuda":
        free = int(torch.cuda.mem_get_info(device)[0])
    elif device.type == "cpu":
        try:
            import psutil

            free = int(psutil.virtual_memory().available)
        except ImportError:
            free = None
        cgroup = _cgroup_free()
        if cgroup is not None:
            free = cgroup if free is None else min(free, cgroup)
    if limit is not None:
        return limit if free is None else min(free, limit)
    return free


def fitting_modes(saved: int, m: int, available: int | None) -> dict[str, bool]:
    """{mode: whether a block of ``m`` vectors fits in ``HEADROOM · available``}; all True when the free
    memory is unknown."""
    return {mode: available is None or block_bytes(mode, saved, m) <= HEADROOM * available for mode in BLOCK_FACTORS}


def _factor(kind: str) -> float:
    if kind == "vjp":
        return VJP_FACTOR
    if kind not in BLOCK_FACTORS:
        raise ValueError(f"kind must be 'vjp' or one of {sorted(BLOCK_FACTORS)}, got {kind!r}")
    return BLOCK_FACTORS[kind]


def max_chunk(kind: str, saved: int, available: int | None, cap: int, recorded: bool = False) -> int:
    """The largest block ``m <= cap`` of products of ``kind`` ("forward", "reverse": J·V modes; "vjp": Jᵀu)
    whose need, ``saved + factor · m · saved``, is at most ``HEADROOM · available``; 0 when not even one
    fits; ``cap`` when the free memory is unknown (None) or nothing is saved. ``recorded``: the forward pass
    is already in memory (so already out of ``available``) and is not counted again."""
    factor = _factor(kind)
    if available is None or saved <= 0:
        return cap
    room = HEADROOM * available - (0 if recorded else saved)
    return max(0, min(cap, int(room // (factor * saved)))) if room > 0 else 0


def choose_chunk(kind: str, saved: int, available: int | None, cap: int, recorded: bool = False) -> int:
    """:func:`max_chunk`, or :class:`MemoryBudgetError` naming the settings when it is 0."""
    m = max_chunk(kind, saved, available, cap, recorded)
    if m >= 1:
        return m
    need = (0 if recorded else saved) + _factor(kind) * saved
    what = {"forward": "J·V in forward mode", "reverse": "J·V by reverse-over-reverse", "vjp": "Jᵀu"}[kind]
    pass_ = "already recorded" if recorded else "recorded for it"
    raise MemoryBudgetError(
        f"one vector of {what} needs about {format_bytes(need)} more (the forward pass of "
        f"{format_bytes(saved)} is {pass_}), more than {HEADROOM:.0%} of the "
        f"{format_bytes(available or 0)} free; chunk_size (and $PULLBACK_CHUNK_SIZE) cannot go below 1. "
        f"Free memory, raise {MEMORY_LIMIT_ENV} if it is set too low, use jvp_mode='forward' (the smaller "
        f"J·V mode), a smaller resolution or a device with more memory"
    )
