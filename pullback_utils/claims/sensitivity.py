"""Sensitivity of a claim's verdict to the analysis choices: rows, their validation, the stable/fragile rule.

A record may carry ``sensitivity``: a list of rows ``{"setting", "estimate", "p_value", "verdict"}`` (plus
``min_p`` and ``n_units`` when known), one per alternative analysis of the *same* claim on the *same*
units: another basis size ``k`` (top-k' of the cached top-k bases), another low-band cutoff, other time
endpoints, another feature layer, another solver tolerance. ``setting`` reads ``"<factor>=<value>"``
(e.g. ``"k=4"``, ``"cutoff=1/8 Nyquist"``, ``"times=0.7 vs 0.1"``); the factor is the part before ``=``.

Each row's verdict is the claim's own rule (:func:`pullback_utils.analysis.inference.decide`) on that row's
unadjusted p-value; it is compared with the record's *unadjusted* verdict (Holm adjusts the family of
primary claims, not the alternatives of one claim, which are not independent tests).

**Stable / fragile** (:func:`stability`): a claim is *stable* when every row gives the record's own
(unadjusted) verdict, *fragile* when at least one row gives another verdict (e.g. a sign that flips
with ``k``), and *not assessed* without rows. A fragile claim's verdict depends on a choice the paper
does not fix, so it is reported with the rows that disagree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from pullback_utils.analysis import inference as inf
from pullback_utils.claims.registry import get

__all__ = [
    "STABLE",
    "FRAGILE",
    "NOT_ASSESSED",
    "row",
    "check_rows",
    "stability",
    "factors",
    "smaller_k",
    "endpoint_pairs",
    "subset_times",
    "rows_table",
]

STABLE = "stable"
FRAGILE = "fragile"
NOT_ASSESSED = "not assessed"


def row(record_id: str, setting: str, result: inf.TestResult, **extra: Any) -> dict[str, Any]:
    """One sensitivity row of claim ``record_id`` from the test result of one alternative analysis.

    Args:
        record_id: the claim (``"<id>"`` or ``"<id>@<model>"``): its direction and null decide the verdict.
        setting: ``"<factor>=<value>"``, e.g. ``"k=4"``.
        result: the claim's test on that alternative (:class:`~pullback_utils.analysis.inference.TestResult`).
        **extra: further JSON-able numbers (e.g. ``control`` at that setting).
    """
    if not isinstance(setting, str) or "=" not in setting or not setting.split("=", 1)[0].strip():
        raise ValueError(f"setting must read '<factor>=<value>' (e.g. 'k=4'), got {setting!r}")
    spec = get(record_id)
    verdict = inf.decide(result.p_value, result.estimate, spec.direction, null=spec.null, min_p=result.min_p)
    return {
        "setting": setting,
        "estimate": float(result.estimate),
        "p_value": float(result.p_value),
        "min_p": float(result.min_p),
        "n_units": int(result.n_units),
        "verdict": verdict,
        **extra,
    }


def _finite(value: Any, what: str) -> float:
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(f):
        raise ValueError(f"{what} must be finite, got {value!r}")
    return f


def check_rows(rows: Any, *, direction: str, null: float, where: str = "sensitivity") -> list[dict]:
    """Validate a record's ``sensitivity`` list; ``ValueError`` naming the row and the problem.

    Every row needs a ``setting`` ``"<factor>=<value>"``, a finite ``estimate``, ``p_value`` (and
    ``min_p`` when given) in ``[0, 1]`` and the ``verdict`` the rule gives for its numbers."""
    if not isinstance(rows, list):
        raise ValueError(
            f"{where} must be a list of rows {{setting, estimate, p_value, verdict}}, got {type(rows).__name__}"
        )
    for i, r in enumerate(rows):
        at = f"{where}[{i}]"
        if not isinstance(r, dict):
            raise ValueError(f"{at} must be an object, got {type(r).__name__}")
        absent = [k for k in ("setting", "estimate", "p_value", "verdict") if k not in r]
        if absent:
            raise ValueError(f"{at} lacks {absent}")
        s = r["setting"]
        if not isinstance(s, str) or "=" not in s or not s.split("=", 1)[0].strip():
            raise ValueError(f"{at}['setting'] must read '<factor>=<value>', got {s!r}")
        est = _finite(r["estimate"], f"{at}['estimate']")
        p = _finite(r["p_value"], f"{at}['p_value']")
        min_p = _finite(r.get("min_p", 0.0), f"{at}['min_p']")
        if not (0 <= p <= 1 and 0 <= min_p <= 1):
            raise ValueError(f"{at}: p_value and min_p must lie in [0, 1], got {p}, {min_p}")
        want = inf.decide(p, est, direction, null=null, min_p=min_p)
        if r["verdict"] != want:
            raise ValueError(f"{at} ({s}): stored verdict {r['verdict']!r} but the rule gives {want!r}")
    return rows


def factors(rows: Sequence[dict]) -> list[str]:
    """The factors varied (``"k"``, ``"cutoff"``, ...), in order of first appearance."""
    out: list[str] = []
    for r in rows:
        f = r["setting"].split("=", 1)[0].strip()
        if f not in out:
            out.append(f)
    return out


def stability(rec: dict) -> tuple[str, list[str]]:
    """``(mark, disagreeing settings)`` of a record: :data:`STABLE`, :data:`FRAGILE` or :data:`NOT_ASSESSED`.

    The reference verdict is the record's unadjusted one: the rule on its own ``p_value``."""
    rows = rec.get("sensitivity") or []
    if not rows:
        return NOT_ASSESSED, []
    own = inf.decide(
        float(rec["p_value"]),
        float(rec["estimate"]),
        rec["direction"],
        null=float(rec["null"]),
        min_p=float(rec["min_p"]),
    )  # rows carry no power: compare like with like
    off = [r["setting"] for r in rows if r["verdict"] != own]
    return (FRAGILE if off else STABLE), off


def smaller_k(k: int) -> list[int]:
    """The basis sizes below ``k`` that a sensitivity analysis reads from the top-k bases: ``k/4`` and
    ``k/2`` (at least 1), so that with ``k`` itself there are three values (two when ``k = 2``)."""
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    return sorted({max(1, k // 4), max(1, k // 2)} - {k})


def endpoint_pairs(times: Sequence[float]) -> list[tuple[float, float]]:
    """Alternative ``(early, late)`` endpoints to the extreme pair ``(max t, min t)``: one step in from
    either end (``(t_2nd, t_min)`` and ``(t_max, t_2nd-smallest)``); none with fewer than 3 times."""
    t = sorted({float(x) for x in times}, reverse=True)
    if len(t) < 3:
        return []
    return list(dict.fromkeys([(t[1], t[-1]), (t[0], t[-2])]))


def subset_times(times: Sequence[float], keep: Sequence[float]) -> list[int]:
    """Indices of ``keep`` in ``times`` (``ValueError`` naming a missing one)."""
    tl = [float(x) for x in times]
    missing = [x for x in keep if float(x) not in tl]
    if missing:
        raise ValueError(f"times {missing} are not among the measured times {tl}")
    return [tl.index(float(x)) for x in keep]


def rows_table(rows: Sequence[dict]) -> str:
    """A Markdown table of sensitivity rows: setting, estimate, p, verdict."""
    from pullback_utils.claims.report import fmt

    out = ["| setting | estimate | p | verdict |", "|---|---|---|---|"]
    out += [f"| {r['setting']} | {fmt(r['estimate'])} | {fmt(r['p_value'], 3)} | {r['verdict']} |" for r in rows]
    return "\n".join(out)
