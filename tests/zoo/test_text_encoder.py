"""The offline MiniLM text encoder: shapes and determinism."""

from __future__ import annotations

import pytest
import torch


def test_encode_shape_and_determinism(minilm):
    prompts = ["a small red triangle in the upper left on a blue background", "a blue circle"]
    a = minilm.encode(prompts)
    b = minilm.encode(prompts)
    assert minilm.hidden_size == 384 and minilm.max_length == 16
    assert a.shape == (2, 16, 384) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert not a.requires_grad
    u = minilm.encode([""])
    assert u.shape == (1, 16, 384) and torch.isfinite(u).all()
    # a long prompt is truncated to max_length tokens
    assert minilm.encode(["word " * 100]).shape == (1, 16, 384)


def test_prompt_similarity(minilm):
    from pullback_utils.zoo.text_encoder import prompt_similarity

    s = prompt_similarity(["a red circle", "a blue square"], ["a red circle", "a red disk"])
    assert s.shape == (2, 2)
    assert abs(float(s[0, 0]) - 1.0) < 1e-4
    assert s[0, 1] > s[1, 1]


def test_bad_input(minilm):
    with pytest.raises(ValueError, match="prompts"):
        minilm.encode("a red circle")
    with pytest.raises(ValueError, match="prompts"):
        minilm.encode([])
