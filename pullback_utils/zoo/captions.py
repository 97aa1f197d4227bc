"""Captions of the ``shapes-text`` dataset, generated from the ``shapes`` factors.

A full caption reads ``"a small red triangle in the upper left on a blue background"``:
size word (thirds of :data:`~pullback_utils.zoo.vocab.SIZE_RANGE`), foreground colour name, shape
name, position phrase (thirds of :data:`~pullback_utils.zoo.vocab.POS_RANGE` in x and y; y points
down, so small y is "upper"),
background colour name. For training variety each of the size, position and background parts is
left out with probability ``drop_part`` (the colour and shape words are always present).
"""

from __future__ import annotations

import torch

from pullback_utils.zoo.vocab import COLOUR_NAMES, POS_RANGE, SHAPES, SIZE_RANGE


def _thirds(lo: float, hi: float) -> tuple[float, float]:
    return lo + (hi - lo) / 3, lo + 2 * (hi - lo) / 3


_SIZE_WORDS: tuple[str, ...] = ("small", "medium", "large")
SIZE_EDGES: tuple[float, float] = _thirds(*SIZE_RANGE)
POS_EDGES: tuple[float, float] = _thirds(*POS_RANGE)
_POSITION_PHRASES: dict[tuple[int, int], str] = {
    (0, 0): "in the upper left",
    (0, 1): "at the top",
    (0, 2): "in the upper right",
    (1, 0): "on the left",
    (1, 1): "in the centre",
    (1, 2): "on the right",
    (2, 0): "in the lower left",
    (2, 1): "at the bottom",
    (2, 2): "in the lower right",
}


def _third(x: float, edges: tuple[float, float]) -> int:
    return 0 if x < edges[0] else (2 if x >= edges[1] else 1)


def _size_word(size: float) -> str:
    """``"small"``, ``"medium"`` or ``"large"`` for a shape size in :data:`SIZE_RANGE`."""
    return _SIZE_WORDS[_third(size, SIZE_EDGES)]


def _position_phrase(cx: float, cy: float) -> str:
    """Position phrase of a shape centre (fractions of the image width, y pointing down)."""
    return _POSITION_PHRASES[(_third(cy, POS_EDGES), _third(cx, POS_EDGES))]


def caption(
    shape: int, fg: int, bg: int, cx: float, cy: float, size: float, parts: tuple[bool, bool, bool] = (True, True, True)
) -> str:
    """One caption; ``parts`` says whether the (size, position, background) parts are included."""
    if not 0 <= shape < len(SHAPES):
        raise ValueError(f"shape: index must be in [0, {len(SHAPES)}), got {shape}")
    for pname, c in (("fg", fg), ("bg", bg)):
        if not 0 <= c < len(COLOUR_NAMES):
            raise ValueError(f"{pname}: colour index must be in [0, {len(COLOUR_NAMES)}), got {c}")
    words = []
    if parts[0]:
        words.append(_size_word(size))
    words += [COLOUR_NAMES[fg], SHAPES[shape]]
    if parts[1]:
        words.append(_position_phrase(cx, cy))
    if parts[2]:
        words += ["on", _article(COLOUR_NAMES[bg]), COLOUR_NAMES[bg], "background"]
    return " ".join([_article(words[0])] + words)


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def captions_for(
    factors: torch.Tensor, discrete: dict[str, torch.Tensor], seed: int, drop_part: float = 0.2
) -> list[str]:
    """Captions of ``shapes`` factors (N, 10) and labels (``shape``, ``fg``, ``bg``: (N,)).

    Deterministic in ``seed``; ``drop_part = 0`` gives full captions.
    """
    if not 0.0 <= drop_part <= 1.0:
        raise ValueError(f"drop_part: must be in [0, 1], got {drop_part}")
    n = factors.shape[0]
    gen = torch.Generator().manual_seed(int(seed) + 7919)
    keep = (torch.rand(n, 3, generator=gen) >= drop_part).tolist()
    f = factors.tolist()
    s, fg, bg = discrete["shape"].tolist(), discrete["fg"].tolist(), discrete["bg"].tolist()
    return [caption(s[i], fg[i], bg[i], f[i][0], f[i][1], f[i][2], tuple(keep[i])) for i in range(n)]


def caption_attributes(text: str) -> dict[str, str]:
    """The attributes a caption states, read with the captions' own vocabulary.

    Returns a dict with any of ``size``, ``colour``, ``shape``, ``position``, ``background`` (the
    parts a caption leaves out are absent), e.g. ``{"size": "small", "colour": "red", "shape":
    "triangle", "position": "in the upper left", "background": "blue"}``. Raises ``ValueError`` for
    a caption without a colour and a shape word of the vocabulary.
    """
    if not isinstance(text, str):
        raise ValueError(f"caption must be a string, got {type(text).__name__}")
    words = text.lower().replace(",", " ").split()
    out: dict[str, str] = {}
    if "background" in words:
        i = words.index("background")
        if i >= 1 and words[i - 1] in COLOUR_NAMES:
            out["background"] = words[i - 1]
            words = words[: max(0, i - 3)]  # drop "on a <colour> background"
    rest = " ".join(words)
    for phrase in _POSITION_PHRASES.values():
        if phrase in rest:
            out["position"] = phrase
            rest = rest.replace(phrase, " ")
    toks = rest.split()
    for t in toks:
        if t in _SIZE_WORDS and "size" not in out:
            out["size"] = t
        elif t in COLOUR_NAMES and "colour" not in out:
            out["colour"] = t
        elif t in SHAPES and "shape" not in out:
            out["shape"] = t
    if "colour" not in out or "shape" not in out:
        raise ValueError(
            f"caption {text!r} names no colour and shape of the vocabulary "
            f"(colours {list(COLOUR_NAMES)}, shapes {list(SHAPES)})"
        )
    return out
