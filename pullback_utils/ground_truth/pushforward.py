"""Where the basis lives: data tangents pushed to ``x_t`` through the inversion, and the denoiser's Jacobian.

The local latent basis at ``(x_t, t)`` is a set of directions in ``x_t``-space, while the renderer's
tangents live at the clean image ``x_0``. The deterministic DDIM inversion ``x_0 -> x_t``
(:func:`pullback_utils.diffusion.ddim.ddim_invert_to_times`) is a smooth map; its Jacobian carries a tangent
``d x_0`` of the data manifold to the direction ``d x_t`` in which ``x_t`` moves when the image moves
along the manifold. :func:`pushed_tangents` computes those Jacobian-vector products by forward-mode
automatic differentiation (``torch.func.jvp``) through every DDIM step, with the network's weights
frozen and its attention made forward-AD safe (:func:`pullback_utils.features.ad_safe.forward_ad_safe`).

:func:`denoiser_basis` is a model-side baseline of the same kind as the local basis: the top-``k``
right singular vectors of ``d x0_hat / d x_t`` with the one-step denoiser
``x0_hat = (x_t - sqrt(1 - a) eps(x_t, t)) / sqrt(a)``, ``a = alpha_bar(t)``.

Shapes: images and states ``(N, *sample_shape)`` (``D = prod(sample_shape)``); tangents ``(N, D, r)``
(columns) or a list of ``N`` tensors ``(D, r_i)``; pushed tangents ``(n_t, N, r, *sample_shape)`` or a
list of ``N`` tensors ``(n_t, r_i, *sample_shape)``, in the order of ``times``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from pullback_utils._validate import check_int
from pullback_utils.diffusion.ddim import Time, ddim_invert_to_times
from pullback_utils.diffusion.schedule import check_steps, check_times
from pullback_utils.engine.solvers import LocalBasis, jacobian_svd
from pullback_utils.features.ad_safe import forward_ad_safe
from pullback_utils.features.basis import frozen
from pullback_utils.features.cache import BasisCache, basis_key_fields, resolve_cache_dir

__all__ = ["invert_to_times", "pushed_tangents", "denoiser_fn", "denoiser_basis"]

#: The ``layer`` field of cache entries holding denoiser-Jacobian bases (never a U-Net layer name).
_DENOISER_LAYER = "denoiser:x0_hat"


@torch.no_grad()
def invert_to_times(model: Any, x0: torch.Tensor, times: Sequence[Time], *, steps: int = 20) -> torch.Tensor:
    """Deterministic DDIM inversion of clean ``x0`` ``(n, *sample_shape)`` to every time of ``times``.

    One run up through the times in increasing order; each leg gets its proportional share of
    ``steps`` (steps over the whole ``[0, T]``, at least one per leg). Returns
    ``(len(times), n, *sample_shape)`` in the order of ``times``.
    """
    return ddim_invert_to_times(model, x0.to(model.device, model.dtype), times, steps=steps)


def _columns(jac: Any, n: int, dim: int) -> list[torch.Tensor]:
    """``jac`` as ``n`` tensors ``(dim, r_i)``; ``ValueError`` naming the problem."""
    if isinstance(jac, torch.Tensor):
        if jac.dim() != 3 or jac.shape[0] != n or jac.shape[1] != dim:
            raise ValueError(
                f"jac must have shape (N={n}, D={dim}, r) (columns = tangent vectors), got {tuple(jac.shape)}"
            )
        cols = list(jac)
    else:
        cols = list(jac)
        if len(cols) != n:
            raise ValueError(f"jac holds {len(cols)} tangent sets for N={n} images")
        for i, c in enumerate(cols):
            if not isinstance(c, torch.Tensor) or c.dim() != 2 or c.shape[0] != dim:
                shape = tuple(c.shape) if isinstance(c, torch.Tensor) else type(c).__name__
                raise ValueError(f"jac[{i}] must be a (D={dim}, r) tensor, got {shape}")
    for i, c in enumerate(cols):
        if not torch.isfinite(c).all():
            raise ValueError(f"jac[{i}] has non-finite entries")
    return cols


def pushed_tangents(
    model: Any,
    images: torch.Tensor,
    jac: Any,
    times: Sequence[Time],
    steps: int,
    *,
    chunk_size: int = 32,
    progress: bool = False,
) -> Any:
    """Tangent vectors at clean images pushed to ``x_t`` through the deterministic DDIM inversion.

    For image ``x_0^i`` and tangent ``w`` the result is ``d/de ddim_invert_to_times(x_0^i + e w)`` at
    ``e = 0``, the exact derivative of the inversion that produced the states (same ``times`` and
    ``steps``), by forward-mode AD (one batched ``torch.func.jvp`` per ``chunk_size`` tangents).

    Args:
        model: a pixel-space :class:`~pullback_utils.models.diffusion_model.DiffusionModel` (the renderer's tangents are
            pixel directions).
        images: ``(N, *sample_shape)`` clean images in the model range.
        jac: ``(N, D, r)`` tangent vectors as columns (e.g. ``factor_jacobian(...)`` or an orthonormal
            tangent basis transposed), or a list of ``N`` tensors ``(D, r_i)``.
        times: the times of the inversion; steps: DDIM steps over ``[0, T]``.
        chunk_size: tangents per batched JVP (bounds memory).
        progress: tqdm bar over the chunks.

    Returns:
        ``(n_t, N, r, *sample_shape)`` for a tensor ``jac``, else a list of ``N`` tensors
        ``(n_t, r_i, *sample_shape)``; in the model's dtype, on the CPU.
    """
    from tqdm.auto import tqdm

    if getattr(model, "is_latent", False):
        raise ValueError("pushed_tangents needs a pixel-space model: a latent model's x_0 is not the image")
    shape = tuple(model.sample_shape)
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or tuple(images.shape[1:]) != shape:
        got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must have shape (N, {', '.join(map(str, shape))}), got {got}")
    check_times(times, model.num_train_timesteps)
    check_steps(steps)
    chunk_size = check_int(chunk_size, "chunk_size", 1)
    n = int(images.shape[0])
    cols = _columns(jac, n, math.prod(shape))
    owner = [i for i, c in enumerate(cols) for _ in range(c.shape[1])]
    if not owner:
        raise ValueError("jac holds no tangent vectors (r = 0 for every image)")
    x0 = images.detach().to(model.device, model.dtype)
    tang = torch.cat([c.T for c in cols]).reshape(len(owner), *shape).to(model.device, model.dtype)
    idx = torch.tensor(owner)
    out = torch.empty((len(times), len(owner), *shape), dtype=model.dtype)

    def invert(z: torch.Tensor) -> torch.Tensor:
        return ddim_invert_to_times(model, z, times, steps=steps)

    starts = range(0, len(owner), chunk_size)
    with frozen(model.unet), forward_ad_safe(model.unet):
        for s in tqdm(starts, desc="pushed tangents", disable=not progress):
            sl = slice(s, s + chunk_size)
            _, d = torch.func.jvp(invert, (x0[idx[sl]],), (tang[sl],))
            out[:, sl] = d.detach().to("cpu")
    if isinstance(jac, torch.Tensor):
        return out.reshape(len(times), n, -1, *shape)
    pieces, start = [], 0
    for c in cols:
        pieces.append(out[:, start : start + c.shape[1]])
        start += c.shape[1]
    return pieces


def denoiser_fn(model: Any, t: Time):
    """``x_t (B, *sample_shape) -> x0_hat``: the one-step denoiser of ``model`` at time ``t``
    (``t`` a level ``>= 1`` or a fraction of ``T``; the unconditional branch of text models)."""
    a = float(model.alpha_bar(t))
    if not 0.0 < a < 1.0:
        raise ValueError(f"t={t!r} has alpha_bar={a}; the denoiser needs 0 < alpha_bar < 1 (a noisy level)")
    c_eps, c_x = math.sqrt(1.0 - a), 1.0 / math.sqrt(a)

    def fn(x: torch.Tensor) -> torch.Tensor:
        return (x - c_eps * model.eps(x, t)) * c_x

    fn.per_sample = True  # type: ignore[attr-defined]
    return fn


def denoiser_basis(
    model: Any, x_t: torch.Tensor, t: Time, k: int, *, cache_dir: Any = None, **solver: Any
) -> LocalBasis:
    """Top-``k`` singular triplets of the denoiser's Jacobian ``d x0_hat / d x_t`` at ``(x_t, t)``.

    Args:
        model: a :class:`~pullback_utils.models.diffusion_model.DiffusionModel`.
        x_t: ``(1, *sample_shape)`` or ``(*sample_shape)``.
        t: the time of ``x_t``.
        k: number of singular vectors.
        cache_dir: the basis cache (entries keyed like local bases, with the layer ``"denoiser:x0_hat"``).
        **solver: options of :func:`~pullback_utils.engine.solvers.jacobian_svd` (method, tol, max_iters, seed).

    Returns:
        :class:`~pullback_utils.engine.solvers.LocalBasis` with ``v`` ``(k, *sample_shape)`` (directions in
        ``x_t``, the baseline compared with the local basis), ``u`` ``(k, *sample_shape)`` (their images
        in ``x0_hat``), ``s`` ``(k,)``.
    """
    if isinstance(x_t, torch.Tensor) and x_t.dim() == len(model.sample_shape):
        x_t = x_t.unsqueeze(0)
    if not isinstance(x_t, torch.Tensor) or tuple(x_t.shape) != (1, *model.sample_shape):
        shape = tuple(x_t.shape) if isinstance(x_t, torch.Tensor) else type(x_t).__name__
        raise ValueError(f"x_t must have shape (1, {', '.join(map(str, model.sample_shape))}), got {shape}")
    k = check_int(k, "k", 1)
    fn = denoiser_fn(model, t)
    x = x_t.detach().to(model.device, model.dtype)

    def compute() -> LocalBasis:
        with frozen(model.unet), forward_ad_safe(model.unet):
            b = jacobian_svd(fn, x, k, **solver)
        shape = tuple(model.sample_shape)
        b.info.update({"layer": _DENOISER_LAYER, "level": model.level(t)})
        return LocalBasis(v=b.v.reshape(b.k, *shape), u=b.u.reshape(b.k, *shape), s=b.s, info=b.info)

    cache_dir = resolve_cache_dir(cache_dir)  # None or "": no cache
    if cache_dir is None:
        return compute()
    fields = basis_key_fields(model.fingerprint, x, model.unet_timestep(t), k, layer=_DENOISER_LAYER, solver=solver)
    return BasisCache(cache_dir).get_or_compute(fields, compute, meta={"model": model.name})
