"""Efficacy and dose-response of an edit, judged by the renderer of a procedural zoo dataset.

An edit's *efficacy* is how much it changes the image's renderer factors (position, radius, colour of
a ``disks`` image; :data:`pullback_utils.zoo.datasets.FACTOR_NAMES`) per unit of change of the state
``x_t``. The factors of the finished unedited and edited images are fitted by the renderer
(:func:`pullback_utils.zoo.fitting.fit_factors`, as for :func:`~pullback_utils.editing.metrics.renderer_residual`),
each factor is expressed in standard deviations of the training data (:func:`factor_scale`), and the
change is the norm of the difference (:func:`factor_change`).

:func:`dose_response` edits states over a grid of guidance strengths ``gamma`` and step counts ``N``
and, at every cell, also takes the naive step ``x_t + ||x^(N) - x_t|| v`` that moves the state exactly as
far along ``v`` (unit length): the two are compared at the same state change, cell by cell.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from pullback_utils._validate import check_int, check_real
from pullback_utils.diffusion.ddim import Time
from pullback_utils.editing.checks import check_edit_time, direction_batch, state_batch
from pullback_utils.editing.guidance import xspace_guidance
from pullback_utils.editing.metrics import _family, _zoo_images, renderer_fit
from pullback_utils.editing.pipeline import finish

if TYPE_CHECKING:  # pragma: no cover
    from pullback_utils.models.diffusion_model import DiffusionModel

__all__ = ["has_renderer", "factor_scale", "factor_change", "DoseResponse", "dose_response"]


def has_renderer(dataset: str | None) -> bool:
    """Whether the edits of a model trained on ``dataset`` can be judged by a fitted renderer."""
    from pullback_utils.zoo.fitting import fit_family

    return isinstance(dataset, str) and fit_family(dataset) is not None


def factor_scale(dataset: str, *, n: int = 4000, seed: int = 0) -> torch.Tensor:
    """(K,) standard deviation of each renderer factor of ``dataset`` over ``n`` fresh draws (the unit in
    which a factor change is measured). Factors that never vary (sd 0) get 1."""
    from pullback_utils.zoo.datasets import sample_factors

    _family(dataset)
    f, _ = sample_factors(dataset, check_int(n, "n", 2), int(seed))
    sd = f.double().std(0)
    return torch.where(sd > 0, sd, torch.ones_like(sd)).float()


def factor_change(
    originals: torch.Tensor,
    edited: torch.Tensor,
    dataset: str,
    *,
    scale: torch.Tensor | None = None,
    iters: int = 100,
    fits: tuple[dict, dict] | None = None,
) -> dict[str, torch.Tensor]:
    """The renderer-factor change of each edit.

    Args:
        originals, edited: (N, 3, 32, 32) finished images in [-1, 1], edit i of original i.
        dataset: the zoo dataset whose renderer is fitted (``disks``, ``shapes``, ladder rungs).
        scale: (K,) the unit of each factor (default :func:`factor_scale`).
        fits: precomputed :func:`~pullback_utils.editing.metrics.renderer_fit` of ``originals`` and ``edited``.

    Returns:
        A dict: ``change`` ``(N,)`` the norm of the scaled factor difference, ``per_factor`` ``(N, K)`` its
        absolute entries, ``residual`` ``(N,)`` the edited image's renderer residual.
    """
    a, b = _zoo_images(originals), _zoo_images(edited)
    if a.shape != b.shape:
        raise ValueError(
            f"originals and edited must be the same (N, 3, 32, 32) batch, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    fa, fb = (
        fits if fits is not None else (renderer_fit(a, dataset, iters=iters), renderer_fit(b, dataset, iters=iters))
    )
    sc = factor_scale(dataset) if scale is None else torch.as_tensor(scale, dtype=torch.float32)
    if sc.shape != fa["factors"].shape[1:]:
        raise ValueError(f"scale must hold one value per factor ({fa['factors'].shape[1]}), got {tuple(sc.shape)}")
    d = (fb["factors"] - fa["factors"]) / sc
    return {"change": d.norm(dim=1), "per_factor": d.abs(), "residual": fb["rmse"]}


@dataclass
class DoseResponse:
    """What :func:`dose_response` returns, for G strengths, S step counts and n samples.

    Attributes:
        gammas: (G,) guidance strengths; n_steps: (S,) step counts; dose: (G, S) ``gamma * N``.
        state_change: (G, S, n) ``||x^(N) - x_t||`` of guidance (the naive step moves as far along ``v``).
        guided, naive: (G, S, n) renderer-factor changes (factor standard deviations; :func:`factor_change`).
        guided_residual, naive_residual: (G, S, n) the edited images' renderer residuals; original_residual (n,).
        per_factor_guided, per_factor_naive: (K,) mean absolute change of each factor over cells and samples.
        factor_names: the K factor names.
    """

    gammas: np.ndarray
    n_steps: np.ndarray
    dose: np.ndarray
    state_change: np.ndarray
    guided: np.ndarray
    naive: np.ndarray
    guided_residual: np.ndarray
    naive_residual: np.ndarray
    original_residual: np.ndarray
    per_factor_guided: np.ndarray
    per_factor_naive: np.ndarray
    factor_names: tuple[str, ...]


def dose_response(
    model: "DiffusionModel",
    x_t: torch.Tensor,
    t: Time,
    directions: torch.Tensor,
    *,
    gammas: Sequence[float],
    n_steps: Sequence[int],
    dataset: str,
    step_size: float = 1.0,
    sampling_steps: int = 20,
    iters: int = 100,
) -> DoseResponse:
    """Guided edits over a ``gammas`` x ``n_steps`` grid and the naive steps that move ``x_t`` as far.

    Args:
        x_t: ``(n, *sample_shape)`` states at time ``t``; directions: ``(n, *sample_shape)`` one direction ``v``
            per state (normalised to unit length here).
        gammas: G > 0 guidance strengths; n_steps: S >= 1 step counts (guidance runs once per strength to
            the largest count and every count's iterate is finished).
        dataset: the zoo dataset whose renderer judges the edits.

    Cost: ``G * max(n_steps)`` guidance steps (two network calls each on n states) and ``2 * G * S + 1``
    finishes of n states, then renderer fits of all finished images.
    """
    from pullback_utils.zoo.datasets import FACTOR_NAMES

    check_edit_time(model, t, "t")
    _family(dataset)
    g = [check_real(x, "gammas", positive=True) for x in gammas]
    steps = sorted({check_int(x, "n_steps", 1) for x in n_steps})
    if not g or not steps:
        raise ValueError(f"gammas and n_steps must be non-empty, got {list(gammas)} and {list(n_steps)}")
    x = state_batch(model, x_t)
    v = direction_batch(model, directions)
    if v.shape != x.shape:
        raise ValueError(f"directions must be one per state, shape {tuple(x.shape)}, got {tuple(v.shape)}")
    v = v / v.flatten(1).norm(dim=1).clamp_min(1e-30).view(-1, *([1] * (v.dim() - 1)))
    n = x.shape[0]
    guided, naive, moved = [], [], []
    with torch.no_grad():
        for gamma in g:
            it = xspace_guidance(model, x, t, v, gamma=gamma, n_steps=max(steps), step_size=step_size)
            for s in steps:
                dx = (it[s] - x).flatten(1).norm(dim=1)
                guided.append(it[s])
                naive.append(x + dx.view(-1, *([1] * (x.dim() - 1))) * v)
                moved.append(dx)
        x0 = finish(model, torch.cat([x] + guided + naive), t, sampling_steps=sampling_steps)
        images = model.to_image(x0).clamp(-1, 1)
    fit = renderer_fit(images, dataset, iters=iters)
    cells = len(g) * len(steps)
    factors, rmse = fit["factors"], fit["rmse"]
    sc = factor_scale(dataset)
    f0 = factors[:n]
    fg = factors[n : n + cells * n].reshape(cells, n, -1)
    fn = factors[n + cells * n :].reshape(cells, n, -1)
    dg, dn = (fg - f0) / sc, (fn - f0) / sc
    shape = (len(g), len(steps), n)
    return DoseResponse(
        gammas=np.array(g),
        n_steps=np.array(steps),
        dose=np.outer(g, steps),
        state_change=torch.stack(moved).reshape(shape).double().numpy(),
        guided=dg.norm(dim=2).reshape(shape).double().numpy(),
        naive=dn.norm(dim=2).reshape(shape).double().numpy(),
        guided_residual=rmse[n : n + cells * n].reshape(shape).double().numpy(),
        naive_residual=rmse[n + cells * n :].reshape(shape).double().numpy(),
        original_residual=rmse[:n].double().numpy(),
        per_factor_guided=dg.abs().mean((0, 1)).double().numpy(),
        per_factor_naive=dn.abs().mean((0, 1)).double().numpy(),
        factor_names=tuple(FACTOR_NAMES.get(dataset, tuple(f"f{i}" for i in range(sc.numel())))),
    )
