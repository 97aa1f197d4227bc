"""Fixtures of the editing tests: tiny random models and one full edit from noise."""

from __future__ import annotations

import pytest
import torch
from diffusion_helpers import FakeTextEncoder, tiny_scheduler
from unet_factories import make_tiny_unet2d, make_tiny_unet2d_condition

from pullback_utils import editing as E
from pullback_utils.models.diffusion_model import DiffusionModel

FAST = dict(tol=5e-2)  # basis solver options: loose, the tests check editing, not the solver


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: on a shared, loaded 2-core machine two threads spin against each other
    (measured 20-50x slower per U-Net call)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def fast():
    return dict(FAST)


@pytest.fixture(scope="session")
def pixel():
    return DiffusionModel(make_tiny_unet2d(), tiny_scheduler("ddpm"), name="tiny-pixel")


@pytest.fixture(scope="session")
def pixel64():
    """The pixel model's U-Net in float64 (finite-difference oracles free of float32 rounding)."""
    return DiffusionModel(make_tiny_unet2d().double(), tiny_scheduler("ddpm"), name="tiny-pixel-64")


@pytest.fixture(scope="session")
def text():
    unet = make_tiny_unet2d_condition(cross_attention_dim=24)
    return DiffusionModel(
        unet, tiny_scheduler("ddpm"), name="tiny-text", text_encoder=FakeTextEncoder(24), conditional=True
    )


@pytest.fixture(scope="session")
def edit(pixel):
    """One full edit from noise: 3 frames of N = 4 guidance steps along +v_1 at t = 0.6."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return E.edit_image(
            pixel,
            None,
            t_edit=0.6,
            index=1,
            k=2,
            gamma=1.0,
            n_steps=4,
            sampling_steps=6,
            frames=3,
            seed=3,
            basis_kwargs=FAST,
        )
    finally:
        torch.set_num_threads(n)


@pytest.fixture
def no_compute(pixel, text, monkeypatch):
    """The pixel model, with every network evaluation of both models replaced by a failure."""

    def boom(*a, **k):
        raise AssertionError("heavy compute started before the input was checked")

    for m in (pixel, text):
        monkeypatch.setattr(m, "eps", boom)
        monkeypatch.setattr(m, "local_basis", boom)
    return pixel
