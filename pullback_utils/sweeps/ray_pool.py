"""The Ray side of distributed sweeps: connecting to a cluster, a pool of actors holding one model, and
running a sweep's tasks on it (:mod:`pullback_utils.sweeps.distributed` is the driver).

Only :func:`connect` imports Ray. A pool is kept for the next sweep of the same model (a chapter's sweeps
reuse its workers); a sweep of another model replaces it, since its actors hold the CPUs or GPUs that the
new ones need.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

from pullback_utils._validate import check_int, is_int

if TYPE_CHECKING:
    from pullback_utils.sweeps.worker import BasisTask, ModelSpec

__all__ = [
    "ClusterError",
    "RayCluster",
    "check_address",
    "connect",
    "start_local",
    "unreachable",
    "worker_reports",
    "run_ray",
    "shutdown_pool",
]

_ADDRESS = re.compile(r"^(?:ray://)?(?P<host>\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.-]+):(?P<port>\d{1,5})$")
_LOCAL = re.compile(r"^local:(?P<n>\d+)$")


class ClusterError(RuntimeError):
    """The cluster cannot run the sweep (unreachable, no Ray, workers without the package or the model)."""


def check_address(text: str) -> bool:
    """Whether ``text`` is a Ray address of the forms ``local:N`` (N >= 1 is checked by the caller), ``auto``,
    ``ray://HOST:PORT`` or ``HOST:PORT``."""
    if text == "auto" or _LOCAL.match(text):
        return True
    m = _ADDRESS.match(text)
    return bool(m) and 0 < int(m.group("port")) < 65536 and m.group("host") not in ("ray", "local")  # typos


def unreachable(text: str, timeout: float = 2.0) -> str | None:
    """Why nothing answers at the address ``ray://HOST:PORT`` or ``HOST:PORT`` (a TCP connection within
    ``timeout`` seconds), or ``None`` when something listens there or ``text`` is not such an address
    (``local:N``, ``auto``). Checks the address before a run that would fail on it minutes later."""
    m = _ADDRESS.match(text.strip())
    if not m or text.strip() == "auto" or _LOCAL.match(text.strip()):
        return None
    host, port = m.group("host").strip("[]"), int(m.group("port"))
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as e:
        return (
            f"nothing answers at {host}:{port} ({e.strerror or type(e).__name__}); "
            "start the Ray cluster first or fix the address"
        )


@dataclass(frozen=True)
class RayCluster:
    """A Ray cluster and how to use it.

    Attributes:
        address: ``"local:N"``, ``"auto"``, ``"ray://HOST:PORT"`` or ``"HOST:PORT"``.
        workers: number of actors (default: as many as the cluster's GPUs / ``gpus_per_worker``, or its
            CPUs / ``threads``).
        threads: torch threads (and CPUs reserved) per worker.
        gpus_per_worker: GPUs per worker (default 1 when the cluster has GPUs, else 0).
        ready_timeout: seconds to wait for the workers to build the model before giving up.
        max_retries: restarts of a worker that died, and retries of its task.
    """

    address: str
    workers: int | None = None
    threads: int = 1
    gpus_per_worker: float | None = None
    ready_timeout: float = 900.0
    max_retries: int = 3

    def __post_init__(self) -> None:
        m = _LOCAL.match(str(self.address))
        if not isinstance(self.address, str) or not check_address(self.address) or (m and int(m.group("n")) < 1):
            raise ValueError(
                f"RayCluster.address must be 'local:N' (N >= 1), 'auto', 'ray://HOST:PORT' or "
                f"'HOST:PORT', got {self.address!r}"
            )
        if self.workers is not None and (not is_int(self.workers) or self.workers < 1):
            raise ValueError(f"RayCluster.workers must be an int >= 1 or None, got {self.workers!r}")
        check_int(self.threads, "RayCluster.threads", 1)


_STATE: dict[str, Any] = {"address": None, "pool": None}  # the connection we made, the live actor pool


def _import_ray(address: str):
    try:
        import ray
    except ImportError:
        raise ClusterError(
            f"cluster={address!r} needs Ray, which is not installed: pip install 'pullback_utils[distributed]'"
        ) from None
    return ray


def _probe(address: str, timeout: float = 5.0) -> None:
    """Fail within ``timeout`` seconds when nothing listens at ``HOST:PORT``."""
    m = _ADDRESS.match(address)
    host, port = m.group("host").strip("[]"), int(m.group("port"))
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        raise ClusterError(
            f"cluster={address!r}: cannot reach {host}:{port} ({exc.strerror or exc}); is a Ray "
            "head running there (ray start --head) and the port open?"
        ) from None


def connect(address: str) -> Any:
    ray = _import_ray(address)
    remote = address != "auto" and not _LOCAL.match(address)
    if remote:
        _probe(address)
    if ray.is_initialized():
        if _STATE["address"] == address:
            return ray
        if _STATE["address"] is None:  # a connection the caller made with ray.init
            here = str(ray.get_runtime_context().gcs_address)
            if not remote or address.removeprefix("ray://") == here:
                return ray
            raise ClusterError(
                f"cluster={address!r}: this process is already connected to the Ray cluster at "
                f"{here} (ray.init); call ray.shutdown() first, or pass cluster='auto' to use it"
            )
        shutdown_pool()
        ray.shutdown()
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    quiet = logging.getLogger("ray")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # Ray's start-up notes would land in every chapter's output
    try:
        m = _LOCAL.match(address)
        if m:
            start_local(ray, int(m.group("n")))
        else:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
    except Exception as exc:  # noqa: BLE001 - every failure to connect gets the address named
        why = " ".join(str(exc).split())[:400]
        hint = " (start one with `ray start --head`, or use 'local:N')" if address == "auto" else ""
        raise ClusterError(
            f"cluster={address!r}: could not connect to Ray{hint}: {type(exc).__name__}: {why}"
        ) from None
    finally:
        quiet.setLevel(level)
    _STATE["address"] = address
    return ray


def start_local(ray: Any, cpus: int, tries: int = 3) -> None:
    """``ray.init`` of a local cluster of ``cpus`` CPUs, tried again when its start-up times out (on a
    loaded machine the node's agents can take longer to start than Ray waits for them)."""
    for attempt in range(tries):
        try:
            ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
            return
        except Exception:  # noqa: BLE001 - "The current node timed out during startup" and the like
            ray.shutdown()
            if attempt == tries - 1:
                raise


def shutdown_pool() -> None:
    pool = _STATE.get("pool")
    _STATE["pool"] = None
    if pool is not None:
        import ray

        for actor in pool["actors"]:
            try:
                ray.kill(actor)
            except Exception:  # noqa: BLE001 - already gone
                pass


def _explain(error: str, spec: ModelSpec, address: str) -> str:
    if "No module named 'pullback_utils'" in error or 'No module named "pullback_utils"' in error:
        return (
            f"the Ray workers of cluster={address!r} cannot import pullback_utils: install the package on "
            "every node (pip install 'pullback_utils[distributed]', the same version as here)"
        )
    if "ModelNotFoundError" in error or "other weights than the driver" in error:
        return (
            f"the Ray workers of cluster={address!r} cannot build {spec.describe()}: {error}. The model must "
            "load by the same name on every node (a bundled model, or a folder on a shared path)"
        )
    return f"the Ray workers of cluster={address!r} failed to start: {error}"


def _pool(cluster: RayCluster, spec: ModelSpec, n_tasks: int) -> list:
    """Actors holding the model of ``spec`` (reused when the last pool holds the same model)."""
    ray = connect(cluster.address)
    pool = _STATE.get("pool")
    if pool is not None and pool["key"] == (spec.key, cluster):
        return pool["actors"]
    shutdown_pool()  # its actors hold CPUs/GPUs that the new ones need
    total = ray.cluster_resources()
    cpus, gpus = float(total.get("CPU", 0)), float(total.get("GPU", 0))
    per_gpu = cluster.gpus_per_worker if cluster.gpus_per_worker is not None else (1.0 if gpus >= 1 else 0.0)
    if per_gpu > gpus:
        raise ClusterError(f"cluster={cluster.address!r} has {gpus:g} GPUs; a worker asks for {per_gpu:g}")
    if cluster.threads > cpus:
        raise ClusterError(f"cluster={cluster.address!r} has {cpus:g} CPUs; a worker asks for {cluster.threads}")
    fit = int(gpus // per_gpu) if per_gpu > 0 else int(cpus // cluster.threads)
    n = max(1, min(cluster.workers or fit, fit, n_tasks))
    from pullback_utils.sweeps.worker import BasisWorker

    actor_cls = ray.remote(
        num_cpus=cluster.threads,
        num_gpus=per_gpu,
        max_restarts=cluster.max_retries,
        max_task_retries=cluster.max_retries,
    )(BasisWorker)
    # a spec that names its model travels by value; a shipped model once, through the object store
    spec_arg = spec if spec.model is None else ray.put(spec)
    actors = [actor_cls.remote(spec_arg, cluster.threads) for _ in range(n)]
    try:
        reports = ray.get([a.ready.remote() for a in actors], timeout=cluster.ready_timeout)
    except ray.exceptions.GetTimeoutError:
        for a in actors:
            ray.kill(a)
        raise ClusterError(
            f"the {n} workers of cluster={cluster.address!r} did not start within {cluster.ready_timeout:g} s "
            f"(the cluster has {cpus:g} CPUs, {gpus:g} GPUs; each worker asks for {cluster.threads} CPU, "
            f"{per_gpu:g} GPU)"
        ) from None
    except Exception as exc:  # noqa: BLE001 - e.g. the actor class cannot be unpickled on the workers
        for a in actors:
            ray.kill(a)
        raise ClusterError(
            _explain(f"{type(exc).__name__}: {' '.join(str(exc).split())[:600]}", spec, cluster.address)
        ) from None
    bad = [r["error"] for r in reports if r["error"]]
    if bad:
        for a in actors:
            ray.kill(a)
        raise ClusterError(_explain(bad[0], spec, cluster.address))
    _STATE["pool"] = {"key": (spec.key, cluster), "actors": actors, "reports": reports, "spec": spec_arg}
    return actors


def worker_reports() -> list[dict]:
    """``ready()`` reports (pid, host, device, threads) of the live Ray workers (for logs and tests)."""
    pool = _STATE.get("pool")
    return list(pool["reports"]) if pool else []


def run_ray(cluster: RayCluster, spec: ModelSpec, tasks: Sequence[BasisTask], done: Callable, failed: Callable) -> None:
    actors = _pool(cluster, spec, len(tasks))
    import ray
    from ray.exceptions import RayActorError, RayTaskError

    queue, inflight, dead = deque(tasks), {}, set()

    def submit(a: int) -> None:
        task = queue.popleft()
        inflight[actors[a].compute.remote(task)] = (a, task)

    for a in range(len(actors)):
        for _ in range(2):  # two in flight per worker: the next task is there when one finishes
            if queue:
                submit(a)
    while inflight:
        ready, _ = ray.wait(list(inflight), num_returns=1)
        a, task = inflight.pop(ready[0])
        try:
            basis = ray.get(ready[0])
        except RayTaskError as exc:
            cause = exc.cause if getattr(exc, "cause", None) is not None else exc
            failed(task, f"{type(cause).__name__}: {' '.join(str(cause).split())[:300]}")
        except RayActorError as exc:
            dead.add(a)
            failed(
                task,
                f"its worker died and was not recovered after {cluster.max_retries} retries "
                f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]})",
            )
        else:
            done(task, basis)
        alive = [i for i in range(len(actors)) if i not in dead]
        if queue and not alive:
            while queue:
                failed(queue.popleft(), "no worker left (every worker died)")
        elif queue:
            submit(a if a not in dead else min(alive, key=lambda i: sum(v[0] == i for v in inflight.values())))
    if dead:
        _STATE["pool"] = None  # do not reuse a pool with dead workers
