"""The claims scorecard: every claim of the registry, its record, its test and its verdict.

The chapters write claim records (:mod:`pullback_utils.claims.record`) into their ``metrics.json``; this
module reads them -- it never holds a number of its own -- through the same registry
(:mod:`pullback_utils.claims.registry`), and

- validates every record (:func:`pullback_utils.claims.read_metrics`); a missing chapter, a broken file
  or an absent record becomes a *not measured* row with its reason, and never hides the others;
- adjusts the p-values of the paper's primary claims (the family :data:`~pullback_utils.claims.PRIMARY`,
  each decided on its primary model, fixed in the registry) with Holm's method
  (:func:`pullback_utils.analysis.inference.holm`), and recomputes their verdicts from the adjusted p-values;
- adjusts the support records of each claim (its ``parent``'s support records and the claim's per-model
  copies ``"<id>@<model>"``) with Holm within that claim, and recomputes their verdicts likewise;
- recomputes every other verdict from its record's numbers and flags a stored verdict that disagrees;
- tabulates each primary claim's ``sensitivity`` rows (the same claim under other ``k``, cutoffs, time
  endpoints, layers, tolerances, computed by its chapter from the bases it already has) and marks the
  claim *stable* or *fragile* (:func:`pullback_utils.claims.sensitivity.stability`).

A verdict on the claimed side whose random-weight control shows the effect is "not attributable to
learning" (:data:`pullback_utils.claims.NOT_LEARNED`): its own colour, its own count, never reproduced.
Support records and the book's extensions are reported beside the claims, never in the primary family,
and an extension is described in its own words (e.g. "below local PCA"), never as "not reproduced".
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

from pullback_utils.analysis import inference as inf
from pullback_utils.claims import (
    CLAIMS,
    NOT_LEARNED,
    PRIMARY,
    ClaimSpec,
    MetricsError,
    get,
    outcome_words,
    read_metrics,
    verdict_of,
)
from pullback_utils.claims.report import controls_showing_effect, fmt
from pullback_utils.claims.sensitivity import NOT_ASSESSED, factors, stability

__all__ = [
    "NOT_MEASURED",
    "ScoreRow",
    "collect",
    "primary_rows",
    "verdict_counts",
    "to_markdown",
    "describe",
    "details_markdown",
    "tables",
    "VERDICT_COLOURS",
    "ABOVE",
    "BELOW",
    "PHONE_CONTENT_PX",
    "summary_figure",
    "model_matrix",
    "model_matrix_figure",
    "model_matrix_key",
    "figure_words",
    "scorecard_records",
    "stability_marks",
    "sensitivity_table",
]

NOT_MEASURED = "not measured"
#: An extension's outcome on the claimed side / the other side ("above local PCA" / "below local PCA"):
#: its own colours, so that one colour means one word (red is only ever "not reproduced").
ABOVE, BELOW = "extension: above its reference", "extension: below its reference"
#: One colour per verdict word, the same in the tables' words, Fig. "scorecard" and the model matrix.
VERDICT_COLOURS = {
    inf.REPRODUCED: "#2e7d32",
    NOT_LEARNED: "#4fc3f7",
    inf.NOT_REPRODUCED: "#c62828",
    inf.INCONCLUSIVE: "#f9a825",
    inf.UNDERPOWERED: "#6a1b9a",
    NOT_MEASURED: "#9e9e9e",
    ABOVE: "#00838f",
    BELOW: "#8d6e63",
}
#: the figures' legend: the words of the tables
MATRIX_LEGEND = {
    inf.REPRODUCED: inf.REPRODUCED,
    NOT_LEARNED: NOT_LEARNED,
    inf.NOT_REPRODUCED: inf.NOT_REPRODUCED,
    inf.INCONCLUSIVE: inf.INCONCLUSIVE,
    inf.UNDERPOWERED: inf.UNDERPOWERED,
    ABOVE: ABOVE,
    BELOW: BELOW,
}
#: the content column of a page on a 390 px phone (the figures' text must stay >= 9 pt there too)
PHONE_CONTENT_PX = 358
#: hatching of a record measured on a model that misses the quality bar (an exploration)
EXPLORATION_HATCH = "///"


@dataclass
class ScoreRow:
    """One line of the scorecard: a record, or the absence of one (``reason`` says why)."""

    spec: ClaimSpec
    record: str
    verdict: str
    rec: dict = field(default_factory=dict)
    reason: str = ""
    stored_verdict: str | None = None  # set only when the stored verdict differs from the recomputed one

    @property
    def measured(self) -> bool:
        return self.verdict != NOT_MEASURED

    @property
    def primary(self) -> bool:
        return self.spec.kind == "paper" and self.record == self.spec.id

    @property
    def model(self) -> str:
        return str(self.rec.get("model", self.record.split("@", 1)[1] if "@" in self.record else ""))

    @property
    def words(self) -> str:
        return outcome_words(self.spec, self.verdict) if self.measured else NOT_MEASURED

    @property
    def verdict_mismatch(self) -> bool:
        return self.measured and self.stored_verdict is not None

    @property
    def colour_key(self) -> str:
        """The key of :data:`VERDICT_COLOURS`: the verdict, or for an extension :data:`ABOVE` / :data:`BELOW`."""
        if self.spec.kind == "extension" and self.verdict in (inf.REPRODUCED, inf.NOT_REPRODUCED):
            return ABOVE if self.verdict == inf.REPRODUCED else BELOW
        return self.verdict

    @property
    def below_bar(self) -> bool:
        """Measured on a model that misses the quality bar: as the record says (``model_quality``), or, for
        a record without that word (the extensions' chapters do not gate their models), as the model's
        ``quality.json`` says now (:func:`pullback_utils.zoo.quality.model_quality`)."""
        quality = str(self.rec.get("model_quality") or "")
        if quality:
            return quality.startswith("misses")
        if self.rec.get("exploration"):
            return True
        return bool(self.model) and "," not in self.model and _misses_bar(self.model)


@lru_cache(maxsize=64)
def _misses_bar(model: str) -> bool:
    from pullback_utils.zoo.quality import model_quality

    q = model_quality(model)
    return q is not None and q.measured and not q.meets


def _read_all(results_dir: Path, chapters: set[str]) -> dict[str, tuple[dict | None, str]]:
    out = {}
    for ch in sorted(chapters):
        path = results_dir / ch / "metrics.json"
        if not path.is_file():
            out[ch] = (None, f"chapter {ch!r} has not been run ({path} does not exist)")
            continue
        try:
            out[ch] = (read_metrics(path), "")
        except MetricsError as exc:
            out[ch] = (None, f"unusable metrics file: {exc}")
    return out


def collect(results_dir: str | os.PathLike, *, extensions: bool = True, support: bool = True) -> list[ScoreRow]:
    """Rows for every registered claim (in registry order), the primary claims Holm-adjusted.

    Args:
        results_dir: folder holding ``<chapter>/metrics.json``.
        extensions, support: include the book's extensions / the support records.
    """
    root = Path(results_dir)
    if not root.is_dir():
        raise ValueError(
            f"results_dir: {str(root)!r} is not a folder; pass the folder that holds "
            "<chapter>/metrics.json (run `python -m pullback_utils.book run` to create it)"
        )
    specs = [
        c
        for c in CLAIMS
        if c.kind == "paper" or (support and c.kind == "support") or (extensions and c.kind == "extension")
    ]
    others = {p.parent.name for p in root.glob("*/metrics.json") if p.parent.name != "scorecard"}
    files = _read_all(root, {c.chapter for c in specs} | others)
    rows: list[ScoreRow] = []
    for spec in specs:
        data, reason = files[spec.chapter]
        found = [(n, r) for n, r in (data["claims"] if data else {}).items() if n == spec.id]
        for ch in sorted(files):  # per-model copies ("<id>@<model>") may come from any chapter
            d = files[ch][0]
            found += [(n, r) for n, r in (d["claims"] if d else {}).items() if n.startswith(spec.id + "@")]
        if not any(n == spec.id for n, _ in found) if spec.kind == "paper" else not found:
            why = reason or f"{spec.chapter}/metrics.json has no record {spec.id!r}"
            rows.append(ScoreRow(spec, spec.id, NOT_MEASURED, reason=why))
        for n, rec in found:
            # a stored verdict that the record's own numbers do not give (checked before any Holm adjustment)
            stored = rec.get("stored_verdict")
            rows.append(
                ScoreRow(
                    spec,
                    n,
                    rec["verdict"],
                    rec=dict(rec),
                    stored_verdict=stored if stored is not None and stored != rec["verdict"] else None,
                )
            )
    _adjust(rows)
    return rows


def _support_family(rows: list[ScoreRow], claim: str) -> list[ScoreRow]:
    return [
        r
        for r in rows
        if r.measured and not r.primary and (r.spec.parent == claim or (r.spec.kind == "paper" and r.spec.id == claim))
    ]


def _adjust(rows: list[ScoreRow]) -> None:
    """Holm across the measured primary claims, and within each claim across its support records; verdicts
    recomputed from the adjusted p-values (with the control rule, :func:`pullback_utils.claims.verdict_of`)."""
    families = [[r for r in rows if r.primary and r.measured]]
    families += [_support_family(rows, c) for c in PRIMARY]
    for fam in families:
        if not fam:
            continue
        adj = inf.holm([float(r.rec["p_value"]) for r in fam])
        for r, p in zip(fam, adj):
            r.rec["p_adjusted"] = p
            r.verdict = verdict_of(
                p,
                float(r.rec["estimate"]),
                r.spec.direction,
                null=r.spec.null,
                min_p=float(r.rec["min_p"]),
                controls=r.rec.get("controls"),
                power=r.rec.get("power"),
            )
            r.rec["verdict"] = r.verdict


def primary_rows(rows: Sequence[ScoreRow]) -> list[ScoreRow]:
    """One row per paper claim: its primary record (or its not-measured row)."""
    return [r for r in rows if r.spec.kind == "paper" and r.record == r.spec.id]


def verdict_counts(rows: Sequence[ScoreRow]) -> dict[str, int]:
    """How many of the paper's claims have each verdict."""
    out = {
        v: 0
        for v in (inf.REPRODUCED, NOT_LEARNED, inf.NOT_REPRODUCED, inf.INCONCLUSIVE, inf.UNDERPOWERED, NOT_MEASURED)
    }
    for r in primary_rows(rows):
        out[r.verdict] += 1
    return out


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _value(v: Any) -> str:
    return fmt(v.get("estimate") if isinstance(v, dict) else v)


def to_markdown(rows: Sequence[ScoreRow], *, kinds: Sequence[str] = ("paper",), primary: bool | None = None) -> str:
    """The verdict table, readable at a glance: claim, verdict with its caveats (not attributable to
    learning, below the matched baseline, fragile, exploration; :func:`pullback_utils.chapters.findings.caveats`),
    estimate [95% interval]; one row per record of the given kinds (``primary``: only the primary records
    (True), only the others, e.g. per-model ones (False), or all (None)). The test's details are in
    :func:`details_markdown`."""
    from pullback_utils.chapters.caveats import short_caveats

    lines = ["| claim | verdict | estimate [95% interval] |", "|---|---|---|"]
    for r in _selected(rows, kinds, primary):
        title = f"**{r.spec.title}**" if r.primary else f"{r.spec.title} ({r.record})"
        if not r.measured:
            lines.append(f"| {title} | {NOT_MEASURED}: {_cell(r.reason)} | – |")
            continue
        rec = r.rec
        flag = " (stored verdict differs)" if r.verdict_mismatch else ""
        need = f" (needs {rec.get('n_needed')})" if rec.get("n_needed") else ""
        shown = controls_showing_effect(rec)
        need += f" (shown by the {', '.join(c.replace('_', '-') for c in shown)} control)" if shown else ""
        cav = short_caveats(r)
        more = ("; " + "; ".join(cav)) if cav else ""
        lines.append(
            f"| {title} | **{r.words}**{need}{more}{flag} | {fmt(rec['estimate'])} [{fmt(rec['ci'][0])}, "
            f"{fmt(rec['ci'][1])}] |"
        )
    return "\n".join(lines)


def _selected(rows: Sequence[ScoreRow], kinds: Sequence[str], primary: bool | None) -> list[ScoreRow]:
    return [r for r in rows if r.spec.kind in kinds and (primary is None or r.primary == primary)]


def details_markdown(
    rows: Sequence[ScoreRow], *, kinds: Sequence[str] = ("paper",), primary: bool | None = None
) -> str:
    """The details of the same records: claim, model, n and unit, test, p, Holm p (across the primary
    claims; for a support record, within its claim), baselines, controls."""
    lines = ["| claim | model | n | test | p | Holm p | baselines | controls |", "|---|---|---|---|---|---|---|---|"]
    for r in _selected(rows, kinds, primary):
        title = r.spec.title if r.primary else f"{r.spec.title} ({r.record})"
        if not r.measured:
            lines.append(f"| {title} | – | – | – | – | – | – | – |")
            continue
        rec = r.rec
        base = "; ".join(f"{k.replace('_', ' ')} {_value(v)}" for k, v in rec["baselines"].items()) or "–"
        ctrl = "; ".join(f"{k.replace('_', ' ')} {_value(v)}" for k, v in rec["controls"].items()) or "–"
        holm = fmt(rec["p_adjusted"], 3) if rec.get("p_adjusted") is not None else "–"
        lines.append(
            f"| {title} | {_cell(r.model)} | {rec['n_units']} {rec['unit']}s | {_cell(rec['test'])} | "
            f"{fmt(rec['p_value'], 3)} | {holm} | {_cell(base)} | {_cell(ctrl)} |"
        )
    return "\n".join(lines)


def tables(
    rows: Sequence[ScoreRow],
    *,
    kinds: Sequence[str] = ("paper",),
    primary: bool | None = None,
    details: str = "Details: model, n, test, p, baselines, controls",
) -> str:
    """:func:`to_markdown` followed by :func:`details_markdown` in a collapsed dropdown titled ``details``."""
    return (
        to_markdown(rows, kinds=kinds, primary=primary)
        + f"\n\n````{{admonition}} {details}\n:class: dropdown\n\n"
        + details_markdown(rows, kinds=kinds, primary=primary)
        + "\n````\n"
    )


def exploration_note(rec: dict) -> str:
    """``" (exploration: <model> misses the quality bar)"`` for a record run on a model that misses the
    bar on purpose (:mod:`pullback_utils.zoo.quality`; the chapter's ``exploration`` parameter), else ``""``."""
    if not rec.get("exploration"):
        return ""
    return f" (exploration: {rec.get('model')} {rec.get('model_quality') or 'misses the quality bar'})"


def describe(row: ScoreRow) -> str:
    """The row in one sentence (:func:`pullback_utils.claims.sentence`), or why it is not measured."""
    from pullback_utils.claims import sentence

    if not row.measured:
        return f"**{row.spec.title}**: not measured ({row.reason})."
    return sentence(row.record, row.rec)


#: width (inches) and text size (points) of the scorecard's figures: narrow enough that a phone shows them at
#: nearly full size, so that their smallest text stays >= 9 pt in the phone's content column
PHONE_FIGURE_WIDTH_IN = 4.0
PHONE_FONT_PT = 13.0


def _phone_rc() -> dict[str, Any]:
    return {
        "font.size": PHONE_FONT_PT,
        "axes.labelsize": PHONE_FONT_PT,
        "xtick.labelsize": PHONE_FONT_PT,
        "ytick.labelsize": PHONE_FONT_PT,
        "legend.fontsize": PHONE_FONT_PT,
        "axes.titlesize": PHONE_FONT_PT,
    }


def figure_words(row: ScoreRow) -> str:
    """The verdict words of a figure's label: the table's words plus "below the matched baseline",
    "fragile" and "exploration" when they apply (:func:`pullback_utils.chapters.findings.caveats`)."""
    from pullback_utils.chapters.caveats import BELOW_BASELINE_WORD, EXPLORATION_WORD, FRAGILE_WORD, caveats

    if not row.measured:
        return NOT_MEASURED
    marks = [
        w for w in (BELOW_BASELINE_WORD, FRAGILE_WORD, EXPLORATION_WORD) if any(c.startswith(w) for c in caveats(row))
    ]
    return ", ".join([row.words, *marks])


def summary_figure(rows: Sequence[ScoreRow]):
    """One bar per paper claim: -log10 of its Holm-adjusted p-value, coloured by verdict (the colours of
    :data:`VERDICT_COLOURS`), the claim's title above its bar and its verdict words (with "fragile" and
    "exploration" where they apply) beside it; a hatched bar was measured on a model below the quality
    bar. The alpha = 0.05 line, and the design's best attainable value as a black tick. Narrow, with large
    text, so that it reads on a phone."""
    import textwrap

    import matplotlib
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    from pullback_utils.chapters.figures import style

    prim = primary_rows(rows)
    with style():  # style() restores every rc setting on exit, these too
        matplotlib.rcParams.update(_phone_rc())
        fig, ax = plt.subplots(figsize=(PHONE_FIGURE_WIDTH_IN, 1.05 * len(prim) + 1.3))
        top = max([-math.log10(max(float(r.rec["min_p"]), 1e-12)) for r in prim if r.measured] + [2.0])
        for i, r in enumerate(prim):
            ax.text(0, i - 0.36, r.spec.title, va="bottom", ha="left", fontweight="bold")
            if not r.measured:
                ax.text(0, i + 0.05, NOT_MEASURED, va="center", color="#616161")
                continue
            p = max(float(r.rec["p_adjusted"]), 1e-12)
            ax.barh(
                i,
                -math.log10(p),
                height=0.3,
                color=VERDICT_COLOURS[r.colour_key],
                hatch=EXPLORATION_HATCH if r.below_bar else None,
                edgecolor="white",
                linewidth=0,
            )
            best = max(float(r.rec["min_p"]), 1e-12)
            ax.plot([-math.log10(best)] * 2, [i + 0.2, i + 0.42], color="k", lw=2)  # under the label's row
            side = "+" if (float(r.rec["estimate"]) - r.spec.null) * inf.direction_sign(r.spec.direction) > 0 else "−"
            label = textwrap.fill(f"{figure_words(r)} ({side})", 26)
            ax.text(-math.log10(p) + 0.04 * top, i, label, va="center", fontsize=PHONE_FONT_PT - 1)
        ax.axvline(-math.log10(inf.ALPHA), color="grey", ls="--")
        ax.set_yticks([])
        ax.set_ylim(len(prim) - 0.4, -0.75)
        ax.set_xlim(0, top * 1.6)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(5, integer=True))
        ax.set_xlabel("−log10 Holm p (dashed: p = 0.05;\nblack tick: best p the design can reach)")
        for side_ in ("top", "right", "left"):
            ax.spines[side_].set_visible(False)
    return fig


def model_matrix(
    rows: Sequence[ScoreRow], *, min_models: int = 2
) -> tuple[list[str], list[str], dict[tuple[str, str], ScoreRow]]:
    """``(claims, models, cells)``: the measured records that name one model, by claim id and model, for
    the claims measured on at least ``min_models`` models (a claim on one model is in the tables)."""
    cells: dict[tuple[str, str], ScoreRow] = {}
    for r in rows:
        if r.measured and r.model and "," not in r.model and r.model != "ladder":
            cells.setdefault((r.spec.id, r.model), r)
    per_claim: dict[str, int] = {}
    for c, _ in cells:
        per_claim[c] = per_claim.get(c, 0) + 1
    keep = {c for c, n in per_claim.items() if n >= min_models}
    cells = {k: v for k, v in cells.items() if k[0] in keep}
    claims = [c.id for c in CLAIMS if c.id in keep]
    models = sorted({k[1] for k in cells}, key=lambda m: (m.startswith("ladder"), m))
    return claims, models, cells


def model_matrix_key(rows: Sequence[ScoreRow]) -> str:
    """The matrix's column key in words: ``"1: Coarse to fine; 2: ..."``."""
    claims, _, _ = model_matrix(rows)
    return "; ".join(f"{i + 1}: {get(c).title}" for i, c in enumerate(claims))


def model_matrix_figure(rows: Sequence[ScoreRow]):
    """Models (rows) x claims (numbered columns, :func:`model_matrix_key`), each cell coloured by the
    record's verdict (:data:`VERDICT_COLOURS`, the tables' words in the legend); hatched: a model below
    the quality bar; a dot: a primary record whose verdict is fragile. Narrow, with large text, so that it
    reads on a phone."""
    import textwrap

    import matplotlib
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from pullback_utils.chapters.caveats import FRAGILE_WORD, caveats
    from pullback_utils.chapters.figures import style

    claims, models, cells = model_matrix(rows)
    used = [v for v in VERDICT_COLOURS if any(c.colour_key == v for c in cells.values())]
    hatched = any(c.below_bar for c in cells.values())
    fragile = any(any(x.startswith(FRAGILE_WORD) for x in caveats(c)) for c in cells.values())
    legend_rows = len(used) + hatched + fragile
    with style():  # style() restores every rc setting on exit, these too
        matplotlib.rcParams.update(_phone_rc())
        fig, ax = plt.subplots(figsize=(PHONE_FIGURE_WIDTH_IN, 0.34 * len(models) + 0.42 * legend_rows + 1.6))
        for i, m in enumerate(models):
            for j, c in enumerate(claims):
                r = cells.get((c, m))
                if r is None:
                    continue
                ax.add_patch(
                    plt.Rectangle(
                        (j - 0.5, i - 0.5),
                        1,
                        1,
                        facecolor=VERDICT_COLOURS[r.colour_key],
                        edgecolor="white",
                        hatch=EXPLORATION_HATCH if r.below_bar else None,
                    )
                )
                if any(x.startswith(FRAGILE_WORD) for x in caveats(r)):
                    ax.plot(j, i, "o", color="k", ms=5)
        ax.set_xlim(-0.5, len(claims) - 0.5)
        ax.set_ylim(len(models) - 0.5, -0.5)
        ax.set_xticks(range(len(claims)), [str(j + 1) for j in range(len(claims))])
        ax.xaxis.tick_top()
        ax.set_xlabel("claim (numbered as in the caption)")
        ax.xaxis.set_label_position("top")
        ax.set_yticks(range(len(models)), models)
        handles = [Patch(facecolor=VERDICT_COLOURS[v], label=textwrap.fill(MATRIX_LEGEND.get(v, v), 30)) for v in used]
        if hatched:
            handles.append(
                Patch(
                    facecolor="white",
                    edgecolor="#616161",
                    hatch=EXPLORATION_HATCH,
                    label="exploration: model below\nthe quality bar",
                )
            )
        if fragile:
            from matplotlib.lines import Line2D

            handles.append(Line2D([], [], marker="o", color="k", ls="", label="fragile"))
        fig.legend(handles=handles, loc="outside lower center", ncol=1, frameon=False)
    return fig


def scorecard_records(rows: Sequence[ScoreRow]) -> dict[str, dict]:
    """The measured primary records with their Holm-adjusted p-values and verdicts (for the scorecard's
    own ``metrics.json``: the one place where ``p_adjusted`` is filled)."""
    return {
        r.record: {**{k: v for k, v in r.rec.items() if k != "stored_verdict"}, "stability": stability(r.rec)[0]}
        for r in primary_rows(rows)
        if r.measured
    }


def stability_marks(rows: Sequence[ScoreRow]) -> dict[str, tuple[str, list[str]]]:
    """Per measured primary claim: ``(stable | fragile | not assessed, settings whose verdict differs)``."""
    return {r.record: stability(r.rec) for r in primary_rows(rows) if r.measured}


def sensitivity_table(rows: Sequence[ScoreRow]) -> str:
    """The sensitivity table: for every primary claim its own analysis (unadjusted p) and each row of its
    record's ``sensitivity`` (setting, estimate, p, verdict), with the claim's stable/fragile mark."""
    lines = ["| claim | mark | setting | estimate | p | verdict |", "|---|---|---|---|---|---|"]
    for r in primary_rows(rows):
        if not r.measured:
            lines.append(f"| {r.spec.title} | {NOT_MEASURED} | – | – | – | – |")
            continue
        rec = r.rec
        mark, off = stability(rec)
        sens = rec.get("sensitivity") or []
        varied = ", ".join(factors(sens)) if sens else "nothing varied"
        own = inf.decide(
            float(rec["p_value"]),
            float(rec["estimate"]),
            r.spec.direction,
            null=r.spec.null,
            min_p=float(rec["min_p"]),
            power=rec.get("power"),
        )
        lines.append(
            f"| **{r.spec.title}** | **{mark}** ({_cell(varied)}) | as reported | {fmt(rec['estimate'])} | "
            f"{fmt(rec['p_value'], 3)} | {outcome_words(r.spec, own)} |"
        )
        for s in sens:
            flag = " ≠" if s["setting"] in off else ""
            lines.append(
                f"| | | {_cell(s['setting'])} | {fmt(s['estimate'])} | {fmt(s['p_value'], 3)} | "
                f"{outcome_words(r.spec, s['verdict'])}{flag} |"
            )
    if mark_count := sum(1 for m, _ in stability_marks(rows).values() if m == NOT_ASSESSED):
        lines.append("")
        lines.append(f"{mark_count} measured claim(s) carry no sensitivity rows (not assessed).")
    return "\n".join(lines)
