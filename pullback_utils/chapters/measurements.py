"""Measurement pipelines shared by the chapters: what to compute for a claim, its baseline and its control.

:func:`tangent_study` is the common start of the coarse-to-fine and timestep-discrepancy chapters:
seeded DDIM trajectories, the local bases at every kept time, their spectrum-matched random twins, and
the same bases of a random-weight network of the same architecture at the *same* states ``x_t``
(the control: an effect that the random network shows too is not learned). :func:`noise_floor_sweep`
and :func:`crossed_bases` add the solver noise floor and the state x time-input ablation.

Everything goes through the basis cache, so chapters that share parameters share their bases. Every
function takes ``cluster=`` (where the sweeps run: :mod:`pullback_utils.sweeps.distributed`; ``None`` is the
process default, which a chapter's ``cluster`` parameter sets).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from pullback_utils._validate import check_int
from pullback_utils.analysis.baselines import random_weight_model
from pullback_utils.analysis.geometry import geodesic_distance
from pullback_utils.sweeps.bases import BasisSweep, Trajectories, bases_over, sample_trajectories, storage_dtype
from pullback_utils.zoo.registry import model_dataset

__all__ = [
    "TangentStudy",
    "tangent_study",
    "noise_floor_sweep",
    "crossed_bases",
    "edits_at_matched_size",
    "PromptStudy",
    "prompt_study",
    "prompt_distances",
    "ModelSweep",
    "model_sweeps",
    "ladder_plan",
    "inversion_round_trip",
    "model_dataset",
    "guided_vs_naive",
    "variant_sweep",
    "edit_strength_series",
]


@dataclass
class TangentStudy:
    """Trajectories, bases, their spectrum-matched twins and the random-weight control.

    Attributes:
        traj: :class:`~pullback_utils.sweeps.bases.Trajectories` of the trained model.
        sweep: bases at every time of ``traj`` (``(n_t, n, k, ...)``).
        matched: ``sweep`` with every basis replaced by a spectrum-matched random one.
        control: bases of the random-weight network at ``control_times`` on the same states.
        control_times: the times of ``control``.
        control_name: the control model's name.
    """

    traj: Trajectories
    sweep: BasisSweep
    matched: BasisSweep
    control: BasisSweep
    control_times: list
    control_name: str

    @property
    def times(self) -> list:
        return list(self.traj.times)


def tangent_study(
    model: Any,
    *,
    n: int,
    seed: int,
    times: Sequence[float],
    k: int,
    ddim_steps: int,
    control_times: Sequence[float],
    cache_dir: Any = None,
    solver: dict | None = None,
    progress: bool = True,
    cluster: Any = None,
) -> TangentStudy:
    """Run the shared measurements of the tangent-space chapters (module doc).

    Args:
        model: a :class:`~pullback_utils.models.diffusion_model.DiffusionModel`.
        n, seed: samples (seeded noise draws).
        times: kept times (fractions of ``T``); control_times: a subset of them for the control.
        k: basis size; ddim_steps: DDIM steps over ``[0, T]``.
        cache_dir: basis cache; solver: options of :func:`~pullback_utils.engine.solvers.jacobian_svd`.
        cluster: where the sweeps run (:func:`pullback_utils.sweeps.bases.bases_over`; ``None``: the default).
    """
    solver = dict(solver or {})
    missing = [t for t in control_times if t not in list(times)]
    if missing:
        raise ValueError(f"control_times must be among times={list(times)}; {missing} are not")
    traj = sample_trajectories(model, n, seed, list(times), steps=ddim_steps)
    dtype = storage_dtype(len(times), n, k, model.sample_shape)
    sweep = bases_over(
        model,
        traj.x,
        traj.times,
        k,
        cache_dir=cache_dir,
        desc="bases",
        dtype=dtype,
        progress=progress,
        cluster=cluster,
        **solver,
    )
    ctrl = random_weight_model(model, seed=seed)
    idx = [list(times).index(t) for t in control_times]
    control = bases_over(
        ctrl,
        traj.x[idx],
        list(control_times),
        k,
        cache_dir=cache_dir,
        desc="bases (random weights)",
        dtype=dtype,
        progress=progress,
        cluster=cluster,
        **solver,
    )
    return TangentStudy(
        traj=traj,
        sweep=sweep,
        matched=sweep.spectrum_matched(seed=seed),
        control=control,
        control_times=list(control_times),
        control_name=ctrl.name,
    )


def variant_sweep(
    model: Any,
    study: TangentStudy,
    fractions: Sequence[float],
    times: Sequence[float],
    *,
    n: int,
    k: int,
    layer: str = "mid",
    solver: dict | None = None,
    cache_dir: Any = None,
    progress: bool = False,
    cluster: Any = None,
) -> BasisSweep:
    """Bases of the study's first ``n`` states at the kept times ``times`` (fractions of ``T``, a subset of
    ``fractions``, the study's times) under another analysis choice: another feature ``layer`` or other
    ``solver`` options (e.g. another ``tol``). The sensitivity rows of the chapters; with the basis cache
    two chapters that ask for the same variant compute it once. ``(len(times), n, k, ...)``."""
    fr = [float(f) for f in fractions]
    missing = [t for t in times if float(t) not in fr]
    if missing:
        raise ValueError(f"times {missing} are not among the study's times {fr}")
    if not 1 <= int(n) <= study.traj.x.shape[1]:
        raise ValueError(f"n must be in [1, {study.traj.x.shape[1]}] (the study's samples), got {n!r}")
    idx = [fr.index(float(t)) for t in times]
    return bases_over(
        model,
        study.traj.x[idx, : int(n)],
        [study.traj.times[i] for i in idx],
        k,
        layer=layer,
        cache_dir=cache_dir,
        progress=progress,
        cluster=cluster,
        desc=f"bases ({layer})",
        **dict(solver or {}),
    )


def _dist(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(geodesic_distance(a.reshape(a.shape[0], -1).double(), b.reshape(b.shape[0], -1).double()))


def noise_floor_sweep(
    model: Any,
    study: TangentStudy,
    times: Sequence[float],
    *,
    cache_dir: Any = None,
    solver: dict | None = None,
    side: str = "u",
    progress: bool = True,
    cluster: Any = None,
) -> np.ndarray:
    """``(n,)`` per sample: the distance between its basis and a recomputation with another solver seed,
    averaged over ``times`` -- the resolution of the distances the chapter reports."""
    solver = dict(solver or {})
    seed = int(solver.pop("seed", 0))
    idx = [study.times.index(t) for t in times]
    again = bases_over(
        model,
        study.traj.x[idx],
        list(times),
        study.sweep.k,
        cache_dir=cache_dir,
        desc="bases (other solver seed)",
        progress=progress,
        seed=seed + 1,
        cluster=cluster,
        **solver,
    )
    a, b = study.sweep.side(side)[idx], again.side(side)
    return np.array([[_dist(a[i, j], b[i, j]) for j in range(a.shape[1])] for i in range(a.shape[0])]).mean(0)


def crossed_bases(
    model: Any,
    study: TangentStudy,
    t_a: float,
    t_b: float,
    *,
    cache_dir: Any = None,
    solver: dict | None = None,
    progress: bool = True,
    cluster: Any = None,
    control: bool = False,
) -> dict[str, dict[str, np.ndarray]]:
    """The 2 x 2 ablation: per sample, bases at (state x_ta or x_tb) x (time input t_a or t_b).

    Returns ``{side: {"total", "time_only", "state_only"}}`` arrays ``(n,)`` for sides ``"v"``, ``"u"``:
    ``total`` = d(B(x_ta, t_a), B(x_tb, t_b)); ``time_only`` = mean of d(B(x_ta, t_a), B(x_ta, t_b)) and
    d(B(x_tb, t_a), B(x_tb, t_b)) (state fixed); ``state_only`` = mean of d(B(x_ta, t_a), B(x_tb, t_a)) and
    d(B(x_ta, t_b), B(x_tb, t_b)) (time input fixed).

    ``control``: the same ablation on the study's random-weight control (``model`` is then that network,
    :func:`~pullback_utils.analysis.baselines.random_weight_model`; ``t_a`` and ``t_b`` must be among the
    study's ``control_times``), on the same states and samples.
    """
    sweep, times = (study.control, study.control_times) if control else (study.sweep, study.times)
    missing = [t for t in (t_a, t_b) if t not in times]
    if missing:
        raise ValueError(
            f"t_a, t_b must be among the {'control ' if control else ''}times {list(times)}; {missing} are not"
        )
    ia, ib = times.index(t_a), times.index(t_b)
    xa, xb = study.traj.x[study.times.index(t_a)], study.traj.x[study.times.index(t_b)]
    crossed = bases_over(
        model,
        torch.stack([xa, xb]),
        [t_b, t_a],
        sweep.k,
        cache_dir=cache_dir,
        desc="bases (crossed" + (", random weights)" if control else ")"),
        progress=progress,
        cluster=cluster,
        **dict(solver or {}),
    )
    out = {}
    for side in ("v", "u"):
        aa, bb = sweep.side(side)[ia], sweep.side(side)[ib]
        ab, ba = crossed.side(side)[0], crossed.side(side)[1]  # B(x_ta, t_b), B(x_tb, t_a)
        n = aa.shape[0]
        out[side] = {
            "total": np.array([_dist(aa[j], bb[j]) for j in range(n)]),
            "time_only": np.array([0.5 * (_dist(aa[j], ab[j]) + _dist(ba[j], bb[j])) for j in range(n)]),
            "state_only": np.array([0.5 * (_dist(aa[j], ba[j]) + _dist(ab[j], bb[j])) for j in range(n)]),
        }
    return out


def edits_at_matched_size(
    model: Any,
    study: TangentStudy,
    times: Sequence[float],
    *,
    gamma: float,
    n_steps: int,
    sampling_steps: int,
    scales: Sequence[float] = (0.5, 1.0, 2.0, 4.0),
    progress: bool = True,
) -> dict[str, Any]:
    """Edits along ``+-v_1`` of every sample at each time in ``times``, at one matched size of change.

    For each sample and time, guidance runs with ``gamma * s`` for every ``s`` of ``scales``; the RMS
    change of the finished image (mean over both signs) is interpolated in ``log gamma`` to the target
    size (the median change at ``gamma`` over samples at the first time), and the edit is redone at
    that gamma. Returns ``{"frequency": (n_times, n), "size": (n_times, n), "gamma": (n_times, n),
    "target": float, "images": (n_times, n, 3, *image_shape)}`` (``-v_1``, original, ``+v_1``).
    """
    from tqdm.auto import tqdm

    from pullback_utils import editing as ed

    idx = [study.times.index(t) for t in times]
    n = study.traj.n
    grid = np.log(np.asarray(scales, dtype=np.float64) * gamma)

    def run(i_t: int, j: int, g: float) -> tuple[torch.Tensor, torch.Tensor]:
        x = study.traj.x[i_t, j : j + 1]
        v1 = study.sweep.v[i_t, j, 0].to(model.dtype)
        guided = ed.xspace_guidance(model, x, study.times[i_t], torch.stack([v1, -v1]), gamma=g, n_steps=n_steps)[-1]
        out = model.to_image(ed.finish(model, torch.cat([x, guided]), study.times[i_t], sampling_steps=sampling_steps))
        return out[:1], out[1:]

    sizes = np.zeros((len(idx), n, len(scales)))
    bar = tqdm(total=len(idx) * n * (len(scales) + 1), desc="edits", disable=not progress)
    for a, i_t in enumerate(idx):
        for j in range(n):
            for c, s in enumerate(scales):
                orig, both = run(i_t, j, gamma * s)
                sizes[a, j, c] = float(ed.change_size(both, orig.expand_as(both)).mean())
                bar.update(1)
    target = float(np.median(sizes[0, :, list(scales).index(1.0) if 1.0 in scales else 0]))
    freq, size, gam = np.zeros((len(idx), n)), np.zeros((len(idx), n)), np.zeros((len(idx), n))
    images = []
    for a, i_t in enumerate(idx):
        row = []
        for j in range(n):
            ls = np.log(np.maximum(sizes[a, j], 1e-12))
            order = np.argsort(ls)
            g = float(np.exp(np.interp(np.log(target), ls[order], grid[order])))
            orig, both = run(i_t, j, g)
            freq[a, j] = float(np.nanmean(ed.change_frequency(both, orig.expand_as(both)).numpy()))
            size[a, j] = float(ed.change_size(both, orig.expand_as(both)).mean())
            gam[a, j] = g
            row.append(torch.cat([both[1:], orig, both[:1]]).clamp(-1, 1))
            bar.update(1)
        images.append(torch.stack(row))
    bar.close()
    return {"frequency": freq, "size": size, "gamma": gam, "target": target, "images": torch.stack(images)}


@dataclass
class PromptStudy:
    """Bases of the same states under several prompts (and the empty prompt), trained and control.

    ``bases[p]`` and ``empty`` are sweeps ``(n_t, S, k, ...)`` over the ``S`` prompt-states (seeded
    states generated without a prompt); ``control[p]``/``control_empty`` the same for the random-weight
    network on the first ``n_control`` states.
    """

    prompts: list[str]
    traj: Trajectories
    bases: dict[str, BasisSweep]
    empty: BasisSweep
    control: dict[str, BasisSweep]
    control_empty: BasisSweep
    control_name: str


def prompt_study(
    model: Any,
    prompts: Sequence[str],
    *,
    n_states: int,
    n_control: int,
    seed: int,
    times: Sequence[float],
    k: int,
    ddim_steps: int,
    cache_dir: Any = None,
    solver: dict | None = None,
    progress: bool = True,
    cluster: Any = None,
) -> PromptStudy:
    """Run the prompt chapter's measurements (see :class:`PromptStudy`)."""
    if not getattr(model, "is_conditional", False):
        raise ValueError(
            f"model {getattr(model, 'name', model)!r} is unconditional; the prompt study needs a text-conditional model"
        )
    if len(set(prompts)) != len(prompts) or len(prompts) < 4:
        raise ValueError(f"prompts must be at least 4 distinct strings, got {list(prompts)!r}")
    n_states = check_int(n_states, "n_states", 2)
    n_control = check_int(n_control, "n_control", 2)  # the control's fading test needs 2 prompt-states
    if n_control > n_states:
        raise ValueError(
            f"n_control must be at most n_states={n_states} (the control's states are among them), got {n_control}"
        )
    for p in prompts:
        model.conditioning(p)  # encodes, and so checks, every prompt before heavy compute
    solver = dict(solver or {})
    traj = sample_trajectories(model, n_states, seed, list(times), steps=ddim_steps)

    def sweep(m: Any, x: torch.Tensor, prompt: str | None, desc: str) -> BasisSweep:
        return bases_over(
            m,
            x,
            list(times),
            k,
            prompt=prompt,
            cache_dir=cache_dir,
            desc=desc,
            progress=progress,
            cluster=cluster,
            **solver,
        )

    bases = {p: sweep(model, traj.x, p, p[:28]) for p in prompts}
    empty = sweep(model, traj.x, None, "(empty prompt)")
    ctrl = random_weight_model(model, seed=seed)
    xc = traj.x[:, :n_control]
    control = {p: sweep(ctrl, xc, p, f"{p[:20]} (random weights)") for p in prompts}
    return PromptStudy(
        list(prompts), traj, bases, empty, control, sweep(ctrl, xc, None, "(empty, random weights)"), ctrl.name
    )


def prompt_distances(
    bases: dict[str, BasisSweep], empty: BasisSweep, prompts: Sequence[str], side: str = "u"
) -> tuple[np.ndarray, np.ndarray]:
    """``(D, E)``: ``D`` ``(n_t, S, P, P)`` distances between the prompts' bases of each state and time;
    ``E`` ``(n_t, S, P)`` distance of each prompt's basis to the empty prompt's."""
    from pullback_utils.analysis.geometry import pairwise_geodesic_distances

    B = torch.stack([bases[p].side(side) for p in prompts], dim=2)  # (n_t, S, P, k, ...)
    e = empty.side(side)
    n_t, n_s, p = B.shape[:3]
    D = np.zeros((n_t, n_s, p, p))
    E = np.zeros((n_t, n_s, p))
    for i in range(n_t):
        for j in range(n_s):
            D[i, j] = np.asarray(pairwise_geodesic_distances(B[i, j].double().numpy()))
            E[i, j] = [_dist(B[i, j, a], e[i, j]) for a in range(p)]
    return D, E


@dataclass
class ModelSweep:
    """One model's bases at seeded states, their same-spectrum twins, and (optionally) a control."""

    name: str
    sweep: BasisSweep
    matched: BasisSweep
    control: BasisSweep | None = None


def model_sweeps(
    names: Sequence[str],
    *,
    n: int,
    seed: int,
    times: Sequence[float],
    k: int,
    ddim_steps: int,
    control_n: int = 0,
    control_times: Sequence[float] = (),
    cache_dir: Any = None,
    solver: dict | None = None,
    progress: bool = True,
    loader: Any = None,
    cluster: Any = None,
) -> dict[str, ModelSweep]:
    """The same sweep on several models (the unit of the dataset-complexity claim is the model).

    Each model gets ``n`` seeded samples at ``times``; with ``control_n > 0`` the first ``control_n``
    states at ``control_times`` also go through a random-weight network of the model's architecture.
    ``loader``: how a name becomes a model (default :func:`pullback_utils.load_model`).
    """
    from tqdm.auto import tqdm

    if loader is None:
        from pullback_utils.zoo.loading import load_model as loader
    out = {}
    for name in tqdm(list(names), desc="models", disable=not progress):
        m = loader(name)
        traj = sample_trajectories(m, n, seed, list(times), steps=ddim_steps)
        sw = bases_over(
            m,
            traj.x,
            list(times),
            k,
            cache_dir=cache_dir,
            desc=str(name),
            progress=False,
            cluster=cluster,
            **dict(solver or {}),
        )
        ctrl = None
        if control_n > 0:
            idx = [list(times).index(t) for t in control_times]
            ctrl = bases_over(
                random_weight_model(m, seed=seed),
                traj.x[idx, :control_n],
                list(control_times),
                k,
                cache_dir=cache_dir,
                progress=False,
                cluster=cluster,
                **dict(solver or {}),
            )
        out[name] = ModelSweep(name, sw, sw.spectrum_matched(seed=seed), ctrl)
    return out


def ladder_plan(rungs: Sequence[int], seeds: Sequence[int]) -> dict[str, Any]:
    """The ladder models of a design and which are present: ``{"present", "missing", "table"}``.

    Unknown rungs or seeds raise ``ValueError`` naming the valid ones; models without weights are listed
    as missing (the chapter reports them, the test runs on the others)."""
    from pullback_utils.zoo import ladder, registry

    if not rungs or not seeds:
        raise ValueError(f"rungs and seeds must be non-empty lists, got rungs={rungs!r}, seeds={seeds!r}")
    for r in rungs:
        ladder.check_rung(r)
    bad = [s for s in seeds if s not in registry.LADDER_SEEDS]
    if bad:
        raise ValueError(f"seeds: unknown ladder training seed(s) {bad}; valid seeds: {list(registry.LADDER_SEEDS)}")
    names = [registry.ladder_name(r, s) for r in rungs for s in seeds]
    present = [n for n in names if registry.is_bundled(n)]
    missing = [n for n in names if n not in present]
    rows = ["| rung | free factors | seed | model | weights |", "|---|---|---|---|---|"]
    for n in names:
        e = registry.MODELS[n]
        rows.append(
            f"| {e['rung']} ({ladder.RUNG_NAMES[e['rung']]}) | {ladder.n_factors(e['rung'])} | {e['seed']} | "
            f"`{n}` | {'present' if n in present else '**missing** (not trained)'} |"
        )
    return {"present": present, "missing": missing, "table": "\n".join(rows)}


def inversion_round_trip(
    model: Any, images: torch.Tensor, *, steps: Sequence[int], fixed_point_iters: Sequence[int], t: float = 1.0
) -> list[dict[str, float]]:
    """How faithful DDIM inversion is: invert ``images`` to ``t``, sample back with the same grid, compare.

    For every combination of ``steps`` (DDIM steps over ``[0, T]``) and ``fixed_point_iters`` (extra
    network calls per inversion step, :func:`pullback_utils.diffusion.ddim.ddim_invert`), returns one row with the
    relative error ``||x0' - x0|| / ||x0||``, the PSNR (dB, model range [-1, 1], peak-to-peak 2) and the
    number of network evaluations per image (inversion plus sampling).
    """
    from pullback_utils.diffusion.ddim import ddim_invert, ddim_sample
    from pullback_utils.diffusion.schedule import leg_steps

    x0 = model.to_latent(images) if getattr(model, "is_latent", False) else images
    level = model.level(t)
    rows = []
    for s in steps:
        n = leg_steps(int(s), level, 0, model.num_train_timesteps)
        for f in fixed_point_iters:
            xt = ddim_invert(model, x0, t, steps=n, fixed_point_iters=int(f))
            back = ddim_sample(model, xt, t, 0, steps=n)
            err = float((back - x0).flatten(1).norm(dim=1).div(x0.flatten(1).norm(dim=1)).mean())
            mse = float((back - x0).pow(2).mean())
            rows.append(
                {
                    "steps": int(s),
                    "fixed_point_iters": int(f),
                    "relative_error": err,
                    "psnr_db": float(10 * np.log10(4.0 / max(mse, 1e-20))),
                    "evaluations": n * (2 + int(f)),
                }
            )
    return rows


def guided_vs_naive(
    model: Any,
    *,
    n: int,
    seed: int,
    times: Sequence[float],
    k: int,
    config: Any,
    cache_dir: Any = None,
    solver: dict | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """The editing claim's measurements: every sample edited along ``+-v_1`` of its own basis at every
    time by x-space guidance, and by the naive step of the same size of change
    (:func:`pullback_utils.editing.matched_edits`), each result scored *without the model*: the RMS
    residual of the best-fitting rendering of the zoo's renderer (how far the image is from any valid
    rendering). Models without a renderer fall back to the model's own denoising error (stated in
    ``measure``).

    Returns ``{"states", "sweep", "edits", "measure", "guided", "naive", "original"}`` with scores
    ``(n_t, n, 2)`` for the two signs and ``(n_t, n)`` for the unedited results.
    """
    from pullback_utils import editing as ed
    from pullback_utils.zoo.fitting import fit_family

    states = ed.states_at_times(model, model.noise(n, seed), list(times), sampling_steps=config.sampling_steps)
    sweep = bases_over(
        model,
        torch.stack(states),
        list(times),
        k,
        cache_dir=cache_dir,
        progress=progress,
        desc="bases",
        **dict(solver or {}),
    )
    edits = ed.matched_edits(
        model,
        states,
        list(times),
        [sweep.v[i, :, :1] for i in range(len(times))],
        config=config,
        seed=seed,
        progress=progress,
    )
    dataset = model_dataset(model)
    if dataset is not None and fit_family(dataset) is not None:
        measure = "renderer residual (RMS per pixel in [0, 1] of the best-fitting rendering)"

        def score(images: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
            flat = images.reshape(-1, *images.shape[-3:]).clamp(-1, 1)
            return ed.renderer_residual(flat, dataset).reshape(images.shape[:-3])
    else:
        measure = "the model's own denoising error (no renderer for this model's data)"

        def score(images: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
            flat = x0.reshape(-1, *x0.shape[-3:])
            return ed.distance_from_data(model, flat).reshape(x0.shape[:-3])

    x0_orig = model.to_latent(edits.originals) if model.is_latent else edits.originals
    return {
        "states": states,
        "sweep": sweep,
        "edits": edits,
        "measure": measure,
        "guided": score(edits.guided, edits.x0_guided).numpy(),
        "naive": score(edits.naive, edits.x0_naive).numpy(),
        "original": score(edits.originals, x0_orig).numpy(),
    }


@torch.no_grad()
def edit_strength_series(
    model: Any,
    x_t: torch.Tensor,
    t: float,
    direction: torch.Tensor,
    *,
    config: Any,
    frames: int = 4,
    seed: int = 0,
    rtol: float = 0.05,
) -> dict[str, Any]:
    """One state edited from ``-v`` to ``+v`` at growing strength, each edit beside the naive step of the
    same size of change (the editing chapter's interactive figure).

    Guidance along ``-v`` and ``+v`` (x-space guidance, ``config``'s ``gamma``, ``n_steps`` = N and
    ``step_size``); the iterates ``j`` of ``frames`` evenly spaced steps ``0 .. N`` of each sign are
    finished to t = 0 (``config``'s ``sampling_steps``, ``eta_below``), ordered ``-v`` at j = N, ...,
    the unedited result (j = 0), ..., ``+v`` at j = N. For each, the naive step ``x_t + alpha (+-v)``
    whose finished image changes by the same RMS amount
    (:func:`pullback_utils.editing.metrics.match_naive_batch`, relative tolerance ``rtol``; the unedited
    frame has ``alpha = 0``).

    Args:
        x_t: ``(1, *sample_shape)`` the state at ``t``; direction: ``(*sample_shape)`` the direction ``v``
            (normalised here), e.g. ``v_1`` of the state's basis.
        frames: guidance steps shown per sign, including j = 0 (>= 2); the series has ``2 frames - 1``
            entries when the steps are distinct.

    Returns:
        dict with ``labels`` (one per entry, e.g. ``"-v1, j = 8 of 8"``), ``signs`` and ``steps`` (per
        entry), ``guided`` and ``naive`` ``(E, *image_shape)`` images in model range, ``size`` (E,) the RMS
        change of each guided edit, ``naive_size`` (E,), ``alpha`` (E,), ``matched`` (E,) bool, and
        ``original`` ``(1, *image_shape)`` the unedited result.
    """
    from pullback_utils import editing as ed
    from pullback_utils.editing.checks import check_edit_time, direction_batch, state_batch
    from pullback_utils.editing.metrics import change_size, match_naive_batch

    frames = check_int(frames, "frames", 2)
    level = check_edit_time(model, t, "t")
    x = state_batch(model, x_t, "x_t")
    if x.shape[0] != 1:
        raise ValueError(f"x_t must hold one state (1, *sample_shape), got batch {x.shape[0]}")
    d = direction_batch(model, direction, "direction")
    if d.shape[0] != 1 or not float(d.norm()) > 0:
        raise ValueError(
            f"direction must be one non-zero direction (*sample_shape), got shape {tuple(direction.shape)}"
        )
    d = d / d.norm()
    n_steps = int(config.n_steps)
    steps = sorted({int(round(i * n_steps / (frames - 1))) for i in range(frames)} - {0})
    fkw = dict(sampling_steps=config.sampling_steps, eta_below=config.eta_below, seed=seed)
    x0_ref = ed.finish(model, x, level, **fkw)
    original = model.to_image(x0_ref)
    guided = {0: original}
    for sign in (-1, 1):
        it = ed.xspace_guidance(
            model, x, level, sign * d, gamma=config.gamma, n_steps=n_steps, step_size=config.step_size
        )
        if steps:
            imgs = model.to_image(ed.finish(model, it[steps, 0], level, **fkw))
            guided.update({sign * j: imgs[i : i + 1] for i, j in enumerate(steps)})
    order = [-j for j in reversed(steps)] + [0] + steps
    g = torch.cat([guided[j] for j in order])
    size = change_size(g, original.expand_as(g))
    signs = [(j > 0) - (j < 0) for j in order]
    dirs = torch.cat([(s or 1) * d for s in signs])
    nv = match_naive_batch(model, x, level, dirs, size, original, rtol=rtol, **fkw)
    labels = [f"{'+' if j > 0 else '-'}v1, j = {abs(j)} of {n_steps}" if j else "unedited (j = 0)" for j in order]
    return {
        "labels": labels,
        "signs": signs,
        "steps": [abs(j) for j in order],
        "guided": g,
        "naive": nv["image"],
        "size": size,
        "naive_size": nv["size"],
        "alpha": nv["alpha"],
        "matched": nv["matched"],
        "original": original,
    }
