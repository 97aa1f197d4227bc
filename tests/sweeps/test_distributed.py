"""Distributed basis sweeps (pullback_utils.sweeps.distributed): executors and a local Ray cluster give the serial
sweep's numbers bitwise, resume from the cache, survive a killed worker, and fail clearly on bad clusters."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import pytest
import torch
from diffusion_helpers import save_pixel_pipeline, tiny_scheduler
from unet_factories import make_tiny_unet2d

from pullback_utils.analysis.baselines import random_weight_model
from pullback_utils.models.diffusion_model import DiffusionModel
from pullback_utils.sweeps import bases as sweeps
from pullback_utils.sweeps import distributed, ray_pool
from pullback_utils.sweeps import worker as sweep_worker
from pullback_utils.zoo.loading import load_model

SOLVER = dict(
    method="krylov", tol=1e-2, max_iters=4, jvp_mode="reverse"
)  # "auto" times both modes: a worker may pick the other
TIMES = [0.9, 0.5]
pytestmark = pytest.mark.filterwarnings("ignore:.*stopped after.*:RuntimeWarning")


@pytest.fixture(autouse=True)
def one_thread():
    """The serial sweeps run with the workers' thread count (1), so their numbers agree bitwise."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model():
    return DiffusionModel(make_tiny_unet2d(), tiny_scheduler("ddpm"), name="tiny", conditional=False)


@pytest.fixture(scope="module")
def folder_model(tmp_path_factory):
    """A model that loads by name (a folder), so the workers rebuild it instead of receiving it."""
    folder = save_pixel_pipeline(tmp_path_factory.mktemp("pipe") / "tiny-ddpm")
    return load_model(str(folder))


def states(model, n=3, seed=0):
    return torch.stack([model.noise(n, seed), model.noise(n, seed + 1)])  # (2, n, 3, 16, 16)


def assert_same(a, b):
    for side in ("v", "u", "s"):
        assert torch.equal(getattr(a, side), getattr(b, side)), side
    for ia, ib in zip(sum(a.info, []), sum(b.info, [])):
        drop = ("seconds", "residuals", "cache")
        assert {k: v for k, v in ia.items() if k not in drop} == {k: v for k, v in ib.items() if k not in drop}
        assert torch.equal(ia["residuals"], ib["residuals"])


def test_cluster_argument_is_checked_before_any_work(model):
    for good in ("", "serial", "local:2", "auto", "ray://10.0.0.1:10001", "head.example:6379", "[::1]:6379"):
        assert distributed.check_cluster(good) == good
    for bad, match in [
        ("local:0", "N >= 1"),
        ("local:x", "is not a cluster"),
        ("ray:2", "is not a cluster"),
        ("ray://host", "is not a cluster"),
        ("host:99999", "is not a cluster"),
        (3, "must be a string"),
    ]:
        with pytest.raises(ValueError, match=match):
            distributed.check_cluster(bad)
    with pytest.raises(ValueError, match="cluster='nowhere' is not a cluster; valid: '' or 'serial'"):
        sweeps.bases_over(model, states(model), TIMES, 2, progress=False, cluster="nowhere")
    with pytest.raises(ValueError, match="RayCluster.threads"):
        distributed.RayCluster("local:2", threads=0)


def test_model_spec_names_loadable_models_and_ships_the_others(model, folder_model):
    spec = sweep_worker.ModelSpec.of(folder_model)
    assert spec.source == folder_model.name and spec.random_seed is None and spec.model is None
    ctrl = sweep_worker.ModelSpec.of(random_weight_model(folder_model, seed=5))
    assert ctrl.source == folder_model.name and ctrl.random_seed == 5 and ctrl.model is None
    assert ctrl.build().fingerprint == random_weight_model(folder_model, seed=5).fingerprint
    shipped = sweep_worker.ModelSpec.of(model)
    assert shipped.source is None and shipped.model.unet is model.unet and shipped.model.vae is None
    built = shipped.build()
    assert built.fingerprint == model.fingerprint and built.unet is not model.unet  # a worker's own copy


def test_thread_and_process_executors_equal_the_serial_sweep_bitwise(model, tmp_path):
    xs = states(model)
    serial = sweeps.bases_over(model, xs, TIMES, 3, progress=False, **SOLVER)
    with ThreadPoolExecutor(2) as ex:
        assert_same(sweeps.bases_over(model, xs, TIMES, 3, progress=False, cluster=ex, **SOLVER), serial)
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as ex:
        cached = sweeps.bases_over(model, xs, TIMES, 3, progress=False, cluster=ex, cache_dir=tmp_path, **SOLVER)
    assert_same(cached, serial)
    assert len(list(tmp_path.glob("*.safetensors"))) == 6
    # the entries the executor's driver wrote are the serial sweep's: a serial rerun computes nothing
    again = sweeps.bases_over(model, xs, TIMES, 3, progress=False, cache_dir=tmp_path, **SOLVER)
    assert all(i["cache"]["hit"] for i in sum(again.info, [])) and torch.equal(again.v, serial.v)


def test_a_failing_basis_is_reported_and_the_others_are_kept(model, tmp_path):
    xs = states(model).clone()
    xs[1, 2, 0, 0, 0] = float("nan")
    with ThreadPoolExecutor(2) as ex, pytest.raises(distributed.SweepError) as err:
        sweeps.bases_over(model, xs, TIMES, 2, progress=False, cluster=ex, cache_dir=tmp_path, **SOLVER)
    assert err.value.failed[0][0] == 5 and len(err.value.failed) == 1
    assert "item 5 (t=0.5): ValueError: x_t contains NaN" in str(err.value) and "a rerun computes only" in str(
        err.value
    )
    assert len(list(tmp_path.glob("*.safetensors"))) == 5


def test_callback_cannot_go_to_a_cluster(model):
    with ThreadPoolExecutor(1) as ex, pytest.raises(ValueError, match="callback cannot be used with a cluster"):
        sweeps.bases_over(model, states(model), TIMES, 2, progress=False, cluster=ex, callback=print, **SOLVER)


def test_the_default_cluster_applies_to_bases_over(model, monkeypatch):
    seen = []

    class Scheduled(Exception):
        pass

    def fake(*args, **kwargs):
        seen.append(kwargs["cluster"])
        raise Scheduled

    monkeypatch.setattr(sweeps, "compute_bases", fake)
    distributed.set_default_cluster("local:3")
    try:
        with pytest.raises(Scheduled):
            sweeps.bases_over(model, states(model), TIMES, 2, progress=False)
        assert seen == [distributed.RayCluster("local:3")]
        sweeps.bases_over(model, states(model, 1), TIMES, 1, progress=False, cluster="", **SOLVER)  # in-process
        assert len(seen) == 1
    finally:
        distributed.set_default_cluster(None)


# ------------------------------------------------------------------ a local Ray cluster
@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray_pool.start_local(ray, 2)
    yield ray
    ray_pool.shutdown_pool()
    ray.shutdown()


@pytest.mark.slow
def test_ray_sweep_equals_serial_and_resumes_from_the_cache(ray_cluster, folder_model, tmp_path):
    xs = states(folder_model)
    serial = sweeps.bases_over(folder_model, xs, TIMES, 3, progress=False, **SOLVER)
    # half the bases are in the cache already: only the others are scheduled
    sweeps.bases_over(folder_model, xs[:1], TIMES[:1], 3, progress=False, cache_dir=tmp_path, **SOLVER)
    dist = sweeps.bases_over(
        folder_model, xs, TIMES, 3, progress=False, cluster="local:2", cache_dir=tmp_path, **SOLVER
    )
    assert_same(dist, serial)
    assert [i["cache"]["hit"] for i in sum(dist.info, [])] == [True] * 3 + [False] * 3
    assert {r["fingerprint"] for r in distributed.worker_reports()} == {folder_model.fingerprint}
    assert len(distributed.worker_reports()) == 2
    # the random-weight control: rebuilt on the workers from the folder and the seed
    ctrl = random_weight_model(folder_model, seed=7)
    assert_same(
        sweeps.bases_over(ctrl, xs, TIMES, 2, progress=False, cluster="local:2", **SOLVER),
        sweeps.bases_over(ctrl, xs, TIMES, 2, progress=False, **SOLVER),
    )


@pytest.mark.slow
def test_ray_sweep_survives_a_killed_worker(ray_cluster, model, tmp_path):
    xs = torch.stack([model.noise(6, 3), model.noise(6, 4)])
    solver = dict(method="krylov", tol=1e-6, max_iters=8)  # slower bases: the kill lands mid-sweep
    serial = sweeps.bases_over(model, xs, TIMES, 4, progress=False, **solver)
    ray_pool.shutdown_pool()
    killed = []

    def kill_one_worker():
        deadline = time.time() + 600
        while time.time() < deadline and not (distributed.worker_reports() and list(tmp_path.glob("*.safetensors"))):
            time.sleep(0.05)
        pid = distributed.worker_reports()[0]["pid"]
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    thread = threading.Thread(target=kill_one_worker, daemon=True)
    thread.start()
    dist = sweeps.bases_over(model, xs, TIMES, 4, progress=False, cluster="local:2", cache_dir=tmp_path, **solver)
    thread.join(5)
    assert killed, "no worker was killed"
    with pytest.raises(ProcessLookupError):
        os.kill(killed[0], 0)
    assert len(list(tmp_path.glob("*.safetensors"))) == 12
    assert_same(dist, serial)


@pytest.mark.slow
def test_ray_workers_that_cannot_build_the_model_give_one_clear_error(ray_cluster, folder_model, tmp_path, monkeypatch):
    xs = states(folder_model, 1)
    ray_pool.shutdown_pool()  # workers holding these weights would be reused (the weights are what matters)
    monkeypatch.setattr(sweep_worker, "_loadable", lambda name: True)
    ghost = DiffusionModel(folder_model.unet, folder_model.scheduler, name=str(tmp_path / "gone"), conditional=False)
    started = time.time()
    with pytest.raises(distributed.ClusterError, match=r"cannot build load_model\('.*gone'\).*ModelNotFoundError"):
        sweeps.bases_over(ghost, xs, TIMES, 2, progress=False, cluster="local:2", **SOLVER)
    other = save_pixel_pipeline(tmp_path / "other", seed=1)  # a folder of that name with other weights
    changed = DiffusionModel(folder_model.unet, folder_model.scheduler, name=str(other), conditional=False)
    with pytest.raises(distributed.ClusterError, match="other weights than the driver's"):
        sweeps.bases_over(changed, xs, TIMES, 2, progress=False, cluster="local:2", **SOLVER)
    assert time.time() - started < 300


def test_an_unreachable_address_fails_within_seconds_naming_it(model):
    pytest.importorskip("ray")
    for address in ("ray://127.0.0.1:9", "127.0.0.1:9"):
        started = time.time()
        with pytest.raises(distributed.ClusterError, match="cannot reach 127.0.0.1:9"):
            sweeps.bases_over(model, states(model, 1), TIMES, 2, progress=False, cluster=address, **SOLVER)
        assert time.time() - started < 15


def test_without_ray_a_cluster_is_one_clear_error(model, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(distributed.ClusterError, match=r"needs Ray.*pip install 'pullback_utils\[distributed\]'"):
        sweeps.bases_over(model, states(model, 1), TIMES, 2, progress=False, cluster="local:2", **SOLVER)


def test_workers_without_the_package_are_named():
    spec = sweep_worker.ModelSpec(fingerprint="f", name="disks", source="disks")
    msg = ray_pool._explain("RaySystemError: ModuleNotFoundError: No module named 'pullback_utils'", spec, "auto")
    assert "cannot import pullback_utils: install the package on every node" in msg


def test_a_chapter_cluster_parameter_sets_the_default_of_its_sweeps(tmp_path):
    from pullback_utils.chapters import chapter

    try:
        ch = chapter.setup("coarse_to_fine", {"cluster": " local:2 ", "output_dir": str(tmp_path)})
        assert ch.cluster == "local:2" and distributed.default_cluster() == "local:2"
        chapter.setup("coarse_to_fine", {"cluster": "", "output_dir": str(tmp_path)})
        assert distributed.resolve_cluster(None) is None
        with pytest.raises(chapter.ParameterValueError, match="coarse_to_fine: cluster='ray://' is not a cluster"):
            chapter.setup("coarse_to_fine", {"cluster": "ray://", "output_dir": str(tmp_path)})
        with pytest.raises(chapter.ParameterValueError, match="cluster must be a string"):
            chapter.setup("coarse_to_fine", {"cluster": 2, "output_dir": str(tmp_path)})
    finally:
        distributed.set_default_cluster(None)
