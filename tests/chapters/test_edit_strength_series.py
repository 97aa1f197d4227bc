"""One state edited from -v to +v at growing strength beside the naive step of the same size
(pullback_utils.chapters.measurements.edit_strength_series), recomputed independently on a tiny model."""

from __future__ import annotations

import pytest
import torch
from diffusion_helpers import tiny_scheduler
from unet_factories import make_tiny_unet2d

from pullback_utils import editing as E
from pullback_utils.chapters.measurements import edit_strength_series
from pullback_utils.models.diffusion_model import DiffusionModel

T = 0.6


@pytest.fixture(scope="module")
def case():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = DiffusionModel(make_tiny_unet2d(), tiny_scheduler("ddpm"), name="tiny-pixel")
        x = E.states_at_times(model, model.noise(1, seed=5), [T], sampling_steps=6)[0]
        d = torch.randn(3, 16, 16, generator=torch.Generator().manual_seed(2))
        cfg = E.EditConfig.for_model(model).replace(gamma=1.0, n_steps=4, sampling_steps=6)
        out = edit_strength_series(model, x, T, 3.0 * d, config=cfg, frames=3, seed=0)
        yield model, x, d / d.norm(), cfg, out
    finally:
        torch.set_num_threads(n)


def test_the_series_runs_from_minus_v_through_the_unedited_result_to_plus_v(case):
    model, x, d, cfg, out = case
    assert out["labels"] == [
        "-v1, j = 4 of 4",
        "-v1, j = 2 of 4",
        "unedited (j = 0)",
        "+v1, j = 2 of 4",
        "+v1, j = 4 of 4",
    ]
    assert out["signs"] == [-1, -1, 0, 1, 1] and out["steps"] == [4, 2, 0, 2, 4]
    assert out["guided"].shape == out["naive"].shape == (5, 3, 16, 16)
    torch.testing.assert_close(out["guided"][2:3], out["original"])
    assert float(out["size"][2]) == 0.0 and float(out["alpha"][2]) == 0.0
    assert all(float(s) > 0 for i, s in enumerate(out["size"]) if i != 2)


def test_each_entry_is_the_guided_edit_and_the_naive_step_it_claims(case):
    """Guidance after j steps = edit_along with N = j (the iterates do not depend on N); the naive image
    is x_t + alpha * sign * v finished; its change is within the tolerance of the guided one."""
    model, x, d, cfg, out = case
    fkw = dict(sampling_steps=6, eta_below=cfg.eta_below, seed=0)
    for e, (sign, j) in enumerate(zip(out["signs"], out["steps"])):
        if j:
            x0, _ = E.edit_along(model, x, T, sign * d[None], gamma=1.0, n_steps=j, step_size=cfg.step_size, **fkw)
            torch.testing.assert_close(out["guided"][e : e + 1], model.to_image(x0), rtol=1e-5, atol=1e-5)
        a = float(out["alpha"][e])
        naive = model.to_image(E.finish(model, x + a * (sign or 1) * d, T, **fkw))
        torch.testing.assert_close(out["naive"][e : e + 1], naive, rtol=1e-5, atol=1e-5)
        assert float(out["naive_size"][e]) == pytest.approx(
            float(E.change_size(naive, out["original"])[0]), rel=1e-4
        )  # batched float32
        if bool(out["matched"][e]) and j:
            assert abs(float(out["naive_size"][e]) - float(out["size"][e])) <= 0.05 * float(out["size"][e])


def test_bad_input_is_refused_before_any_network_call(case):
    model, x, d, cfg, _ = case
    with pytest.raises(ValueError, match="frames must be an int >= 2"):
        edit_strength_series(model, x, T, d, config=cfg, frames=1)
    with pytest.raises(ValueError, match="x_t must hold one state"):
        edit_strength_series(model, x.expand(2, -1, -1, -1), T, d, config=cfg)
    with pytest.raises(ValueError, match="direction must be one non-zero direction"):
        edit_strength_series(model, x, T, torch.zeros_like(d), config=cfg)
    with pytest.raises(ValueError, match=r"edits need t in \(0, T\]"):
        edit_strength_series(model, x, 1.5, d, config=cfg)
