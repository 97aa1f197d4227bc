"""Captions of shapes-text match their factors."""

from __future__ import annotations

import pytest
import torch

from pullback_utils.zoo import captions as cap
from pullback_utils.zoo.datasets import COLOUR_NAMES, SHAPES, make_dataset


def test_caption_from_known_factors():
    shape, fg, bg = SHAPES.index("triangle"), COLOUR_NAMES.index("red"), COLOUR_NAMES.index("blue")
    assert (
        cap.caption(shape, fg, bg, cx=0.3, cy=0.3, size=0.13)
        == "a small red triangle in the upper left on a blue background"
    )
    assert (
        cap.caption(
            SHAPES.index("circle"),
            COLOUR_NAMES.index("orange"),
            COLOUR_NAMES.index("white"),
            cx=0.5,
            cy=0.7,
            size=0.24,
            parts=(False, True, False),
        )
        == "an orange circle at the bottom"
    )


def test_dataset_captions_name_their_factors():
    d = make_dataset("shapes-text", 64, seed=5)
    full = cap.captions_for(d.factors, d.discrete, seed=5, drop_part=0.0)
    for i, (c, cf) in enumerate(zip(d.captions, full)):
        f = d.factors[i]
        assert f" {COLOUR_NAMES[int(d.discrete['fg'][i])]} {SHAPES[int(d.discrete['shape'][i])]}" in c
        assert cap._position_phrase(float(f[0]), float(f[1])) in cf
        assert cf.split()[1] == cap._size_word(float(f[2]))
        assert cf.endswith(f"{COLOUR_NAMES[int(d.discrete['bg'][i])]} background")
    assert d.captions == make_dataset("shapes-text", 64, seed=5).captions


def test_caption_bad_input():
    with pytest.raises(ValueError, match="shape"):
        cap.caption(9, 0, 1, 0.5, 0.5, 0.2)
    with pytest.raises(ValueError, match="drop_part"):
        cap.captions_for(
            torch.zeros(1, 10),
            {
                "shape": torch.zeros(1, dtype=torch.long),
                "fg": torch.zeros(1, dtype=torch.long),
                "bg": torch.ones(1, dtype=torch.long),
            },
            0,
            drop_part=2,
        )
