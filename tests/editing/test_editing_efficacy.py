"""Efficacy and dose-response of edits (``editing/efficacy.py``): the factor change of rendered images with a
known change of one factor (oracle), and the dose grid on a tiny random 32x32 model (structure: the naive
step moves the state exactly as far as guidance, cell by cell)."""

from __future__ import annotations

import pytest
import torch
from diffusion_helpers import tiny_scheduler
from unet_factories import make_tiny_unet2d

from pullback_utils import editing as E
from pullback_utils.models.diffusion_model import DiffusionModel
from pullback_utils.zoo.datasets import render, sample_factors


@pytest.fixture(scope="module")
def pixel32():
    return DiffusionModel(make_tiny_unet2d(sample_size=32), tiny_scheduler("ddpm"), name="tiny-pixel-32")


def test_factor_scale_is_the_training_sd():
    sc = E.factor_scale("disks", n=4000, seed=0)
    f, _ = sample_factors("disks", 4000, 0)
    assert torch.allclose(sc, f.std(0), rtol=1e-4)
    # position uniform on [0.25, 0.75]: sd 0.5 / sqrt(12)
    assert sc[0].item() == pytest.approx(0.5 / 12**0.5, rel=0.05)
    with pytest.raises(ValueError, match="dataset"):
        E.factor_scale("textures")


def test_factor_change_recovers_a_known_shift_of_one_factor():
    f, _ = sample_factors("disks", 6, 3)
    moved = f.clone()
    moved[:, 0] += 0.05  # cx moves by 0.05 image widths
    out = E.factor_change(render("disks", f), render("disks", moved), "disks")
    sc = E.factor_scale("disks")
    assert out["change"].shape == (6,) and out["per_factor"].shape == (6, 6)
    assert torch.allclose(out["change"], torch.full((6,), 0.05 / sc[0].item()), rtol=0.2)
    assert (out["per_factor"].argmax(1) == 0).all()  # the edited factor is the one that moved
    assert (out["residual"] < 0.02).all()
    same = E.factor_change(render("disks", f), render("disks", f), "disks")
    assert same["change"].max().item() < 0.05
    with pytest.raises(ValueError, match="same"):
        E.factor_change(render("disks", f), render("disks", f[:3]), "disks")


def test_dose_response_grid_on_a_tiny_model(pixel32):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    v = torch.randn(2, 3, 32, 32)
    dr = E.dose_response(
        pixel32, x, 0.6, v, gammas=[0.5, 1.0], n_steps=[2, 1], dataset="disks", sampling_steps=4, iters=5
    )
    assert dr.dose.tolist() == [[0.5, 1.0], [1.0, 2.0]] and dr.n_steps.tolist() == [1, 2]
    for a in (dr.state_change, dr.guided, dr.naive, dr.guided_residual, dr.naive_residual):
        assert a.shape == (2, 2, 2)
    assert (dr.state_change > 0).all()
    # more steps move the state further (the iterates are one guidance run per gamma)
    assert (dr.state_change[:, 1] > dr.state_change[:, 0]).all()
    assert dr.factor_names == ("cx", "cy", "radius", "r", "g", "b") and dr.per_factor_guided.shape == (6,)


def test_dose_response_refuses_bad_grids_before_compute(pixel32, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("heavy compute started before the input was checked")

    monkeypatch.setattr(pixel32, "eps", boom)
    x = torch.randn(2, 3, 32, 32)
    with pytest.raises(ValueError, match="gammas"):
        E.dose_response(pixel32, x, 0.6, x, gammas=[-1.0], n_steps=[2], dataset="disks")
    with pytest.raises(ValueError, match="n_steps"):
        E.dose_response(pixel32, x, 0.6, x, gammas=[1.0], n_steps=[0], dataset="disks")
    with pytest.raises(ValueError, match="dataset"):
        E.dose_response(pixel32, x, 0.6, x, gammas=[1.0], n_steps=[2], dataset="textures")
    with pytest.raises(ValueError, match="one per state"):
        E.dose_response(pixel32, x, 0.6, x[:1], gammas=[1.0], n_steps=[2], dataset="disks")
    assert E.has_renderer("disks") and not E.has_renderer("textures") and not E.has_renderer(None)
