"""The local basis: one call for any differentiable map, and the engine applied to a diffusers denoiser.

Two levels, one documented call each::

    pu.local_basis(fn, x, k)                    # any differentiable map fn (a function or an nn.Module)
    m.local_basis(x_t, t, k, prompt=...)        # a DiffusionModel (pullback_utils.models.diffusion_model)

The model's method calls :func:`network_basis`, the engine on a bare diffusers denoiser at (x_t, t),
with one call shape for every family (:mod:`pullback_utils.diffusion.architectures`)::

    network_basis(unet, x_t, t, k)                                           # h-space of a U-Net
    network_basis(unet, x_t, t, k, encoder_hidden_states=c)                  # Stable Diffusion
    network_basis(unet, x_t, t, k, encoder_hidden_states=c, added_cond_kwargs={...})   # SDXL
    network_basis(dit, x_t, t, k, class_labels=207)                          # DiT, middle block
    network_basis(sd3, x_t, t, k, encoder_hidden_states=c, pooled_projections=p, scheduler=s)
    network_basis(flux, tokens, t, k, layer="transformer_blocks.3", encoder_hidden_states=c,
                  pooled_projections=p, img_ids=ids, guidance=3.5)

Keywords that are not options of :func:`~pullback_utils.engine.solvers.jacobian_svd` are the denoiser's
conditioning; unknown ones are refused with the list of both.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from pullback_utils.diffusion.architectures import check_input, family_of
from pullback_utils.engine.solvers import SOLVER_DEFAULTS, LocalBasis, check_solver_args, jacobian_svd
from pullback_utils.features.ad_safe import forward_ad_safe
from pullback_utils.features.feature_maps import feature_map

__all__ = ["local_basis", "network_basis", "freeze", "frozen", "SOLVER_OPTIONS", "denoiser_signature"]

#: keyword arguments of :func:`~pullback_utils.engine.solvers.jacobian_svd` that ``local_basis`` passes on
SOLVER_OPTIONS = tuple(p for p in inspect.signature(jacobian_svd).parameters if p not in ("fn", "x", "k"))


def freeze(module: nn.Module) -> nn.Module:
    """``module`` in eval mode with ``requires_grad=False`` on every parameter, for good; returns it.

    The package's one freeze: :func:`frozen` is the same for the duration of a ``with`` block.
    """
    return module.requires_grad_(False).eval()


@contextlib.contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """Context manager: parameters of ``model`` with ``requires_grad=False``, restored afterwards.

    ``torch.func`` transforms otherwise record graphs over the weights, which costs memory.
    """
    saved = [(p, p.requires_grad) for p in model.parameters()]
    was_training = model.training
    freeze(model)
    try:
        yield model
    finally:
        for p, flag in saved:
            p.requires_grad_(flag)
        model.train(was_training)


def denoiser_signature(denoiser: nn.Module) -> str:
    """A short hex id of a denoiser's class and weights: equal for the same network, different for
    different weights (another model, another checkpoint) with overwhelming probability.

    Cheap: sha256 of the class name, every parameter's and buffer's name, shape and dtype, and 8
    values sampled evenly from each (not a digest of all weights, which the basis cache's
    ``DiffusionModel.fingerprint`` is). Recorded as ``LocalBasis.info["denoiser"]``.
    """
    import hashlib

    h = hashlib.sha256(f"{type(denoiser).__module__}.{type(denoiser).__qualname__}".encode())
    samples = []
    for name, t in (*denoiser.named_parameters(), *denoiser.named_buffers()):
        h.update(f"|{name}:{tuple(t.shape)}:{t.dtype}".encode())
        flat = t.detach().reshape(-1)
        if flat.numel():
            step = max(1, flat.numel() // 8)
            samples.append(flat[::step][:8].to(torch.float64))
    if samples:
        h.update(torch.cat([x.cpu() for x in samples]).numpy().tobytes())
    return h.hexdigest()[:16]


def local_basis(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, k: int, **solver: Any) -> LocalBasis:
    """The local basis of any differentiable map at ``x``: the top-``k`` singular triplets of J = ∂fn/∂x.

    The basis call on a map; on a diffusion model it is ``DiffusionModel.local_basis(x_t, t, k, prompt=...)``
    (which picks the feature layer, the time and the conditioning, and caches).

    Args:
        fn: a torch function of one tensor, or an ``nn.Module`` (its weights are frozen and its attention
            made forward-AD safe for the duration of the call). A diffusers denoiser needs a time and
            conditioning: use ``DiffusionModel.local_basis`` or :func:`network_basis` for it.
        x: the point, shape ``x_shape`` (with a leading batch dimension of 1 when ``fn.per_sample``).
        k: number of singular triplets, 1 <= k <= min(dim x, dim h).
        **solver: the options of :func:`~pullback_utils.engine.solvers.jacobian_svd` (``method``, ``tol``,
            ``max_iters``, ``oversample``, ``seed``, ``jvp_mode``, ``chunk_size``, ...).

    Returns:
        :class:`LocalBasis`: v ``(k, *x_shape)``, u ``(k, *h_shape)``, s ``(k,)`` and ``info`` (the solver's record:
        ``angle_estimate``, ``n_jvp``, ``converged``, ...).
    """
    if not callable(fn):
        raise TypeError(f"fn must be a differentiable torch function or nn.Module, got {type(fn).__name__}")
    unknown = sorted(set(solver) - set(SOLVER_OPTIONS))
    if unknown:
        raise TypeError(f"local_basis got unknown option(s) {unknown}; valid options are {list(SOLVER_OPTIONS)}")
    if not isinstance(fn, nn.Module):
        return jacobian_svd(fn, x, k, **solver)
    try:
        family_of(fn)
    except TypeError:
        pass
    else:
        raise TypeError(
            f"fn is a diffusers denoiser ({type(fn).__name__}), which needs a time and conditioning: use "
            "DiffusionModel.local_basis(x_t, t, k, prompt=...) or "
            "pullback_utils.features.basis.network_basis(denoiser, x_t, t, k, **conditioning)"
        )
    with frozen(fn), forward_ad_safe(fn):
        return jacobian_svd(fn, x, k, **solver)


def network_basis(
    denoiser: nn.Module,
    x_t: torch.Tensor,
    t: float | int | torch.Tensor,
    k: int,
    *,
    layer: str | None = None,
    num_train_timesteps: int | None = None,
    scheduler: Any = None,
    **options: Any,
) -> LocalBasis:
    """Local latent basis of a bare diffusers ``denoiser`` at ``(x_t, t)``: top-k singular triplets of ∂h/∂x_t.

    What ``DiffusionModel.local_basis`` calls (after encoding the prompt and choosing the layer).

    Args:
        denoiser: a supported diffusers denoiser (``UNet2DModel``, ``UNet2DConditionModel`` incl. SDXL,
            ``DiTTransformer2DModel``, ``PixArtTransformer2DModel``, ``SD3Transformer2DModel``,
            ``FluxTransformer2DModel``).
        x_t: ``(1, *x_shape)`` noisy sample in the denoiser's input layout: (1, C, H, W), or FLUX's packed
            (1, N, C).
        t: time on the package's grid (:mod:`pullback_utils.diffusion.schedule`): an int level in ``1..T`` or
            a float fraction of ``T`` in ``(0, 1]``; VP networks see timestep ``level - 1``, flow networks
            the sigma of that level on ``scheduler``'s grid (:mod:`pullback_utils.diffusion.flow`).
        k: number of basis vectors.
        layer: a block or submodule name (:func:`~pullback_utils.features.feature_maps.layer_names`); ``None`` is the
            architecture's default (``"mid"`` for U-Nets, the middle transformer block for DiTs).
        num_train_timesteps: the schedule's ``T`` (default: the scheduler's, else 1000).
        scheduler: the denoiser's scheduler; flow models read their shifted sigma grid from it.
        **options: the denoiser's conditioning keywords (``encoder_hidden_states=``, ``class_labels=``,
            ``added_cond_kwargs=``, ``pooled_projections=``, ``img_ids=``, ``guidance=``, …, each for one
            sample) and the options of :func:`~pullback_utils.engine.solvers.jacobian_svd` (method, tol, …).

    Returns:
        :class:`LocalBasis`: v ``(k, 1, *x_shape)``, u ``(k, 1, *h_shape[1:])``, s (k,); ``info`` records
        ``level``, ``timestep`` (the network's input: ``level - 1`` for VP networks, so a diffusers
        timestep ``tau`` is ``t = tau + 1``), ``sigma`` (flow models), ``layer`` and ``denoiser``
        (:func:`denoiser_signature`, which :func:`~pullback_utils.editing.parallel_transport` compares).
    """
    solver = {n: v for n, v in options.items() if n in SOLVER_OPTIONS}
    conditioning = {n: v for n, v in options.items() if n not in SOLVER_OPTIONS}
    family_of(denoiser)  # an unsupported class is named before anything else
    check_input(denoiser, x_t)
    args = {**SOLVER_DEFAULTS, **{k_: v for k_, v in solver.items() if k_ in SOLVER_DEFAULTS}}
    check_solver_args(args["method"], args["tol"], args["max_iters"], args["oversample"], args["seed"])
    try:
        fn = feature_map(
            denoiser, t, layer=layer, num_train_timesteps=num_train_timesteps, scheduler=scheduler, **conditioning
        )
    except ValueError as e:
        if "takes no conditioning keyword" in str(e):
            raise ValueError(f"{e}; solver options are {list(SOLVER_OPTIONS)}") from None
        raise
    dtype = next(denoiser.parameters()).dtype
    with frozen(denoiser), forward_ad_safe(denoiser):
        basis = jacobian_svd(fn, x_t.to(dtype), k, **solver)
    basis.info.update(
        {"level": fn.level, "timestep": fn.timestep, "layer": fn.layer, "denoiser": denoiser_signature(denoiser)}
    )
    if fn.sigma is not None:
        basis.info["sigma"] = fn.sigma
    return basis
