"""Shared logic of the analysis chapters: sweeps of local bases and the statistics of the paper's claims.

The chapters (``notebooks/coarse_to_fine.ipynb``, ``timestep_discrepancy.ipynb``,
``dataset_complexity.ipynb``, ``prompt_influence.ipynb``) all follow one pattern:

1. :func:`sample_trajectories` -- DDIM from seeded noise, keeping the states ``x_t`` at chosen times;
2. :func:`bases_over` -- the local basis at every ``(x_t, t)`` (optionally another time input, another
   prompt), through the on-disk basis cache so a rerun recomputes nothing;
3. a statistic with a 95% bootstrap CI that resamples the *samples* (or prompts), a baseline, and the
   verdict rule of :func:`pullback_utils.stats.verdict`, written with :func:`claim` into the chapter's
   ``metrics.json`` (:func:`write_metrics`), which the scorecard reads.

Shapes (``n_t`` times, ``n`` samples, ``k`` basis vectors, ``X = sample_shape``, ``H = h`` shape):

- :class:`Trajectories` ``x``: ``(n_t, n, *X)``;
- :class:`BasisSweep` ``v``: ``(n_t, n, k, *X)``, ``u``: ``(n_t, n, k, *H)``, ``s``: ``(n_t, n, k)``;
- cross-sample distances: ``(n_t, n, n)``; self-distance matrices: ``(n, n_t, n_t)``.

Times follow :mod:`pullback_utils.ddim` (float fractions of ``T`` or int levels).

Memory: a sweep keeps ``n_t * n * k * (prod(X) + prod(H)) * 4`` bytes (float32). For the paper's
CelebA-HQ-256 protocol (20 x 100 x 50 bases of 196,608 + 32,768 numbers) that is 92 GB: pass
``dtype=torch.float16`` (46 GB) or sweep fewer samples per run (the cache keeps earlier ones).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .ddim import Prompt, Time, ddim_sample_to_times
from .schedule import check_times
from .geometry import (
    pairwise_geodesic_distances,
    radial_frequency_grid,
    radial_psd,
    low_frequency_share,
    mean_frequency,
    random_subspace_distance,
)
from .stats import bootstrap_ci, bootstrap_ci_from_index, spearman, spearman_trend, verdict

__all__ = [
    "Trajectories",
    "BasisSweep",
    "resolve_cache_dir",
    "sample_trajectories",
    "bases_over",
    "cross_sample_distances",
    "pairwise_mean_per_t",
    "bootstrap_pairwise_per_t",
    "bootstrap_pairwise_stat",
    "random_baseline",
    "self_distance_matrices",
    "self_distance_trend",
    "ablation_distances",
    "psd_summary",
    "white_noise_low_share",
    "twonn_dimension",
    "pairs_bootstrap",
    "claim",
    "coarse_to_fine_claim",
    "early_similarity_claim",
    "write_metrics",
    "save_figure",
    "to_jsonable",
]


# --------------------------------------------------------------------------------------------------
# trajectories and sweeps
# --------------------------------------------------------------------------------------------------
@dataclass
class Trajectories:
    """States of ``n`` DDIM trajectories at ``n_t`` times.

    Attributes:
        x: ``(n_t, n, *sample_shape)`` states, row ``i`` at ``times[i]``.
        times: the requested times, in the order given.
        levels: their levels on the training grid (ints in ``0..T``).
        x0: ``(n, *sample_shape)`` end of the trajectories (clean samples), or ``None``.
        seed: seed of the starting noise.
    """

    x: torch.Tensor
    times: list
    levels: list[int]
    x0: torch.Tensor | None = None
    seed: int = 0

    @property
    def n(self) -> int:
        return int(self.x.shape[1])


def resolve_cache_dir(cache_dir: str | os.PathLike | None) -> Path | None:
    """A notebook's ``cache_dir`` parameter: ``""``/``None`` -> no cache; ``~`` and env vars expanded."""
    if cache_dir is None or str(cache_dir).strip() == "":
        return None
    path = Path(os.path.expandvars(os.path.expanduser(str(cache_dir))))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _check_times(model, times: Sequence[Time], name: str = "times") -> list[int]:
    return check_times(times, model.num_train_timesteps, name=name)


@torch.no_grad()
def sample_trajectories(
    model,
    n: int,
    seed: int,
    times: Sequence[Time],
    *,
    steps: int = 20,
    prompt: Prompt = None,
    guidance_scale: float = 1.0,
    final: bool = True,
    progress: bool = False,
) -> Trajectories:
    """DDIM trajectories of ``n`` samples from seeded noise, keeping ``x_t`` at every time in ``times``.

    Args:
        model: a :class:`~pullback_utils.models.DiffusionModel`.
        n: number of samples; the start is ``model.noise(n, seed)`` at the top level ``T``.
        seed: seed of the noise (deterministic).
        times: times to keep (any order; fractions of ``T`` or int levels, all > 0).
        steps: DDIM steps over the whole ``[0, T]``; a stretch between two kept times gets its
            proportional share (at least one step).
        prompt, guidance_scale: conditioning of the sampler (``None`` = unconditional branch).
        final: also run to ``t = 0`` and keep the clean samples in ``x0``.
        progress: tqdm bar over the stretches.

    Returns:
        :class:`Trajectories` with ``x`` ``(len(times), n, *sample_shape)``.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    levels = _check_times(model, times)
    xs, x0 = ddim_sample_to_times(model, model.noise(n, seed), times, steps=steps, prompt=prompt,
                                  guidance_scale=guidance_scale, final=final, progress=progress)
    return Trajectories(x=xs, times=list(times), levels=levels, x0=x0, seed=int(seed))


@dataclass
class BasisSweep:
    """Local bases at a grid of ``(x_t, time input)`` pairs.

    Attributes:
        v: ``(n_t, n, k, *sample_shape)`` local latent bases (x-side, unit vectors).
        u: ``(n_t, n, k, *h_shape)`` local tangent bases (h-side, unit vectors).
        s: ``(n_t, n, k)`` singular values.
        times: the ``n_t`` time inputs of the U-Net.
        info: ``n_t`` lists of ``n`` solver info dicts.
        seconds: wall time of the sweep (cache hits included).
    """

    v: torch.Tensor
    u: torch.Tensor
    s: torch.Tensor
    times: list
    info: list = field(default_factory=list)
    seconds: float = 0.0

    @property
    def k(self) -> int:
        return int(self.s.shape[-1])

    def side(self, side: str) -> torch.Tensor:
        """``"v"`` (x-side) or ``"u"`` (h-side) bases, ``(n_t, n, k, ...)``."""
        if side not in ("v", "u"):
            raise ValueError(f"side must be 'v' (x-space) or 'u' (h-space), got {side!r}")
        return self.v if side == "v" else self.u

    def solver_summary(self) -> dict:
        """Max/median a-posteriori angle estimate (rad), products and solver seconds over the sweep."""
        flat = [i for row in self.info for i in row]
        ang = np.array([float(i.get("angle_estimate", float("nan"))) for i in flat])
        return {
            "n_bases": len(flat),
            "angle_estimate_max": float(np.nanmax(ang)) if np.isfinite(ang).any() else None,
            "angle_estimate_median": float(np.nanmedian(ang)) if np.isfinite(ang).any() else None,
            "n_jvp_total": int(sum(int(i.get("n_jvp", 0)) for i in flat)),
            "n_vjp_total": int(sum(int(i.get("n_vjp", 0)) for i in flat)),
            "solver_seconds": float(sum(float(i.get("seconds", 0.0)) for i in flat)),
            "wall_seconds": float(self.seconds),
        }


def bases_over(
    model,
    xs: torch.Tensor,
    times: Sequence[Time],
    k: int,
    *,
    prompt: Prompt = None,
    layer: str = "mid",
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    desc: str = "bases",
    dtype: torch.dtype = torch.float32,
    **solver: Any,
) -> BasisSweep:
    """Local bases at every ``(xs[i, j], times[i])``: a resumable sweep.

    Args:
        model: a :class:`~pullback_utils.models.DiffusionModel`.
        xs: ``(n_t, n, *sample_shape)`` states (e.g. :attr:`Trajectories.x`), or ``(n, *sample_shape)``
            used at every time (to hold ``x_t`` fixed while the time input varies).
        times: ``n_t`` time inputs; ``times[i]`` is used with row ``xs[i]``.
        k: basis size.
        prompt: conditioning of the feature map (text models; ``None`` = empty prompt).
        layer: feature layer (``"mid"`` = h-space).
        cache_dir: basis cache folder (``None``/``""`` = no cache). Entries already on disk are loaded,
            so an interrupted sweep resumes where it stopped.
        progress: tqdm bar over the ``n_t * n`` bases.
        desc: label of the bar.
        dtype: storage type of ``v`` and ``u``.
        **solver: options of :func:`pullback_utils.jacobian_svd` (``method``, ``tol``, ``max_iters``...).

    Returns:
        :class:`BasisSweep` with ``v`` ``(n_t, n, k, *sample_shape)``.
    """
    times = list(times)
    _check_times(model, times)
    if not isinstance(xs, torch.Tensor):
        raise TypeError(f"xs must be a torch.Tensor, got {type(xs).__name__}")
    if xs.dim() == len(model.sample_shape) + 1:
        xs = xs.unsqueeze(0).expand(len(times), *xs.shape)
    if xs.dim() != len(model.sample_shape) + 2 or tuple(xs.shape[2:]) != tuple(model.sample_shape):
        raise ValueError(
            f"xs must have shape (n_t, n, {', '.join(map(str, model.sample_shape))}), got {tuple(xs.shape)}"
        )
    if xs.shape[0] != len(times):
        raise ValueError(f"xs has {xs.shape[0]} rows of states but {len(times)} times were given")
    cache = resolve_cache_dir(cache_dir)
    n_t, n = int(xs.shape[0]), int(xs.shape[1])
    vs, us, ss, infos = [], [], [], []
    start = time.perf_counter()
    bar = tqdm(total=n_t * n, desc=desc, disable=not progress)
    for i in range(n_t):
        row_v, row_u, row_s, row_i = [], [], [], []
        for j in range(n):
            b = model.local_basis(xs[i, j : j + 1], times[i], k, prompt=prompt, layer=layer, cache_dir=cache, **solver)
            row_v.append(b.v.reshape(b.k, *model.sample_shape).to("cpu", dtype))
            row_u.append(b.u.reshape(b.k, *b.u.shape[2:]).to("cpu", dtype))
            row_s.append(b.s.to("cpu", torch.float64))
            row_i.append(dict(b.info))
            bar.update(1)
        vs.append(torch.stack(row_v))
        us.append(torch.stack(row_u))
        ss.append(torch.stack(row_s))
        infos.append(row_i)
    bar.close()
    return BasisSweep(
        v=torch.stack(vs), u=torch.stack(us), s=torch.stack(ss), times=times, info=infos,
        seconds=time.perf_counter() - start,
    )


# --------------------------------------------------------------------------------------------------
# cross-sample statistics
# --------------------------------------------------------------------------------------------------
def cross_sample_distances(sweep: BasisSweep, side: str = "v") -> np.ndarray:
    """Geodesic distances between the bases of different samples at each time: ``(n_t, n, n)``."""
    b = sweep.side(side)
    return np.stack([np.asarray(pairwise_geodesic_distances(b[i].double().numpy())) for i in range(b.shape[0])])


def _pairwise_means(d: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Mean off-diagonal entries of ``d[..., idx, idx]`` leaving out pairs of a unit with its own copy."""
    sub = d[..., idx[:, None], idx[None, :]]
    keep = idx[:, None] != idx[None, :]
    if not keep.any():
        return np.full(d.shape[:-2], np.nan)
    return sub[..., keep].mean(axis=-1)


def pairwise_mean_per_t(dists: np.ndarray, idx: np.ndarray | None = None) -> np.ndarray:
    """``(..., n, n)`` symmetric distance matrices -> ``(...)`` mean over pairs of different samples.

    ``idx``: optional resample ``(n,)`` of sample indices (a bootstrap replicate); pairs of a sample
    with its own copy are left out.
    """
    d = np.asarray(dists, dtype=np.float64)
    return _pairwise_means(d, np.arange(d.shape[-1]) if idx is None else np.asarray(idx))


def bootstrap_pairwise_stat(
    dists: np.ndarray,
    statistic: Callable[[np.ndarray], Any] = lambda m: m,
    *,
    n_boot: int = 2000,
    seed: int = 0,
    ci: float = 0.95,
) -> tuple[Any, Any, Any]:
    """Bootstrap a function of the per-time mean pairwise distance, resampling the ``n`` samples.

    Args:
        dists: ``(..., n, n)`` distance matrices over the same ``n`` samples (e.g. ``(n_t, n, n)``).
        statistic: maps the ``(...)`` array of pairwise means to the statistic (default: identity).
        n_boot, seed, ci: as in :func:`pullback_utils.stats.bootstrap_ci_from_index`.

    One resample of sample indices is shared by all leading entries (the same samples are followed
    across times), and pairs of a resampled sample with its own copy are left out. Needs ``n >= 2``.
    """
    d = np.asarray(dists, dtype=np.float64)
    if d.ndim < 2 or d.shape[-1] != d.shape[-2] or d.shape[-1] < 2:
        raise ValueError(f"dists must be (..., n, n) with n >= 2, got shape {d.shape}")
    return bootstrap_ci_from_index(
        d.shape[-1], lambda idx: statistic(_pairwise_means(d, idx)), n_boot=n_boot, ci=ci, seed=seed
    )


def bootstrap_pairwise_per_t(dists: np.ndarray, *, n_boot: int = 2000, seed: int = 0) -> dict[str, np.ndarray]:
    """Per-time mean pairwise distance with 95% CIs: ``{"mean", "low", "high"}``, each ``(n_t,)``."""
    est, lo, hi = bootstrap_pairwise_stat(dists, n_boot=n_boot, seed=seed)
    return {"mean": np.atleast_1d(est), "low": np.atleast_1d(lo), "high": np.atleast_1d(hi)}


def random_baseline(dim: int, k: int, *, n: int = 2000, seed: int = 0) -> dict[str, float]:
    """Geodesic distance between independent uniformly random ``k``-subspaces of ``R^dim``.

    Returns ``{"mean", "low", "high"}``: mean and 2.5/97.5 percentiles of ``n`` draws (the spread of
    the distance itself, not a CI of the mean). Its maximum possible value is ``(pi/2) sqrt(k)``.
    """
    d = random_subspace_distance(int(dim), int(k), int(n), seed=int(seed))
    return {"mean": float(d.mean()), "low": float(np.quantile(d, 0.025)), "high": float(np.quantile(d, 0.975)),
            "max_possible": float(math.pi / 2 * math.sqrt(k))}


# --------------------------------------------------------------------------------------------------
# one sample across times
# --------------------------------------------------------------------------------------------------
def self_distance_matrices(sweep: BasisSweep, side: str = "v") -> np.ndarray:
    """For every sample, distances between its own bases at every pair of times: ``(n, n_t, n_t)``."""
    b = sweep.side(side)
    n = b.shape[1]
    return np.stack([np.asarray(pairwise_geodesic_distances(b[:, j].double().numpy())) for j in range(n)])


def self_distance_trend(mats: np.ndarray, times: Sequence[float], *, n_boot: int = 2000, seed: int = 0) -> dict:
    """Does a sample's basis drift further as the time gap grows?

    Spearman's rho between ``|t - t'|`` and ``d(B(x_t, t), B(x_t', t'))`` over all pairs ``t < t'`` of
    all samples, pooled, with a cluster bootstrap over samples. Also the mean distance between
    neighbouring times and between the two extreme times, with CIs.

    Args:
        mats: ``(n, n_t, n_t)`` from :func:`self_distance_matrices`.
        times: the ``n_t`` times as numbers (fractions of T or levels).

    Returns:
        dict with ``rho``/``rho_low``/``rho_high``, ``adjacent``/``extreme`` (mean, low, high).
    """
    m = np.asarray(mats, dtype=np.float64)
    t = np.asarray([float(x) for x in times])
    n, n_t = m.shape[0], m.shape[1]
    if n_t < 3:
        raise ValueError(f"need at least 3 times for a trend, got {n_t}")
    iu = np.triu_indices(n_t, 1)
    gaps = np.abs(t[:, None] - t[None, :])[iu]
    vals = m[:, iu[0], iu[1]]  # (n, P)

    def rho(idx: np.ndarray) -> float:
        return spearman(np.tile(gaps, len(idx)), vals[idx].ravel())

    r, rl, rh = bootstrap_ci_from_index(n, rho, n_boot=n_boot, seed=seed)
    order = np.argsort(t)
    adj = np.stack([m[:, order[i], order[i + 1]] for i in range(n_t - 1)], axis=1).mean(axis=1)  # (n,)
    ext = m[:, order[0], order[-1]]
    a = bootstrap_ci(adj, seed=seed, n_boot=n_boot)
    e = bootstrap_ci(ext, seed=seed, n_boot=n_boot)
    return {"rho": float(r), "rho_low": float(rl), "rho_high": float(rh),
            "adjacent": tuple(float(x) for x in a), "extreme": tuple(float(x) for x in e)}


def ablation_distances(
    model,
    traj: Trajectories,
    i_a: int,
    i_b: int,
    k: int,
    *,
    sweep: BasisSweep | None = None,
    samples: Sequence[int] | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    **solver: Any,
) -> dict[str, dict[str, np.ndarray]]:
    """Separate the two causes of the timestep discrepancy with a 2 x 2 design.

    For each sample and the two times ``t_a = traj.times[i_a]``, ``t_b = traj.times[i_b]``, the bases
    ``B(x, s)`` at the four pairs (state ``x`` in {x_ta, x_tb}) x (time input ``s`` in {t_a, t_b}):

    - ``total``: ``d(B(x_ta, t_a), B(x_tb, t_b))`` -- both change (the discrepancy itself);
    - ``time_only``: mean of ``d(B(x_ta, t_a), B(x_ta, t_b))`` and ``d(B(x_tb, t_a), B(x_tb, t_b))``
      -- the state is held fixed, only the U-Net's time input changes;
    - ``state_only``: mean of ``d(B(x_ta, t_a), B(x_tb, t_a))`` and ``d(B(x_ta, t_b), B(x_tb, t_b))``
      -- the time input is held fixed, only the state changes.

    The diagonal bases are taken from ``sweep`` when given (same ``k``/solver), else computed; the two
    crossed ones are computed (cached).

    Returns:
        ``{"v": {...}, "u": {...}}`` (x-side and h-side), each ``{"total", "time_only", "state_only"}``
        arrays ``(n_samples,)`` and ``"samples"`` (the sample indices).
    """
    idx = list(range(traj.n)) if samples is None else [int(s) for s in samples]
    ta, tb = traj.times[i_a], traj.times[i_b]
    xa, xb = traj.x[i_a, idx], traj.x[i_b, idx]
    if sweep is None:
        sweep_ab = bases_over(model, torch.stack([xa, xb]), [ta, tb], k, cache_dir=cache_dir,
                              progress=progress, desc="ablation (diagonal)", **solver)
        rows, cols = (0, 1), slice(None)
    else:
        sweep_ab, rows, cols = sweep, (i_a, i_b), idx
    crossed = bases_over(model, torch.stack([xa, xb]), [tb, ta], k, cache_dir=cache_dir,
                         progress=progress, desc="ablation (crossed)", **solver)
    from .geometry import geodesic_distance as gd

    out = {}
    for side in ("v", "u"):
        Baa, Bbb = sweep_ab.side(side)[rows[0], cols], sweep_ab.side(side)[rows[1], cols]
        Bab, Bba = crossed.side(side)[0], crossed.side(side)[1]  # B(x_ta, t_b), B(x_tb, t_a)
        tot, tim, sta = [], [], []
        for j in range(len(idx)):
            tot.append(gd(Baa[j].double(), Bbb[j].double()))
            tim.append(0.5 * (gd(Baa[j].double(), Bab[j].double()) + gd(Bba[j].double(), Bbb[j].double())))
            sta.append(0.5 * (gd(Baa[j].double(), Bba[j].double()) + gd(Bab[j].double(), Bbb[j].double())))
        out[side] = {"total": np.array(tot), "time_only": np.array(tim), "state_only": np.array(sta),
                     "samples": np.array(idx)}
    return out


# --------------------------------------------------------------------------------------------------
# spectra
# --------------------------------------------------------------------------------------------------
def white_noise_low_share(h: int, w: int, cutoff: float) -> float:
    """Expected low-frequency share (bins ``<= cutoff``) of white noise: the fraction of such frequencies."""
    return float((np.rint(radial_frequency_grid(h, w)) <= cutoff).mean())


def psd_summary(sweep: BasisSweep, *, low_fraction: float = 0.25) -> dict[str, Any]:
    """Frequency content of the x-side bases at every time.

    Args:
        sweep: a :class:`BasisSweep` of image-shaped ``v`` (``(n_t, n, k, C, H, W)``).
        low_fraction: the low band is radial frequency ``<= low_fraction * min(H, W) / 2`` (cycles per
            image); 0.25 = the lowest quarter up to the Nyquist frequency.

    Returns:
        dict with ``freqs`` ``(R,)``; ``psd`` ``(n_t, n, R)`` radially averaged power, averaged over the
        k vectors; ``low_share`` ``(n_t, n)`` and ``mean_freq`` ``(n_t, n)`` averaged over the k vectors;
        ``cutoff`` and ``white_noise_low_share`` (the flat-spectrum baseline of ``low_share``).
    """
    if sweep.v.dim() != 6:
        raise ValueError(f"psd_summary needs image-shaped bases (n_t, n, k, C, H, W), got {tuple(sweep.v.shape)}")
    h, w = sweep.v.shape[-2:]
    cutoff = float(low_fraction) * min(h, w) / 2
    psd, share, mf = [], [], []
    for i in range(sweep.v.shape[0]):  # one timestep at a time: float64 copies stay small
        v = sweep.v[i].double()
        freqs, p = radial_psd(v)  # (n, k, R)
        psd.append(p.mean(dim=1))
        share.append(low_frequency_share(v, cutoff).mean(dim=1))  # (n,)
        mf.append(mean_frequency(v).mean(dim=1))
    return {
        "freqs": np.asarray(freqs),
        "psd": torch.stack(psd).numpy(),
        "low_share": torch.stack(share).numpy(),
        "mean_freq": torch.stack(mf).numpy(),
        "cutoff": cutoff,
        "white_noise_low_share": white_noise_low_share(h, w, cutoff),
    }


# --------------------------------------------------------------------------------------------------
# data complexity
# --------------------------------------------------------------------------------------------------
def twonn_dimension(x: torch.Tensor | np.ndarray, *, n_boot: int = 500, seed: int = 0,
                    discard: float = 0.1) -> tuple[float, float, float]:
    """TwoNN intrinsic-dimension estimate (Facco et al. 2017) with a bootstrap CI over points.

    For every point, ``mu = r2 / r1`` (distances to its second and first nearest neighbour) is
    Pareto-distributed with exponent ``d`` on a locally uniform ``d``-dimensional manifold, so
    ``-log(1 - F(mu)) = d log(mu)``. ``d`` is the slope of that line through the origin, fitted on the
    empirical distribution of ``mu`` without its largest ``discard`` fraction (the estimator of the
    paper). Points with ``r1 = 0`` (duplicates) are ignored.

    Args:
        x: ``(N, ...)`` points (flattened), ``N >= 3``.
        n_boot, seed: bootstrap over points (their ``mu`` values).

    Returns:
        ``(estimate, low, high)``.
    """
    a = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).reshape(len(x), -1).double()
    if a.shape[0] < 3:
        raise ValueError(f"need at least 3 points, got {a.shape[0]}")
    d = torch.cdist(a, a)
    d.fill_diagonal_(float("inf"))
    r = torch.topk(d, 2, dim=1, largest=False).values.numpy()
    ok = r[:, 0] > 0
    logmu = np.log(r[ok, 1] / r[ok, 0])

    def fit(s: np.ndarray) -> float:
        s = np.sort(s)
        m = len(s)
        keep = max(2, int(math.floor(m * (1 - discard))))
        y = -np.log(1.0 - np.arange(1, m + 1) / (m + 1.0))
        xs, ys = s[:keep], y[:keep]
        return float(np.sum(xs * ys) / np.sum(xs * xs))

    est, lo, hi = bootstrap_ci(logmu, statistic=fit, n_boot=n_boot, seed=seed)
    return float(est), float(lo), float(hi)


# --------------------------------------------------------------------------------------------------
# prompt pairs
# --------------------------------------------------------------------------------------------------
def pairs_bootstrap(
    n_units: int,
    pair_stat: Callable[[np.ndarray], float],
    *,
    n_boot: int = 2000,
    seed: int = 0,
    ci: float = 0.95,
    min_distinct: int = 3,
) -> tuple[float, float, float, float]:
    """Bootstrap over units (e.g. prompts) for statistics of unit *pairs*.

    ``pair_stat(idx)`` receives a resample ``idx`` ``(n_units,)`` of unit indices and must use only the
    pairs ``(idx[a], idx[b])`` with ``idx[a] != idx[b]`` (see :func:`pullback_utils.stats.
    bootstrap_pairwise_mean_ci` for the reason). With few units many resamples hold only one or two
    distinct units and leave the statistic undefined (or trivially constant), which would shrink the
    CI to a point; such resamples (fewer than ``min_distinct`` distinct units) are redrawn, and
    replicates that are still non-finite are dropped.

    Returns:
        ``(estimate, low, high, valid_fraction)``; ``valid_fraction`` is the share of finite
        replicates among the kept resamples. Raises ``ValueError`` if ``n_units < min_distinct``.
    """
    if n_units < min_distinct:
        raise ValueError(f"need at least min_distinct={min_distinct} units, got {n_units}")
    rng = np.random.default_rng(seed)
    est = float(pair_stat(np.arange(n_units)))
    reps = []
    while len(reps) < n_boot:
        idx = rng.integers(0, n_units, size=n_units)
        if len(np.unique(idx)) < min_distinct:
            continue
        reps.append(float(pair_stat(idx)))
    reps = np.asarray(reps)
    ok = np.isfinite(reps)
    if not ok.any():
        raise ValueError("the statistic was non-finite on every bootstrap resample")
    alpha = (1.0 - ci) / 2.0
    lo, hi = np.quantile(reps[ok], [alpha, 1.0 - alpha])
    return est, float(lo), float(hi), float(ok.mean())


# --------------------------------------------------------------------------------------------------
# metrics and figures
# --------------------------------------------------------------------------------------------------
def claim(
    statistic: str,
    estimate: float,
    low: float,
    high: float,
    direction: str,
    *,
    baseline: Any = None,
    null: float = 0.0,
    claim_text: str = "",
    **extra: Any,
) -> dict[str, Any]:
    """One claim record of ``metrics.json`` with its verdict (rule of :func:`pullback_utils.stats.verdict`).

    Args:
        statistic: what was measured (one sentence, units included).
        estimate, low, high: the point estimate and its 95% bootstrap CI.
        direction: ``"greater"`` or ``"less"``: which side of ``null`` the paper's claim predicts.
        baseline: comparison value(s) (random subspaces, shuffled prompts, white noise, ...).
        null: the no-effect value of the statistic.
        claim_text: the paper's claim in words.
        **extra: further numbers (JSON-able) stored with the record.
    """
    rec = {
        "claim": claim_text,
        "statistic": statistic,
        "estimate": float(estimate),
        "ci": [float(low), float(high)],
        "ci_level": 0.95,
        "null": float(null),
        "direction": direction,
        "baseline": to_jsonable(baseline),
        "verdict": verdict(float(low), float(high), direction, null=null),
    }
    rec.update({k: to_jsonable(v) for k, v in extra.items()})
    return rec


def coarse_to_fine_claim(
    ps: dict[str, Any], times: Sequence[float], k: int, *, n_boot: int = 2000, seed: int = 0, **extra: Any
) -> dict[str, Any]:
    """The coarse-to-fine claim record from :func:`psd_summary` of a sweep.

    Statistic: low-frequency energy share of the top-``k`` basis at the largest ``t`` minus at the
    smallest ``t``, paired over samples, 95% bootstrap CI over samples; claimed ``"greater"`` than 0.
    Also stores Spearman's rho between ``t`` and the share (cluster bootstrap over samples) and the
    per-``t`` means.

    Args:
        ps: :func:`psd_summary` output (``low_share`` ``(n_t, n)`` with ``n >= 2``).
        times: the ``n_t`` times of the sweep (at least 2, distinct).
        k: basis size (for the statistic's text).
        **extra: further fields of the record (e.g. ``model``).
    """
    low = np.asarray(ps["low_share"], dtype=np.float64)
    times = [float(t) for t in times]
    if low.ndim != 2 or low.shape[0] != len(times) or len(set(times)) < 2 or low.shape[1] < 2:
        raise ValueError(f"ps['low_share'] must be (n_t, n) with n_t = len(times) >= 2 distinct times and n >= 2 "
                         f"samples, got shape {low.shape} for times {times}")
    i_hi, i_lo = int(np.argmax(times)), int(np.argmin(times))
    est, lo, hi = bootstrap_ci((low[i_hi], low[i_lo]), statistic=lambda a, b: np.mean(a - b), n_boot=n_boot, seed=seed)
    rho = spearman_trend(times, low.T, n_boot=n_boot, seed=seed)
    means = low.mean(axis=1)
    return claim(
        f"low-frequency energy share (f <= {ps['cutoff']:.0f} cycles/image) of the top-{k} basis at t={times[i_hi]} "
        f"minus at t={times[i_lo]}, paired over {low.shape[1]} samples",
        est, lo, hi, "greater",
        baseline={"white_noise_low_share": ps["white_noise_low_share"],
                  "low_share_at_max_t": float(means[i_hi]), "low_share_at_min_t": float(means[i_lo])},
        claim_text="early in generation (t near T) the local basis is dominated by low frequencies, later by high ones",
        spearman_t_vs_low_share=list(rho),
        **extra,
    )


def early_similarity_claim(
    cross: np.ndarray, times: Sequence[float], k: int, side: str, baseline: dict[str, float], *,
    n_boot: int = 2000, seed: int = 0, **extra: Any,
) -> dict[str, Any]:
    """The early-cross-sample-similarity claim record from cross-sample distances.

    Statistic: mean cross-sample geodesic distance at the smallest ``t`` minus at the largest ``t``
    (rad), 95% bootstrap CI over samples (:func:`bootstrap_pairwise_stat`); claimed ``"greater"`` than
    0. Also stores Spearman's rho between ``t`` and the mean distance (the claim predicts rho < 0).

    Args:
        cross: ``(n_t, n, n)`` distances (:func:`cross_sample_distances`), ``n >= 2``.
        times: the ``n_t`` times (at least 2, distinct).
        k: basis size; side: ``"v"`` or ``"u"`` (for the statistic's text).
        baseline: :func:`random_baseline` of the side's dimension.
        **extra: further fields of the record (e.g. ``model``, ``per_t``).
    """
    times = [float(t) for t in times]
    d = np.asarray(cross, dtype=np.float64)
    if d.ndim != 3 or d.shape[0] != len(times) or len(set(times)) < 2:
        raise ValueError(f"cross must be (n_t, n, n) with n_t = len(times) >= 2 distinct times, got shape {d.shape} "
                         f"for times {times}")
    if side not in ("v", "u"):
        raise ValueError(f"side must be 'v' or 'u', got {side!r}")
    i_hi, i_lo = int(np.argmax(times)), int(np.argmin(times))
    est, lo, hi = bootstrap_pairwise_stat(d, lambda mm: mm[i_lo] - mm[i_hi], n_boot=n_boot, seed=seed)
    rho = bootstrap_pairwise_stat(d, lambda mm: spearman(times, mm), n_boot=n_boot, seed=seed) if len(times) > 2 \
        else (float("nan"),) * 3
    return claim(
        f"mean cross-sample geodesic distance ({'x-side v' if side == 'v' else 'h-side u'}, k={k}) at t={times[i_lo]} "
        f"minus at t={times[i_hi]} (rad), bootstrap over {d.shape[-1]} samples",
        est, lo, hi, "greater",
        baseline={"random_subspace_distance": baseline["mean"], "random_low": baseline["low"],
                  "random_high": baseline["high"]},
        claim_text="at early timesteps (t near T) different samples share similar tangent spaces; the distance grows as t -> 0",
        spearman_t_vs_distance=list(rho),
        **extra,
    )


def to_jsonable(obj: Any) -> Any:
    """numpy/torch scalars and arrays, tuples, Paths -> plain JSON types (NaN -> None)."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return to_jsonable(obj.detach().cpu().numpy())
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_metrics(output_dir: str | os.PathLike, notebook: str, claims: dict, params: dict, **sections: Any) -> Path:
    """Write ``metrics.json`` into ``output_dir`` (atomically) and return its path.

    Layout: ``{"notebook", "claims": {name: claim record}, "params": {...}, <sections>...}``.
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = {"notebook": notebook, "claims": to_jsonable(claims), "params": to_jsonable(params)}
    data.update({k: to_jsonable(v) for k, v in sections.items()})
    path = out / "metrics.json"
    tmp = out / ".metrics.json.tmp"
    tmp.write_text(json.dumps(data, indent=2, allow_nan=False))
    os.replace(tmp, path)
    return path


def save_figure(fig, output_dir: str | os.PathLike, name: str, *, dpi: int = 110) -> Path:
    """Save a matplotlib figure as ``<output_dir>/<name>.png`` and return the path."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.png"
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path
