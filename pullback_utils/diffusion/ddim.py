"""Deterministic DDIM sampling and inversion on a model's training grid, and runs through kept times.

Times and the grid follow :mod:`pullback_utils.diffusion.schedule` (int levels ``0..T``, float fractions of
``T``; ``steps`` DDIM steps between two levels; legs between kept times). Inversion ends exactly on
the requested level (the official code stops one step early).

The functions need only a small part of a model, the :class:`Denoiser` protocol (what
:class:`~pullback_utils.models.diffusion_model.DiffusionModel` provides): ``num_train_timesteps``,
``sample_shape``, ``is_latent``, ``coefficients(level)``, ``conditioning(prompt, ...)``,
``eps(x, level, cond, guidance_scale)`` and ``predict(x, level, cond, guidance_scale)``.

The model's family enters only through its coefficients ``x_t = alpha_t x_0 + sigma_t eps``: a step
from ``t`` to ``t'`` maps ``x`` to ``alpha_t' x0_hat + sigma_t' eps_hat``. For variance-preserving
models (``alpha = sqrt(alpha_bar)``, ``sigma = sqrt(1 - alpha_bar)``) this is DDIM; for flow-matching
models (``alpha = 1 - sigma``, on the scheduler's sigma grid, :mod:`pullback_utils.diffusion.flow`) it is exactly
the Euler step ``x + (sigma' - sigma) v`` of ``FlowMatchEulerDiscreteScheduler``, so sampling and
inversion run on each model's own grid with the one time convention. Sampling takes ``x0_hat`` from
``predict`` (finite at a flow model's ``sigma = 1``); inversion takes ``eps`` at the current point.

:func:`ddim_sample_to_times` and :func:`ddim_invert_to_times` are the one "DDIM run through a list of
times" of the package: trajectories of the analysis chapters, edit states at several times and
inversions of data images to several times all use them.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping, NamedTuple, Protocol, Sequence, Union

import torch
from tqdm.auto import tqdm

from pullback_utils._validate import is_int, is_real
from pullback_utils.diffusion.finite import check_state_scale, refuse_non_finite, scale_causes
from pullback_utils.diffusion.schedule import Time, check_steps, check_times, grid, legs, resolve_time

#: what a model's ``conditioning`` accepts: text prompt(s), encoder hidden states, a
#: :class:`~pullback_utils.diffusion.prompts.Conditioning` (or dict of the denoiser's keywords), DiT class ids, or None
Prompt = Union[str, Sequence[str], torch.Tensor, Mapping, int, None]

__all__ = [
    "Time",
    "Prompt",
    "Denoiser",
    "DDIMTrajectory",
    "resolve_time",
    "ddim_timesteps",
    "ddim_sample",
    "ddim_invert",
    "ddim_sample_to_times",
    "ddim_invert_to_times",
]


class Denoiser(Protocol):
    """What the DDIM functions use of a model (see :class:`~pullback_utils.models.diffusion_model.DiffusionModel`)."""

    num_train_timesteps: int
    sample_shape: tuple[int, ...]
    is_latent: bool

    def coefficients(self, t: Time) -> tuple[float, float]: ...

    def conditioning(self, prompt: Prompt, *, batch: int = 1, guidance_scale: float = 1.0) -> torch.Tensor | None: ...

    def eps(self, x_t: torch.Tensor, t: Time, cond: Prompt = None, guidance_scale: float = 1.0) -> torch.Tensor: ...

    def predict(
        self, x_t: torch.Tensor, t: Time, cond: Prompt = None, guidance_scale: float = 1.0
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


class DDIMTrajectory(NamedTuple):
    """All states of a DDIM run: ``states`` (S + 1, B, C, H, W), ``times`` the S + 1 levels."""

    states: torch.Tensor
    times: list[int]


def ddim_timesteps(model: Denoiser, t_from: Time, t_to: Time, steps: int) -> list[int]:
    """The levels a DDIM run from ``t_from`` to ``t_to`` visits, in order, both ends included.

    Descending when ``t_from > t_to`` (sampling), ascending otherwise (inversion).
    """
    steps, a, b = _span(model, t_from, t_to, steps)
    g = grid(min(a, b), max(a, b), steps)
    return g[::-1] if a > b else g


def _span(model: Denoiser, t_from: Time, t_to: Time, steps: int) -> tuple[int, int, int]:
    """Checked ``steps`` and the levels of ``t_from`` and ``t_to`` on the model's training grid."""
    steps = check_steps(steps)
    T = model.num_train_timesteps
    return steps, resolve_time(t_from, T, name="t_from"), resolve_time(t_to, T, name="t_to")


def _check_x(model: Denoiser, x: torch.Tensor, name: str) -> None:
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
    check_state_scale(x, name)
    dtype = getattr(model, "dtype", None)
    if isinstance(dtype, torch.dtype) and x.dtype != dtype:
        raise TypeError(
            f"{name} has dtype {x.dtype} but the model computes in {dtype}; pass {name}.to(model.dtype) "
            "(the samplers do not cast silently, so no precision is lost or gained unseen)"
        )


def _causes(x: torch.Tensor, name: str, prompt: Prompt, guidance_scale: float = 1.0) -> list[str]:
    """The inputs of a DDIM run named as the likely cause of a non-finite state."""
    causes = scale_causes(**{name: x})
    if abs(float(guidance_scale)) > 20.0:
        causes.append(f"guidance_scale={float(guidance_scale):g} (classifier-free guidance is used at 1..20)")
    if isinstance(prompt, torch.Tensor):
        causes += scale_causes(prompt=prompt)
    return causes


def _run_legs(
    x: torch.Tensor,
    levels: list[int],
    step: Callable[[torch.Tensor, int, int], torch.Tensor],
    *,
    name: str,
    causes: list[str],
    return_trajectory: bool,
    progress: bool,
):
    """The loop of a DDIM run: ``x <- step(x, n_from, n_to)`` over consecutive ``levels``.

    Refuses a non-finite state naming the run (``name``), the leg and the likely ``causes``; returns the
    final (B, *sample_shape) state, with ``return_trajectory`` ``(x, DDIMTrajectory)`` of every visited state.
    """
    states = [x] if return_trajectory else None
    desc = name.replace("ddim_", "DDIM ")
    for n_from, n_to in tqdm(list(zip(levels[:-1], levels[1:])), desc=desc, disable=not progress, leave=False):
        x = step(x, n_from, n_to)
        refuse_non_finite(x, f"{name} (step level {n_from} -> {n_to})", causes)
        if states is not None:
            states.append(x)
    if return_trajectory:
        return x, DDIMTrajectory(torch.stack(states), levels)
    return x


def _ddim_step(
    x: torch.Tensor, eps: torch.Tensor, c_from: tuple[float, float], c_to: tuple[float, float]
) -> torch.Tensor:
    """Deterministic DDIM move of ``x`` from coefficients ``c_from = (alpha, sigma)`` to ``c_to`` with noise ``eps``."""
    x0 = (x - c_from[1] * eps) / c_from[0]
    return c_to[0] * x0 + c_to[1] * eps


@torch.no_grad()
def ddim_sample(
    model: Denoiser,
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
        model: a :class:`~pullback_utils.models.diffusion_model.DiffusionModel`.
        x: ``(B, *model.sample_shape)`` states at ``t_from`` (latents for latent models), in the model's
            dtype (another dtype is refused with a ``TypeError``, not cast).
        t_from, t_to: times (int levels 0..T or float fractions of T; see the module doc). An int is a
            level, not a diffusers timestep: level ``n`` runs the network at timestep ``n - 1``.
        steps: number of DDIM steps (>= 1; at most one per level of the interval).
        prompt: text prompt(s) or precomputed encoder hidden states (L, D) / (1 | B, L, D);
            ``None`` is the unconditional (empty-prompt) branch of conditional models.
        guidance_scale: classifier-free guidance weight (1 = none).
        eta: DDIM stochasticity in [0, 1]; 0 is the deterministic ODE sampler, 1 is DDPM-like.
        seed: seed of the noise added when ``eta > 0``.
        return_trajectory: also return a :class:`DDIMTrajectory` of every visited state.
        progress: show a tqdm bar over the steps.

    Returns:
        ``(B, *sample_shape)`` states at ``t_to``; with ``return_trajectory``, ``(x, trajectory)``.

    Raises:
        NonFiniteError: (a ValueError) when a step produces NaN or infinite values, naming the step and
            the inputs out of scale (``x``, ``guidance_scale``, a hidden-states ``prompt``).
    """
    steps, a, b = _span(model, t_from, t_to, steps)
    if b > a:
        raise ValueError(
            f"t_to (level {b}) must not exceed t_from (level {a}) for sampling, which runs towards "
            "clean data; use ddim_invert to go up"
        )
    _check_x(model, x, "x")
    if not is_real(eta) or not 0.0 <= float(eta) <= 1.0:
        raise ValueError(f"eta must be a number in [0, 1], got {eta!r}")
    cond = model.conditioning(prompt, batch=x.shape[0], guidance_scale=guidance_scale)
    levels = grid(b, a, steps)[::-1]
    gen = torch.Generator().manual_seed(int(seed)) if eta > 0 else None

    def step(x: torch.Tensor, n_from: int, n_to: int) -> torch.Tensor:
        x0, eps = model.predict(x, n_from, cond, guidance_scale=guidance_scale)
        (a_from, s_from), (a_to, s_to) = model.coefficients(n_from), model.coefficients(n_to)
        if eta > 0 and n_to > 0:
            # DDIM's posterior noise: s = eta * sigma_to * sqrt(1 - SNR_from / SNR_to)
            snr_ratio = (a_from * s_to) ** 2 / ((s_from * a_to) ** 2)
            sigma = float(eta) * s_to * math.sqrt(max(1.0 - snr_ratio, 0.0))
            z = torch.randn(x.shape, generator=gen, dtype=torch.float32).to(x.device, x.dtype)
            return a_to * x0 + math.sqrt(max(s_to**2 - sigma**2, 0.0)) * eps + sigma * z
        return a_to * x0 + s_to * eps

    return _run_legs(
        x,
        levels,
        step,
        name="ddim_sample",
        causes=_causes(x, "x", prompt, guidance_scale),
        return_trajectory=return_trajectory,
        progress=progress,
    )


@torch.no_grad()
def ddim_invert(
    model: Denoiser,
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
        model: a :class:`~pullback_utils.models.diffusion_model.DiffusionModel`.
        x0: ``(B, *model.sample_shape)`` states at ``t_from`` (latents for latent models: use
            ``model.to_latent(images)``). Clean pixel images (``t_from = 0``) must lie in [-1, 1]
            within :data:`~pullback_utils.diffusion.images.SAMPLE_RANGE_TOL` = 0.5, which admits the package's
            own samples (they overshoot a little); the model's dtype.
        t_to: target time (>= ``t_from``); the result lies exactly on that level.
        steps: number of DDIM steps (>= 1; at most one per level).
        prompt: text prompt(s) or encoder hidden states; ``None`` = unconditional branch.
        t_from: time of ``x0`` (default 0, clean data).
        fixed_point_iters: extra U-Net calls per step refining the step's noise estimate.
        return_trajectory: also return a :class:`DDIMTrajectory` of every visited state.
        progress: show a tqdm bar over the steps.

    Returns:
        ``(B, *sample_shape)`` states at ``t_to``; with ``return_trajectory``, ``(x, trajectory)``.
    """
    steps, a, b = _span(model, t_from, t_to, steps)
    if b < a:
        raise ValueError(
            f"t_to (level {b}) must not be below t_from (level {a}) for inversion, which runs "
            "towards noise; use ddim_sample to go down"
        )
    _check_x(model, x0, "x0")
    if not is_int(fixed_point_iters) or fixed_point_iters < 0:
        raise ValueError(f"fixed_point_iters must be an int >= 0, got {fixed_point_iters!r}")
    if a == 0 and not model.is_latent and getattr(model, "checks_image_range", True):
        from pullback_utils.diffusion.images import SAMPLE_RANGE_TOL, check_image_range

        # clean pixel data: images in the model range, with the tolerance that admits the
        # package's own samples (they overshoot [-1, 1] by up to 0.34, images.SAMPLE_RANGE_TOL)
        check_image_range(x0, "x0", tol=SAMPLE_RANGE_TOL)
    cond = model.conditioning(prompt, batch=x0.shape[0], guidance_scale=1.0)
    levels = grid(a, b, steps)

    def step(x: torch.Tensor, n_from: int, n_to: int) -> torch.Tensor:
        c_from, c_to = model.coefficients(n_from), model.coefficients(n_to)
        eps = model.eps(x, max(n_from, 1), cond)
        x_next = _ddim_step(x, eps, c_from, c_to)
        for _ in range(int(fixed_point_iters)):
            eps = model.eps(x_next, n_to, cond)
            x_next = _ddim_step(x, eps, c_from, c_to)
        return x_next

    return _run_legs(
        x0,
        levels,
        step,
        name="ddim_invert",
        causes=_causes(x0, "x0", prompt),
        return_trajectory=return_trajectory,
        progress=progress,
    )


@torch.no_grad()
def ddim_sample_to_times(
    model: Denoiser,
    x_T: torch.Tensor,
    times: Sequence[Time],
    *,
    steps: int,
    prompt: Prompt = None,
    guidance_scale: float = 1.0,
    final: bool = False,
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One deterministic DDIM run from ``x_T`` (at the top, level ``T``) keeping the state at every time.

    Args:
        model: a :class:`Denoiser`.
        x_T: ``(B, *sample_shape)`` states at level ``T`` (e.g. ``model.noise(B, seed)``).
        times: times to keep (any order, each > 0; int levels or fractions of ``T``).
        steps: DDIM steps over the whole ``[0, T]``; each leg between consecutive kept times gets its
            proportional share, at least one step (:func:`pullback_utils.diffusion.schedule.legs`).
        prompt, guidance_scale: conditioning of the sampler (``None`` = unconditional branch).
        final: also run on to ``t = 0`` and return the clean samples.
        progress: tqdm bar over the legs.

    Returns:
        ``(states, x0)``: states ``(len(times), B, *sample_shape)`` in the order of ``times``, and the
        clean samples ``(B, *sample_shape)`` (``None`` unless ``final``).
    """
    T = model.num_train_timesteps
    levels = check_times(times, T)
    total = check_steps(steps)
    stops = levels + ([0] if final else [])
    kept: dict[int, torch.Tensor] = {T: x_T}
    x = x_T
    for hi, lo, n in tqdm(legs(T, stops, total, T), desc="DDIM", disable=not progress, leave=False):
        x = ddim_sample(model, x, hi, lo, steps=n, prompt=prompt, guidance_scale=guidance_scale)
        kept[lo] = x
    return torch.stack([kept[lvl] for lvl in levels]), (kept[0] if final else None)


@torch.no_grad()
def ddim_invert_to_times(
    model: Denoiser,
    x0: torch.Tensor,
    times: Sequence[Time],
    *,
    steps: int,
    prompt: Prompt = None,
    fixed_point_iters: int = 0,
    progress: bool = False,
) -> torch.Tensor:
    """One deterministic DDIM inversion of clean ``x0`` ``(B, *sample_shape)`` up through every time of ``times``.

    ``steps`` counts DDIM steps over the whole ``[0, T]`` (proportional legs, at least one each);
    ``fixed_point_iters`` as in :func:`ddim_invert`. Returns ``(len(times), B, *sample_shape)`` in the
    order of ``times``.
    """
    T = model.num_train_timesteps
    levels = check_times(times, T)
    total = check_steps(steps)
    kept: dict[int, torch.Tensor] = {}
    x = x0
    for lo, hi, n in tqdm(legs(0, levels, total, T), desc="DDIM invert", disable=not progress, leave=False):
        x = ddim_invert(model, x, hi, steps=n, t_from=lo, prompt=prompt, fixed_point_iters=fixed_point_iters)
        kept[hi] = x
    return torch.stack([kept[lvl] for lvl in levels])
