"""One edit, as in Park et al. (2023, Figure 2): invert -> to t -> basis -> guidance -> finish.

:func:`edit_image` runs the steps in order, each a named function of this module or of
:mod:`~pullback_utils.editing.guidance`:

1. :func:`_start`: the image as x_0 (latents for latent models), or a noise draw x_T;
2. :func:`to_edit_time`: x_t at the edit time t;
3. :func:`_direction`: the local basis at (x_t, t) under the basis prompt and ``v = sign * v_index``
   (or a given direction);
4. :func:`~pullback_utils.editing.guidance.xspace_guidance` along ``v``, N steps;
5. :func:`_finish_frames` (:func:`finish`): DDIM from t to clean data, for the unedited x_t and for the
   guidance iterates shown as frames.

Settings come from an :class:`~pullback_utils.editing.config.EditConfig` (default: the model's,
``EditConfig.for_model``), with keyword overrides; all are checked before any network evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from pullback_utils._validate import check_int, is_int
from pullback_utils.diffusion.ddim import Prompt, Time, ddim_invert, ddim_sample
from pullback_utils.diffusion.schedule import leg_steps
from pullback_utils.editing.checks import (
    check_edit_time,
    check_eta_below,
    check_index,
    check_prompt,
    check_sign,
    check_start,
    direction_batch,
)
from pullback_utils.editing.config import EditConfig, guidance_conditioning, resolve_config
from pullback_utils.editing.guidance import xspace_guidance

if TYPE_CHECKING:  # pragma: no cover
    from pullback_utils.engine.solvers import LocalBasis
    from pullback_utils.models.diffusion_model import DiffusionModel

__all__ = ["to_edit_time", "finish", "EditResult", "edit_image"]


# --------------------------------------------------------------------------------------------------
# getting to t_edit and back
# --------------------------------------------------------------------------------------------------
def to_edit_time(
    model: "DiffusionModel",
    x: torch.Tensor,
    t_edit: Time,
    *,
    from_noise: bool,
    prompt: Prompt = None,
    inversion_steps: int = 20,
    sampling_steps: int = 20,
    progress: bool = False,
) -> torch.Tensor:
    """x_t at the edit time: DDIM-generate x_T = ``x`` down to ``t_edit`` (``from_noise``), or
    DDIM-invert clean ``x`` (x_0, latents for latent models) up to ``t_edit``.

    Inverting to x_T and regenerating down to ``t_edit`` on the same grid is the identity up to the
    inversion error, so an image is inverted straight to ``t_edit`` (fewer network calls).
    Step counts are for the whole [0, T]; the run gets a proportional share (at least 1).
    """
    n = check_edit_time(model, t_edit)
    T = model.num_train_timesteps
    if from_noise:
        steps = leg_steps(check_int(sampling_steps, "sampling_steps", 1), T, n, T)
        return ddim_sample(model, x, T, n, steps=steps, prompt=prompt, progress=progress)
    steps = leg_steps(check_int(inversion_steps, "inversion_steps", 1), n, 0, T)
    return ddim_invert(model, x, n, steps=steps, prompt=prompt, progress=progress)


@torch.no_grad()
def finish(
    model: "DiffusionModel",
    x_t: torch.Tensor,
    t_edit: Time,
    *,
    sampling_steps: int = 20,
    prompt: Prompt = None,
    eta_below: float | None = None,
    seed: int = 0,
    progress: bool = False,
) -> torch.Tensor:
    """DDIM from ``t_edit`` to clean data: ``(B, *sample_shape)`` x_0 (latents for latent models).

    ``sampling_steps`` is the step count over the whole [0, T] (proportional share used).
    ``eta_below`` (fraction of T): below that time the steps are stochastic (eta = 1), with the same
    noise for every sample of the batch (seeded by ``seed``), so edits of one image stay comparable.
    """
    n = check_edit_time(model, t_edit)
    total = check_int(sampling_steps, "sampling_steps", 1)
    T = model.num_train_timesteps
    f = check_eta_below(eta_below)
    if f is None:
        return ddim_sample(model, x_t, n, 0, steps=leg_steps(total, n, 0, T), prompt=prompt, progress=progress)
    m = min(n, model.level(f, name="eta_below"))
    x = x_t
    if n > m:
        x = ddim_sample(model, x, n, m, steps=leg_steps(total, n, m, T), prompt=prompt, progress=progress)
    if m == 0:
        return x
    steps = leg_steps(total, m, 0, T)
    outs = [
        ddim_sample(model, x[i : i + 1], m, 0, steps=steps, prompt=prompt, eta=1.0, seed=seed)
        for i in range(x.shape[0])
    ]
    return torch.cat(outs)


# --------------------------------------------------------------------------------------------------
# the result
# --------------------------------------------------------------------------------------------------
@dataclass
class EditResult:
    """What :func:`edit_image` returns.

    Attributes:
        frames: ``(F, *image_shape)`` images in model range [-1, 1]: frame ``i`` is guidance iterate
            ``steps[i]`` finished to t = 0, so ``frames[0]`` is the unedited result when
            ``steps[0] == 0`` (``frames`` >= 2) and ``frames[-1]`` is the full edit.
        x0: ``(F, *sample_shape)`` the frames before decoding (latents for latent models).
        steps: the guidance iterates ``j`` shown, ``0 .. N``.
        x_t: ``(1, *sample_shape)`` the state at the edit time before guidance.
        iterates: ``(N + 1, 1, *sample_shape)`` all guidance iterates.
        direction: ``(*sample_shape)`` the unit direction that was followed (``sign * v_index``).
        basis: the local basis at (x_t, t_edit) (None when a direction was given).
        t_level: the edit time as a level 1..T.
        original: ``(1, *image_shape)`` the unedited result (x_t finished without guidance), whatever
            the number of frames.
        x0_original: ``(1, *sample_shape)`` ``original`` before decoding.
        settings: the resolved settings (gamma, n_steps, ...; ``config`` the full
            :meth:`EditConfig.to_dict`).
    """

    frames: torch.Tensor
    x0: torch.Tensor
    steps: list[int]
    x_t: torch.Tensor
    iterates: torch.Tensor
    direction: torch.Tensor
    basis: "LocalBasis | None"
    t_level: int
    original: torch.Tensor
    x0_original: torch.Tensor
    settings: dict[str, Any]

    @property
    def edited(self) -> torch.Tensor:
        """``(1, *image_shape)`` the full edit (last frame)."""
        return self.frames[-1:]


# --------------------------------------------------------------------------------------------------
# the steps of one edit
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Plan:
    """The checked settings of one :func:`edit_image` call."""

    config: EditConfig
    t_edit: Time
    level: int
    index: int | None
    sign: int
    n_steps: int
    sampling_steps: int
    prompt: Prompt
    basis_prompt: Prompt  # as given (None: the same as prompt)
    basis_cond: Prompt  # the prompt of the basis
    guidance_prompt: Prompt  # the prompt of the guidance's noise predictions
    frames: int
    seed: int


def _plan(
    model: "DiffusionModel",
    image_or_noise: Any,
    is_noise: bool,
    config: EditConfig | None,
    overrides: dict[str, Any],
    *,
    t_edit: Time | None,
    index: Any,
    sign: Any,
    prompt: Prompt,
    basis_prompt: Prompt,
    direction: torch.Tensor | None,
    frames: Any,
    seed: Any,
) -> _Plan:
    """Check every argument of :func:`edit_image` (no network evaluation but prompt encoding)."""
    cfg = resolve_config(model, config, overrides)
    t_edit = cfg.t_edits[len(cfg.t_edits) // 2] if t_edit is None else t_edit
    level = check_edit_time(model, t_edit)
    check_prompt(model, prompt, "prompt")
    check_prompt(model, basis_prompt, "basis_prompt")
    sign = check_sign(sign)
    if direction is None:
        index = check_index(index, cfg.k)
        dim = int(np.prod(model.sample_shape))
        if cfg.k > dim:
            raise ValueError(f"k={cfg.k} exceeds the dimension of x_t ({dim})")
    else:
        index = None
    if overrides.get("n_steps") is not None:
        n_steps = cfg.n_steps
    else:
        n_steps = cfg.n_steps_prompt if basis_prompt is not None else cfg.n_steps
    if overrides.get("sampling_steps") is not None or image_or_noise is None or is_noise:
        sampling_steps = cfg.sampling_steps
    else:  # an image: finish on the inversion's grid, so that the unedited result reconstructs it
        sampling_steps = cfg.inversion_steps
    frames = check_int(frames, "frames", 1)
    seed = check_int(seed, "seed", 0)
    if model.is_conditional:
        model.conditioning(prompt)  # encodes (and so checks) the prompts before heavy compute
        if basis_prompt is not None:
            model.conditioning(basis_prompt)
    bp = prompt if basis_prompt is None else basis_prompt
    return _Plan(
        config=cfg,
        t_edit=t_edit,
        level=level,
        index=index,
        sign=sign,
        n_steps=n_steps,
        sampling_steps=sampling_steps,
        prompt=prompt,
        basis_prompt=basis_prompt,
        basis_cond=bp,
        guidance_prompt=guidance_conditioning(cfg.guidance_prompt, prompt, basis_prompt),
        frames=frames,
        seed=seed,
    )


def _start(model: "DiffusionModel", start: Any, is_noise: bool, seed: int) -> tuple[torch.Tensor, bool]:
    """(x, from_noise): ``(1, *sample_shape)`` clean x_0 of an image (latents for latent models) or x_T;
    ``start`` as returned by :func:`~pullback_utils.editing.checks.check_start`."""
    if start is None:
        return model.noise(1, seed=seed), True
    if is_noise:
        return start.to(model.device, model.dtype), True
    if isinstance(start, torch.Tensor):
        img = start.to(model.device, model.dtype)
    else:
        from pullback_utils.diffusion.images import load_image

        img = load_image(start, model=model)
    return model.to_latent(img), False


def _check_direction(model: "DiffusionModel", direction: torch.Tensor | None) -> torch.Tensor | None:
    """A given direction as one unit vector ``(1, *sample_shape)``: it is normalised, as
    :attr:`EditResult.direction` documents a unit vector and the probe ``x + s v`` of guidance is
    sized for one; a zero direction is refused."""
    if direction is None:
        return None
    d = direction_batch(model, direction)
    if d.shape[0] != 1:
        raise ValueError("direction must be one vector")
    norm = float(d.double().norm())
    if not norm > 0.0:
        raise ValueError("direction is the zero vector; it has no direction to follow")
    return (d.double() / norm).to(d.dtype)


#: keys of ``basis_kwargs`` that :func:`edit_image` sets itself, and the argument that sets each
_BASIS_RESERVED = {"x_t": "the edit state", "t": "t_edit", "k": "k (an EditConfig field)", "prompt": "basis_prompt"}


def _check_basis_kwargs(model: "DiffusionModel", basis_kwargs: Any) -> dict[str, Any]:
    """``basis_kwargs`` checked against :meth:`DiffusionModel.local_basis` (``layer``, ``cache_dir``) and
    :func:`~pullback_utils.engine.solvers.jacobian_svd` (names and values) before any network evaluation."""
    import os

    from pullback_utils.engine.operators import JVP_MODES
    from pullback_utils.engine.solvers import SOLVER_DEFAULTS, check_solver_args
    from pullback_utils.features.basis import SOLVER_OPTIONS
    from pullback_utils.features.feature_maps import layer_names

    if basis_kwargs is None:
        return {}
    if not isinstance(basis_kwargs, dict) or not all(isinstance(k, str) for k in basis_kwargs):
        raise TypeError(f"basis_kwargs must be a dict of keyword arguments, got {type(basis_kwargs).__name__}")
    reserved = sorted(set(basis_kwargs) & set(_BASIS_RESERVED))
    if reserved:
        raise ValueError(
            f"basis_kwargs sets {reserved}, which edit_image sets itself; use "
            + ", ".join(_BASIS_RESERVED[r] for r in reserved)
            + " instead"
        )
    valid = ("layer", "cache_dir", *SOLVER_OPTIONS)
    unknown = sorted(set(basis_kwargs) - set(valid))
    if unknown:
        raise TypeError(
            f"basis_kwargs has unknown option(s) {unknown}; valid options (of local_basis and "
            f"jacobian_svd): {sorted(valid)}"
        )
    kw = dict(basis_kwargs)
    args = {**SOLVER_DEFAULTS, **{k: v for k, v in kw.items() if k in SOLVER_DEFAULTS}}
    try:
        check_solver_args(args["method"], args["tol"], args["max_iters"], args["oversample"], args["seed"])
    except (TypeError, ValueError) as e:
        raise type(e)(f"basis_kwargs: {e}") from None
    layer = kw.get("layer")
    if layer is not None and (not isinstance(layer, str) or layer not in layer_names(model.unet, submodules=True)):
        raise ValueError(
            f"basis_kwargs: layer={layer!r} is not a layer of the denoiser; valid blocks: "
            f"{layer_names(model.unet)} (or any submodule path)"
        )
    cache_dir = kw.get("cache_dir")
    if cache_dir is not None and not isinstance(cache_dir, (str, os.PathLike)):
        raise TypeError(f"basis_kwargs: cache_dir must be a folder path or None, got {type(cache_dir).__name__}")
    if kw.get("jvp_mode", "reverse") not in JVP_MODES:
        raise ValueError(f"basis_kwargs: jvp_mode must be one of {list(JVP_MODES)}, got {kw['jvp_mode']!r}")
    if kw.get("batching", "auto") not in ("auto", "batch", "vmap"):
        raise ValueError(f"basis_kwargs: batching must be 'auto', 'batch' or 'vmap', got {kw['batching']!r}")
    cs = kw.get("chunk_size")
    if cs is not None and (not is_int(cs) or cs < 1):
        raise ValueError(f"basis_kwargs: chunk_size must be a positive integer or None, got {cs!r}")
    cb = kw.get("callback")
    if cb is not None and not callable(cb):
        raise TypeError(f"basis_kwargs: callback must be callable or None, got {type(cb).__name__}")
    return kw


def _direction(
    model: "DiffusionModel",
    x_t: torch.Tensor,
    plan: _Plan,
    direction: torch.Tensor | None,
    basis_kwargs: dict[str, Any] | None,
) -> tuple["LocalBasis | None", torch.Tensor]:
    """(basis, v): the local basis at (x_t, t) under the basis prompt and ``v = sign * v_index``
    ``(1, *sample_shape)``; with a given ``direction``, no basis and ``v = sign * direction``."""
    basis = None
    if direction is None:
        kw = {"seed": plan.seed, **(basis_kwargs or {})}
        basis = model.local_basis(x_t, plan.level, plan.config.k, prompt=plan.basis_cond, **kw)
        direction = basis.v[plan.index].reshape(1, *model.sample_shape)
    return basis, plan.sign * direction.to(model.device, model.dtype)


def _frame_steps(n_steps: int, frames: int) -> list[int]:
    if frames == 1:
        return [n_steps]
    return sorted({int(round(i * n_steps / (frames - 1))) for i in range(frames)})


def _finish_frames(
    model: "DiffusionModel", x_t: torch.Tensor, iterates: torch.Tensor, steps: list[int], plan: _Plan, progress: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x0_original (1, ...), x0 (F, ...)): x_t finished without guidance, and the frames' iterates.

    The unedited result is finished on its own, so it is the same tensor whatever the edit settings;
    the edited frames go through in one batch.
    """
    kw = dict(
        sampling_steps=plan.sampling_steps,
        prompt=plan.prompt,
        eta_below=plan.config.eta_below,
        seed=plan.seed,
        progress=progress,
    )
    x0_ref = finish(model, x_t, plan.level, **kw)
    if plan.config.gamma == 0.0 or plan.n_steps == 0 or steps == [0]:
        return x0_ref, x0_ref.expand(len(steps), *x0_ref.shape[1:]).clone()
    rest = [j for j in steps if j > 0]
    edited = finish(model, iterates[rest, 0], plan.level, **kw)
    return x0_ref, (torch.cat([x0_ref, edited]) if steps[0] == 0 else edited)


def _settings(plan: _Plan, from_noise: bool) -> dict[str, Any]:
    c = plan.config
    text = lambda p: p if isinstance(p, str) else None  # noqa: E731
    return dict(
        t_edit=plan.t_edit,
        index=plan.index,
        sign=plan.sign,
        gamma=c.gamma,
        n_steps=plan.n_steps,
        step_size=c.step_size,
        k=c.k,
        prompt=text(plan.prompt),
        basis_prompt=text(plan.basis_prompt),
        guidance_prompt=c.guidance_prompt,
        inversion_steps=c.inversion_steps,
        sampling_steps=plan.sampling_steps,
        eta_below=c.eta_below,
        seed=plan.seed,
        from_noise=from_noise,
        config=c.to_dict(),
    )


# --------------------------------------------------------------------------------------------------
# one-call editing
# --------------------------------------------------------------------------------------------------
def edit_image(
    model: "DiffusionModel",
    image_or_noise: Any = None,
    *,
    config: EditConfig | None = None,
    t_edit: Time | None = None,
    index: int = 0,
    sign: int = 1,
    prompt: str | torch.Tensor | None = None,
    basis_prompt: str | torch.Tensor | None = None,
    direction: torch.Tensor | None = None,
    frames: int = 5,
    seed: int = 0,
    is_noise: bool = False,
    basis_kwargs: dict[str, Any] | None = None,
    progress: bool = False,
    **overrides: Any,
) -> EditResult:
    """Edit one image (or one noise draw) along direction ``sign * v_index`` of its local basis.

    Args:
        model: a :class:`~pullback_utils.models.diffusion_model.DiffusionModel`.
        image_or_noise: an image to DDIM-invert: a ``(1, *image_shape)`` tensor in the model range [-1, 1]
            (tolerance 0.5, so the package's own samples pass), or pixel data read by
            :func:`pullback_utils.diffusion.images.load_image` (a file path, PIL image, uint8 / uint16 array;
            float numpy arrays are refused as ambiguous, see :mod:`pullback_utils.diffusion.images`); with
            ``is_noise=True`` a ``(1, *sample_shape)`` x_T; ``None`` draws x_T from ``seed``.
        config: the settings (default ``EditConfig.for_model(model)``).
        t_edit: edit time in (0, T] (int level or fraction); default the middle of ``config.t_edits``.
        index, sign: which basis direction (0-based, < k) and which way (+1 / -1).
        prompt: generation prompt (inversion, sampling, and guidance unless
            ``guidance_prompt="edit"``); None = empty prompt / unconditional.
        basis_prompt: edit prompt, under which the basis is computed; None = ``prompt``.
        direction: a ready direction ``(*sample_shape)`` to follow instead of the basis (e.g. one from
            :func:`~pullback_utils.editing.guidance.parallel_transport`), normalised to unit length
            (a zero vector is refused); ``index`` and ``k`` are then ignored.
        frames: number of frames, iterates ``j = 0, N/(F-1), ..., N``.
        seed: seed of the noise (``image_or_noise=None``), the basis solver and stochastic steps.
        is_noise: ``image_or_noise`` is x_T, not an image.
        basis_kwargs: extra options of :meth:`DiffusionModel.local_basis` (tol, method, cache_dir,
            layer, ...), checked (names and values) before any network evaluation.
        progress: tqdm bars.
        **overrides: :class:`EditConfig` fields (gamma, n_steps, step_size, k, inversion_steps,
            sampling_steps, eta_below, guidance_prompt, ...). ``None`` keeps the config's value
            (``eta_below=None``: deterministic; ``"default"``: the config's). N is ``n_steps_prompt``
            with a basis prompt and ``n_steps`` otherwise; an ``n_steps`` override sets it in both
            cases. For an image, the finish uses ``inversion_steps`` (the same grid both ways makes
            the unedited result a close reconstruction of the input) unless ``sampling_steps`` is
            overridden.

    Returns:
        :class:`EditResult`. With ``gamma == 0`` or ``n_steps == 0`` every frame equals
        ``original`` exactly (the unedited result).

    Raises:
        ValueError: before any network evaluation, for an unknown index or ``index >= k``, a sign
            other than ±1, a prompt on an unconditional model, ``t_edit`` outside (0, T], an image
            outside [-1, 1], a zero direction, invalid ``basis_kwargs`` values, or invalid settings
            (:class:`EditConfig`).
        TypeError: an override that is not an :class:`EditConfig` field, or an unknown
            ``basis_kwargs`` option.
        NonFiniteError: (a ValueError) when a step produces NaN or infinite values (e.g. ``gamma``
            far too large), naming the step and the inputs out of scale.
    """
    start = check_start(model, image_or_noise, is_noise)
    direction = _check_direction(model, direction)
    basis_kwargs = _check_basis_kwargs(model, basis_kwargs) if direction is None else basis_kwargs
    plan = _plan(
        model,
        image_or_noise,
        is_noise,
        config,
        overrides,
        t_edit=t_edit,
        index=index,
        sign=sign,
        prompt=prompt,
        basis_prompt=basis_prompt,
        direction=direction,
        frames=frames,
        seed=seed,
    )
    cfg = plan.config
    # 1. the image (inverted) or a noise draw, and 2. its state at the edit time
    x, from_noise = _start(model, start, is_noise, plan.seed)
    x_t = to_edit_time(
        model,
        x,
        plan.level,
        from_noise=from_noise,
        prompt=plan.prompt,
        inversion_steps=cfg.inversion_steps,
        sampling_steps=plan.sampling_steps,
        progress=progress,
    )
    # 3. the local basis and the direction v
    basis, v = _direction(model, x_t, plan, direction, basis_kwargs)
    # 4. x-space guidance along v
    iterates = xspace_guidance(
        model,
        x_t,
        plan.level,
        v,
        gamma=cfg.gamma,
        n_steps=plan.n_steps,
        step_size=cfg.step_size,
        prompt=plan.guidance_prompt,
        progress=progress,
    )
    # 5. finish to t = 0: the unedited result and the frames
    steps = _frame_steps(plan.n_steps, plan.frames)
    x0_ref, x0 = _finish_frames(model, x_t, iterates, steps, plan, progress)
    return EditResult(
        frames=model.to_image(x0),
        x0=x0,
        steps=steps,
        x_t=x_t,
        iterates=iterates,
        direction=v[0],
        basis=basis,
        t_level=plan.level,
        original=model.to_image(x0_ref),
        x0_original=x0_ref,
        settings=_settings(plan, from_noise),
    )
