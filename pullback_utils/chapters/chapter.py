"""What every chapter does first and last: check its parameters, set threads and folders, start the
clock, and collect the warnings raised while it runs; then save figures with captions and write its
claim records (and the warnings) into ``metrics.json``.

A chapter notebook starts with one call and ends with one::

    ch = pu.chapters.chapter.setup("coarse_to_fine", pu.chapters.parameters.check_parameters())
    ...
    ch.figure(fig, "c2f_psd", "Radially averaged power spectrum of the basis at each t ...")
    ch.claim("coarse_to_fine", result, model=..., baselines=..., controls=...)
    ch.finish(solver=sweep.solver_summary())

:func:`setup` validates every parameter it knows by name (:data:`RULES`, the same rule wherever a name
appears: ``times``, ``n_samples``, ``k``, ``tol``, ...) plus the chapter's own cross-parameter rules
(:data:`CHAPTER_RULES`), all before any model is loaded, and raises one ``ValueError`` naming the
parameter, the value and what would be valid. Layer names depend on the model: :meth:`Chapter.check_layers`
checks them right after the notebook loads it, before any basis.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from pullback_utils import _validate as V
from pullback_utils._validate import is_int
from pullback_utils.sweeps.bases import resolve_cache_dir

__all__ = ["Chapter", "setup", "check_values", "RULES", "CHAPTER_RULES", "LAYER_PARAMETERS", "ParameterValueError"]

#: Warnings that say nothing about a chapter's results and are not shown on its page: torch loads its
#: forward-AD decompositions with ``torch.jit.script`` on the first forward-mode product (torch 2.13
#: deprecates that call inside torch itself), and matplotlib notes that ``fig.tight_layout()`` replaced
#: a figure's layout engine (which is what the call is for).
HARMLESS_WARNINGS: tuple[tuple[str, type[Warning]], ...] = (
    (r"`torch\.jit\.script` is deprecated", DeprecationWarning),
    (r"The figure layout has changed to tight", UserWarning),
)
#: The first words of the note that lists a run's warnings on its page (``Chapter.finish``)
WARNINGS_NOTE = "Warnings during this run"


class ParameterValueError(ValueError):
    """A chapter parameter with a value the chapter cannot use."""


def _is_list(value: Any) -> bool:
    """A list or tuple (a string is not a list of anything here)."""
    return isinstance(value, (list, tuple))


def _times(value: Any, name: str, min_len: int = 2) -> list[float]:
    if not _is_list(value) or len(value) < min_len:
        raise ParameterValueError(
            f"{name} must be a list of at least {min_len} fractions of T in (0, 1], got {value!r}"
        )
    out = [V.check_fraction(v, f"{name}[{i}]", open_low=True) for i, v in enumerate(value)]
    if len(set(out)) != len(out):
        raise ParameterValueError(f"{name} must not repeat a time, got {value!r}")
    return sorted(out, reverse=True)


def _optional_int(minimum: int) -> Callable[[Any, str], Any]:
    return lambda v, n: None if v is None else V.check_int(v, n, minimum)


#: Rules by parameter name, applied wherever the name appears; each returns the canonical value.
RULES: dict[str, Callable[[Any, str], Any]] = {
    "model": lambda v, n: _model(v, n),
    "n_samples": lambda v, n: V.check_int(v, n, 2),
    "n_states": lambda v, n: V.check_int(v, n, 2),
    "n_control": lambda v, n: V.check_int(v, n, 2),  # the random-weight control is tested over its states too
    "selector_samples": lambda v, n: V.check_int(v, n, 2),  # frames of a sample selector (chapters.frames)
    "times": _times,
    "control_times": lambda v, n: _times(v, n, min_len=1),
    "k": lambda v, n: V.check_int(v, n, 1),
    "method": lambda v, n: V.check_choice(v, n, ("auto", "exact", "power", "randomized", "krylov")),
    "tol": lambda v, n: V.check_real(v, n, positive=True),
    "max_iters": _optional_int(1),
    "ddim_steps": lambda v, n: V.check_int(v, n, 1),
    "seed": lambda v, n: V.check_int(v, n, 0),
    "threads": lambda v, n: V.check_int(v, n, 1),
    "low_fraction": lambda v, n: V.check_fraction(v, n, open_low=True),
    "n_draws": lambda v, n: V.check_int(v, n, 99),
    "t": lambda v, n: V.check_fraction(v, n, open_low=True),
    "methods": lambda v, n: (
        [RULES["method"](m, f"{n}[{i}]") for i, m in enumerate(v)]
        if isinstance(v, list) and v
        else _bad(n, v, "a non-empty list of solver names")
    ),
    "power_max_iters": lambda v, n: V.check_int(v, n, 1),
    "reference_tol": lambda v, n: V.check_real(v, n, positive=True),
    "exact_reference": V.check_bool,
    "edit_times": lambda v, n: _times(v, n, min_len=1),
    "cluster": lambda v, n: _cluster(v, n),
    "exploration": V.check_bool,
    "gaussian_images": lambda v, n: V.check_int(v, n, 2),
    "gaussian_rank": lambda v, n: V.check_int(v, n, 1),
    "share_k": lambda v, n: V.check_int(v, n, 1),
    "sensitivity_samples": lambda v, n: V.check_int(v, n, 2),  # the sensitivity rows repeat the tests on them
    "control_samples": lambda v, n: V.check_int(v, n, 2),  # the control's spread is a mean over sample pairs
    "n_twonn": lambda v, n: V.check_int(v, n, 3),  # TwoNN needs each point's two nearest neighbours
    "rungs": lambda v, n: _rungs(v, n),
    "illustration": lambda v, n: _illustration(v, n),
    "text_model": lambda v, n: _text_model(v, n),
    "similarity": lambda v, n: V.check_choice(v, n, ("attributes", "sentence")),
    "dose_gammas": lambda v, n: _numbers(v, n, lambda g, m: V.check_real(g, m, positive=True), "positive numbers"),
    "dose_steps": lambda v, n: _numbers(v, n, lambda s, m: V.check_int(s, m, 1), "ints >= 1"),
    "sensitivity_tol": lambda v, n: V.check_real(v, n, positive=True),
    "cache_dir": lambda v, n: _cache_dir(v, n),
}


def _numbers(value: Any, name: str, check: Callable[[Any, str], Any], valid: str) -> list:
    if not _is_list(value) or not value:
        raise ParameterValueError(f"{name} must be a non-empty list of {valid}, got {value!r}")
    return [check(v, f"{name}[{i}]") for i, v in enumerate(value)]


def _rungs(value: Any, name: str) -> list[int]:
    """At least two distinct ladder rungs: the complexity trend is over rungs."""
    from pullback_utils.zoo.ladder import RUNGS, check_rung

    if not _is_list(value):
        raise ParameterValueError(f"{name} must be a list of ladder rungs from {list(RUNGS)}, got {value!r}")
    out = []
    for i, r in enumerate(value):
        try:
            out.append(check_rung(r, f"{name}[{i}]"))
        except ValueError as exc:
            raise ParameterValueError(str(exc)) from None
    if len(set(out)) < 2:
        raise ParameterValueError(
            f"{name} must hold at least 2 distinct rungs (the trend is over rungs), got {value!r}"
        )
    return list(dict.fromkeys(out))  # a repeated rung is one rung


def _illustration(value: Any, name: str) -> list[str]:
    """Zoo models shown beside the ladder with their data's TwoNN dimension: each must be a bundled model
    whose name is also its dataset's."""
    from pullback_utils.zoo.datasets import DATASETS
    from pullback_utils.zoo.registry import MODELS

    valid = [d for d in DATASETS if d in MODELS]
    if not _is_list(value):
        raise ParameterValueError(f"{name} must be a list of models from {valid} (may be empty), got {value!r}")
    bad = [v for v in value if v not in valid]
    if bad:
        raise ParameterValueError(
            f"{name}: {bad} not a zoo model whose dataset has the same name; valid: {valid} (may be empty)"
        )
    return list(value)


def _text_model(value: Any, name: str) -> str:
    if value == "":
        return value
    try:
        return _model(value, name)
    except ParameterValueError as exc:
        raise ParameterValueError(f"{exc} (or '' to skip the prompt section)") from None


def _prompt_pair(value: Any, name: str) -> list[str]:
    if not _is_list(value) or len(value) != 2 or not all(isinstance(v, str) and v.strip() for v in value):
        raise ParameterValueError(
            f"{name} must be two non-empty prompts [generation prompt, edit prompt], got {value!r}"
        )
    return list(value)


def _cache_dir(value: Any, name: str) -> Any:
    from pullback_utils.features.cache import resolve_cache_dir

    if value is not None and not isinstance(value, str):
        raise ParameterValueError(f"{name} must be a folder (a string; '' for no cache), got {value!r}")
    resolve_cache_dir(value, name)  # ValueError for an unset environment variable
    return value


def _model(value: Any, name: str) -> str:
    from pullback_utils.zoo.loading import ModelNotFoundError, check_model_reference

    try:
        return check_model_reference(value, name)
    except ModelNotFoundError as exc:
        raise ParameterValueError(str(exc)) from None


def _cluster(value: Any, name: str) -> str:
    from pullback_utils.sweeps.distributed import check_cluster

    if not isinstance(value, str):
        raise ParameterValueError(
            f"{name} must be a string: '' (in-process), 'local:N', 'auto' or 'ray://HOST:PORT', got {value!r}"
        )
    return check_cluster(value, name)


def _bad(name: str, value: Any, valid: str) -> Any:
    raise ParameterValueError(f"{name} must be {valid}, got {value!r}")


def _subset(of: str, name: str, size: int | None = None, at_least: int = 1) -> Callable[[dict], None]:
    """``name`` must be a subset of the times ``of``: exactly ``size`` times when given, else at least
    ``at_least``."""

    def rule(p: dict) -> None:
        sub = p.get(name)
        if sub is None:
            return
        vals = _times(sub, name, min_len=size or at_least)
        if size is not None and len(vals) != size:
            raise ParameterValueError(f"{name} must hold {size} times, got {sub!r}")
        missing = [t for t in vals if t not in p[of]]
        if missing:
            raise ParameterValueError(f"{name} must be among times={p[of]}; {missing} is not")
        p[name] = vals

    return rule


def _lag_design(p: dict) -> None:
    """Timestep discrepancy's gaps: ``anchor_time + lag`` must be a time in (0, 1] for every lag, and the
    smallest lag must be the sampler's own step ``1 / ddim_steps`` (the claim is about adjacent steps)."""
    if "lags" not in p or "anchor_time" not in p:
        return
    anchor = V.check_fraction(p["anchor_time"], "anchor_time", open_low=True)
    lags = p["lags"]
    if not _is_list(lags) or not lags:
        raise ParameterValueError(f"lags must be a non-empty list of gaps (fractions of T), got {lags!r}")
    out = sorted(V.check_real(g, f"lags[{i}]", positive=True) for i, g in enumerate(lags))
    step = 1.0 / int(p["ddim_steps"])
    if abs(out[0] - step) > 1e-9:
        raise ParameterValueError(
            f"lags must start at the sampler's own step 1/ddim_steps = {step:g} (the claim is "
            f"about adjacent steps), got smallest lag {out[0]!r}"
        )
    bad = [g for g in out if not 0 < anchor + g <= 1 + 1e-9]
    if bad:
        raise ParameterValueError(f"anchor_time + lag must lie in (0, 1]; lags {bad} do not with anchor_time={anchor}")
    p["anchor_time"], p["lags"] = anchor, [round(g, 9) for g in out]


#: The edit settings (:class:`~pullback_utils.editing.EditConfig` fields) each chapter applies from its
#: ``edit_settings`` parameter; the others would have no effect there and are refused.
EDIT_SETTINGS_APPLIED: dict[str, tuple[str, ...]] = {
    "coarse_to_fine": ("gamma", "n_steps"),  # its edits finish with the chapter's ddim_steps
    "editing": ("gamma", "n_steps", "n_steps_prompt", "step_size", "inversion_steps", "sampling_steps", "eta_below"),
}


def _edit_settings(chapter: str) -> Callable[[dict], None]:
    applied = EDIT_SETTINGS_APPLIED[chapter]

    def rule(p: dict) -> None:
        value = p.get("edit_settings")
        if value is None:
            return
        other = sorted(set(value) - set(applied)) if isinstance(value, dict) else []
        if other:
            raise ParameterValueError(
                f"edit_settings: {chapter} applies only {list(applied)} (EditConfig fields; its own parameters "
                f"set the rest, e.g. k and edit_times), got {other}"
            )
        from pullback_utils.editing import EditConfig

        try:  # the mapping and its values, checked as the chapter will apply them
            EditConfig.for_model("", value, parameter="edit_settings")
        except ValueError as exc:
            raise ParameterValueError(str(exc)) from None

    return rule


def _control_trend_times(p: dict) -> None:
    """Timestep discrepancy's random-weight control runs at ``control_times`` plus ``anchor_time`` and one
    sampler step later; its early-similarity trend uses those among ``times``, and a trend needs 2."""
    if not all(key in p for key in ("control_times", "times", "anchor_time", "ddim_steps")):
        return
    t_next = round(p["anchor_time"] + 1.0 / int(p["ddim_steps"]), 9)
    used = sorted(t for t in set(p["control_times"]) | {p["anchor_time"], t_next} if t in p["times"])
    if len(used) < 2:
        raise ParameterValueError(
            f"control_times: the control's trend uses its times among times={p['times']} (control_times plus "
            f"anchor_time={p['anchor_time']} and {t_next}, one step later) and needs 2, got {used}; add a time of "
            "times to control_times"
        )


def _zoo_dataset(p: dict) -> str | None:
    """The zoo dataset of the chapter's model (``None`` for a model outside the zoo: no training data)."""
    from types import SimpleNamespace

    from pullback_utils.zoo.registry import model_dataset

    return model_dataset(SimpleNamespace(name=p.get("model", ""))) if isinstance(p.get("model"), str) else None


def _share_rank(p: dict) -> None:
    """The Gaussian share is a basis's energy in the top ``share_k`` components the Gaussian keeps (fitted
    only for a model with zoo training data)."""
    if "share_k" not in p or "gaussian_rank" not in p or _zoo_dataset(p) is None:
        return
    if p["share_k"] > p["gaussian_rank"]:
        raise ParameterValueError(
            f"share_k must be at most gaussian_rank={p['gaussian_rank']} (the components the Gaussian control "
            f"keeps), got {p['share_k']}"
        )


def _dose_design(p: dict) -> None:
    """The dose-response test regresses over the doses gamma x N: it needs 2 distinct ones (run only for a
    model whose data have a renderer to judge the edits)."""
    from pullback_utils.editing.efficacy import has_renderer

    if "dose_gammas" in p and "dose_steps" in p and has_renderer(_zoo_dataset(p)):
        doses = {round(g * n, 9) for g in p["dose_gammas"] for n in p["dose_steps"]}
        if len(doses) < 2:
            raise ParameterValueError(
                f"dose_gammas x dose_steps must give at least 2 distinct doses gamma x N, got "
                f"dose_gammas={p['dose_gammas']}, dose_steps={p['dose_steps']}"
            )


def _prompt_similarity(p: dict) -> None:
    """With ``similarity = "attributes"`` every prompt must state caption attributes of the vocabulary, and
    the prompts must share different numbers of them (a constant similarity leaves the Mantel test nothing
    to rank)."""
    if p.get("similarity") != "attributes" or not isinstance(p.get("prompts"), list):
        return
    import numpy as np

    from pullback_utils.claims.statistics import attribute_similarity
    from pullback_utils.zoo.captions import caption_attributes

    attrs = []
    for i, prompt in enumerate(p["prompts"]):
        try:
            attrs.append(caption_attributes(prompt))
        except ValueError as exc:
            raise ParameterValueError(
                f"prompts[{i}] ({prompt!r}): {exc}; with similarity='attributes' the prompts use the captions' "
                "vocabulary (or set similarity='sentence')"
            ) from None
    if len(attrs) >= 2:
        sim = attribute_similarity(attrs)
        if len(np.unique(sim[~np.eye(len(attrs), dtype=bool)])) < 2:
            raise ParameterValueError(
                "prompts: every pair shares the same number of caption attributes, so the similarity the claim "
                "is tested against is constant; vary at least two attributes (e.g. colour and position), or set "
                "similarity='sentence'"
            )


def _text_prompts(p: dict) -> None:
    """The prompt section (run when ``text_model`` is set) generates under one prompt and edits towards another."""
    if p.get("text_model") and "prompt_pair" in p:
        p["prompt_pair"] = _prompt_pair(p["prompt_pair"], "prompt_pair")


def _control_states(p: dict) -> None:
    """The random-weight control runs on the first ``n_control`` of the ``n_states`` states."""
    if "n_control" in p and "n_states" in p and p["n_control"] > p["n_states"]:
        raise ParameterValueError(
            f"n_control must be at most n_states={p['n_states']} (the control runs on the first n_control states), "
            f"got {p['n_control']}"
        )


def _ground_truth(p: dict) -> None:
    from pullback_utils.ground_truth import check_design

    check_design(p)


#: Parameters that name a feature layer of the chapter's model (:meth:`Chapter.check_layers`).
LAYER_PARAMETERS: tuple[str, ...] = ("sensitivity_layer",)

#: Cross-parameter rules per chapter, run after :data:`RULES`.
CHAPTER_RULES: dict[str, list[Callable[[dict], None]]] = {
    "coarse_to_fine": [
        _subset("times", "edit_times", 2),
        _subset("times", "control_times", at_least=2),  # the control's shift is a trend over its times
        _share_rank,
        _edit_settings("coarse_to_fine"),
    ],
    "editing": [_edit_settings("editing"), _dose_design, _text_prompts],
    "prompt_influence": [_control_states, _prompt_similarity],
    "timestep_discrepancy": [
        _subset("times", "ablation_times", 2),
        _subset("times", "control_times"),
        _lag_design,
        _control_trend_times,
    ],
    "dataset_complexity": [_subset("times", "control_times")],
    "ground_truth": [_ground_truth],
}


@dataclass
class Chapter:
    """A running chapter: its name, checked parameters, output and cache folders, records and clock."""

    name: str
    params: dict[str, Any]
    output_dir: Path
    cache_dir: Path | None
    claims: dict[str, dict] = field(default_factory=dict)
    figures: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    quality: dict[str, str] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    cpu_started: float = field(default_factory=time.process_time)

    def __getattr__(self, item: str) -> Any:  # ch.times, ch.k, ... read the checked parameters
        params = self.__dict__.get("params", {})
        if item in params:
            return params[item]
        raise AttributeError(f"chapter {self.__dict__.get('name')!r} has no parameter or attribute {item!r}")

    @property
    def solver(self) -> dict[str, Any]:
        """The solver options of the parameters (``method``, ``tol``, ``max_iters``, ``seed``)."""
        return {k: self.params[k] for k in ("method", "tol", "max_iters", "seed") if k in self.params}

    def check_layers(self, model: Any) -> None:
        """Refuse a layer parameter (:data:`LAYER_PARAMETERS`) that names no layer of ``model``'s network,
        with :class:`ParameterValueError` naming the parameter and the valid layers. Layer names depend on
        the model, so the notebooks call this right after loading it, before any basis is computed."""
        from pullback_utils.features.feature_maps import resolve_layer

        for key in LAYER_PARAMETERS:
            if key in self.params:
                try:
                    resolve_layer(model.unet, self.params[key])
                except (TypeError, ValueError) as exc:
                    raise ParameterValueError(f"{self.name}: {key}: {exc}") from None

    def model_note(self) -> Any:
        """A short note for the page: the model(s) the chapter decides its claims on, each with a
        link to its card, its clean-sample share and its standing against the quality bar
        (:mod:`pullback_utils.zoo.quality`); shown as Markdown in a notebook, returned as text elsewhere."""
        from pullback_utils.zoo.quality import model_quality
        from pullback_utils.zoo.registry import LADDER_MODELS, is_bundled

        lines = []
        for model, sentence in self.quality.items():
            q = model_quality(model)
            clean = q.numbers.get("clean") if q is not None else None
            card = (
                f"[card](../../model_cards/{'ladder/' if model in LADDER_MODELS else ''}{model}.md)"
                if is_bundled(model)
                else "no card"
            )
            share = f", {100 * clean:.1f} % clean samples" if clean is not None else ""
            lines.append(f"`{model}` ({card}{share}): {sentence}")
        for model in _decided_models(self.name, self.params):
            if model not in self.quality:
                lines.append(f"`{model}`: not a zoo model, so no card and no quality bar")
        if not lines and isinstance(self.params.get("model"), str):  # a chapter that decides no claim
            return _markdown("**Model of this chapter**: " + _model_line(self.params["model"]) + ".")
        if not lines:
            return ""
        head = (
            "**Run as an exploration**: a model below misses the quality bar, so its records are marked "
            "as an exploration in the scorecard. "
            if self.params.get("exploration")
            else ""
        )
        text = (
            head
            + "**Models this chapter decides on**: "
            + ("; ".join(lines) if len(lines) < 4 else "\n\n" + "\n".join(f"- {x}" for x in lines))
        )
        try:
            from IPython.display import Markdown
        except ImportError:  # pragma: no cover
            return text
        return Markdown(text)

    def figure(self, fig: Any, name: str, caption: str) -> Any:
        """Save ``fig`` with its caption (:func:`pullback_utils.chapters.plotting.save_figure`); make the result
        the last expression of the cell to show the figure, numbered and captioned in the book."""
        from pullback_utils.chapters.plotting import save_figure

        saved = save_figure(fig, self.output_dir, name, caption)
        self.figures[name] = saved.caption
        return saved

    def glue(self, name: str, value: Any) -> None:
        """Keep ``value`` under ``name`` for the page's text, so that prose (an exercise's answer inside
        its dropdown) quotes this run's numbers instead of typed-in ones: ``{glue:text}`name:.3f``` for
        a number, ``{glue:md}`name:myst``` for a :class:`~IPython.display.Markdown` value. In the book
        (myst-nb installed) the value is stored in the cell's output without being shown; elsewhere
        (Colab, a plain Jupyter) it is shown as ``name = value``, so a reader still sees it."""
        try:
            from myst_nb import glue
        except ImportError:
            from IPython.display import Markdown, display

            shown = value.data if hasattr(value, "data") and isinstance(value.data, str) else value
            display(Markdown(f"`{name}` = {shown}"))
            return
        glue(name, value, display=False)

    def claim(self, record_id: str, result: Any, **kwargs: Any) -> dict:
        """Build the record of ``record_id`` (:func:`pullback_utils.claims.record`) and keep it."""
        from pullback_utils.claims import record

        if self.params.get("exploration"):  # a model that misses the quality bar, run on purpose
            kwargs.setdefault("exploration", True)
        model = kwargs.get("model")
        if model in self.quality:
            kwargs.setdefault("model_quality", self.quality[model])
        rec = record(record_id, result, **kwargs)
        self.claims[record_id] = rec
        return rec

    def _collect(
        self, message: Any, category: type, filename: str, lineno: int, file: Any = None, line: Any = None
    ) -> None:
        text = f"{category.__name__}: {message}"
        if text not in self.warnings:
            self.warnings.append(text)

    def finish(self, **sections: Any) -> None:
        """Write ``metrics.json`` (records, parameters, figure captions, the warnings raised during the
        run, run time, sections; ``models``: the clean share, quality bar and card of each model the chapter
        decides on) atomically to ``output_dir / "metrics.json"``, and show the warnings, if any, as a note on
        the page. Returns nothing, so that a cell ending in ``ch.finish(...)`` shows no value on the page."""
        from pullback_utils.claims import write_metrics

        if self.quality and "models" not in sections:  # what the findings box says about each model
            from pullback_utils.chapters.findings import model_facts

            sections["models"] = {m: model_facts(m).to_dict() for m in self.quality}
        write_metrics(
            self.output_dir,
            self.name,
            self.claims,
            self.params,
            figures=self.figures,
            warnings=self.warnings,
            runtime_seconds=time.perf_counter() - self.started,
            cpu_seconds=time.process_time() - self.cpu_started,
            **sections,
        )
        if self.warnings:
            try:
                from IPython.display import Markdown, display
            except ImportError:  # pragma: no cover - outside IPython the list is in metrics.json
                return
            display(
                Markdown(
                    f"```{{note}}\n{WARNINGS_NOTE} (also in `metrics.json`):\n\n"
                    + "\n".join(f"- {w}" for w in self.warnings)
                    + "\n```"
                )
            )


def _markdown(text: str) -> Any:
    try:
        from IPython.display import Markdown
    except ImportError:  # pragma: no cover
        return text
    return Markdown(text)


def _model_line(model: str) -> str:
    """``model`` with a link to its card (relative to a chapter's page), its clean-sample share and its
    standing against the quality bar (:func:`pullback_utils.chapters.findings.model_facts`)."""
    from pullback_utils.chapters.findings import model_facts

    f = model_facts(model)
    card = f"[card](../../{f.card}.md)" if f.card else "no card"
    share = f", {100 * f.clean:.1f} % clean samples" if f.clean is not None else ""
    quality = f.quality.replace("the bar", "the quality bar")
    return f"`{model}` ({card}{share}): {quality}"


def _decided_models(name: str, params: dict[str, Any]) -> list[str]:
    """The models on which chapter ``name`` decides a primary claim of the paper (its ``model``
    parameter, or the ladder's models of its ``rungs`` x ``seeds``); ``[]`` for other chapters."""
    from pullback_utils.claims.registry import CLAIMS

    if not any(c.kind == "paper" and c.chapter == name for c in CLAIMS):
        return []
    if "model" in params:
        return [params["model"]]
    if "rungs" in params and "seeds" in params:
        from pullback_utils.zoo.registry import ladder_name

        return [ladder_name(r, s) for r in params["rungs"] for s in params["seeds"]]
    return []


def _quality_gate(name: str, params: dict[str, Any]) -> dict[str, str]:
    """The quality bar (:mod:`pullback_utils.zoo.quality`) of every model the chapter decides a
    primary claim on: ``{model: sentence}``; :class:`~pullback_utils.zoo.quality.BarNotMet` for a
    model that misses it unless ``exploration`` is true. Text models are held to the attributes the
    chapter's ``prompts`` vary."""
    from pullback_utils.zoo.quality import require_bar, varied_attributes

    attributes = varied_attributes(params["prompts"]) if isinstance(params.get("prompts"), list) else None
    out = {}
    for model in _decided_models(name, params):
        q = require_bar(model, name, exploration=bool(params.get("exploration", False)), attributes=attributes)
        if q is not None:
            out[model] = q.sentence()
    return out


#: Parameters that count a subset of another parameter's units and run the same tests on them: the
#: sensitivity rows repeat a chapter's tests on its first ``sensitivity_samples`` samples.
_SUBSET_UNITS: dict[str, str] = {"sensitivity_samples": "n_samples"}


def _unit_minimum(name: str) -> Callable[[dict], None]:
    """The fewest units the chapter's tests run on (:func:`pullback_utils.claims.registry.minimum_units`),
    for the parameter that sets the units and for those that count a subset of them (:data:`_SUBSET_UNITS`)."""

    def rule(p: dict) -> None:
        from pullback_utils.claims.registry import minimum_units

        for param, least in minimum_units(name).items():
            for key in [param, *(sub for sub, of in _SUBSET_UNITS.items() if of == param)]:
                value = p.get(key)
                if is_int(value) and value < least:
                    raise ParameterValueError(
                        f"{key} must be >= {least} for {name} (its tests need at least {least} units), got {value}"
                    )

    return rule


def check_values(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with every value checked and in canonical form: the rule of each known name
    (:data:`RULES`), the chapter's cross-parameter rules (:data:`CHAPTER_RULES`) and the fewest units
    its tests need; :class:`ParameterValueError` naming the chapter and the parameter otherwise. Cheap
    (no model is loaded): the book runner calls it before a kernel starts, :func:`setup` again inside."""
    checked = dict(params)
    for key, rule in RULES.items():
        if key in checked:
            try:
                checked[key] = rule(checked[key], key)
            except ValueError as exc:
                raise ParameterValueError(f"{name}: {exc}") from None
    for rule in [*CHAPTER_RULES.get(name, []), _unit_minimum(name)]:
        try:
            rule(checked)
        except ValueError as exc:
            raise ParameterValueError(f"{name}: {exc}") from None
    _quality_gate(name, checked)  # a model that misses the quality bar, before any kernel or model
    return checked


def setup(name: str, params: dict[str, Any]) -> Chapter:
    """Check a chapter's parameters, set torch's thread count, create its output folder and cache.

    Args:
        name: the chapter (notebook) name.
        params: the parameter values (``pullback_utils.chapters.parameters.check_parameters()``); ``threads``,
            ``output_dir``, ``cache_dir`` and ``cluster`` (the default ``cluster`` of every basis sweep of
            the chapter: :func:`pullback_utils.sweeps.bases.bases_over`) are used here when present.

    Returns:
        :class:`Chapter` whose ``params`` hold the canonical values (e.g. ``times`` sorted from the
        earliest, ``t`` near ``T``, to the latest).
    """
    checked = check_values(name, params)
    quality = _quality_gate(name, checked)
    if "threads" in checked:
        torch.set_num_threads(checked["threads"])
    if "cluster" in checked:  # where this chapter's basis sweeps run (pullback_utils.sweeps.distributed)
        from pullback_utils.sweeps.distributed import set_default_cluster

        set_default_cluster(checked["cluster"])
    out = Path(str(checked.get("output_dir", "."))).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    ch = Chapter(
        name=name,
        params=checked,
        output_dir=out,
        cache_dir=resolve_cache_dir(checked.get("cache_dir")),
        quality=quality,
    )
    # warnings (a solver that stopped before its tolerance, ...) are collected and reported once, at the
    # end of the page and in metrics.json, instead of as stderr scattered over the cells
    warnings.simplefilter("default")
    for message, category in HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    warnings.showwarning = ch._collect
    return ch
