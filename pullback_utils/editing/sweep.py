"""Many edits at once, for the chapters: several samples, directions, signs and times per call.

- :func:`states_at_times`: one DDIM run from x_T keeping the states at the edit times;
- :func:`edit_along`: one x_t guided along several directions and finished, in one batch;
- :func:`direction_sweep`: every sample edited along ``±v_1 .. ±v_n`` of its own basis at every time,
  with a table of measures (:class:`Sweep`);
- :func:`held_out_images`: images of a zoo model's dataset that it was not trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import torch
from tqdm.auto import tqdm

from pullback_utils._validate import check_int, check_real
from pullback_utils.diffusion.ddim import Prompt, Time, ddim_sample_to_times
from pullback_utils.editing.checks import check_edit_time, check_prompt
from pullback_utils.editing.config import guidance_conditioning
from pullback_utils.editing.guidance import xspace_guidance
from pullback_utils.editing.metrics import change_frequency, change_size, distance_from_data
from pullback_utils.editing.pipeline import finish

if TYPE_CHECKING:  # pragma: no cover
    from pullback_utils.models.diffusion_model import DiffusionModel

__all__ = [
    "states_at_times",
    "edit_along",
    "Sweep",
    "direction_sweep",
    "held_out_images",
]


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
    """DDIM-generate ``x_T`` ``(B, *sample_shape)`` once, stopping at every time of ``times`` (each in (0, T]).

    Returns the states at ``times``, in the order given (:func:`pullback_utils.diffusion.ddim.ddim_sample_to_times`:
    each leg with its proportional share of ``sampling_steps``); the same states as
    :func:`~pullback_utils.editing.pipeline.to_edit_time` from noise up to the step grid.
    """
    levels = [check_edit_time(model, t, "times") for t in times]
    total = check_int(sampling_steps, "sampling_steps", 1)
    states, _ = ddim_sample_to_times(model, x_T, levels, steps=total, prompt=prompt, progress=progress)
    return list(states)


def _guide_and_finish(
    model: "DiffusionModel",
    x_t: torch.Tensor,
    t: Time,
    directions: torch.Tensor,
    *,
    gamma: float,
    n_steps: int,
    step_size: float,
    prompt: Prompt,
    sampling_steps: int,
    eta_below: float | None,
    seed: int,
    guide_prompt: Prompt,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x0 ``(D, *sample_shape)``, step (D, dim x)): guidance of one x_t along D directions, its noise
    predictions conditioned on ``guide_prompt``, finished under ``prompt``, and the move
    ``x^(N) - x^(0)`` of each."""
    it = xspace_guidance(
        model, x_t, t, directions, gamma=gamma, n_steps=n_steps, step_size=step_size, prompt=guide_prompt
    )
    x0 = finish(model, it[-1], t, sampling_steps=sampling_steps, prompt=prompt, eta_below=eta_below, seed=seed)
    return x0, (it[-1] - it[0]).flatten(1)


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
    basis_prompt: Prompt = None,
    guidance_prompt: str = "generation",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Guide one ``x_t`` ``(1, *sample_shape)`` along each of ``directions`` ``(D, *sample_shape)`` in one batch
    and finish to t = 0 (under the generation ``prompt``).

    ``basis_prompt``, ``guidance_prompt``: the edit prompt the directions were computed under, and
    which prompt conditions the guidance (``"generation"``: ``prompt``; ``"edit"``: ``basis_prompt``;
    see :mod:`pullback_utils.editing`).

    Returns ``(x0, moved)``: ``(D, *sample_shape)`` finished edits (latents for latent models) and (D,)
    ``||x^(N) - x^(0)||``, how far guidance moved x_t.
    """
    x0, step = _guide_and_finish(
        model,
        x_t,
        t,
        directions,
        gamma=gamma,
        n_steps=n_steps,
        step_size=step_size,
        prompt=prompt,
        sampling_steps=sampling_steps,
        eta_below=eta_below,
        seed=seed,
        guide_prompt=guidance_conditioning(guidance_prompt, prompt, basis_prompt),
    )
    return x0, step.norm(dim=1)


@dataclass
class Sweep:
    """What :func:`direction_sweep` returns.

    Attributes:
        times: the edit times (as given).
        labels: the D edit labels, ``"+v1", "-v1", "+v2", ...`` (1-based for readers).
        originals: ``(n_times, n, *image_shape)`` unedited results.
        edits: ``(n_times, n, D, *image_shape)`` edited results.
        x_t: n_times tensors ``(n, *sample_shape)``, the states at the edit times.
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


def _time_value(t: Time) -> Time:
    """``t`` as a JSON-friendly value for tables (ints stay levels, everything else a float)."""
    return t if isinstance(t, int) else float(t)


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
    n_directions = check_int(n_directions, "n_directions", 1)
    k = check_int(k, "k", 1)
    if n_directions > k:
        raise ValueError(f"n_directions={n_directions} must be <= k={k}")
    gamma = check_real(gamma, "gamma")
    n_steps = check_int(n_steps, "n_steps", 0)
    levels = [check_edit_time(model, t, "times") for t in times]
    check_prompt(model, prompt, "prompt")
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
            x0, step = _guide_and_finish(
                model, xt, lv, dirs, gamma=gamma, n_steps=n_steps, step_size=step_size, guide_prompt=prompt, **fkw
            )
            moved = step.norm(dim=1)
            along = (step * dirs.flatten(1)).sum(1) / (moved * dirs.flatten(1).norm(dim=1)).clamp_min(1e-30)
            img = model.to_image(x0)
            size = change_size(img, ref_img[i : i + 1])
            freq = change_frequency(img, ref_img[i : i + 1])
            dist = distance_from_data(model, x0, prompt=prompt) if distance else torch.full((len(dirs),), float("nan"))
            for j in range(len(dirs)):
                table.append(
                    {
                        "t": _time_value(t),
                        "level": lv,
                        "sample": i,
                        "direction": j // 2,
                        "sign": 1 if j % 2 == 0 else -1,
                        "size": float(size[j]),
                        "frequency": float(freq[j]),
                        "distance": float(dist[j]),
                        "distance_original": float(d_ref[i]),
                        "moved": float(moved[j]),
                        "along": float(along[j]) if float(moved[j]) > 0 else float("nan"),
                    }
                )
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
        times=list(times),
        labels=labels,
        originals=torch.stack(originals),
        edits=torch.stack(edits),
        x_t=states,
        x0_original=torch.stack(x0o),
        x0_edits=torch.stack(x0e),
        bases=bases,
        table=table,
    )


def held_out_images(model: "DiffusionModel", n: int = 1, seed: int = 10_000) -> torch.Tensor | None:
    """``(n, *image_shape)`` images of a zoo model's dataset, drawn with ``seed`` (the training draws use
    small seeds, so the default gives held-out images); ``None`` for models that are not zoo models
    (neither bundled nor a folder with a ``zoo.json``) or whose dataset has no images of their shape."""
    from pathlib import Path

    from pullback_utils.zoo import registry
    from pullback_utils.zoo.datasets import DATASETS, make_dataset

    n = check_int(n, "n", 1)
    name = str(model.name)
    if registry.is_bundled(name):
        info = registry.model_info(name)
    elif (Path(name) / "zoo.json").is_file():
        info = registry.read_info(name)
    else:
        return None
    if info.get("dataset") not in DATASETS:
        return None
    imgs = make_dataset(info["dataset"], n, seed=int(seed)).images
    if tuple(imgs.shape[1:]) != tuple(model.image_shape):
        return None
    return imgs.to(model.device, model.dtype)
