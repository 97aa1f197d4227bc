"""Argument checks shared by the package: one function per kind of value (a leaf module).

Each check returns the value in its canonical type and raises ``ValueError`` whose message names the
parameter and says what would be valid. Bools are never accepted as numbers.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

__all__ = [
    "is_int",
    "is_real",
    "check_int",
    "check_real",
    "check_fraction",
    "check_choice",
    "check_bool",
    "check_batch",
]


def is_int(value: Any) -> bool:
    """Whether ``value`` is an integer (Python or numpy) and not a bool: the package's one such test."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """Whether ``value`` is a real number (int or float, Python or numpy) and not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_int(value: Any, name: str, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as an int in ``[minimum, maximum]`` (either bound optional)."""
    ok = is_int(value)
    if ok and minimum is not None and int(value) < minimum:
        ok = False
    if ok and maximum is not None and int(value) > maximum:
        ok = False
    if not ok:
        rng = (
            (f" >= {minimum}" if maximum is None else f" in {minimum}..{maximum}")
            if minimum is not None
            else (f" <= {maximum}" if maximum is not None else "")
        )
        raise ValueError(f"{name} must be an int{rng}, got {value!r}")
    return int(value)


def check_real(
    value: Any,
    name: str,
    *,
    positive: bool = False,
    nonneg: bool = False,
    lo: float | None = None,
    hi: float | None = None,
) -> float:
    """``value`` as a finite float, optionally > 0, >= 0, or in ``[lo, hi]``."""
    if not is_real(value) or not math.isfinite(float(value)):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    v = float(value)
    if positive and v <= 0:
        raise ValueError(f"{name} must be > 0, got {v}")
    if nonneg and v < 0:
        raise ValueError(f"{name} must be >= 0, got {v}")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise ValueError(f"{name} must lie in [{lo}, {hi}], got {v}")
    return v


def check_fraction(value: Any, name: str, *, open_low: bool = False, open_high: bool = False) -> float:
    """``value`` as a float in ``[0, 1]`` (``open_low``/``open_high`` exclude the ends)."""
    v = check_real(value, name, lo=0.0, hi=1.0)
    if (open_low and v == 0.0) or (open_high and v == 1.0):
        raise ValueError(f"{name} must lie in {'(' if open_low else '['}0, 1{')' if open_high else ']'}, got {v}")
    return v


def check_choice(value: Any, name: str, choices: Sequence[Any]) -> Any:
    """``value`` if it is one of ``choices``."""
    if value not in tuple(choices):
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def check_bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


def check_batch(x: Any, shape: Sequence[int], name: str, what: str) -> None:
    """Refuse ``x`` unless it is a ``(B, *shape)`` tensor; ``what`` describes it in the message ("x_0", ...)."""
    import torch

    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != len(shape) + 1 or tuple(x.shape[1:]) != tuple(shape):
        hint = ""
        if x.dim() == len(shape) + 1 and x.shape[1] != shape[0]:
            hint = f" (wrong channel count: {x.shape[1]} instead of {shape[0]})"
        raise ValueError(
            f"{name} must be {what} of shape (B, {', '.join(map(str, shape))}), got {tuple(x.shape)}{hint}"
        )
