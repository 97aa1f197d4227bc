"""The shared vocabulary of the zoo's procedural data: a leaf module (imports nothing of the package).

Everything that both the datasets and the captions need lives here, so that changing a factor range
changes the captions with it: the shape names, the named colour palette, the image resolution, the
renderer's edge softness, and the factor ranges of the ``shapes`` family.
"""

from __future__ import annotations

RESOLUTION = 32
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "plus")
PALETTE: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.12, 0.12),
    "orange": (0.95, 0.55, 0.08),
    "yellow": (0.95, 0.90, 0.15),
    "green": (0.15, 0.65, 0.20),
    "blue": (0.12, 0.25, 0.85),
    "purple": (0.55, 0.18, 0.75),
    "white": (0.95, 0.95, 0.95),
    "black": (0.07, 0.07, 0.07),
}
COLOUR_NAMES: tuple[str, ...] = tuple(PALETTE)
COLOUR_JITTER = 0.05
#: Edge softness of the renderer, in image widths (0.4 pixel).
EDGE_SOFTNESS = 0.4 / RESOLUTION
#: Range of shape centres (``cx``, ``cy``; fractions of the image width, y pointing down) of
#: ``disks``, ``shapes``/``shapes-text`` and the ladder.
POS_RANGE: tuple[float, float] = (0.25, 0.75)
#: Range of shape sizes (circumradius, fractions of the image width) of the same datasets.
SIZE_RANGE: tuple[float, float] = (0.12, 0.25)
