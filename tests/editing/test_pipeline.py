"""edit_image and its steps (pullback_utils.editing.pipeline), on tiny random models."""

from __future__ import annotations

import math

import pytest
import torch

from pullback_utils import editing as E
from pullback_utils.analysis.geometry import geodesic_distance
from pullback_utils.editing import EditConfig


# ---------------------------------------------------------------------------- the unedited result
def test_gamma_zero_or_no_steps_return_the_unedited_result_exactly(pixel, edit):
    for kw in (dict(gamma=0.0, n_steps=4), dict(gamma=1.0, n_steps=0)):
        r = E.edit_image(pixel, None, t_edit=0.6, direction=edit.direction, sampling_steps=6, frames=3, seed=3, **kw)
        assert torch.equal(r.x_t, edit.x_t)
        for f in r.frames:
            assert torch.equal(f, edit.frames[0])  # every frame is the unedited result, bit for bit
        assert torch.equal(r.frames[0], edit.frames[0]) and torch.equal(r.original, edit.original)


def test_unedited_frame_is_plain_ddim_from_x_t(pixel, edit):
    x0 = E.finish(pixel, edit.x_t, 0.6, sampling_steps=6)
    assert torch.equal(edit.original, pixel.to_image(x0)) and torch.equal(edit.x0_original, x0)
    assert torch.equal(edit.frames[:1], edit.original)
    assert edit.steps == [0, 2, 4] and edit.frames.shape == (3, 3, 16, 16)
    assert edit.basis is not None and edit.basis.k == 2
    torch.testing.assert_close(edit.direction, edit.basis.v[1].reshape(3, 16, 16))


def test_original_is_the_unedited_result_with_one_frame(pixel, edit):
    """Bug fix: with frames=1, EditResult.original returned the edited image (frames[:1])."""
    r = E.edit_image(
        pixel, None, t_edit=0.6, direction=edit.direction, gamma=1.0, n_steps=4, sampling_steps=6, frames=1, seed=3
    )
    assert r.steps == [4] and r.frames.shape == (1, 3, 16, 16)
    assert torch.equal(r.original, edit.original)  # x_t finished without guidance
    assert float(E.change_size(r.edited, r.original)[0]) > 0
    torch.testing.assert_close(r.edited, edit.edited, rtol=1e-5, atol=1e-5)  # batch 1 vs 2 through the U-Net


def test_steps_follow_the_figure(pixel, edit):
    """The pipeline's steps, redone by hand: to t -> basis -> guidance -> finish."""
    x_t = E.to_edit_time(pixel, pixel.noise(1, seed=3), 0.6, from_noise=True, sampling_steps=6)
    assert torch.equal(x_t, edit.x_t)
    basis = pixel.local_basis(x_t, 0.6, 2, seed=3, tol=5e-2)
    torch.testing.assert_close(basis.v, edit.basis.v)
    it = E.xspace_guidance(pixel, x_t, 0.6, basis.v[1].reshape(1, 3, 16, 16), gamma=1.0, n_steps=4)
    torch.testing.assert_close(it, edit.iterates)
    x0 = E.finish(pixel, it[[2, 4], 0], 0.6, sampling_steps=6)
    torch.testing.assert_close(pixel.to_image(x0), edit.frames[1:])
    assert (
        edit.settings["config"]
        == EditConfig.for_model(pixel).replace(gamma=1.0, n_steps=4, sampling_steps=6, k=2).to_dict()
    )


def test_a_config_object_and_keyword_overrides_agree(pixel, edit):
    cfg = EditConfig.for_model(pixel).replace(gamma=1.0, n_steps=4, sampling_steps=6, k=2)
    r = E.edit_image(pixel, None, config=cfg, t_edit=0.6, index=1, frames=3, seed=3, basis_kwargs=dict(tol=5e-2))
    assert torch.equal(r.frames, edit.frames)
    # None keeps the config's value (as gamma=None meant "the model's default")
    r2 = E.edit_image(pixel, None, config=cfg, t_edit=0.6, direction=edit.direction, gamma=None, frames=2, seed=3)
    assert r2.settings["gamma"] == 1.0 and r2.settings["n_steps"] == 4


def test_edit_grows_with_gamma_times_n(pixel, edit):
    sizes = E.change_size(edit.frames, edit.original).tolist()
    assert sizes[0] == 0.0 and 0 < sizes[1] < sizes[2]
    moved = [float((x - edit.iterates[0]).norm()) for x in edit.iterates]
    assert moved[0] == 0 and all(a < b for a, b in zip(moved, moved[1:]))
    small = E.xspace_guidance(pixel, edit.x_t, 0.6, edit.direction, gamma=0.5, n_steps=4)
    assert float((small[-1] - small[0]).norm()) < moved[-1]


def test_stochastic_finish_uses_the_same_noise_for_every_sample(pixel, edit):
    x = edit.x_t.expand(2, -1, -1, -1)
    out = E.finish(pixel, x, 0.6, sampling_steps=6, eta_below=0.3, seed=1)
    assert torch.equal(out[0], out[1])
    det = E.finish(pixel, edit.x_t, 0.6, sampling_steps=6)
    assert not torch.allclose(out[:1], det)


def test_edit_from_an_image_inverts_it(pixel):
    img = torch.linspace(-0.8, 0.8, 3 * 16 * 16).reshape(1, 3, 16, 16)
    d = torch.randn(3, 16, 16, generator=torch.Generator().manual_seed(0))
    r = E.edit_image(
        pixel,
        img,
        t_edit=100,
        direction=d / d.norm(),
        gamma=1.0,
        n_steps=2,
        frames=1,
        inversion_steps=200,
        sampling_steps=200,
    )
    assert r.frames.shape == (1, 3, 16, 16) and r.steps == [2] and not r.settings["from_noise"]
    assert r.t_level == 100
    # without sampling_steps, an image is finished on the inversion's grid
    r = E.edit_image(pixel, img, t_edit=100, direction=d / d.norm(), gamma=0.0, frames=1, inversion_steps=40)
    assert r.settings["sampling_steps"] == 40


# ---------------------------------------------------------------------------- image range (issue 13 item 4)
# (issue 25: images entering the model take the tolerance 0.5 that admits the package's own samples)
@pytest.mark.parametrize("scale, shift", [(255.0, 0.0), (2.0, 0.0), (1.0, -2.0)])
def test_images_outside_the_model_range_are_refused_before_compute(no_compute, scale, shift):
    img = torch.linspace(0, 1, 3 * 16 * 16).reshape(1, 3, 16, 16) * scale + shift
    lo, hi = float(img.min()), float(img.max())
    with pytest.raises(
        ValueError,
        match=(rf"image must be in the model range \[-1, 1\] \(tolerance 0.5\), got values in \[{lo:.4g}, {hi:.4g}\]"),
    ):
        E.edit_image(no_compute, img, t_edit=0.5)


def test_image_range_tolerance_and_non_finite_values(no_compute):
    img = torch.linspace(-1.4, 1.4, 3 * 16 * 16).reshape(1, 3, 16, 16)  # within the tolerance 0.5: accepted
    with pytest.raises(AssertionError, match="heavy compute started"):  # got past the checks
        E.edit_image(no_compute, img, t_edit=0.5, direction=torch.ones(3, 16, 16))
    with pytest.raises(ValueError, match="model range"):
        E.edit_image(no_compute, img * 1.1, t_edit=0.5)
    bad = img.clone()
    bad[0, 0, 0, 0] = math.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        E.edit_image(no_compute, bad, t_edit=0.5)


# ---------------------------------------------------------------------------- prompts
def test_prompt_conditioned_bases_differ_from_unconditioned(text, fast):
    # edit_image computes the basis under basis_prompt (and generates with prompt = None)
    r = E.edit_image(
        text,
        None,
        t_edit=0.6,
        index=0,
        k=2,
        basis_prompt="a red disk",
        gamma=1.0,
        n_steps=1,
        frames=2,
        sampling_steps=4,
        seed=0,
        basis_kwargs=fast,
    )
    assert r.settings["basis_prompt"] == "a red disk" and r.settings["n_steps"] == 1
    red = text.local_basis(r.x_t, 0.6, 2, prompt="a red disk", seed=0, **fast)
    torch.testing.assert_close(r.basis.v, red.v)
    # exact SVDs (the 8x8 latent is small), so any difference is the prompt's, not the solver's
    exact = {p: text.local_basis(r.x_t, 0.6, 2, prompt=p, method="exact") for p in (None, "a red disk", "a blue disk")}
    d_red = geodesic_distance(exact[None].v, exact["a red disk"].v)
    d_blue = geodesic_distance(exact[None].v, exact["a blue disk"].v)
    assert d_red > 1e-3 and d_blue > 1e-3
    assert geodesic_distance(exact["a red disk"].v, exact["a blue disk"].v) > 1e-3
    torch.testing.assert_close(
        text.local_basis(r.x_t, 0.6, 2, prompt="a red disk", method="exact").v, exact["a red disk"].v
    )


def test_guidance_prompt_edit_conditions_guidance_on_the_edit_prompt(text, fast):
    """Issue 13 item 11: "edit" (official code) = xspace_guidance with prompt=basis_prompt;
    "generation" (default) = with prompt; different results when the prompts differ."""
    kw = dict(
        t_edit=0.6,
        index=0,
        k=2,
        prompt="a dog",
        basis_prompt="a red disk",
        gamma=1.0,
        n_steps=2,
        frames=2,
        sampling_steps=4,
        seed=0,
        basis_kwargs=fast,
    )
    gen = E.edit_image(text, None, **kw)
    off = E.edit_image(text, None, guidance_prompt="edit", **kw)
    assert gen.settings["guidance_prompt"] == "generation" and off.settings["guidance_prompt"] == "edit"
    assert torch.equal(gen.x_t, off.x_t) and torch.equal(gen.direction, off.direction)  # same steps 1-3
    for r, p in ((off, "a red disk"), (gen, "a dog")):
        want = E.xspace_guidance(text, r.x_t, 0.6, r.direction, gamma=1.0, n_steps=2, prompt=p)
        assert torch.equal(r.iterates, want)
        # finishing always uses the generation prompt
        assert torch.equal(r.x0[1:], E.finish(text, want[-1], 0.6, sampling_steps=4, prompt="a dog"))
    step_gen, step_off = (r.iterates[-1] - r.iterates[0] for r in (gen, off))
    assert float((step_gen - step_off).norm()) > 1e-3 * float(step_gen.norm())  # float noise: ~1e-7
    assert not torch.allclose(gen.edited, off.edited)
    # without a basis prompt the two coincide
    same = dict(kw, basis_prompt=None)
    a, b = E.edit_image(text, None, **same), E.edit_image(text, None, guidance_prompt="edit", **same)
    assert torch.equal(a.frames, b.frames)


# ---------------------------------------------------------------------------- bad input, before any compute
@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(index=2, k=2), r"index=2 is not a direction of a basis of k = 2 vectors; valid indices are 0..1"),
        (dict(index=-1, k=2), r"index=-1 is not a direction"),
        (dict(index="v1"), r"index must be an int basis index"),
        (dict(index=1.0), r"index must be an int basis index"),
        (dict(prompt="a red disk"), r"prompt='a red disk' was given, but model 'tiny-pixel' is unconditional"),
        (
            dict(basis_prompt="a red disk"),
            r"basis_prompt='a red disk' was given, but model 'tiny-pixel' is unconditional",
        ),
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
        (dict(seed=-1), r"seed must be an int >= 0"),
        (dict(eta_below=5), r"eta_below must be a fraction of T in \[0, 1\] or None"),
        (dict(guidance_prompt="basis"), r"guidance_prompt must be one of \['generation', 'edit'\]"),
        (dict(k=769), r"k=769 exceeds the dimension of x_t \(768\)"),
    ],
)
def test_edit_image_refuses_bad_input_before_compute(no_compute, kwargs, match):
    args = dict(t_edit=0.6, index=0, k=2)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        E.edit_image(no_compute, None, **args)


def test_other_functions_refuse_bad_input(no_compute, text):
    x = no_compute.noise(1)
    with pytest.raises(ValueError, match="t_edit"):
        E.finish(no_compute, x, 1.2)
    with pytest.raises(ValueError, match=r"eta_below must be a fraction of T in \[0, 1\] or None, got 5"):
        E.finish(no_compute, x, 0.5, eta_below=5)
    with pytest.raises(ValueError, match="times"):
        E.distance_from_data(no_compute, x, times=(0.0,))
    with pytest.raises(ValueError, match="direction must be one vector"):
        E.edit_image(no_compute, None, t_edit=0.5, direction=torch.zeros(2, 3, 16, 16))
    with pytest.raises(ValueError, match="edits one image at a time; image has batch 2"):
        E.edit_image(no_compute, torch.zeros(2, 3, 16, 16), t_edit=0.5)
    # a text model takes prompts, but a list of them is not one edit
    with pytest.raises(ValueError, match="basis_prompt must be one string"):
        E.edit_image(text, None, t_edit=0.5, basis_prompt=["a", "b"])
