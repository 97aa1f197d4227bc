"""The dataset-complexity ladder: one renderer, a growing number of free generative factors.

Rung ``r`` frees the factors of rung ``r - 1`` and a few more; the others stay at fixed values. The
complexity of each rung is known by construction: its number of free continuous factors.

====  ==========  =================================================  =====
rung  name        free factors (added by this rung)                  count
====  ==========  =================================================  =====
1     position    ``cx, cy`` of one white disk on black              2
2     radius      + ``radius``                                       3
3     colour      + the disk's colour ``r, g, b``                    6
4     background  + the background colour ``bg_r, bg_g, bg_b``       9
5     two disks   + a second disk ``cx2, cy2, radius2, r2, g2, b2``  15
====  ==========  =================================================  =====

Factor values (fractions of the image width, y pointing down): centres in
:data:`~pullback_utils.zoo.vocab.POS_RANGE`, radii in :data:`~pullback_utils.zoo.vocab.SIZE_RANGE`;
disk colours bright HSV colours (hue uniform, saturation in [0.5, 1], value in [0.7, 1]);
backgrounds dark HSV colours (value in [0, 0.4]) so a disk always stands out. Fixed values: radius
``0.185``, disk colour ``(0.95, 0.95, 0.95)``, black background, no second disk.

The draws are nested: for one seed every rung draws the same values for the factors they share
(the full 15-factor vector is drawn, then the factors a rung does not free are fixed), so rung
``r + 1`` differs from rung ``r`` only in the factors it adds.

Dataset names are ``"ladder-1"`` ... ``"ladder-5"``; images (N, 3, 32, 32) in [-1, 1]. The ladder's
models are ``"ladder-<rung>-s<seed>"`` (see :mod:`pullback_utils.zoo.registry`).
"""

from __future__ import annotations

import torch

from pullback_utils._validate import check_int, is_int
from pullback_utils.zoo.render import disk_coverage, hsv_to_rgb, jacobian_columns
from pullback_utils.zoo.vocab import POS_RANGE, SIZE_RANGE

__all__ = [
    "RUNGS",
    "RUNG_NAMES",
    "ALL_FACTORS",
    "dataset_name",
    "check_rung",
    "rung_of",
    "factor_names",
    "n_factors",
    "sample_factors",
    "full_factors",
    "render",
    "factor_jacobian",
]

RUNGS: tuple[int, ...] = (1, 2, 3, 4, 5)
RUNG_NAMES: dict[int, str] = {1: "position", 2: "radius", 3: "colour", 4: "background", 5: "two disks"}
ALL_FACTORS: tuple[str, ...] = (
    "cx",
    "cy",
    "radius",
    "r",
    "g",
    "b",
    "bg_r",
    "bg_g",
    "bg_b",
    "cx2",
    "cy2",
    "radius2",
    "r2",
    "g2",
    "b2",
)
_FREE: dict[int, int] = {1: 2, 2: 3, 3: 6, 4: 9, 5: 15}  # rung -> number of leading free factors
#: Values of the factors a rung does not free (radius2 0 and colour 0: no second disk).
FIXED: tuple[float, ...] = (0.5, 0.5, 0.185, 0.95, 0.95, 0.95, 0.0, 0.0, 0.0, 0.5, 0.5, 0.0, 0.0, 0.0, 0.0)
PREFIX = "ladder-"


def check_rung(rung: object, name: str = "rung") -> int:
    """``rung`` as an int of :data:`RUNGS`; ``ValueError`` naming the valid rungs otherwise."""
    if is_int(rung) and int(rung) in RUNGS:
        return int(rung)
    raise ValueError(
        f"{name}: unknown ladder rung {rung!r}; valid rungs: {list(RUNGS)} "
        f"({', '.join(f'{r} = {RUNG_NAMES[r]}' for r in RUNGS)})"
    )


def dataset_name(rung: int) -> str:
    """``"ladder-<rung>"``."""
    return f"{PREFIX}{check_rung(rung)}"


def rung_of(dataset: str) -> int:
    """The rung of a ladder dataset name ``"ladder-<rung>"`` (``ValueError`` otherwise)."""
    if not isinstance(dataset, str) or not dataset.startswith(PREFIX) or not dataset[len(PREFIX) :].isdigit():
        raise ValueError(f"dataset: {dataset!r} is not a ladder dataset; valid: {[dataset_name(r) for r in RUNGS]}")
    return check_rung(int(dataset[len(PREFIX) :]), "dataset")


def factor_names(rung: int) -> tuple[str, ...]:
    """Names of the free factors of ``rung`` (a prefix of :data:`ALL_FACTORS`)."""
    return ALL_FACTORS[: _FREE[check_rung(rung)]]


def n_factors(rung: int) -> int:
    """The rung's complexity: its number of free continuous factors."""
    return len(factor_names(rung))


def _uniform(gen: torch.Generator, n: int, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def _full_draw(n: int, seed: int) -> torch.Tensor:
    """(n, 15) values of every factor, in :data:`ALL_FACTORS` order, deterministic in ``seed``."""
    gen = torch.Generator().manual_seed(int(seed))
    cols = []
    for _ in range(2):  # disk 1, then disk 2
        pos = _uniform(gen, 2 * n, *POS_RANGE).view(n, 2)
        rad = _uniform(gen, n, *SIZE_RANGE)[:, None]
        rgb = hsv_to_rgb(torch.rand(n, generator=gen), _uniform(gen, n, 0.5, 1.0), _uniform(gen, n, 0.7, 1.0))
        cols.append(torch.cat([pos, rad, rgb], 1))
    bg = hsv_to_rgb(torch.rand(n, generator=gen), torch.rand(n, generator=gen), _uniform(gen, n, 0.0, 0.4))
    return torch.cat([cols[0], bg, cols[1]], 1)


def sample_factors(rung: int, n: int, seed: int) -> torch.Tensor:
    """(n, n_factors(rung)) free factors of ``rung``, deterministic in ``seed`` and nested across rungs."""
    k = n_factors(rung)
    check_int(n, "n:", 1)
    return _full_draw(n, seed)[:, :k].contiguous()


def full_factors(rung: int, factors: torch.Tensor) -> torch.Tensor:
    """Free factors (N, K) of ``rung`` -> all 15 factors (N, 15) in :data:`ALL_FACTORS` order (the
    fixed ones at :data:`FIXED`), linear (so differentiable) in ``factors``."""
    k = n_factors(rung)
    if factors.ndim != 2 or factors.shape[1] != k:
        raise ValueError(
            f"factors: expected shape (N, {k}) for ladder rung {rung} "
            f"({', '.join(factor_names(rung))}), got {tuple(factors.shape)}"
        )
    fixed = torch.tensor(FIXED[k:], dtype=factors.dtype, device=factors.device)
    return torch.cat([factors, fixed.expand(factors.shape[0], -1)], 1)


def render(rung: int, factors: torch.Tensor) -> torch.Tensor:
    """(N, 3, 32, 32) images in [-1, 1] of rung ``rung`` from its free factors (N, K), differentiably."""
    f = full_factors(rung, factors)
    img = f[:, 6:9, None, None] * torch.ones(1, 1, 32, 32, dtype=f.dtype, device=f.device)
    for o in (0, 9):  # disk 1, then disk 2 over it (radius 0: no disk)
        m = disk_coverage(f[:, o], f[:, o + 1], f[:, o + 2]) * (f[:, o + 2] > 0).to(f.dtype)[:, None, None, None]
        img = img * (1 - m) + f[:, o + 3 : o + 6, None, None] * m
    return img * 2 - 1


def factor_jacobian(rung: int, factors: torch.Tensor) -> torch.Tensor:
    """(N, 3*32*32, K): d image / d free factors of ``rung`` at each image."""
    return jacobian_columns(lambda f: render(rung, f), factors)
