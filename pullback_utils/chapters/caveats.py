"""The caveats of a claim record, strongest first, in a sentence and in a few words (for a table cell).

1. the random-weight control shows the effect too: the verdict is "not attributable to learning";
2. a matched null that carries its own test (a baseline stored as ``{"estimate", "p_value"}``: the same
   statistic on spectrum-matched random bases, on the Gaussian control, ...) reaches the effect: "below
   the matched baseline" (only for an effect on the claimed side; a baseline stored as a bare number is a
   level or a ceiling, not a null to beat, and is not compared);
3. the sensitivity rows give another verdict (:func:`pullback_utils.claims.sensitivity.stability`): "fragile";
4. the model misses the quality bar and the record was run as an exploration.

A *row* is a :class:`pullback_utils.chapters.scorecard.ScoreRow` (``spec``, ``verdict``, ``rec``, ``model``,
``measured``); the scorecard's tables and figures and the chapters' findings use the same words.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pullback_utils.analysis import inference as inf
from pullback_utils.claims import NOT_LEARNED
from pullback_utils.claims.report import controls_showing_effect, fmt
from pullback_utils.claims.sensitivity import FRAGILE, stability

__all__ = [
    "caveats",
    "short_caveats",
    "caveat_pairs",
    "quality_words",
    "FRAGILE_WORD",
    "EXPLORATION_WORD",
    "BELOW_BASELINE_WORD",
]

FRAGILE_WORD = "fragile"
EXPLORATION_WORD = "exploration"
BELOW_BASELINE_WORD = "below the matched baseline"
# how a baseline or control is named in a sentence (other names: underscores become spaces)
_NAMES = {
    "spectrum_matched": "spectrum-matched random bases",
    "gaussian": "the Gaussian control (the optimal linear denoiser of the data)",
    "random_weights": "random-weight",
    "gaussian_denoiser": "the Gaussian denoiser",
}


def _name(key: str) -> str:
    return _NAMES.get(key, key.replace("_", " "))


def _short_name(key: str) -> str:
    return "Gaussian control" if key == "gaussian" else key.replace("_", " ")


def _side(row: Any, value: float) -> float:
    """``value`` measured from the claim's null towards its claimed side (positive: on the claimed side)."""
    return (value - row.spec.null) * inf.direction_sign(row.spec.direction)


def caveat_pairs(row: Any) -> list[tuple[str, str]]:
    """``[(long, short)]``: each caveat of the row in a sentence and in a few words, strongest first."""
    if not row.measured:
        return []
    rec, out = row.rec, []
    claimed = row.verdict in (inf.REPRODUCED, NOT_LEARNED)
    for name in controls_showing_effect(rec) if row.verdict == NOT_LEARNED else []:
        c = rec["controls"][name]
        out.append(
            (
                f"{NOT_LEARNED}: the {_name(name)} control shows it too ({fmt(c['estimate'])}, "
                f"p = {fmt(c['p_value'], 3)})",
                "",
            )
        )  # the verdict's own words already say it
    if claimed:
        effect = _side(row, float(rec["estimate"]))
        for name, b in (rec.get("baselines") or {}).items():
            if (
                isinstance(b, Mapping)
                and b.get("estimate") is not None
                and b.get("p_value") is not None
                and _side(row, float(b["estimate"])) >= effect
            ):
                out.append(
                    (
                        f"{BELOW_BASELINE_WORD}: {_name(name)} give{'s' if name == 'gaussian' else ''} "
                        f"{fmt(b['estimate'])}, at least the model's {fmt(rec['estimate'])}",
                        f"{BELOW_BASELINE_WORD} ({_short_name(name)} {fmt(b['estimate'])})",
                    )
                )
    mark, off = stability(rec)
    if mark == FRAGILE:
        shown = ", ".join(off[:2]) + (f" and {len(off) - 2} more" if len(off) > 2 else "")
        out.append(
            (
                f"{FRAGILE_WORD}: another verdict with {shown} (sensitivity table of the scorecard)",
                f"{FRAGILE_WORD} ({', '.join(off[:2])}{f', +{len(off) - 2}' if len(off) > 2 else ''})",
            )
        )
    if rec.get("exploration"):
        why = str(rec.get("model_quality") or "")
        out.append(
            (
                f"{EXPLORATION_WORD}: `{row.model}` {quality_words(why)}"
                if why.startswith("misses")
                else f"{EXPLORATION_WORD}: run on `{row.model}`, with models that miss the quality bar",
                f"{EXPLORATION_WORD} ({row.model} below the quality bar)"
                if why.startswith("misses")
                else f"{EXPLORATION_WORD} (models below the quality bar)",
            )
        )
    return out


def caveats(row: Any) -> list[str]:
    """The record's caveats in sentences, strongest first (see the module docstring); ``[]`` for none or
    a row not measured."""
    return [long for long, _ in caveat_pairs(row)]


def short_caveats(row: Any) -> list[str]:
    """The same in a few words each, for a table cell (the verdict "not attributable to learning" names
    its own caveat, so it adds none here)."""
    return [short for _, short in caveat_pairs(row) if short]


def quality_words(sentence: str) -> str:
    """A quality sentence (:meth:`pullback_utils.zoo.quality.Quality.sentence`) naming the quality bar."""
    return sentence.replace("meets the bar", "meets the quality bar").replace(
        "misses the bar", "misses the quality bar"
    )
