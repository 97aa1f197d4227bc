"""Edit settings as one frozen, validated object: :class:`EditConfig`, and the per-model defaults.

``EditConfig.for_model(model)`` gives a model's defaults; ``cfg.replace(gamma=0.5)`` a changed copy.
Every field is checked when a config is made (``__post_init__``), so bad settings fail before any
network evaluation, with an error naming the field.

``guidance_prompt`` chooses the conditioning of the two noise predictions of x-space guidance when a
text model is edited under a basis prompt (see :mod:`pullback_utils.editing`): ``"generation"``
(default, the book's behaviour so far) conditions them on the generation prompt ``prompt``;
``"edit"`` (the official code's behaviour) on the edit prompt ``basis_prompt``, the prompt under
which the basis was computed. The two agree when ``basis_prompt`` is ``None`` or equal to ``prompt``.
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Mapping

from pullback_utils._validate import check_choice, check_int, check_real, is_real
from pullback_utils.editing.checks import check_eta_below

if TYPE_CHECKING:  # pragma: no cover
    from pullback_utils.models.diffusion_model import DiffusionModel

__all__ = [
    "GUIDANCE_PROMPTS",
    "EditConfig",
    "EDIT_DEFAULTS",
    "edit_defaults",
    "resolve_config",
    "guidance_conditioning",
]

#: Valid values of :attr:`EditConfig.guidance_prompt`.
GUIDANCE_PROMPTS: tuple[str, ...] = ("generation", "edit")


def _check_t_edits(value: Any) -> tuple[float | int, ...]:
    """A non-empty sequence of edit times in (0, T]: float fractions in (0, 1] or int levels >= 1."""
    msg = "t_edits must be a non-empty sequence of edit times: fractions of T in (0, 1] or int levels >= 1"
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ValueError(f"{msg}, got {value!r}")
    out = tuple(value)
    if not out:
        raise ValueError(f"{msg}, got {value!r}")
    for t in out:
        if not is_real(t):
            raise ValueError(f"{msg}, got {value!r}")
        if isinstance(t, numbers.Integral):
            if int(t) < 1:
                raise ValueError(f"{msg}, got {value!r}")
        elif not 0.0 < float(t) <= 1.0:
            raise ValueError(f"{msg}, got {value!r}")
    return out


@dataclass(frozen=True)
class EditConfig:
    """Settings of an edit (Park et al. 2023, Figure 2), validated on construction.

    Attributes:
        gamma: guidance step ``gamma`` (finite; 0 leaves x_t unchanged).
        n_steps: ``N`` guidance steps without a basis prompt (int >= 0).
        n_steps_prompt: ``N`` with a basis (edit) prompt (int >= 0).
        step_size: probe length ``s`` along the unit direction (> 0).
        t_edits: edit times, fractions of T (or int levels), early (noisy) to late.
        k: basis size (int >= 1).
        inversion_steps: DDIM inversion steps over the whole [0, T] (runs over part of it get a
            proportional share).
        sampling_steps: DDIM sampling steps over the whole [0, T].
        eta_below: fraction of T in [0, 1] below which the final steps are stochastic (eta = 1);
            ``None`` = deterministic.
        guidance_prompt: ``"generation"`` or ``"edit"``: the prompt of the guidance's noise
            predictions (module doc).
        source: where the values come from (free text, for metadata).
    """

    gamma: float = 1.0
    n_steps: int = 8
    n_steps_prompt: int = 8
    step_size: float = 1.0
    t_edits: tuple[float | int, ...] = (0.8, 0.6, 0.4)
    k: int = 3
    inversion_steps: int = 50
    sampling_steps: int = 20
    eta_below: float | None = None
    guidance_prompt: str = "generation"
    source: str = ""

    def __post_init__(self) -> None:
        checked = {
            "gamma": check_real(self.gamma, "gamma"),
            "n_steps": check_int(self.n_steps, "n_steps", 0),
            "n_steps_prompt": check_int(self.n_steps_prompt, "n_steps_prompt", 0),
            "step_size": check_real(self.step_size, "step_size", positive=True),
            "t_edits": _check_t_edits(self.t_edits),
            "k": check_int(self.k, "k", 1),
            "inversion_steps": check_int(self.inversion_steps, "inversion_steps", 1),
            "sampling_steps": check_int(self.sampling_steps, "sampling_steps", 1),
            "eta_below": check_eta_below(self.eta_below),
            "guidance_prompt": check_choice(self.guidance_prompt, "guidance_prompt", GUIDANCE_PROMPTS),
        }
        if not isinstance(self.source, str):
            raise ValueError(f"source must be a string, got {type(self.source).__name__}")
        for name, value in checked.items():  # canonical types (ints as int, times as a tuple)
            object.__setattr__(self, name, value)

    @classmethod
    def fields(cls) -> tuple[str, ...]:
        """Names of the settings, in order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    def replace(self, **changes: Any) -> "EditConfig":
        """A copy with ``changes`` applied (and validated); unknown names are refused."""
        unknown = sorted(set(changes) - set(self.fields()))
        if unknown:
            raise TypeError(f"unknown EditConfig field(s) {unknown}; valid fields: {list(self.fields())}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The settings as a plain dict (for metadata and :func:`edit_defaults`)."""
        return {name: getattr(self, name) for name in self.fields()}

    @classmethod
    def for_model(
        cls,
        model: "DiffusionModel | str",
        overrides: Mapping[str, Any] | None = None,
        *,
        parameter: str = "overrides",
    ) -> "EditConfig":
        """The default settings for ``model`` (a DiffusionModel or a name), with ``overrides`` applied.

        Lookup: the exact name (last path component too) in :data:`EDIT_DEFAULTS`; names containing
        ``celebahq``/``ddpm-ema`` or ``stable-diffusion``; then by kind: latent text models ->
        ``"stable-diffusion"``, other text models -> ``"zoo-text"``, CelebA-HQ-sized (256 px) pixel
        models -> ``"celebahq"``, everything else (and unknown names) -> ``"zoo-pixel"``.

        ``overrides`` ({field: value}, e.g. a chapter's ``edit_settings`` such as ``{"inversion_steps": 20}``)
        replace those fields (every field but ``source``, which then records them; a value of None is a value,
        not "keep the default": ``{"eta_below": None}`` asks for a deterministic finish); a value that is not a
        mapping, an unknown field or an invalid value raises ``ValueError`` naming ``parameter`` and the valid
        fields. Nothing is computed here, so a caller that checks first (a chapter's setup) fails before any work.
        """
        config = cls._lookup(model)
        if overrides is None:
            return config
        valid = [f for f in cls.fields() if f != "source"]
        if not isinstance(overrides, Mapping):
            raise ValueError(
                f"{parameter} must be a mapping of edit settings {{field: value}}, got {type(overrides).__name__}; "
                f"valid fields: {valid}"
            )
        if not overrides:
            return config
        unknown = sorted(str(key) for key in overrides if key not in cls.fields() or key == "source")
        if unknown:
            raise ValueError(f"{parameter}: unknown edit setting(s) {unknown}; valid fields: {valid}")
        try:
            return config.replace(**dict(overrides), source=f"{config.source}; {parameter} {dict(overrides)}")
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{parameter}: {exc}") from None

    @classmethod
    def _lookup(cls, model: "DiffusionModel | str") -> "EditConfig":
        """The default settings for ``model`` (the lookup of :meth:`for_model`)."""
        name = model if isinstance(model, str) else str(getattr(model, "name", ""))
        base = name.rstrip("/").split("/")[-1]
        for key in (name, base):
            if key in EDIT_DEFAULTS:
                return EDIT_DEFAULTS[key]
        low = name.lower()
        if "celebahq" in low or "ddpm-ema" in low:
            return EDIT_DEFAULTS["celebahq"]
        if "stable-diffusion" in low:
            return EDIT_DEFAULTS["stable-diffusion"]
        if isinstance(model, str):
            return EDIT_DEFAULTS["zoo-pixel"]
        if model.is_conditional:
            return EDIT_DEFAULTS["stable-diffusion" if model.is_latent else "zoo-text"]
        if model.sample_shape[-1] >= 256:
            return EDIT_DEFAULTS["celebahq"]
        return EDIT_DEFAULTS["zoo-pixel"]


# The zoo models invert with 50 steps: with 20, DDIM inversion of a held-out ``shapes`` image to
# t = 0.6 T reconstructed with RMS error 0.62 (50: 0.04). Official values (Park et al. 2023, their
# code) for CelebA-HQ and Stable Diffusion; the bundled models' values were tuned on them (gamma * N
# large enough for a visible edit at t = 0.6 T, small enough that the result stays on the data; see
# notebooks/editing.ipynb).
_ZOO_PIXEL = EditConfig(
    gamma=1.0,
    n_steps=8,
    n_steps_prompt=8,
    step_size=1.0,
    t_edits=(0.8, 0.6, 0.4),
    k=3,
    inversion_steps=50,
    sampling_steps=20,
    eta_below=None,
    source="tuned on the bundled 32x32 models (notebooks/editing.ipynb)",
)
_TABLE: dict[str, EditConfig] = {
    "zoo-pixel": _ZOO_PIXEL,
    "zoo-text": _ZOO_PIXEL.replace(
        n_steps_prompt=16, source="tuned on the bundled shapes-text model (notebooks/editing.ipynb)"
    ),
    "celebahq": EditConfig(
        gamma=0.1,
        n_steps=16,
        n_steps_prompt=16,
        step_size=1.0,
        t_edits=(1.0, 0.8, 0.6),
        k=2,
        inversion_steps=100,
        sampling_steps=100,
        eta_below=0.2,
        source="Park et al. 2023 (official code): google/ddpm-ema-celebahq-256",
    ),
    "stable-diffusion": EditConfig(
        gamma=1.0,
        n_steps=16,
        n_steps_prompt=64,
        step_size=1.0,
        t_edits=(0.7, 0.6),
        k=2,
        inversion_steps=100,
        sampling_steps=100,
        eta_below=None,
        source="Park et al. 2023 (official code): stable-diffusion-2-1-base",
    ),
}
for _name in ("disks", "shapes", "scenes", "textures"):
    _TABLE[_name] = _TABLE["zoo-pixel"]
_TABLE["shapes-text"] = _TABLE["zoo-text"]

#: Read-only table: name -> :class:`EditConfig` (model kinds ``zoo-pixel``, ``zoo-text``,
#: ``celebahq``, ``stable-diffusion`` and the bundled models' names). Use :meth:`EditConfig.for_model`.
EDIT_DEFAULTS: Mapping[str, EditConfig] = MappingProxyType(_TABLE)


def edit_defaults(
    model: "DiffusionModel | str", overrides: Mapping[str, Any] | None = None, *, parameter: str = "overrides"
) -> dict[str, Any]:
    """``EditConfig.for_model(model, overrides).to_dict()``: the settings for ``model`` as a fresh dict."""
    return EditConfig.for_model(model, overrides, parameter=parameter).to_dict()


def resolve_config(model: "DiffusionModel", config: EditConfig | None, overrides: dict[str, Any]) -> EditConfig:
    """``config`` (default ``EditConfig.for_model(model)``) with ``overrides`` applied and checked.

    An override of ``None`` keeps the config's value (as ``gamma=None`` meant "the model's default"),
    except ``eta_below=None``, which asks for a deterministic finish; ``eta_below="default"`` keeps it.
    """
    if config is None:
        config = EditConfig.for_model(model)
    elif not isinstance(config, EditConfig):
        raise TypeError(f"config must be an EditConfig or None, got {type(config).__name__}")
    changes = {}
    for name, value in overrides.items():
        if name == "eta_below":
            if isinstance(value, str):
                if value != "default":
                    raise ValueError(f"eta_below must be a fraction of T in [0, 1], None or 'default', got {value!r}")
                continue
        elif value is None:
            continue
        changes[name] = value
    return config.replace(**changes)


def guidance_conditioning(guidance_prompt: str, prompt: Any, basis_prompt: Any) -> Any:
    """The prompt of the guidance's noise predictions: ``basis_prompt`` for ``"edit"`` (when one is
    given), else the generation ``prompt`` (module doc)."""
    check_choice(guidance_prompt, "guidance_prompt", GUIDANCE_PROMPTS)
    return basis_prompt if guidance_prompt == "edit" and basis_prompt is not None else prompt
