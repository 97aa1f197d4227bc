"""Guided edits against naive steps at a matched size of change, many at once.

:func:`matched_edits` edits every sample along every direction (both signs by default) at every
time by x-space guidance, and finds for each edit the naive step ``x_t + alpha v`` along the same
direction whose finished image changes by the same RMS amount, so that a chapter compares the two
at equal size (Park et al.'s argument for guidance over naive traversal; issue 12 item 5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import torch
from tqdm.auto import tqdm

from pullback_utils._validate import check_int, check_real
from pullback_utils.diffusion.ddim import Prompt, Time
from pullback_utils.editing.checks import check_edit_time, check_prompt, check_sign, direction_batch, state_batch
from pullback_utils.editing.config import EditConfig, resolve_config
from pullback_utils.editing.metrics import DEFAULT_STRENGTHS, change_size, match_naive_batch
from pullback_utils.editing.pipeline import finish
from pullback_utils.editing.sweep import _time_value, edit_along

if TYPE_CHECKING:  # pragma: no cover
    from pullback_utils.models.diffusion_model import DiffusionModel

__all__ = ["MatchedEdits", "matched_edits"]


@dataclass
class MatchedEdits:
    """What :func:`matched_edits` returns, for n_t times, n samples and D = K * len(signs) edits each.

    Attributes:
        times, levels: the edit times (as given) and their levels.
        labels: the D edit labels, ``"+d1", "-d1", "+d2", ...`` (direction 1-based, then sign).
        originals: ``(n_t, n, *image_shape)`` the unedited results (x_t finished without a change).
        guided, naive: ``(n_t, n, D, *image_shape)`` the guided edits and the matched naive steps, finished.
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
    raise ValueError(
        f"{name} must be one tensor or a list of {n_t} tensors (one per time), got "
        f"{type(value).__name__}{'' if not isinstance(value, (list, tuple)) else f' of {len(value)}'}"
    )


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
    basis_prompt: Prompt = None,
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
    interpolation, then regula falsi (Illinois) in the bracket). **Tolerance**: every matched naive size lies
    within ``rtol`` (relative) of its target unless ``max_refine`` refinements did not reach it; the
    achieved sizes are in the table, so a chapter can check or filter.

    Args:
        x_t: ``(n, *sample_shape)`` states at ``t``; for several times, a list of n_t such tensors
            (e.g. :func:`states_at_times`) or an (n_t, n, ...) tensor.
        t: one edit time, or a list of n_t times.
        directions: unit directions, ``(K, *sample_shape)`` shared by all samples or (n, K, ...) one set
            per sample; for several times one such tensor for every time or a list of n_t of them.
        target: ``"guided"`` (each naive step matched to its guided edit's change) or an RMS change
            (model range, > 0) that every naive step is matched to (the guided edits are as they are).
        signs: the signs applied to every direction (default both).
        prompt: the generation prompt: naive steps, finishing and (``config.guidance_prompt ==
            "generation"``) guidance (conditional models).
        basis_prompt: the edit prompt the directions were computed under; conditions the guidance
            when ``config.guidance_prompt == "edit"``.
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
            raise ValueError(
                f"directions must have shape (K, *{tuple(model.sample_shape)}) or (n={n}, K, ...), got {tuple(d.shape)}"
            )
        dirs.append(torch.stack([direction_batch(model, di, "directions") for di in d]))
    if any(d.shape[1] != dirs[0].shape[1] for d in dirs):
        raise ValueError("directions must hold the same number K of directions at every time")
    signs = [check_sign(s, "signs") for s in signs]
    if not signs:
        raise ValueError("signs must not be empty")
    if isinstance(target, str) and target != "guided":
        raise ValueError(f"target must be 'guided' or an RMS change > 0, got {target!r}")
    if target != "guided":
        target = check_real(target, "target", positive=True)
    check_prompt(model, prompt, "prompt")
    check_prompt(model, basis_prompt, "basis_prompt")
    seed = check_int(seed, "seed", 0)
    rtol, max_refine = check_real(rtol, "rtol", positive=True), check_int(max_refine, "max_refine", 0)
    strengths = sorted(check_real(a, "strengths", positive=True) for a in strengths)
    if not strengths:
        raise ValueError("strengths must not be empty")
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
            x0g, moved = edit_along(
                model,
                xs[i : i + 1],
                lv,
                v,
                gamma=cfg.gamma,
                n_steps=cfg.n_steps,
                step_size=cfg.step_size,
                basis_prompt=basis_prompt,
                guidance_prompt=cfg.guidance_prompt,
                **fkw,
            )
            g_img = model.to_image(x0g)
            g_size = change_size(g_img, ref_img[i : i + 1])
            goal = g_size if target == "guided" else torch.full_like(g_size, float(target))
            nv = match_naive_batch(
                model,
                xs[i : i + 1],
                lv,
                v,
                goal,
                ref_img[i : i + 1],
                strengths=strengths,
                rtol=rtol,
                max_refine=max_refine,
                **fkw,
            )
            for k, val in (
                ("guided", g_img),
                ("naive", nv["image"]),
                ("x0g", x0g),
                ("x0n", nv["x0"]),
                ("alpha", nv["alpha"]),
                ("matched", nv["matched"]),
            ):
                row[k].append(val)
            for j in range(len(v)):
                table.append(
                    {
                        "t": _time_value(tt),
                        "level": lv,
                        "sample": i,
                        "direction": j // len(signs),
                        "sign": signs[j % len(signs)],
                        "target": float(goal[j]),
                        "guided_size": float(g_size[j]),
                        "naive_size": float(nv["size"][j]),
                        "alpha": float(nv["alpha"][j]),
                        "matched": bool(nv["matched"][j]),
                        "moved": float(moved[j]),
                    }
                )
            bar.update(1)
        out["orig"].append(ref_img)
        for k, vals in row.items():
            out[k].append(torch.stack(vals))
    bar.close()
    st = {k: torch.stack(v) for k, v in out.items()}
    return MatchedEdits(
        times=times,
        levels=levels,
        labels=labels,
        originals=st["orig"],
        guided=st["guided"],
        naive=st["naive"],
        x0_guided=st["x0g"],
        x0_naive=st["x0n"],
        alpha=st["alpha"],
        matched=st["matched"],
        table=table,
    )
