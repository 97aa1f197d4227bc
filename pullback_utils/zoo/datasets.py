"""Training data of the model zoo: procedural images with their generative factors, and photo crops.

Four datasets form a ladder of complexity (all 32x32 RGB, pixel range [-1, 1]):

- ``disks``: one filled disk on a black background. Continuous factors
  ``(cx, cy, radius, r, g, b)``: centre in [0.25, 0.75] (fractions of the image width, y pointing
  down), radius in [0.12, 0.25], colour a saturated bright RGB colour (HSV hue uniform, saturation in
  [0.5, 1], value in [0.7, 1]).
- ``shapes``: one shape out of :data:`SHAPES` (circle, square, triangle, plus) with position
  ``cx, cy`` in [0.25, 0.75], size (circumradius) in [0.12, 0.25], rotation in [0, pi/2), a named
  foreground colour and a different named background colour from :data:`PALETTE`, each jittered by
  up to +-0.05 per channel. Continuous factors ``(cx, cy, size, rot, fg_r, fg_g, fg_b, bg_r, bg_g,
  bg_b)``; discrete labels ``shape``, ``fg`` and ``bg`` (indices into :data:`SHAPES` / :data:`PALETTE`).
- ``scenes``: two or three overlapping shapes (random types, positions in [0.2, 0.8], sizes in
  [0.1, 0.22], any rotation, uniform random RGB colours) painted in order over a smooth linear
  gradient between two random colours. 28 continuous factors (7 per shape slot, then the
  gradient's two colours and angle); discrete labels ``shape`` (N, 3) and ``present`` (N, 3).
- ``textures``: random square crops (side 48 to 160 pixels, random horizontal flip) of the colour
  photographs bundled with scikit-image and scikit-learn (:data:`PHOTOS`), area-resized to 32x32.
  No factors.
- ``shapes-text``: the ``shapes`` images with a caption each (see :mod:`pullback_utils.zoo.captions`).
- ``ladder-1`` ... ``ladder-5``: the dataset-complexity ladder, one disk renderer with 2 to 15 free
  factors (see :mod:`pullback_utils.zoo.ladder`).

The procedural images are rendered by :func:`render`, which is differentiable in the continuous
factors (soft, anti-aliased edges: coverage = sigmoid(signed distance / :data:`EDGE_SOFTNESS`)), so
the true tangent space of the data manifold at an image is ``d render / d factors``
(see :func:`factor_jacobian`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from pullback_utils.zoo import ladder
from pullback_utils.zoo.render import coverage as _coverage
from pullback_utils.zoo.render import hsv_to_rgb as _hsv_to_rgb
from pullback_utils.zoo.render import jacobian_columns, pixel_grid, shape_sdf
from pullback_utils.zoo.vocab import (  # noqa: F401  (re-exported: the datasets' vocabulary)
    COLOUR_JITTER,
    COLOUR_NAMES,
    EDGE_SOFTNESS,
    PALETTE,
    POS_RANGE,
    RESOLUTION,
    SHAPES,
    SIZE_RANGE,
)

DATASETS: tuple[str, ...] = ("disks", "shapes", "scenes", "textures", "shapes-text") + tuple(
    ladder.dataset_name(r) for r in ladder.RUNGS
)
#: The datasets with factors and a differentiable renderer (all but ``textures``).
PROCEDURAL: tuple[str, ...] = tuple(d for d in DATASETS if d != "textures")
#: Photographs bundled with scikit-image / scikit-learn that load without any download.
PHOTOS: tuple[str, ...] = (
    "skimage:astronaut",
    "skimage:coffee",
    "skimage:chelsea",
    "skimage:rocket",
    "skimage:stereo_motorcycle",
    "sklearn:china.jpg",
    "sklearn:flower.jpg",
)

FACTOR_NAMES: dict[str, tuple[str, ...]] = {
    "disks": ("cx", "cy", "radius", "r", "g", "b"),
    "shapes": ("cx", "cy", "size", "rot", "fg_r", "fg_g", "fg_b", "bg_r", "bg_g", "bg_b"),
    "scenes": tuple(f"s{i}_{k}" for i in range(3) for k in ("cx", "cy", "size", "rot", "r", "g", "b"))
    + ("bg0_r", "bg0_g", "bg0_b", "bg1_r", "bg1_g", "bg1_b", "bg_angle"),
}
FACTOR_NAMES["shapes-text"] = FACTOR_NAMES["shapes"]
FACTOR_NAMES.update({ladder.dataset_name(r): ladder.factor_names(r) for r in ladder.RUNGS})


@dataclass
class ZooData:
    """A dataset draw.

    Attributes:
        name: dataset name.
        images: (N, 3, 32, 32) float32 in [-1, 1].
        factors: (N, K) float32 continuous factors (``None`` for ``textures``); K = len(factor_names).
        discrete: discrete labels, each a LongTensor with leading dimension N.
        factor_names: names of the K factor columns.
        captions: N captions (``shapes-text`` only).
    """

    name: str
    images: torch.Tensor
    factors: torch.Tensor | None = None
    discrete: dict[str, torch.Tensor] = field(default_factory=dict)
    factor_names: tuple[str, ...] = ()
    captions: list[str] | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])


def _check_name(name: str, valid: tuple[str, ...] = DATASETS) -> None:
    if name not in valid:
        raise ValueError(f"name: unknown dataset {name!r}; valid datasets: {list(valid)}")


def render(name: str, factors: torch.Tensor, discrete: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """Render procedural images from their factors, differentiably in ``factors``.

    Args:
        name: a procedural dataset (:data:`PROCEDURAL`).
        factors: (N, K) continuous factors laid out as ``FACTOR_NAMES[name]``.
        discrete: labels: ``shape`` (N,) for shapes, ``shape`` (N, 3) and ``present`` (N, 3) for
            scenes; unused for disks.

    Returns:
        (N, 3, 32, 32) images in [-1, 1].
    """
    _check_name(name, PROCEDURAL)
    if name.startswith(ladder.PREFIX):
        return ladder.render(ladder.rung_of(name), factors)
    if factors.ndim != 2 or factors.shape[1] != len(FACTOR_NAMES[name]):
        raise ValueError(
            f"factors: expected shape (N, {len(FACTOR_NAMES[name])}) for {name!r}, got {tuple(factors.shape)}"
        )
    discrete = discrete or {}
    f = factors
    n = f.shape[0]
    if name == "disks":
        kind = torch.zeros(n, dtype=torch.long, device=f.device)
        m = _coverage(shape_sdf(kind, f[:, 0], f[:, 1], f[:, 2], torch.zeros_like(f[:, 0])))[:, None]
        img = m * f[:, 3:6, None, None]
    elif name in ("shapes", "shapes-text"):
        if "shape" not in discrete:
            raise ValueError("discrete: rendering shapes needs discrete['shape'] of shape (N,)")
        m = _coverage(shape_sdf(discrete["shape"], f[:, 0], f[:, 1], f[:, 2], f[:, 3]))[:, None]
        img = m * f[:, 4:7, None, None] + (1 - m) * f[:, 7:10, None, None]
    else:
        if "shape" not in discrete or "present" not in discrete:
            raise ValueError(
                "discrete: rendering scenes needs discrete['shape'] and discrete['present'], each of shape (N, 3)"
            )
        g = pixel_grid(f.device, f.dtype)
        ang = f[:, 27]
        t = 0.5 + 0.7 * (
            (g[0][None] - 0.5) * torch.cos(ang)[:, None, None] + (g[1][None] - 0.5) * torch.sin(ang)[:, None, None]
        )
        img = f[:, 21:24, None, None] * (1 - t[:, None]) + f[:, 24:27, None, None] * t[:, None]
        for i in range(3):
            p = f[:, 7 * i : 7 * i + 7]
            m = _coverage(shape_sdf(discrete["shape"][:, i], p[:, 0], p[:, 1], p[:, 2], p[:, 3]))
            m = (m * discrete["present"][:, i, None, None].to(f.dtype))[:, None]
            img = img * (1 - m) + p[:, 4:7, None, None] * m
    return img * 2 - 1


def factor_jacobian(name: str, factors: torch.Tensor, discrete: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """Jacobian of :func:`render` with respect to the continuous factors, per image.

    factors: (N, K). Returns (N, 3*32*32, K): column k is d image / d factor k (flattened C,H,W),
    i.e. the tangent vectors of the data manifold at each image.
    """
    return jacobian_columns(lambda f: render(name, f, discrete), factors)


def _rand(gen: torch.Generator, n: int, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def _palette_colours(gen: torch.Generator, idx: torch.Tensor) -> torch.Tensor:
    pal = torch.tensor(list(PALETTE.values()))
    jit = (torch.rand(idx.shape[0], 3, generator=gen) * 2 - 1) * COLOUR_JITTER
    return (pal[idx] + jit).clamp(0, 1)


def sample_factors(name: str, n: int, seed: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Draw ``n`` factor vectors of a procedural dataset (deterministic in ``seed``).

    Returns (factors (n, K), discrete labels) as documented in the module docstring.
    """
    _check_name(name, PROCEDURAL)
    if n < 1:
        raise ValueError(f"n: must be >= 1, got {n}")
    if name.startswith(ladder.PREFIX):
        return ladder.sample_factors(ladder.rung_of(name), n, seed), {}
    gen = torch.Generator().manual_seed(int(seed))
    if name == "disks":
        pos = _rand(gen, 2 * n, *POS_RANGE).view(n, 2)
        rad = _rand(gen, n, *SIZE_RANGE)
        rgb = _hsv_to_rgb(torch.rand(n, generator=gen), _rand(gen, n, 0.5, 1.0), _rand(gen, n, 0.7, 1.0))
        return torch.cat([pos, rad[:, None], rgb], 1), {}
    if name in ("shapes", "shapes-text"):
        shape = torch.randint(len(SHAPES), (n,), generator=gen)
        pos = _rand(gen, 2 * n, *POS_RANGE).view(n, 2)
        size = _rand(gen, n, *SIZE_RANGE)
        rot = _rand(gen, n, 0.0, math.pi / 2)
        fg = torch.randint(len(PALETTE), (n,), generator=gen)
        bg = (fg + torch.randint(1, len(PALETTE), (n,), generator=gen)) % len(PALETTE)
        f = torch.cat([pos, size[:, None], rot[:, None], _palette_colours(gen, fg), _palette_colours(gen, bg)], 1)
        return f, {"shape": shape, "fg": fg, "bg": bg}
    shape = torch.randint(len(SHAPES), (n, 3), generator=gen)
    present = torch.ones(n, 3, dtype=torch.long)
    present[:, 2] = (torch.rand(n, generator=gen) < 0.5).long()
    slots = []
    for _ in range(3):
        pos = _rand(gen, 2 * n, 0.2, 0.8).view(n, 2)
        size = _rand(gen, n, 0.10, 0.22)
        rot = _rand(gen, n, 0.0, math.pi / 2)
        rgb = torch.rand(n, 3, generator=gen)
        slots.append(torch.cat([pos, size[:, None], rot[:, None], rgb], 1))
    bg = torch.rand(n, 6, generator=gen)
    ang = _rand(gen, n, 0.0, 2 * math.pi)
    return torch.cat(slots + [bg, ang[:, None]], 1), {"shape": shape, "present": present}


def _load_photo(spec: str) -> torch.Tensor:
    """One bundled photograph as (3, H, W) float32 in [0, 1]."""
    src, key = spec.split(":")
    if src == "skimage":
        import skimage.data

        arr = getattr(skimage.data, key)()
        if isinstance(arr, tuple):  # stereo pairs: take the left image
            arr = arr[0]
    else:
        from sklearn.datasets import load_sample_image

        arr = load_sample_image(key)
    t = torch.from_numpy(arr.copy()).float() / 255.0
    return t[..., :3].permute(2, 0, 1).contiguous()


_PHOTO_CACHE: dict[str, torch.Tensor] = {}


def load_photos() -> list[torch.Tensor]:
    """The photographs of :data:`PHOTOS`, each (3, H, W) in [0, 1] (cached in memory)."""
    for p in PHOTOS:
        if p not in _PHOTO_CACHE:
            _PHOTO_CACHE[p] = _load_photo(p)
    return [_PHOTO_CACHE[p] for p in PHOTOS]


def _photo_crops(n: int, seed: int, min_side: int = 48, max_side: int = 160) -> torch.Tensor:
    """``n`` random square crops of the bundled photos, flipped at random, resized to 32x32.

    Returns (n, 3, 32, 32) in [-1, 1]; deterministic in ``seed``.
    """
    if n < 1:
        raise ValueError(f"n: must be >= 1, got {n}")
    if not 8 <= min_side <= max_side:
        raise ValueError(f"min_side/max_side: need 8 <= min_side <= max_side, got {min_side}, {max_side}")
    photos = load_photos()
    gen = torch.Generator().manual_seed(int(seed))
    which = torch.randint(len(photos), (n,), generator=gen)
    side_u = torch.rand(n, generator=gen)
    pos_u = torch.rand(n, 2, generator=gen)
    flip = torch.rand(n, generator=gen) < 0.5
    out = torch.empty(n, 3, RESOLUTION, RESOLUTION)
    for i in range(n):
        ph = photos[int(which[i])]
        _, h, w = ph.shape
        side = int(min_side + side_u[i] * (min(max_side, h, w) - min_side))
        y0 = int(pos_u[i, 0] * (h - side))
        x0 = int(pos_u[i, 1] * (w - side))
        crop = ph[:, y0 : y0 + side, x0 : x0 + side]
        if flip[i]:
            crop = crop.flip(-1)
        out[i] = F.interpolate(crop[None], size=(RESOLUTION, RESOLUTION), mode="area")[0]
    return out.clamp(0, 1) * 2 - 1


def make_dataset(name: str, n: int, seed: int) -> ZooData:
    """Draw ``n`` images (with factors, labels, captions where defined) of dataset ``name``.

    Deterministic in ``seed``. Images: (n, 3, 32, 32) float32 in [-1, 1].
    """
    _check_name(name)
    if n < 1:
        raise ValueError(f"n: must be >= 1, got {n}")
    if name == "textures":
        return ZooData(name, _photo_crops(n, seed))
    factors, discrete = sample_factors(name, n, seed)
    with torch.no_grad():
        images = render(name, factors, discrete)
    data = ZooData(name, images, factors, discrete, FACTOR_NAMES[name])
    if name == "shapes-text":
        from pullback_utils.zoo.captions import captions_for

        data.captions = captions_for(factors, discrete, seed=seed)
    return data
