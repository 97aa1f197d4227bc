"""Many edits at once, for the chapters: several samples, directions, signs and times per call.

- :func:`states_at_times`: one DDIM run from x_T keeping the states at the edit times;
- :func:`edit_along`: one x_t guided along several directions and finished, in one batch;
- :func:`direction_sweep`: every sample edited along ``±v_1 .. ±v_n`` of its own basis at every time,
  with a table of measures (:class:`Sweep`);
- :func:`matched_edits`: guided edits and the naive steps ``x_t + alpha v`` of the same size of
  change, side by side (:class:`MatchedEdits`);
- :func:`held_out_images`: images of a zoo model's dataset that it was not trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import torch
from tqdm.auto import tqdm

from pullback_utils.ddim import Prompt, Time, ddim_sample_to_times
from pullback_utils.editing.checks import check_edit_time, check_prompt, check_sign, direction_batch, state_batch
from pullback_utils.editing.config import EditConfig, resolve_config
from pullback_utils.editing.guidance import xspace_guidance
from pullback_utils.editing.metrics import (
    DEFAULT_STRENGTHS,
    change_frequency,
    change_size,
    distance_from_data,
    match_naive_batch,
)
from pullback_utils.editing.pipeline import finish
from pullback_utils.validate import check_int, check_real

if TYPE_CHECKING:  # pragma: no cover
    from pullback_utils.models import DiffusionModel

__all__ = [
    "states_at_times",
    "edit_along",
    "Sweep",
    "direction_sweep",
    "MatchedEdits",
    "matched_edits",
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
    """DDIM-generate ``x_T`` (B, *sample_shape) once, stopping at every time of ``times`` (each in (0, T]).

    Returns the states at ``times``, in the order given (:func:`pullback_utils.ddim.ddim_sample_to_times`:
    each leg with its proportional share of ``sampling_steps``); the same states as
    :func:`~pullback_utils.editing.pipeline.to_edit_time` from noise up to the step grid.
    """
    levels = [check_edit_time(model, t, "times") for t in times]
    total = check_int(sampling_steps, "sampling_steps", 1)
    states, _ = ddim_sample_to_times(model, x_T, levels, steps=total, prompt=prompt, progress=progress)
    return list(states)


def _guide_and_finish(model: "DiffusionModel", x_t: torch.Tensor, t: Time, directions: torch.Tensor, *,
                      gamma: float, n_steps: int, step_size: float, prompt: Prompt, sampling_steps: int,
                      eta_below: float | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(x0 (D, *sample_shape), step (D, dim x)): guidance of one x_t along D directions, finished,
    and the move ``x^(N) - x^(0)`` of each."""
    it = xspace_guidance(model, x_t, t, directions, gamma=gamma, n_steps=n_steps, step_size=step_size, prompt=prompt)
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
) -> tuple[torch.Tensor, torch.Tensor]:
    """Guide one ``x_t`` (1, *sample_shape) along each of ``directions`` (D, *sample_shape) in one batch
    and finish to t = 0.

    Returns ``(x0, moved)``: (D, *sample_shape) finished edits (latents for latent models) and (D,)
    ``||x^(N) - x^(0)||``, how far guidance moved x_t.
    """
    x0, step = _guide_and_finish(model, x_t, t, directions, gamma=gamma, n_steps=n_steps, step_size=step_size,
                                 prompt=prompt, sampling_steps=sampling_steps, eta_below=eta_below, seed=seed)
    return x0, step.norm(dim=1)


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
            x0, step = _guide_and_finish(model, xt, lv, dirs, gamma=gamma, n_steps=n_steps, step_size=step_size,
                                         **fkw)
            moved = step.norm(dim=1)
            along = (step * dirs.flatten(1)).sum(1) / (moved * dirs.flatten(1).norm(dim=1)).clamp_min(1e-30)
            img = model.to_image(x0)
            size = change_size(img, ref_img[i : i + 1])
            freq = change_frequency(img, ref_img[i : i + 1])
            dist = distance_from_data(model, x0, prompt=prompt) if distance else torch.full((len(dirs),), float("nan"))
            for j in range(len(dirs)):
                table.append({
                    "t": _time_value(t), "level": lv, "sample": i,
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


# --------------------------------------------------------------------------------------------------
# guided vs naive at a matched size of change
# --------------------------------------------------------------------------------------------------
@dataclass
class MatchedEdits:
    """What :func:`matched_edits` returns, for n_t times, n samples and D = K * len(signs) edits each.

    Attributes:
        times, levels: the edit times (as given) and their levels.
        labels: the D edit labels, ``"+d1", "-d1", "+d2", ...`` (direction 1-based, then sign).
        originals: (n_t, n, *image_shape) the unedited results (x_t finished without a change).
        guided, naive: (n_t, n, D, *image_shape) the guided edits and the matched naive steps, finished.
        x0_guided, x0_naive: the same before decoding (latents for latent models).
        alpha: (n_t, n, D) the naive step lengths; matched: (n_t, n, D) bool, False where no strength
            of the grid reached the target (the largest was used).
        table: one dict per edit: ``t``, ``level``, ``sample``, ``direction`` (0-based), ``sign``,
            ``target``, ``guided_size``, ``naive_size``, ``alpha``, ``matched``, ``moved``
            (``||x^(N) - x^(0)||`` of guidance).
    """

    times: list
    levels: list[int]
    labels: list[str]
    originals: torch.Tensor
    guided: torch.Tensor
    naive: torch.Tensor
    x0_guided: torch.Tensor
    x0_naive: torch.Tensor
    alpha: torch.Tensor
    matched: torch.Tensor
    table: list[dict[str, Any]]


def _per_time(value: Any, n_t: int, name: str) -> list[Any]:
    """``value`` for each of n_t times: a list/tuple of n_t items, or one tensor used for every time."""
    if isinstance(value, torch.Tensor):
        return [value] * n_t
    if isinstance(value, (list, tuple)) and len(value) == n_t:
        return list(value)
    raise ValueError(f"{name} must be one tensor or a list of {n_t} tensors (one per time), got "
                     f"{type(value).__name__}{'' if not isinstance(value, (list, tuple)) else f' of {len(value)}'}")


@torch.no_grad()
def matched_edits(
    model: "DiffusionModel",
    x_t: torch.Tensor | Sequence[torch.Tensor],
    t: Time | Sequence[Time],
    directions: torch.Tensor | Sequence[torch.Tensor],
    *,
    config: EditConfig | None = None,
    target: str | float = "guided",
    signs: Sequence[int] = (1, -1),
    prompt: Prompt = None,
    seed: int = 0,
    strengths: Sequence[float] = DEFAULT_STRENGTHS,
    rtol: float = 0.05,
    max_refine: int = 4,
    progress: bool = True,
    **overrides: Any,
) -> MatchedEdits:
    """Guided edits and the naive steps ``x_t + alpha v`` with the same RMS change of the finished image.

    For every time, sample, direction and sign: x-space guidance along ``sign * v`` (settings
    ``gamma``, ``n_steps``, ``step_size``, ``sampling_steps``, ``eta_below`` of ``config``, default
    ``EditConfig.for_model(model)``, with ``overrides``), finished to t = 0; then the naive step
    along the same ``sign * v`` whose finished image changes from the unedited one by the same RMS
    amount (:func:`~pullback_utils.editing.metrics.match_naive_batch`: the grid ``strengths``, linear
    interpolation, then regula falsi in the bracket). **Tolerance**: every matched naive size lies
    within ``rtol`` (relative) of its target unless ``max_refine`` refinements did not reach it; the
    achieved sizes are in the table, so a chapter can check or filter.

    Args:
        x_t: (n, *sample_shape) states at ``t``; for several times, a list of n_t such tensors
            (e.g. :func:`states_at_times`) or an (n_t, n, ...) tensor.
        t: one edit time, or a list of n_t times.
        directions: unit directions, (K, *sample_shape) shared by all samples or (n, K, ...) one set
            per sample; for several times one such tensor for every time or a list of n_t of them.
        target: ``"guided"`` (each naive step matched to its guided edit's change) or an RMS change
            (model range, > 0) that every naive step is matched to (the guided edits are as they are).
        signs: the signs applied to every direction (default both).
        prompt: conditioning of guidance, naive steps and finishing (conditional models).
        seed: seed of the stochastic final steps (``eta_below``).
        progress: tqdm bar over (time, sample).
    """
    cfg = resolve_config(model, config, overrides)
    several = isinstance(t, (list, tuple))
    times = list(t) if several else [t]
    levels = [check_edit_time(model, tt, "t") for tt in times]
    n_t = len(levels)
    states = list(x_t) if several else [x_t]
    if len(states) != n_t:
        raise ValueError(f"x_t must hold the states at each of the {n_t} times, got {len(states)}")
    states = [state_batch(model, s, "x_t") for s in states]
    n = states[0].shape[0]
    if any(s.shape[0] != n for s in states):
        raise ValueError("x_t must hold the same number of samples at every time")
    dirs = []
    for d in _per_time(directions, n_t, "directions") if several else [directions]:
        if not isinstance(d, torch.Tensor):
            raise TypeError(f"directions must be torch.Tensors, got {type(d).__name__}")
        d = d.unsqueeze(0).expand(n, *d.shape) if d.dim() == len(model.sample_shape) + 1 else d
        if d.dim() != len(model.sample_shape) + 2 or d.shape[0] != n:
            raise ValueError(f"directions must have shape (K, *{tuple(model.sample_shape)}) or (n={n}, K, ...), "
                             f"got {tuple(d.shape)}")
        dirs.append(torch.stack([direction_batch(model, di, "directions") for di in d]))
    signs = [check_sign(s, "signs") for s in signs]
    if not signs:
        raise ValueError("signs must not be empty")
    if not (isinstance(target, str) and target == "guided"):
        target = check_real(target, "target", positive=True)
    check_prompt(model, prompt, "prompt")
    seed = check_int(seed, "seed", 0)
    K = dirs[0].shape[1]
    labels = [f"{'+' if sg > 0 else '-'}d{j + 1}" for j in range(K) for sg in signs]
    fkw = dict(sampling_steps=cfg.sampling_steps, prompt=prompt, eta_below=cfg.eta_below, seed=seed)
    out: dict[str, list] = {k: [] for k in ("orig", "guided", "naive", "x0g", "x0n", "alpha", "matched")}
    table: list[dict[str, Any]] = []
    bar = tqdm(total=n_t * n, desc="matched edits", disable=not progress)
    for tt, lv, xs, ds in zip(times, levels, states, dirs):
        ref_img = model.to_image(finish(model, xs, lv, **fkw))
        row = {k: [] for k in out if k != "orig"}
        for i in range(n):
            v = torch.stack([sg * ds[i, j] for j in range(K) for sg in signs])
            x0g, step = _guide_and_finish(model, xs[i : i + 1], lv, v, gamma=cfg.gamma, n_steps=cfg.n_steps,
                                          step_size=cfg.step_size, **fkw)
            g_img = model.to_image(x0g)
            g_size = change_size(g_img, ref_img[i : i + 1])
            goal = g_size if target == "guided" else torch.full_like(g_size, float(target))
            nv = match_naive_batch(model, xs[i : i + 1], lv, v, goal, ref_img[i : i + 1], strengths=strengths,
                                   rtol=rtol, max_refine=max_refine, **fkw)
            for (k, val) in (("guided", g_img), ("naive", nv["image"]), ("x0g", x0g), ("x0n", nv["x0"]),
                             ("alpha", nv["alpha"]), ("matched", nv["matched"])):
                row[k].append(val)
            moved = step.norm(dim=1)
            for j in range(len(v)):
                table.append({
                    "t": _time_value(tt), "level": lv, "sample": i, "direction": j // len(signs),
                    "sign": signs[j % len(signs)], "target": float(goal[j]), "guided_size": float(g_size[j]),
                    "naive_size": float(nv["size"][j]), "alpha": float(nv["alpha"][j]),
                    "matched": bool(nv["matched"][j]), "moved": float(moved[j]),
                })
            bar.update(1)
        out["orig"].append(ref_img)
        for k, vals in row.items():
            out[k].append(torch.stack(vals))
    bar.close()
    st = {k: torch.stack(v) for k, v in out.items()}
    return MatchedEdits(
        times=times, levels=levels, labels=labels, originals=st["orig"], guided=st["guided"], naive=st["naive"],
        x0_guided=st["x0g"], x0_naive=st["x0n"], alpha=st["alpha"], matched=st["matched"], table=table,
    )


# --------------------------------------------------------------------------------------------------
# data of the zoo models
# --------------------------------------------------------------------------------------------------
def held_out_images(model: "DiffusionModel", n: int = 1, seed: int = 10_000) -> torch.Tensor | None:
    """(n, *image_shape) images of a zoo model's dataset, drawn with ``seed`` (the training draws use
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
