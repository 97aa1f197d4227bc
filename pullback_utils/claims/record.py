"""Claim records and the ``metrics.json`` contract (documented here, validated on every read).

A chapter's ``metrics.json`` is ``{"notebook", "claims": {record name: record}, "params": {...},
...sections}``. Every record carries:

=================  ================================================================================
``claim``          the registry id (:mod:`pullback_utils.claims.registry`); ``wording``, ``kind``
``statistic``      the statistic in words
``model``          the model it was measured on
``n_units``        number of independent units; ``unit`` what a unit is (sample, prompt-state, model)
``test``           the test that decided it; ``p_value`` its two-sided p; ``min_p`` the smallest p
                   the design can attain; ``p_adjusted`` Holm-adjusted p across the primary claims
                   (``null`` in a chapter's file: the scorecard computes it over the whole family)
``estimate``       the statistic; ``ci`` ``[low, high]`` its 95% interval; ``null``; ``direction``
``baselines``      name -> value of the same statistic (or level) under each matched null
``controls``       name -> value of the same statistic on a control (``random_weights``)
``verdict``        :func:`verdict_of` the above: :func:`pullback_utils.analysis.inference.decide`, except that a claim
                   whose control shows the effect (:func:`~pullback_utils.claims.report.controls_showing_effect`)
                   is :data:`NOT_LEARNED`, never "reproduced"; ``n_needed`` when underpowered
``power``          optional: the design's simulated power at the effect seen (with ``design_needed``);
                   a non-significant record with power < 0.8 is *underpowered*
``sensitivity``    optional: rows ``{setting, estimate, p_value, verdict}`` (``min_p``, ``n_units``), the
                   same claim under other analysis choices (:mod:`pullback_utils.claims.sensitivity`)
``equivalence``    optional: the TOST beside the claim's own test (:func:`equivalence`): ``margin`` (the
                   registry's), ``p_tost``, ``ci90``, ``min_p``, ``equivalent`` (= ``p_tost`` and ``min_p``
                   below 0.05)
=================  ================================================================================

:func:`read_metrics` rejects a file whose record lacks any of these, has a non-finite estimate, an
interval with ``low > high``, a p-value outside ``[0, 1]``, or a stored verdict that the rule does not
give for its numbers (in the record or in one of its ``sensitivity`` rows).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from pullback_utils._io import JSONReadError, read_json, to_jsonable, write_json
from pullback_utils.analysis import inference as inf
from pullback_utils.claims.registry import NOT_LEARNED, get
from pullback_utils.claims.report import controls_showing_effect
from pullback_utils.claims.sensitivity import check_rows


def verdict_of(
    p_value: float,
    estimate: float,
    direction: str,
    *,
    null: float,
    min_p: float,
    controls: dict | None = None,
    power: float | None = None,
) -> str:
    """The verdict rule (:func:`pullback_utils.analysis.inference.decide`) plus the control rule: "reproduced" with a
    control that shows the effect becomes :data:`NOT_LEARNED`."""
    v = inf.decide(p_value, estimate, direction, null=null, min_p=min_p, power=power)
    if v == inf.REPRODUCED and controls_showing_effect(
        {"null": null, "direction": direction, "estimate": estimate, "controls": controls or {}}
    ):
        return NOT_LEARNED
    return v


__all__ = [
    "MetricsError",
    "record",
    "equivalence",
    "check_record",
    "write_metrics",
    "read_metrics",
    "VERDICTS",
    "NOT_LEARNED",
    "verdict_of",
]

#: The verdict of a claim significant on the claimed side whose random-weight (or other) control shows the
#: effect too: the effect is there without training, so it is neither coloured nor counted as reproduced.
VERDICTS = (inf.REPRODUCED, NOT_LEARNED, inf.NOT_REPRODUCED, inf.INCONCLUSIVE, inf.UNDERPOWERED)
_REQUIRED = (
    "claim",
    "statistic",
    "n_units",
    "unit",
    "test",
    "p_value",
    "min_p",
    "p_adjusted",
    "estimate",
    "ci",
    "null",
    "direction",
    "baselines",
    "controls",
    "verdict",
)


class MetricsError(ValueError):
    """A ``metrics.json`` (or a record) that breaks the contract."""


def _number(value: Any) -> float | None:
    if isinstance(value, dict):
        value = value.get("estimate")
    if value is None:
        return None
    return float(value)


def record(
    record_id: str,
    result: inf.TestResult,
    *,
    model: str,
    baselines: dict[str, Any] | None = None,
    controls: dict[str, Any] | None = None,
    statistic: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The record of claim ``record_id`` (``"<id>"`` or ``"<id>@<model>"``) from its test result.

    Args:
        result: the :class:`~pullback_utils.analysis.inference.TestResult` of the claim's statistic.
        model: the model measured.
        baselines, controls: name -> value (a number, or a ``TestResult``/dict with an ``estimate``); the
            names the registry requires must all be present (``None`` allowed only with a reason in
            ``extra["missing"]``).
        statistic: overrides the registry's wording of the statistic (e.g. with the actual times).
        **extra: further JSON-able numbers.
    """
    spec = get(record_id)
    baselines, controls = dict(baselines or {}), dict(controls or {})
    missing = [f"baseline {b!r}" for b in spec.baselines if b not in baselines]
    missing += [f"control {c!r}" for c in spec.controls if c not in controls]
    if missing:
        raise ValueError(
            f"record {record_id!r} needs {', '.join(missing)} (the registry requires "
            f"baselines {list(spec.baselines)} and controls {list(spec.controls)})"
        )
    controls = {k: _value(v) for k, v in controls.items()}
    verdict = verdict_of(
        result.p_value,
        result.estimate,
        spec.direction,
        null=spec.null,
        min_p=result.min_p,
        controls=controls,
        power=extra.get("power"),
    )
    rec = {
        "claim": spec.id,
        "kind": spec.kind,
        "wording": spec.wording,
        "statistic": statistic or spec.statistic,
        "model": model,
        "n_units": result.n_units,
        "unit": result.unit,
        "test": result.test,
        "p_value": result.p_value,
        "min_p": result.min_p,
        "p_adjusted": None,
        "estimate": result.estimate,
        "ci": list(result.ci),
        "ci_level": 0.95,
        "null": spec.null,
        "direction": spec.direction,
        "baselines": {k: _value(v) for k, v in baselines.items()},
        "controls": controls,
        "verdict": verdict,
    }
    if verdict == inf.UNDERPOWERED:
        rec["n_needed"] = result.extra.get("n_needed")
    rec["details"] = {k: v for k, v in result.extra.items() if k != "n_needed"}
    rec.update(extra)
    return to_jsonable(rec)


def equivalence(record_id: str, values: Any, *, seed: int = 0) -> dict[str, Any]:
    """The equivalence test of claim ``record_id``'s per-unit ``values``
    (:func:`~pullback_utils.analysis.inference.tost_test`) within the registry's ``margin`` (fixed there
    before the run): the record's ``equivalence`` field."""
    spec = get(record_id)
    if spec.margin is None:
        raise ValueError(f"claim {spec.id!r} has no equivalence margin in the registry")
    eq = inf.tost_test(values, spec.margin, seed=seed)
    return {
        "margin": spec.margin,
        "p_tost": eq.extra["p_tost"],
        "ci90": [float(c) for c in eq.ci],
        "min_p": eq.min_p,
        "equivalent": bool(eq.extra["equivalent"]),
    }


def _check_equivalence(name: str, eq: Any) -> None:
    if not isinstance(eq, dict) or any(k not in eq for k in ("margin", "p_tost", "min_p", "equivalent")):
        raise MetricsError(
            f"claims[{name!r}]['equivalence'] must be an object with margin, p_tost, min_p and "
            f"equivalent (claims.record.equivalence), got {eq!r}"
        )
    p, min_p = _finite(eq["p_tost"], "p_tost"), _finite(eq["min_p"], "min_p")
    if not (0 <= p <= 1 and 0 <= min_p <= 1) or _finite(eq["margin"], "margin") <= 0:
        raise MetricsError(
            f"claims[{name!r}]['equivalence']: p_tost and min_p must lie in [0, 1] and the margin be > 0, got {eq!r}"
        )
    if bool(eq["equivalent"]) != (p < inf.ALPHA and min_p < inf.ALPHA):
        raise MetricsError(
            f"claims[{name!r}]['equivalence']: 'equivalent' = {eq['equivalent']} is not what "
            f"p_tost = {p} and min_p = {min_p} give"
        )


def _value(v: Any) -> Any:
    if isinstance(v, inf.TestResult):
        return {"estimate": v.estimate, "ci": list(v.ci), "p_value": v.p_value}
    return v


def _finite(value: Any, what: str) -> float:
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise MetricsError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(f):
        raise MetricsError(f"{what} must be finite, got {value!r}")
    return f


def check_record(name: str, rec: Any) -> dict[str, Any]:
    """Validate one record against the contract; return it with the verdict recomputed (``verdict``)
    and the stored one (``stored_verdict``)."""
    if not isinstance(rec, dict):
        raise MetricsError(f"claims[{name!r}] must be an object, got {type(rec).__name__}")
    absent = [k for k in _REQUIRED if k not in rec]
    if absent:
        raise MetricsError(f"claims[{name!r}] lacks {absent} (see pullback_utils.claims.record)")
    ci = rec["ci"]
    if not isinstance(ci, (list, tuple)) or len(ci) != 2:
        raise MetricsError(f"claims[{name!r}]['ci'] must be [low, high], got {ci!r}")
    low, high = (_finite(c, f"claims[{name!r}]['ci'][{i}]") for i, c in enumerate(ci))
    if low > high:
        raise MetricsError(f"claims[{name!r}]['ci'] must have low <= high, got {ci!r}")
    est = _finite(rec["estimate"], f"claims[{name!r}]['estimate']")
    p = _finite(rec["p_value"], f"claims[{name!r}]['p_value']")
    min_p = _finite(rec["min_p"], f"claims[{name!r}]['min_p']")
    if not (0 <= p <= 1 and 0 <= min_p <= 1):
        raise MetricsError(f"claims[{name!r}]: p_value and min_p must lie in [0, 1], got {p}, {min_p}")
    if not isinstance(rec["n_units"], int) or rec["n_units"] < 1:
        raise MetricsError(f"claims[{name!r}]['n_units'] must be an int >= 1, got {rec['n_units']!r}")
    for key in ("baselines", "controls"):
        if not isinstance(rec[key], dict):
            raise MetricsError(f"claims[{name!r}][{key!r}] must be an object name -> value")
    if rec["p_adjusted"] is not None:  # the verdict follows the adjusted p where there is one (scorecard)
        p = _finite(rec["p_adjusted"], f"claims[{name!r}]['p_adjusted']")
        if not 0 <= p <= 1:
            raise MetricsError(f"claims[{name!r}]: p_adjusted must lie in [0, 1], got {p}")
    try:
        v = verdict_of(
            p,
            est,
            rec["direction"],
            null=_finite(rec["null"], "null"),
            min_p=min_p,
            controls=rec["controls"],
            power=rec.get("power"),
        )
        if rec.get("equivalence") is not None:
            _check_equivalence(name, rec["equivalence"])
        if rec.get("sensitivity") is not None:
            check_rows(
                rec["sensitivity"],
                direction=rec["direction"],
                null=float(rec["null"]),
                where=f"claims[{name!r}]['sensitivity']",
            )
    except ValueError as exc:
        raise MetricsError(f"claims[{name!r}]: {exc}") from None
    return {**rec, "stored_verdict": rec["verdict"], "verdict": v, "ci": [low, high]}


def write_metrics(
    output_dir: str | os.PathLike, notebook: str, claims: dict[str, dict], params: dict, **sections: Any
) -> Path:
    """Validate every record and write ``<output_dir>/metrics.json`` atomically; returns its path."""
    for name, rec in claims.items():
        check_record(name, rec)
    data = {"notebook": notebook, "claims": claims, "params": params, **sections}
    return write_json(Path(output_dir) / "metrics.json", data)


def read_metrics(path: str | os.PathLike) -> dict[str, Any]:
    """Read a ``metrics.json`` and validate every record; :class:`MetricsError` naming file and problem."""
    try:
        data = read_json(path)
    except JSONReadError as exc:
        raise MetricsError(str(exc)) from None
    claims = data.get("claims")
    if not isinstance(claims, dict):
        raise MetricsError(f"{path}: no 'claims' object")
    try:
        data["claims"] = {name: check_record(name, rec) for name, rec in claims.items()}
    except MetricsError as exc:
        raise MetricsError(f"{path}: {exc}") from None
    return data
