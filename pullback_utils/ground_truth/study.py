"""The ground-truth chapter's measurements for one model: every energy fraction, where each basis lives.

For ``n`` held-out images of the model's procedural dataset, :func:`truth_study`

1. takes the true tangent space at each clean image (:func:`~.tangents.data_tangent_bases`) and local
   PCA of the nearest images of a seeded pool (:func:`~.tangents.local_pca`);
2. DDIM-inverts every image to every time and computes the local basis there (through the basis cache);
3. pushes the tangent space to each ``x_t`` through the inversion (:func:`~.pushforward.pushed_tangents`)
   and measures, per time and image, the energy fraction of the basis in that pushed span ("where
   the basis lives"), of its spectrum-matched random twin, and of an isotropic random direction
   (``r / D``);
4. picks each image's best time from the other images (:func:`~.selection.loo_best_index`) and, only
   there, computes the denoiser-Jacobian basis (:func:`~.pushforward.denoiser_basis`) and the local
   basis of a random-weight network of the same architecture at the same ``x_t`` (the control), with
   its own spectrum-matched twin.

Shapes: ``energy["basis"]``, ``["matched"]``, ``["isotropic"]`` ``(n_t, n)``; ``["pca"]`` (in the clean
image's tangent span), ``["basis_clean"]`` (the basis in the clean span, for comparison), ``["denoiser"]``,
``["control"]``, ``["control_matched"]`` ``(n,)`` at each image's held-out time ``loo_index`` ``(n,)``.
"""

from __future__ import annotations

import time as _time
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from pullback_utils._validate import check_int, check_real
from pullback_utils.analysis import inference as inf
from pullback_utils.analysis.baselines import random_weight_model, spectrum_matched
from pullback_utils.engine.solvers import LocalBasis
from pullback_utils.features.cache import BasisCache, BasisCacheWarning, basis_key_fields, resolve_cache_dir
from pullback_utils.ground_truth.pushforward import denoiser_basis, invert_to_times, pushed_tangents
from pullback_utils.ground_truth.selection import excess_test, loo_best_index
from pullback_utils.ground_truth.tangents import (
    GROUND_TRUTH_DATASETS,
    data_tangent_bases,
    energy_fraction,
    local_pca,
    tangent_basis,
)
from pullback_utils.sweeps.bases import BasisSweep, bases_over

__all__ = ["TruthStudy", "truth_study", "mean_energy", "model_dataset", "check_design", "claim_tests"]


@dataclass
class TruthStudy:
    """One model's ground-truth measurements (module doc).

    Attributes:
        name, dataset: the model and its training dataset; times: the ``n_t`` times (fractions of T).
        data: the held-out images (``ZooData``: ``images`` ``(n, C, H, W)``, ``factors``, ``discrete``);
        tangents: ``n`` clean tangent bases ``(r_j, D)``.
        spans: ``n_t`` lists of ``n`` orthonormal pushed tangent bases ``(r'_ij, D)`` at ``x_t``.
        pushed: ``n`` tensors ``(n_t, r_j, C, H, W)``, the pushed (un-normalised) tangent basis vectors.
        sweep: the local bases ``(n_t, n, k, C, H, W)`` at the inverted states.
        pca: ``n`` local-PCA bases ``(k, D)``; denoiser, control: ``(n, k, C, H, W)`` at ``loo_index``.
        energy: the energy fractions (module doc); loo_index: each image's held-out best time index.
        control_name: the random-weight model; seconds: wall time per stage.
    """

    name: str
    dataset: str
    times: list
    data: Any
    tangents: list
    spans: list
    pushed: list
    sweep: BasisSweep
    pca: list
    denoiser: torch.Tensor
    control: torch.Tensor
    energy: dict[str, np.ndarray]
    loo_index: np.ndarray
    control_name: str
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.tangents)

    def factor_tangents(self, j: int, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Image ``j``'s tangents ``d image / d factor`` ``(K, C, H, W)`` and the same pushed to ``times[i]``.

        The pushed ones are exact linear combinations of the pushed orthonormal basis (the inversion's
        Jacobian is linear): ``J (d image/d f) = sum_r <q_r, d image/d f> J q_r``."""
        from pullback_utils.zoo.datasets import factor_jacobian

        d = self.data
        jac = factor_jacobian(
            self.dataset, d.factors[j : j + 1].double(), {key: v[j : j + 1] for key, v in d.discrete.items()}
        )[0]  # (D, K)
        coef = self.tangents[j] @ jac  # (r, K)
        p = self.pushed[j][i].reshape(coef.shape[0], -1).double()
        shape = tuple(d.images.shape[1:])
        return jac.T.reshape(-1, *shape), (coef.T @ p).reshape(-1, *shape)


def model_dataset(name: str, data_seed: int | None = None) -> str:
    """The procedural dataset of bundled model ``name``; ``ValueError`` when it has no renderer factors,
    or when ``data_seed`` equals the seed its training images were drawn with (not held out)."""
    from pullback_utils.zoo.registry import model_info

    try:
        info = model_info(name)
    except KeyError as exc:
        raise ValueError(f"models: {exc.args[0]}") from None
    ds = info.get("dataset")
    if ds not in GROUND_TRUTH_DATASETS:
        raise ValueError(
            f"models: {name!r} was trained on {ds!r}, which has no renderer factors; use a model of "
            f"{list(GROUND_TRUTH_DATASETS)}"
        )
    if data_seed is not None and int(data_seed) == int(info.get("seed", 0)):
        raise ValueError(
            f"data_seed={data_seed} is the seed of {name!r}'s training images; held-out images need another seed"
        )
    return str(ds)


def mean_energy(vectors: torch.Tensor, span: torch.Tensor) -> float:
    """Mean :func:`~.tangents.energy_fraction` of ``vectors`` ``(m, ...)`` in ``span`` ``(r, D)``."""
    return float(energy_fraction(vectors, span).mean())


def _pushed(
    model: Any, images: torch.Tensor, tangents: list, times: list, steps: int, cache_dir: Any, progress: bool
) -> list[torch.Tensor]:
    """:func:`pushed_tangents` of the orthonormal tangent bases, image by image through the basis cache
    (an entry's ``v`` holds the image's pushed tangents ``(r, n_t, C, H, W)``, ``u`` the clean ones)."""
    shape = tuple(model.sample_shape)
    cache_dir = resolve_cache_dir(cache_dir)  # None or "": no cache
    cache = BasisCache(cache_dir) if cache_dir is not None else None
    keys = [
        basis_key_fields(
            model.fingerprint,
            images[j : j + 1].to(model.dtype),
            0,
            int(q.shape[0]),
            layer=f"pushed-tangents:{list(times)}:{steps}",
            cond=q.to(model.dtype),
            solver={},
        )
        for j, q in enumerate(tangents)
    ]
    out: list[torch.Tensor | None] = [None] * len(tangents)
    if cache is not None:
        for j, f in enumerate(keys):
            hit = cache.load(cache.key(f))
            if hit is not None and tuple(hit.v.shape) == (tangents[j].shape[0], len(times), *shape):
                out[j] = hit.v.transpose(0, 1)
    todo = [j for j in range(len(tangents)) if out[j] is None]
    if todo:
        got = pushed_tangents(model, images[todo], [tangents[j].T for j in todo], times, steps, progress=progress)
        for j, p in zip(todo, got):
            out[j] = p
            if cache is not None and cache.unusable() is None:
                r = tangents[j].shape[0]
                entry = LocalBasis(
                    v=p.transpose(0, 1).contiguous(),
                    u=tangents[j].reshape(r, *shape).to(p.dtype),
                    s=torch.zeros(r, dtype=torch.float64),
                    info={"kind": "pushed tangents"},
                )
                try:
                    cache.save(cache.key(keys[j]), entry, fields=keys[j], meta={"model": model.name})
                except OSError as exc:  # e.g. a full disk: keep the result, say so
                    warnings.warn(f"pushed tangents not cached: {exc}", BasisCacheWarning, stacklevel=2)
    return out  # type: ignore[return-value]


def truth_study(
    name: str,
    *,
    n: int,
    data_seed: int,
    times: Sequence[float],
    k: int,
    ddim_steps: int,
    n_pool: int,
    n_neighbours: int,
    rank_rtol: float = 1e-6,
    cache_dir: Any = None,
    solver: dict | None = None,
    seed: int = 0,
    progress: bool = True,
    loader: Any = None,
) -> TruthStudy:
    """Run the measurements of the module doc for bundled model ``name``.

    Args:
        name: a bundled model trained on a procedural dataset (:func:`model_dataset`).
        n, data_seed: held-out images (a seeded draw of the dataset, not the training seed).
        times: fractions of T; k: basis size; ddim_steps: DDIM inversion steps over [0, T].
        n_pool, n_neighbours: the local-PCA baseline's pool (seed ``data_seed + 1``) and neighbours.
        rank_rtol: rank tolerance of the tangent spans; cache_dir: the basis cache; solver: options
            of :func:`~pullback_utils.engine.solvers.jacobian_svd`; seed: of the twins and the control network.
        loader: how a name becomes a model (default :func:`pullback_utils.load_model`).
    """
    from tqdm.auto import tqdm

    from pullback_utils.zoo.datasets import make_dataset

    n = check_int(n, "n (the best t of an image is chosen from the others)", 2)
    check_design(
        {
            "models": [name],
            "data_seed": data_seed,
            "k": k,
            "n_neighbours": n_neighbours,
            "n_pool": n_pool,
            "rank_rtol": rank_rtol,
        }
    )
    ds = model_dataset(name)
    if loader is None:
        from pullback_utils.zoo.loading import load_model as loader
    solver, times, clock = dict(solver or {}), list(times), {}
    start = _time.perf_counter()
    m = loader(name)
    data = make_dataset(ds, n, seed=data_seed)
    tangents = data_tangent_bases(ds, data.factors, data.discrete, rtol=rank_rtol)
    pool = make_dataset(ds, n_pool, seed=data_seed + 1).images
    pca = [local_pca(pool, img, n_neighbours, k) for img in data.images]
    del pool
    clock["data"] = _time.perf_counter() - start
    xs = invert_to_times(m, data.images, times, steps=ddim_steps)
    sweep = bases_over(m, xs, times, k, cache_dir=cache_dir, desc=f"bases ({name})", progress=progress, **solver)
    clock["bases"] = sweep.seconds
    t0 = _time.perf_counter()
    pushed = _pushed(m, data.images, tangents, times, ddim_steps, cache_dir, progress)
    spans = [
        [tangent_basis(pushed[j][i].reshape(pushed[j].shape[1], -1).T, rtol=rank_rtol) for j in range(n)]
        for i in range(len(times))
    ]
    clock["pushed_tangents"] = _time.perf_counter() - t0
    twin = sweep.spectrum_matched(seed=seed).v
    dim = int(data.images[0].numel())
    e = {
        key: np.array([[mean_energy(src[i, j], spans[i][j]) for j in range(n)] for i in range(len(times))])
        for key, src in (("basis", sweep.v), ("matched", twin))
    }
    e["isotropic"] = np.array([[spans[i][j].shape[0] / dim for j in range(n)] for i in range(len(times))])
    e["pca"] = np.array([mean_energy(pca[j], tangents[j]) for j in range(n)])
    loo = loo_best_index(e["basis"])
    e["basis_clean"] = np.array([mean_energy(sweep.v[loo[j], j], tangents[j]) for j in range(n)])
    t0 = _time.perf_counter()
    ctrl = random_weight_model(m, seed=seed)
    den, con = [], []
    for j in tqdm(range(n), desc=f"denoiser + control ({name})", disable=not progress):
        x, t = xs[loo[j], j : j + 1], times[loo[j]]
        den.append(denoiser_basis(m, x, t, k, cache_dir=cache_dir, **solver).v.float())
        con.append(ctrl.local_basis(x, t, k, cache_dir=cache_dir, **solver).v.reshape(k, *m.sample_shape).float())
    den, con = torch.stack(den), torch.stack(con)
    con_twin = spectrum_matched(con, seed=seed)
    for key, src in (("denoiser", den), ("control", con), ("control_matched", con_twin)):
        e[key] = np.array([mean_energy(src[j], spans[loo[j]][j]) for j in range(n)])
    clock["denoiser_and_control"] = _time.perf_counter() - t0
    clock["total"] = _time.perf_counter() - start
    return TruthStudy(
        name=name,
        dataset=ds,
        times=times,
        data=data,
        tangents=tangents,
        spans=spans,
        pushed=pushed,
        sweep=sweep,
        pca=pca,
        denoiser=den,
        control=con,
        energy=e,
        loo_index=loo,
        control_name=ctrl.name,
        seconds=clock,
    )


def check_design(p: dict[str, Any]) -> None:
    """The chapter's own parameter rules, before any model loads (``ValueError`` naming the parameter):
    ``models`` distinct bundled models of procedural datasets whose training seed is not ``data_seed``;
    ``k < n_neighbours <= n_pool``; ``0 < rank_rtol < 1``."""
    models, seed = p.get("models"), p.get("data_seed", 1)
    seed = check_int(seed, "data_seed", 0)
    if (
        isinstance(models, str)
        or not isinstance(models, (list, tuple))
        or not models
        or len(set(models)) != len(models)
        or not all(isinstance(m, str) for m in models)
    ):
        raise ValueError(f"models must be a non-empty list of distinct model names, got {models!r}")
    for name in models:
        model_dataset(name, seed)
    k, nb, pool = p.get("k", 1), p.get("n_neighbours", 2), p.get("n_pool", 2)
    for key, v in (("n_neighbours", nb), ("n_pool", pool)):
        check_int(v, key)
    if not k < nb <= pool:
        raise ValueError(
            f"n_neighbours must be > k={k} (centred neighbours span at most n_neighbours - 1 "
            f"directions) and <= n_pool={pool}, got {nb}"
        )
    r = p.get("rank_rtol", 1e-6)
    if check_real(r, "rank_rtol") <= 0 or r >= 1:
        raise ValueError(f"rank_rtol must be a number in (0, 1), got {r!r}")


def claim_tests(st: TruthStudy, *, seed: int = 0) -> dict[str, dict[str, Any]]:
    """The three extension records of one model: ``{record id: keyword arguments of Chapter.claim}``.

    Each statistic is the basis's energy in the pushed span minus a baseline's at each image's
    held-out best time (:func:`~.selection.excess_test`); its control is the same difference with the
    random-weight network's basis in place of the trained one (a sign-flip test over images)."""
    e, times = st.energy, st.times
    common = {
        "model": st.name,
        "best_t": times[int(np.argmax(e["basis"].mean(1)))],
        "loo_t": [times[i] for i in st.loo_index],
        "k": int(st.sweep.k),
        "rank_mean": float(np.mean([q.shape[0] for q in st.tangents])),
        "per_t": {"t": times, **{key: e[key].mean(1).tolist() for key in ("basis", "matched", "isotropic")}},
        "control_energy": float(e["control"].mean()),
        "control_model": st.control_name,
        "basis_energy_clean_span": float(e["basis_clean"].mean()),
    }
    iso = float(e["isotropic"][st.loo_index, np.arange(st.n)].mean())

    def control(baseline: np.ndarray) -> inf.TestResult:
        return inf.sign_flip_test(e["control"] - baseline, unit="image", seed=seed)

    return {
        f"ground_truth_matched@{st.name}": dict(
            result=excess_test(e["basis"], e["matched"], seed=seed),
            baselines={
                "spectrum_matched": float(e["matched"][st.loo_index, np.arange(st.n)].mean()),
                "isotropic_random": iso,
            },
            controls={"random_weights": control(e["control_matched"])},
            **common,
        ),
        f"ground_truth_pca@{st.name}": dict(
            result=excess_test(e["basis"], e["pca"], seed=seed),
            baselines={"local_pca": float(e["pca"].mean())},
            controls={"random_weights": control(e["pca"])},
            **common,
        ),
        f"ground_truth_denoiser@{st.name}": dict(
            result=excess_test(e["basis"], e["denoiser"], seed=seed),
            baselines={"denoiser_jacobian": float(e["denoiser"].mean())},
            controls={"random_weights": control(e["denoiser"])},
            **common,
        ),
    }
