"""Claim records in words and tables, for chapters and the scorecard (Markdown, rendered by MyST)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pullback_utils.claims.registry import get, outcome_words

__all__ = ["fmt", "sentence", "table", "controls_showing_effect", "ALPHA_CONTROL", "CONTROL_SHARE"]

#: a control "shows the effect" when its own test is significant at this level on the claimed side ...
ALPHA_CONTROL = 0.05
#: ... and its effect reaches this share of the trained model's (both measured from the null)
CONTROL_SHARE = 0.5


def fmt(x: Any, digits: int = 3) -> str:
    """A number for prose: ``-`` for missing, scientific for tiny p-values."""
    if x is None:
        return "–"
    if isinstance(x, dict):
        x = x.get("estimate")
        if x is None:
            return "–"
    x = float(x)
    if x != 0 and abs(x) < 10**-digits:
        return f"{x:.1e}"
    return f"{x:.{digits}g}" if abs(x) >= 1000 else f"{x:.{digits}f}"


def controls_showing_effect(rec: dict) -> list[str]:
    """Names of the record's controls whose own test (a stored ``{"estimate", "p_value"}``) is significant
    (p < :data:`ALPHA_CONTROL`) on the claimed side of the null with at least :data:`CONTROL_SHARE` of the
    trained model's effect: the effect is largely there without training, so it is not evidence of
    something learned. (A significant but tiny control effect, e.g. 0.002 against 0.15, is not listed.)
    Controls stored as bare numbers carry no test: never listed."""
    null, side = float(rec.get("null", 0.0)), rec.get("direction")
    shown = []
    for name, value in (rec.get("controls") or {}).items():
        if not isinstance(value, dict) or value.get("p_value") is None or value.get("estimate") is None:
            continue
        est, p = float(value["estimate"]), float(value["p_value"])
        on_side = est > null if side == "greater" else est < null if side == "less" else False
        effect = abs(float(rec["estimate"]) - null)
        if p < ALPHA_CONTROL and on_side and abs(est - null) >= CONTROL_SHARE * effect:
            shown.append(name)
    return shown


def _p(rec: dict) -> str:
    p = rec.get("p_adjusted") if rec.get("p_adjusted") is not None else rec["p_value"]
    label = "Holm p" if rec.get("p_adjusted") is not None else "p"
    return f"{label} = {fmt(p, 3)}"


def sentence(name: str, rec: dict) -> str:
    """One sentence: verdict, estimate with interval, test, units, p, baselines and controls."""
    spec = get(name)
    verdict = outcome_words(spec, rec["verdict"])
    parts = [
        f"**{spec.title}** ({rec.get('model', '')}): {verdict}. {rec['statistic'][:1].upper() + rec['statistic'][1:]}: "
        f"{fmt(rec['estimate'])} [95% interval {fmt(rec['ci'][0])}, {fmt(rec['ci'][1])}], "
        f"{rec['test']} over {rec['n_units']} {rec['unit']}s, {_p(rec)}."
    ]
    if rec.get("n_needed"):
        parts.append(
            f"The design cannot reach p < 0.05: it needs at least {rec['n_needed']} "
            f"{rec.get('details', {}).get('n_needed_of', 'units')}."
        )
    if rec.get("power") is not None:
        need = rec.get("design_needed")
        parts.append(
            f"Power of this design at the effect seen: {fmt(rec['power'], 2)}"
            + (
                f"; power >= 0.8 needs {need['rungs']} rungs x {need['seeds']} seeds ({need['models']} models)."
                if isinstance(need, dict)
                else "."
            )
        )
    extras = [f"{k.replace('_', ' ')} {fmt(v)}" for k, v in rec.get("baselines", {}).items()]
    extras += [f"{k.replace('_', ' ')} (control) {fmt(v)}" for k, v in rec.get("controls", {}).items()]
    if extras:
        parts.append("Compared with: " + "; ".join(extras) + ".")
    for name in controls_showing_effect(rec):
        c = rec["controls"][name]
        parts.append(
            f"The {name.replace('_', ' ')} control shows the effect too ({fmt(c['estimate'])}, "
            f"p = {fmt(c['p_value'], 3)}): it is not evidence of something the model learned."
        )
    return " ".join(parts)


def table(records: dict[str, dict] | Iterable[tuple[str, dict]]) -> str:
    """A Markdown table of records: claim, model, estimate [interval], n, test, p, verdict."""
    items = records.items() if isinstance(records, dict) else records
    rows = ["| claim | model | estimate [95% interval] | n | test | p | verdict |", "|---|---|---|---|---|---|---|"]
    for name, rec in items:
        spec = get(name)
        p = rec.get("p_adjusted") if rec.get("p_adjusted") is not None else rec["p_value"]
        rows.append(
            f"| {spec.title} | {rec.get('model', '')} | {fmt(rec['estimate'])} [{fmt(rec['ci'][0])}, "
            f"{fmt(rec['ci'][1])}] | {rec['n_units']} {rec['unit']}s | {rec['test']} | {fmt(p, 3)} | "
            f"{outcome_words(spec, rec['verdict'])} |"
        )
    return "\n".join(rows)
