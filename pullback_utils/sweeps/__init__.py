"""Bases over samples x times x prompts: ``bases`` (the serial sweep and its results), ``distributed``
(executors and Ray), ``ray_pool`` and ``worker`` (the Ray driver and worker).
"""

from pullback_utils._lazy import submodules

# The public API, grouped by module (each group: the module's job). Names load on first use (PEP 562),
# so importing the package imports none of its modules; ``__all__`` is this table flattened.
_EXPORTS = {
    # bases: bases over samples x times x prompts, distance matrices
    "bases": [
        "Trajectories",
        "BasisSweep",
        "resolve_cache_dir",
        "storage_dtype",
        "sample_trajectories",
        "bases_over",
    ],
    # distributed: sweeps on executors or a Ray cluster
    "distributed": [
        "ClusterError",
        "SweepError",
        "RayCluster",
        "check_cluster",
        "resolve_cluster",
        "set_default_cluster",
        "default_cluster",
        "compute_bases",
        "worker_reports",
    ],
    # ray_pool: the Ray driver
    "ray_pool": [
        "check_address",
        "connect",
        "start_local",
        "unreachable",
        "run_ray",
        "shutdown_pool",
    ],
    # worker: the Ray worker
    "worker": [
        "ModelSpec",
        "BasisTask",
        "compute_task",
        "BasisWorker",
    ],
    # gaussian_control: the Gaussian control as a sweep
    "gaussian_control": [
        "gaussian",
        "gaussian_sweep",
    ],
}
__all__ = [name for names in _EXPORTS.values() for name in names]

__getattr__, __dir__ = submodules(__name__, _EXPORTS)
