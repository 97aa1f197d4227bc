"""Claim records in words and tables, for chapters and the scorecard (Markdown, rendered by MyST)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .registry import get, outcome_words

__all__ = ["fmt", "sentence", "table"]


def fmt(x: Any, digits: int = 3) -> str:
    """A number for prose: ``-`` for missing, scientific for tiny p-values."""
    if x is None:
        return "–"
    if isinstance(x, dict):
        x = x.get("estimate")
        if x is None:
            return "–"
    x = float(x)
    if x != 0 and abs(x) < 10 ** -digits:
        return f"{x:.1e}"
    return f"{x:.{digits}g}" if abs(x) >= 1000 else f"{x:.{digits}f}"


def _p(rec: dict) -> str:
    p = rec.get("p_adjusted") if rec.get("p_adjusted") is not None else rec["p_value"]
    label = "Holm p" if rec.get("p_adjusted") is not None else "p"
    return f"{label} = {fmt(p, 3)}"


def sentence(name: str, rec: dict) -> str:
    """One sentence: verdict, estimate with interval, test, units, p, baselines and controls."""
    spec = get(name)
    verdict = outcome_words(spec, rec["verdict"])
    parts = [f"**{spec.title}** ({rec.get('model', '')}): {verdict}. {rec['statistic'][:1].upper() + rec['statistic'][1:]}: "
             f"{fmt(rec['estimate'])} [95% interval {fmt(rec['ci'][0])}, {fmt(rec['ci'][1])}], "
             f"{rec['test']} over {rec['n_units']} {rec['unit']}s, {_p(rec)}."]
    if rec.get("n_needed"):
        parts.append(f"The design cannot reach p < 0.05: it needs at least {rec['n_needed']} "
                     f"{rec.get('details', {}).get('n_needed_of', 'units')}.")
    extras = [f"{k.replace('_', ' ')} {fmt(v)}" for k, v in rec.get("baselines", {}).items()]
    extras += [f"{k.replace('_', ' ')} (control) {fmt(v)}" for k, v in rec.get("controls", {}).items()]
    if extras:
        parts.append("Compared with: " + "; ".join(extras) + ".")
    return " ".join(parts)


def table(records: dict[str, dict] | Iterable[tuple[str, dict]]) -> str:
    """A Markdown table of records: claim, model, estimate [interval], n, test, p, verdict."""
    items = records.items() if isinstance(records, dict) else records
    rows = ["| claim | model | estimate [95% interval] | n | test | p | verdict |", "|---|---|---|---|---|---|---|"]
    for name, rec in items:
        spec = get(name)
        p = rec.get("p_adjusted") if rec.get("p_adjusted") is not None else rec["p_value"]
        rows.append(f"| {spec.title} | {rec.get('model', '')} | {fmt(rec['estimate'])} [{fmt(rec['ci'][0])}, "
                    f"{fmt(rec['ci'][1])}] | {rec['n_units']} {rec['unit']}s | {rec['test']} | {fmt(p, 3)} | "
                    f"{outcome_words(spec, rec['verdict'])} |")
    return "\n".join(rows)
