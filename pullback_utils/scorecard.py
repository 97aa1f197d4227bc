"""The claims scorecard: every claim of the paper, the statistic that tests it, and its verdict.

The analysis chapters each write a ``metrics.json`` (:func:`pullback_utils.analysis.write_metrics`)
whose ``"claims"`` maps a record name to a claim record (:func:`pullback_utils.analysis.claim`): the
statistic in words, its estimate and 95% bootstrap CI, the no-effect value ``null``, the direction the
paper predicts, and a baseline. This module reads those files -- it never holds a number of its own --
and lays them out claim by claim.

The verdict rule was written down before any result was seen (:func:`pullback_utils.stats.verdict`):

- **reproduced**: the 95% CI excludes ``null`` on the side the paper predicts;
- **not reproduced**: the CI excludes ``null`` on the other side;
- **inconclusive**: the CI contains ``null``;
- **not measured**: the chapter has not been run, its ``metrics.json`` is unreadable or invalid, or
  it has no record for this statistic (e.g. a text model that is not installed).

The scorecard recomputes every verdict from the record's CI with that rule instead of trusting the
verdict string stored next to it, and flags a disagreement. A claim has one *primary* record (the
x-side statistic on the chapter's model, the first name in :attr:`ClaimSpec.records`); further records
(the h-side version, a second statistic) are shown as support. The claim's verdict is its primary
record's verdict.

Shapes: none; everything here is bookkeeping over small JSON files.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from .stats import _GREATER, INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, verdict

__all__ = [
    "NOT_MEASURED",
    "VERDICTS",
    "ClaimSpec",
    "PAPER_CLAIMS",
    "EXTENSIONS",
    "ScoreRow",
    "MetricsError",
    "read_metrics",
    "collect",
    "claim_verdicts",
    "verdict_counts",
    "to_markdown",
    "describe",
    "summary_figure",
    "model_matrix",
    "model_matrix_figure",
    "scorecard_summary",
]

NOT_MEASURED = "not measured"
VERDICTS: tuple[str, ...] = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_MEASURED)
VERDICT_COLOURS: dict[str, str] = {
    REPRODUCED: "#2e7d32",
    NOT_REPRODUCED: "#c62828",
    INCONCLUSIVE: "#f9a825",
    NOT_MEASURED: "#9e9e9e",
}


@dataclass(frozen=True)
class ClaimSpec:
    """One claim of the paper and where the book measures it.

    Attributes:
        id: short identifier.
        title: a few words for the table.
        text: the claim in words (paper-notes §4).
        chapter: the chapter (notebook name) whose ``metrics.json`` holds the records.
        records: record names in that file's ``"claims"``; the first is the primary one. A name ending
            in ``*`` matches every record that starts with the rest (one row per match).
        per_model: ``(chapter, pattern)`` pairs of further support records from other chapters, typically
            the same statistic on every bundled model (``"coarse_to_fine@*"`` in ``dataset_complexity``).
    """

    id: str
    title: str
    text: str
    chapter: str
    records: tuple[str, ...]
    per_model: tuple[tuple[str, str], ...] = ()


PAPER_CLAIMS: tuple[ClaimSpec, ...] = (
    ClaimSpec("coarse_to_fine", "Coarse to fine",
              "Early in generation (t near T) the local basis is dominated by low frequencies, later by high "
              "ones; editing at large t changes coarse attributes, at small t details.",
              "coarse_to_fine", ("coarse_to_fine", "coarse_to_fine_edits"),
              per_model=(("dataset_complexity", "coarse_to_fine@*"),)),
    ClaimSpec("early_similarity", "Early cross-sample similarity",
              "At early timesteps different samples share similar tangent spaces; the cross-sample distance "
              "grows as t -> 0.",
              "timestep_discrepancy", ("early_cross_sample_similarity", "early_cross_sample_similarity_h"),
              per_model=(("dataset_complexity", "early_cross_sample_similarity@*"),)),
    ClaimSpec("timestep_discrepancy", "Timestep discrepancy",
              "The tangent spaces of one sample at different timesteps differ; the distance grows with |t - t'|.",
              "timestep_discrepancy", ("timestep_discrepancy", "timestep_discrepancy_h")),
    ClaimSpec("dataset_complexity", "Dataset complexity",
              "The simpler the training data, the more consistent the tangent spaces across samples.",
              "dataset_complexity", ("dataset_complexity", "dataset_complexity_h")),
    ClaimSpec("similar_prompts", "Similar prompts, similar tangents",
              "Similar prompts yield similar tangent spaces.",
              "prompt_influence", ("similar_prompts_similar_tangents", "similar_prompts_similar_tangents_h")),
    ClaimSpec("text_influence_fades", "Text influence fades",
              "The model depends less on the text at later timesteps: bases under different prompts get closer "
              "as t -> 0.",
              "prompt_influence", ("text_influence_fades", "text_influence_fades_h")),
    ClaimSpec("editing", "Guidance beats naive traversal",
              "Editing works once, at one timestep, without training; x-space guidance beats moving x_t naively.",
              "editing", ("editing_guidance_beats_naive",)),
)

#: Checks of this book that the paper does not make (reported after the paper's claims).
EXTENSIONS: tuple[ClaimSpec, ...] = (
    ClaimSpec("ground_truth_random", "Basis on the data manifold (vs random)",
              "On procedural data the top local latent basis lies in the true tangent space of the data manifold "
              "more than random directions do.",
              "ground_truth", ("ground_truth_above_random*",)),
    ClaimSpec("ground_truth_pca", "Basis on the data manifold (vs local PCA)",
              "... and more than the principal directions of nearby training images do.",
              "ground_truth", ("ground_truth_vs_pca*",)),
)


class MetricsError(ValueError):
    """A ``metrics.json`` that cannot be used (unreadable, not JSON, or claim records malformed)."""


@dataclass
class ScoreRow:
    """One line of the scorecard: a claim record (or the absence of one).

    ``estimate``/``low``/``high``/``null`` are ``None`` when the record is not measured; ``reason`` then
    says why. ``stored_verdict`` is what the chapter wrote; ``verdict`` is recomputed from the CI.
    """

    claim_id: str
    title: str
    chapter: str
    record: str
    primary: bool
    extension: bool
    verdict: str
    statistic: str = ""
    side: str = ""
    model: str = ""
    estimate: float | None = None
    low: float | None = None
    high: float | None = None
    null: float | None = None
    direction: str = ""
    baseline: Any = None
    stored_verdict: str | None = None
    reason: str = ""
    source: str = ""
    label: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def measured(self) -> bool:
        return self.verdict != NOT_MEASURED

    @property
    def verdict_mismatch(self) -> bool:
        """The chapter's stored verdict disagrees with the one recomputed from its CI."""
        return self.measured and self.stored_verdict is not None and self.stored_verdict != self.verdict


# --------------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------------
def _finite(value: Any, what: str) -> float:
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise MetricsError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(f):
        raise MetricsError(f"{what} must be finite, got {value!r}")
    return f


def _check_record(name: str, rec: Any) -> dict[str, Any]:
    """Validate one claim record; return the fields the scorecard uses (floats checked)."""
    if not isinstance(rec, dict):
        raise MetricsError(f"claims[{name!r}] must be an object, got {type(rec).__name__}")
    for key in ("estimate", "ci", "direction"):
        if key not in rec:
            raise MetricsError(f"claims[{name!r}] has no {key!r}")
    ci = rec["ci"]
    if not isinstance(ci, (list, tuple)) or len(ci) != 2:
        raise MetricsError(f"claims[{name!r}]['ci'] must be [low, high], got {ci!r}")
    low, high = _finite(ci[0], f"claims[{name!r}]['ci'][0]"), _finite(ci[1], f"claims[{name!r}]['ci'][1]")
    if low > high:
        raise MetricsError(f"claims[{name!r}]['ci'] must have low <= high, got {ci!r}")
    est = _finite(rec["estimate"], f"claims[{name!r}]['estimate']")
    null = _finite(rec.get("null", 0.0), f"claims[{name!r}]['null']")
    try:
        v = verdict(low, high, rec["direction"], null=null)
    except ValueError as exc:
        raise MetricsError(f"claims[{name!r}]: {exc}") from None
    return {"estimate": est, "low": low, "high": high, "null": null, "verdict": v}


def read_metrics(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate a chapter's ``metrics.json``.

    Returns the parsed object. Raises :class:`MetricsError` naming the file and the problem when it is
    missing, not JSON, not an object, has no ``"claims"`` object, or any record lacks a finite estimate,
    a CI ``[low, high]`` with ``low <= high``, or a valid direction.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise MetricsError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MetricsError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise MetricsError(f"{path}: expected a JSON object, got {type(data).__name__}")
    claims = data.get("claims")
    if not isinstance(claims, dict):
        raise MetricsError(f"{path}: no 'claims' object")
    try:
        for name, rec in claims.items():
            _check_record(name, rec)
    except MetricsError as exc:
        raise MetricsError(f"{path}: {exc}") from None
    return data


def _side(record: str) -> str:
    return "h" if record.endswith("_h") else "x"


def _model_of(rec: dict, data: dict) -> str:
    for source in (rec, data):
        for key in ("model", "models"):
            if key in source and source[key] not in (None, "", []):
                val = source[key]
                return ", ".join(map(str, val)) if isinstance(val, (list, tuple, dict)) else str(val)
    return ""


def _support_label(record: str, primary_pattern: str, chapter: str, spec_chapter: str) -> str:
    """Short name of a support record relative to its claim's primary record (``h-side``, ``edits``...)."""
    base = primary_pattern.rstrip("*")
    common = 0
    while common < min(len(record), len(base)) and record[common] == base[common]:
        common += 1
    suffix = record[common:].strip("_@") or record
    if chapter != spec_chapter:  # the same statistic measured by another chapter (its model: the model column)
        return f"from {chapter.replace('_', ' ')}"
    return "h-side" if suffix == "h" else suffix.replace("_", " ")


def _rows_for(spec: ClaimSpec, chapter: str, patterns: Sequence[str], data: dict | None, source: str, reason: str,
              *, primary_first: bool, extension: bool) -> list[ScoreRow]:
    """Rows of ``spec`` from one chapter's file: one per record matching ``patterns`` (in order), or a
    ``"not measured"`` row per pattern that matches nothing (with ``reason`` when the file is unusable)."""
    rows: list[ScoreRow] = []
    claims = (data or {}).get("claims", {})
    known = {"claim", "statistic", "estimate", "ci", "ci_level", "null", "direction", "baseline", "verdict"}
    for i, pattern in enumerate(patterns):
        primary = primary_first and i == 0
        if pattern.endswith("*"):
            names = sorted(n for n in claims if n.startswith(pattern[:-1]))
        else:
            names = [pattern] if pattern in claims else []
        if not names:
            why = reason or f"{chapter}/metrics.json has no record {pattern!r}"
            rows.append(ScoreRow(spec.id, spec.title, chapter, pattern, primary, extension, NOT_MEASURED,
                                 side=_side(pattern.rstrip("*")), reason=why, source=source,
                                 label=spec.title if primary else
                                 _support_label(pattern, spec.records[0], chapter, spec.chapter)))
            continue
        for j, name in enumerate(names):
            rec = claims[name]
            checked = _check_record(name, rec)
            rows.append(ScoreRow(
                spec.id, spec.title, chapter, name, primary and j == 0, extension, checked["verdict"],
                statistic=str(rec.get("statistic", "")), side=_side(name), model=_model_of(rec, data or {}),
                estimate=checked["estimate"], low=checked["low"], high=checked["high"], null=checked["null"],
                direction=str(rec["direction"]), baseline=rec.get("baseline"), stored_verdict=rec.get("verdict"),
                source=source, extra={k: v for k, v in rec.items() if k not in known},
                label=spec.title if primary and j == 0 else _support_label(name, spec.records[0], chapter, spec.chapter),
            ))
    return rows


def collect(
    results_dir: str | os.PathLike,
    specs: Sequence[ClaimSpec] = PAPER_CLAIMS,
    extensions: Sequence[ClaimSpec] = EXTENSIONS,
) -> list[ScoreRow]:
    """Every claim record of the chapters' ``metrics.json`` files under ``results_dir``.

    Args:
        results_dir: folder that holds ``<chapter>/metrics.json`` (the book's ``book/generated``).
        specs: the paper's claims (default :data:`PAPER_CLAIMS`).
        extensions: the book's own checks (default :data:`EXTENSIONS`).

    Returns:
        One :class:`ScoreRow` per record (in the order of the specs), and a ``"not measured"`` row, with
        its reason, for every record that is absent or whose file is missing or invalid. Never raises
        for a bad file: the scorecard shows the problem instead.

    Raises:
        ValueError: ``results_dir`` is not an existing folder.
    """
    root = Path(results_dir).expanduser()
    if not root.is_dir():
        raise ValueError(f"results_dir: {str(root)!r} is not a folder; pass the folder that holds "
                         "<chapter>/metrics.json (the book's book/generated)")
    cache: dict[str, tuple[dict | None, str]] = {}

    def load(chapter: str) -> tuple[dict | None, str]:
        if chapter not in cache:
            path = root / chapter / "metrics.json"
            if not path.exists():
                cache[chapter] = (None, f"chapter {chapter!r} has not been run (no {path.name})")
            else:
                try:
                    cache[chapter] = (read_metrics(path), "")
                except MetricsError as exc:
                    cache[chapter] = (None, f"invalid metrics: {exc}")
        return cache[chapter]

    rows: list[ScoreRow] = []
    for extension, group in ((False, specs), (True, extensions)):
        for spec in group:
            sources = [(spec.chapter, spec.records, True)] + [(ch, (pat,), False) for ch, pat in spec.per_model]
            for chapter, patterns, primary_first in sources:
                data, reason = load(chapter)
                rows += _rows_for(spec, chapter, patterns, data, str(root / chapter / "metrics.json"), reason,
                                  primary_first=primary_first, extension=extension)
    return rows


# --------------------------------------------------------------------------------------------------
# summaries
# --------------------------------------------------------------------------------------------------
def claim_verdicts(rows: Iterable[ScoreRow]) -> dict[str, str]:
    """Claim id -> the verdict of its primary record (in spec order)."""
    out: dict[str, str] = {}
    for r in rows:
        if r.primary and r.claim_id not in out:
            out[r.claim_id] = r.verdict
    return out


def verdict_counts(rows: Iterable[ScoreRow], *, primary_only: bool = True, extensions: bool = False) -> dict[str, int]:
    """How many claims (primary records) or records got each verdict."""
    counts = {v: 0 for v in VERDICTS}
    for r in rows:
        if (primary_only and not r.primary) or (r.extension and not extensions):
            continue
        counts[r.verdict] += 1
    return counts


def _fmt(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "–"
    if x != 0 and (abs(x) >= 1e4 or abs(x) < 10 ** -(digits)):
        return f"{x:.{digits - 1}e}"
    return f"{x:.{digits}f}"


def _baseline_text(b: Any, limit: int = 3) -> str:
    if b is None:
        return "–"
    if isinstance(b, dict):
        parts = []
        for k, v in list(b.items())[:limit]:
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                parts.append(f"{k} = {_fmt(float(v))}")
            elif isinstance(v, (list, tuple)) and len(v) <= 3 and all(isinstance(x, (int, float)) for x in v):
                parts.append(f"{k} = [{', '.join(_fmt(float(x)) for x in v)}]")
            else:
                parts.append(str(k))
        return "; ".join(parts)
    if isinstance(b, (int, float)) and not isinstance(b, bool):
        return _fmt(float(b))
    return str(b)


def _claimed(row: ScoreRow, digits: int = 3) -> str:
    """``"> null"`` or ``"< null"``: the side of the no-effect value that the claim predicts."""
    greater = str(row.direction).strip().lower() in _GREATER | {"1"}
    return f"{'>' if greater else '<'} {_fmt(row.null, digits)}"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(rows: Sequence[ScoreRow], *, extensions: bool = True, detailed: bool = False) -> str:
    """The scorecard as a Markdown table, one line per record (primary records in bold; support records
    named by their record). ``detailed`` adds the statistic and baseline columns (wide: the chapter
    puts those in :func:`describe` sentences instead)."""
    cols = ["claim", "model", "side", "estimate", "95% CI", "claimed", "verdict"]
    if detailed:
        cols[3:3] = ["statistic"]
        cols[-1:-1] = ["baseline"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        if r.extension and not extensions:
            continue
        name = f"**{r.title}**" if r.primary else f"↳ {r.label or r.record}"
        if r.measured:
            ci = f"[{_fmt(r.low)}, {_fmt(r.high)}]"
            claimed = _claimed(r)
            verdict_cell = r.verdict + (" (stored: " + str(r.stored_verdict) + ")" if r.verdict_mismatch else "")
            stat = r.statistic
        else:
            ci, claimed, verdict_cell, stat = "–", "–", f"{NOT_MEASURED}: {r.reason}", "–"
        model = f"{r.model.count(',') + 1} models" if "," in r.model else (r.model or "–")
        cells = [name, model, r.side, _fmt(r.estimate), ci, claimed,
                 f"**{verdict_cell}**" if r.primary else verdict_cell]
        if detailed:
            cells[3:3] = [stat]
            cells[-1:-1] = [_baseline_text(r.baseline)]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def describe(row: ScoreRow) -> str:
    """One sentence with the numbers of a row, for the chapter's text."""
    where = f"{row.chapter}" + (f", {row.model}" if row.model else "") + f", {row.side}-side"
    if not row.measured:
        return f"{row.title} ({where}): not measured -- {row.reason}."
    text = (f"{row.title} ({where}): **{row.verdict}** -- {row.statistic} = {_fmt(row.estimate)}, "
            f"95% CI [{_fmt(row.low)}, {_fmt(row.high)}]; the claim predicts {_claimed(row)}.")
    if row.baseline is not None:
        text += f" Baseline: {_baseline_text(row.baseline)}."
    if row.verdict_mismatch:
        text += f" (The chapter stored {row.stored_verdict!r}; the rule applied to its CI gives {row.verdict!r}.)"
    return text


def summary_figure(rows: Sequence[ScoreRow], *, title: str = "Claims scorecard"):
    """Small multiples: one panel per record, its estimate and 95% CI against the null value, coloured
    by verdict (each panel has its own scale: the statistics have different units).

    Returns the matplotlib figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    rows = list(rows)
    if not rows:
        raise ValueError("rows: nothing to plot (no claim records)")
    n = len(rows)
    fig, axes = plt.subplots(n, 1, figsize=(8.5, 0.5 * n + 0.9), squeeze=False, layout="constrained")
    for ax, r in zip(axes[:, 0], rows):
        if r.primary:
            label = f"{r.title} · {r.side}" + (f" · {r.model}" if r.model and "," not in r.model else "")
        else:
            label = f"↳ {r.label or r.record}" + (f" · {r.model}" if r.model and "," not in r.model else "")
        ax.set_yticks([0])
        ax.set_yticklabels([label], fontsize=7, fontweight="bold" if r.primary else "normal")
        ax.tick_params(axis="x", labelsize=6, pad=1)
        ax.tick_params(axis="y", length=0)
        for spine in ("top", "right", "left"):
            ax.spines[spine].set_visible(False)
        colour = VERDICT_COLOURS[r.verdict]
        ax.set_ylim(-1, 1)
        if not r.measured:
            ax.set_xticks([])
            ax.spines["bottom"].set_visible(False)
            ax.text(0.0, 0, f"not measured: {r.reason[:100]}", transform=ax.get_yaxis_transform(),
                    ha="left", va="center", fontsize=6.5, color="#616161", style="italic")
            continue
        ax.axvline(r.null, color="k", lw=0.8, ls="--")
        ax.plot([r.low, r.high], [0, 0], color=colour, lw=3, solid_capstyle="butt")
        ax.plot([r.estimate], [0], "o", color="k", ms=3.5)
        lo, hi = min(r.low, r.null, r.estimate), max(r.high, r.null, r.estimate)
        pad = 0.15 * (hi - lo) if hi > lo else 1.0
        ax.set_xlim(lo - pad, hi + pad)
        ax.text(1.0, 0.55, f"claimed {_claimed(r, 2)}", transform=ax.transAxes, fontsize=6,
                ha="right", va="bottom", color="#424242")
    handles = [Patch(color=VERDICT_COLOURS[v], label=v) for v in VERDICTS]
    fig.legend(handles=handles, loc="outside lower center", ncol=4, fontsize=7, frameon=False)
    fig.suptitle(title, fontsize=10)
    return fig


def model_matrix(rows: Sequence[ScoreRow]) -> tuple[list[str], list[str], dict[tuple[str, str], ScoreRow]]:
    """Claims x models: the x-side record of each claim on each single model (primary records first).

    Returns ``(claim titles, model names, {(title, model): row})``; rows of several models at once
    (dataset complexity) and h-side rows are left out.
    """
    cells: dict[tuple[str, str], ScoreRow] = {}
    titles: list[str] = []
    models: list[str] = []
    for r in sorted(rows, key=lambda r: not r.primary):  # a primary record wins its cell
        if not r.measured or r.side != "x" or not r.model or "," in r.model:
            continue
        if r.record.endswith("_edits"):  # a second statistic, not the claim's main one
            continue
        key = (r.title, r.model)
        if key not in cells:
            cells[key] = r
    for r in rows:  # order of appearance
        if (r.title, r.model) in cells:
            if r.title not in titles:
                titles.append(r.title)
            if r.model not in models:
                models.append(r.model)
    from .zoo.datasets import DATASETS  # the zoo's ladder of complexity first, other models after

    first = {m: i for i, m in enumerate(models)}
    models.sort(key=lambda m: (DATASETS.index(m) if m in DATASETS else len(DATASETS), first[m]))
    return titles, models, cells


def model_matrix_figure(rows: Sequence[ScoreRow]):
    """A grid of claims (rows) by models (columns), each cell coloured by its verdict and labelled with
    the estimate; empty where the claim was not measured on that model. Returns the figure."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch, Rectangle

    titles, models, cells = model_matrix(rows)
    if not cells:
        raise ValueError("rows: no single-model x-side record to place in a claims x models grid")
    fig, ax = plt.subplots(figsize=(1.6 * len(models) + 3.2, 0.45 * len(titles) + 1.3), layout="constrained")
    for i, title in enumerate(titles):
        for j, model in enumerate(models):
            r = cells.get((title, model))
            colour = VERDICT_COLOURS[r.verdict] if r else "white"
            ax.add_patch(Rectangle((j, i), 1, 1, facecolor=colour, edgecolor="white", lw=2, alpha=0.85 if r else 1))
            if r:
                ax.text(j + 0.5, i + 0.5, f"{_fmt(r.estimate, 2)}\n[{_fmt(r.low, 2)}, {_fmt(r.high, 2)}]",
                        ha="center", va="center", fontsize=6.5, color="white" if r.verdict != INCONCLUSIVE else "black")
            else:
                ax.text(j + 0.5, i + 0.5, "–", ha="center", va="center", fontsize=8, color="#9e9e9e")
    ax.set_xlim(0, len(models))
    ax.set_ylim(len(titles), 0)
    ax.set_xticks([j + 0.5 for j in range(len(models))], models, fontsize=8)
    ax.set_yticks([i + 0.5 for i in range(len(titles))], titles, fontsize=8)
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    handles = [Patch(color=VERDICT_COLOURS[v], label=v) for v in (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE)]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=7, frameon=False)
    return fig


def scorecard_summary(rows: Sequence[ScoreRow]) -> dict[str, Any]:
    """JSON-able summary for the scorecard's ``metrics.json``: the rule, the verdict of every claim and
    extension, the counts, and every row (with ``verdict_mismatch``)."""
    from .analysis import to_jsonable

    return {
        "rule": "reproduced if the 95% CI excludes the null value on the claimed side, not reproduced if it "
                "excludes it on the other side, else inconclusive (pullback_utils.stats.verdict)",
        "claim_verdicts": claim_verdicts(r for r in rows if not r.extension),
        "extension_verdicts": claim_verdicts(r for r in rows if r.extension),
        "counts": verdict_counts(rows),
        "rows": [to_jsonable({**asdict(r), "verdict_mismatch": r.verdict_mismatch}) for r in rows],
    }
