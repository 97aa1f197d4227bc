"""Image editing along the local latent basis: x-space guidance, naive traversal, parallel transport.

The recipe of Park et al. (2023, Figure 2), one call with :func:`edit_image`:

1. bring the image (or a noise draw) to the edit time ``t``: DDIM-invert an image, or DDIM-generate
   from x_T;
2. compute the local latent basis at ``(x_t, t)`` (:meth:`DiffusionModel.local_basis`), optionally
   under a prompt (the Jacobian of ``f_t(. ; c_edit)``);
3. *x-space guidance* along ``±v_i`` (:func:`xspace_guidance`), ``N`` times::

       x <- x + gamma * [eps(x + s * v, t, c) - eps(x, t, c)]

4. finish with DDIM to ``t = 0`` (optionally stochastic, ``eta = 1``, below a chosen time, as the
   official unconditional setup does), and decode.

Why guidance and not ``x_t + alpha * v`` (:func:`naive_traverse`)? ``v`` is unit length in a space
where ``x_t`` has norm about ``sqrt(D)``, and the step ``eps(x + s v) - eps(x) ~ s J_eps v`` lets the
network's own response decide how to move ``x_t``; moving by ``alpha * v`` alone needs a large
``alpha`` for a visible change, which pushes ``x_t`` off the states the sampler expects. The
notebook ``notebooks/editing.ipynb`` measures both at a matched size of change.

Times follow :mod:`pullback_utils.ddim` (int level ``0..T`` or a float fraction of ``T``); the edit
time must lie in ``(0, T]``. Conditioning: ``prompt`` is the generation prompt (inversion, guidance
noise predictions and sampling); ``basis_prompt`` is the prompt under which the basis is computed
(``None``: the same as ``prompt``). Unconditional models refuse both.

Default settings (gamma, N, edit times, ...) per model are in :data:`EDIT_DEFAULTS`, read through
:func:`edit_defaults`.

Metrics for comparing edits: :func:`change_size` (RMS change of the image), :func:`change_frequency`
(energy-weighted mean radial frequency of the change: low = global, high = local/detail) and
:func:`distance_from_data` (the model's own denoising error on the result: small for images the model
finds typical). :func:`match_naive` finds the naive step with the same size of change as an edit.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from pullback_utils.ddim import Prompt, Time, ddim_invert, ddim_sample, ddim_sample_to_times
from pullback_utils.schedule import leg_steps
from pullback_utils.geometry import mean_frequency

if TYPE_CHECKING:  # pragma: no cover
    from pullback_utils.models import DiffusionModel
    from pullback_utils.solvers import LocalBasis

__all__ = [
    "EDIT_DEFAULTS",
    "EditResult",
    "edit_defaults",
    "xspace_guidance",
    "naive_traverse",
    "edit_image",
    "to_edit_time",
    "finish",
    "parallel_transport",
    "change_size",
    "change_frequency",
    "distance_from_data",
    "match_naive",
    "states_at_times",
    "edit_along",
    "tangent_alignment",
    "Sweep",
    "direction_sweep",
    "held_out_images",
]

# --------------------------------------------------------------------------------------------------
# defaults, in one place
# --------------------------------------------------------------------------------------------------
#: Edit settings per model. Keys of an entry: ``gamma`` (guidance step), ``n_steps`` (N without a
#: prompt), ``n_steps_prompt`` (N with a basis prompt), ``step_size`` (s), ``t_edits`` (edit times,
#: fractions of T, early to late), ``k`` (basis size), ``inversion_steps``/``sampling_steps`` (DDIM
#: steps over the whole [0, T]; runs over part of it get a proportional share), ``eta_below``
#: (fraction of T below which the final steps are stochastic with eta = 1; None = deterministic) and
#: ``source``. The zoo models invert with 50 steps: with 20, DDIM inversion of a held-out ``shapes``
#: image to t = 0.6 T reconstructed with RMS error 0.62 (50: 0.04). Official values (Park et al. 2023, their code) for CelebA-HQ and Stable Diffusion;
#: the bundled models' values were tuned on them (gamma * N large enough for a visible edit at
#: t = 0.6 T, small enough that the result stays on the data; see notebooks/editing.ipynb).
EDIT_DEFAULTS: dict[str, dict[str, Any]] = {
    "zoo-pixel": {
        "gamma": 1.0, "n_steps": 8, "n_steps_prompt": 8, "step_size": 1.0,
        "t_edits": (0.8, 0.6, 0.4), "k": 3, "inversion_steps": 50, "sampling_steps": 20,
        "eta_below": None, "source": "tuned on the bundled 32x32 models (notebooks/editing.ipynb)",
    },
    "zoo-text": {
        "gamma": 1.0, "n_steps": 8, "n_steps_prompt": 16, "step_size": 1.0,
        "t_edits": (0.8, 0.6, 0.4), "k": 3, "inversion_steps": 50, "sampling_steps": 20,
        "eta_below": None, "source": "tuned on the bundled shapes-text model (notebooks/editing.ipynb)",
    },
    "celebahq": {
        "gamma": 0.1, "n_steps": 16, "n_steps_prompt": 16, "step_size": 1.0,
        "t_edits": (1.0, 0.8, 0.6), "k": 2, "inversion_steps": 100, "sampling_steps": 100,
        "eta_below": 0.2, "source": "Park et al. 2023 (official code): google/ddpm-ema-celebahq-256",
    },
    "stable-diffusion": {
        "gamma": 1.0, "n_steps": 16, "n_steps_prompt": 64, "step_size": 1.0,
        "t_edits": (0.7, 0.6), "k": 2, "inversion_steps": 100, "sampling_steps": 100,
        "eta_below": None, "source": "Park et al. 2023 (official code): stable-diffusion-2-1-base",
    },
}
EDIT_DEFAULTS["disks"] = EDIT_DEFAULTS["zoo-pixel"]
EDIT_DEFAULTS["shapes"] = EDIT_DEFAULTS["zoo-pixel"]
EDIT_DEFAULTS["scenes"] = EDIT_DEFAULTS["zoo-pixel"]
EDIT_DEFAULTS["textures"] = EDIT_DEFAULTS["zoo-pixel"]
EDIT_DEFAULTS["shapes-text"] = EDIT_DEFAULTS["zoo-text"]


def edit_defaults(model: "DiffusionModel | str") -> dict[str, Any]:
    """A copy of the :data:`EDIT_DEFAULTS` entry for ``model`` (a DiffusionModel or a name).

    Lookup: the exact name (last path component too); names containing ``celebahq``/``ddpm-ema``
    or ``stable-diffusion``; then by kind: latent text models -> ``"stable-diffusion"``, other text
    models -> ``"zoo-text"``, CelebA-HQ-sized (256 px) pixel models -> ``"celebahq"``, everything else
    -> ``"zoo-pixel"``.
    """
    name = model if isinstance(model, str) else str(getattr(model, "name", ""))
    base = name.rstrip("/").split("/")[-1]
    for key in (name, base):
        if key in EDIT_DEFAULTS:
            return dict(EDIT_DEFAULTS[key])
    low = name.lower()
    if "celebahq" in low or "ddpm-ema" in low:
        return dict(EDIT_DEFAULTS["celebahq"])
    if "stable-diffusion" in low:
        return dict(EDIT_DEFAULTS["stable-diffusion"])
    if isinstance(model, str):
        return dict(EDIT_DEFAULTS["zoo-pixel"])
    if model.is_conditional:
        return dict(EDIT_DEFAULTS["stable-diffusion" if model.is_latent else "zoo-text"])
    if model.sample_shape[-1] >= 256:
        return dict(EDIT_DEFAULTS["celebahq"])
    return dict(EDIT_DEFAULTS["zoo-pixel"])


# --------------------------------------------------------------------------------------------------
# input checks (cheap; all before any network evaluation)
# --------------------------------------------------------------------------------------------------
def _check_real(value: Any, name: str, *, positive: bool = False, nonneg: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    v = float(value)
    if positive and v <= 0:
        raise ValueError(f"{name} must be > 0, got {v}")
    if nonneg and v < 0:
        raise ValueError(f"{name} must be >= 0, got {v}")
    return v


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _check_edit_time(model: "DiffusionModel", t: Time, name: str = "t_edit") -> int:
    """Level of ``t`` after checking it lies in (0, T]."""
    T = model.num_train_timesteps
    try:
        n = model.level(t, name=name)
    except (TypeError, ValueError) as e:
        raise type(e)(f"{e}; edits need {name} in (0, T] = (0, {T}] (int level) or (0, 1] (fraction)") from None
    if n < 1:
        raise ValueError(
            f"{name}={t!r} is clean data (level 0); edits need {name} in (0, T]: an int level 1..{T} "
            "or a fraction in (0, 1]"
        )
    return n


def _check_index(index: Any, k: int, name: str = "index") -> int:
    if isinstance(index, bool) or not isinstance(index, numbers.Integral):
        raise ValueError(f"{name} must be an int basis index in 0..{k - 1} (k = {k}), got {index!r}")
    i = int(index)
    if not 0 <= i < k:
        raise ValueError(
            f"{name}={i} is not a direction of a basis of k = {k} vectors; valid indices are 0..{k - 1}"
            + (" (raise k to use it)" if i >= k else "")
        )
    return i


def _check_sign(sign: Any) -> int:
    if isinstance(sign, bool) or sign not in (1, -1):
        raise ValueError(f"sign must be +1 or -1, got {sign!r}")
    return int(sign)


def _check_prompt(model: "DiffusionModel", prompt: Prompt, name: str) -> None:
    if prompt is not None and not model.is_conditional:
        raise ValueError(
            f"{name}={prompt!r} was given, but model {model.name!r} is unconditional (it takes no "
            f"text); pass {name}=None"
        )
    if prompt is not None and not isinstance(prompt, (str, torch.Tensor)):
        raise ValueError(f"{name} must be one string or encoder hidden states, got {type(prompt).__name__}")


def _direction_batch(model: "DiffusionModel", direction: torch.Tensor, name: str = "direction") -> torch.Tensor:
    if not isinstance(direction, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(direction).__name__}")
    shape = tuple(model.sample_shape)
    d = direction.unsqueeze(0) if direction.dim() == len(shape) else direction
    if d.dim() != len(shape) + 1 or tuple(d.shape[1:]) != shape:
        raise ValueError(
            f"{name} must have shape {shape}, (1, {', '.join(map(str, shape))}) or (B, ...) of x_t's "
            f"shape, got {tuple(direction.shape)}"
        )
    if not torch.isfinite(d).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return d.to(model.device, model.dtype)


def _steps_between(total: int, model: "DiffusionModel", hi: int, lo: int) -> int:
    """Proportional share of ``total`` steps over [0, T] for a run from level ``hi`` to ``lo``."""
    return leg_steps(total, hi, lo, model.num_train_timesteps)


# --------------------------------------------------------------------------------------------------
# the two ways of moving x_t
# --------------------------------------------------------------------------------------------------
@torch.no_grad()
def xspace_guidance(
    model: "DiffusionModel",
    x_t: torch.Tensor,
    t: Time,
    direction: torch.Tensor,
    *,
    gamma: float,
    n_steps: int,
    step_size: float = 1.0,
    prompt: Prompt = None,
    progress: bool = False,
) -> torch.Tensor:
    """x-space guidance: the iterates ``x^(0..N)`` of ``x <- x + gamma [eps(x + s v, t, c) - eps(x, t, c)]``.

    Args:
        model: a :class:`~pullback_utils.models.DiffusionModel`.
        x_t: (B, *sample_shape) or (1, ...) states at time ``t`` (broadcast against ``direction``).
        t: edit time in (0, T] (int level or fraction of T).
        direction: ``v``: (*sample_shape), (1, ...) or (B, ...), e.g. ``basis.v[i]`` or ``-basis.v[i]``;
            several directions guide copies of one ``x_t`` in one batch.
        gamma: step ``gamma`` (finite; 0 leaves x unchanged).
        n_steps: ``N`` >= 0.
        step_size: ``s`` > 0, the probe length along ``v`` (official 1 for unit ``v``).
        prompt: conditioning ``c`` of the noise predictions (conditional models; None = empty prompt).
        progress: tqdm bar over the N steps.

    Returns:
        (N + 1, B, *sample_shape): ``x^(0) = x_t`` (broadcast), ..., ``x^(N)``.
        With ``gamma == 0`` or ``N == 0`` no network is evaluated and every iterate equals ``x_t``.
    """
    _check_edit_time(model, t, "t")
    gamma = _check_real(gamma, "gamma")
    n_steps = _check_int(n_steps, "n_steps", 0)
    s = _check_real(step_size, "step_size", positive=True)
    _check_prompt(model, prompt, "prompt")
    d = _direction_batch(model, direction)
    if not isinstance(x_t, torch.Tensor):
        raise TypeError(f"x_t must be a torch.Tensor, got {type(x_t).__name__}")
    x = x_t.unsqueeze(0) if x_t.dim() == len(model.sample_shape) else x_t
    model._check(x, model.sample_shape, "x_t", "x_t")
    if x.shape[0] != d.shape[0] and 1 not in (x.shape[0], d.shape[0]):
        raise ValueError(f"x_t (batch {x.shape[0]}) and direction (batch {d.shape[0]}) do not broadcast")
    b = max(x.shape[0], d.shape[0])
    x = x.to(model.device, model.dtype).expand(b, *x.shape[1:]).clone()
    d = d.expand(b, *d.shape[1:])
    iterates = [x]
    if gamma == 0.0 or n_steps == 0:
        return torch.stack(iterates * (n_steps + 1))
    cond = model.conditioning(prompt, batch=2 * b)
    for _ in tqdm(range(n_steps), desc="x-space guidance", disable=not progress, leave=False):
        e = model.eps(torch.cat([x + s * d, x]), t, cond)
        e_probe, e_here = e.chunk(2)
        x = x + gamma * (e_probe - e_here)
        iterates.append(x)
    return torch.stack(iterates)


def naive_traverse(x_t: torch.Tensor, direction: torch.Tensor, strengths: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """``x_t + alpha v`` for every ``alpha`` in ``strengths``: (S, *broadcast(x_t, direction).shape)."""
    if not isinstance(x_t, torch.Tensor) or not isinstance(direction, torch.Tensor):
        raise TypeError("x_t and direction must be torch.Tensors")
    a = torch.as_tensor(strengths, dtype=x_t.dtype, device=x_t.device).reshape(-1)
    if a.numel() == 0 or not torch.isfinite(a).all():
        raise ValueError(f"strengths must be a non-empty sequence of finite numbers, got {strengths!r}")
    try:
        base = torch.broadcast_tensors(x_t, direction.to(x_t))
    except RuntimeError:
        raise ValueError(
            f"x_t {tuple(x_t.shape)} and direction {tuple(direction.shape)} do not broadcast"
        ) from None
    x, d = base
    return x.unsqueeze(0) + a.view(-1, *([1] * x.dim())) * d.unsqueeze(0)


# --------------------------------------------------------------------------------------------------
# getting to t_edit and back
# --------------------------------------------------------------------------------------------------
def _as_start(model: "DiffusionModel", image_or_noise: Any, is_noise: bool, seed: int) -> tuple[torch.Tensor, bool]:
    """(x, is_noise): x is (1, *sample_shape) clean x_0 (image) or x_T (noise)."""
    if image_or_noise is None:
        return model.noise(1, seed=seed), True
    if is_noise:
        x = image_or_noise
        if isinstance(x, torch.Tensor) and x.dim() == len(model.sample_shape):
            x = x.unsqueeze(0)
        model._check(x, model.sample_shape, "noise", "x_T")
        if x.shape[0] != 1:
            raise ValueError(f"edit_image edits one image at a time; noise has batch {x.shape[0]}")
        return x.to(model.device, model.dtype), True
    if isinstance(image_or_noise, torch.Tensor):
        img = image_or_noise.unsqueeze(0) if image_or_noise.dim() == 3 else image_or_noise
        model._check(img, model.image_shape, "image", "an image in [-1, 1]")
        if img.shape[0] != 1:
            raise ValueError(f"edit_image edits one image at a time; image has batch {img.shape[0]}")
        img = img.to(model.device, model.dtype)
    else:
        from pullback_utils.images import load_image

        img = load_image(image_or_noise, model=model)
    return model.to_latent(img), False


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
    n = _check_edit_time(model, t_edit)
    T = model.num_train_timesteps
    if from_noise:
        steps = _steps_between(_check_int(sampling_steps, "sampling_steps", 1), model, T, n)
        return ddim_sample(model, x, T, n, steps=steps, prompt=prompt, progress=progress)
    steps = _steps_between(_check_int(inversion_steps, "inversion_steps", 1), model, n, 0)
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
    """DDIM from ``t_edit`` to clean data: (B, *sample_shape) x_0 (latents for latent models).

    ``sampling_steps`` is the step count over the whole [0, T] (proportional share used).
    ``eta_below`` (fraction of T): below that time the steps are stochastic (eta = 1), with the same
    noise for every sample of the batch (seeded by ``seed``), so edits of one image stay comparable.
    """
    n = _check_edit_time(model, t_edit)
    total = _check_int(sampling_steps, "sampling_steps", 1)
    if eta_below is None:
        return ddim_sample(model, x_t, n, 0, steps=_steps_between(total, model, n, 0), prompt=prompt, progress=progress)
    f = _check_real(eta_below, "eta_below", nonneg=True)
    if f > 1:
        raise ValueError(f"eta_below must be a fraction of T in [0, 1], got {f}")
    m = min(n, model.level(f, name="eta_below"))
    x = x_t
    if n > m:
        x = ddim_sample(model, x, n, m, steps=_steps_between(total, model, n, m), prompt=prompt, progress=progress)
    if m == 0:
        return x
    steps = _steps_between(total, model, m, 0)
    outs = [
        ddim_sample(model, x[i : i + 1], m, 0, steps=steps, prompt=prompt, eta=1.0, seed=seed)
        for i in range(x.shape[0])
    ]
    return torch.cat(outs)


# --------------------------------------------------------------------------------------------------
# one-call editing
# --------------------------------------------------------------------------------------------------
@dataclass
class EditResult:
    """What :func:`edit_image` returns.

    Attributes:
        frames: (F, *image_shape) images in model range [-1, 1]: ``frames[0]`` the unedited result
            (no guidance), ``frames[-1]`` the full edit; frame ``i`` is guidance iterate
            ``steps[i]`` finished to t = 0.
        x0: (F, *sample_shape) the frames before decoding (latents for latent models).
        steps: the guidance iterates ``j`` shown, ``0 .. N``.
        x_t: (1, *sample_shape) the state at the edit time before guidance.
        iterates: (N + 1, 1, *sample_shape) all guidance iterates.
        direction: (*sample_shape) the unit direction that was followed (``sign * v_index``).
        basis: the local basis at (x_t, t_edit) (None when a direction was given).
        t_level: the edit time as a level 1..T.
        settings: the resolved settings (gamma, n_steps, ...).
    """

    frames: torch.Tensor
    x0: torch.Tensor
    steps: list[int]
    x_t: torch.Tensor
    iterates: torch.Tensor
    direction: torch.Tensor
    basis: "LocalBasis | None"
    t_level: int
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def original(self) -> torch.Tensor:
        """(1, *image_shape) the unedited result (frame 0)."""
        return self.frames[:1]

    @property
    def edited(self) -> torch.Tensor:
        """(1, *image_shape) the full edit (last frame)."""
        return self.frames[-1:]


def _frame_steps(n_steps: int, frames: int) -> list[int]:
    if frames == 1:
        return [n_steps]
    return sorted({int(round(i * n_steps / (frames - 1))) for i in range(frames)})


def edit_image(
    model: "DiffusionModel",
    image_or_noise: Any = None,
    *,
    t_edit: Time | None = None,
    index: int = 0,
    sign: int = 1,
    gamma: float | None = None,
    n_steps: int | None = None,
    k: int | None = None,
    step_size: float | None = None,
    prompt: str | torch.Tensor | None = None,
    basis_prompt: str | torch.Tensor | None = None,
    direction: torch.Tensor | None = None,
    inversion_steps: int | None = None,
    sampling_steps: int | None = None,
    eta_below: float | None | str = "default",
    frames: int = 5,
    seed: int = 0,
    is_noise: bool = False,
    basis_kwargs: dict[str, Any] | None = None,
    progress: bool = False,
) -> EditResult:
    """Edit one image (or one noise draw) along direction ``sign * v_index`` of its local basis.

    Args:
        model: a :class:`~pullback_utils.models.DiffusionModel`.
        image_or_noise: an image (file path, PIL image, numpy array, or a (1, *image_shape) tensor in
            [-1, 1]) to DDIM-invert; with ``is_noise=True`` a (1, *sample_shape) x_T; ``None`` draws
            x_T from ``seed``.
        t_edit: edit time in (0, T] (int level or fraction); default the middle of
            ``edit_defaults(model)["t_edits"]``.
        index, sign: which basis direction (0-based, < k) and which way (+1 / -1).
        gamma, n_steps, step_size, k: guidance step, N, probe length s, basis size
            (defaults from :func:`edit_defaults`; ``n_steps`` uses ``n_steps_prompt`` with a basis prompt).
        prompt: generation prompt (inversion, guidance, sampling); None = empty prompt / unconditional.
        basis_prompt: prompt under which the basis is computed; None = ``prompt``.
        direction: a ready direction (*sample_shape) to follow instead of the basis (e.g. one from
            :func:`parallel_transport`); ``index`` and ``k`` are then ignored.
        inversion_steps, sampling_steps: DDIM steps over the whole [0, T] (defaults per model;
            for an image, ``sampling_steps`` defaults to ``inversion_steps``: the same grid both
            ways makes frame 0 a close reconstruction of the input).
        eta_below: stochastic (eta = 1) final steps below this fraction of T; None = deterministic;
            ``"default"`` = the model's default.
        frames: number of frames, iterates ``j = 0, N/(F-1), ..., N``.
        seed: seed of the noise (``image_or_noise=None``), the basis solver and stochastic steps.
        basis_kwargs: extra options of :meth:`DiffusionModel.local_basis` (tol, method, cache_dir, ...).
        progress: tqdm bars.

    Returns:
        :class:`EditResult`. With ``gamma == 0`` or ``n_steps == 0`` every frame equals ``frames[0]``
        exactly (the unedited result).

    Raises:
        ValueError: before any network evaluation, for an unknown index or ``index >= k``, a sign
            other than ±1, a prompt on an unconditional model, ``t_edit`` outside (0, T], or
            non-finite / negative settings.
    """
    d = edit_defaults(model)
    t_edit = d["t_edits"][len(d["t_edits"]) // 2] if t_edit is None else t_edit
    level = _check_edit_time(model, t_edit)
    _check_prompt(model, prompt, "prompt")
    _check_prompt(model, basis_prompt, "basis_prompt")
    sign = _check_sign(sign)
    k = _check_int(d["k"] if k is None else k, "k", 1)
    if direction is None:
        index = _check_index(index, k)
        dim = int(np.prod(model.sample_shape))
        if k > dim:
            raise ValueError(f"k={k} exceeds the dimension of x_t ({dim})")
    else:
        direction = _direction_batch(model, direction)
        if direction.shape[0] != 1:
            raise ValueError("direction must be one vector")
    gamma = _check_real(d["gamma"] if gamma is None else gamma, "gamma")
    if n_steps is None:
        n_steps = d["n_steps_prompt"] if basis_prompt is not None else d["n_steps"]
    n_steps = _check_int(n_steps, "n_steps", 0)
    step_size = _check_real(d["step_size"] if step_size is None else step_size, "step_size", positive=True)
    inversion_steps = _check_int(d["inversion_steps"] if inversion_steps is None else inversion_steps, "inversion_steps", 1)
    if sampling_steps is None:
        # an image: finish on the inversion's grid, so that frame 0 reconstructs the input
        from_image = image_or_noise is not None and not is_noise
        sampling_steps = inversion_steps if from_image else d["sampling_steps"]
    sampling_steps = _check_int(sampling_steps, "sampling_steps", 1)
    if isinstance(eta_below, str):
        if eta_below != "default":
            raise ValueError(f"eta_below must be a fraction of T, None or 'default', got {eta_below!r}")
        eta_below = d["eta_below"]
    if eta_below is not None:
        _check_real(eta_below, "eta_below", nonneg=True)
    frames = _check_int(frames, "frames", 1)
    seed = _check_int(seed, "seed", 0)
    if model.is_conditional:
        model.conditioning(prompt)  # encodes (and so checks) the prompts before heavy compute
        if basis_prompt is not None:
            model.conditioning(basis_prompt)

    x, from_noise = _as_start(model, image_or_noise, is_noise, seed)
    x_t = to_edit_time(
        model, x, level, from_noise=from_noise, prompt=prompt,
        inversion_steps=inversion_steps, sampling_steps=sampling_steps, progress=progress,
    )
    basis = None
    if direction is None:
        bp = prompt if basis_prompt is None else basis_prompt
        kw = {"seed": seed, **(basis_kwargs or {})}
        basis = model.local_basis(x_t, level, k, prompt=bp, **kw)
        v = basis.v[index].reshape(1, *model.sample_shape)
    else:
        v = direction
    v = sign * v.to(model.device, model.dtype)
    iterates = xspace_guidance(
        model, x_t, level, v, gamma=gamma, n_steps=n_steps, step_size=step_size, prompt=prompt,
        progress=progress,
    )
    steps = _frame_steps(n_steps, frames)
    finish_kw = dict(sampling_steps=sampling_steps, prompt=prompt, eta_below=eta_below, seed=seed, progress=progress)
    # frame 0 (the unedited result) is finished on its own, so it is the same tensor whatever the
    # edit settings; the edited frames go through in one batch
    x0_ref = finish(model, x_t, level, **finish_kw)
    if gamma == 0.0 or n_steps == 0 or steps == [0]:
        x0 = x0_ref.expand(len(steps), *x0_ref.shape[1:]).clone()
    else:
        rest = [j for j in steps if j > 0]
        x0 = torch.cat([x0_ref, finish(model, iterates[rest, 0], level, **finish_kw)])
        if steps[0] != 0:  # frames == 1: only the full edit
            x0 = x0[1:]
    images = model.to_image(x0)
    settings = dict(
        t_edit=t_edit, index=None if direction is not None else index, sign=sign, gamma=gamma,
        n_steps=n_steps, step_size=step_size, k=k, prompt=prompt if isinstance(prompt, str) else None,
        basis_prompt=basis_prompt if isinstance(basis_prompt, str) else None,
        inversion_steps=inversion_steps, sampling_steps=sampling_steps, eta_below=eta_below, seed=seed,
        from_noise=from_noise,
    )
    return EditResult(
        frames=images, x0=x0, steps=steps, x_t=x_t, iterates=iterates, direction=v[0], basis=basis,
        t_level=level, settings=settings,
    )


# --------------------------------------------------------------------------------------------------
# parallel transport
# --------------------------------------------------------------------------------------------------
def parallel_transport(
    basis_from: "LocalBasis",
    basis_to: "LocalBasis",
    index: int,
    *,
    return_coefficients: bool = False,
):
    """Direction on sample 1 corresponding to direction ``index`` of sample 0.

    Formula (the official code's form)::

        c  = U_1^T u_{0,index}        (coordinates of the h-space tangent vector in sample 1's basis)
        v' = V_1 c / ||V_1 c||        (the x-space direction with those coordinates)

    Assumption: both bases are of the same feature map (same model, layer and time, so their h
    vectors live in one space), and ``u_{0,index}`` lies (mostly) in span(U_1); what falls outside
    it is dropped. ``||c||`` (returned with ``return_coefficients``) measures how much of it was kept
    (1 = all). Note v' uses the coefficients unscaled, not ``V_1 Sigma_1^{-1} c`` (the
    pseudo-inverse): it is a direction, normalised afterwards. Transporting a basis onto itself
    gives ``c = e_index`` and ``v' = v_index``.

    Returns:
        (*x_shape) unit vector (the shape of ``basis_to.v[0]``); with ``return_coefficients``,
        ``(v', c)``.

    Raises:
        ValueError: index not in 0..k-1 of ``basis_from``, h shapes that differ, or
        ``u_{0,index}`` orthogonal to span(U_1) (nothing to transport).
    """
    for name, b in (("basis_from", basis_from), ("basis_to", basis_to)):
        if not all(hasattr(b, a) for a in ("u", "v", "s")):
            raise TypeError(f"{name} must be a LocalBasis (with u, v, s), got {type(b).__name__}")
    k0 = int(basis_from.u.shape[0])
    index = _check_index(index, k0)
    if tuple(basis_from.u.shape[1:]) != tuple(basis_to.u.shape[1:]):
        raise ValueError(
            f"the bases' h shapes differ: {tuple(basis_from.u.shape[1:])} vs {tuple(basis_to.u.shape[1:])} "
            "(transport needs the same feature map)"
        )
    u0 = basis_from.u[index].reshape(-1).double()
    U1 = basis_to.u.reshape(basis_to.u.shape[0], -1).double()
    V1 = basis_to.v.reshape(basis_to.v.shape[0], -1).double()
    c = U1 @ u0
    w = c @ V1
    norm = float(w.norm())
    if norm < 1e-5 * float(u0.norm()):
        raise ValueError(
            f"direction {index} of basis_from is orthogonal to span(U) of basis_to: nothing to transport"
        )
    out = (w / norm).to(basis_to.v.dtype).reshape(basis_to.v.shape[1:])
    if return_coefficients:
        return out, c.to(basis_to.v.dtype)
    return out


# --------------------------------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------------------------------
def _pair(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
        raise TypeError("images must be torch.Tensors")
    a = a.unsqueeze(0) if a.dim() == 3 else a
    b = b.unsqueeze(0) if b.dim() == 3 else b
    if a.dim() != 4 or b.dim() != 4:
        raise ValueError(f"images must have shape (B, C, H, W), got {tuple(a.shape)} and {tuple(b.shape)}")
    a, b = torch.broadcast_tensors(a.double(), b.double())
    return a, b


def change_size(edited: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """(B,) RMS per-pixel change ``sqrt(mean((edited - original)^2))`` (model range [-1, 1])."""
    a, b = _pair(edited, original)
    return (a - b).pow(2).mean(dim=(1, 2, 3)).sqrt()


def change_frequency(edited: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """(B,) energy-weighted mean radial frequency (cycles per image) of the change.

    Low values: a global change (colour, position, size); high values: local detail. NaN where
    the images are identical (no change, no frequency). See :func:`pullback_utils.geometry.mean_frequency`.
    """
    a, b = _pair(edited, original)
    diff = a - b
    out = torch.full((diff.shape[0],), float("nan"), dtype=torch.float64)
    nz = diff.pow(2).sum(dim=(1, 2, 3)) > 0
    if nz.any():
        out[nz] = mean_frequency(diff[nz]).cpu()
    return out


@torch.no_grad()
def distance_from_data(
    model: "DiffusionModel",
    x0: torch.Tensor,
    *,
    times: Sequence[Time] = (0.1, 0.2, 0.3),
    n_noise: int = 2,
    seed: int = 0,
    prompt: Prompt = None,
) -> torch.Tensor:
    """(B,) the model's own denoising error on ``x0``: how atypical the images are for the model.

    For each time ``t`` in ``times`` and ``n_noise`` noise draws (the same draws for every image, so
    comparisons are paired), noise ``x0`` to ``x_t = sqrt(a) x0 + sqrt(1 - a) e``, predict the clean
    image ``x0_hat = (x_t - sqrt(1 - a) eps(x_t, t)) / sqrt(a)``, and return the RMS of
    ``x0_hat - x0`` averaged over times and draws. Images on the data manifold are denoised back
    almost exactly; off-manifold edits (noise, artefacts) are not. ``x0``: (B, *sample_shape)
    (latents for latent models).
    """
    if not isinstance(x0, torch.Tensor):
        raise TypeError(f"x0 must be a torch.Tensor, got {type(x0).__name__}")
    x0 = x0.unsqueeze(0) if x0.dim() == len(model.sample_shape) else x0
    model._check(x0, model.sample_shape, "x0", "x_0")
    n_noise = _check_int(n_noise, "n_noise", 1)
    levels = [_check_edit_time(model, t, "times") for t in times]
    if not levels:
        raise ValueError("times must not be empty")
    x0 = x0.to(model.device, model.dtype)
    gen = torch.Generator().manual_seed(int(seed))
    total = torch.zeros(x0.shape[0], dtype=torch.float64)
    for n in levels:
        a = model.alpha_bar(n)
        for _ in range(n_noise):
            e = torch.randn(model.sample_shape, generator=gen).to(model.device, model.dtype)
            xt = math.sqrt(a) * x0 + math.sqrt(1 - a) * e
            eps = model.eps(xt, n, prompt)
            x0_hat = (xt - math.sqrt(1 - a) * eps) / math.sqrt(a)
            total += (x0_hat - x0).double().pow(2).mean(dim=(1, 2, 3)).sqrt().cpu()
    return total / (len(levels) * n_noise)


@torch.no_grad()
def match_naive(
    model: "DiffusionModel",
    x_t: torch.Tensor,
    t: Time,
    direction: torch.Tensor,
    target: float,
    original: torch.Tensor,
    *,
    strengths: Sequence[float] = (0.5, 1, 2, 4, 8, 16, 32, 64),
    sampling_steps: int = 20,
    prompt: Prompt = None,
    eta_below: float | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """The naive step ``x_t + alpha v`` whose finished image changes by ``target`` (RMS) from ``original``.

    Finishes every ``alpha`` of ``strengths`` (one batch), interpolates the change size linearly
    between the two that bracket ``target`` and finishes that ``alpha``. If no strength reaches it,
    the largest is used (``matched`` False).

    Args:
        x_t: (1, *sample_shape) state at ``t``; direction: unit (*sample_shape).
        target: RMS change (model range) to match, e.g. ``change_size(edit, original)``.
        original: (1, *image_shape) the unedited image.

    Returns:
        dict: ``alpha``, ``x0`` (1, *sample_shape), ``image`` (1, *image_shape), ``size`` (achieved),
        ``matched`` (bool), ``grid`` (list of (alpha, size)).
    """
    target = _check_real(target, "target", nonneg=True)
    alphas = sorted(_check_real(a, "strengths", positive=True) for a in strengths)
    d = _direction_batch(model, direction)[0]
    kw = dict(sampling_steps=sampling_steps, prompt=prompt, eta_below=eta_below, seed=seed)
    xs = naive_traverse(x_t, d, alphas)[:, 0]
    imgs = model.to_image(finish(model, xs, t, **kw))
    sizes = change_size(imgs, original).tolist()
    grid = list(zip(alphas, sizes))
    lo_a, lo_s = 0.0, 0.0
    alpha = None
    for a, s in grid:
        if s >= target:
            alpha = lo_a + (a - lo_a) * (target - lo_s) / max(s - lo_s, 1e-12)
            break
        lo_a, lo_s = a, s
    matched = alpha is not None
    if alpha is None:
        alpha = alphas[-1]
    x0 = finish(model, naive_traverse(x_t, d, [alpha])[0], t, **kw)
    image = model.to_image(x0)
    return {
        "alpha": float(alpha), "x0": x0, "image": image, "size": float(change_size(image, original)[0]),
        "matched": matched, "grid": grid,
    }


# --------------------------------------------------------------------------------------------------
# batch helpers for the chapter (many directions, several times)
# --------------------------------------------------------------------------------------------------
@torch.no_grad()
def states_at_times(
    model: "DiffusionModel",
    x_T: torch.Tensor,
    times: Sequence[Time],
    *,
    sampling_steps: int = 20,
    prompt: Prompt = None,
    progress: bool = False,
) -> list[torch.Tensor]:
    """DDIM-generate ``x_T`` (B, *sample_shape) once, stopping at every time of ``times`` (each in (0, T]).

    Returns the states at ``times``, in the order given. One run through the times from the top down,
    each leg with its proportional share of ``sampling_steps``; the same states as
    :func:`to_edit_time` from noise up to the step grid.
    """
    levels = [_check_edit_time(model, t, "times") for t in times]
    total = _check_int(sampling_steps, "sampling_steps", 1)
    states, _ = ddim_sample_to_times(model, x_T, levels, steps=total, prompt=prompt, progress=progress)
    return list(states)


@torch.no_grad()
def edit_along(
    model: "DiffusionModel",
    x_t: torch.Tensor,
    t: Time,
    directions: torch.Tensor,
    *,
    gamma: float,
    n_steps: int,
    step_size: float = 1.0,
    prompt: Prompt = None,
    sampling_steps: int = 20,
    eta_below: float | None = None,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Guide one ``x_t`` (1, *sample_shape) along each of ``directions`` (D, *sample_shape) in one batch
    and finish to t = 0.

    Returns ``(x0, moved)``: (D, *sample_shape) finished edits (latents for latent models) and (D,)
    ``||x^(N) - x^(0)||``, how far guidance moved x_t.
    """
    it = xspace_guidance(model, x_t, t, directions, gamma=gamma, n_steps=n_steps, step_size=step_size, prompt=prompt)
    x0 = finish(model, it[-1], t, sampling_steps=sampling_steps, prompt=prompt, eta_below=eta_below, seed=seed)
    return x0, (it[-1] - it[0]).flatten(1).norm(dim=1)


@torch.no_grad()
def tangent_alignment(
    model: "DiffusionModel",
    x_t: torch.Tensor,
    t: Time,
    directions: torch.Tensor,
    u: torch.Tensor,
    *,
    prompt: Prompt = None,
    layer: str = "mid",
    fd_step: float = 1e-2,
) -> torch.Tensor:
    """(D,) cosine between the h-space change ``J w`` of each direction ``w`` at ``(x_t, t)`` and ``u``.

    ``J w`` is the central difference ``(f(x + e w) - f(x - e w)) / 2e`` of the feature map (e =
    ``fd_step``; accurate to O(e^2), no autodiff). Use it to ask whether a direction does the same
    thing in h-space on another sample, e.g. a transported direction vs the raw vector of sample 0.
    """
    from pullback_utils.features import feature_map

    level = _check_edit_time(model, t, "t")
    d = _direction_batch(model, directions)
    x = x_t.unsqueeze(0) if x_t.dim() == len(model.sample_shape) else x_t
    model._check(x, model.sample_shape, "x_t", "x_t")
    ehs = model.conditioning(prompt, batch=1)
    fn = feature_map(model.unet, level, layer=layer, encoder_hidden_states=ehs,
                     num_train_timesteps=model.num_train_timesteps)
    e = _check_real(fd_step, "fd_step", positive=True)
    x = x.to(model.device, model.dtype)
    h = fn(torch.cat([x + e * d, x - e * d]))
    jw = ((h[: d.shape[0]] - h[d.shape[0]:]) / (2 * e)).flatten(1).double()
    uu = u.reshape(1, -1).to(jw)
    if uu.shape[1] != jw.shape[1]:
        raise ValueError(f"u has {uu.shape[1]} entries, but h at layer {layer!r} has {jw.shape[1]}")
    return (jw @ uu.T).squeeze(1) / (jw.norm(dim=1) * uu.norm()).clamp_min(1e-30)


def held_out_images(model: "DiffusionModel", n: int = 1, seed: int = 10_000) -> torch.Tensor | None:
    """(n, *image_shape) images of a bundled (zoo) model's dataset, drawn with ``seed`` (the training
    draws use small seeds, so the default gives held-out images); ``None`` for other models."""
    from pathlib import Path

    from pullback_utils.zoo.registry import available_models, model_info

    info = None
    if model.name in available_models():
        info = model_info(model.name)
    elif Path(str(model.name)).is_dir() and (Path(model.name) / "zoo.json").is_file():
        import json

        info = json.loads((Path(model.name) / "zoo.json").read_text())
    if not info or "dataset" not in info:
        return None
    from pullback_utils.zoo.datasets import DATASETS, make_dataset

    if info["dataset"] not in DATASETS:
        return None
    imgs = make_dataset(info["dataset"], _check_int(n, "n", 1), seed=int(seed)).images
    if tuple(imgs.shape[1:]) != tuple(model.image_shape):
        return None
    return imgs.to(model.device, model.dtype)


@dataclass
class Sweep:
    """What :func:`direction_sweep` returns.

    Attributes:
        times: the edit times (as given).
        labels: the D edit labels, ``"+v1", "-v1", "+v2", ...`` (1-based for readers).
        originals: (n_times, n, *image_shape) unedited results.
        edits: (n_times, n, D, *image_shape) edited results.
        x_t: n_times tensors (n, *sample_shape), the states at the edit times.
        x0_original, x0_edits: the same as ``originals``/``edits`` before decoding.
        bases: ``bases[ti][i]`` the basis of sample i at time ``times[ti]``.
        table: one dict per edit: ``t``, ``sample``, ``direction`` (0-based), ``sign``, ``size``,
            ``frequency``, ``distance`` (of the edit) and ``distance_original``, ``moved``
            (``||x^(N) - x^(0)||``) and ``along`` (cosine between ``x^(N) - x^(0)`` and the direction:
            1 means guidance moved x_t straight along v, like naive traversal).
    """

    times: list
    labels: list[str]
    originals: torch.Tensor
    edits: torch.Tensor
    x_t: list[torch.Tensor]
    x0_original: torch.Tensor
    x0_edits: torch.Tensor
    bases: list[list[Any]]
    table: list[dict[str, Any]]


def direction_sweep(
    model: "DiffusionModel",
    x_T: torch.Tensor,
    times: Sequence[Time],
    *,
    n_directions: int,
    k: int,
    gamma: float,
    n_steps: int,
    step_size: float = 1.0,
    sampling_steps: int = 20,
    prompt: Prompt = None,
    eta_below: float | None = None,
    seed: int = 0,
    basis_kwargs: dict[str, Any] | None = None,
    distance: bool = True,
    progress: bool = True,
) -> Sweep:
    """Edit every sample of ``x_T`` along ``±v_1 .. ±v_n_directions`` of its own basis at every time.

    One DDIM run generates all states (:func:`states_at_times`); per (time, sample) one basis and
    one batched guidance + finish of the 2 * n_directions edits. Metrics per edit: change size,
    change frequency, the model's denoising error (``distance=True``), how far x_t moved and how
    straight along the direction.

    At large t guidance is close to naive traversal: there x_t is mostly noise and the noise
    prediction is close to the identity, so ``eps(x + s v) - eps(x) ~ s v`` and N steps move x_t by
    about ``gamma N s v`` (``along`` near 1). At smaller t the network's Jacobian bends the steps.
    """
    n_directions = _check_int(n_directions, "n_directions", 1)
    k = _check_int(k, "k", 1)
    if n_directions > k:
        raise ValueError(f"n_directions={n_directions} must be <= k={k}")
    gamma = _check_real(gamma, "gamma")
    n_steps = _check_int(n_steps, "n_steps", 0)
    levels = [_check_edit_time(model, t, "times") for t in times]
    _check_prompt(model, prompt, "prompt")
    states = states_at_times(model, x_T, levels, sampling_steps=sampling_steps, prompt=prompt)
    n = x_T.shape[0]
    labels = [f"{'+' if sg > 0 else '-'}v{d + 1}" for d in range(n_directions) for sg in (1, -1)]
    fkw = dict(sampling_steps=sampling_steps, prompt=prompt, eta_below=eta_below, seed=seed)
    originals, edits, x0o, x0e, bases, table = [], [], [], [], [], []
    bar = tqdm(total=len(levels) * n, desc="edits", disable=not progress)
    for ti, (t, lv) in enumerate(zip(times, levels)):
        ref = finish(model, states[ti], lv, **fkw)
        ref_img = model.to_image(ref)
        d_ref = distance_from_data(model, ref, prompt=prompt) if distance else torch.full((n,), float("nan"))
        row_e, row_x, row_b = [], [], []
        for i in range(n):
            xt = states[ti][i : i + 1]
            B = model.local_basis(xt, lv, k, prompt=prompt, **{"seed": seed, **(basis_kwargs or {})})
            dirs = torch.stack([sg * B.v[d].reshape(model.sample_shape) for d in range(n_directions) for sg in (1, -1)])
            it = xspace_guidance(model, xt, lv, dirs, gamma=gamma, n_steps=n_steps, step_size=step_size, prompt=prompt)
            x0 = finish(model, it[-1], lv, **fkw)
            step = (it[-1] - it[0]).flatten(1)
            moved = step.norm(dim=1)
            along = (step * dirs.flatten(1)).sum(1) / (moved * dirs.flatten(1).norm(dim=1)).clamp_min(1e-30)
            img = model.to_image(x0)
            size = change_size(img, ref_img[i : i + 1])
            freq = change_frequency(img, ref_img[i : i + 1])
            dist = distance_from_data(model, x0, prompt=prompt) if distance else torch.full((len(dirs),), float("nan"))
            for j in range(len(dirs)):
                table.append({
                    "t": float(t) if not isinstance(t, int) else t, "level": lv, "sample": i,
                    "direction": j // 2, "sign": 1 if j % 2 == 0 else -1,
                    "size": float(size[j]), "frequency": float(freq[j]), "distance": float(dist[j]),
                    "distance_original": float(d_ref[i]), "moved": float(moved[j]),
                    "along": float(along[j]) if float(moved[j]) > 0 else float("nan"),
                })
            row_e.append(img)
            row_x.append(x0)
            row_b.append(B)
            bar.update(1)
        originals.append(ref_img)
        x0o.append(ref)
        edits.append(torch.stack(row_e))
        x0e.append(torch.stack(row_x))
        bases.append(row_b)
    bar.close()
    return Sweep(
        times=list(times), labels=labels, originals=torch.stack(originals), edits=torch.stack(edits),
        x_t=states, x0_original=torch.stack(x0o), x0_edits=torch.stack(x0e), bases=bases, table=table,
    )
