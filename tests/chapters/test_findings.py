"""The findings box, the summary's findings and the headline, against hand-built records whose caveats,
verdicts and counts are known by construction."""

from __future__ import annotations

import re

import matplotlib

matplotlib.use("Agg")

import pytest

from pullback_utils import claims
from pullback_utils.analysis import inference as inf
from pullback_utils.chapters import findings as fd
from pullback_utils.chapters import scorecard as sc
from pullback_utils.chapters.scorecard import ScoreRow


@pytest.fixture(autouse=True)
def _no_zoo_lookup(monkeypatch):
    """Records here say themselves whether their model misses the quality bar (``model_quality``); the
    fallback to the installed zoo's ``quality.json`` is switched off so that the tests do not depend on it."""
    monkeypatch.setattr(sc, "_misses_bar", lambda model: False)


def _rec(
    name: str,
    estimate: float,
    ci: tuple[float, float],
    p: float,
    *,
    model: str = "disks",
    baselines: dict | None = None,
    controls: dict | None = None,
    p_adjusted: float | None = None,
    **extra,
) -> dict:
    """A record in the contract's shape, built by hand; its verdict from the rule (``verdict_of``)."""
    spec = claims.get(name)
    rec = {
        "claim": spec.id,
        "kind": spec.kind,
        "wording": spec.wording,
        "statistic": spec.statistic,
        "model": model,
        "n_units": 20,
        "unit": "sample",
        "test": "sign-flip",
        "p_value": p,
        "min_p": 1e-4,
        "p_adjusted": p_adjusted,
        "estimate": estimate,
        "ci": list(ci),
        "null": spec.null,
        "direction": spec.direction,
        "baselines": baselines or {},
        "controls": controls or {},
        **extra,
    }
    rec["verdict"] = claims.verdict_of(
        p if p_adjusted is None else p_adjusted,
        estimate,
        spec.direction,
        null=spec.null,
        min_p=1e-4,
        controls=rec["controls"],
    )
    claims.check_record(name, rec)  # hand-built, but within the contract
    return rec


def _row(name: str, rec: dict) -> ScoreRow:
    return ScoreRow(claims.get(name), name, rec["verdict"], rec=rec)


def _sens(setting: str, verdict_p: float, estimate: float) -> dict:
    spec = claims.get("coarse_to_fine")
    return {
        "setting": setting,
        "estimate": estimate,
        "p_value": verdict_p,
        "min_p": 1e-4,
        "n_units": 20,
        "verdict": inf.decide(verdict_p, estimate, spec.direction, null=spec.null, min_p=1e-4),
    }


def test_a_control_showing_the_effect_is_the_strongest_caveat_and_the_verdict():
    rec = _rec(
        "coarse_to_fine",
        0.15,
        (0.13, 0.17),
        1e-4,
        controls={"random_weights": {"estimate": 0.14, "p_value": 1e-4}},
        baselines={"spectrum_matched": {"estimate": 0.2, "p_value": 1e-4}},
        sensitivity=[_sens("k=2", 0.4, 0.01)],
        exploration=True,
        model_quality="misses the bar: clean samples 30.5 % < 90 %",
    )
    row = _row("coarse_to_fine", rec)
    assert row.verdict == claims.NOT_LEARNED
    cav = fd.caveats(row)
    # strongest first: control, matched baseline, fragility, exploration
    assert [c.split(":")[0] for c in cav] == [
        claims.NOT_LEARNED,
        fd.BELOW_BASELINE_WORD,
        fd.FRAGILE_WORD,
        fd.EXPLORATION_WORD,
    ]
    assert "0.140" in cav[0] and "k=2" in cav[2] and "30.5 %" in cav[3]
    # in the table the verdict's words carry the control; the short caveats add the rest
    assert fd.short_caveats(row) == [
        f"{fd.BELOW_BASELINE_WORD} (spectrum matched 0.200)",
        "fragile (k=2)",
        "exploration (disks below the quality bar)",
    ]
    box = fd.findings_box([row])
    assert f"**Coarse to fine: {claims.NOT_LEARNED}**" in box


def test_a_baseline_is_a_caveat_only_with_its_own_test_on_the_claimed_side_and_for_a_claimed_verdict():
    as_test = {"spectrum_matched": {"estimate": 0.2, "p_value": 1e-4}}
    smaller = {"spectrum_matched": {"estimate": 0.1, "p_value": 1e-4}}
    level = {"white_noise_low_share": 0.9}  # a bare number is a level, not a null to beat
    below = _row("coarse_to_fine", _rec("coarse_to_fine", 0.15, (0.13, 0.17), 1e-4, baselines=as_test))
    beyond = _row("coarse_to_fine", _rec("coarse_to_fine", 0.15, (0.13, 0.17), 1e-4, baselines=smaller))
    lvl = _row("coarse_to_fine", _rec("coarse_to_fine", 0.15, (0.13, 0.17), 1e-4, baselines=level))
    unclear = _row("coarse_to_fine", _rec("coarse_to_fine", 0.15, (-0.1, 0.3), 0.3, baselines=as_test))
    assert below.verdict == inf.REPRODUCED and fd.caveats(below)[0].startswith(fd.BELOW_BASELINE_WORD)
    assert fd.caveats(beyond) == [] and fd.caveats(lvl) == []
    assert unclear.verdict == inf.INCONCLUSIVE and fd.caveats(unclear) == []
    # a claim predicted on the lower side: a baseline further down is at least the effect
    less = {"shuffled_prompts": {"estimate": -0.5, "p_value": 1e-4}}
    sp = _row("similar_prompts", _rec("similar_prompts", -0.3, (-0.4, -0.2), 1e-4, model="shapes-text", baselines=less))
    assert fd.caveats(sp)[0].startswith(fd.BELOW_BASELINE_WORD)


def test_stable_sensitivity_and_a_model_above_the_bar_give_no_caveat():
    rec = _rec(
        "coarse_to_fine", 0.15, (0.13, 0.17), 1e-4, sensitivity=[_sens("k=2", 1e-4, 0.1)], model_quality="meets the bar"
    )
    assert fd.caveats(_row("coarse_to_fine", rec)) == []


def test_the_box_is_an_admonition_with_verdicts_intervals_and_the_model_card():
    main = _rec("coarse_to_fine", 0.1504, (0.1351, 0.1642), 1e-4, p_adjusted=7e-4)
    support = _rec("coarse_to_fine_edits", 0.608, (0.41, 0.80), 1e-4)
    copies = [_rec("coarse_to_fine", 0.1, (0.05, 0.15), 1e-3, model=f"ladder-1-s{i}") for i in range(2)]
    copies.append(_rec("coarse_to_fine", -0.1, (-0.15, -0.05), 1e-3, model="ladder-1-s2"))
    rows = [_row("coarse_to_fine", main), _row("coarse_to_fine_edits", support)]
    rows += [
        ScoreRow(claims.get("coarse_to_fine"), f"coarse_to_fine@{c['model']}", c["verdict"], rec=c) for c in copies
    ]
    disks = fd.ModelFacts("disks", 0.9876, "meets the bar", "model_cards/disks")
    box = fd.findings_box(rows, [disks])
    assert box.startswith("````{admonition} What this run found\n:class: tip findings\n") and box.endswith("````\n")
    assert "**Coarse to fine: reproduced** on `disks`: 0.150 [0.135, 0.164], Holm p = 7.0e-04 over 20 samples." in box
    assert "- Support: Coarse-to-fine edits: reproduced, 0.608 [0.410, 0.800]." in box
    assert "model by model: 2 reproduced, 1 not reproduced of 3 models" in box
    assert "`disks` ({doc}`card </model_cards/disks>`): 98.8 % clean samples; meets the quality bar" in box
    assert "scorecard" in box  # the note that verdicts are Holm-adjusted, with the link
    # the summary: one bullet per record with what the number measures
    summary = fd.findings_summary(rows)
    assert summary.count("\n- ") + 1 == 3 and claims.get("coarse_to_fine").statistic in summary


def test_many_models_are_summarised_by_their_range_and_the_ones_below_the_bar():
    models = [
        fd.ModelFacts(f"ladder-{i}-s0", c, q, f"model_cards/ladder/ladder-{i}-s0")
        for i, (c, q) in enumerate(
            [
                (0.99, "meets the bar"),
                (0.555, "misses the bar: clean samples 55.5 % < 90 %"),
                (0.95, "meets the bar"),
                (0.97, "meets the bar"),
            ],
            start=1,
        )
    ]
    box = fd.findings_box([], models)
    assert "4 models, 55.5 to 99.0 % clean samples; 1 miss the quality bar (ladder-2-s0)" in box
    assert "Cards: {doc}`the ladder's cards </model_cards/ladder>`" in box and "This run wrote no claim records" in box
    models.append(fd.ModelFacts("disks", 0.99, "meets the bar", "model_cards/disks"))
    assert fd.findings_box([], models).count("{doc}`") == 5  # not all on the ladder: one link each


def test_model_facts_round_trip_through_metrics_and_a_missing_card_is_not_linked(tmp_path):
    f = fd.ModelFacts(
        "shapes-text", 0.305, "misses the bar: x", "model_cards/shapes-text", {"colour": 1.0, "shape": 0.47}
    )
    assert fd.facts_from_metrics({"shapes-text": f.to_dict()}) == {"shapes-text": f}
    assert fd.facts_from_metrics(None) == {} and fd.facts_from_metrics({"x": 3}) == {}
    assert fd.card_exists(tmp_path, f).card is None
    (tmp_path / "model_cards").mkdir()
    (tmp_path / "model_cards" / "shapes-text.md").write_text("# card")
    assert fd.card_exists(tmp_path, f) == f
    line = fd.model_line(f)
    assert "30.5 % clean samples" in line and "prompts obeyed: colour 100 %, shape 47 %" in line
    assert fd.model_line(fd.ModelFacts("hub/model")).startswith("`hub/model` (no card): no clean-sample share")


def _primary_rows(verdicts: dict[str, str]) -> list[ScoreRow]:
    """One row per paper claim with the given verdict (estimates and p chosen to give it)."""
    values = {inf.REPRODUCED: (1.0, 1e-4), inf.NOT_REPRODUCED: (-1.0, 1e-4), inf.INCONCLUSIVE: (0.1, 0.4)}
    rows = []
    for spec in claims.CLAIMS:
        if spec.kind != "paper":
            continue
        v = verdicts.get(spec.id, inf.INCONCLUSIVE)
        if v == sc.NOT_MEASURED:
            rows.append(ScoreRow(spec, spec.id, v, reason="not run"))
            continue
        est, p = values[v]
        est = spec.null + est * inf.direction_sign(spec.direction)
        rec = _rec(spec.id, est, (est - 0.1, est + 0.1), p, model=spec.primary_model, p_adjusted=p)
        assert rec["verdict"] == v
        rows.append(_row(spec.id, rec))
    return rows


@pytest.mark.parametrize(
    "verdicts",
    [
        {"coarse_to_fine": inf.REPRODUCED, "timestep_discrepancy": inf.REPRODUCED, "editing": inf.NOT_REPRODUCED},
        {"similar_prompts": inf.REPRODUCED, "dataset_complexity": sc.NOT_MEASURED},
        {},
    ],
)
def test_headline_counts_agree_with_the_verdict_counts(verdicts):
    rows = _primary_rows(verdicts)
    text = fd.headline(rows)
    counts = sc.verdict_counts(rows)
    n_rep = counts[inf.REPRODUCED]
    assert text.startswith(f"Of the paper's {len(claims.PRIMARY)} claims, {n_rep} reproduced")
    for verdict in (inf.NOT_REPRODUCED, inf.INCONCLUSIVE, sc.NOT_MEASURED):
        if counts[verdict]:
            assert re.search(rf"\b{counts[verdict]} (is|are) {verdict}", text), (verdict, text)
    for r in rows:  # the reproduced claims are named with their model
        if r.verdict == inf.REPRODUCED:
            assert f"“{r.spec.title.lower()}”" in text and f"`{r.model}`" in text
    # two sentences
    assert len(re.findall(r"[.)] [A-Z0-9]", text)) == 1 and text.endswith(".")


def test_headline_names_fragile_and_exploration_verdicts():
    rows = _primary_rows({"coarse_to_fine": inf.REPRODUCED})
    rows[0].rec["sensitivity"] = [_sens("k=2", 0.4, 0.01)]
    rows[1].rec.update(exploration=True, model_quality="misses the bar: y")
    text = fd.headline(rows)
    assert (
        "1 verdict is fragile" in text
        and "1 comes from an exploration on models below the quality bar (`disks`)" in text
    )


def test_every_chapter_names_its_model_and_finish_records_the_facts(tmp_path, monkeypatch):
    from pullback_utils.chapters import chapter as chapter_mod
    from pullback_utils.claims import read_metrics

    facts = fd.ModelFacts("disks", 0.5, "misses the bar: clean samples 50.0 % < 90 %", "model_cards/disks")
    monkeypatch.setattr(fd, "model_facts", lambda model: facts)
    # a chapter that decides no claim (the tutorial) still names its model, clean share and card
    ch = chapter_mod.Chapter("local_basis_tutorial", {"model": "disks"}, tmp_path, None)
    note = ch.model_note()
    text = getattr(note, "data", note)
    assert "`disks` ([card](../../model_cards/disks.md), 50.0 % clean samples): misses the quality bar" in text
    # a chapter that decides on a model writes its facts into metrics.json for the findings box
    ch = chapter_mod.Chapter("coarse_to_fine", {"model": "disks"}, tmp_path, None, quality={"disks": "x"})
    ch.finish()
    stored = read_metrics(tmp_path / "metrics.json")["models"]
    assert fd.facts_from_metrics(stored) == {"disks": facts}
