"""Tests of pullback_utils.analysis: sweeps, cached resumption, statistics with known answers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from unet_factories import make_tiny_unet2d
from diffusion_helpers import tiny_scheduler
from pullback_utils import analysis as an
from pullback_utils.geometry import geodesic_distance
from pullback_utils.models import DiffusionModel
from pullback_utils.stats import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, spearman

# tiny random model (x 3x16x16, h 32x4x4) with a flat spectrum: a few Krylov iterations; the tests compare
# results of identical solver calls, so accuracy does not matter and the solver's warning is silenced
SOLVER = dict(method="krylov", tol=1e-2, max_iters=4)
pytestmark = pytest.mark.filterwarnings("ignore:.*stopped after.*:RuntimeWarning")


@pytest.fixture(scope="module")
def model():
    return DiffusionModel(make_tiny_unet2d(), tiny_scheduler("ddpm"), name="tiny", conditional=False)


@pytest.fixture(scope="module")
def traj(model):
    return an.sample_trajectories(model, 3, seed=1, times=[0.9, 0.5, 0.2], steps=10)


def test_sample_trajectories_shapes_and_consistency(model, traj):
    assert traj.x.shape == (3, 3, 3, 16, 16)
    assert traj.levels == [900, 500, 200]
    assert traj.x0.shape == (3, 3, 16, 16)
    # the state at 0.9 is DDIM from the seeded noise; order of requested times does not matter
    again = an.sample_trajectories(model, 3, seed=1, times=[0.2, 0.9, 0.5], steps=10)
    torch.testing.assert_close(again.x[1], traj.x[0])
    torch.testing.assert_close(again.x[0], traj.x[2])
    # t = 1.0 is the noise itself
    top = an.sample_trajectories(model, 2, seed=4, times=[1.0], final=False)
    torch.testing.assert_close(top.x[0], model.noise(2, 4))
    assert top.x0 is None


def test_sample_trajectories_rejects_bad_input(model):
    with pytest.raises(ValueError, match="n must be"):
        an.sample_trajectories(model, 0, 0, [0.5])
    with pytest.raises(ValueError, match="> 0"):
        an.sample_trajectories(model, 1, 0, [0.0])
    with pytest.raises(ValueError, match="non-empty"):
        an.sample_trajectories(model, 1, 0, [])


def test_bases_over_matches_single_calls_and_resumes_from_cache(model, traj, tmp_path):
    sweep = an.bases_over(model, traj.x[:2, :2], traj.times[:2], 3, cache_dir=tmp_path, progress=False, **SOLVER)
    assert sweep.v.shape == (2, 2, 3, 3, 16, 16)
    assert sweep.u.shape == (2, 2, 3, 32, 4, 4)
    assert sweep.s.shape == (2, 2, 3)
    one = model.local_basis(traj.x[1, 1:2], traj.times[1], 3, **SOLVER)
    assert geodesic_distance(sweep.v[1, 1], one.v[:, 0]) < 1e-4
    assert len(list(tmp_path.rglob("*.safetensors"))) == 4
    # a rerun loads every entry: same numbers, far less time than a recompute
    again = an.bases_over(model, traj.x[:2, :2], traj.times[:2], 3, cache_dir=tmp_path, progress=False, **SOLVER)
    torch.testing.assert_close(again.v, sweep.v)
    s = again.solver_summary()
    assert s["n_bases"] == 4 and s["angle_estimate_max"] is not None
    # a fixed state used at every time input
    fixed = an.bases_over(model, traj.x[0, :2], traj.times[:2], 3, progress=False, **SOLVER)
    torch.testing.assert_close(fixed.v[0], sweep.v[0], atol=1e-5, rtol=0)


def test_bases_over_rejects_mismatched_times(model, traj):
    with pytest.raises(ValueError, match="rows of states"):
        an.bases_over(model, traj.x, [0.5], 2, progress=False)
    with pytest.raises(ValueError, match="xs must have shape"):
        an.bases_over(model, torch.zeros(2, 2, 3, 8, 8), [0.5, 0.4], 2, progress=False)


def _sweep_from(v: torch.Tensor, times) -> an.BasisSweep:
    n_t, n, k = v.shape[:3]
    return an.BasisSweep(v=v, u=v.reshape(n_t, n, k, -1), s=torch.ones(n_t, n, k), times=list(times))


def test_cross_sample_statistics_on_constructed_subspaces():
    g = torch.Generator().manual_seed(0)
    n, k, d = 5, 2, 40
    shared = torch.randn(k, d, generator=g)
    # t0: every sample spans the same subspace (distance 0); t1: independent random subspaces
    v = torch.stack([
        torch.stack([torch.linalg.qr(torch.randn(k, k, generator=g))[0] @ shared for _ in range(n)]),
        torch.randn(n, k, d, generator=g),
    ]).reshape(2, n, k, 1, 1, d)
    sw = _sweep_from(v, [0.9, 0.1])
    dist = an.cross_sample_distances(sw)
    assert dist.shape == (2, n, n)
    assert np.abs(dist[0]).max() < 1e-5
    assert dist[1][~np.eye(n, dtype=bool)].min() > 0.5
    per_t = an.bootstrap_pairwise_per_t(dist, n_boot=200)
    assert per_t["mean"].shape == (2,)
    assert per_t["low"][1] <= per_t["mean"][1] <= per_t["high"][1]
    est, lo, hi = an.bootstrap_pairwise_stat(dist, lambda m: m[1] - m[0], n_boot=200)
    assert lo > 0 and est == pytest.approx(an.pairwise_mean_per_t(dist)[1])
    base = an.random_baseline(d, k, n=500)
    assert base["low"] < base["mean"] < base["high"] <= base["max_possible"]


@pytest.mark.filterwarnings("ignore:.*bootstrap replicates were non-finite")
def test_pairwise_bootstrap_leaves_out_self_pairs():
    d = np.ones((4, 4)) - np.eye(4)
    est, lo, hi = an.bootstrap_pairwise_stat(d, n_boot=100)
    assert est == lo == hi == 1.0


def test_self_distance_trend_detects_a_drifting_subspace():
    n, k, d, times = 4, 2, 30, [0.8, 0.6, 0.4, 0.2]
    rows = []
    for j in range(n):
        g = torch.Generator().manual_seed(j)
        a, b = torch.randn(k, d, generator=g), torch.randn(k, d, generator=g)
        rows.append(torch.stack([a + s * b for s in (0.0, 0.3, 0.9, 3.0)]))  # drifts away from a
    v = torch.stack(rows, dim=1).reshape(len(times), n, k, 1, 1, d)
    mats = an.self_distance_matrices(_sweep_from(v, times))
    assert mats.shape == (n, 4, 4)
    assert np.allclose(mats, mats.transpose(0, 2, 1)) and np.allclose(mats[:, range(4), range(4)], 0, atol=1e-6)
    tr = an.self_distance_trend(mats, times, n_boot=200)
    assert tr["rho"] > 0.5 and tr["rho_low"] > 0
    assert tr["extreme"][0] > tr["adjacent"][0]


def test_ablation_reuses_the_sweep_and_separates_causes(model, traj, tmp_path):
    sweep = an.bases_over(model, traj.x, traj.times, 2, cache_dir=tmp_path, progress=False, **SOLVER)
    res = an.ablation_distances(model, traj, 0, 2, 2, sweep=sweep, samples=[0, 1], cache_dir=tmp_path,
                                progress=False, **SOLVER)
    ab = res["v"]
    assert set(res) == {"v", "u"}
    assert set(ab) == {"total", "time_only", "state_only", "samples"}
    assert ab["total"].shape == (2,)
    assert np.allclose(ab["total"], [geodesic_distance(sweep.v[0, j], sweep.v[2, j]) for j in (0, 1)])
    assert np.allclose(res["u"]["total"], [geodesic_distance(sweep.u[0, j], sweep.u[2, j]) for j in (0, 1)])
    assert (ab["time_only"] > 0).all() and (ab["state_only"] > 0).all()
    # the crossed bases are the sweep's own bases with the other time input
    cross = an.bases_over(model, traj.x[0, :2], [traj.times[2]], 2, progress=False, **SOLVER)
    d_time0 = geodesic_distance(sweep.v[0, 0], cross.v[0, 0])
    assert 0 < d_time0 <= 2 * ab["time_only"][0] + 1e-6
    # without a sweep the diagonal is computed (and hits the cache): same answer
    res2 = an.ablation_distances(model, traj, 0, 2, 2, samples=[0, 1], cache_dir=tmp_path, progress=False, **SOLVER)
    assert np.allclose(res2["v"]["time_only"], ab["time_only"], atol=1e-5)
    assert np.allclose(res2["u"]["state_only"], res["u"]["state_only"], atol=1e-5)


def test_psd_summary_separates_smooth_from_rough_bases():
    h = w = 16
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    smooth = torch.stack([torch.cos(2 * math.pi * (xx + i * yy) / w) for i in range(2)]).float()
    rough = torch.stack([torch.cos(math.pi * (xx + yy + i)) + 0.1 * torch.cos(math.pi * xx) for i in range(2)]).float()
    v = torch.stack([smooth, rough])[:, None, :, None].expand(2, 3, 2, 3, h, w)  # (n_t=2, n=3, k=2, C, H, W)
    summ = an.psd_summary(_sweep_from(v, [0.9, 0.1]))
    assert summ["psd"].shape == (2, 3, len(summ["freqs"]))
    assert summ["low_share"].shape == (2, 3)
    assert (summ["low_share"][0] > 0.99).all() and (summ["low_share"][1] < 0.2).all()
    assert (summ["mean_freq"][0] < summ["mean_freq"][1]).all()
    assert summ["cutoff"] == 2.0
    assert 0 < summ["white_noise_low_share"] < 0.2


def test_twonn_recovers_the_dimension_of_a_flat_manifold():
    g = np.random.default_rng(0)
    z = g.uniform(size=(1500, 3))
    emb = g.standard_normal((3, 50))
    est, lo, hi = an.twonn_dimension(z @ emb, n_boot=100)
    assert 2.5 < est < 3.5 and lo < est < hi
    est5, *_ = an.twonn_dimension(g.uniform(size=(1500, 6)) @ g.standard_normal((6, 50)), n_boot=50)
    assert est5 > est + 1.5


def test_claim_records_and_metrics_file(tmp_path):
    c = an.claim("diff (rad)", 0.4, 0.1, 0.7, "greater", baseline={"random": np.float64(3.1)}, extra=np.arange(2))
    assert c["verdict"] == REPRODUCED and c["ci"] == [0.1, 0.7] and c["baseline"] == {"random": 3.1}
    assert an.claim("x", -0.4, -0.7, -0.1, "greater")["verdict"] == NOT_REPRODUCED
    assert an.claim("x", 0.1, -0.2, 0.3, "less")["verdict"] == INCONCLUSIVE
    path = an.write_metrics(tmp_path / "out", "nb", {"c": c}, {"k": 3, "times": (0.1, 0.2)}, extra={"nan": float("nan")})
    data = json.loads(path.read_text())
    assert data["claims"]["c"]["extra"] == [0, 1]
    assert data["params"]["times"] == [0.1, 0.2] and data["extra"]["nan"] is None


def test_resolve_cache_dir(tmp_path, monkeypatch):
    assert an.resolve_cache_dir("") is None and an.resolve_cache_dir(None) is None
    monkeypatch.setenv("HOME", str(tmp_path))
    p = an.resolve_cache_dir("~/cache/b")
    assert p == tmp_path / "cache" / "b" and p.is_dir()


def test_pairs_bootstrap_redraws_degenerate_resamples():
    g = np.random.default_rng(0)
    sims = g.uniform(size=(6, 6))
    sims = (sims + sims.T) / 2
    dist = -sims + 0.3 * g.standard_normal((6, 6))
    dist = (dist + dist.T) / 2

    def rho(idx):
        a, b = np.triu_indices(len(idx), 1)
        keep = idx[a] != idx[b]
        return spearman(sims[idx[a][keep], idx[b][keep]], dist[idx[a][keep], idx[b][keep]]) if keep.sum() > 1 else np.nan

    est, lo, hi, valid = an.pairs_bootstrap(6, rho, n_boot=300)
    assert lo < est < hi and lo < hi and 0.9 <= valid <= 1.0
    with pytest.raises(ValueError, match="min_distinct"):
        an.pairs_bootstrap(2, rho)


def test_coarse_to_fine_claim_is_the_paired_difference_of_low_shares():
    rng = np.random.default_rng(0)
    low = np.stack([0.6 + 0.01 * rng.standard_normal(6), 0.5 + 0.01 * rng.standard_normal(6),
                    0.3 + 0.01 * rng.standard_normal(6)])  # (n_t, n), times given in increasing order below
    ps = {"low_share": low, "cutoff": 4.0, "white_noise_low_share": 0.05}
    times = [0.9, 0.5, 0.1]
    rec = an.coarse_to_fine_claim(ps, times, 8, n_boot=500, seed=1, model="m")
    assert rec["estimate"] == pytest.approx(np.mean(low[0] - low[2]))
    assert rec["ci"][0] <= rec["estimate"] <= rec["ci"][1] and rec["verdict"] == "reproduced"
    assert rec["spearman_t_vs_low_share"][0] > 0.9 and rec["model"] == "m"  # pooled over samples: tied t
    flipped = an.coarse_to_fine_claim(ps, times[::-1], 8, n_boot=500, seed=1)  # same data, time reversed
    assert flipped["estimate"] == pytest.approx(-rec["estimate"]) and flipped["verdict"] == "not reproduced"
    with pytest.raises(ValueError, match="low_share"):
        an.coarse_to_fine_claim(ps, [0.9, 0.1], 8)


def test_early_similarity_claim_is_the_difference_of_mean_pairwise_distances():
    n = 5
    off = 1 - np.eye(n)
    cross = np.stack([0.4 * off, 0.7 * off, 1.0 * off])  # (n_t, n, n): every pair at distance 0.4, 0.7, 1.0
    base = {"mean": 2.0, "low": 1.9, "high": 2.1}
    rec = an.early_similarity_claim(cross, [0.9, 0.5, 0.1], 4, "v", base, n_boot=200, seed=0)
    assert rec["estimate"] == pytest.approx(0.6) and rec["ci"] == pytest.approx([0.6, 0.6])
    assert rec["verdict"] == "reproduced" and rec["baseline"]["random_subspace_distance"] == 2.0
    assert rec["spearman_t_vs_distance"][0] == pytest.approx(-1.0)
    two = an.early_similarity_claim(cross[[0, 2]], [0.9, 0.1], 4, "u", base, n_boot=200, seed=0)
    assert two["estimate"] == pytest.approx(0.6) and two["spearman_t_vs_distance"] == [None, None, None]
    with pytest.raises(ValueError, match="side"):
        an.early_similarity_claim(cross, [0.9, 0.5, 0.1], 4, "x", base)
    with pytest.raises(ValueError, match="cross"):
        an.early_similarity_claim(cross, [0.9, 0.1], 4, "v", base)
