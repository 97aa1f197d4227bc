"""Tangent-space ground truth (pullback_utils.ground_truth): known answers on a renderer that is linear in
its factors, the real renderer against finite differences, the pushforward through the DDIM inversion
(closed form on a Gaussian model, finite differences on a U-Net), the denoiser Jacobian against a dense
one, the leave-one-out choice of t, the chapter's study and records, and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from diffusion_helpers import GaussianEps, tiny_scheduler
from unet_factories import make_tiny_unet2d

from pullback_utils import ground_truth as gt
from pullback_utils.analysis.geometry import principal_angles
from pullback_utils.models.diffusion_model import DiffusionModel
from pullback_utils.zoo import datasets as zd

D, K = 60, 4


def _linear(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(D, K, generator=g, dtype=torch.float64), torch.randn(D, generator=g, dtype=torch.float64)


def _jacobian_of(render, z: torch.Tensor) -> torch.Tensor:
    return torch.func.jacfwd(render)(z)  # (D, K)


def _require(name: str = "disks") -> None:
    from pullback_utils.zoo.registry import available_models

    if name not in available_models():
        pytest.skip(f"bundled {name} model not installed")


def _bundled(name: str = "disks"):
    import pullback_utils as pu

    _require(name)
    return pu.load_model(name)


# ------------------------------------------------------------------ the known manifold
def test_linear_renderer_tangent_basis_spans_col_a():
    A, b = _linear()
    z = torch.randn(K, dtype=torch.float64)
    Q = gt.tangent_basis(_jacobian_of(lambda f: A @ f + b, z))
    assert Q.shape == (K, D)
    assert torch.allclose(Q @ Q.T, torch.eye(K, dtype=torch.float64), atol=1e-12)
    qa, _ = torch.linalg.qr(A)
    assert float(principal_angles(Q, qa.T).max()) < 1e-7


def test_energy_fraction_inside_and_orthogonal():
    A, _ = _linear(1)
    Q = gt.tangent_basis(A)
    g = torch.Generator().manual_seed(2)
    inside = (A @ torch.randn(K, 5, generator=g, dtype=torch.float64)).T  # (5, D) in span(A)
    outside = torch.randn(5, D, generator=g, dtype=torch.float64)
    outside = outside - (outside @ Q.T) @ Q  # orthogonal to span(A)
    assert torch.allclose(gt.energy_fraction(inside, Q), torch.ones(5, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(gt.energy_fraction(outside, Q), torch.zeros(5, dtype=torch.float64), atol=1e-12)
    mixed = inside[0] / inside[0].norm() + outside[0] / outside[0].norm()  # 45 degrees: half the energy
    assert float(gt.energy_fraction(mixed[None], Q)[0]) == pytest.approx(0.5, abs=1e-12)
    assert gt.smallest_angle(inside[:2], Q) == pytest.approx(0.0, abs=1e-6)
    assert gt.smallest_angle(outside[:2], Q) == pytest.approx(math.pi / 2, abs=1e-6)


@pytest.mark.parametrize("defect", ["zero", "duplicate"])
def test_rank_deficient_jacobian(defect):
    A, _ = _linear(3)
    A = A.clone()
    A[:, 2] = 0 if defect == "zero" else 2.5 * A[:, 0]
    Q = gt.tangent_basis(A)
    assert Q.shape == (K - 1, D)
    assert torch.allclose(Q @ Q.T, torch.eye(K - 1, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(gt.energy_fraction(A.T[[0, 1, 3]], Q), torch.ones(3, dtype=torch.float64), atol=1e-12)
    assert gt.tangent_basis(torch.zeros(D, K)).shape == (0, D)


def test_local_pca_of_linear_data_recovers_span():
    A, b = _linear(4)
    g = torch.Generator().manual_seed(5)
    z = 0.05 * torch.randn(400, K, generator=g, dtype=torch.float64)
    pool = z @ A.T + b + 1e-4 * torch.randn(400, D, generator=g, dtype=torch.float64)
    P = gt.local_pca(pool, b, n_neighbours=100, k=K)
    assert P.shape == (K, D)
    assert float(principal_angles(P, gt.tangent_basis(A)).max()) < 0.01
    assert float(gt.energy_fraction(P, gt.tangent_basis(A)).min()) > 0.999


def test_random_baseline_closed_form_matches_monte_carlo():
    A, _ = _linear(6)
    Q = gt.tangent_basis(A)
    mc = gt.random_energy_mc(Q, 4000, seed=0)
    assert gt.random_energy(K, D) == K / D
    se = float(mc.std()) / math.sqrt(mc.numel())
    assert abs(float(mc.mean()) - K / D) < 4 * se


def test_disk_tangent_basis_matches_finite_differences():
    factors, discrete = zd.sample_factors("disks", 2, seed=7)
    Q = gt.data_tangent_bases("disks", factors, discrete)
    assert [q.shape for q in Q] == [(6, 3 * 32 * 32)] * 2
    f = factors.double()
    eps = 1e-5
    for i in range(2):
        cols = []
        for j in range(f.shape[1]):
            e = torch.zeros_like(f[i : i + 1])
            e[0, j] = eps
            cols.append(
                ((zd.render("disks", f[i : i + 1] + e) - zd.render("disks", f[i : i + 1] - e)) / (2 * eps)).reshape(-1)
            )
        fd = torch.stack(cols, 1)
        assert torch.allclose(
            fd, zd.factor_jacobian("disks", f[i : i + 1])[0], rtol=1e-4, atol=1e-4 * float(fd.abs().max())
        )
        assert float(principal_angles(Q[i], fd.T).max()) < 1e-4


def test_circle_in_shapes_has_lower_rank_and_ladder_rungs_have_their_factor_count():
    factors, discrete = zd.sample_factors("shapes", 8, seed=1)
    discrete = dict(discrete, shape=torch.tensor([0, 1, 2, 3, 0, 1, 2, 3]))
    ranks = [q.shape[0] for q in gt.data_tangent_bases("shapes", factors, discrete)]
    assert ranks == [9, 10, 10, 10, 9, 10, 10, 10]  # a circle does not change under rotation
    f, disc = zd.sample_factors("ladder-1", 3, seed=1)
    assert [q.shape[0] for q in gt.data_tangent_bases("ladder-1", f, disc)] == [2, 2, 2]  # position only


# ------------------------------------------------------------------ the pushforward through the inversion
def _gaussian_model(s: float = 0.5) -> DiffusionModel:
    mu = 0.3 * torch.randn(3, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    sched = tiny_scheduler("ddim")
    return DiffusionModel(
        GaussianEps(mu, s, sched.alphas_cumprod.double()),
        sched,
        sample_shape=(3, 4, 4),
        conditional=False,
        name="gaussian",
    )


def _gaussian_gain(model: DiffusionModel, s: float, times: list[float], steps: int) -> list[float]:
    """The inversion's Jacobian for eps linear in x: a scalar per kept time, multiplied step by step from
    d x_next / d x = sqrt(a_to / a_from) (1 - sqrt(1 - a_from) g) + sqrt(1 - a_to) g, g = d eps / d x."""
    from pullback_utils.diffusion.schedule import grid, legs, resolve_time

    T = model.num_train_timesteps
    ab = lambda n: 1.0 if n == 0 else float(model.scheduler.alphas_cumprod[n - 1])  # noqa: E731
    levels = [resolve_time(t, T) for t in times]
    gain, c = {}, 1.0
    for lo, hi, n in legs(0, levels, steps, T):
        path = grid(lo, hi, n)
        for a, b in zip(path[:-1], path[1:]):
            ae = ab(max(a, 1))
            g = math.sqrt(1 - ae) / (ae * s**2 + 1 - ae)
            c *= math.sqrt(ab(b) / ab(a)) * (1 - math.sqrt(1 - ab(a)) * g) + math.sqrt(1 - ab(b)) * g
        gain[hi] = c
    return [gain[lvl] for lvl in levels]


def test_invert_to_times_matches_one_inversion_on_the_same_grid():
    import pullback_utils as pu

    m = _bundled("disks")
    x0 = zd.make_dataset("disks", 2, seed=10_000).images
    xs = gt.invert_to_times(m, x0, [0.3, 0.1], steps=10)  # legs 0 -> 100 (1 step), 100 -> 300 (2 steps)
    assert xs.shape == (2, 2, *m.sample_shape)
    assert torch.allclose(xs[0], pu.ddim_invert(m, x0, 0.3, steps=3), atol=1e-5)
    assert torch.allclose(xs[1], pu.ddim_invert(m, x0, 0.1, steps=1), atol=1e-5)
    with pytest.raises(ValueError, match="steps"):
        gt.invert_to_times(m, x0, [0.3], steps=0)


def test_pushed_tangents_on_a_gaussian_model_are_the_exact_linear_map():
    s, times, steps = 0.5, [0.8, 0.3, 0.05], 12
    m = _gaussian_model(s)
    g = torch.Generator().manual_seed(1)
    x0 = torch.rand(2, 3, 4, 4, generator=g, dtype=torch.float64) * 1.6 - 0.8
    jac = torch.randn(2, 48, 3, generator=g, dtype=torch.float64)
    out = gt.pushed_tangents(m, x0, jac, times, steps, chunk_size=4)  # 6 tangents in 2 chunks
    assert out.shape == (3, 2, 3, 3, 4, 4)
    gains = _gaussian_gain(m, s, times, steps)
    for i, c in enumerate(gains):
        expected = c * jac.transpose(1, 2).reshape(2, 3, 3, 4, 4)
        assert torch.allclose(out[i], expected, rtol=1e-10, atol=1e-12)
    assert gains[0] != pytest.approx(gains[2])  # the map differs between times
    # the list form gives the same vectors, image by image
    lst = gt.pushed_tangents(m, x0, [jac[0][:, :2], jac[1]], times, steps)
    assert [tuple(p.shape) for p in lst] == [(3, 2, 3, 4, 4), (3, 3, 3, 4, 4)]
    assert torch.allclose(lst[0], out[:, 0, :2]) and torch.allclose(lst[1], out[:, 1])


def test_pushed_tangents_through_a_unet_with_attention_match_finite_differences():
    m = DiffusionModel(make_tiny_unet2d(seed=3).double(), tiny_scheduler("ddim"), conditional=False, name="tiny")
    g = torch.Generator().manual_seed(2)
    x0 = torch.rand(1, 3, 16, 16, generator=g, dtype=torch.float64) * 1.6 - 0.8
    w = torch.randn(1, 768, 2, generator=g, dtype=torch.float64)
    times, steps = [0.6, 0.2], 6
    out = gt.pushed_tangents(m, x0, w, times, steps)
    h = 1e-5
    for c in range(2):
        dv = w[0, :, c].reshape(1, 3, 16, 16)
        fd = (
            gt.invert_to_times(m, x0 + h * dv, times, steps=steps)
            - gt.invert_to_times(m, x0 - h * dv, times, steps=steps)
        ) / (2 * h)
        assert torch.allclose(out[:, 0, c], fd[:, 0], rtol=1e-6, atol=1e-7 * float(fd.abs().max()))


def test_denoiser_basis_matches_the_dense_jacobian(tmp_path):
    m = DiffusionModel(
        make_tiny_unet2d(seed=4, sample_size=8).double(), tiny_scheduler("ddim"), conditional=False, name="tiny"
    )
    x = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    t, k = 0.4, 3
    a = float(m.scheduler.alphas_cumprod[399])  # level 400
    fn = lambda z: (z - math.sqrt(1 - a) * m.eps(z, t)) / math.sqrt(a)  # noqa: E731
    dense = torch.func.jacrev(fn)(x).reshape(192, 192)
    _, sv, vh = torch.linalg.svd(dense)
    assert float(sv[k - 1] - sv[k]) > 1e-3 * float(sv[0])  # a gap: the top-k subspace is determined
    b = gt.denoiser_basis(m, x, t, k, method="krylov", tol=1e-6, cache_dir=tmp_path)
    assert b.v.shape == (k, 3, 8, 8) and b.u.shape == (k, 3, 8, 8)
    assert torch.allclose(b.s, sv[:k], rtol=1e-5)
    assert float(principal_angles(b.v.reshape(k, -1), vh[:k]).max()) < 1e-4
    again = gt.denoiser_basis(m, x[0], t, k, method="krylov", tol=1e-6, cache_dir=tmp_path)
    assert again.info["cache"]["hit"] and torch.equal(again.v, b.v)
    other = m.local_basis(x, t, k, cache_dir=tmp_path, method="krylov", tol=1e-6)  # a different cache entry
    assert not other.info.get("cache", {}).get("hit")


# ------------------------------------------------------------------ the best t, chosen leave-one-out
def test_cross_fitting_holds_out_each_image_and_takes_both_baseline_shapes():
    vals = np.array([[1.0, 0.0, 0.0], [0.0, 0.1, 0.1]])
    assert list(gt.loo_best_index(vals)) == [1, 0, 0]  # an image's own value does not pick its time
    cf = gt.cross_fitted_best(vals, np.zeros(3))
    assert cf["best_index"] == 0 and np.allclose(cf["diff"], [0.0, 0.0, 0.0])
    per_t = np.array([[0.5, 0.5, 0.5], [0.2, 0.2, 0.2]])
    assert np.allclose(gt.cross_fitted_best(vals, per_t)["diff"], [-0.2, -0.5, -0.5])


def test_cross_fitting_removes_the_selection_bias_of_the_argmax():
    """Pure noise over 5 times: the value at the argmax over all images is biased upwards, the
    leave-one-out value is not."""
    rng = np.random.default_rng(0)
    naive, loo = [], []
    for _ in range(400):
        v = rng.normal(size=(5, 20))
        naive.append(v[np.argmax(v.mean(1))].mean())
        loo.append(gt.cross_fitted_best(v, np.zeros(20))["diff"].mean())
    se = np.std(loo) / math.sqrt(len(loo))
    assert abs(np.mean(loo)) < 4 * se
    assert np.mean(naive) > 0.2  # about E[max of 5 N(0, 1/20)] = 0.26


def test_excess_test_finds_a_known_effect_and_not_a_null():
    rng = np.random.default_rng(1)
    base = rng.uniform(0, 0.1, size=(3, 20))
    res = gt.excess_test(base + 0.05 + rng.normal(0, 0.01, (3, 20)), base, seed=0)
    assert res.p_value < 0.01 and res.estimate == pytest.approx(0.05, abs=0.01) and res.n_units == 20
    flat = rng.normal(0, 1, 20)
    null = gt.excess_test(np.tile(flat, (3, 1)), flat, seed=0)  # identical values: zero difference
    assert null.estimate == 0.0 and null.p_value == 1.0


# ------------------------------------------------------------------ the chapter's study and records
def test_truth_study_on_disks_measures_where_the_basis_lives(tmp_path):
    m = _bundled("disks")
    from pullback_utils import claims

    kw = dict(
        n=2,
        data_seed=10_000,
        times=[0.5, 0.2],
        k=2,
        ddim_steps=4,
        n_pool=60,
        n_neighbours=5,
        cache_dir=tmp_path,
        solver={"method": "krylov", "tol": 0.1, "max_iters": 3},
        progress=False,
    )
    st = gt.truth_study("disks", **kw)
    e = st.energy
    assert {key: e[key].shape for key in e} == {
        "basis": (2, 2),
        "matched": (2, 2),
        "isotropic": (2, 2),
        "pca": (2,),
        "basis_clean": (2,),
        "denoiser": (2,),
        "control": (2,),
        "control_matched": (2,),
    }
    assert all(((v >= 0) & (v <= 1 + 1e-9)).all() for v in e.values())
    assert np.allclose(e["isotropic"], 6 / 3072)  # disks: 6 factors, full rank after the push
    for i in range(2):
        for j in range(2):
            q = st.spans[i][j]
            assert torch.allclose(q @ q.T, torch.eye(q.shape[0], dtype=q.dtype), atol=1e-8)
            assert float(gt.energy_fraction(st.pushed[j][i], q).min()) > 1 - 1e-8
            assert e["basis"][i, j] == pytest.approx(gt.mean_energy(st.sweep.v[i, j], q))
    # linearity: the per-factor tangents pushed directly equal the study's combination of its pushed basis
    clean, pushed = st.factor_tangents(1, 0)
    direct = gt.pushed_tangents(
        m, st.data.images[1:2], clean.reshape(1, clean.shape[0], -1).transpose(1, 2).float(), st.times, 4
    )
    assert torch.allclose(pushed.float(), direct[0, 0], rtol=1e-3, atol=1e-3 * float(direct.abs().max()))
    again = gt.truth_study("disks", **kw)  # from the cache: the same numbers
    assert all(np.allclose(again.energy[key], e[key]) for key in e)
    recs = {rid: claims.record(rid, **kwargs) for rid, kwargs in gt.claim_tests(st).items()}
    assert set(recs) == {"ground_truth_matched@disks", "ground_truth_pca@disks", "ground_truth_denoiser@disks"}
    for rid, rec in recs.items():
        claims.check_record(rid, rec)
        assert rec["verdict"] == "underpowered" and rec["unit"] == "image" and rec["n_units"] == 2
        assert "random_weights" in rec["controls"]


def test_extension_outcomes_are_never_called_not_reproduced():
    from pullback_utils import claims
    from pullback_utils.analysis.inference import NOT_REPRODUCED, REPRODUCED

    for base, words in (
        ("ground_truth_matched", "same-spectrum random"),
        ("ground_truth_pca", "local PCA"),
        ("ground_truth_denoiser", "denoiser Jacobian"),
    ):
        spec = claims.get(f"{base}@shapes")
        assert spec.kind == "extension"
        assert claims.outcome_words(spec, NOT_REPRODUCED).startswith("below") and words in claims.outcome_words(
            spec, NOT_REPRODUCED
        )
        assert claims.outcome_words(spec, REPRODUCED).startswith("above")


def test_chapter_smoke_run_writes_valid_records(tmp_path_factory):
    """The chapter through papermill (the book runner, quick parameters of book/params/quick.yaml)."""
    from book_workspace import quick_layout, quick_run

    from pullback_utils.claims import read_metrics

    result = quick_run(tmp_path_factory, ["ground_truth"])["ground_truth"]
    assert result.status in ("ok", "skipped"), result.message
    data = read_metrics(quick_layout(tmp_path_factory).out_dir("ground_truth") / "metrics.json")
    names = {f"ground_truth_{s}@{m}" for s in ("matched", "pca", "denoiser") for m in data["params"]["models"]}
    assert set(data["claims"]) == names
    assert set(data["figures"]) == {"gt_directions", "gt_energy"}


# ------------------------------------------------------------------ bad input
def test_bad_input_names_the_parameter():
    A, b = _linear()
    Q = gt.tangent_basis(A)
    with pytest.raises(ValueError, match="jacobian"):
        gt.tangent_basis(torch.zeros(D))
    with pytest.raises(ValueError, match="basis"):
        gt.energy_fraction(torch.ones(2, D), torch.ones(D))
    with pytest.raises(ValueError, match="entries"):
        gt.energy_fraction(torch.ones(2, D + 1), Q)
    with pytest.raises(ValueError, match="vectors"):
        gt.energy_fraction(torch.ones(D), Q)
    pool = torch.randn(30, D, dtype=torch.float64)
    with pytest.raises(ValueError, match="k="):
        gt.local_pca(pool, b, n_neighbours=20, k=D + 1)
    with pytest.raises(ValueError, match="n_neighbours"):
        gt.local_pca(pool, b, n_neighbours=2, k=3)
    with pytest.raises(ValueError, match="n_neighbours"):
        gt.local_pca(pool, b, n_neighbours=31, k=3)
    with pytest.raises(ValueError, match="x has"):
        gt.local_pca(pool, b[:-1], n_neighbours=10, k=3)
    with pytest.raises(ValueError, match="r must"):
        gt.random_energy(D + 1, D)
    with pytest.raises(ValueError, match="name"):
        gt.data_tangent_bases("textures", torch.zeros(1, 6))
    with pytest.raises(ValueError, match="baseline"):
        gt.cross_fitted_best(np.zeros((2, 3)), np.zeros(2))
    with pytest.raises(ValueError, match="values"):
        gt.cross_fitted_best(np.full((2, 3), np.nan), np.zeros(3))


def test_bad_input_to_the_pushforward_and_the_denoiser():
    m = _gaussian_model()
    x0 = torch.zeros(2, 3, 4, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"jac must have shape \(N=2, D=48"):
        gt.pushed_tangents(m, x0, torch.zeros(2, 47, 3), [0.5], 4)
    with pytest.raises(ValueError, match="jac holds 1 tangent sets"):
        gt.pushed_tangents(m, x0, [torch.zeros(48, 2)], [0.5], 4)
    with pytest.raises(ValueError, match="images must have shape"):
        gt.pushed_tangents(m, torch.zeros(2, 3, 5, 5), torch.zeros(2, 75, 1), [0.5], 4)
    with pytest.raises(ValueError, match="chunk_size"):
        gt.pushed_tangents(m, x0, torch.zeros(2, 48, 1), [0.5], 4, chunk_size=0)
    with pytest.raises(ValueError, match="steps"):
        gt.pushed_tangents(m, x0, torch.zeros(2, 48, 1), [0.5], 0)
    with pytest.raises(ValueError, match="non-finite"):
        gt.pushed_tangents(m, x0, torch.full((2, 48, 1), float("nan")), [0.5], 4)
    with pytest.raises(ValueError, match="noisy level"):
        gt.denoiser_basis(m, x0[:1], 0, 2)
    with pytest.raises(ValueError, match="x_t must have shape"):
        gt.denoiser_basis(m, x0, 0.5, 2)


def test_truth_study_refuses_bad_designs_before_loading_a_model():
    _require("disks")

    def loader(name):
        raise AssertionError("the model was loaded before the parameters were checked")

    kw = dict(n=20, data_seed=10_000, times=[0.5], k=5, ddim_steps=4, n_pool=100, n_neighbours=50, loader=loader)
    for change, match in (
        ({"n": 1}, r"n \(the best t of an image is chosen from the others\) must be an int >= 2"),
        ({"n_neighbours": 5}, "n_neighbours"),
        ({"data_seed": 0}, "training images"),
    ):
        with pytest.raises(ValueError, match=match):
            gt.truth_study("disks", **{**kw, **change})


@pytest.mark.parametrize(
    "change, match",
    [
        ({"models": "disks"}, "models must be a non-empty list"),
        ({"models": ["disks", "disks"]}, "distinct"),
        ({"models": ["textures"]}, "no renderer factors"),
        ({"models": ["no-such-model"]}, "models: "),
        ({"data_seed": 0}, "training images"),
        ({"n_neighbours": 5}, "n_neighbours must be > k=5"),
        ({"n_pool": 10}, "<= n_pool=10"),
        ({"rank_rtol": 0.0}, "rank_rtol"),
    ],
)
def test_chapter_parameters_are_checked_before_any_model_loads(change, match):
    _require("disks")
    import pullback_utils as pu

    params = {
        "models": ["disks"],
        "n_samples": 20,
        "times": [0.9, 0.1],
        "k": 5,
        "n_pool": 100,
        "n_neighbours": 50,
        "rank_rtol": 1e-6,
        "data_seed": 10_000,
        "output_dir": "",
        "cache_dir": "",
    }
    with pytest.raises(ValueError, match=match):
        pu.chapters.chapter.setup("ground_truth", {**params, **change})
