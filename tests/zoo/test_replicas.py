"""Random-weight replicas of the paper's pipelines (small by overrides) and the model map that points hub ids at
them."""

from __future__ import annotations

import json

import pytest
import torch

from pullback_utils.zoo import loading
from pullback_utils.zoo.replicas import REPLICAS, clip_tokenizer, replica_config, write_replica

CELEBA = "google/ddpm-ema-celebahq-256"
SD = "stabilityai/stable-diffusion-2-1-base"
SMALL_CELEBA = {"unet": dict(sample_size=64, block_out_channels=(32,) * 6)}
SMALL_SD = {
    "unet": dict(
        sample_size=8, block_out_channels=(32, 32, 64, 64), attention_head_dim=(2, 2, 4, 4), cross_attention_dim=32
    ),
    "vae": dict(block_out_channels=(32, 32, 32, 32), layers_per_block=1, sample_size=64),
    "text_encoder": dict(
        hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=2, projection_dim=16
    ),
}


def test_full_size_configs_have_the_published_shapes():
    """Parameter counts of the full-size configs on the meta device: the published sizes (CelebA-HQ U-Net
    113.7M, SD-2.1-base U-Net 865.9M, OpenCLIP-H text tower 340.4M, SD VAE 83.7M)."""
    import diffusers
    from transformers import CLIPTextConfig, CLIPTextModel

    def count(m):
        return sum(p.numel() for p in m.parameters())

    with torch.device("meta"):
        assert round(count(diffusers.UNet2DModel(**REPLICAS[CELEBA]["unet"])) / 1e6, 1) == 113.7
        assert round(count(diffusers.UNet2DConditionModel(**REPLICAS[SD]["unet"])) / 1e6, 1) == 865.9
        assert round(count(diffusers.AutoencoderKL(**REPLICAS[SD]["vae"])) / 1e6, 1) == 83.7
        assert round(count(CLIPTextModel(CLIPTextConfig(**REPLICAS[SD]["text_encoder"]))) / 1e6, 1) == 340.4


def test_generated_tokenizer_has_the_size_and_length_of_clips():
    tok = clip_tokenizer()
    assert len(tok) == 49408
    ids = tok(["a photo of a sitting dog"], padding="max_length", max_length=77, truncation=True).input_ids[0]
    assert len(ids) == 77 and max(ids) < 49408
    assert tok.decode(ids, skip_special_tokens=True).replace(" ", "") == "aphotoofasittingdog"


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="hub_id"):
        replica_config("nobody/nothing")
    with pytest.raises(ValueError, match="overrides"):
        replica_config(CELEBA, {"vae": {}})


def test_model_map_loads_a_replica_under_the_hub_id(tmp_path, monkeypatch):
    folder = write_replica(CELEBA, tmp_path / "celeba", overrides=SMALL_CELEBA)
    cfg = json.loads((folder / "unet" / "config.json").read_text())
    assert cfg["block_out_channels"] == [32] * 6 and cfg["down_block_types"][4] == "AttnDownBlock2D"
    monkeypatch.setenv(loading.MODEL_MAP_ENV, f"{CELEBA}={folder}")
    assert loading.check_model_reference(CELEBA) == str(folder.resolve())
    m = loading.load_model(CELEBA)
    assert m.name == CELEBA and tuple(m.sample_shape) == (3, 64, 64)
    again = write_replica(CELEBA, tmp_path / "again", overrides=SMALL_CELEBA)
    m2 = loading.load_model(again)
    for a, b in zip(m.unet.parameters(), m2.unet.parameters()):
        assert torch.equal(a, b)  # the seed decides the weights


def test_sd_replica_encodes_prompts_and_predicts(tmp_path, monkeypatch):
    folder = write_replica(SD, tmp_path / "sd", overrides=SMALL_SD)
    monkeypatch.setenv(loading.MODEL_MAP_ENV, f"{SD}={folder}")
    m = loading.load_model(SD)
    assert m.is_conditional and tuple(m.sample_shape) == (4, 8, 8)
    x = torch.randn(1, *m.sample_shape)
    eps = m.eps(x, 500, "a photo of a dog")
    assert eps.shape == x.shape and torch.isfinite(eps).all()
    image = m.to_image(x)
    assert image.shape == (1, 3, 64, 64)


def test_model_map_errors_name_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv(loading.MODEL_MAP_ENV, "no-equals-sign")
    with pytest.raises(ValueError, match=loading.MODEL_MAP_ENV):
        loading.model_map()
    monkeypatch.setenv(loading.MODEL_MAP_ENV, f"{CELEBA}={tmp_path / 'missing'}")
    with pytest.raises(ValueError, match="no such folder"):
        loading.load_model(CELEBA)
    with pytest.raises(ValueError, match="folder must be new"):
        (tmp_path / "full").mkdir()
        (tmp_path / "full" / "x").write_text("x")
        write_replica(CELEBA, tmp_path / "full")
