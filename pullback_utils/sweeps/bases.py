"""Sweeps of local bases: DDIM trajectories of seeded samples, and the bases over a grid of states.

The analysis chapters all start the same way:

1. :func:`sample_trajectories` -- one DDIM run from seeded noise keeping ``x_t`` at chosen times
   (:func:`pullback_utils.diffusion.ddim.ddim_sample_to_times`);
2. :func:`bases_over` -- the local basis at every ``(x_t, t)`` (optionally another time input, another
   prompt), through the on-disk basis cache, so a rerun recomputes nothing and an interrupted sweep
   resumes where it stopped;
3. distance matrices of the result (:meth:`BasisSweep.cross_sample_distances`,
   :meth:`BasisSweep.self_distances`) and its spectrum-matched twin (:meth:`BasisSweep.spectrum_matched`),
   from which :mod:`pullback_utils.claims` computes the claims' statistics.

Shapes (``n_t`` times, ``n`` samples, ``k`` basis vectors, ``X = sample_shape``, ``H = h`` shape):
:class:`Trajectories` ``x`` ``(n_t, n, *X)``; :class:`BasisSweep` ``v`` ``(n_t, n, k, *X)``, ``u``
``(n_t, n, k, *H)``, ``s`` ``(n_t, n, k)``; cross-sample distances ``(n_t, n, n)``; self-distances
``(n, n_t, n_t)``.

Memory: a sweep keeps ``n_t * n * k * (prod(X) + prod(H))`` numbers; :func:`storage_dtype` picks
float16 when float32 would exceed a budget (the paper's CelebA-HQ protocol, 20 x 100 x 50 bases of
196,608 + 32,768 numbers, is 92 GB in float32).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from pullback_utils._validate import check_int
from pullback_utils.analysis.geometry import pairwise_geodesic_distances, pairwise_weighted_overlaps
from pullback_utils.diffusion.ddim import Prompt, Time, ddim_sample_to_times
from pullback_utils.diffusion.schedule import check_times
from pullback_utils.sweeps.distributed import compute_bases, resolve_cluster

__all__ = ["Trajectories", "BasisSweep", "resolve_cache_dir", "storage_dtype", "sample_trajectories", "bases_over"]


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
    """A ``cache_dir`` parameter (:func:`pullback_utils.features.cache.resolve_cache_dir`: ``""``/``None`` -> no
    cache; ``~`` and environment variables expanded, an unset one refused), its folder created when it
    can be (one that cannot is reported by the cache, which then computes without saving)."""
    from pullback_utils.features.cache import resolve_cache_dir as resolve

    path = resolve(cache_dir)
    if path is not None:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError:
            pass  # BasisCache warns before the first computation and computes without saving
    return path


def storage_dtype(n_t: int, n: int, k: int, sample_shape: Sequence[int], *, budget_bytes: float = 16e9) -> torch.dtype:
    """float16 when a float32 sweep of ``n_t * n`` bases of ``k`` x- and h-side vectors would exceed
    ``budget_bytes`` (h taken as large as x), else float32."""
    need = n_t * n * k * 2 * math.prod(int(s) for s in sample_shape) * 4
    return torch.float16 if need > budget_bytes else torch.float32


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
        model: a :class:`~pullback_utils.models.diffusion_model.DiffusionModel`.
        n: number of samples; the start is ``model.noise(n, seed)`` at the top level ``T``.
        seed: seed of the noise (deterministic).
        times: times to keep (any order; fractions of ``T`` or int levels, all > 0).
        steps: DDIM steps over the whole ``[0, T]`` (proportional legs, :mod:`pullback_utils.diffusion.schedule`).
        prompt, guidance_scale: conditioning of the sampler (``None`` = unconditional branch).
        final: also run to ``t = 0`` and keep the clean samples in ``x0``.
        progress: tqdm bar over the legs.
    """
    n = check_int(n, "n", 1)
    levels = check_times(times, model.num_train_timesteps)
    xs, x0 = ddim_sample_to_times(
        model,
        model.noise(n, seed),
        times,
        steps=steps,
        prompt=prompt,
        guidance_scale=guidance_scale,
        final=final,
        progress=progress,
    )
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

    @property
    def n(self) -> int:
        return int(self.s.shape[1])

    def side(self, side: str) -> torch.Tensor:
        """``"v"`` (x-side) or ``"u"`` (h-side) bases, ``(n_t, n, k, ...)``."""
        if side not in ("v", "u"):
            raise ValueError(f"side must be 'v' (x-space) or 'u' (h-space), got {side!r}")
        return self.v if side == "v" else self.u

    def dim(self, side: str) -> int:
        """Dimension of the side's space (``prod(sample_shape)`` or ``prod(h_shape)``)."""
        return math.prod(self.side(side).shape[3:])

    def cross_sample_distances(self, side: str = "u") -> np.ndarray:
        """Geodesic distances between the bases of different samples at each time: ``(n_t, n, n)``."""
        b = self.side(side)
        return np.stack([np.asarray(pairwise_geodesic_distances(b[i].double().numpy())) for i in range(b.shape[0])])

    def cross_sample_overlaps(self, side: str = "u") -> np.ndarray:
        """Sigma-weighted projection overlaps (:func:`pullback_utils.analysis.geometry.pairwise_weighted_overlaps`, a
        similarity in ``[0, 1]`` that does not hinge on a flat spectrum) between the bases of different
        samples at each time: ``(n_t, n, n)``."""
        b = self.side(side)
        return np.stack(
            [
                np.asarray(pairwise_weighted_overlaps(b[i].double().numpy(), self.s[i].double().numpy()))
                for i in range(b.shape[0])
            ]
        )

    def self_distances(self, side: str = "u") -> np.ndarray:
        """For every sample, distances between its own bases at every pair of times: ``(n, n_t, n_t)``."""
        b = self.side(side)
        return np.stack([np.asarray(pairwise_geodesic_distances(b[:, j].double().numpy())) for j in range(b.shape[1])])

    def top(self, k: int) -> "BasisSweep":
        """The same sweep keeping each basis's leading ``k`` vectors (``1 <= k <= self.k``): the top-k'
        basis of a sensitivity analysis, read from the cached top-k one without new products."""
        if not isinstance(k, int) or not 1 <= k <= self.k:
            raise ValueError(f"k must be an int in [1, {self.k}] (the sweep's basis size), got {k!r}")
        return replace(self, v=self.v[:, :, :k], u=self.u[:, :, :k], s=self.s[:, :, :k])

    def spectrum_matched(self, seed: int = 0) -> "BasisSweep":
        """The same sweep with every basis replaced by a random one of the same power spectra
        (:func:`pullback_utils.analysis.baselines.spectrum_matched`; the h-side only when ``u`` is image-shaped)."""
        from pullback_utils.analysis.baselines import spectrum_matched

        v = spectrum_matched(self.v, seed=seed).to(self.v.dtype)
        u = spectrum_matched(self.u, seed=seed + 1).to(self.u.dtype) if self.u.dim() == 6 else self.u
        return replace(self, v=v, u=u, info=[], seconds=0.0)

    def solver_summary(self) -> dict:
        """Max/median a-posteriori angle estimate (rad), products and solver seconds over the sweep."""
        flat = [i for row in self.info for i in row]
        ang = np.array([float(i.get("angle_estimate", float("nan"))) for i in flat])
        fin = np.isfinite(ang).any()
        return {
            "n_bases": len(flat),
            "angle_estimate_max": float(np.nanmax(ang)) if fin else None,
            "angle_estimate_median": float(np.nanmedian(ang)) if fin else None,
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
    cluster: Any = None,
    **solver: Any,
) -> BasisSweep:
    """Local bases at every ``(xs[i, j], times[i])``: a resumable sweep.

    Args:
        model: a :class:`~pullback_utils.models.diffusion_model.DiffusionModel`.
        xs: ``(n_t, n, *sample_shape)`` states (e.g. :attr:`Trajectories.x`), or ``(n, *sample_shape)``
            used at every time (to hold ``x_t`` fixed while the time input varies).
        times: ``n_t`` time inputs; ``times[i]`` is used with row ``xs[i]``.
        k: basis size.
        prompt: conditioning of the feature map (text models; ``None`` = empty prompt).
        layer: feature layer (``"mid"`` = h-space).
        cache_dir: basis cache folder (``None``/``""`` = no cache).
        progress: tqdm bar over the ``n_t * n`` bases; desc: its label.
        dtype: storage type of ``v`` and ``u`` (a floating-point dtype; others are refused).
        cluster: where the bases are computed (:mod:`pullback_utils.sweeps.distributed`): ``None`` (the process
            default, in-process unless a chapter's ``cluster`` parameter set one), ``""`` (in-process),
            ``"local:N"``, ``"auto"``, ``"ray://HOST:PORT"``, a ``RayCluster`` or a
            ``concurrent.futures.Executor``. The numbers do not depend on it (bitwise on CPU), and a
            degenerate or non-finite basis raises ``ValueError`` on every backend.
        **solver: options of :func:`~pullback_utils.engine.solvers.jacobian_svd` (``method``, ``tol``,
            ``max_iters``...).
    """
    times = list(times)
    check_times(times, model.num_train_timesteps)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(
            f"dtype must be a floating-point torch dtype (the storage type of v and u: unit vectors "
            f"would round to zero in an integer type), got {dtype!r}"
        )
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
    backend = resolve_cluster(cluster)
    cache = resolve_cache_dir(cache_dir)
    n_t, n = int(xs.shape[0]), int(xs.shape[1])
    start = time.perf_counter()

    def check(b: Any, t: float, j: int) -> None:
        if b[3].get("degenerate"):
            raise ValueError(
                f"degenerate basis at t={t}, sample {j}: k={k} exceeds the Jacobian's numerical "
                f"rank {b[3].get('rank')} there, so some vectors are arbitrary; use k <= "
                f"{b[3].get('rank')} (or another layer)"
            )
        if not (torch.isfinite(b[0]).all() and torch.isfinite(b[2]).all()):
            raise ValueError(f"the basis at t={t}, sample {j} has NaN or infinite entries")

    def keep(b: Any) -> tuple:
        return (
            b.v.reshape(b.k, *model.sample_shape).to("cpu", dtype),
            b.u.reshape(b.k, *b.u.shape[2:]).to("cpu", dtype),
            b.s.to("cpu", torch.float64),
            dict(b.info),
        )

    if backend is not None:
        flat = compute_bases(
            model,
            [(xs[i, j : j + 1], times[i]) for i in range(n_t) for j in range(n)],
            k,
            cluster=backend,
            prompt=prompt,
            layer=layer,
            cache_dir=cache,
            progress=progress,
            desc=desc,
            transform=keep,
            solver=solver,
        )
        for idx, b in enumerate(flat):  # the same checks as the serial sweep, so both raise alike
            check(b, times[idx // n], idx % n)
    else:
        flat = []
        bar = tqdm(total=n_t * n, desc=desc, disable=not progress)
        for i in range(n_t):
            for j in range(n):
                flat.append(
                    keep(
                        model.local_basis(
                            xs[i, j : j + 1], times[i], k, prompt=prompt, layer=layer, cache_dir=cache, **solver
                        )
                    )
                )
                try:
                    check(flat[-1], times[i], j)
                except ValueError:
                    bar.close()
                    raise
                bar.update(1)
        bar.close()
    rows = [flat[i * n : (i + 1) * n] for i in range(n_t)]
    return BasisSweep(
        v=torch.stack([torch.stack([b[0] for b in r]) for r in rows]),
        u=torch.stack([torch.stack([b[1] for b in r]) for r in rows]),
        s=torch.stack([torch.stack([b[2] for b in r]) for r in rows]),
        times=times,
        info=[[b[3] for b in r] for r in rows],
        seconds=time.perf_counter() - start,
    )
