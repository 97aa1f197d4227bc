"""Issue 14: SDXL, DiT, PixArt, SD3 and FLUX denoisers, on tiny random-weight models.

Oracles: forward hooks on the stock diffusers forward pass (feature maps), the exact SVD of the
dense Jacobian of that hooked forward pass (bases), the diffusers schedulers and pipelines themselves
(flow-matching time grid, sampling), and closed forms (the Gaussian flow-matching model).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch
from diffusion_helpers import tiny_clip_tokenizer
from oracles import dense_jacobian, max_angle
from unet_factories import make_tiny_dit, make_tiny_flux, make_tiny_pixart, make_tiny_sd3, make_tiny_sdxl_unet

import pullback_utils as pu
from pullback_utils.diffusion.architectures import latent_image_ids, pack_latents, unpack_latents
from pullback_utils.diffusion.ddim import ddim_invert, ddim_sample
from pullback_utils.diffusion.flow import FlowGrid, calculate_shift
from pullback_utils.features.basis import network_basis
from pullback_utils.features.feature_maps import default_layer, feature_map, layer_names
from pullback_utils.zoo.loading import load_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")
T = 1000


# ------------------------------------------------------------------ tiny denoisers and their conditioning
def _cond(arch: str, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    if arch == "sdxl":
        return dict(
            encoder_hidden_states=torch.randn(1, 5, 32, generator=g),
            added_cond_kwargs={
                "text_embeds": torch.randn(1, 16, generator=g),
                "time_ids": torch.tensor([[16.0, 16, 0, 0, 16, 16]]),
            },
        )
    if arch == "dit":
        return dict(class_labels=3)
    if arch == "pixart":
        return dict(encoder_hidden_states=torch.randn(1, 5, 24, generator=g))
    if arch == "sd3":
        return dict(
            encoder_hidden_states=torch.randn(1, 5, 32, generator=g), pooled_projections=torch.randn(1, 16, generator=g)
        )
    return dict(
        encoder_hidden_states=torch.randn(1, 5, 32, generator=g),
        pooled_projections=torch.randn(1, 16, generator=g),
        img_ids=latent_image_ids(8, 8),
        guidance=3.5,
    )


_MAKERS = {
    "sdxl": make_tiny_sdxl_unet,
    "dit": make_tiny_dit,
    "pixart": make_tiny_pixart,
    "sd3": make_tiny_sd3,
    "flux": make_tiny_flux,
}
ARCHS = list(_MAKERS)


@pytest.fixture(scope="module")
def nets():
    return {a: make() for a, make in _MAKERS.items()}


def _x(arch: str, batch: int = 1, seed: int = 1) -> torch.Tensor:
    x = torch.randn(batch, 4, 8, 8, generator=torch.Generator().manual_seed(seed))
    return pack_latents(x) if arch == "flux" else x


def _stock_kwargs(arch: str, cond: dict, batch: int, level: int, sigma: float | None) -> dict:
    """The stock forward's keywords, built by hand: conditioning repeated to the batch, the network's time."""
    rep = {}
    for k, v in cond.items():
        if k in ("img_ids", "txt_ids"):
            rep[k] = v
        elif k == "added_cond_kwargs":
            rep[k] = {s: t.repeat(batch, 1) for s, t in v.items()}
        elif k == "class_labels":
            rep[k] = torch.tensor([v] * batch)
        elif k == "guidance":
            rep[k] = torch.full((batch,), float(v))
        else:
            rep[k] = v.repeat(batch, *([1] * (v.ndim - 1)))
    if arch == "flux":
        rep["txt_ids"] = torch.zeros(cond["encoder_hidden_states"].shape[1], 3)
        rep["timestep"] = torch.full((batch,), sigma)  # FluxPipeline passes timestep / 1000 = sigma
    elif arch == "sd3":
        rep["timestep"] = torch.full((batch,), sigma * T)
    else:
        rep["timestep"] = torch.full((batch,), level - 1, dtype=torch.long)
    return rep


# image stream of each block kind, decided here independently of the package
def _image_stream(module, out):
    if isinstance(out, torch.Tensor):
        return out
    if type(module).__name__ in ("JointTransformerBlock", "FluxTransformerBlock", "FluxSingleTransformerBlock"):
        return out[1]  # (encoder_hidden_states, hidden_states)
    return out[0]


def _hooked(net, path: str):
    """A function x -> output of submodule ``path`` during the *full* stock forward pass (no early stop)."""
    module = dict(net.named_modules())[path]

    def run(x, **kwargs):
        got = {}

        def grab(m, a, o):  # returns None: the forward pass goes on unchanged
            got.setdefault("h", _image_stream(m, o))

        h = module.register_forward_hook(grab)
        try:
            net(x, return_dict=False, **kwargs)
        finally:
            h.remove()
        return got["h"]

    return run


_LAYERS = {  # (name given, submodule path)
    "sdxl": [
        ("mid", "mid_block"),
        ("down.0", "down_blocks.0"),
        ("down_blocks.0.attentions.0", "down_blocks.0.attentions.0"),
        ("up.1", "up_blocks.1"),
    ],
    "dit": [
        ("transformer_blocks.2", "transformer_blocks.2"),
        ("transformer_blocks.0.attn1", "transformer_blocks.0.attn1"),
    ],
    "pixart": [
        ("transformer_blocks.1", "transformer_blocks.1"),
        ("transformer_blocks.0.attn2", "transformer_blocks.0.attn2"),
    ],
    "sd3": [
        ("transformer_blocks.1", "transformer_blocks.1"),
        ("transformer_blocks.2", "transformer_blocks.2"),
        ("transformer_blocks.0.attn", "transformer_blocks.0.attn"),
    ],
    "flux": [
        ("transformer_blocks.0", "transformer_blocks.0"),
        ("single_transformer_blocks.1", "single_transformer_blocks.1"),
        ("transformer_blocks.0.attn", "transformer_blocks.0.attn"),
    ],
}


# ------------------------------------------------------------------ feature maps
@pytest.mark.parametrize("arch", ARCHS)
def test_feature_map_equals_a_hook_on_the_stock_forward(nets, arch):
    net, cond = nets[arch], _cond(arch)
    x = _x(arch, batch=2)
    level = 420
    sigma = level / T  # flow models without a scheduler: unshifted, sigma = t / T
    for name, path in _LAYERS[arch]:
        with torch.no_grad():
            got = feature_map(net, level, layer=name, **cond)(x)
            ref = _hooked(net, path)(x, **_stock_kwargs(arch, cond, 2, level, sigma))
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5, msg=f"{arch} {name}")


@pytest.mark.parametrize("arch", ARCHS)
def test_feature_map_stops_at_the_layer(nets, arch):
    net = nets[arch]
    after = "conv_out" if arch == "sdxl" else "proj_out" if arch in ("sd3", "flux", "pixart") else "proj_out_2"
    ran = []
    h = dict(net.named_modules())[after].register_forward_pre_hook(lambda m, a: ran.append(1))
    try:
        with torch.no_grad():
            feature_map(net, 0.3, **_cond(arch))(_x(arch))
            assert not ran  # nothing after the layer ran
            net(_x(arch), return_dict=False, **_stock_kwargs(arch, _cond(arch), 1, 300, 0.3))
            assert ran  # (the hook does see a full pass)
    finally:
        h.remove()


def test_default_layers_and_layer_names(nets):
    assert default_layer(nets["sdxl"]) == "mid"
    assert default_layer(nets["dit"]) == "transformer_blocks.2"  # the middle of 4 blocks
    assert default_layer(nets["sd3"]) == "transformer_blocks.1"
    assert layer_names(nets["flux"]) == [
        "transformer_blocks.0",
        "single_transformer_blocks.0",
        "single_transformer_blocks.1",
    ]
    assert default_layer(nets["flux"]) == "single_transformer_blocks.0"
    assert "transformer_blocks.0.attn" in layer_names(nets["flux"], submodules=True)
    # FLUX.1's 19 double + 38 single blocks: the middle of the 57 is single block 9 (tiny widths, same depth)
    from diffusers import FluxTransformer2DModel

    deep = FluxTransformer2DModel(
        patch_size=1,
        in_channels=4,
        num_layers=19,
        num_single_layers=38,
        attention_head_dim=4,
        num_attention_heads=1,
        joint_attention_dim=4,
        pooled_projection_dim=4,
        axes_dims_rope=(2, 2, 0),
    )
    assert default_layer(deep) == "single_transformer_blocks.9"


def test_unknown_layer_lists_names_near_it(nets):
    with pytest.raises(
        ValueError,
        match=r"unknown layer 'transformer_block.2'.*'transformer_blocks.0', "
        r"'transformer_blocks.1', 'transformer_blocks.2', 'transformer_blocks.3' "
        r".*did you mean \['transformer_blocks.2', 'transformer_blocks.3'",
    ):
        feature_map(nets["dit"], 0.5, layer="transformer_block.2", class_labels=1)
    from diffusers import FluxTransformer2DModel

    deep = FluxTransformer2DModel(
        patch_size=1,
        in_channels=4,
        num_layers=19,
        num_single_layers=38,
        attention_head_dim=4,
        num_attention_heads=1,
        joint_attention_dim=4,
        pooled_projection_dim=4,
        axes_dims_rope=(2, 2, 0),
    )
    with pytest.raises(
        ValueError,
        match=r"'transformer_blocks.0'\.\.'transformer_blocks.18', "
        r"'single_transformer_blocks.0'\.\.'single_transformer_blocks.37'",
    ):
        feature_map(
            deep,
            0.5,
            layer="blocks.60",
            encoder_hidden_states=torch.zeros(1, 2, 4),
            pooled_projections=torch.zeros(1, 4),
            img_ids=torch.zeros(4, 3),
        )
    with pytest.raises(ValueError, match=r"did you mean \['mid_block'"):
        feature_map(nets["sdxl"], 0.5, layer="mid_blok", **_cond("sdxl"))
    with pytest.raises(
        ValueError, match=r"'transformer_blocks.0', 'single_transformer_blocks.0', 'single_transformer_blocks.1'"
    ):
        feature_map(nets["flux"], 0.5, layer="double_blocks.0", **_cond("flux"))


def test_unsupported_family_says_which_are_supported():
    from diffusers import AutoencoderKL

    vae = AutoencoderKL(block_out_channels=(8,), norm_num_groups=4, latent_channels=2)
    for bad in (vae, torch.nn.Linear(2, 2)):
        with pytest.raises(
            TypeError,
            match=r"supported diffusers classes \['UNet2DModel', 'UNet2DConditionModel', "
            r"'DiTTransformer2DModel', 'PixArtTransformer2DModel', "
            r"'SD3Transformer2DModel', 'FluxTransformer2DModel'\]",
        ):
            network_basis(bad, torch.zeros(1, 3, 8, 8), 0.5, 2)


@pytest.mark.parametrize(
    "arch, change, match",
    [
        ("dit", {"class_labels": None}, "class_labels is required for a DiTTransformer2DModel"),
        ("dit", {"class_labels": 11}, r"class_labels=11 is not a class.*0\.\.9 \(10 is the unconditional 'null'"),
        ("sdxl", {"added_cond_kwargs": None}, r"added_cond_kwargs is required.*text_time"),
        (
            "sdxl",
            {"added_cond_kwargs": {"text_embeds": torch.zeros(1, 7), "time_ids": torch.zeros(1, 6)}},
            r"added_cond_kwargs\['text_embeds'\] must be .* \(1, 16\), got \(1, 7\)",
        ),
        ("sd3", {"pooled_projections": torch.zeros(1, 9)}, r"pooled_projections must be .* \(1, 16\), got \(1, 9\)"),
        ("sd3", {"encoder_hidden_states": torch.zeros(1, 5, 7)}, r"encoder_hidden_states must have shape \(1, L, 32\)"),
        ("flux", {"guidance": None}, "guidance is required"),
        ("flux", {"img_ids": torch.zeros(16)}, r"img_ids must be .* \(·, 3\)"),
        (
            "flux",
            {"prompt_embeds": torch.zeros(1, 5, 32)},
            r"no conditioning keyword \['prompt_embeds'\].*"
            r"'encoder_hidden_states'.*solver options are \['method'",
        ),
    ],
)
def test_conditioning_is_checked_before_compute(nets, arch, change, match):
    cond = {**_cond(arch), **change}
    with pytest.raises(ValueError, match=match):
        network_basis(nets[arch], _x(arch), 0.5, 2, **cond)


@pytest.mark.parametrize(
    "arch, shape, match",
    [
        ("dit", (1, 4, 7, 8), "multiples of 2"),
        ("sd3", (1, 4, 18, 18), "at most 16"),
        ("flux", (1, 16, 8, 8), r"packed latents of shape \(1, N, 16\)"),
        ("sdxl", (2, 4, 8, 8), r"\(1, 4, H, W\)"),
    ],
)
def test_input_shape_is_checked(nets, arch, shape, match):
    with pytest.raises(ValueError, match=match):
        network_basis(nets[arch], torch.zeros(shape), 0.5, 2, **_cond(arch))


# ------------------------------------------------------------------ the flow-matching time grid
def test_flow_grid_is_the_schedulers_own():
    from diffusers import FlowMatchEulerDiscreteScheduler
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift as diffusers_shift

    sd3 = FlowMatchEulerDiscreteScheduler(shift=3.0)
    grid = FlowGrid.from_scheduler(sd3)
    # training grid: level n <-> scheduler.timesteps[T - n] = sigma_n * T (descending from T)
    for n in (1, 7, 250, 500, 999, 1000):
        assert grid.sigma(n) == pytest.approx(float(sd3.sigmas[T - n]), rel=1e-6)
        assert grid.sigma(n / T) == grid.sigma(n)
    assert grid.sigma(0) == 0.0 and grid.sigma(1.0) == 1.0
    assert FlowGrid.from_scheduler(None).sigma(250) == 0.25  # unshifted: sigma = t / T
    # dynamic (FLUX): the pipeline's sigmas linspace(1, 1/N, N) shifted with mu(image tokens)
    flux = FlowMatchEulerDiscreteScheduler(
        use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096
    )
    assert calculate_shift(1024, 256, 4096, 0.5, 1.15) == pytest.approx(diffusers_shift(1024, 256, 4096, 0.5, 1.15))
    g = FlowGrid.from_scheduler(flux, image_seq_len=1024)
    n_steps = 8
    flux.set_timesteps(sigmas=[1 - i / n_steps for i in range(n_steps)], mu=calculate_shift(1024))
    ours = [g.sigma(T - i * T // n_steps) for i in range(n_steps + 1)]
    torch.testing.assert_close(torch.tensor(ours, dtype=torch.float32), flux.sigmas, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="image_seq_len"):
        FlowGrid.from_scheduler(flux)
    with pytest.raises(ValueError, match="use_karras_sigmas"):
        FlowGrid.from_scheduler(FlowMatchEulerDiscreteScheduler(use_karras_sigmas=True))


def test_flow_network_time_and_basis_info(nets):
    from diffusers import FlowMatchEulerDiscreteScheduler

    sched = FlowMatchEulerDiscreteScheduler(shift=3.0)
    fn = feature_map(nets["sd3"], 500, scheduler=sched, **_cond("sd3"))
    assert fn.sigma == pytest.approx(float(sched.sigmas[T - 500]), rel=1e-6)
    assert fn.timestep == pytest.approx(float(sched.timesteps[T - 500]), rel=1e-6)  # SD3 sees sigma * T
    fl = feature_map(nets["flux"], 500, **_cond("flux"))
    assert fl.timestep == pytest.approx(0.5)  # FLUX's transformer takes sigma * T / 1000 and scales by 1000
    b = network_basis(nets["sd3"], _x("sd3"), 500, 2, scheduler=sched, method="krylov", **_cond("sd3"))
    assert (
        b.info["level"] == 500
        and b.info["sigma"] == pytest.approx(fn.sigma)
        and b.info["layer"] == "transformer_blocks.1"
    )
    with pytest.raises(TypeError, match="FlowMatchEulerDiscreteScheduler"):
        from diffusers import DDIMScheduler

        feature_map(nets["sd3"], 500, scheduler=DDIMScheduler(), **_cond("sd3"))


def test_flux_packing_matches_the_pipeline():
    from diffusers import FluxPipeline

    z = torch.randn(2, 4, 8, 6)
    tokens = pack_latents(z)
    torch.testing.assert_close(tokens, FluxPipeline._pack_latents(z, 2, 4, 8, 6))
    torch.testing.assert_close(unpack_latents(tokens, 8, 6), z)
    torch.testing.assert_close(
        latent_image_ids(8, 6), FluxPipeline._prepare_latent_image_ids(2, 4, 3, "cpu", torch.float32)
    )


# ------------------------------------------------------------------ bases vs the exact SVD (engine level)
def test_pixart_basis_vs_exact_svd(nets):
    net, cond = nets["pixart"], _cond("pixart")
    x = _x("pixart")
    basis = network_basis(net, x, 300, 3, method="krylov", tol=1e-5, **cond)
    ref = _hooked(net, "transformer_blocks.1")
    kw = _stock_kwargs("pixart", cond, 1, 300, None)
    _assert_matches_dense_svd(basis, lambda z: ref(z, **kw), x)


def _assert_matches_dense_svd(basis, fn, x, k=3):
    J = dense_jacobian(fn, x)
    _, s, Vh = torch.linalg.svd(J)
    torch.testing.assert_close(basis.s.double(), s[:k], rtol=1e-3, atol=1e-4)
    assert max_angle(basis.v, Vh[:k]) < 1e-2


# ------------------------------------------------------------------ tiny pipelines saved with save_pretrained
def _tiny_vae(shift_factor=None):
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        sample_size=16,
        layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 16),
        norm_num_groups=4,
        shift_factor=shift_factor,
    )


def _tiny_clip(tok, hidden, projection=None, seed=0):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    cfg = CLIPTextConfig(
        vocab_size=len(tok.get_vocab()),
        hidden_size=hidden,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=tok.model_max_length,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
        projection_dim=projection or hidden,
    )
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(cfg).eval()


def _tiny_t5(d_model=32):
    from transformers import T5Config, T5EncoderModel, T5TokenizerFast

    vocab = (
        [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
        + [(c, -1.0) for c in "abcdefghijklmnopqrstuvwxyz"]
        + [("\u2581", -2.0), ("\u2581dog", -0.5)]
    )
    torch.manual_seed(0)
    te = T5EncoderModel(
        T5Config(
            vocab_size=len(vocab),
            d_model=d_model,
            d_kv=8,
            d_ff=32,
            num_layers=1,
            num_heads=2,
            decoder_start_token_id=0,
            pad_token_id=0,
            eos_token_id=1,
        )
    ).eval()
    return te, T5TokenizerFast(vocab=vocab, extra_ids=0)


def save_tiny_pipeline(arch: str, folder: Path) -> Path:
    """A random-weight pipeline of ``arch`` (16x16 RGB images, 4x8x8 latents) saved with save_pretrained."""
    from diffusers import (
        DDIMScheduler,
        DiTPipeline,
        FlowMatchEulerDiscreteScheduler,
        FluxPipeline,
        StableDiffusion3Pipeline,
        StableDiffusionXLPipeline,
    )

    folder = Path(folder)
    if arch == "sdxl":
        tok, tok2 = tiny_clip_tokenizer(folder), tiny_clip_tokenizer(folder)
        sched = DDIMScheduler(
            beta_schedule="scaled_linear",
            beta_start=0.00085,
            beta_end=0.012,
            clip_sample=False,
            set_alpha_to_one=False,
            steps_offset=1,
        )
        pipe = StableDiffusionXLPipeline(
            vae=_tiny_vae(),
            text_encoder=_tiny_clip(tok, 16),
            text_encoder_2=_tiny_clip(tok2, 16, 16, seed=1),
            tokenizer=tok,
            tokenizer_2=tok2,
            unet=make_tiny_sdxl_unet(),
            scheduler=sched,
        )
    elif arch == "dit":
        pipe = DiTPipeline(transformer=make_tiny_dit(), vae=_tiny_vae(), scheduler=DDIMScheduler())
    elif arch == "sd3":
        tok, tok2 = tiny_clip_tokenizer(folder), tiny_clip_tokenizer(folder)
        t5, t5tok = _tiny_t5(32)
        pipe = StableDiffusion3Pipeline(
            transformer=make_tiny_sd3(),
            scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
            vae=_tiny_vae(shift_factor=0.1),
            text_encoder=_tiny_clip(tok, 8, 8),
            tokenizer=tok,
            text_encoder_2=_tiny_clip(tok2, 8, 8, seed=1),
            tokenizer_2=tok2,
            text_encoder_3=t5,
            tokenizer_3=t5tok,
        )
    else:
        tok = tiny_clip_tokenizer(folder)
        t5, t5tok = _tiny_t5(32)
        sched = FlowMatchEulerDiscreteScheduler(
            use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096
        )
        pipe = FluxPipeline(
            scheduler=sched,
            vae=_tiny_vae(shift_factor=0.1),
            text_encoder=_tiny_clip(tok, 16),
            tokenizer=tok,
            text_encoder_2=t5,
            tokenizer_2=t5tok,
            transformer=make_tiny_flux(),
        )
    pipe.save_pretrained(folder)
    if arch == "dit":  # the hub's DiT folders record ImageNet's label names in model_index.json
        index = json.loads((folder / "model_index.json").read_text())
        index["id2label"] = {"0": "tench, Tinca tinca", "1": "goldfish", "3": "tiger shark"}
        (folder / "model_index.json").write_text(json.dumps(index))
    return folder


PIPES = ["sdxl", "dit", "sd3", "flux"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("arch-pipelines")
    out = {}
    for arch in PIPES:
        m = load_model(save_tiny_pipeline(arch, root / arch), sample_size=8 if arch == "flux" else None)
        m.max_sequence_length = 8  # short T5 prompts keep the tiny SD3 / FLUX fast
        out[arch] = m
    return out


PROMPT = {"sdxl": "a dog", "dit": 3, "sd3": "a dog", "flux": "a dog"}


def test_pipelines_load_as_diffusion_models(models):
    sdxl, dit, sd3, flux = (models[a] for a in PIPES)
    assert type(sd3.denoiser).__name__ == "SD3Transformer2DModel" and sd3.is_flow and sd3.prediction_type == "flow"
    assert type(flux.unet).__name__ == "FluxTransformer2DModel" and flux.flow_grid.dynamic
    assert flux.flow_grid.mu == pytest.approx(calculate_shift(16))  # 4x4 packed tokens of 8x8 latents
    assert not sdxl.is_flow and not dit.is_flow and dit.is_conditional and dit.has_unconditional_branch
    for m in models.values():
        assert m.sample_shape == (4, 8, 8) and m.image_shape == (3, 16, 16) and m.is_latent
        assert not m.unet.training and not any(p.requires_grad for p in m.unet.parameters())
    # coefficients: VP (sqrt(alpha_bar), sqrt(1 - alpha_bar)); flow (1 - sigma, sigma) on the shifted grid
    a = sdxl.alpha_bar(0.3)
    assert sdxl.coefficients(0.3) == pytest.approx((math.sqrt(a), math.sqrt(1 - a)))
    s = sd3.sigma(0.3)
    assert s == pytest.approx(3 * 0.3 / (1 + 2 * 0.3)) and sd3.coefficients(0.3) == pytest.approx((1 - s, s))
    assert sd3.alpha_bar(0.3) == pytest.approx((1 - s) ** 2 / ((1 - s) ** 2 + s**2))
    assert sd3.coefficients(1.0) == (0.0, 1.0) and sd3.coefficients(0) == (1.0, 0.0)


def test_prompts_through_each_pipelines_encoders(models):
    sdxl, dit, sd3, flux = (models[a] for a in PIPES)
    c = sdxl.encode_prompt(["a dog", "cat"])
    pe, _, pooled, _ = sdxl.pipeline.encode_prompt(["a dog", "cat"], device="cpu", do_classifier_free_guidance=False)
    torch.testing.assert_close(c["encoder_hidden_states"], pe)
    torch.testing.assert_close(c["added_cond_kwargs"]["text_embeds"], pooled)
    torch.testing.assert_close(c["added_cond_kwargs"]["time_ids"], torch.tensor([[16.0, 16, 0, 0, 16, 16]] * 2))
    u = sdxl.unconditional_embedding()  # force_zeros_for_empty_prompt, as StableDiffusionXLPipeline does
    assert not u["encoder_hidden_states"].any() and not u["added_cond_kwargs"]["text_embeds"].any()
    e = sd3.encode_prompt("a dog")
    pe, _, pooled, _ = sd3.pipeline.encode_prompt(
        "a dog", None, None, device="cpu", do_classifier_free_guidance=False, max_sequence_length=8
    )
    torch.testing.assert_close(e["encoder_hidden_states"], pe)
    torch.testing.assert_close(e["pooled_projections"], pooled)
    f = flux.encode_prompt("a dog")
    pe, pooled, ids = flux.pipeline.encode_prompt("a dog", None, device="cpu", max_sequence_length=8)
    torch.testing.assert_close(f["encoder_hidden_states"], pe)
    torch.testing.assert_close(f["txt_ids"], ids)
    assert dit.encode_prompt("tiger shark")["class_labels"].tolist() == [3]
    assert dit.encode_prompt([1, 0])["class_labels"].tolist() == [1, 0]
    assert dit.unconditional_embedding()["class_labels"].tolist() == [10]  # the null class
    with pytest.raises(ValueError, match=r"class label\(s\) \['zebra'\] not found"):
        dit.encode_prompt("zebra")
    with pytest.raises(ValueError, match=r"class ids \[12\] are outside 0\.\.9"):
        dit.encode_prompt(12)
    with pytest.raises(ValueError, match="pass a prompt string or a Conditioning"):
        sd3.eps(sd3.noise(1), 0.5, torch.zeros(1, 5, 32))


@pytest.mark.parametrize("arch", PIPES)
def test_classifier_free_guidance_is_the_linear_combination(models, arch):
    m = models[arch]
    x = m.noise(2, seed=1)
    e_u, e_c = m.eps(x, 0.5), m.eps(x, 0.5, PROMPT[arch])
    assert not torch.allclose(e_u, e_c)
    torch.testing.assert_close(
        m.eps(x, 0.5, PROMPT[arch], guidance_scale=4.0), e_u + 4.0 * (e_c - e_u), rtol=1e-4, atol=1e-4
    )


@pytest.mark.parametrize("arch", PIPES)
def test_model_basis_vs_exact_svd_of_the_stock_forward(models, arch):
    """DiffusionModel.local_basis against the SVD of the dense Jacobian of a hook on the stock forward pass."""
    m = models[arch]
    x = m.noise(1, seed=3)
    t = 0.4
    basis = m.local_basis(x, t, 3, prompt=PROMPT[arch], method="krylov", tol=1e-5)
    c = m.conditioning(PROMPT[arch])
    path = {
        "sdxl": "mid_block",
        "dit": "transformer_blocks.2",
        "sd3": "transformer_blocks.1",
        "flux": "single_transformer_blocks.0",
    }[arch]
    assert basis.info["layer"] == ("mid" if arch == "sdxl" else path)
    hooked = _hooked(m.unet, path)
    level = round(t * T)
    if arch == "flux":
        from diffusers import FluxPipeline

        kw = {
            **dict(c),
            "img_ids": FluxPipeline._prepare_latent_image_ids(1, 4, 4, "cpu", torch.float32),
            "guidance": torch.tensor([3.5]),
            "timestep": torch.tensor([m.sigma(t)]),
        }

        def fn(z):
            return hooked(FluxPipeline._pack_latents(z, z.shape[0], 4, 8, 8), **kw)
    else:
        if arch == "sd3":
            ts = torch.tensor([float(m.scheduler.sigmas[T - level]) * T])
        else:
            ts = torch.tensor([level - 1])
        kw = {**dict(c), "timestep": ts}

        def fn(z):
            return hooked(z, **kw)

    assert basis.v.shape == (3, 1, 4, 8, 8)
    _assert_matches_dense_svd(basis, fn, x)
    # the model's feature map is the same map
    with torch.no_grad():
        torch.testing.assert_close(m.feature_map(t, PROMPT[arch])(x), fn(x), rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ flow-matching sampling and inversion
@pytest.mark.parametrize("arch", ["sd3", "flux"])
def test_sampling_equals_the_diffusers_pipeline(models, arch):
    """ddim_sample on a flow model is the pipeline's own FlowMatchEulerDiscreteScheduler loop."""
    m = models[arch]
    x = m.noise(1, seed=5)
    n = 4
    sigmas = [1 - i / n for i in range(n)]
    if arch == "sd3":
        ours = ddim_sample(m, x, 1.0, 0, steps=n, prompt="a dog", guidance_scale=2.0)
        ref = m.pipeline(
            prompt="a dog",
            latents=x,
            sigmas=sigmas,
            guidance_scale=2.0,
            height=16,
            width=16,
            max_sequence_length=8,
            output_type="latent",
        ).images
    else:
        ours = ddim_sample(m, x, 1.0, 0, steps=n, prompt="a dog")
        ref = m.pipeline(
            prompt="a dog",
            latents=pack_latents(x),
            sigmas=sigmas,
            guidance_scale=3.5,
            height=16,
            width=16,
            max_sequence_length=8,
            output_type="latent",
        ).images
        ref = unpack_latents(ref, 8, 8)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)


def test_inversion_round_trip_on_a_tiny_flow_model(models):
    m = models["sd3"]
    x0 = m.to_latent(torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1)
    errs = []
    for iters in (0, 8):
        z = ddim_invert(m, x0, 0.6, steps=6, prompt="a dog", fixed_point_iters=iters)
        back = ddim_sample(m, z, 0.6, 0, steps=6, prompt="a dog")
        errs.append(float((back - x0).norm() / x0.norm()))
    assert errs[1] < 1e-3 and errs[1] < errs[0] / 10, errs


class GaussianVelocity(torch.nn.Module):
    """The exact flow-matching velocity for data N(mu, s^2 I), called like an SD3 transformer ``(x, sigma * T)``.

    x = (1 - sig) x0 + sig eps has mean (1 - sig) mu and variance V = (1 - sig)^2 s^2 + sig^2, so
    E[eps | x] = sig d / V and E[x0 | x] = mu + (1 - sig) s^2 d / V with d = x - (1 - sig) mu, and
    v = E[eps | x] - E[x0 | x].
    """

    def __init__(self, mu: torch.Tensor, s: float) -> None:
        super().__init__()
        self.register_buffer("mu", mu.clone())
        self.s = float(s)

    def closed_form(self, x: torch.Tensor, sig: float) -> tuple[torch.Tensor, torch.Tensor]:
        d = x - (1 - sig) * self.mu
        V = (1 - sig) ** 2 * self.s**2 + sig**2
        return self.mu + (1 - sig) * self.s**2 * d / V, sig * d / V  # (E[x0 | x], E[eps | x])

    def forward(self, x: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        x0, eps = self.closed_form(x, float(timestep[0]) / T)
        return eps - x0


def _gaussian_flow_model(s: float, shift: float = 3.0):
    from diffusers import FlowMatchEulerDiscreteScheduler

    mu = torch.randn(3, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    net = GaussianVelocity(mu, s)
    m = pu.DiffusionModel(
        net,
        FlowMatchEulerDiscreteScheduler(shift=shift),
        sample_shape=(3, 4, 4),
        conditional=False,
        name=f"gaussian-flow-{s}",
    )
    return m, net


def test_velocity_to_eps_and_x0_against_the_closed_form():
    m, net = _gaussian_flow_model(0.7)
    x = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for t in (1, 250, 0.5, 999):
        sig = m.sigma(t)
        x0_true, eps_true = net.closed_form(x, sig)
        torch.testing.assert_close(m.eps(x, t), eps_true, rtol=1e-10, atol=1e-10)
        x0, eps = m.predict(x, t)
        torch.testing.assert_close(x0, x0_true, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(eps, eps_true, rtol=1e-10, atol=1e-10)
    x0, eps = m.predict(x, 1.0)  # sigma = 1: finite from the velocity (eps = x, x0 = mu as V = 1)
    torch.testing.assert_close(x0, net.mu.expand_as(x))
    torch.testing.assert_close(eps, x)


def test_point_mass_flow_sampling_and_inversion_are_exact():
    """Straight trajectories x_sigma = (1 - sigma) mu + sigma z: Euler (= our DDIM on flow coefficients) is exact."""
    m, net = _gaussian_flow_model(0.0)
    z = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)

    def on_path(t):
        sig = m.sigma(t)
        return (1 - sig) * net.mu + sig * z

    for steps, lo in [(5, 0), (3, 300), (17, 1)]:
        _, traj = ddim_sample(m, z, 1.0, lo, steps=steps, return_trajectory=True)
        for level, state in zip(traj.times, traj.states):
            torch.testing.assert_close(state, on_path(level), rtol=0, atol=1e-12)
    up = ddim_invert(m, on_path(200), 1.0, steps=7, t_from=200)
    torch.testing.assert_close(up, z, rtol=0, atol=1e-12)
    torch.testing.assert_close(ddim_sample(m, up, 1.0, 200, steps=7), on_path(200), rtol=0, atol=1e-12)


def test_gaussian_flow_round_trip():
    m, _ = _gaussian_flow_model(0.6)
    x0 = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64).clamp(-1, 1)
    explicit = []
    for steps in (4, 16, 64):
        back = ddim_sample(m, ddim_invert(m, x0, 0.8, steps=steps), 0.8, 0, steps=steps)
        explicit.append(float((back - x0).norm()))
    assert explicit[0] > explicit[1] > explicit[2] > 0  # first-order: error shrinks with steps
    exact = ddim_sample(m, ddim_invert(m, x0, 0.8, steps=8, fixed_point_iters=60), 0.8, 0, steps=8)
    torch.testing.assert_close(exact, x0, rtol=0, atol=1e-9)  # fixed-point inversion: an exact round trip


def test_stochastic_flow_sampling_reaches_the_data_distribution():
    """eta = 1 (DDPM-like) on the flow coefficients: 2000 samples of N(mu, 0.25 I) data, first-order accurate."""
    m, net = _gaussian_flow_model(0.5)
    x = torch.randn(2000, 3, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = ddim_sample(m, x, 1.0, 0, steps=200, eta=1.0, seed=1)
    assert float((out.mean(0) - net.mu).abs().max()) < 0.06  # 3.5 standard errors of 48 means: 0.039
    assert abs(float(out.var(0).mean()) - 0.25) < 0.03  # measured bias -0.017 at 200 steps, halving with steps
    few = x[:20]
    assert torch.equal(
        ddim_sample(m, few, 1.0, 0, steps=50, eta=1.0, seed=1), ddim_sample(m, few, 1.0, 0, steps=50, eta=1.0, seed=1)
    )  # the seed fixes the noise
    assert not torch.allclose(
        ddim_sample(m, few, 1.0, 0, steps=50, eta=1.0, seed=1), ddim_sample(m, few, 1.0, 0, steps=50, eta=0.0)
    )


# ------------------------------------------------------------------ one edit
def test_xspace_guidance_on_a_flow_model_matches_the_closed_form():
    """eps(x) = sig (x - (1 - sig) mu) / V is affine, so each guidance step adds gamma * s * sig / V * v."""
    m, _ = _gaussian_flow_model(0.5)
    x = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    v = torch.randn(3, 4, 4, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    v = v / v.norm()
    t, gamma, n, step = 400, 0.3, 5, 0.5
    sig = m.sigma(t)
    slope = sig / ((1 - sig) ** 2 * 0.25 + sig**2)
    it = pu.xspace_guidance(m, x, t, v, gamma=gamma, n_steps=n, step_size=step)
    for j in range(n + 1):
        torch.testing.assert_close(it[j], x + j * gamma * step * slope * v, rtol=0, atol=1e-12)


@pytest.mark.parametrize("arch", ["sd3", "dit"])
def test_edit_image_runs_on_other_architectures(models, arch):
    m = models[arch]
    res = pu.edit_image(
        m,
        None,
        t_edit=0.5,
        k=2,
        n_steps=2,
        gamma=0.5,
        inversion_steps=4,
        sampling_steps=4,
        prompt=PROMPT[arch] if arch == "sd3" else None,
        frames=2,
        seed=1,
    )
    assert res.frames.shape == (2, 3, 16, 16) and torch.isfinite(res.frames).all()
    assert res.basis is not None and res.basis.info["level"] == 500
    assert not torch.allclose(res.x0[0], res.x0[-1])  # the edit changed the result


# ------------------------------------------------------------------ counting the cost of the real checkpoints
_TINY_DIT = dict(
    num_attention_heads=2,
    attention_head_dim=8,
    in_channels=4,
    out_channels=8,
    num_layers=4,
    sample_size=8,
    patch_size=2,
    num_embeds_ada_norm=10,
)


def test_meta_counts_equal_counts_on_the_real_tiny_model():
    from diffusers import DiTTransformer2DModel
    from torch.utils.flop_counter import FlopCounterMode

    from pullback_utils.features import flops as costs

    c = costs.basis_costs("DiTTransformer2DModel", _TINY_DIT, (4, 8, 8), dtype=torch.float32, block=2)
    torch.manual_seed(0)
    net = DiTTransformer2DModel(**_TINY_DIT).eval().requires_grad_(False)
    assert c.params == sum(p.numel() for p in net.parameters()) and c.param_bytes == 4 * c.params
    assert c.layer == "transformer_blocks.2" and c.h_shape == (1, 16, 16) and c.x_shape == (1, 4, 8, 8)
    fn = feature_map(net, 0.5, class_labels=0)
    x = torch.randn(1, 4, 8, 8, requires_grad=True)
    with pu.features.ad_safe.forward_ad_safe(net):
        with FlopCounterMode(display=False) as fc:  # torch's own counter, on real CPU tensors
            h = fn(x)
        assert fc.get_total_flops() == c.forward_flops
        with FlopCounterMode(display=False) as fc:  # one Jᵀu by plain autograd (frozen weights)
            torch.autograd.grad(h, x, torch.randn_like(h))
        assert fc.get_total_flops() == pytest.approx(c.vjp_flops, rel=0.02)
        # activations: unique storages saved for backward, parameters excluded, counted by data pointer
        params = {p.untyped_storage().data_ptr() for p in net.parameters()}
        storages = {}

        def pack(s):
            st = s.untyped_storage()
            if st.data_ptr() not in params:
                storages[st.data_ptr()] = st.nbytes()
            return s

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda s: s):
            fn(torch.randn(1, 4, 8, 8, requires_grad=True))
    assert sum(storages.values()) == pytest.approx(c.saved_bytes, rel=0.05)
    assert c.jvp_flops > c.vjp_flops > 0
    assert costs.seconds_per_basis(c, 10, 20, 1e9) == pytest.approx(
        (c.forward_flops + 10 * c.jvp_flops + 20 * c.vjp_flops) / 1e9
    )
    with pytest.raises(ValueError, match="flops_per_second must be > 0"):
        costs.seconds_per_basis(c, 1, 1, 0)


def test_real_configs_have_the_published_sizes():
    """Parameter counts of the real configs, built on the meta device (a guard on the configs)."""
    from pullback_utils.features import flops as costs

    published = {
        "SDXL base (1024 px)": 2.567e9,
        "SD3 medium (1024 px)": 2.028e9,
        "FLUX.1-dev (1024 px)": 11.90e9,
        "CelebA-HQ DDPM (256 px)": 113.67e6,  # the U-Net of benchmarks/celebahq_basis.py
        "DiT-XL/2 (256 px)": 0.750e9,
    }  # 675 M in the paper + diffusers' per-block time/label embedders
    for name, n in published.items():
        spec = costs.REAL_CONFIGS[name]
        net = costs.meta_denoiser(spec["cls"], spec["config"])
        assert sum(p.numel() for p in net.parameters()) == pytest.approx(n, rel=3e-3), name
