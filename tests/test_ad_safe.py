"""forward_ad_safe: stock-equal outputs, working forward AD, processors restored."""

from __future__ import annotations

import pytest
import torch
from torch.func import jvp

from pullback_utils import feature_map
from pullback_utils.ad_safe import forward_ad_safe
from pullback_utils.ad_safe import ForwardADAttnProcessor, attention_modules


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
