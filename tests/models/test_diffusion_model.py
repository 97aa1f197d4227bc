"""load_model and DiffusionModel on random-weight pipelines saved to disk (the hub-id code path)."""

from __future__ import annotations

import json
import os
import re

import pytest
import torch
from diffusion_helpers import (
    FakeTextEncoder,
    save_pixel_pipeline,
    save_sd_pipeline,
    save_zoo_folder,
    tiny_scheduler,
)
from unet_factories import make_tiny_unet2d, make_tiny_unet2d_condition

from pullback_utils.diffusion.ddim import ddim_sample
from pullback_utils.models.diffusion_model import DiffusionModel
from pullback_utils.zoo.loading import ModelNotFoundError, load_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipelines")
    return {
        "ddpm": save_pixel_pipeline(root / "ddpm", "ddpm"),
        "ddim": save_pixel_pipeline(root / "ddim", "ddim", seed=1),
        "sd": save_sd_pipeline(root / "sd"),
    }


@pytest.fixture(scope="module")
def sd(folders):
    return load_model(str(folders["sd"]))


# ------------------------------------------------------------------ pixel pipelines
@pytest.mark.parametrize("kind, seed, sched", [("ddpm", 0, "DDPMScheduler"), ("ddim", 1, "DDIMScheduler")])
def test_pixel_pipeline_folder(folders, kind, seed, sched):
    m = load_model(folders[kind])
    assert type(m.unet).__name__ == "UNet2DModel" and type(m.scheduler).__name__ == sched
    assert m.sample_shape == m.image_shape == (3, 16, 16)
    assert not m.is_conditional and not m.is_latent and m.vae is None
    assert m.num_train_timesteps == 1000 and m.dtype == torch.float32
    assert not m.unet.training and not any(p.requires_grad for p in m.unet.parameters())
    ref = make_tiny_unet2d(seed=seed)  # the weights that were saved
    for (n1, p1), (n2, p2) in zip(sorted(m.unet.state_dict().items()), sorted(ref.state_dict().items())):
        assert n1 == n2 and torch.equal(p1, p2)
    x = m.noise(2, seed=0)
    # Level n is U-Net timestep n - 1; fractions are levels n = f * T.
    direct = ref(x, torch.tensor([499, 499])).sample
    torch.testing.assert_close(m.eps(x, 500), direct)
    torch.testing.assert_close(m.eps(x, 0.5), direct)
    assert m.unet_timestep(1.0) == 999 and m.alpha_bar(0) == 1.0
    assert m.alpha_bar(1) == pytest.approx(float(m.scheduler.alphas_cumprod[0]))


def test_dtype_and_old_single_folder_layout(tmp_path):
    unet = make_tiny_unet2d(seed=2)
    unet.save_pretrained(tmp_path)  # config.json + weights at the root, as in google/ddpm-* repos
    tiny_scheduler("ddpm").save_pretrained(tmp_path)
    m = load_model(tmp_path, dtype=torch.float64)
    assert m.dtype == torch.float64 and m.noise(1).dtype == torch.float64
    out = ddim_sample(m, m.noise(1), 0.2, 0, steps=2)
    assert out.dtype == torch.float64 and out.shape == (1, 3, 16, 16)


# ------------------------------------------------------------------ Stable Diffusion folder
def test_sd_components_prompts_and_vae(sd):
    assert sd.is_conditional and sd.is_latent and sd.has_unconditional_branch
    assert sd.sample_shape == (4, 8, 8) and sd.image_shape == (3, 16, 16) and sd.vae_scale_factor == 2
    for net in (sd.unet, sd.vae, sd.text_encoder):
        assert not net.training and not any(p.requires_grad for p in net.parameters())
    emb = sd.encode_prompt(["a sitting dog", "cat"])
    ids = sd.tokenizer(["a sitting dog", "cat"], padding="max_length", max_length=12, return_tensors="pt")
    torch.testing.assert_close(emb, sd.text_encoder(ids.input_ids)[0])
    assert emb.shape == (2, 12, 24)
    torch.testing.assert_close(sd.encode_prompt(None), sd.encode_prompt(""))
    img = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    z = sd.to_latent(img)
    sf = sd.vae.config.scaling_factor
    torch.testing.assert_close(z, sd.vae.encode(img).latent_dist.mean * sf)
    assert z.shape == (2, 4, 8, 8)
    torch.testing.assert_close(sd.to_image(z), sd.vae.decode(z / sf).sample)


def test_sd_classifier_free_guidance(sd):
    x = sd.noise(2, seed=1)
    e_u = sd.eps(x, 0.5)
    e_c = sd.eps(x, 0.5, "dog")
    assert not torch.allclose(e_u, e_c)
    torch.testing.assert_close(sd.eps(x, 0.5, "dog", guidance_scale=1.0), e_c)
    torch.testing.assert_close(sd.eps(x, 0.5, "dog", guidance_scale=0.0), e_u, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(sd.eps(x, 0.5, "dog", guidance_scale=7.5), e_u + 7.5 * (e_c - e_u), rtol=1e-4, atol=1e-4)
    per_sample = sd.eps(x, 0.5, ["dog", "cat"])
    torch.testing.assert_close(per_sample[1:], sd.eps(x[1:], 0.5, "cat"), rtol=1e-4, atol=1e-5)
    emb = sd.encode_prompt("dog")
    torch.testing.assert_close(sd.eps(x, 0.5, emb), e_c)  # precomputed hidden states


def test_sd_sampling_with_prompts(sd):
    x = sd.noise(1, seed=2)
    a = ddim_sample(sd, x, 1.0, 0, steps=3, prompt="dog", guidance_scale=3.0)
    assert a.shape == (1, 4, 8, 8) and torch.isfinite(a).all()
    assert torch.equal(a, ddim_sample(sd, x, 1.0, 0, steps=3, prompt="dog", guidance_scale=3.0))
    assert not torch.allclose(a, ddim_sample(sd, x, 1.0, 0, steps=3, prompt="cat", guidance_scale=3.0))
    assert sd.to_image(a).shape == (1, 3, 16, 16)


def test_conditional_model_without_text_encoder():
    m = DiffusionModel(make_tiny_unet2d_condition(), tiny_scheduler(), name="bare-cond")
    assert m.is_conditional and not m.has_unconditional_branch
    x = m.noise(1)
    emb = torch.randn(1, 5, 24)
    assert m.eps(x, 10, emb).shape == x.shape
    with pytest.raises(ValueError, match="guidance_scale.*no unconditional branch"):
        m.eps(x, 10, emb, guidance_scale=2.0)
    with pytest.raises(ValueError, match="no text encoder"):
        m.eps(x, 10, "dog")
    with pytest.raises(ValueError, match=r"\(L, 24\)"):
        m.eps(x, 10, torch.randn(1, 5, 7))


# ------------------------------------------------------------------ zoo folders and names
def test_zoo_folders_and_bundled_names(tmp_path, monkeypatch):
    from pullback_utils.zoo import registry

    weights = tmp_path / "weights"
    save_zoo_folder(weights / "fake-pixel", "pixel", name="fake-pixel")
    save_zoo_folder(weights / "fake-text", "text", name="fake-text")
    monkeypatch.setattr(registry, "WEIGHTS_DIR", weights)
    assert registry.available_models() == ["fake-pixel", "fake-text"]

    m = load_model("fake-pixel")
    assert m.name == "fake-pixel" and not m.is_conditional and m.sample_shape == (3, 16, 16)
    enc = FakeTextEncoder()
    t = load_model(weights / "fake-text", text_encoder=enc)
    assert t.is_conditional and not t.is_latent and t.has_unconditional_branch
    x = t.noise(1)
    e = t.eps(x, 0.4, "red circle", guidance_scale=2.0)
    e_c, e_u = t.eps(x, 0.4, "red circle"), t.eps(x, 0.4)
    torch.testing.assert_close(e, e_u + 2.0 * (e_c - e_u), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(t.unconditional_embedding(), enc.encode([""]))
    calls = enc.calls
    torch.testing.assert_close(t.eps(x, 0.4, "red circle"), e_c)
    assert enc.calls == calls  # prompts are encoded once per model

    # Without an injected encoder the zoo's MiniLM class is used (replaced here by a fake).
    import pullback_utils.zoo.text_encoder as te_mod

    made = {}

    class FakeMiniLM(FakeTextEncoder):
        def __init__(self, device="cpu", max_length=16):
            super().__init__(hidden_size=24, max_length=max_length)
            made["device"] = device

    monkeypatch.setattr(te_mod, "MiniLMTextEncoder", FakeMiniLM)
    assert isinstance(load_model("fake-text").text_encoder, FakeMiniLM) and made["device"] == "cpu"

    with pytest.raises(ValueError, match="hidden_size 16.*cross_attention_dim 24"):
        load_model("fake-text", text_encoder=FakeTextEncoder(hidden_size=16))
    with pytest.raises(ModelNotFoundError, match=r"unknown model 'fake-pixl'.*\['fake-pixel', 'fake-text'\]"):
        load_model("fake-pixl")


def test_unreachable_hub_id_gives_one_clear_error(monkeypatch):
    import huggingface_hub.constants as hf_constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelNotFoundError) as info:
        load_model("pullback-book-tests/no-such-model")
    err = info.value
    msg = str(err)
    assert isinstance(err, OSError)
    assert "'pullback-book-tests/no-such-model'" in msg and "offline" in msg and "id is wrong" in msg
    assert "Bundled models" in msg and "huggingface-cli download pullback-book-tests/no-such-model" in msg
    assert "save_pretrained" in msg
    assert err.__cause__ is None and err.__suppress_context__  # raised from None: no traceback soup


# ------------------------------------------------------------------ bad input
def test_bad_input(tmp_path, folders, sd):
    with pytest.raises(TypeError, match="name_or_path"):
        load_model(123)
    with pytest.raises(ModelNotFoundError, match="unknown model"):
        load_model("./no/such/folder")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="not a model folder"):
        load_model(tmp_path / "empty")
    bad = save_zoo_folder(tmp_path / "bad", "pixel")
    (bad / "zoo.json").write_text(json.dumps({"name": "bad", "kind": "video"}))
    with pytest.raises(ValueError, match="kind must be 'pixel' or 'text'"):
        load_model(bad)
    m = load_model(folders["ddpm"])
    with pytest.raises(ValueError, match="prompt='a dog'.*unconditional"):
        m.encode_prompt("a dog")
    assert m.encode_prompt(None) is None
    with pytest.raises(ValueError, match="clean data"):
        m.eps(m.noise(1), 0)
    with pytest.raises(ValueError, match="channel count: 1 instead of 3"):
        sd.to_latent(torch.zeros(1, 1, 16, 16))
    with pytest.raises(ValueError, match=r"images .*shape \(B, 3, 16, 16\)"):
        sd.to_latent(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match=r"latents .*\(B, 4, 8, 8\)"):
        sd.to_image(torch.zeros(1, 3, 16, 16))
    with pytest.raises(TypeError, match="prompt must be a string"):
        sd.encode_prompt(["dog", 3])
    with pytest.raises(ValueError, match="n must be"):
        m.noise(0)
    with pytest.raises(ValueError, match="batch 1"):
        m.local_basis(m.noise(2), 0.5, 2)
    with pytest.raises(ValueError, match="k must be"):
        m.local_basis(m.noise(1), 0.5, 0)


# ------------------------------------------------------------------ the engine
def test_local_basis_delegates_to_the_engine(folders, sd, monkeypatch):
    from pullback_utils.engine.solvers import LocalBasis
    from pullback_utils.features.basis import network_basis

    m = load_model(folders["ddpm"])
    x = m.noise(1, seed=4)
    b = m.local_basis(x, 0.5, 2, method="krylov")  # a real engine call on the loaded U-Net
    ref = network_basis(m.unet, x, 500, 2, method="krylov")  # one convention: level 500
    assert b.v.shape == (2, 1, 3, 16, 16)
    torch.testing.assert_close(b.s, ref.s)

    calls = []

    def fake_engine(unet, x_t, t, k, **kw):
        calls.append((unet, x_t, t, k, kw))
        return LocalBasis(v=torch.zeros(k, *x_t.shape), u=torch.zeros(k, 1, 2), s=torch.ones(k))

    import pullback_utils.features.basis

    monkeypatch.setattr(pullback_utils.features.basis, "network_basis", fake_engine)
    z = sd.noise(1, seed=4)
    sd.local_basis(z[0], 0.3, 3, prompt="dog", layer="down.0", tol=1e-2, seed=7)
    unet, x_t, t, k, kw = calls[-1]
    assert unet is sd.unet and t == 300 and k == 3  # the level: one time convention and torch.equal(x_t, z)
    torch.testing.assert_close(kw.pop("encoder_hidden_states"), sd.encode_prompt("dog"))
    assert kw == {"layer": "down.0", "num_train_timesteps": 1000, "tol": 1e-2, "seed": 7}
    sd.local_basis(z, 1.0, 1)
    torch.testing.assert_close(calls[-1][4]["encoder_hidden_states"], sd.encode_prompt(""))
    assert calls[-1][2] == 1000
    with pytest.raises(ValueError, match="prompt"):
        m.local_basis(x, 0.5, 2, prompt="dog")
    with pytest.raises(ValueError, match="clean data"):
        m.local_basis(x, 0, 2)


# ------------------------------------------------------------------ the bundled zoo, when trained
def _bundled():
    from pullback_utils.zoo.registry import available_models

    return available_models()


@pytest.mark.parametrize("name", _bundled() or [pytest.param("none", marks=pytest.mark.skip("no bundled weights yet"))])
def test_bundled_models_load_and_sample(name):
    m = load_model(name)
    prompt = "a red circle" if m.is_conditional else None
    x = ddim_sample(m, m.noise(1, seed=0), 1.0, 0, steps=2, prompt=prompt)
    assert x.shape == (1, *m.sample_shape) and torch.isfinite(x).all()


# ------------------------------------------------------------------ issue 13: what may be loaded
def _tiny_vae():
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",),
        up_block_types=("UpDecoderBlock2D",),
        block_out_channels=(8,),
        latent_channels=4,
        norm_num_groups=4,
        sample_size=16,
    )


def test_a_folder_whose_denoiser_is_not_a_unet_is_refused(tmp_path):
    # a bare folder: AutoencoderKL config + weights and a scheduler, as the probe
    bare = tmp_path / "bare"
    _tiny_vae().save_pretrained(bare)
    tiny_scheduler("ddpm").save_pretrained(bare)
    with pytest.raises(
        ModelNotFoundError,
        match=r"denoiser.*'AutoencoderKL'.*\['UNet2DModel', 'UNet2DConditionModel', "
        r"'DiTTransformer2DModel', 'SD3Transformer2DModel', 'FluxTransformer2DModel'\]",
    ):
        load_model(bare)
    # a pipeline folder whose unet/ is an AutoencoderKL
    pipe = save_pixel_pipeline(tmp_path / "pipe", "ddpm")
    import shutil

    shutil.rmtree(pipe / "unet")
    _tiny_vae().save_pretrained(pipe / "unet")
    with pytest.raises(ModelNotFoundError, match=r"unet.*'AutoencoderKL'.*expects one of"):
        load_model(pipe)
    # a pipeline folder that lists a transformer but does not hold it: say which file is missing
    (pipe / "model_index.json").write_text(
        json.dumps(
            {
                "_class_name": "X",
                "transformer": ["diffusers", "DiTTransformer2DModel"],
                "scheduler": ["diffusers", "DDPMScheduler"],
            }
        )
    )
    shutil.rmtree(pipe / "unet")
    with pytest.raises(
        ModelNotFoundError,
        match=r"lists a transformer \(DiTTransformer2DModel\) but .*transformer/config.json is missing",
    ):
        load_model(pipe)
    # a pipeline folder with no denoiser at all: say what is there
    (pipe / "model_index.json").write_text(
        json.dumps(
            {"_class_name": "X", "vae": ["diffusers", "AutoencoderKL"], "scheduler": ["diffusers", "DDPMScheduler"]}
        )
    )
    with pytest.raises(ModelNotFoundError, match=r"holds no denoiser.*found.*scheduler.*vae"):
        load_model(pipe)
    # a supported engine family that load_model does not load whole says which it loads
    (pipe / "transformer").mkdir()
    (pipe / "transformer" / "config.json").write_text(json.dumps({"_class_name": "PixArtTransformer2DModel"}))
    (pipe / "model_index.json").write_text(
        json.dumps({"_class_name": "PixArtAlphaPipeline", "transformer": ["diffusers", "PixArtTransformer2DModel"]})
    )
    with pytest.raises(ModelNotFoundError, match=r"'PixArtTransformer2DModel'.*expects one of \['UNet2DModel'"):
        load_model(pipe)


def test_unknown_bundled_name_suggests_the_close_one(tmp_path, monkeypatch):
    from pullback_utils.zoo import registry

    weights = tmp_path / "weights"
    save_zoo_folder(weights / "shapes", "pixel", name="shapes")
    monkeypatch.setattr(registry, "WEIGHTS_DIR", weights)
    with pytest.raises(ModelNotFoundError, match=r"unknown model 'shapez'.*did you mean 'shapes'\?"):
        load_model("shapez")


# ------------------------------------------------------------------ issue 13: damaged weights
from pullback_utils.diffusion.weights import (  # noqa: E402
    DIGEST_FILE,
    CorruptWeightsError,
    check_weights,
    file_sha256,
    write_weights_digest,
)


def _weights(folder):
    return folder / "unet" / "diffusion_pytorch_model.safetensors"


@pytest.mark.parametrize("damage", ["truncate", "garble_header", "empty"])
def test_corrupt_or_truncated_weights_name_the_file(tmp_path, damage):
    folder = save_zoo_folder(tmp_path / "z", "pixel")
    w = _weights(folder)
    data = w.read_bytes()
    w.write_bytes(
        {"truncate": data[: len(data) // 2], "garble_header": data[:8] + b"\x00" * 20 + data[28:], "empty": b""}[damage]
    )
    with pytest.raises(CorruptWeightsError, match=rf"weights file {re.escape(str(w))} is corrupt or truncated"):
        load_model(folder)


def test_flipped_byte_is_caught_by_the_recorded_digest(tmp_path):
    folder = save_zoo_folder(tmp_path / "z", "pixel")
    record = write_weights_digest(folder)
    assert record.read_text() == f"{file_sha256(_weights(folder))}  unet/diffusion_pytorch_model.safetensors\n"
    assert check_weights(folder) is True
    load_model(folder)  # intact: loads
    w = _weights(folder)
    data = bytearray(w.read_bytes())
    data[-100] ^= 0x01  # one bit inside a tensor: the file stays structurally valid
    w.write_bytes(bytes(data))
    with pytest.raises(
        CorruptWeightsError,
        match=rf"weights file {re.escape(str(w))} is corrupt: its sha256 .* "
        r"does not match the digest .* recorded in .*WEIGHTS\.sha256",
    ):
        load_model(folder)
    (folder / DIGEST_FILE).unlink()
    assert check_weights(folder) is False  # no record: optional, loads (as ladder folders without one)
    load_model(folder)


def test_digest_record_lists_every_weight_file(tmp_path):
    folder = save_zoo_folder(tmp_path / "z", "pixel")
    write_weights_digest(folder)
    extra = folder / "unet" / "extra.safetensors"
    extra.write_bytes(_weights(folder).read_bytes())
    with pytest.raises(CorruptWeightsError, match=r"extra\.safetensors has no digest"):
        check_weights(folder)
    extra.unlink()
    _weights(folder).unlink()
    with pytest.raises(CorruptWeightsError, match=r"diffusion_pytorch_model\.safetensors, listed in .* is missing"):
        check_weights(folder)
    (folder / DIGEST_FILE).write_text("not a digest\n")
    with pytest.raises(CorruptWeightsError, match=r"line 1: expected"):
        check_weights(folder)


def _bundled_and_ladder():
    from pullback_utils.zoo.registry import available_models

    return available_models() + available_models(ladder=True)


@pytest.mark.parametrize(
    "name", _bundled_and_ladder() or [pytest.param("none", marks=pytest.mark.skip("no bundled weights yet"))]
)
def test_bundled_weights_carry_a_matching_digest(name):
    """Main zoo models must carry WEIGHTS.sha256; ladder models may, and are checked when they do."""
    from pullback_utils.zoo.registry import ZOO_MODELS, model_dir

    folder = model_dir(name)
    if name in ZOO_MODELS:
        assert (folder / DIGEST_FILE).is_file(), f"{name}: no {DIGEST_FILE}"
    assert check_weights(folder) in (True, name not in ZOO_MODELS)


# ------------------------------------------------------------------ issue 14: the model's feature map, sizes, caching
def test_model_feature_map_is_the_engines(sd):
    x = sd.noise(2, seed=9)
    fn = sd.feature_map(0.3, "dog", layer="down.0")
    ref = pullback_utils_feature_map(sd.unet, 300, layer="down.0", encoder_hidden_states=sd.encode_prompt("dog"))
    with torch.no_grad():
        torch.testing.assert_close(fn(x), ref(x))
    assert sd.feature_map(0.3).layer == "mid"


def pullback_utils_feature_map(*args, **kwargs):
    from pullback_utils.features.feature_maps import feature_map

    return feature_map(*args, **kwargs)


def test_sample_size_and_dit_basis_cache(tmp_path):
    from diffusers import DDIMPipeline
    from unet_factories import make_tiny_dit

    DDIMPipeline(unet=make_tiny_unet2d(seed=3), scheduler=tiny_scheduler("ddim")).save_pretrained(tmp_path / "p")
    m = load_model(tmp_path / "p", sample_size=(16, 8))
    assert m.sample_shape == (3, 16, 8) and m.eps(m.noise(1), 0.5).shape == (1, 3, 16, 8)
    with pytest.raises(ValueError, match="sample_size must be"):
        load_model(tmp_path / "p", sample_size=(16, 0))
    dit = DiffusionModel(make_tiny_dit(), tiny_scheduler("ddim"), name="dit")
    assert dit.is_conditional and dit.has_unconditional_branch and repr(dit).endswith("T=1000)")
    x = dit.noise(1, seed=1)
    first = dit.local_basis(x, 0.5, 2, prompt=3, cache_dir=tmp_path / "cache", method="krylov")
    again = dit.local_basis(x, 0.5, 2, prompt=3, cache_dir=tmp_path / "cache", method="krylov")
    other = dit.local_basis(x, 0.5, 2, prompt=4, cache_dir=tmp_path / "cache", method="krylov")
    assert torch.equal(first.v, again.v) and not torch.allclose(first.v.abs(), other.v.abs())
    assert len(list((tmp_path / "cache").rglob("*.safetensors"))) == 2  # one entry per class label


def test_an_unknown_ladder_rung_or_seed_names_the_valid_ones():
    for bad, near in (("ladder-6-s0", "ladder-5-s0"), ("ladder-2-s7", "ladder-2-s2")):
        with pytest.raises(
            ModelNotFoundError, match=rf"did you mean '{near}'.*rung in \[1, 2, 3, 4, 5\] and seed in \[0, 1, 2\]"
        ):
            load_model(bad)
