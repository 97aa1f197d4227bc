"""What every chapter does first and last: check its parameters, set threads and folders, start the
clock, and collect the warnings raised while it runs; then save figures with captions and write its
claim records (and the warnings) into ``metrics.json``.

A chapter notebook starts with one call and ends with one::

    ch = pu.chapter.setup("coarse_to_fine", pu.notebook.check_parameters())
    ...
    ch.figure(fig, "c2f_psd", "Radially averaged power spectrum of the basis at each t ...")
    ch.claim("coarse_to_fine", result, model=..., baselines=..., controls=...)
    ch.finish(solver=sweep.solver_summary())

:func:`setup` validates every parameter it knows by name (:data:`RULES`, the same rule wherever a name
appears: ``times``, ``n_samples``, ``k``, ``tol``, ...) plus the chapter's own cross-parameter rules
(:data:`CHAPTER_RULES`), all before any model is loaded, and raises one ``ValueError`` naming the
parameter, the value and what would be valid.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import validate as V
from .sweeps import resolve_cache_dir

__all__ = ["Chapter", "setup", "check_values", "RULES", "CHAPTER_RULES", "ParameterValueError"]


class ParameterValueError(ValueError):
    """A chapter parameter with a value the chapter cannot use."""


def _times(value: Any, name: str, min_len: int = 2) -> list[float]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)) or len(value) < min_len:
        raise ParameterValueError(f"{name} must be a list of at least {min_len} fractions of T in (0, 1], "
                                  f"got {value!r}")
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
    "methods": lambda v, n: [RULES["method"](m, f"{n}[{i}]") for i, m in enumerate(v)] if isinstance(v, list) and v
    else _bad(n, v, "a non-empty list of solver names"),
    "power_max_iters": lambda v, n: V.check_int(v, n, 1),
    "reference_tol": lambda v, n: V.check_real(v, n, positive=True),
    "exact_reference": V.check_bool,
    "edit_times": lambda v, n: _times(v, n, min_len=1),
    "cluster": lambda v, n: _cluster(v, n),
    "cache_dir": lambda v, n: _cache_dir(v, n),
}


def _cache_dir(value: Any, name: str) -> Any:
    from pullback_utils.cache import resolve_cache_dir

    if value is not None and not isinstance(value, str):
        raise ParameterValueError(f"{name} must be a folder (a string; '' for no cache), got {value!r}")
    resolve_cache_dir(value, name)  # ValueError for an unset environment variable
    return value


def _model(value: Any, name: str) -> str:
    from pullback_utils.loading import ModelNotFoundError, check_model_reference

    try:
        return check_model_reference(value, name)
    except ModelNotFoundError as exc:
        raise ParameterValueError(str(exc)) from None


def _cluster(value: Any, name: str) -> str:
    from .distributed import check_cluster

    if not isinstance(value, str):
        raise ParameterValueError(f"{name} must be a string: '' (in-process), 'local:N', 'auto' or "
                                  f"'ray://HOST:PORT', got {value!r}")
    return check_cluster(value, name)


def _bad(name: str, value: Any, valid: str) -> Any:
    raise ParameterValueError(f"{name} must be {valid}, got {value!r}")


def _subset(of: str, name: str, size: int | None = None) -> Callable[[dict], None]:
    def rule(p: dict) -> None:
        sub = p.get(name)
        if sub is None:
            return
        vals = _times(sub, name, min_len=size or 1)
        if size is not None and len(vals) != size:
            raise ParameterValueError(f"{name} must hold {size} times, got {sub!r}")
        missing = [t for t in vals if t not in p[of]]
        if missing:
            raise ParameterValueError(f"{name} must be among times={p[of]}; {missing} is not")
        p[name] = vals
    return rule


def _ground_truth(p: dict) -> None:
    from .ground_truth import check_design

    check_design(p)


#: Cross-parameter rules per chapter, run after :data:`RULES`.
CHAPTER_RULES: dict[str, list[Callable[[dict], None]]] = {
    "coarse_to_fine": [_subset("times", "edit_times", 2), _subset("times", "control_times")],
    "timestep_discrepancy": [_subset("times", "ablation_times", 2), _subset("times", "control_times")],
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

    def figure(self, fig: Any, name: str, caption: str) -> Any:
        """Save ``fig`` with its caption (:func:`pullback_utils.plotting.save_figure`); make the result
        the last expression of the cell to show the figure, numbered and captioned in the book."""
        from .plotting import save_figure

        saved = save_figure(fig, self.output_dir, name, caption)
        self.figures[name] = saved.caption
        return saved

    def claim(self, record_id: str, result: Any, **kwargs: Any) -> dict:
        """Build the record of ``record_id`` (:func:`pullback_utils.claims.record`) and keep it."""
        from .claims import record

        rec = record(record_id, result, **kwargs)
        self.claims[record_id] = rec
        return rec

    def _collect(self, message: Any, category: type, filename: str, lineno: int, file: Any = None,
                 line: Any = None) -> None:
        text = f"{category.__name__}: {message}"
        if text not in self.warnings:
            self.warnings.append(text)

    def finish(self, **sections: Any) -> Path:
        """Write ``metrics.json`` (records, parameters, figure captions, the warnings raised during the
        run, run time, sections) atomically, and show the warnings, if any, as a note on the page."""
        from .claims import write_metrics

        path = write_metrics(self.output_dir, self.name, self.claims, self.params, figures=self.figures,
                             warnings=self.warnings, runtime_seconds=time.perf_counter() - self.started,
                             cpu_seconds=time.process_time() - self.cpu_started, **sections)
        if self.warnings:
            try:
                from IPython.display import Markdown, display
            except ImportError:  # pragma: no cover - outside IPython the list is in metrics.json
                return path
            display(Markdown("```{note}\nWarnings during this run (also in `metrics.json`):\n\n"
                             + "\n".join(f"- {w}" for w in self.warnings) + "\n```"))
        return path


def _unit_minimum(name: str) -> Callable[[dict], None]:
    """The fewest units the chapter's tests run on (:func:`pullback_utils.claims.registry.minimum_units`)."""
    def rule(p: dict) -> None:
        from pullback_utils.claims.registry import minimum_units

        for param, least in minimum_units(name).items():
            value = p.get(param)
            if isinstance(value, int) and not isinstance(value, bool) and value < least:
                raise ParameterValueError(f"{param} must be >= {least} for {name} (its tests need at least {least} "
                                          f"units), got {value}")
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
    return checked


def setup(name: str, params: dict[str, Any]) -> Chapter:
    """Check a chapter's parameters, set torch's thread count, create its output folder and cache.

    Args:
        name: the chapter (notebook) name.
        params: the parameter values (``pullback_utils.notebook.check_parameters()``); ``threads``,
            ``output_dir``, ``cache_dir`` and ``cluster`` (the default ``cluster`` of every basis sweep of
            the chapter: :func:`pullback_utils.sweeps.bases_over`) are used here when present.

    Returns:
        :class:`Chapter` whose ``params`` hold the canonical values (e.g. ``times`` sorted from the
        earliest, ``t`` near ``T``, to the latest).
    """
    checked = check_values(name, params)
    if "threads" in checked:
        torch.set_num_threads(checked["threads"])
    if "cluster" in checked:  # where this chapter's basis sweeps run (pullback_utils.distributed)
        from .distributed import set_default_cluster

        set_default_cluster(checked["cluster"])
    out = Path(str(checked.get("output_dir", "."))).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    ch = Chapter(name=name, params=checked, output_dir=out, cache_dir=resolve_cache_dir(checked.get("cache_dir")))
    # warnings (a solver that stopped before its tolerance, ...) are collected and reported once, at the
    # end of the page and in metrics.json, instead of as stderr scattered over the cells
    warnings.simplefilter("default")
    warnings.showwarning = ch._collect
    return ch
