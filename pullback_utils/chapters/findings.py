"""What a chapter found, in words: the findings box under its title, the findings of its summary, and
the scorecard's headline (the same two sentences open the book's introduction).

Everything here is computed from scorecard rows (:func:`pullback_utils.chapters.scorecard.collect`: the
chapters' ``metrics.json`` records, the paper's claims Holm-adjusted across the family and support
records within their claim), so a page says what its last run measured and never goes stale. The book's
Sphinx extension (:mod:`pullback_utils.book.findings_directive`) renders these functions' Markdown at
build time where a page has a ``{chapter-findings}`` or ``{scorecard-headline}`` directive.

Per record, the *caveats* (:mod:`pullback_utils.chapters.caveats`, re-exported here) are listed strongest
first: not attributable to learning, below the matched baseline, fragile, exploration.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pullback_utils.analysis import inference as inf
from pullback_utils.chapters.caveats import (
    BELOW_BASELINE_WORD,
    EXPLORATION_WORD,
    FRAGILE_WORD,
    caveat_pairs,
    caveats,
    quality_words,
    short_caveats,
)
from pullback_utils.chapters.scorecard import NOT_MEASURED, ScoreRow, primary_rows
from pullback_utils.claims import NOT_LEARNED
from pullback_utils.claims.report import fmt
from pullback_utils.claims.sensitivity import FRAGILE, stability

__all__ = [
    "ModelFacts",
    "model_facts",
    "facts_from_metrics",
    "caveats",
    "short_caveats",
    "estimate_text",
    "chapter_rows",
    "findings_box",
    "findings_summary",
    "headline",
    "model_line",
    "FRAGILE_WORD",
    "EXPLORATION_WORD",
    "BELOW_BASELINE_WORD",
    "read_chapter_models",
    "card_exists",
]


@dataclass(frozen=True)
class ModelFacts:
    """What a reader should know about a model a chapter decides on: its clean-sample share, its
    standing against the quality bar (:mod:`pullback_utils.zoo.quality`) and its card (a docname of the
    book, e.g. ``"model_cards/disks"``; ``None`` when it has none)."""

    name: str
    clean: float | None = None
    quality: str = ""
    card: str | None = None
    obeyed: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"clean": self.clean, "quality": self.quality, "card": self.card, "obeyed": dict(self.obeyed)}


def model_facts(model: str) -> ModelFacts:
    """The :class:`ModelFacts` of ``model`` now, from its ``quality.json`` (a model the zoo does not
    describe: no clean share, no card)."""
    from pullback_utils.zoo.quality import model_quality
    from pullback_utils.zoo.registry import LADDER_MODELS, is_bundled

    q = model_quality(model)
    if q is None:
        return ModelFacts(model, quality="not a zoo model: no card and no quality bar")
    card = f"model_cards/{'ladder/' if model in LADDER_MODELS else ''}{model}" if is_bundled(model) else None
    clean = q.numbers.get("clean")
    return ModelFacts(
        model,
        None if clean is None else float(clean),
        q.sentence(),
        card,
        {k: float(v) for k, v in (q.numbers.get("obeyed") or {}).items()},
    )


def facts_from_metrics(section: Any) -> dict[str, ModelFacts]:
    """The ``models`` section of a ``metrics.json`` (written by ``Chapter.finish``) as :class:`ModelFacts`;
    ``{}`` when absent or malformed."""
    out: dict[str, ModelFacts] = {}
    if not isinstance(section, Mapping):
        return out
    for name, d in section.items():
        if isinstance(d, Mapping):
            clean = d.get("clean")
            out[str(name)] = ModelFacts(
                str(name),
                None if clean is None else float(clean),
                str(d.get("quality", "")),
                d.get("card"),
                {k: float(v) for k, v in (d.get("obeyed") or {}).items()},
            )
    return out


def estimate_text(rec: Mapping[str, Any]) -> str:
    """``"0.150 [0.135, 0.164]"``: the estimate and its 95 % interval."""
    return f"{fmt(rec['estimate'])} [{fmt(rec['ci'][0])}, {fmt(rec['ci'][1])}]"


def _p_text(rec: Mapping[str, Any]) -> str:
    if rec.get("p_adjusted") is not None:
        return f"Holm p = {fmt(rec['p_adjusted'], 3)}"
    return f"p = {fmt(rec['p_value'], 3)}"


def chapter_rows(rows: Sequence[ScoreRow], chapter: str, records: Sequence[str] | None = None) -> list[ScoreRow]:
    """The rows a chapter's page reports: those of ``records`` (the names in its ``metrics.json``), or,
    when ``None``, those the registry assigns to ``chapter`` (its not-measured rows included)."""
    if records is not None:
        names = set(records)
        return [r for r in rows if r.record in names and r.measured]
    return [r for r in rows if r.spec.chapter == chapter and "@" not in r.record]


def _grouped(rows: Sequence[ScoreRow]) -> tuple[list[ScoreRow], dict[str, list[ScoreRow]]]:
    """Rows that stand alone, and per-model copies (``"<id>@<model>"`` of a claim decided elsewhere)
    grouped by claim."""
    alone: list[ScoreRow] = []
    copies: dict[str, list[ScoreRow]] = {}
    for r in rows:
        if "@" in r.record and r.spec.kind != "extension":
            copies.setdefault(r.spec.id, []).append(r)
        else:
            alone.append(r)
    return alone, copies


def _count_words(rows: Sequence[ScoreRow]) -> str:
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.words] = counts.get(r.words, 0) + 1
    return ", ".join(f"{n} {w}" for w, n in sorted(counts.items(), key=lambda kv: -kv[1]))


def _main_line(r: ScoreRow) -> str:
    if not r.measured:
        return f"- **{r.spec.title}: {NOT_MEASURED}** ({r.reason})"
    rec = r.rec
    line = (
        f"- **{r.spec.title}: {r.words}** on `{r.model}`: {estimate_text(rec)}, {_p_text(rec)} over "
        f"{rec['n_units']} {rec['unit']}s."
    )
    cav = caveat_pairs(r)
    if cav:
        also = [short or long for long, short in cav[1:]]
        line += f" *Caveat*: {cav[0][0]}" + (f"; also {'; '.join(also)}" if also else "") + "."
    return line


def model_line(facts: ModelFacts) -> str:
    """One sentence on a model: its card, its clean-sample share, its standing against the bar."""
    card = f"{{doc}}`card </{facts.card}>`" if facts.card else "no card"
    clean = f"{100 * facts.clean:.1f} % clean samples" if facts.clean is not None else "no clean-sample share"
    obeyed = ""
    if facts.obeyed:
        obeyed = "; prompts obeyed: " + ", ".join(f"{k} {100 * v:.0f} %" for k, v in facts.obeyed.items())
    quality = f"; {quality_words(facts.quality)}" if facts.quality else ""
    return f"`{facts.name}` ({card}): {clean}{obeyed}{quality}"


def _models_text(models: Sequence[ModelFacts]) -> str:
    if not models:
        return ""
    if len(models) <= 3:
        return "**Model**: " + "; ".join(model_line(f) for f in models) + "."
    cleans = [f.clean for f in models if f.clean is not None]
    missing = [f.name for f in models if f.quality.startswith("misses")]
    span = f", {100 * min(cleans):.1f} to {100 * max(cleans):.1f} % clean samples" if cleans else ""
    if all(f.card and f.card.startswith("model_cards/ladder/") for f in models):  # the ladder's index page
        cards = "{doc}`the ladder's cards </model_cards/ladder>`"
    else:
        cards = ", ".join(f"{{doc}}`{f.name} </{f.card}>`" if f.card else f"`{f.name}`" for f in models)
    miss = f"; {len(missing)} miss the quality bar ({', '.join(missing)})" if missing else "; all meet the quality bar"
    return f"**Models**: {len(models)} models{span}{miss}. Cards: {cards}."


def findings_box(
    rows: Sequence[ScoreRow], models: Sequence[ModelFacts] = (), *, title: str = "What this run found"
) -> str:
    """The findings box (a MyST ``admonition``) of a chapter's rows: per paper claim or extension its
    verdict words, estimate with its 95 % interval, p and strongest caveats; the support records and the
    per-model copies in one line each; then the models with their clean share and card.

    Args:
        rows: the chapter's scorecard rows (:func:`chapter_rows`).
        models: the models the chapter decides on (:func:`model_facts` / :func:`facts_from_metrics`).
        title: the box's title.
    """
    alone, copies = _grouped(rows)
    main = [r for r in alone if r.spec.kind in ("paper", "extension")]
    support = [r for r in alone if r.spec.kind == "support"]
    lines = [_main_line(r) for r in main]
    if support:
        lines.append(
            "- Support: " + "; ".join(f"{r.spec.title}: {r.words}, {estimate_text(r.rec)}" for r in support) + "."
        )
    for rs in copies.values():
        lines.append(f"- {rs[0].spec.title} model by model: {_count_words(rs)} of {len(rs)} models.")
    if not lines:
        lines.append("- This run wrote no claim records.")
    body = "\n".join(lines)
    mod = _models_text(models)
    body += "\n\n" + mod if mod else ""
    body += (
        (
            "\n\nVerdicts as in the {doc}`scorecard </generated/scorecard/scorecard>`, after Holm's correction "
            "for multiple claims."
        )
        if any(r.measured and r.rec.get("p_adjusted") is not None for r in rows)
        else ""
    )
    return f"````{{admonition}} {title}\n:class: tip findings\n\n{body}\n````\n"


def findings_summary(rows: Sequence[ScoreRow]) -> str:
    """The findings of a chapter's summary: one bullet per record, verdict first, with what the estimate
    measures (the record's statistic), its interval, the test and all caveats (Markdown)."""
    alone, copies = _grouped(rows)
    out = []
    for r in alone:
        if not r.measured:
            out.append(f"- *{r.spec.title}*: {NOT_MEASURED} ({r.reason}).")
            continue
        rec = r.rec
        stat = str(rec["statistic"])
        text = (
            f"- *{r.spec.title}*: **{r.words}** on `{r.model}`, {estimate_text(rec)} "
            f"({rec['test']} over {rec['n_units']} {rec['unit']}s, {_p_text(rec)})"
        )
        cav = caveats(r)
        text += (" -- " + "; ".join(cav) + "." if cav else ".") + f" The number: {stat}."
        out.append(text)
    for rs in copies.values():
        models = ", ".join(f"`{r.model}` {r.words}" for r in rs)
        out.append(f"- *{rs[0].spec.title}* on each model: {models}.")
    return "\n".join(out) + "\n"


def headline(rows: Sequence[ScoreRow]) -> str:
    """Two sentences: how many of the paper's claims reproduced and on which models (and which were not
    reproduced or not attributable to learning), then how many verdicts are fragile, come from an
    exploration on a model below the quality bar, or sit below their matched baseline."""
    prim = primary_rows(rows)
    by: dict[str, list[ScoreRow]] = {}
    for r in prim:
        by.setdefault(r.verdict, []).append(r)

    def names(rs: list[ScoreRow]) -> str:
        titles = [f"“{r.spec.title.lower()}”" for r in rs]
        return ", ".join(titles[:-1]) + " and " + titles[-1] if len(titles) > 1 else titles[0]

    def count(n: int, one: str, many: str) -> str:
        return f"{n} {one if n == 1 else many}"

    rep = by.get(inf.REPRODUCED, [])
    first = f"Of the paper's {len(prim)} claims, {len(rep)} reproduced on the book's small models"
    if rep:
        on: dict[str, list[ScoreRow]] = {}
        for r in rep:
            on.setdefault(r.model, []).append(r)
        first += " (" + "; ".join(f"{names(rs)} on `{m}`" for m, rs in on.items()) + ")"
    others = []
    for verdict in (NOT_LEARNED, inf.NOT_REPRODUCED, inf.INCONCLUSIVE, inf.UNDERPOWERED, NOT_MEASURED):
        rs = by.get(verdict, [])
        if rs:
            named = f" ({names(rs)})" if verdict in (NOT_LEARNED, inf.NOT_REPRODUCED) else ""
            others.append(f"{count(len(rs), 'is', 'are')} {verdict}{named}")
    if others:
        first += "; " + (", ".join(others[:-1]) + " and " + others[-1] if len(others) > 1 else others[0])
    first += "."
    fragile = [r for r in prim if r.measured and stability(r.rec)[0] == FRAGILE]
    explore = [r for r in prim if r.measured and (r.rec.get("exploration") or r.below_bar)]
    below = [r for r in prim if any(c.startswith(BELOW_BASELINE_WORD) for c in caveats(r))]
    quals = []
    if fragile:
        quals.append(
            f"{count(len(fragile), 'verdict is', 'verdicts are')} {FRAGILE_WORD} (another analysis choice "
            "gives another verdict)"
        )
    if explore:
        models = " and ".join(sorted({f"`{r.model}`" for r in explore}))
        quals.append(
            f"{count(len(explore), 'comes', 'come')} from an {EXPLORATION_WORD} on models below the "
            f"quality bar ({models})"
        )
    if below:
        quals.append(f"{names(below)} {'is' if len(below) == 1 else 'are'} {BELOW_BASELINE_WORD}")
    if not quals:
        return first + " No verdict is fragile, none comes from a model below the quality bar."
    second = "; ".join(quals[:-1]) + "; and " + quals[-1] if len(quals) > 1 else quals[0]
    return f"{first} {second[:1].upper() + second[1:]}."


def read_chapter_models(metrics: Mapping[str, Any], rows: Sequence[ScoreRow]) -> list[ModelFacts]:
    """The :class:`ModelFacts` of the models a chapter's records name: from its ``metrics.json``'s
    ``models`` section, else looked up now (:func:`model_facts`); ``"ladder"`` stands for its models."""
    stored = facts_from_metrics(metrics.get("models"))
    names: list[str] = []
    for r in rows:
        if r.measured and (r.spec.kind == "extension" or (r.spec.kind == "paper" and "@" not in r.record)):
            for m in r.model.split(",") if r.model else []:
                m = m.strip()
                if m and m not in names:
                    names.append(m)
    if "ladder" in names:
        names.remove("ladder")
        params = metrics.get("params") or {}
        from pullback_utils.zoo.registry import ladder_name

        names += [ladder_name(r, s) for r in params.get("rungs", []) for s in params.get("seeds", [])]
    out = []
    for n in names:
        out.append(stored[n] if n in stored else model_facts(n))
    return out


def card_exists(book_dir: Path, facts: ModelFacts) -> ModelFacts:
    """``facts`` without its card link when the book has no such page (a link must not break the build)."""
    if facts.card and not (Path(book_dir) / f"{facts.card}.md").is_file():
        return ModelFacts(facts.name, facts.clean, facts.quality, None, dict(facts.obeyed))
    return facts
