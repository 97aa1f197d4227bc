"""forward_ad_safe: stock-equal outputs, working forward AD, processors restored."""

from __future__ import annotations

import pytest
import torch
from torch.func import jvp

from pullback_utils import feature_map
from pullback_utils.features.ad_safe import ForwardADAttnProcessor, attention_modules, forward_ad_safe


def test_forward_output_equals_stock(tiny_unet, tiny_cond_unet):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 16, 16, generator=gen)
    with torch.no_grad():
        ref = tiny_unet(x, 500).sample
        with forward_ad_safe(tiny_unet):
            got = tiny_unet(x, 500).sample
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)

    z = torch.randn(2, 4, 8, 8, generator=gen)
    ehs = torch.randn(2, 6, 24, generator=gen)
    mask = torch.ones(2, 6)
    mask[1, 4:] = 0
    with torch.no_grad():
        ref = tiny_cond_unet(z, 20, encoder_hidden_states=ehs, encoder_attention_mask=mask).sample
        with forward_ad_safe(tiny_cond_unet):
            got = tiny_cond_unet(z, 20, encoder_hidden_states=ehs, encoder_attention_mask=mask).sample
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


def test_stock_attention_breaks_forward_ad_and_context_fixes_it(tiny_unet):
    fn = feature_map(tiny_unet, 500)
    x = torch.randn(1, 3, 16, 16)
    v = torch.randn_like(x)
    with pytest.raises((NotImplementedError, RuntimeError)):
        jvp(fn, (x,), (v,))
    with forward_ad_safe(tiny_unet):
        h, dh = jvp(fn, (x,), (v,))
    assert torch.isfinite(dh).all() and dh.shape == h.shape


def test_processors_restored_even_on_error(tiny_unet):
    before = [type(m.processor) for m in attention_modules(tiny_unet)]
    assert before and all(cls is not ForwardADAttnProcessor for cls in before)
    with pytest.raises(KeyError):
        with forward_ad_safe(tiny_unet):
            assert all(isinstance(m.processor, ForwardADAttnProcessor) for m in attention_modules(tiny_unet))
            raise KeyError("boom")
    assert [type(m.processor) for m in attention_modules(tiny_unet)] == before
    assert all(not h for m in tiny_unet.modules() for h in [m._forward_pre_hooks])


# ------------------------------------------------------------------ issue 14: joint attention (SD3), RoPE (FLUX), DiT
def _transformer_case(arch):
    from unet_factories import make_tiny_dit, make_tiny_flux, make_tiny_sd3

    from pullback_utils.diffusion.architectures import latent_image_ids, pack_latents

    g = torch.Generator().manual_seed(7)
    x = torch.randn(1, 4, 8, 8, generator=g, dtype=torch.float64)
    if arch == "sd3":
        return (
            make_tiny_sd3().double(),
            x,
            dict(
                encoder_hidden_states=torch.randn(1, 5, 32, generator=g, dtype=torch.float64),
                pooled_projections=torch.randn(1, 16, generator=g, dtype=torch.float64),
            ),
        )
    if arch == "flux":
        return (
            make_tiny_flux().double(),
            pack_latents(x),
            dict(
                encoder_hidden_states=torch.randn(1, 5, 32, generator=g, dtype=torch.float64),
                pooled_projections=torch.randn(1, 16, generator=g, dtype=torch.float64),
                img_ids=latent_image_ids(8, 8).double(),
                guidance=3.5,
            ),
        )
    return make_tiny_dit().double(), x, dict(class_labels=2)


@pytest.mark.parametrize(
    "arch, layer",
    [
        ("sd3", "transformer_blocks.2"),  # after two joint-attention blocks (one with dual attention)
        ("flux", "transformer_blocks.0"),  # double-stream joint attention with rotary embeddings
        ("flux", "single_transformer_blocks.1"),  # single-stream attention with rotary embeddings
        ("dit", "transformer_blocks.3"),
    ],
)
def test_forward_ad_through_transformer_attention_matches_finite_differences(arch, layer):
    net, x, cond = _transformer_case(arch)
    fn = feature_map(net, 0.4, layer=layer, **cond)
    v = torch.randn(x.shape, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    if arch != "dit":  # the stock processors' fused attention kernels have no forward-AD formula
        with pytest.raises((NotImplementedError, RuntimeError)):
            jvp(fn, (x,), (v,))
    procs = [type(m.processor) for m in attention_modules(net)]
    with forward_ad_safe(net):
        h, dh = jvp(fn, (x,), (v,))
        inside = [type(m.processor) for m in attention_modules(net)]
    # Fourth-order central differences with a large step: diffusers' RMSNorm (SD3's and FLUX's q/k norms)
    # computes its variance in float32 even in a float64 model, so h carries ~1e-7 relative rounding noise,
    # which small steps would amplify; at e = 1e-2 truncation (O(e^4)) and noise are both ~1e-6.
    e = 1e-2
    with torch.no_grad():
        fd = (8 * (fn(x + e * v) - fn(x - e * v)) - (fn(x + 2 * e * v) - fn(x - 2 * e * v))) / (12 * e)
        torch.testing.assert_close(h, fn(x), rtol=1e-12, atol=1e-12)  # outputs equal the stock forward's
    assert float((dh - fd).abs().max()) < 1e-5 * float(fd.abs().max())
    # the joint / rotary processors are left in place (SDPA on the math backend); DiT's classic ones swapped
    expect = [ForwardADAttnProcessor if arch == "dit" else p for p in procs]
    assert inside == expect and [type(m.processor) for m in attention_modules(net)] == procs


def test_flux_attention_modules_are_found():
    from unet_factories import make_tiny_flux

    net = make_tiny_flux()
    mods = attention_modules(net)
    assert len(mods) == 3 and {type(m).__name__ for m in mods} == {"FluxAttention"}
