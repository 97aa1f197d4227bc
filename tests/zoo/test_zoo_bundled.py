"""Every bundled zoo model loads offline and produces finite samples of the right shape."""

from __future__ import annotations

import pytest
import torch

from pullback_utils.zoo.registry import available_models, model_dir, model_info

BUNDLED = available_models()


def test_registry_lists_bundled_models():
    for name in BUNDLED:
        info = model_info(name)
        assert info["name"] == name and info["kind"] in ("pixel", "text")
        assert (model_dir(name) / "model_index.json").is_file()


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_model_samples(name, minilm):
    """Samples through the card's sampler (the package's DDIM), with guidance for the text model."""
    from pullback_utils.zoo.evaluate import sample_images
    from pullback_utils.zoo.loading import load_model

    info = model_info(name)
    model = load_model(name, text_encoder=minilm if info["kind"] == "text" else None)
    prompt = ["a small red triangle in the upper left on a blue background"] * 2 if info["kind"] == "text" else None
    x = sample_images(model, 2, steps=3, seed=0, prompt=prompt, guidance=2.0 if prompt else 1.0, progress=False)
    assert x.shape == (2, 3, 32, 32)
    assert torch.isfinite(x).all() and x.abs().max() <= 1


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_model_is_a_diffusers_pipeline_folder(name):
    from diffusers import DDPMPipeline

    pipe = DDPMPipeline.from_pretrained(model_dir(name))
    assert pipe.unet.config.sample_size == 32 and pipe.scheduler.config.num_train_timesteps == 1000
