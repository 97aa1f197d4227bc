"""The local latent basis of a diffusers U-Net at (x_t, t): the engine applied to h-space."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from .ad_safe import forward_ad_safe
from .features import feature_map
from .solvers import SOLVER_DEFAULTS, LocalBasis, check_solver_args, jacobian_svd

__all__ = ["local_basis", "frozen"]


@contextlib.contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """Context manager: parameters of ``model`` with ``requires_grad=False``, restored afterwards.

    ``torch.func`` transforms otherwise record graphs over the weights, which costs memory.
    """
    saved = [(p, p.requires_grad) for p in model.parameters()]
    was_training = model.training
    model.requires_grad_(False).eval()
    try:
        yield model
    finally:
        for p, flag in saved:
            p.requires_grad_(flag)
        model.train(was_training)


def local_basis(
    unet: nn.Module,
    x_t: torch.Tensor,
    t: float | int | torch.Tensor,
    k: int,
    *,
    layer: str = "mid",
    encoder_hidden_states: torch.Tensor | None = None,
    num_train_timesteps: int | None = None,
    **solver,
) -> LocalBasis:
    """Local latent basis of ``unet`` at ``(x_t, t)``: top-k singular triplets of ∂h/∂x_t.

    Args:
        unet: diffusers ``UNet2DModel`` or ``UNet2DConditionModel``.
        x_t: (1, C, H, W) noisy sample, C and H, W matching the U-Net.
        t: time on the package's grid (:mod:`pullback_utils.schedule`): an int level in ``1..T`` or
            a float fraction of ``T`` in ``(0, 1]``; the U-Net sees timestep ``level - 1``.
        k: number of basis vectors.
        layer: ``"mid"`` (h-space, default), ``"down.i"`` or ``"up.i"``.
        encoder_hidden_states: (1, L, D) prompt embedding for a text-conditional U-Net.
        num_train_timesteps: the schedule's ``T`` (default 1000).
        **solver: options of :func:`~pullback_utils.solvers.jacobian_svd` (method, tol, …).

    Returns:
        :class:`LocalBasis`: v (k, 1, C, H, W), u (k, 1, *h_shape[1:]), s (k,).
    """
    if not isinstance(x_t, torch.Tensor):
        raise TypeError(f"x_t must be a torch.Tensor, got {type(x_t).__name__}")
    in_channels = unet.config.in_channels
    if x_t.ndim != 4 or x_t.shape[0] != 1 or x_t.shape[1] != in_channels:
        raise ValueError(
            f"x_t must have shape (1, {in_channels}, H, W) for this U-Net, got {tuple(x_t.shape)}"
        )
    down = 2 ** (len(unet.down_blocks) - 1)
    if x_t.shape[2] % down or x_t.shape[3] % down:
        raise ValueError(
            f"x_t's height and width must be multiples of {down} for this U-Net, got {tuple(x_t.shape[2:])}"
        )
    if not torch.isfinite(x_t).all():
        raise ValueError("x_t contains NaN or infinite values")
    args = {**SOLVER_DEFAULTS, **{k_: v for k_, v in solver.items() if k_ in SOLVER_DEFAULTS}}
    check_solver_args(args["method"], args["tol"], args["max_iters"], args["oversample"], args["seed"])
    fn = feature_map(
        unet, t, layer=layer, encoder_hidden_states=encoder_hidden_states,
        num_train_timesteps=num_train_timesteps,
    )
    dtype = next(unet.parameters()).dtype
    with frozen(unet), forward_ad_safe(unet):
        basis = jacobian_svd(fn, x_t.to(dtype), k, **solver)
    basis.info.update({"level": fn.level, "timestep": fn.timestep, "layer": layer})
    return basis
