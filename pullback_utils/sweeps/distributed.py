"""Basis sweeps on a cluster: the bases of a sweep as Ray tasks, or on any ``concurrent.futures`` executor.

:func:`pullback_utils.sweeps.bases.bases_over` (and so every study and chapter) takes ``cluster=``:

- ``None``: the process default (:func:`set_default_cluster`, set by a chapter's ``cluster`` parameter;
  in-process unless set); ``""`` or ``"serial"``: in-process, one basis after the other;
- ``"local:N"``: a Ray cluster of N CPUs started in this process (kept for its lifetime);
- ``"auto"``: the Ray cluster this machine is part of (``ray start --head`` / ``ray start --address``);
- ``"ray://HOST:PORT"`` (Ray Client) or ``"HOST:PORT"`` (a Ray head's GCS address);
- a :class:`RayCluster` (the same addresses with the number of workers, threads and GPUs per worker);
- a ``concurrent.futures.Executor`` (a process or thread pool, a Dask or ``submitit`` executor, ...).

What happens (:func:`compute_bases`): the driver computes every basis's cache key (content-addressed:
:mod:`pullback_utils.features.cache`) and loads the hits before anything is scheduled; the other ``(x_t, t)``
go to workers that each build the model once (:class:`~pullback_utils.sweeps.worker.ModelSpec`: by name,
as a random-weight control of a named model, or shipped), with one GPU per worker where the cluster
has GPUs; each result is written to the cache by the driver as it arrives, under one progress bar. A
Ray worker that dies is restarted and its task retried (``max_retries``); a task that still fails is
reported after all the others have finished and been saved (:class:`SweepError`), so a rerun resumes.
The numbers are those of the serial sweep: the same code computes each basis, bitwise on CPU with the
same number of torch threads per basis (Ray workers: ``RayCluster.threads``, default 1, the chapters'
``threads`` default too; executor workers: the driver's thread count).

Why Ray: it runs the same code on a laptop (``local:N``), a workstation's GPUs and a multi-node cluster
(including SLURM and Kubernetes deployments, ``ray start`` on the nodes), keeps a model loaded in a
worker between tasks (actors), restarts dead workers and retries their tasks, and schedules by CPU and
GPU. Dask or ``submitit`` (SLURM) users pass their executor instead: the cache, the model shipping and
the error reports are the same, retries are the executor's.

Bad input fails before any model work: a malformed ``cluster`` is a ``ValueError`` naming the valid
forms; an unreachable address, a missing ``ray`` package, workers that cannot import this package or
build the model, or a cluster without the resources a worker asks for, is one :class:`ClusterError`.
"""

from __future__ import annotations

import time
import warnings
from concurrent.futures import Executor, as_completed
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from pullback_utils.sweeps.ray_pool import ClusterError, RayCluster, check_address, run_ray, worker_reports

if TYPE_CHECKING:  # the module imports neither torch nor the engine until a sweep runs (the book's CLI checks
    import torch  # --cluster through check_cluster)

    from pullback_utils.sweeps.worker import BasisTask, ModelSpec

__all__ = [
    "ClusterError",
    "SweepError",
    "RayCluster",
    "check_cluster",
    "resolve_cluster",
    "set_default_cluster",
    "default_cluster",
    "compute_bases",
    "worker_reports",
]

_FORMS = (
    "'' or 'serial' (in-process), 'local:N' (a Ray cluster of N CPUs started here), 'auto' (the Ray cluster "
    "of this machine), 'ray://HOST:PORT' (Ray Client) or 'HOST:PORT' (a Ray head)"
)


class SweepError(RuntimeError):
    """Some bases of a distributed sweep failed; the others were computed (and cached). ``failed`` holds
    ``(index, message)`` pairs, indices into the sweep's flattened ``(n_t * n)`` grid."""

    def __init__(self, message: str, failed: list[tuple[int, str]]) -> None:
        super().__init__(message)
        self.failed = failed


def check_cluster(cluster: Any, name: str = "cluster") -> Any:
    """``cluster`` checked (module doc): a string in canonical form, a :class:`RayCluster`, an executor or
    ``None``; ``ValueError`` naming ``name`` and the valid forms. Needs neither Ray nor a connection."""
    if cluster is None or isinstance(cluster, (Executor, RayCluster)):
        return cluster
    if not isinstance(cluster, str):
        raise ValueError(
            f"{name} must be a string ({_FORMS}), a RayCluster or a concurrent.futures.Executor, "
            f"got {type(cluster).__name__}"
        )
    text = cluster.strip()
    if text in ("", "serial", "auto"):
        return text
    if text.startswith("local:") and text[6:].isdigit() and int(text[6:]) < 1:
        raise ValueError(f"{name}={cluster!r}: local:N needs N >= 1 CPUs")
    if check_address(text):
        return text
    raise ValueError(f"{name}={cluster!r} is not a cluster; valid: {_FORMS}")


_DEFAULT: list[Any] = [None]


def set_default_cluster(cluster: Any) -> None:
    """The cluster of ``bases_over(cluster=None)`` in this process (``None`` or ``""``: in-process)."""
    _DEFAULT[0] = check_cluster(cluster)


def default_cluster() -> Any:
    return _DEFAULT[0]


def resolve_cluster(cluster: Any) -> RayCluster | Executor | None:
    """The backend of a ``cluster`` argument: ``None`` -> the default; ``""``/``"serial"`` -> ``None``."""
    cluster = check_cluster(default_cluster() if cluster is None else cluster)
    if cluster is None or cluster in ("", "serial"):
        return None
    return RayCluster(cluster) if isinstance(cluster, str) else cluster


def _run_executor(
    executor: Executor, spec: ModelSpec, tasks: Sequence[BasisTask], done: Callable, failed: Callable
) -> None:
    import torch

    from pullback_utils.sweeps.worker import compute_task

    threads = torch.get_num_threads()  # the driver's: each basis computed as in the serial sweep
    futures = {executor.submit(compute_task, spec, task, threads): task for task in tasks}
    for fut in as_completed(futures):
        task = futures[fut]
        try:
            basis = fut.result()
        except Exception as exc:  # noqa: BLE001 - reported with the others
            failed(task, f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}")
        else:
            done(task, basis)


# ------------------------------------------------------------------ the driver
def compute_bases(
    model: Any,
    items: Sequence[tuple[torch.Tensor, Any]],
    k: int,
    *,
    cluster: RayCluster | Executor,
    prompt: Any = None,
    layer: str = "mid",
    cache_dir: Path | None = None,
    progress: bool = True,
    desc: str = "bases",
    transform: Callable = lambda b: b,
    solver: dict | None = None,
) -> list:
    """``transform(basis)`` of the basis at every ``(x_t, t)`` of ``items``, in order (module doc).

    Args:
        model: a :class:`~pullback_utils.models.diffusion_model.DiffusionModel`.
        items: ``(x_t (1, *sample_shape), t)`` pairs.
        k, prompt, layer, solver: as for :meth:`DiffusionModel.local_basis`.
        cluster: a :class:`RayCluster` or an executor (:func:`resolve_cluster`).
        cache_dir: the basis cache folder, or ``None``.
        transform: applied to each basis as it arrives (e.g. conversion to the storage dtype).
    """
    from tqdm.auto import tqdm

    from pullback_utils.engine.solvers import basis_warnings
    from pullback_utils.features.cache import BasisCache, BasisCacheWarning, basis_key_fields, resolve_cache_dir
    from pullback_utils.sweeps.worker import BasisTask, ModelSpec

    solver = dict(solver or {})
    if solver.get("callback") is not None:
        raise ValueError("solver option callback cannot be used with a cluster (it would run on the workers)")
    cond = model.conditioning(prompt, batch=1)
    cond_cpu = None if cond is None else cond.detach().to("cpu")
    meta = {"model": model.name, "prompt": prompt if isinstance(prompt, (str, list)) else None}
    cache_dir = resolve_cache_dir(cache_dir)  # None or "": no cache
    cache = BasisCache(cache_dir) if cache_dir is not None else None
    out: list = [None] * len(items)
    keys: dict[int, tuple[str, dict]] = {}
    tasks = []
    for index, (x, t) in enumerate(items):
        x = x.to(model.device, model.dtype)
        if cache is not None:
            fields = basis_key_fields(
                model.fingerprint, x, model.unet_timestep(t), int(k), layer=layer, cond=cond, solver=solver
            )
            key = cache.key(fields)
            hit = cache.load(key)
            if hit is not None:
                for category, message in basis_warnings(hit):
                    warnings.warn(message, category, stacklevel=3)
                out[index] = transform(hit)
                continue
            keys[index] = (key, fields)
        tasks.append(
            BasisTask(index=index, x=x.detach().to("cpu"), t=t, k=int(k), layer=layer, cond=cond_cpu, solver=solver)
        )
    problem = cache.unusable() if cache is not None and tasks else None
    if problem:
        warnings.warn(
            f"basis cache folder {cache.root} cannot be used: {problem}; the bases are computed and "
            "returned but not saved",
            BasisCacheWarning,
            stacklevel=3,
        )
    errors: list[tuple[int, str]] = []
    bar = tqdm(total=len(items), initial=len(items) - len(tasks), desc=desc, disable=not progress)

    def done(task: BasisTask, basis: Any) -> None:
        for category, message in basis_warnings(basis):
            warnings.warn(message, category, stacklevel=4)
        if task.index in keys:
            key, fields = keys[task.index]
            if not problem:
                try:
                    cache.save(key, basis, fields=fields, meta=meta)
                except OSError as exc:
                    warnings.warn(
                        f"basis cache {cache.root}: saving failed ({exc}); the basis is kept in memory",
                        BasisCacheWarning,
                        stacklevel=4,
                    )
            basis.info["cache"] = {"hit": False, "key": key}
        out[task.index] = transform(basis)
        bar.update(1)

    def failed(task: BasisTask, message: str) -> None:
        errors.append((task.index, message))
        bar.update(1)

    if tasks:
        spec = ModelSpec.of(model)
        started = time.perf_counter()
        if isinstance(cluster, RayCluster):
            run_ray(cluster, spec, tasks, done, failed)
        else:
            _run_executor(cluster, spec, tasks, done, failed)
        bar.set_postfix(seconds=f"{time.perf_counter() - started:.1f}")
    bar.close()
    if errors:
        errors.sort()
        shown = "; ".join(f"item {i} (t={items[i][1]!r}): {m}" for i, m in errors[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        kept = f"; the {len(items) - len(errors)} other bases were computed" + (
            " and saved to the cache: a rerun computes only the failed ones" if cache is not None else ""
        )
        raise SweepError(f"{len(errors)} of {len(items)} bases failed: {shown}{more}{kept}", errors)
    return out
