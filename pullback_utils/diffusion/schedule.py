"""The one time convention of the package, the DDIM grid rule, and its split into legs (a leaf module).

Times
-----
Every public function that takes a time ``t`` reads it the same way. With ``T`` the schedule's
``num_train_timesteps`` (1000 for the paper's models and the zoo):

- an ``int`` ``n`` in ``0..T`` is a *level* of the training grid: ``n = 0`` is clean data
  (``alpha_bar = 1``); ``n >= 1`` is the state ``x_n = sqrt(a_n) x_0 + sqrt(1 - a_n) eps`` with
  ``a_n = alphas_cumprod[n - 1]``, at which the U-Net is called with timestep ``n - 1``
  (diffusers' 0-based training index);
- a ``float`` ``f`` in ``[0, 1]`` is a fraction of ``T``: level ``n = round(f * T)`` (halves up).

So ``1.0`` and ``T`` are the top of the grid (U-Net timestep ``T - 1``), ``0.5`` is level 500 (U-Net
timestep 499), and ``0`` / ``0.0`` is clean data. Anything else (a bool, a string, an int above
``T``, a float outside ``[0, 1]``, NaN) is refused with an error that names the parameter.
The network is defined on levels ``1..T`` only (:func:`unet_timestep`).

**Coming from diffusers:** an int ``t`` is a level, not a scheduler timestep. Diffusers' timestep
``tau`` (0..T-1, what ``scheduler.timesteps`` holds and the U-Net receives) is level ``tau + 1``; so
``t=400`` runs the network at timestep 399, and timestep 400 is ``t=401``. ``LocalBasis.info["timestep"]``
records what the network received. (No warning is given for int ``t``: every chapter passes levels,
and a warning on each correct call would teach users to ignore warnings; the error messages for
out-of-range levels and for level 0 state the rule.)

Grid
----
``steps`` DDIM steps between levels ``lo < hi`` visit ``lo + round(i * (hi - lo) / steps)``,
``i = 0..steps`` (:func:`grid`); sampling walks that list downwards, inversion upwards, so inverting to
``t`` and sampling back with the same ``steps`` visit the same levels. At most one step per level.

A run through several kept times (a trajectory that stops at t = 0.9, 0.7, ...; an inversion that
stops at each t) is split into *legs* between consecutive stops; with ``steps`` counted over the whole
``[0, T]``, a leg from ``hi`` down to ``lo`` gets ``max(1, round(steps * (hi - lo) / T))`` steps
(:func:`leg_steps`, :func:`legs`). :class:`TimeGrid` records that rule (``T`` and ``steps``) as one
object, the way diffusers records a scheduler's config.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Union

__all__ = [
    "Time",
    "DEFAULT_NUM_TRAIN_TIMESTEPS",
    "resolve_time",
    "unet_timestep",
    "check_times",
    "check_steps",
    "grid",
    "leg_steps",
    "legs",
    "TimeGrid",
]

Time = Union[int, float]
#: ``T`` assumed when a bare network is given without its scheduler (diffusers' and the paper's value).
DEFAULT_NUM_TRAIN_TIMESTEPS = 1000


def resolve_time(t: Any, num_train_timesteps: int, *, name: str = "t") -> int:
    """Level ``n`` in ``0..T`` of time ``t`` (an int level or a float fraction of ``T``; module doc).

    A one-element tensor is read as its value. Raises ``TypeError`` for other types (bool included)
    and ``ValueError`` when out of range; both messages name ``name``.
    """
    T = check_steps(num_train_timesteps, "num_train_timesteps")  # 1000.7 is refused, not truncated
    if hasattr(t, "numel") and hasattr(t, "item"):
        if t.numel() != 1:
            raise ValueError(f"{name} must be a single time, got a tensor of shape {tuple(t.shape)}")
        t = t.item()
    if isinstance(t, bool) or not isinstance(t, (numbers.Integral, numbers.Real)):
        raise TypeError(
            f"{name} must be an int level in 0..{T} or a float fraction of T in [0, 1], got {type(t).__name__}"
        )
    if isinstance(t, numbers.Integral):
        n = int(t)
        if not 0 <= n <= T:
            raise ValueError(
                f"{name}={n} is outside the training grid: int levels run from 0 (clean data) to "
                f"{T} (the top); use a float in [0, 1] for a fraction of T (an int is a level, not a "
                f"diffusers timestep: timestep tau is level tau + 1, so timesteps 0..{T - 1} are levels 1..{T})"
            )
        return n
    f = float(t)
    if not math.isfinite(f) or not 0.0 <= f <= 1.0:
        raise ValueError(f"{name}={f} must be a fraction of T in [0, 1] (or an int level in 0..{T})")
    return int(math.floor(f * T + 0.5))


def unet_timestep(t: Any, num_train_timesteps: int, *, name: str = "t") -> int:
    """The network's timestep input (diffusers' training index ``level - 1``) at time ``t`` > 0."""
    n = resolve_time(t, num_train_timesteps, name=name)
    if n < 1:
        raise ValueError(
            f"{name}={t!r} is clean data (level 0); the network is defined on levels 1..{int(num_train_timesteps)} "
            f"(ints) or fractions in (0, 1] (an int is a level, not a diffusers timestep: timestep tau is "
            f"level tau + 1, so timestep 0 is {name}=1)"
        )
    return n - 1


def check_times(times: Any, num_train_timesteps: int, *, name: str = "times", positive: bool = True) -> list[int]:
    """Levels of a non-empty sequence of times (each as :func:`resolve_time`), all ``>= 1`` if ``positive``."""
    if isinstance(times, (str, bytes)) or not isinstance(times, Sequence) or len(times) == 0:
        raise ValueError(f"{name} must be a non-empty list of times (fractions of T or int levels), got {times!r}")
    levels = [resolve_time(t, num_train_timesteps, name=name) for t in times]
    if positive and min(levels) < 1:
        raise ValueError(f"{name} must all be > 0 (the network is not defined on clean data), got {list(times)}")
    return levels


def check_steps(steps: Any, name: str = "steps") -> int:
    """``steps`` as an int >= 1 (``TypeError``/``ValueError`` naming ``name`` otherwise)."""
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral):
        raise TypeError(f"{name} must be an int >= 1, got {type(steps).__name__}")
    if steps < 1:
        raise ValueError(f"{name} must be >= 1, got {steps}")
    return int(steps)


def grid(lo: int, hi: int, steps: int) -> list[int]:
    """Ascending levels from ``lo`` to ``hi`` (inclusive) in ``min(steps, hi - lo)`` steps."""
    span = hi - lo
    s = min(steps, span)
    if s == 0:
        return [lo]
    return [lo + (2 * i * span + s) // (2 * s) for i in range(s + 1)]


def leg_steps(total: int, hi: int, lo: int, num_train_timesteps: int) -> int:
    """Steps of one leg from level ``hi`` to ``lo`` when ``total`` steps cover the whole ``[0, T]``."""
    return max(1, int(round(total * abs(hi - lo) / int(num_train_timesteps))))


def legs(start: int, stops: Sequence[int], total: int, num_train_timesteps: int) -> list[tuple[int, int, int]]:
    """The legs ``(from_level, to_level, steps)`` of one run from ``start`` through every level of ``stops``.

    ``stops`` are visited in the run's direction (descending below ``start`` for sampling, ascending
    above it for inversion); duplicates and stops equal to the current level give no leg.
    """
    down = all(s <= start for s in stops)
    if not down and not all(s >= start for s in stops):
        raise ValueError(f"stops must all lie on one side of start={start}, got {list(stops)}")
    out, cur = [], int(start)
    for lvl in sorted(set(int(s) for s in stops), reverse=down):
        if lvl != cur:
            out.append((cur, lvl, leg_steps(total, cur, lvl, num_train_timesteps)))
            cur = lvl
    return out


@dataclass(frozen=True)
class TimeGrid:
    """The recorded grid rule of a run: ``num_train_timesteps`` levels and ``steps`` over ``[0, T]``.

    ``levels(t_from, t_to)`` are the levels a run visits (both ends, in the run's order);
    ``legs(t_from, stops)`` splits a run through kept times; ``to_dict()`` is its config for metadata.
    """

    num_train_timesteps: int = DEFAULT_NUM_TRAIN_TIMESTEPS
    steps: int = 20

    def __post_init__(self) -> None:
        check_steps(self.num_train_timesteps, "num_train_timesteps")
        check_steps(self.steps, "steps")

    def level(self, t: Any, name: str = "t") -> int:
        return resolve_time(t, self.num_train_timesteps, name=name)

    def levels(self, t_from: Any, t_to: Any) -> list[int]:
        a, b = self.level(t_from, "t_from"), self.level(t_to, "t_to")
        g = grid(min(a, b), max(a, b), leg_steps(self.steps, a, b, self.num_train_timesteps))
        return g[::-1] if a > b else g

    def legs(self, t_from: Any, stops: Sequence[Any]) -> list[tuple[int, int, int]]:
        return legs(
            self.level(t_from, "t_from"),
            check_times(stops, self.num_train_timesteps, name="stops", positive=False),
            self.steps,
            self.num_train_timesteps,
        )

    def to_dict(self) -> dict[str, Any]:
        return {"rule": "ddim-proportional-legs", **asdict(self)}
