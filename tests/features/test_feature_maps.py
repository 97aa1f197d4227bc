"""feature_map against forward hooks on the stock diffusers forward pass."""

from __future__ import annotations

import pytest
import torch

from pullback_utils import feature_map, layer_names


def _hooked_outputs(unet, x, t, **kwargs):
    """Outputs of every down/mid/up block during the stock forward pass, keyed by layer name."""
    outs, handles = {}, []

    def grab(name):
        def hook(module, args, output):
            outs[name] = output[0] if isinstance(output, tuple) else output

        return hook

    for i, b in enumerate(unet.down_blocks):
        handles.append(b.register_forward_hook(grab(f"down.{i}")))
    handles.append(unet.mid_block.register_forward_hook(grab("mid")))
    for i, b in enumerate(unet.up_blocks):
        handles.append(b.register_forward_hook(grab(f"up.{i}")))
    with torch.no_grad():
        unet(x, t, **kwargs)
    for h in handles:
        h.remove()
    return outs


def test_unet2d_every_layer_matches_stock_forward(tiny_unet):
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    ref = _hooked_outputs(tiny_unet, x, 320)  # level 321 = U-Net timestep 320
    assert set(ref) == set(layer_names(tiny_unet))
    for name, expected in ref.items():
        with torch.no_grad():
            got = feature_map(tiny_unet, 321, layer=name)(x)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5, msg=name)


def test_conditional_unet_every_layer_matches_stock_forward(tiny_cond_unet):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(1, 4, 8, 8, generator=gen)
    ehs = torch.randn(1, 5, 24, generator=gen)
    ref = _hooked_outputs(tiny_cond_unet, x, 76, encoder_hidden_states=ehs)  # level 77
    for name, expected in ref.items():
        with torch.no_grad():
            got = feature_map(tiny_cond_unet, 77, layer=name, encoder_hidden_states=ehs)(x)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5, msg=name)


def test_mid_layer_is_h_space_shape(tiny_unet):
    with torch.no_grad():
        h = feature_map(tiny_unet, 10)(torch.zeros(1, 3, 16, 16))
    assert h.shape == (1, 32, 4, 4)


def test_prompt_changes_conditional_features(tiny_cond_unet):
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(1, 4, 8, 8, generator=gen)
    a, b = torch.randn(1, 5, 24, generator=gen), torch.randn(1, 5, 24, generator=gen)
    with torch.no_grad():
        ha = feature_map(tiny_cond_unet, 50, encoder_hidden_states=a)(x)
        hb = feature_map(tiny_cond_unet, 50, encoder_hidden_states=b)(x)
    assert not torch.allclose(ha, hb)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(layer="middle"), r"valid layers.*'mid'"),
        (dict(layer="down.9"), "valid layers"),
        (dict(t=-1), r"t=-1 is outside the training grid"),
        (dict(t=float("nan")), r"t=nan must be a fraction of T in \[0, 1\]"),
        (dict(t=1001, num_train_timesteps=1000), r"t=1001 is outside the training grid: int levels run from 0"),
        (dict(t=5000), r"t=5000 is outside the training grid"),
        (dict(t=0), r"t=0 is clean data \(level 0\)"),
        (dict(t=1.5), r"t=1.5 must be a fraction of T"),
        (dict(encoder_hidden_states=torch.zeros(1, 3, 24)), "unconditional"),
    ],
)
def test_bad_input_unet2d(tiny_unet, kwargs, match):
    t = kwargs.pop("t", 10)
    with pytest.raises(ValueError, match=match):
        feature_map(tiny_unet, t, **kwargs)


def test_bad_input_conditional(tiny_cond_unet):
    with pytest.raises(ValueError, match="encoder_hidden_states is required"):
        feature_map(tiny_cond_unet, 10)
    with pytest.raises(ValueError, match=r"\(1, L, 24\)"):
        feature_map(tiny_cond_unet, 10, encoder_hidden_states=torch.zeros(1, 5, 7))
    with pytest.raises(
        TypeError,
        match=r"supported diffusers classes \[.UNet2DModel., .UNet2DConditionModel., "
        r".*FluxTransformer2DModel.\], got Linear",
    ):
        feature_map(torch.nn.Linear(2, 2), 10)


# ------------------------------------------------------------------ issue 14: any named submodule
@pytest.mark.parametrize(
    "path",
    [
        "down_blocks.1.attentions.0",
        "down_blocks.0.resnets.0",
        "mid_block.resnets.1",
        "up_blocks.1.upsamplers.0",
        "conv_in",
    ],
)
def test_named_submodule_matches_a_hook_on_the_stock_forward(tiny_unet, path):
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    module = dict(tiny_unet.named_modules())[path]
    seen = []
    h = module.register_forward_hook(lambda m, a, o: seen.append(o[0] if isinstance(o, tuple) else o) and None)
    try:
        with torch.no_grad():
            tiny_unet(x, 99)
    finally:
        h.remove()
    with torch.no_grad():
        got = feature_map(tiny_unet, 100, layer=path)(x)
    torch.testing.assert_close(got, seen[0], rtol=1e-5, atol=1e-5)


def test_short_names_are_the_blocks_and_the_default_is_mid(tiny_unet):
    from pullback_utils.features.feature_maps import default_layer, resolve_layer

    assert default_layer(tiny_unet) == "mid"
    assert resolve_layer(tiny_unet, "mid") is tiny_unet.mid_block
    assert resolve_layer(tiny_unet, "down.2") is tiny_unet.down_blocks[2]
    assert resolve_layer(tiny_unet, "up_blocks.0") is tiny_unet.up_blocks[0]
    every = layer_names(tiny_unet, submodules=True)
    assert every[:7] == layer_names(tiny_unet) and "down_blocks.1.attentions.0.to_q" in every


def test_unknown_layer_suggests_close_names(tiny_unet):
    with pytest.raises(ValueError, match=r"did you mean \['mid_block'.*\]") as info:
        feature_map(tiny_unet, 10, layer="mid_blok")
    assert "'down.0', 'down.1', 'down.2', 'mid', 'up.0', 'up.1', 'up.2'" in str(info.value)
    with pytest.raises(TypeError, match="layer must be a str"):
        feature_map(tiny_unet, 10, layer=3)
