"""Fixtures of the zoo tests: one shared MiniLM text encoder (loading it takes a few seconds)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def minilm():
    from pullback_utils.zoo.text_encoder import MiniLMTextEncoder

    return MiniLMTextEncoder(max_length=16)
