"""The scorecard reads the chapters' metrics.json files (fabricated here from real test results), adjusts
the paper's primary claims with Holm, and shows missing or broken files as "not measured"."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import nbformat
import numpy as np
import pytest

from pullback_utils import claims
from pullback_utils.analysis import inference as inf
from pullback_utils.book import Layout, read_stamp, run
from pullback_utils.chapters import scorecard as sc

REPO = Path(__file__).resolve().parents[2]
BASE = {
    "white_noise_low_share": 0.07,
    "spectrum_matched": 0.1,
    "noise_floor": 0.01,
    "shuffled_prompts": 0.0,
    "unedited_residual": 0.02,
    "isotropic_random": 0.002,
    "local_pca": 0.3,
    "denoiser_jacobian": 0.2,
    "chance_level": 1.0,
}
CTRL = {"random_weights": 0.0}


def _rec(name: str, shift: float, n: int = 20, model: str = "disks", seed: int = 0) -> dict:
    """A record of ``name`` from a sign-flip test on n values centred at ``shift`` (sd 1)."""
    spec = claims.get(name)
    values = np.random.default_rng(seed).standard_normal(n) + shift
    res = inf.sign_flip_test(values, null=spec.null, n_draws=999)
    return claims.record(
        name,
        res,
        model=model,
        baselines={b: BASE[b] for b in spec.baselines},
        controls={c: CTRL[c] for c in spec.controls},
    )


def fabricate(root: Path, *, shifts: dict[str, float] | None = None) -> Path:
    shifts = {
        "coarse_to_fine": 1.5,
        "early_similarity": 1.0,
        "timestep_discrepancy": 2.0,
        "dataset_complexity": 0.1,
        "similar_prompts": -1.2,
        "text_influence_fades": 0.9,
        "editing": 0.05,
        **(shifts or {}),
    }
    by_chapter: dict[str, dict] = {}
    for spec in claims.CLAIMS:
        if spec.kind == "paper":
            by_chapter.setdefault(spec.chapter, {})[spec.id] = _rec(spec.id, shifts[spec.id], model=spec.primary_model)
    by_chapter["coarse_to_fine"]["coarse_to_fine_edits"] = _rec("coarse_to_fine_edits", 0.0)
    by_chapter["dataset_complexity"]["coarse_to_fine@ladder-1-s0"] = _rec("coarse_to_fine", 1.0, model="ladder-1-s0")
    by_chapter["dataset_complexity"]["coarse_to_fine@ladder-2-s0"] = _rec("coarse_to_fine", -1.0, model="ladder-2-s0")
    by_chapter["ground_truth"] = {"ground_truth_pca@disks": _rec("ground_truth_pca", -1.0, model="disks")}
    for chapter, recs in by_chapter.items():
        claims.write_metrics(root / chapter, chapter, recs, {})
    return root


def _row(rows, record):
    (row,) = [r for r in rows if r.record == record]
    return row


def test_holm_across_the_primary_claims_and_verdicts_from_adjusted_p(tmp_path):
    rows = sc.collect(fabricate(tmp_path))
    prim = sc.primary_rows(rows)
    assert [r.spec.id for r in prim] == list(claims.PRIMARY)
    raw = [r.rec["p_value"] for r in prim]
    assert [r.rec["p_adjusted"] for r in prim] == pytest.approx(inf.holm(raw))
    for r in prim:
        assert r.verdict == inf.decide(
            r.rec["p_adjusted"], r.rec["estimate"], r.spec.direction, null=r.spec.null, min_p=r.rec["min_p"]
        )
    assert _row(rows, "coarse_to_fine").verdict == inf.REPRODUCED
    assert _row(rows, "similar_prompts").verdict == inf.REPRODUCED  # claimed "less", effect below 0
    assert _row(rows, "editing").verdict == inf.INCONCLUSIVE
    # support records are not in the primary family: Holm runs within their claim (its support records and
    # its per-model copies)
    fam = ["coarse_to_fine_edits", "coarse_to_fine@ladder-1-s0", "coarse_to_fine@ladder-2-s0"]
    assert [_row(rows, f).rec["p_adjusted"] for f in fam] == pytest.approx(
        inf.holm([_row(rows, f).rec["p_value"] for f in fam])
    )
    assert _row(rows, "coarse_to_fine_edits").rec["p_adjusted"] >= _row(rows, "coarse_to_fine_edits").rec["p_value"]
    counts = sc.verdict_counts(rows)
    assert sum(counts.values()) == len(claims.PRIMARY)


def test_extensions_use_their_own_words_never_not_reproduced(tmp_path):
    rows = sc.collect(fabricate(tmp_path))
    r = _row(rows, "ground_truth_pca@disks")
    assert r.verdict == inf.NOT_REPRODUCED and r.words == "below local PCA"
    md = sc.to_markdown(rows, kinds=("extension",))
    assert "below local PCA" in md and "not reproduced" not in md


def test_missing_broken_and_absent_are_not_measured_with_reasons(tmp_path):
    root = fabricate(tmp_path)
    shutil.rmtree(root / "editing")
    (root / "prompt_influence" / "metrics.json").write_text("{not json")
    data = json.loads((root / "timestep_discrepancy" / "metrics.json").read_text())
    del data["claims"]["early_similarity"]
    (root / "timestep_discrepancy" / "metrics.json").write_text(json.dumps(data))
    rows = sc.collect(root)
    assert "has not been run" in _row(rows, "editing").reason
    assert "not readable JSON" in _row(rows, "similar_prompts").reason
    assert "has no record 'early_similarity'" in _row(rows, "early_similarity").reason
    assert _row(rows, "coarse_to_fine").measured  # one bad file never hides the others
    with pytest.raises(ValueError, match="results_dir"):
        sc.collect(tmp_path / "nowhere")


def test_a_record_breaking_the_contract_is_refused_and_a_hand_edit_is_flagged(tmp_path):
    root = fabricate(tmp_path)
    path = root / "coarse_to_fine" / "metrics.json"
    data = json.loads(path.read_text())
    data["claims"]["coarse_to_fine_edits"]["verdict"] = inf.REPRODUCED  # a hand-edited verdict
    path.write_text(json.dumps(data))
    rows = sc.collect(root)
    assert _row(rows, "coarse_to_fine_edits").verdict_mismatch
    del data["claims"]["coarse_to_fine"]["n_units"]
    path.write_text(json.dumps(data))
    assert "lacks ['n_units']" in _row(sc.collect(root), "coarse_to_fine").reason


def test_underpowered_design_reported_with_the_units_it_needs(tmp_path):
    root = fabricate(tmp_path)
    rec = _rec("coarse_to_fine", 3.0, n=4)
    claims.write_metrics(root / "coarse_to_fine", "coarse_to_fine", {"coarse_to_fine": rec}, {})
    r = _row(sc.collect(root), "coarse_to_fine")
    assert r.verdict == inf.UNDERPOWERED and r.rec["n_needed"] == 6
    assert "**underpowered** (needs 6)" in sc.to_markdown(sc.collect(root))


def test_model_matrix_and_figures(tmp_path):
    rows = sc.collect(fabricate(tmp_path))
    cl, models, cells = sc.model_matrix(rows)
    assert "coarse_to_fine" in cl and {"ladder-1-s0", "ladder-2-s0", "disks"} <= set(models)
    assert cells[("coarse_to_fine", "ladder-2-s0")].verdict == inf.NOT_REPRODUCED
    for fig in (sc.summary_figure(rows), sc.model_matrix_figure(rows)):
        w, h = fig.get_size_inches()
        assert w <= 7.2
    recs = sc.scorecard_records(rows)
    assert set(recs) == set(claims.PRIMARY) and all(r["p_adjusted"] is not None for r in recs.values())


FAKE_CHAPTER = """import pullback_utils as pu
from pullback_utils import claims
from pullback_utils.analysis import inference
res = inference.sign_flip_test([shift + 0.1 * i for i in range(-10, 10)], n_draws=999)
rec = claims.record("coarse_to_fine", res, model="disks", baselines={"white_noise_low_share": 0.1},
                    controls={"random_weights": 0.0})
claims.write_metrics(output_dir, "coarse_to_fine", {"coarse_to_fine": rec}, {})"""


def test_runner_reruns_the_scorecard_when_a_metrics_file_changes(tmp_path):
    """End to end with the book runner: a fabricated chapter, then the real scorecard notebook; editing the
    chapter's metrics.json makes the next run re-execute the scorecard, whose verdict changes."""
    root = tmp_path / "book-root"
    (root / "book" / "params").mkdir(parents=True)
    (root / "notebooks").mkdir()
    shutil.copy(REPO / "_config.yml", root / "_config.yml")
    (root / "book" / "_toc.yml").write_text(
        "format: jb-book\nroot: intro\nparts:\n  - caption: Chapters\n    chapters:\n"
        "      - file: generated/coarse_to_fine/coarse_to_fine\n      - file: generated/scorecard/scorecard\n"
    )
    fake = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell("shift = 1.0\noutput_dir = '.'", metadata={"tags": ["parameters"]}),
            nbformat.v4.new_code_cell(FAKE_CHAPTER),
        ]
    )
    fake.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nbformat.write(fake, root / "notebooks" / "coarse_to_fine.ipynb")
    shutil.copy(REPO / "notebooks" / "scorecard.ipynb", root / "notebooks" / "scorecard.ipynb")
    layout = Layout(root)

    def verdict_now() -> str:
        data = json.loads((layout.out_dir("scorecard") / "metrics.json").read_text())
        return data["claims"]["coarse_to_fine"]["verdict"]

    results = {r.name: r.status for r in run(layout, progress=False, log=lambda *_: None)}
    assert results == {"coarse_to_fine": "ok", "scorecard": "ok"}
    assert verdict_now() == inf.REPRODUCED
    assert (layout.out_dir("scorecard") / "scorecard.png").is_file()
    first = read_stamp(layout, "scorecard")["key"]
    results = {r.name: r.status for r in run(layout, progress=False, log=lambda *_: None)}
    assert results == {"coarse_to_fine": "skipped", "scorecard": "skipped"}
    path = layout.out_dir("coarse_to_fine") / "metrics.json"
    data = json.loads(path.read_text())
    data["claims"]["coarse_to_fine"].update(estimate=-1.0, ci=[-1.2, -0.8], verdict=inf.NOT_REPRODUCED)
    path.write_text(json.dumps(data))
    results = {r.name: r.status for r in run(layout, progress=False, log=lambda *_: None)}
    assert results == {"coarse_to_fine": "skipped", "scorecard": "ok"}
    assert verdict_now() == inf.NOT_REPRODUCED
    assert read_stamp(layout, "scorecard")["key"] != first


def test_the_verdict_table_can_hold_only_the_primary_records(tmp_path):
    rows = sc.collect(fabricate(tmp_path))
    primary = sc.to_markdown(rows, primary=True)
    others = sc.to_markdown(rows, primary=False)
    # bold: the primary claims' titles and every verdict's words
    assert "ladder-1-s0" not in primary and primary.count("**") == 2 * 2 * len(claims.PRIMARY)
    assert "coarse_to_fine@ladder-1-s0" in others and others.count("**") == 2 * (len(others.splitlines()) - 2)
    assert len(sc.to_markdown(rows).splitlines()) == len(primary.splitlines()) + len(others.splitlines()) - 2


def test_a_control_showing_the_effect_is_not_attributable_to_learning_everywhere(tmp_path):
    root = fabricate(tmp_path)
    before = sc.verdict_counts(sc.collect(root))
    spec = claims.get("coarse_to_fine")
    res = inf.sign_flip_test(np.random.default_rng(0).standard_normal(20) + 1.5, n_draws=999)
    ctrl = {"random_weights": {"estimate": res.estimate, "ci": list(res.ci), "p_value": 0.001}}
    rec = claims.record(
        "coarse_to_fine", res, model="disks", baselines={b: BASE[b] for b in spec.baselines}, controls=ctrl
    )
    assert rec["verdict"] == claims.NOT_LEARNED
    assert "not attributable to learning" in claims.sentence("coarse_to_fine", rec)
    claims.write_metrics(root / "coarse_to_fine", "coarse_to_fine", {"coarse_to_fine": rec}, {})
    rows = sc.collect(root)
    r = _row(rows, "coarse_to_fine")
    assert r.verdict == claims.NOT_LEARNED and not r.verdict_mismatch
    counts = sc.verdict_counts(rows)
    assert counts[claims.NOT_LEARNED] == 1 and counts[inf.REPRODUCED] == before[inf.REPRODUCED] - 1
    assert sc.VERDICT_COLOURS[claims.NOT_LEARNED] != sc.VERDICT_COLOURS[inf.REPRODUCED]
    md = sc.to_markdown(rows)
    assert "**not attributable to learning** (shown by the random-weights control)" in md
    sc.summary_figure(rows)
    # an extension keeps its words, with the control's caveat
    gt = claims.get("ground_truth_pca")
    assert claims.outcome_words(gt, claims.NOT_LEARNED) == "above local PCA, not attributable to learning"


def test_a_record_run_as_an_exploration_says_so_in_the_verdict_table():
    from pullback_utils.chapters import scorecard as sc

    rec = {"exploration": True, "model": "shapes-text", "model_quality": "misses the bar: clean samples 30.5 % < 90 %"}
    assert sc.exploration_note(rec) == " (exploration: shapes-text misses the bar: clean samples 30.5 % < 90 %)"
    assert sc.exploration_note({"model": "disks", "model_quality": "meets the bar"}) == ""


def test_one_colour_per_word_and_extensions_never_take_the_not_reproduced_colour(tmp_path):
    colours = list(sc.VERDICT_COLOURS.values())
    assert len(set(colours)) == len(colours)
    rows = sc.collect(fabricate(tmp_path))
    gt = _row(rows, "ground_truth_pca@disks")
    assert gt.verdict == inf.NOT_REPRODUCED and gt.colour_key == sc.BELOW and gt.words == "below local PCA"
    assert _row(rows, "coarse_to_fine@ladder-2-s0").colour_key == inf.NOT_REPRODUCED
    # the figures' legend uses the tables' words
    for verdict in (inf.REPRODUCED, claims.NOT_LEARNED, inf.NOT_REPRODUCED, inf.INCONCLUSIVE, inf.UNDERPOWERED):
        assert sc.MATRIX_LEGEND[verdict] == verdict


def test_fragile_and_exploration_are_named_in_the_figure_labels_and_below_bar_is_hatched(tmp_path, monkeypatch):
    rows = sc.collect(fabricate(tmp_path))
    r = _row(rows, "coarse_to_fine")
    r.rec["sensitivity"] = [
        {"setting": "k=2", "estimate": 0.0, "p_value": 0.5, "min_p": 1e-4, "n_units": 20, "verdict": inf.INCONCLUSIVE}
    ]
    r.rec.update(exploration=True, model_quality="misses the bar: clean samples 50.0 % < 90 %")
    assert sc.figure_words(r) == f"{r.words}, fragile, exploration" and r.below_bar
    # without a word in the record, the model's quality.json decides
    plain = _row(rows, "timestep_discrepancy")
    monkeypatch.setattr(sc, "_misses_bar", lambda model: True)
    assert plain.below_bar
    plain.rec["model_quality"] = "meets the bar"
    assert not plain.below_bar


def test_scorecard_figures_are_legible_on_a_phone(tmp_path, monkeypatch):
    from pullback_utils.chapters.plotting import check_figure, save_figure

    monkeypatch.setattr(sc, "_misses_bar", lambda model: False)
    rows = sc.collect(fabricate(tmp_path / "res"))
    for name, fig in (("summary", sc.summary_figure(rows)), ("matrix", sc.model_matrix_figure(rows))):
        save_figure(fig, tmp_path / "figs", name, f"caption of {name}")
        png = tmp_path / "figs" / f"{name}.png"
        assert check_figure(png) == []  # the page's column at 1280 px
        # on a 390 px phone the figure is scaled to the content column: its text must still be >= 9 pt
        assert [p for p in check_figure(png, max_width_px=sc.PHONE_CONTENT_PX) if "smallest text" in p] == []
    assert sc.model_matrix_key(rows).startswith("1: Coarse to fine")


def test_tables_put_the_details_in_a_dropdown(tmp_path):
    rows = sc.collect(fabricate(tmp_path))
    md = sc.tables(rows, primary=True)
    verdicts, details = md.split("````{admonition}")
    assert verdicts.splitlines()[0] == "| claim | verdict | estimate [95% interval] |"
    assert (
        ":class: dropdown" in details and "| claim | model | n | test | p | Holm p | baselines | controls |" in details
    )
    assert len(sc.details_markdown(rows, primary=True).splitlines()) == len(
        sc.to_markdown(rows, primary=True).splitlines()
    )
