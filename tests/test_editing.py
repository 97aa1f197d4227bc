"""Editing along the local latent basis (pullback_utils.editing), on tiny random models."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import pytest
import torch

from unet_factories import make_tiny_unet2d, make_tiny_unet2d_condition
from diffusion_helpers import FakeTextEncoder, GaussianEps, tiny_scheduler
from pullback_utils import editing as E
from pullback_utils.geometry import geodesic_distance
from pullback_utils.models import DiffusionModel
from pullback_utils.solvers import LocalBasis

FAST = dict(tol=5e-2)  # basis solver options: loose, the tests check editing, not the solver


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: on a shared, loaded 2-core machine two threads spin against each other
    (measured 20-50x slower per U-Net call)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def pixel():
    return DiffusionModel(make_tiny_unet2d(), tiny_scheduler("ddpm"), name="tiny-pixel")


@pytest.fixture(scope="module")
def text():
    unet = make_tiny_unet2d_condition(cross_attention_dim=24)
    return DiffusionModel(unet, tiny_scheduler("ddpm"), name="tiny-text", text_encoder=FakeTextEncoder(24), conditional=True)


@pytest.fixture(scope="module")
def edit(pixel):
    """One full edit from noise: 3 frames of N = 4 guidance steps along +v_1 at t = 0.6."""
    return E.edit_image(
        pixel, None, t_edit=0.6, index=1, k=2, gamma=1.0, n_steps=4, sampling_steps=6, frames=3,
        seed=3, basis_kwargs=FAST,
    )


# ---------------------------------------------------------------------------- the unedited result
def test_gamma_zero_or_no_steps_return_the_unedited_result_exactly(pixel, edit):
    for kw in (dict(gamma=0.0, n_steps=4), dict(gamma=1.0, n_steps=0)):
        r = E.edit_image(pixel, None, t_edit=0.6, direction=edit.direction, sampling_steps=6, frames=3, seed=3, **kw)
        assert torch.equal(r.x_t, edit.x_t)
        for f in r.frames:
            assert torch.equal(f, edit.frames[0])  # every frame is the unedited result, bit for bit
        assert torch.equal(r.frames[0], edit.frames[0])
    it = E.xspace_guidance(pixel, edit.x_t, 0.6, edit.direction, gamma=0.0, n_steps=3)
    assert it.shape == (4, *edit.x_t.shape) and all(torch.equal(x, edit.x_t) for x in it)
    it = E.xspace_guidance(pixel, edit.x_t, 0.6, edit.direction, gamma=2.0, n_steps=0)
    assert it.shape == (1, *edit.x_t.shape) and torch.equal(it[0], edit.x_t)


def test_unedited_frame_is_plain_ddim_from_x_t(pixel, edit):
    x0 = E.finish(pixel, edit.x_t, 0.6, sampling_steps=6)
    assert torch.equal(edit.original, pixel.to_image(x0))
    assert edit.steps == [0, 2, 4] and edit.frames.shape == (3, 3, 16, 16)
    assert edit.basis is not None and edit.basis.k == 2
    torch.testing.assert_close(edit.direction, edit.basis.v[1].reshape(3, 16, 16))


# ---------------------------------------------------------------------------- the edit grows with gamma * N
def test_edit_differs_and_grows_with_gamma_times_n(pixel, edit):
    sizes = E.change_size(edit.frames, edit.original).tolist()
    assert sizes[0] == 0.0 and 0 < sizes[1] < sizes[2]
    # in x_t: the distance from x^(0) grows with j and, at fixed N, with gamma
    moved = [float((x - edit.iterates[0]).norm()) for x in edit.iterates]
    assert moved[0] == 0 and all(a < b for a, b in zip(moved, moved[1:]))
    small = E.xspace_guidance(pixel, edit.x_t, 0.6, edit.direction, gamma=0.5, n_steps=4)
    assert float((small[-1] - small[0]).norm()) < moved[-1]


def test_plus_and_minus_v_move_in_opposite_directions(pixel, edit):
    v = edit.direction
    s = 0.05
    both = E.xspace_guidance(pixel, edit.x_t, 0.6, torch.stack([v, -v]), gamma=1.0, n_steps=1, step_size=s)
    dp, dm = (both[1] - both[0]).flatten(1)
    cos = float(dp @ dm / (dp.norm() * dm.norm()))
    assert cos < -0.99
    assert float((dp + dm).norm()) < 0.1 * float(dp.norm())  # what is left is second order in s


# ---------------------------------------------------------------------------- naive traversal, metrics
def test_naive_traverse():
    x = torch.zeros(1, 3, 4, 4)
    v = torch.ones(3, 4, 4)
    out = E.naive_traverse(x, v, [0.0, 1.0, -2.0])
    assert out.shape == (3, 1, 3, 4, 4)
    assert torch.equal(out[0], x) and torch.equal(out[2], -2 * torch.ones(1, 3, 4, 4))
    with pytest.raises(ValueError, match="strengths"):
        E.naive_traverse(x, v, [])


def test_change_metrics():
    a = torch.zeros(2, 3, 8, 8)
    b = a.clone()
    b[1] += 0.5
    torch.testing.assert_close(E.change_size(b, a), torch.tensor([0.0, 0.5], dtype=torch.float64))
    f = E.change_frequency(b, a)
    assert math.isnan(f[0]) and f[1] == 0.0  # a constant change has frequency 0 (global)
    yy, xx = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    wave = torch.cos(2 * math.pi * 3 * xx / 8).expand(1, 3, 8, 8)
    torch.testing.assert_close(E.change_frequency(wave, torch.zeros(1, 3, 8, 8)), torch.tensor([3.0], dtype=torch.float64))


def test_distance_from_data_is_small_on_the_data():
    sched = tiny_scheduler("ddpm")
    mu = torch.zeros(1, 4, 4)
    m = DiffusionModel(GaussianEps(mu, 0.1, sched.alphas_cumprod), sched, name="gauss", sample_shape=(1, 4, 4), conditional=False)
    g = torch.Generator().manual_seed(0)
    on = 0.1 * torch.randn(4, 1, 4, 4, generator=g)
    off = on + 1.0
    d_on, d_off = E.distance_from_data(m, on), E.distance_from_data(m, off)
    assert d_on.shape == (4,) and bool((d_on < d_off).all())
    assert torch.equal(d_on, E.distance_from_data(m, on))  # same noise draws: deterministic


def test_match_naive_reaches_the_target(pixel, edit):
    target = float(E.change_size(edit.edited, edit.original)[0])
    out = E.match_naive(pixel, edit.x_t, 0.6, edit.direction, target, edit.original, sampling_steps=6,
                        strengths=(0.25, 1, 4, 16, 64))
    assert out["matched"] and out["alpha"] > 0
    assert out["size"] == pytest.approx(target, rel=0.25)
    sizes = [s for _, s in out["grid"]]
    assert sizes == sorted(sizes)


def test_stochastic_finish_uses_the_same_noise_for_every_sample(pixel, edit):
    x = edit.x_t.expand(2, -1, -1, -1)
    out = E.finish(pixel, x, 0.6, sampling_steps=6, eta_below=0.3, seed=1)
    assert torch.equal(out[0], out[1])
    det = E.finish(pixel, edit.x_t, 0.6, sampling_steps=6)
    assert not torch.allclose(out[:1], det)


def test_edit_from_an_image_inverts_it(pixel):
    img = torch.linspace(-0.8, 0.8, 3 * 16 * 16).reshape(1, 3, 16, 16)
    d = torch.randn(3, 16, 16, generator=torch.Generator().manual_seed(0))
    r = E.edit_image(pixel, img, t_edit=100, direction=d / d.norm(), gamma=1.0, n_steps=2, frames=1,
                     inversion_steps=200, sampling_steps=200)
    assert r.frames.shape == (1, 3, 16, 16) and r.steps == [2] and not r.settings["from_noise"]
    assert r.t_level == 100


# ---------------------------------------------------------------------------- chapter helpers
def test_basis_directions_align_with_their_tangent_vectors(pixel, edit):
    B = edit.basis
    for i in range(B.k):
        cos = E.tangent_alignment(pixel, edit.x_t, 0.6, torch.stack([B.v[i, 0], -B.v[i, 0]]), B.u[i])
        assert float(cos[0]) > 0.97 and float(cos[1]) < -0.97  # J v_i = s_i u_i


def test_states_at_times_runs_once_and_keeps_the_order(pixel):
    x_T = pixel.noise(2, seed=5)
    lo, hi = E.states_at_times(pixel, x_T, [0.3, 0.8], sampling_steps=10)
    torch.testing.assert_close(hi, E.to_edit_time(pixel, x_T, 0.8, from_noise=True, sampling_steps=10), rtol=0, atol=0)
    assert lo.shape == hi.shape == (2, 3, 16, 16) and not torch.allclose(lo, hi)


def test_direction_sweep_table_and_images(pixel):
    sw = E.direction_sweep(pixel, pixel.noise(2, seed=1), [0.7], n_directions=1, k=1, gamma=1.0, n_steps=2,
                           sampling_steps=6, basis_kwargs=FAST, progress=False)
    assert sw.labels == ["+v1", "-v1"]
    assert sw.originals.shape == (1, 2, 3, 16, 16) and sw.edits.shape == (1, 2, 2, 3, 16, 16)
    assert len(sw.table) == 4 and {r["sign"] for r in sw.table} == {1, -1}
    assert all(-1 <= r["along"] <= 1 + 1e-6 and r["moved"] > 0 for r in sw.table)
    row = sw.table[0]
    assert row["size"] == pytest.approx(float(E.change_size(sw.edits[0, 0, :1], sw.originals[0, :1])[0]))
    x0, _ = E.edit_along(pixel, sw.x_t[0][:1], 0.7, sw.bases[0][0].v[0], gamma=1.0, n_steps=2, sampling_steps=6)
    torch.testing.assert_close(x0, sw.x0_edits[0, 0, :1])
    with pytest.raises(ValueError, match="n_directions=2 must be <= k=1"):
        E.direction_sweep(pixel, pixel.noise(1), [0.7], n_directions=2, k=1, gamma=1.0, n_steps=1)


def test_held_out_images(pixel):
    assert E.held_out_images(pixel) is None  # not a bundled model
    from pullback_utils.zoo.registry import available_models

    if "disks" not in available_models():
        pytest.skip("bundled model disks not installed")
    from pullback_utils.loading import load_model

    imgs = E.held_out_images(load_model("disks"), 2)
    assert imgs.shape == (2, 3, 32, 32) and float(imgs.min()) >= -1 and float(imgs.max()) <= 1


# ---------------------------------------------------------------------------- parallel transport
def _basis(v, u):
    return LocalBasis(v=v, u=u, s=torch.ones(v.shape[0]))


def test_transport_onto_itself_is_the_identity(edit):
    for i in range(edit.basis.k):
        v, c = E.parallel_transport(edit.basis, edit.basis, i, return_coefficients=True)
        torch.testing.assert_close(v, edit.basis.v[i], atol=1e-5, rtol=0)
        torch.testing.assert_close(c, torch.eye(edit.basis.k)[i], atol=1e-5, rtol=0)


def test_transport_formula_and_refusals():
    g = torch.Generator().manual_seed(0)
    V = torch.linalg.qr(torch.randn(6, 3, generator=g))[0].T  # (3, 6) orthonormal rows
    U = torch.linalg.qr(torch.randn(5, 3, generator=g))[0].T
    b1 = _basis(V.reshape(3, 1, 6), U.reshape(3, 1, 5))
    u0 = (U[0] + 2 * U[2]) / math.sqrt(5)
    b0 = _basis(V.reshape(3, 1, 6), u0.reshape(1, 1, 5))
    v = E.parallel_transport(b0, b1, 0)
    torch.testing.assert_close(v.reshape(-1), (V[0] + 2 * V[2]) / math.sqrt(5), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="index=1 is not a direction of a basis of k = 1"):
        E.parallel_transport(b0, b1, 1)
    with pytest.raises(ValueError, match="h shapes differ"):
        E.parallel_transport(_basis(V.reshape(3, 1, 6), torch.ones(3, 1, 4)), b1, 0)
    ortho = torch.linalg.qr(torch.cat([U.T, torch.randn(5, 1, generator=g)], 1))[0][:, 3]
    with pytest.raises(ValueError, match="orthogonal"):
        E.parallel_transport(_basis(V[:1].reshape(1, 1, 6), ortho.reshape(1, 1, 5)), b1, 0)


# ---------------------------------------------------------------------------- prompts
def test_prompt_conditioned_bases_differ_from_unconditioned(text):
    # edit_image computes the basis under basis_prompt (and generates with prompt = None)
    r = E.edit_image(text, None, t_edit=0.6, index=0, k=2, basis_prompt="a red disk", gamma=1.0,
                     n_steps=1, frames=2, sampling_steps=4, seed=0, basis_kwargs=FAST)
    assert r.settings["basis_prompt"] == "a red disk" and r.settings["n_steps"] == 1
    red = text.local_basis(r.x_t, 0.6, 2, prompt="a red disk", seed=0, **FAST)
    torch.testing.assert_close(r.basis.v, red.v)
    # exact SVDs (the 8x8 latent is small), so any difference is the prompt's, not the solver's
    exact = {p: text.local_basis(r.x_t, 0.6, 2, prompt=p, method="exact") for p in (None, "a red disk", "a blue disk")}
    d_red = geodesic_distance(exact[None].v, exact["a red disk"].v)
    d_blue = geodesic_distance(exact[None].v, exact["a blue disk"].v)
    assert d_red > 1e-3 and d_blue > 1e-3
    assert geodesic_distance(exact["a red disk"].v, exact["a blue disk"].v) > 1e-3
    torch.testing.assert_close(text.local_basis(r.x_t, 0.6, 2, prompt="a red disk", method="exact").v, exact["a red disk"].v)


# ---------------------------------------------------------------------------- bad input, before any compute
@pytest.fixture
def no_compute(pixel, text, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("heavy compute started before the input was checked")

    for m in (pixel, text):
        monkeypatch.setattr(m, "eps", boom)
        monkeypatch.setattr(m, "local_basis", boom)
    return pixel


@pytest.mark.parametrize("kwargs, match", [
    (dict(index=2, k=2), r"index=2 is not a direction of a basis of k = 2 vectors; valid indices are 0..1"),
    (dict(index=-1, k=2), r"index=-1 is not a direction"),
    (dict(index="v1"), r"index must be an int basis index"),
    (dict(index=1.0), r"index must be an int basis index"),
    (dict(prompt="a red disk"), r"prompt='a red disk' was given, but model 'tiny-pixel' is unconditional"),
    (dict(basis_prompt="a red disk"), r"basis_prompt='a red disk' was given, but model 'tiny-pixel' is unconditional"),
    (dict(t_edit=0), r"t_edit=0 is clean data \(level 0\); edits need t_edit in \(0, T\]"),
    (dict(t_edit=0.0), r"clean data"),
    (dict(t_edit=1001), r"outside the training grid.*edits need t_edit in \(0, T\] = \(0, 1000\]"),
    (dict(t_edit=1.5), r"fraction of T in \[0, 1\]"),
    (dict(t_edit=-0.2), r"t_edit"),
    (dict(sign=0), r"sign must be \+1 or -1"),
    (dict(gamma=float("nan")), r"gamma must be a finite number"),
    (dict(n_steps=-1), r"n_steps must be an int >= 0"),
    (dict(k=0), r"k must be an int >= 1"),
    (dict(step_size=0.0), r"step_size must be > 0"),
    (dict(frames=0), r"frames must be an int >= 1"),
])
def test_edit_image_refuses_bad_input_before_compute(no_compute, kwargs, match):
    args = dict(t_edit=0.6, index=0, k=2)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        E.edit_image(no_compute, None, **args)


def test_other_functions_refuse_bad_input(no_compute, text):
    x = no_compute.noise(1)
    v = torch.zeros(3, 16, 16)
    with pytest.raises(ValueError, match=r"t=0 is clean data"):
        E.xspace_guidance(no_compute, x, 0, v, gamma=1.0, n_steps=1)
    with pytest.raises(ValueError, match="prompt='dog' was given, but model 'tiny-pixel' is unconditional"):
        E.xspace_guidance(no_compute, x, 0.5, v, gamma=1.0, n_steps=1, prompt="dog")
    with pytest.raises(ValueError, match=r"direction must have shape \(3, 16, 16\)"):
        E.xspace_guidance(no_compute, x, 0.5, torch.zeros(3, 8, 8), gamma=1.0, n_steps=1)
    with pytest.raises(ValueError, match="t_edit"):
        E.finish(no_compute, x, 1.2)
    with pytest.raises(ValueError, match="times"):
        E.distance_from_data(no_compute, x, times=(0.0,))
    # a text model takes prompts, but a list of them is not one edit
    with pytest.raises(ValueError, match="basis_prompt must be one string"):
        E.edit_image(text, None, t_edit=0.5, basis_prompt=["a", "b"])


def test_edit_defaults_in_one_place(pixel, text):
    assert E.edit_defaults("disks") == E.EDIT_DEFAULTS["zoo-pixel"]
    assert E.edit_defaults("shapes-text")["n_steps_prompt"] == E.EDIT_DEFAULTS["zoo-text"]["n_steps_prompt"]
    assert E.edit_defaults("google/ddpm-ema-celebahq-256")["gamma"] == 0.1
    assert E.edit_defaults("stabilityai/stable-diffusion-2-1-base")["n_steps_prompt"] == 64
    assert E.edit_defaults(pixel)["k"] == E.EDIT_DEFAULTS["zoo-pixel"]["k"]
    assert E.edit_defaults(text) == E.EDIT_DEFAULTS["zoo-text"]
    d = E.edit_defaults("disks")
    d["gamma"] = -1
    assert E.EDIT_DEFAULTS["disks"]["gamma"] != -1  # a copy


# ---------------------------------------------------------------------------- the chapter
@pytest.mark.slow
def test_editing_notebook_runs_with_tiny_parameters(tmp_path):
    pm = pytest.importorskip("papermill")
    from diffusion_helpers import save_pixel_pipeline, save_sd_pipeline

    folder = save_pixel_pipeline(tmp_path / "pipe")
    text_folder = save_sd_pipeline(tmp_path / "sd")  # a latent text model: exercises the prompt section
    nb = Path(__file__).resolve().parents[1] / "notebooks" / "editing.ipynb"
    if not nb.is_file():
        pytest.skip("notebooks/editing.ipynb is not written yet")
    from pullback_utils.book import _venv_kernel

    out = tmp_path / "out"
    out.mkdir()
    with _venv_kernel():
        pm.execute_notebook(
            str(nb), str(out / "editing.ipynb"), kernel_name="python3", cwd=str(out),
            parameters=dict(model=str(folder), text_model=str(text_folder), quick=True, output_dir=".",
                            prompt_pair=["a dog", "a cat"]),
            progress_bar=False,
        )
    import json

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == str(folder)
    assert not metrics["prompt"].get("skipped") and metrics["prompt"]["geodesic_distance"]
    assert metrics["transport"]["per_sample"] and metrics["guidance_vs_naive"]["per_sample"]
    assert any(p.suffix == ".png" for p in out.iterdir())
