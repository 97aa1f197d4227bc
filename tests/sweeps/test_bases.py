"""Sweeps: trajectories, cached resumable basis sweeps, distance matrices, spectrum-matched twins;
and the studies built on them (noise floor, ablation) on a tiny random model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from diffusion_helpers import tiny_scheduler
from unet_factories import make_tiny_unet2d

from pullback_utils.analysis.geometry import geodesic_distance
from pullback_utils.analysis.intrinsic_dimension import twonn_dimension
from pullback_utils.analysis.spectra import psd_summary
from pullback_utils.chapters import measurements as studies
from pullback_utils.models.diffusion_model import DiffusionModel
from pullback_utils.sweeps import bases as sweeps

# tiny random model (x 3x16x16, h 32x4x4); the tests compare results of identical solver calls
SOLVER = dict(method="krylov", tol=1e-2, max_iters=4)
pytestmark = pytest.mark.filterwarnings("ignore:.*stopped after.*:RuntimeWarning")


@pytest.fixture(scope="module")
def model():
    return DiffusionModel(make_tiny_unet2d(), tiny_scheduler("ddpm"), name="tiny", conditional=False)


@pytest.fixture(scope="module")
def traj(model):
    return sweeps.sample_trajectories(model, 3, seed=1, times=[0.9, 0.5, 0.2], steps=10)


def test_sample_trajectories_shapes_and_consistency(model, traj):
    assert traj.x.shape == (3, 3, 3, 16, 16) and traj.levels == [900, 500, 200] and traj.x0.shape == (3, 3, 16, 16)
    again = sweeps.sample_trajectories(model, 3, seed=1, times=[0.2, 0.9, 0.5], steps=10)
    torch.testing.assert_close(again.x[1], traj.x[0])
    torch.testing.assert_close(again.x[0], traj.x[2])
    top = sweeps.sample_trajectories(model, 2, seed=4, times=[1.0], final=False)
    torch.testing.assert_close(top.x[0], model.noise(2, 4))
    assert top.x0 is None
    with pytest.raises(ValueError, match="n must be an int >= 1"):
        sweeps.sample_trajectories(model, 0, 0, [0.5])
    with pytest.raises(ValueError, match="> 0"):
        sweeps.sample_trajectories(model, 1, 0, [0.0])


def test_bases_over_matches_single_calls_and_resumes_from_cache(model, traj, tmp_path):
    sw = sweeps.bases_over(model, traj.x[:2, :2], traj.times[:2], 3, cache_dir=tmp_path, progress=False, **SOLVER)
    assert sw.v.shape == (2, 2, 3, 3, 16, 16) and sw.u.shape == (2, 2, 3, 32, 4, 4) and sw.s.shape == (2, 2, 3)
    one = model.local_basis(traj.x[1, 1:2], traj.times[1], 3, **SOLVER)
    assert geodesic_distance(sw.v[1, 1], one.v[:, 0]) < 1e-4
    again = sweeps.bases_over(model, traj.x[:2, :2], traj.times[:2], 3, cache_dir=tmp_path, progress=False, **SOLVER)
    torch.testing.assert_close(again.v, sw.v)
    assert again.solver_summary()["n_bases"] == 4
    fixed = sweeps.bases_over(model, traj.x[0, :2], traj.times[:2], 3, progress=False, **SOLVER)
    torch.testing.assert_close(fixed.v[0], sw.v[0], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="rows of states"):
        sweeps.bases_over(model, traj.x, [0.5], 2, progress=False)


def _sweep_from(v: torch.Tensor, times) -> sweeps.BasisSweep:
    n_t, n, k = v.shape[:3]
    return sweeps.BasisSweep(v=v, u=v.reshape(n_t, n, k, -1), s=torch.ones(n_t, n, k), times=list(times))


def test_distance_matrices_on_constructed_subspaces():
    g = torch.Generator().manual_seed(0)
    n, k, d = 5, 2, 40
    shared = torch.randn(k, d, generator=g)
    v = torch.stack(
        [
            torch.stack([torch.linalg.qr(torch.randn(k, k, generator=g))[0] @ shared for _ in range(n)]),
            torch.randn(n, k, d, generator=g),
        ]
    ).reshape(2, n, k, 1, 1, d)
    dist = _sweep_from(v, [0.9, 0.1]).cross_sample_distances("v")
    assert dist.shape == (2, n, n) and np.abs(dist[0]).max() < 1e-5
    assert dist[1][~np.eye(n, dtype=bool)].min() > 0.5
    self_d = _sweep_from(v, [0.9, 0.1]).self_distances("v")
    assert self_d.shape == (n, 2, 2)
    np.testing.assert_allclose(
        self_d[:, 0, 1],
        [geodesic_distance(v[0, j].reshape(k, -1), v[1, j].reshape(k, -1)) for j in range(n)],
        atol=1e-10,
    )


def test_spectrum_matched_twin_keeps_shapes_and_destroys_shared_subspaces():
    g = torch.Generator().manual_seed(1)
    shared = torch.randn(2, 3, 8, 8, generator=g)
    v = shared.expand(2, 4, 2, 3, 8, 8).clone()  # every sample shares one subspace at both times
    sw = sweeps.BasisSweep(v=v, u=v.clone(), s=torch.ones(2, 4, 2), times=[0.9, 0.1])
    tw = sw.spectrum_matched(seed=0)
    assert tw.v.shape == v.shape and tw.u.shape == v.shape
    assert np.abs(sw.cross_sample_distances("v")).max() < 1e-5
    assert tw.cross_sample_distances("v")[0][~np.eye(4, dtype=bool)].min() > 0.3


def test_noise_floor_and_ablation_separate_causes(model, tmp_path):
    st = studies.tangent_study(
        model,
        n=2,
        seed=0,
        times=[0.9, 0.5, 0.2],
        k=2,
        ddim_steps=10,
        control_times=[0.9],
        cache_dir=tmp_path,
        solver=SOLVER,
        progress=False,
    )
    assert st.control.v.shape[:2] == (1, 2) and "random weights" in st.control_name
    floor = studies.noise_floor_sweep(model, st, [0.5], cache_dir=tmp_path, solver=SOLVER, progress=False)
    assert floor.shape == (2,) and (floor >= 0).all()
    abl = studies.crossed_bases(model, st, 0.9, 0.2, cache_dir=tmp_path, solver=SOLVER, progress=False)
    np.testing.assert_allclose(
        abl["v"]["total"], [geodesic_distance(st.sweep.v[0, j], st.sweep.v[2, j]) for j in (0, 1)], atol=1e-6
    )
    cross = sweeps.bases_over(model, st.traj.x[0, :1], [0.2], 2, progress=False, **SOLVER)
    d_time0 = geodesic_distance(st.sweep.v[0, 0], cross.v[0, 0])
    assert 0 < d_time0 <= 2 * abl["v"]["time_only"][0] + 1e-6
    with pytest.raises(ValueError, match="control_times must be among times"):
        studies.tangent_study(model, n=2, seed=0, times=[0.9, 0.5], k=2, ddim_steps=10, control_times=[0.3])


def test_ablation_on_the_random_weight_control_uses_its_own_bases(model, tmp_path):
    """``crossed_bases(..., control=True)``: the diagonal comes from the study's control sweep (the random-weight
    network at the same states), the crossed bases from the network given; times outside control_times fail."""
    from pullback_utils.analysis.baselines import random_weight_model

    st = studies.tangent_study(
        model,
        n=2,
        seed=0,
        times=[0.9, 0.5, 0.2],
        k=2,
        ddim_steps=10,
        control_times=[0.9, 0.2],
        cache_dir=tmp_path,
        solver=SOLVER,
        progress=False,
    )
    ctrl = random_weight_model(model, seed=0)
    abl = studies.crossed_bases(ctrl, st, 0.9, 0.2, cache_dir=tmp_path, solver=SOLVER, progress=False, control=True)
    np.testing.assert_allclose(
        abl["u"]["total"],
        [geodesic_distance(st.control.u[0, j].reshape(2, -1), st.control.u[1, j].reshape(2, -1)) for j in (0, 1)],
        atol=1e-6,
    )
    assert (abl["u"]["time_only"] > 0).all() and (abl["u"]["state_only"] > 0).all()
    with pytest.raises(ValueError, match="control times"):
        studies.crossed_bases(ctrl, st, 0.9, 0.5, cache_dir=tmp_path, solver=SOLVER, progress=False, control=True)


def test_psd_summary_separates_smooth_from_rough_bases():
    h = w = 16
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    smooth = torch.stack([torch.cos(2 * math.pi * (xx + i * yy) / w) for i in range(2)]).float()
    rough = torch.stack([torch.cos(math.pi * (xx + yy + i)) + 0.1 * torch.cos(math.pi * xx) for i in range(2)]).float()
    v = torch.stack([smooth, rough])[:, None, :, None].expand(2, 3, 2, 3, h, w)
    summ = psd_summary(_sweep_from(v, [0.9, 0.1]))
    assert summ["psd"].shape == (2, 3, len(summ["freqs"])) and summ["low_share"].shape == (2, 3)
    assert (summ["low_share"][0] > 0.99).all() and (summ["low_share"][1] < 0.2).all()
    assert (summ["mean_freq"][0] < summ["mean_freq"][1]).all()
    assert summ["cutoff"] == 2.0 and 0 < summ["white_noise_low_share"] < 0.2


def test_twonn_recovers_the_dimension_of_a_flat_manifold():
    g = np.random.default_rng(0)
    est, lo, hi = twonn_dimension(g.uniform(size=(1500, 3)) @ g.standard_normal((3, 50)), n_boot=100)
    assert 2.5 < est < 3.5 and lo < est < hi
    est6, *_ = twonn_dimension(g.uniform(size=(1500, 6)) @ g.standard_normal((6, 50)), n_boot=50)
    assert est6 > est + 1.5


def test_resolve_cache_dir_and_storage_dtype(tmp_path, monkeypatch):
    assert sweeps.resolve_cache_dir("") is None and sweeps.resolve_cache_dir(None) is None
    monkeypatch.setenv("HOME", str(tmp_path))
    p = sweeps.resolve_cache_dir("~/cache/b")
    assert p == tmp_path / "cache" / "b" and p.is_dir()
    assert sweeps.storage_dtype(5, 20, 8, (3, 32, 32)) == torch.float32
    assert sweeps.storage_dtype(20, 100, 50, (3, 256, 256)) == torch.float16  # the paper's CelebA-HQ protocol


def test_inversion_round_trip_exact_for_a_point_mass_and_improved_by_fixed_point_iterations():
    from diffusion_helpers import GaussianEps

    def gaussian_model(s: float) -> DiffusionModel:  # data N(mu, s^2 I) in the image range, exact eps
        mu = 0.5 * torch.rand(3, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64) - 0.25
        sched = tiny_scheduler("ddim")
        return DiffusionModel(
            GaussianEps(mu, s, sched.alphas_cumprod.double()),
            sched,
            sample_shape=(3, 4, 4),
            conditional=False,
            name="gaussian",
        )

    point = gaussian_model(s=0.0)  # DDIM is exact for a point mass: inversion then sampling is the identity
    x0 = point.unet.mu.expand(3, *point.sample_shape).clone()
    rows = studies.inversion_round_trip(point, x0, steps=[10], fixed_point_iters=[0])
    assert rows[0]["relative_error"] < 1e-8 and rows[0]["evaluations"] == 20
    spread = gaussian_model(s=0.5)  # first-order accurate otherwise: fixed-point refinement closes the gap
    x = 0.5 * torch.randn(
        3, *spread.sample_shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    ).clamp(-1, 1)
    err = {
        r["fixed_point_iters"]: r for r in studies.inversion_round_trip(spread, x, steps=[10], fixed_point_iters=[0, 3])
    }
    assert err[3]["relative_error"] < 0.5 * err[0]["relative_error"] and err[3]["psnr_db"] > err[0]["psnr_db"]
    assert err[3]["evaluations"] == 10 * 5


def test_a_degenerate_basis_stops_the_sweep_with_its_place_and_rank():
    from pullback_utils.engine.solvers import LocalBasis

    class Stub:
        num_train_timesteps, sample_shape = 1000, (1, 2, 2)

        def local_basis(self, x, t, k, **kw):
            return LocalBasis(
                v=torch.zeros(k, 1, 1, 2, 2),
                u=torch.zeros(k, 1, 3),
                s=torch.zeros(k),
                info={"degenerate": t == 0.2, "rank": 1},
            )

    with pytest.raises(
        ValueError,
        match=r"degenerate basis at t=0.2, sample 0: k=2 exceeds the Jacobian's numerical "
        r"rank 1.*use k <= 1",
    ):
        sweeps.bases_over(Stub(), torch.zeros(2, 1, 1, 2, 2), [0.5, 0.2], 2, progress=False)


def _sweep_into(cache_dir: str, start) -> None:
    """One of two processes computing the same bases into one cache at the same time."""
    torch.set_num_threads(1)
    model = DiffusionModel(make_tiny_unet2d(), tiny_scheduler("ddpm"), name="tiny", conditional=False)
    start.wait()
    sweeps.bases_over(model, model.noise(3, 5).unsqueeze(0), [0.6], 3, cache_dir=cache_dir, progress=False, **SOLVER)


def test_two_processes_writing_the_same_bases_leave_valid_entries(model, tmp_path, recwarn, monkeypatch):
    import multiprocessing

    # one J·V mode in every process: `auto` picks by timing, and under load two processes may pick differently
    # (the bases then differ at the solver's tolerance, not bitwise; seen in CI beside a long benchmark)
    monkeypatch.setenv("PULLBACK_JVP_MODE", "reverse")

    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(2)
    procs = [ctx.Process(target=_sweep_into, args=(str(tmp_path), start)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(600)
    assert [p.exitcode for p in procs] == [0, 0]
    assert sorted(f.suffix for f in tmp_path.iterdir()) == [".safetensors"] * 3  # no temporary files left
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        again = sweeps.bases_over(
            model, model.noise(3, 5).unsqueeze(0), [0.6], 3, cache_dir=tmp_path, progress=False, **SOLVER
        )
        fresh = sweeps.bases_over(model, model.noise(3, 5).unsqueeze(0), [0.6], 3, progress=False, **SOLVER)
    finally:
        torch.set_num_threads(before)
    assert all(i["cache"]["hit"] for i in again.info[0])  # every entry read back, none reported unreadable
    assert not [w for w in recwarn if "unreadable" in str(w.message)]
    assert torch.equal(again.v, fresh.v) and torch.equal(again.u, fresh.u)


def test_variant_sweep_reuses_the_study_states_and_changes_one_choice(model, tmp_path):
    st = studies.tangent_study(
        model,
        n=3,
        seed=0,
        times=[0.9, 0.5, 0.2],
        k=2,
        ddim_steps=10,
        control_times=[0.9],
        cache_dir=tmp_path,
        solver=SOLVER,
        progress=False,
    )
    same = studies.variant_sweep(model, st, [0.9, 0.5, 0.2], [0.2, 0.9], n=2, k=2, solver=SOLVER, cache_dir=tmp_path)
    # the main choices again: the cached bases of the study, for the first 2 samples at the asked times
    torch.testing.assert_close(same.v, st.sweep.v[[2, 0], :2].to(same.v.dtype))
    other = studies.variant_sweep(
        model, st, [0.9, 0.5, 0.2], [0.9], n=2, k=2, layer="up.0", solver=SOLVER, cache_dir=tmp_path
    )
    assert other.v.shape[:3] == (1, 2, 2) and other.u.shape[3:] != st.sweep.u.shape[3:]
    with pytest.raises(ValueError, match="not among"):
        studies.variant_sweep(model, st, [0.9, 0.5, 0.2], [0.3], n=2, k=2)
    with pytest.raises(ValueError, match="n must be"):
        studies.variant_sweep(model, st, [0.9, 0.5, 0.2], [0.9], n=4, k=2)
