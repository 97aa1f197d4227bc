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
call, and so the memory.

Counters ``n_jvp`` and ``n_vjp`` record how many vectors have been multiplied.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch.func import jvp as func_jvp
from torch.func import vjp as func_vjp
from torch.func import vmap

__all__ = ["JacobianOperator", "DEFAULT_CHUNK_SIZE"]

#: vectors per batched product unless ``chunk_size`` says otherwise
DEFAULT_CHUNK_SIZE = 64


class JacobianOperator:
    """J = ∂fn/∂x at ``x`` as an operator: ``jvp(V)`` = J·V and ``vjp(U)`` = Jᵀ·U on blocks.

    Args:
        fn: torch function of one tensor. If ``fn.per_sample`` is True, ``x`` has a leading batch
            dimension of 1 and ``fn`` maps each sample of a batch independently.
        x: the point, any shape ``x_shape``.
        chunk_size: at most this many vectors per batched call (default ``DEFAULT_CHUNK_SIZE``).
        batching: ``"vmap"`` (``torch.func.vmap`` over the vectors; the point's forward pass is
            recorded once at batch size 1), ``"batch"`` (the point repeated m times through the batch
            dimension; needs ``fn.per_sample``), or ``"auto"`` (= ``"vmap"``, which measured faster
            per vector and keeps m-fold smaller activations on diffusers U-Nets).
        jvp_mode: ``"reverse"`` (reverse-over-reverse, default: it reuses the recorded forward
            pass and measured 1.5–2× faster per vector than forward mode on CPU) or ``"forward"``
            (forward-mode AD, which needs :func:`~pullback_utils.ad_safe.forward_ad_safe` on
            diffusers models).

    Attributes:
        h: fn(x), detached; ``h_shape`` its shape. ``dim_x`` / ``dim_h`` flattened sizes.
        n_jvp, n_vjp: number of vectors multiplied by J and by Jᵀ so far.
    """

    def __init__(
        self,
        fn: Callable[[torch.Tensor], torch.Tensor],
        x: torch.Tensor,
        *,
        chunk_size: int | None = None,
        batching: Literal["auto", "batch", "vmap"] = "auto",
        jvp_mode: Literal["forward", "reverse"] = "reverse",
    ) -> None:
        if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
            raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")
        if batching not in ("auto", "batch", "vmap"):
            raise ValueError(f"batching must be 'auto', 'batch' or 'vmap', got {batching!r}")
        if jvp_mode not in ("forward", "reverse"):
            raise ValueError(f"jvp_mode must be 'forward' or 'reverse', got {jvp_mode!r}")
        per_sample = bool(getattr(fn, "per_sample", False))
        if batching == "batch" and not per_sample:
            raise ValueError("batching='batch' needs a per-sample function (fn.per_sample == True)")
        if per_sample and (x.ndim == 0 or x.shape[0] != 1):
            raise ValueError(
                f"a per-sample function takes x with a leading batch dimension of 1, got shape {tuple(x.shape)}"
            )
        self.fn = fn
        self.x = x.detach()
        self.chunk_size = chunk_size or DEFAULT_CHUNK_SIZE
        self.batching = "vmap" if batching == "auto" else batching
        self.jvp_mode = jvp_mode
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

    def _jvp_block(self, V: torch.Tensor) -> torch.Tensor:
        m = V.shape[0]
        if self.jvp_mode == "reverse":
            out = self._ror_fn(m)(V)
        elif self.batching == "batch":
            _, out = func_jvp(self.fn, (self._batched_point(m),), (V.reshape(m, *self.x_shape[1:]),))
        else:
            out = vmap(lambda v: func_jvp(self.fn, (self.x,), (v,))[1])(V)
        return out.reshape(m, *self.h_shape)

    def _vjp_block(self, U: torch.Tensor) -> torch.Tensor:
        m = U.shape[0]
        return self._vjp_fn(m)(U).reshape(m, *self.x_shape)

    def _chunked(self, block_fn: Callable, W: torch.Tensor, in_shape: tuple, out_shape: tuple) -> torch.Tensor:
        if tuple(W.shape[1:]) != in_shape:
            raise ValueError(f"expected vectors of shape (m, *{in_shape}), got {tuple(W.shape)}")
        W = W.to(dtype=self.x.dtype, device=self.x.device)
        outs = [block_fn(W[i : i + self.chunk_size].contiguous()) for i in range(0, W.shape[0], self.chunk_size)]
        if not outs:
            return W.new_zeros((0, *out_shape))
        return torch.cat(outs).detach()

    # ------------------------------------------------------------------ public
    def jvp(self, V: torch.Tensor) -> torch.Tensor:
        """J·V for a block of vectors. V: (m, *x_shape) -> (m, *h_shape)."""
        out = self._chunked(self._jvp_block, V, self.x_shape, self.h_shape)
        self.n_jvp += V.shape[0]
        return out

    def vjp(self, U: torch.Tensor) -> torch.Tensor:
        """Jᵀ·U for a block of vectors. U: (m, *h_shape) -> (m, *x_shape)."""
        out = self._chunked(self._vjp_block, U, self.h_shape, self.x_shape)
        self.n_vjp += U.shape[0]
        return out

    def release(self) -> None:
        """Drop the recorded forward passes (frees their activations)."""
        self._vjp_fns.clear()
        self._ror_fns.clear()
        self.__dict__.pop("_single_pullback", None)
