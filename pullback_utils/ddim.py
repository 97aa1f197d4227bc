"""Deterministic DDIM sampling and inversion on a model's training grid.

Times
-----
Every function of the package that takes a time ``t`` (``ddim_sample``, ``ddim_invert``,
``DiffusionModel.eps``, ``DiffusionModel.local_basis``) reads it the same way. With
``T = scheduler.config.num_train_timesteps`` (1000 for the paper's models):

- an ``int`` ``n`` in ``0..T`` is a *level* of the training grid: ``n = 0`` is clean data
  (``alpha_bar = 1``); ``n >= 1`` is the state ``x_n = sqrt(a_n) x_0 + sqrt(1 - a_n) eps`` with
  ``a_n = scheduler.alphas_cumprod[n - 1]``, at which the U-Net is called with timestep ``n - 1``
  (diffusers' 0-based training index);
- a ``float`` ``f`` in ``[0, 1]`` is a fraction of ``T``: level ``n = round(f * T)`` (halves up).

So ``1.0`` and ``T`` are the top of the grid (U-Net timestep ``T - 1 = 999``), ``0.5`` is level
500 (U-Net timestep 499), and ``0`` / ``0.0`` is clean data. Ints and fractions agree
(``n = f * T``), and ``0`` always means "clean", so ``ddim_sample(m, x, 1.0, 0)`` returns images.

Grid
----
``steps`` DDIM steps between levels ``lo < hi`` visit ``lo + round(i * (hi - lo) / steps)``,
``i = 0..steps``; sampling walks that list downwards, inversion upwards, so inverting to ``t``
and sampling back from ``t`` with the same ``steps`` use exactly the same levels. At most one step
per level is taken: ``steps`` larger than ``hi - lo`` is reduced to ``hi - lo``.
Inversion ends exactly on the requested level (the official code stops one step early).
"""

from __future__ import annotations

import math
import numbers
from typing import TYPE_CHECKING, NamedTuple, Sequence, Union

import torch
from tqdm.auto import tqdm

if TYPE_CHECKING:  # pragma: no cover
    from pullback_utils.models import DiffusionModel

Time = Union[int, float]
Prompt = Union[str, Sequence[str], torch.Tensor, None]

__all__ = [
    "Time",
    "DDIMTrajectory",
    "resolve_time",
    "ddim_timesteps",
    "ddim_sample",
    "ddim_invert",
]


class DDIMTrajectory(NamedTuple):
    """All states of a DDIM run: ``states`` (S + 1, B, C, H, W), ``times`` the S + 1 levels."""

    states: torch.Tensor
    times: list[int]


def resolve_time(t: Time, num_train_timesteps: int, *, name: str = "t") -> int:
    """Level ``n`` in ``0..T`` of time ``t`` (an int level or a float fraction of T; see module doc).

    Raises ``TypeError`` for other types (bool included) and ``ValueError`` when out of range.
    """
    T = int(num_train_timesteps)
    if isinstance(t, torch.Tensor):
        if t.numel() != 1:
            raise ValueError(f"{name} must be a single time, got a tensor of shape {tuple(t.shape)}")
        t = t.item()
    if isinstance(t, bool) or not isinstance(t, (numbers.Integral, numbers.Real)):
        raise TypeError(
            f"{name} must be an int level in 0..{T} or a float fraction of T in [0, 1], "
            f"got {type(t).__name__}"
        )
    if isinstance(t, numbers.Integral):
        n = int(t)
        if not 0 <= n <= T:
            raise ValueError(
                f"{name}={n} is outside the training grid: int levels run from 0 (clean data) to "
                f"{T} (the top); use a float in [0, 1] for a fraction of T"
            )
        return n
    f = float(t)
    if not math.isfinite(f) or not 0.0 <= f <= 1.0:
        raise ValueError(f"{name}={f} must be a fraction of T in [0, 1] (or an int level in 0..{T})")
    return int(math.floor(f * T + 0.5))


def _grid(lo: int, hi: int, steps: int) -> list[int]:
    """Ascending levels from ``lo`` to ``hi`` (inclusive) in ``min(steps, hi - lo)`` steps."""
    span = hi - lo
    s = min(steps, span)
    if s == 0:
        return [lo]
    return [lo + (2 * i * span + s) // (2 * s) for i in range(s + 1)]


def _check_steps(steps: int) -> int:
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral):
        raise TypeError(f"steps must be an int >= 1, got {type(steps).__name__}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return int(steps)


def ddim_timesteps(model: "DiffusionModel", t_from: Time, t_to: Time, steps: int) -> list[int]:
    """The levels a DDIM run from ``t_from`` to ``t_to`` visits, in order, both ends included.

    Descending when ``t_from > t_to`` (sampling), ascending otherwise (inversion).
    """
    steps, a, b = _span(model, t_from, t_to, steps)
    grid = _grid(min(a, b), max(a, b), steps)
    return grid[::-1] if a > b else grid


def _span(model: "DiffusionModel", t_from: Time, t_to: Time, steps: int) -> tuple[int, int, int]:
    """Checked ``steps`` and the levels of ``t_from`` and ``t_to`` on the model's training grid."""
    steps = _check_steps(steps)
    T = model.num_train_timesteps
    return steps, resolve_time(t_from, T, name="t_from"), resolve_time(t_to, T, name="t_to")


def _check_x(model: "DiffusionModel", x: torch.Tensor, name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    expected = tuple(model.sample_shape)
    if x.dim() != 4 or tuple(x.shape[1:]) != expected:
        raise ValueError(
            f"{name} must have shape (B, {', '.join(map(str, expected))}) (the model's x_t), "
            f"got {tuple(x.shape)}"
            + (" (for a latent model, map images with model.to_latent first)" if model.is_latent else "")
        )
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")


def _alpha_bar(model: "DiffusionModel", n: int) -> float:
    return model.alpha_bar(n)


def _ddim_step(x: torch.Tensor, eps: torch.Tensor, a_from: float, a_to: float) -> torch.Tensor:
    """Deterministic DDIM move of ``x`` from alpha_bar ``a_from`` to ``a_to`` with noise ``eps``."""
    x0 = (x - math.sqrt(1.0 - a_from) * eps) / math.sqrt(a_from)
    return math.sqrt(a_to) * x0 + math.sqrt(1.0 - a_to) * eps


@torch.no_grad()
def ddim_sample(
    model: "DiffusionModel",
    x: torch.Tensor,
    t_from: Time,
    t_to: Time = 0,
    *,
    steps: int,
    prompt: Prompt = None,
    guidance_scale: float = 1.0,
    eta: float = 0.0,
    seed: int = 0,
    return_trajectory: bool = False,
    progress: bool = False,
):
    """Run DDIM from ``x`` at time ``t_from`` down to ``t_to`` (``t_to <= t_from``; 0 = clean data).

    Args:
        model: a :class:`~pullback_utils.models.DiffusionModel`.
        x: (B, *model.sample_shape) states at ``t_from`` (latents for latent models).
        t_from, t_to: times (int levels 0..T or float fractions of T; see the module doc).
        steps: number of DDIM steps (>= 1; at most one per level of the interval).
        prompt: text prompt(s) or precomputed encoder hidden states (L, D) / (1 | B, L, D);
            ``None`` is the unconditional (empty-prompt) branch of conditional models.
        guidance_scale: classifier-free guidance weight (1 = none).
        eta: DDIM stochasticity in [0, 1]; 0 is the deterministic ODE sampler, 1 is DDPM-like.
        seed: seed of the noise added when ``eta > 0``.
        return_trajectory: also return a :class:`DDIMTrajectory` of every visited state.
        progress: show a tqdm bar over the steps.

    Returns:
        (B, *sample_shape) states at ``t_to``; with ``return_trajectory``, ``(x, trajectory)``.
    """
    steps, a, b = _span(model, t_from, t_to, steps)
    if b > a:
        raise ValueError(
            f"t_to (level {b}) must not exceed t_from (level {a}) for sampling, which runs towards "
            "clean data; use ddim_invert to go up"
        )
    _check_x(model, x, "x")
    if isinstance(eta, bool) or not isinstance(eta, numbers.Real) or not 0.0 <= float(eta) <= 1.0:
        raise ValueError(f"eta must be a number in [0, 1], got {eta!r}")
    cond = model.conditioning(prompt, batch=x.shape[0], guidance_scale=guidance_scale)
    levels = _grid(b, a, steps)[::-1]
    gen = torch.Generator().manual_seed(int(seed)) if eta > 0 else None
    states = [x] if return_trajectory else None
    for n_from, n_to in tqdm(
        list(zip(levels[:-1], levels[1:])), desc="DDIM sample", disable=not progress, leave=False
    ):
        eps = model.eps(x, n_from, cond, guidance_scale=guidance_scale)
        a_from, a_to = _alpha_bar(model, n_from), _alpha_bar(model, n_to)
        if eta > 0 and n_to > 0:
            sigma = (
                float(eta)
                * math.sqrt((1.0 - a_to) / (1.0 - a_from))
                * math.sqrt(1.0 - a_from / a_to)
            )
            x0 = (x - math.sqrt(1.0 - a_from) * eps) / math.sqrt(a_from)
            z = torch.randn(x.shape, generator=gen, dtype=torch.float32).to(x.device, x.dtype)
            x = (
                math.sqrt(a_to) * x0
                + math.sqrt(max(1.0 - a_to - sigma**2, 0.0)) * eps
                + sigma * z
            )
        else:
            x = _ddim_step(x, eps, a_from, a_to)
        if states is not None:
            states.append(x)
    if return_trajectory:
        return x, DDIMTrajectory(torch.stack(states), levels)
    return x


@torch.no_grad()
def ddim_invert(
    model: "DiffusionModel",
    x0: torch.Tensor,
    t_to: Time,
    *,
    steps: int,
    prompt: Prompt = None,
    t_from: Time = 0,
    fixed_point_iters: int = 0,
    return_trajectory: bool = False,
    progress: bool = False,
):
    """Deterministic DDIM inversion of ``x0`` (clean data, level 0 by default) up to ``t_to``.

    Each step from level ``a`` to ``b > a`` solves for the state ``x_b`` that the DDIM sampling
    step ``b -> a`` maps back to ``x_a``. The noise estimate is taken at the current point,
    ``eps(x_a, max(a, 1))`` (the usual explicit inversion); ``fixed_point_iters`` > 0 refines it by
    the fixed-point iteration ``eps <- eps(x_b, b)``, which makes inversion followed by
    :func:`ddim_sample` with the same ``steps`` an exact round trip at convergence.

    Args:
        model: a :class:`~pullback_utils.models.DiffusionModel`.
        x0: (B, *model.sample_shape) states at ``t_from`` (latents for latent models: use
            ``model.to_latent(images)``).
        t_to: target time (>= ``t_from``); the result lies exactly on that level.
        steps: number of DDIM steps (>= 1; at most one per level).
        prompt: text prompt(s) or encoder hidden states; ``None`` = unconditional branch.
        t_from: time of ``x0`` (default 0, clean data).
        fixed_point_iters: extra U-Net calls per step refining the step's noise estimate.
        return_trajectory: also return a :class:`DDIMTrajectory` of every visited state.
        progress: show a tqdm bar over the steps.

    Returns:
        (B, *sample_shape) states at ``t_to``; with ``return_trajectory``, ``(x, trajectory)``.
    """
    steps, a, b = _span(model, t_from, t_to, steps)
    if b < a:
        raise ValueError(
            f"t_to (level {b}) must not be below t_from (level {a}) for inversion, which runs "
            "towards noise; use ddim_sample to go down"
        )
    _check_x(model, x0, "x0")
    if isinstance(fixed_point_iters, bool) or not isinstance(fixed_point_iters, numbers.Integral) or (
        fixed_point_iters < 0
    ):
        raise ValueError(f"fixed_point_iters must be an int >= 0, got {fixed_point_iters!r}")
    cond = model.conditioning(prompt, batch=x0.shape[0], guidance_scale=1.0)
    levels = _grid(a, b, steps)
    x = x0
    states = [x] if return_trajectory else None
    for n_from, n_to in tqdm(
        list(zip(levels[:-1], levels[1:])), desc="DDIM invert", disable=not progress, leave=False
    ):
        a_from, a_to = _alpha_bar(model, n_from), _alpha_bar(model, n_to)
        eps = model.eps(x, max(n_from, 1), cond)
        x_next = _ddim_step(x, eps, a_from, a_to)
        for _ in range(int(fixed_point_iters)):
            eps = model.eps(x_next, n_to, cond)
            x_next = _ddim_step(x, eps, a_from, a_to)
        x = x_next
        if states is not None:
            states.append(x)
    if return_trajectory:
        return x, DDIMTrajectory(torch.stack(states), levels)
    return x
