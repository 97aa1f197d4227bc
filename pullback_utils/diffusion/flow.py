"""Flow matching (SD3, FLUX): the time grid of ``FlowMatchEulerDiscreteScheduler`` on the package's levels.

A flow-matching model is trained on ``x_sigma = (1 - sigma) x_0 + sigma eps`` and predicts the velocity
``v = dx/dsigma = eps - x_0``. Times follow :mod:`pullback_utils.diffusion.schedule` unchanged: a level ``n`` in
``0..T`` (or a fraction ``f``, level ``round(f T)``) is the *unshifted* fraction ``s = n / T``, and the
state at level ``n`` has

    sigma_n = shift(n / T)

where ``shift`` is the scheduler's own map: the static ``shift * s / (1 + (shift - 1) s)`` (SD3:
``shift = 3``; ``shift = 1`` is ``sigma = s = t / T``), or, with ``use_dynamic_shifting`` (FLUX), the
resolution-dependent ``e^mu / (e^mu + (1/s - 1))`` ("exponential") or ``mu / (mu + (1/s - 1))``
("linear") with ``mu`` interpolated linearly in the image's token count between ``base_shift`` at
``base_image_seq_len`` and ``max_shift`` at ``max_image_seq_len`` (diffusers' ``calculate_shift``).
So level ``T`` is pure noise (``sigma = 1``), level 0 clean data, and ``steps`` steps over
``[0, T]`` visit ``s = 1, 1 - 1/steps, ..., 0``: exactly the sigmas a diffusers pipeline uses when it
is given ``sigmas = linspace(1, 1/steps, steps)`` (FLUX's default; SD3 accepts them too). The network
is called with the scheduler's timestep ``sigma * T`` (SD3) or with ``sigma * T / 1000`` (FLUX's
transformer multiplies its input by 1000 itself).

In the package's ``(alpha, sigma)`` notation a flow state is ``x_t = alpha_t x_0 + sigma_t eps`` with
``alpha_t = 1 - sigma_t``; its ``alpha_bar = alpha^2 / (alpha^2 + sigma^2)`` is that of the
variance-preserving state with the same signal-to-noise ratio. Deterministic DDIM on these
coefficients is exactly the Euler step of the flow ODE: ``(1 - sigma') x0_hat + sigma' eps_hat =
x + (sigma' - sigma) v`` (:func:`velocity_to_eps`, :func:`velocity_to_x0`), which is how
:func:`pullback_utils.diffusion.ddim.ddim_sample` and :func:`~pullback_utils.diffusion.ddim.ddim_invert`
sample and invert flow models on their own grid.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass
from typing import Any

import torch

from pullback_utils.diffusion.schedule import DEFAULT_NUM_TRAIN_TIMESTEPS, resolve_time

__all__ = [
    "FlowGrid",
    "is_flow_scheduler",
    "calculate_shift",
    "velocity_to_eps",
    "velocity_to_x0",
]

# scheduler options that change the sigmas in ways that depend on the whole inference schedule
_UNSUPPORTED = (
    "use_karras_sigmas",
    "use_exponential_sigmas",
    "use_beta_sigmas",
    "invert_sigmas",
    "shift_terminal",
    "stochastic_sampling",
)


def is_flow_scheduler(scheduler: Any) -> bool:
    """Whether ``scheduler`` is a flow-matching scheduler (``FlowMatchEulerDiscreteScheduler`` or a subclass)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    return isinstance(scheduler, FlowMatchEulerDiscreteScheduler)


def calculate_shift(
    image_seq_len: int,
    base_seq_len: int = 256,
    max_seq_len: int = 4096,
    base_shift: float = 0.5,
    max_shift: float = 1.15,
) -> float:
    """``mu`` of FLUX's resolution-dependent shift: linear in the number of image tokens."""
    m = (max_shift - base_shift) / (max_seq_len - base_seq_len)
    return image_seq_len * m + (base_shift - m * base_seq_len)


@dataclass(frozen=True)
class FlowGrid:
    """The map level -> sigma of a flow-matching scheduler (see the module doc).

    ``shift`` is the static shift; with ``dynamic`` the shift is ``mu`` of :func:`calculate_shift` at
    ``image_seq_len`` tokens (``mu`` given directly wins), applied as ``time_shift_type``.
    """

    num_train_timesteps: int = DEFAULT_NUM_TRAIN_TIMESTEPS
    shift: float = 1.0
    dynamic: bool = False
    mu: float | None = None
    time_shift_type: str = "exponential"

    def __post_init__(self) -> None:
        if self.dynamic and self.mu is None:
            raise ValueError("a dynamically shifted flow grid needs mu (or image_seq_len in from_scheduler)")
        if self.time_shift_type not in ("exponential", "linear"):
            raise ValueError(f"time_shift_type must be 'exponential' or 'linear', got {self.time_shift_type!r}")
        if not self.dynamic and not (isinstance(self.shift, numbers.Real) and self.shift > 0):
            raise ValueError(f"shift must be a number > 0, got {self.shift!r}")

    @classmethod
    def from_scheduler(
        cls, scheduler: Any = None, *, image_seq_len: int | None = None, num_train_timesteps: int | None = None
    ) -> "FlowGrid":
        """The grid of a ``FlowMatchEulerDiscreteScheduler`` (``None``: unshifted, ``sigma = t / T``).

        ``image_seq_len`` (the denoiser's number of image tokens) is needed for dynamic shifting.
        """
        if scheduler is None:
            return cls(num_train_timesteps=int(num_train_timesteps or DEFAULT_NUM_TRAIN_TIMESTEPS))
        if not is_flow_scheduler(scheduler):
            raise TypeError(f"scheduler must be a FlowMatchEulerDiscreteScheduler, got {type(scheduler).__name__}")
        cfg = scheduler.config
        bad = [k for k in _UNSUPPORTED if cfg.get(k)]
        if bad:
            raise ValueError(
                f"FlowMatchEulerDiscreteScheduler options {bad} change the sigmas with the whole inference "
                "schedule; the package supports static shift and dynamic (resolution) shift only"
            )
        T = int(cfg.get("num_train_timesteps", DEFAULT_NUM_TRAIN_TIMESTEPS))
        if not cfg.get("use_dynamic_shifting", False):
            return cls(num_train_timesteps=T, shift=float(cfg.get("shift", 1.0)))
        if image_seq_len is None:
            raise ValueError("this scheduler shifts sigmas by resolution (use_dynamic_shifting): give image_seq_len")
        mu = calculate_shift(
            int(image_seq_len),
            cfg.get("base_image_seq_len", 256),
            cfg.get("max_image_seq_len", 4096),
            cfg.get("base_shift", 0.5),
            cfg.get("max_shift", 1.15),
        )
        return cls(
            num_train_timesteps=T,
            dynamic=True,
            mu=float(mu),
            time_shift_type=str(cfg.get("time_shift_type", "exponential")),
        )

    def sigma(self, t: Any, *, name: str = "t") -> float:
        """sigma at time ``t`` (an int level or a float fraction of ``T``); 0 at level 0, 1 at level ``T``."""
        n = resolve_time(t, self.num_train_timesteps, name=name)
        s = n / self.num_train_timesteps
        if s == 0.0 or s == 1.0:
            return s
        if self.dynamic:
            m = math.exp(self.mu) if self.time_shift_type == "exponential" else self.mu
            return m / (m + (1.0 / s - 1.0))
        return self.shift * s / (1.0 + (self.shift - 1.0) * s)

    def sigmas(self) -> torch.Tensor:
        """(T + 1,) float64 sigma of every level 0..T."""
        return torch.tensor([self.sigma(n) for n in range(self.num_train_timesteps + 1)], dtype=torch.float64)

    def to_dict(self) -> dict[str, Any]:
        return {"rule": "flow-matching", **asdict(self)}


# ------------------------------------------------------------------ the flow relations
def velocity_to_eps(x: torch.Tensor, v: torch.Tensor, sigma: float) -> torch.Tensor:
    """Noise of ``x = (1 - sigma) x_0 + sigma eps`` from the velocity ``v = eps - x_0``: ``x + (1 - sigma) v``."""
    return x + (1.0 - sigma) * v


def velocity_to_x0(x: torch.Tensor, v: torch.Tensor, sigma: float) -> torch.Tensor:
    """Clean sample of ``x = (1 - sigma) x_0 + sigma eps`` from the velocity ``v = eps - x_0``: ``x - sigma v``."""
    return x - sigma * v
