"""The Jacobian of a torch function as a linear operator on blocks of vectors.

:class:`JacobianOperator` wraps ``fn`` at a point ``x`` and applies J = ∂fn/∂x and Jᵀ to *blocks* of
vectors at once, never one Python call per vector:

- ``J · V`` by forward-mode AD (``torch.func.jvp``), or by reverse-over-reverse (the VJP of the
  linear map u ↦ Jᵀu), selected by ``jvp_mode``;
- ``Jᵀ · U`` by reverse-mode AD (``torch.func.vjp``); the forward pass is recorded once and reused
  for every later block.

Vectors are batched either through ``torch.func.vmap`` (any function; the default) or, for
functions that process each sample of a batch independently (``fn.per_sample`` is True, as for
U-Net feature maps), through the batch dimension: the point is repeated m times and the m vectors
are the m tangents (or cotangents) of one batched call. ``chunk_size`` bounds how many vectors go through one
call, and so the memory; left to its default, it is chosen from the free memory (CPU RAM, or the GPU's) for
the mode in use at the first product, the largest block that fits under the estimate of
:mod:`pullback_utils.engine.jvp_memory`, at most ``DEFAULT_CHUNK_SIZE`` (``chunks_used`` says what was chosen).

Counters ``n_jvp`` and ``n_vjp`` record how many vectors have been multiplied.

``jvp_mode="auto"`` measures instead of assuming: the first block of J·V is computed both ways, timed, and the
faster mode is used from then on, for this operator and every later one of the same architecture (the U-Net's
class and config, the layer, the point's shape, dtype and device, the block size and batching;
:func:`auto_choices` lists what was measured). On diffusers U-Nets on CPU (``benchmarks/scaling.py``,
NOTES.md), forward mode measured 1.5–1.9× faster per vector at 128×128 and 256×256, the two within 10 % at
32×32, and reverse-over-reverse 1.4× faster for the SD-2.1 U-Net in chunks of 4 vectors, so no constant is
right for all. Before the timing, one vector goes through each mode untimed (the first use of a transform in a
process costs extra), so the measurement costs about two blocks of J·V, once. The two modes agree to rounding;
the choice is made once per architecture in a process, so a sweep uses one mode throughout. A mode whose block
would not fit in the memory the device has free (estimated from the activations one forward pass saves:
:mod:`pullback_utils.engine.jvp_memory`) is not tried.

**The default is ``"auto"``** (issue 28: at 256×256 the former default, reverse-over-reverse, took 51 s
per block against 31 s in forward mode). ``jvp_mode=None`` and ``chunk_size=None`` mean the defaults,
which the environment variables ``PULLBACK_JVP_MODE`` and ``PULLBACK_CHUNK_SIZE`` override (so a book
run that was killed for memory can be rerun with smaller blocks without editing a chapter).
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Callable
from typing import Literal

import torch
from torch.func import jvp as func_jvp
from torch.func import vjp as func_vjp
from torch.func import vmap

__all__ = [
    "JacobianOperator",
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_JVP_MODE",
    "JVP_MODES",
    "CHUNK_ENV",
    "JVP_MODE_ENV",
    "auto_choices",
    "default_chunk_size",
    "default_jvp_mode",
]

#: vectors per batched product unless ``chunk_size`` or ``$PULLBACK_CHUNK_SIZE`` says otherwise
DEFAULT_CHUNK_SIZE = 64
#: how J·V is computed unless ``jvp_mode`` or ``$PULLBACK_JVP_MODE`` says otherwise
DEFAULT_JVP_MODE = "auto"
JVP_MODES = ("auto", "forward", "reverse")
CHUNK_ENV = "PULLBACK_CHUNK_SIZE"
JVP_MODE_ENV = "PULLBACK_JVP_MODE"


def default_chunk_size() -> int:
    """``$PULLBACK_CHUNK_SIZE`` when set (a positive integer, else ValueError naming it), else 64 (then the
    cap of the block chosen from the free memory)."""
    raw = os.environ.get(CHUNK_ENV, "").strip()
    if not raw:
        return DEFAULT_CHUNK_SIZE
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"environment variable {CHUNK_ENV} must be a positive integer, got {raw!r}")
    return int(raw)


def default_jvp_mode() -> str:
    """``$PULLBACK_JVP_MODE`` when set (one of ``JVP_MODES``, else ValueError naming it), else ``"auto"``."""
    raw = os.environ.get(JVP_MODE_ENV, "").strip()
    if not raw:
        return DEFAULT_JVP_MODE
    if raw not in JVP_MODES:
        raise ValueError(f"environment variable {JVP_MODE_ENV} must be one of {', '.join(JVP_MODES)}, got {raw!r}")
    return raw


# jvp_mode="auto": {architecture key: (chosen mode, seconds forward, seconds reverse)} for one block
_AUTO: dict[tuple, tuple[str, float, float]] = {}
# {architecture key (block size 0): bytes one forward pass saves for backward}, counted once per process
_SAVED: dict[tuple, int] = {}


def auto_choices() -> dict[tuple, tuple[str, float, float]]:
    """What ``jvp_mode="auto"`` measured in this process: ``{key: (mode, seconds forward, seconds reverse)}``,
    the seconds of one block of J·V each way (forward ``inf`` when forward-mode AD failed)."""
    return dict(_AUTO)


def _architecture(fn: Callable, x: torch.Tensor, m: int, batching: str) -> tuple:
    """What the cost of a block depends on: the network (class and config) or the function, the point's
    shape, dtype and device, the block size and the batching."""
    net = getattr(fn, "unet", None)
    if net is not None and hasattr(net, "config"):
        what = (
            type(net).__qualname__,
            json.dumps(dict(net.config), sort_keys=True, default=str),
            str(getattr(fn, "layer", "")),
        )
    else:
        what = (getattr(fn, "__qualname__", type(fn).__qualname__), id(fn))
    return (*what, tuple(x.shape), str(x.dtype), str(x.device), m, batching)


class JacobianOperator:
    """J = ∂fn/∂x at ``x`` as an operator: ``jvp(V)`` = J·V and ``vjp(U)`` = Jᵀ·U on blocks.

    Args:
        fn: torch function of one tensor. If ``fn.per_sample`` is True, ``x`` has a leading batch
            dimension of 1 and ``fn`` maps each sample of a batch independently.
        x: the point, any shape ``x_shape``.
        chunk_size: at most this many vectors per batched call (default ``$PULLBACK_CHUNK_SIZE``, else
            the largest block that fits in the free memory, at most ``DEFAULT_CHUNK_SIZE``: module doc).
        batching: ``"vmap"`` (``torch.func.vmap`` over the vectors; the point's forward pass is
            recorded once at batch size 1), ``"batch"`` (the point repeated m times through the batch
            dimension; needs ``fn.per_sample``), or ``"auto"`` (= ``"vmap"``, which measured faster
            per vector and keeps m-fold smaller activations on diffusers U-Nets).
        jvp_mode: ``"auto"`` (the default, ``None``: the faster of the two below that fits in memory,
            timed on the first block and remembered per architecture: module doc), ``"reverse"``
            (reverse-over-reverse: it reuses the recorded forward pass; within 10 % of forward mode at
            32×32 on CPU, twice its memory) or ``"forward"`` (forward-mode AD, which needs
            :func:`~pullback_utils.features.ad_safe.forward_ad_safe` on diffusers models; 1.9× faster than
            reverse-over-reverse at 256×256). ``None``: ``$PULLBACK_JVP_MODE``, else ``"auto"``.

    Attributes:
        h: fn(x), detached; ``h_shape`` its shape. ``dim_x`` / ``dim_h`` flattened sizes.
        n_jvp, n_vjp: number of vectors multiplied by J and by Jᵀ so far.
        jvp_mode_used: the mode J·V runs in (for ``"auto"``: ``None`` until the first block decides).
        chunks_used: ``{"jvp": m, "vjp": m}``, the block sizes in use (chosen from memory at the first
            product of each kind, unless ``chunk_size`` / ``$PULLBACK_CHUNK_SIZE`` fixed them).
    """

    def __init__(
        self,
        fn: Callable[[torch.Tensor], torch.Tensor],
        x: torch.Tensor,
        *,
        chunk_size: int | None = None,
        batching: Literal["auto", "batch", "vmap"] = "auto",
        jvp_mode: Literal["auto", "forward", "reverse"] | None = None,
    ) -> None:
        if jvp_mode is None:
            jvp_mode = default_jvp_mode()  # type: ignore[assignment]
        if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
            raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")
        if batching not in ("auto", "batch", "vmap"):
            raise ValueError(f"batching must be 'auto', 'batch' or 'vmap', got {batching!r}")
        if jvp_mode not in JVP_MODES:
            raise ValueError(f"jvp_mode must be 'auto', 'forward' or 'reverse', got {jvp_mode!r}")
        per_sample = bool(getattr(fn, "per_sample", False))
        if batching == "batch" and not per_sample:
            raise ValueError("batching='batch' needs a per-sample function (fn.per_sample == True)")
        if per_sample and (x.ndim == 0 or x.shape[0] != 1):
            raise ValueError(
                f"a per-sample function takes x with a leading batch dimension of 1, got shape {tuple(x.shape)}"
            )
        self.fn = fn
        self.x = x.detach()
        self._chunk_fixed = chunk_size is not None or bool(os.environ.get(CHUNK_ENV, "").strip())
        self.chunk_size = chunk_size or default_chunk_size()
        self.chunks_used: dict[str, int | None] = {"jvp": None, "vjp": None}
        if self._chunk_fixed:
            self.chunks_used = {"jvp": self.chunk_size, "vjp": self.chunk_size}
        self._after_trial: dict[str, int] = {}
        self.batching = "vmap" if batching == "auto" else batching
        self.jvp_mode = jvp_mode
        self.jvp_mode_used: str | None = None if jvp_mode == "auto" else jvp_mode
        with torch.no_grad():
            self.h = fn(self.x).detach()
        self.x_shape = tuple(self.x.shape)
        self.h_shape = tuple(self.h.shape)
        self.dim_x = self.x.numel()
        self.dim_h = self.h.numel()
        self.n_jvp = 0
        self.n_vjp = 0
        self._vjp_fns: dict[int, Callable] = {}
        self._ror_fns: dict[int, Callable] = {}

    # ------------------------------------------------------------------ helpers
    def _batched_point(self, m: int) -> torch.Tensor:
        return self.x.expand(m, *self.x_shape[1:]).contiguous()

    def _vjp_fn(self, m: int) -> Callable:
        """Reverse-mode pullback for a block of m cotangents; the forward pass is recorded once."""
        if m not in self._vjp_fns:
            if self.batching == "batch":
                _, pullback = func_vjp(self.fn, self._batched_point(m))
                self._vjp_fns[m] = lambda u: pullback(u.reshape(m, *self.h_shape[1:]))[0]
            else:
                if not self._vjp_fns:
                    _, pullback = func_vjp(self.fn, self.x)
                    self._single_pullback = vmap(lambda u: pullback(u)[0])
                self._vjp_fns[m] = self._single_pullback
        return self._vjp_fns[m]

    def _ror_fn(self, m: int) -> Callable:
        """J·V as the VJP of the linear map u ↦ Jᵀu (reverse-over-reverse)."""
        if m not in self._ror_fns:
            pullback = self._vjp_fn(m)
            u0 = torch.zeros((m, *self.h_shape), dtype=self.h.dtype, device=self.h.device)
            _, double = func_vjp(pullback, u0)
            self._ror_fns[m] = lambda v: double(v.reshape(m, *self.x_shape[1:]) if self.batching == "batch" else v)[0]
        return self._ror_fns[m]

    def _forward_block(self, V: torch.Tensor) -> torch.Tensor:
        m = V.shape[0]
        if self.batching == "batch":
            return func_jvp(self.fn, (self._batched_point(m),), (V.reshape(m, *self.x_shape[1:]),))[1]
        return vmap(lambda v: func_jvp(self.fn, (self.x,), (v,))[1])(V)

    def _auto_block(self, V: torch.Tensor) -> torch.Tensor | None:
        """Decide ``jvp_mode_used`` (measured, or remembered for this architecture); returns the block's
        product when it was computed while measuring, else ``None``."""
        key = _architecture(self.fn, self.x, V.shape[0], self.batching)
        if key in _AUTO:
            self.jvp_mode_used = _AUTO[key][0]
            return None
        fits = self._modes_that_fit(V.shape[0])
        if fits["reverse"] != fits["forward"]:  # only one fits: no trial of the other
            self.jvp_mode_used = "reverse" if fits["reverse"] else "forward"
            _AUTO[key] = (self.jvp_mode_used, float("nan"), float("nan"))
            return None
        if not fits["reverse"]:  # neither fits: the smaller one, and say how to make blocks smaller
            warnings.warn(
                f"a block of {V.shape[0]} J·V products is estimated not to fit in free memory in "
                f"either mode; using forward mode (the smaller). If the process is killed, pass a "
                f"smaller chunk_size (or set {CHUNK_ENV})",
                UserWarning,
                stacklevel=4,
            )
            self.jvp_mode_used = "forward"
            _AUTO[key] = ("forward", float("nan"), float("nan"))
            return None
        self._vjp_fn(V.shape[0])  # the recorded forward pass is needed for Jᵀ anyway: not part of the timing
        try:  # one vector each way first, untimed: the first use of a transform in a process costs extra
            self._forward_block(V[:1])
            works = True
        except (RuntimeError, NotImplementedError):  # an operation without a forward-mode formula
            works = False
        self._ror_fn(1)(V[:1])
        start = time.perf_counter()
        reverse = self._ror_fn(V.shape[0])(V)
        t_reverse = time.perf_counter() - start
        forward, t_forward = None, float("inf")
        if works:
            start = time.perf_counter()
            forward = self._forward_block(V)
            t_forward = time.perf_counter() - start
        self.jvp_mode_used = "forward" if t_forward < t_reverse else "reverse"
        _AUTO[key] = (self.jvp_mode_used, t_forward, t_reverse)
        if self.jvp_mode_used == "forward":
            self._ror_fns.clear()  # its double-backward graphs are not needed any more
        else:
            if V.shape[0] != 1:
                self._ror_fns.pop(1, None)
        return forward if self.jvp_mode_used == "forward" else reverse

    def _modes_that_fit(self, m: int) -> dict[str, bool]:
        """{"forward"/"reverse": whether a block of m J·V products is estimated to fit in free memory}."""
        from pullback_utils.engine import jvp_memory

        free = jvp_memory.available_bytes(self.x.device)
        if free is None:
            return {"forward": True, "reverse": True}
        saved = self._saved_bytes()
        if saved is None:  # cannot be counted: try both, as before
            return {"forward": True, "reverse": True}
        return jvp_memory.fitting_modes(saved, m, free)

    def _saved_bytes(self) -> int | None:
        """Bytes one forward pass at the point saves for backward (counted once per architecture and
        process); None when they cannot be counted."""
        from pullback_utils.engine import jvp_memory

        key = _architecture(self.fn, self.x, 0, self.batching)
        if key not in _SAVED:
            try:
                _SAVED[key] = jvp_memory.saved_bytes(self.fn, self.x)
            except (RuntimeError, NotImplementedError, TypeError):
                return None
        return _SAVED[key]

    def _memory_chunk(self, kind: str) -> int:
        """The block size of ``kind`` ("jvp" or "vjp"): fixed, or chosen once from the free memory for the
        mode in use (module doc). For ``jvp_mode="auto"`` a mode of which not even one vector fits is
        decided against here, so it is never tried; when both fit, the trial runs at the smaller of their
        largest blocks and the winner then gets its own. :class:`~pullback_utils.engine.jvp_memory.MemoryBudgetError`
        when nothing fits."""
        if self.chunks_used[kind] is not None:
            return int(self.chunks_used[kind])  # type: ignore[arg-type]
        from pullback_utils.engine import jvp_memory

        free = jvp_memory.available_bytes(self.x.device)
        saved = self._saved_bytes() or 0
        cap = self.chunk_size
        recorded = bool(self._vjp_fns)  # the pass Jᵀ reuses is in memory already: not counted twice
        if kind == "vjp":
            m = jvp_memory.choose_chunk("vjp", saved, free, cap, recorded)
        elif self.jvp_mode_used is not None:
            m = jvp_memory.choose_chunk(self.jvp_mode_used, saved, free, cap, recorded)
        else:
            fits = {mode: jvp_memory.max_chunk(mode, saved, free, cap, recorded) for mode in ("forward", "reverse")}
            if not any(fits.values()):
                jvp_memory.choose_chunk("forward", saved, free, cap, recorded)  # raises, naming the settings
            if not fits["reverse"] or not fits["forward"]:
                self.jvp_mode_used = "forward" if fits["forward"] else "reverse"
                m = fits[self.jvp_mode_used]
            else:
                m = min(fits.values())
                self._after_trial = fits
        self.chunks_used[kind] = m
        return m

    def _jvp_block(self, V: torch.Tensor) -> torch.Tensor:
        m = V.shape[0]
        out = self._auto_block(V) if self.jvp_mode_used is None else None
        if out is None:
            out = self._ror_fn(m)(V) if self.jvp_mode_used == "reverse" else self._forward_block(V)
        return out.reshape(m, *self.h_shape)

    def _vjp_block(self, U: torch.Tensor) -> torch.Tensor:
        m = U.shape[0]
        return self._vjp_fn(m)(U).reshape(m, *self.x_shape)

    def _chunked(
        self, block_fn: Callable, W: torch.Tensor, in_shape: tuple, out_shape: tuple, kind: str
    ) -> torch.Tensor:
        if tuple(W.shape[1:]) != in_shape:
            raise ValueError(f"expected vectors of shape (m, *{in_shape}), got {tuple(W.shape)}")
        size = self._memory_chunk(kind) if W.shape[0] else self.chunk_size
        home = W.device  # results go back where the vectors came from (the solvers keep theirs on the CPU)
        W = W.to(dtype=self.x.dtype, device=self.x.device)
        outs = [block_fn(W[i : i + size].contiguous()) for i in range(0, W.shape[0], size)]
        if not outs:
            return W.new_zeros((0, *out_shape), device=home)
        return torch.cat(outs).detach().to(home)

    # ------------------------------------------------------------------ public
    def jvp(self, V: torch.Tensor) -> torch.Tensor:
        """J·V for a block of vectors. V: ``(m, *x_shape)`` -> ``(m, *h_shape)``, on V's device (the products
        run on x's: a solver's CPU vectors work with a U-Net on a GPU)."""
        out = self._chunked(self._jvp_block, V, self.x_shape, self.h_shape, "jvp")
        if self._after_trial and self.jvp_mode_used is not None:  # auto decided: the winner's own largest block
            self.chunks_used["jvp"] = self._after_trial[self.jvp_mode_used]
            self._after_trial = {}
        self.n_jvp += V.shape[0]
        return out

    def vjp(self, U: torch.Tensor) -> torch.Tensor:
        """Jᵀ·U for a block of vectors. U: ``(m, *h_shape)`` -> ``(m, *x_shape)``, on U's device."""
        out = self._chunked(self._vjp_block, U, self.h_shape, self.x_shape, "vjp")
        self.n_vjp += U.shape[0]
        return out

    def release(self) -> None:
        """Drop the recorded forward passes (frees their activations)."""
        self._vjp_fns.clear()
        self._ror_fns.clear()
        self.__dict__.pop("_single_pullback", None)
