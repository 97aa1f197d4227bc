"""The claims scorecard reads the chapters' metrics.json files (fabricated here), applies the verdict rule
to their CIs, and shows missing or broken files as "not measured" instead of failing or guessing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import nbformat
import pytest

from pullback_utils import scorecard as sc
from pullback_utils.analysis import claim, write_metrics
from pullback_utils.book import Layout, read_stamp, run
from pullback_utils.stats import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED

REPO = Path(__file__).resolve().parents[1]


def _rec(low: float, high: float, direction: str = "greater", null: float = 0.0, **extra) -> dict:
    return claim("a statistic", (low + high) / 2, low, high, direction, null=null, **extra)


def fabricate(root: Path) -> Path:
    """A results folder with every paper claim's chapter: one verdict of each kind among the primaries."""
    write_metrics(root / "coarse_to_fine", "coarse_to_fine",
                  {"coarse_to_fine": _rec(0.05, 0.09), "coarse_to_fine_edits": _rec(-0.2, 0.4)}, {}, model="disks")
    write_metrics(root / "timestep_discrepancy", "timestep_discrepancy",
                  {"early_cross_sample_similarity": _rec(-0.3, -0.1, "less"),
                   "early_cross_sample_similarity_h": _rec(0.1, 0.3, "less"),
                   "timestep_discrepancy": _rec(0.2, 0.8), "timestep_discrepancy_h": _rec(0.1, 0.9)}, {}, model="disks")
    write_metrics(root / "dataset_complexity", "dataset_complexity",
                  {"dataset_complexity": _rec(-0.8, -0.2), "dataset_complexity_h": _rec(-0.1, 0.5),
                   "coarse_to_fine@disks": _rec(0.1, 0.2, model="disks"),
                   "coarse_to_fine@textures": _rec(-0.1, 0.2, model="textures")}, {},
                  models={"disks": {"intrinsic_dimension": 5.3}, "shapes": {}, "textures": {}})
    write_metrics(root / "prompt_influence", "prompt_influence",
                  {"similar_prompts_similar_tangents": _rec(0.01, 0.2),
                   "text_influence_fades": _rec(0.3, 0.6, "greater", null=0.5)}, {}, model="shapes-text")
    write_metrics(root / "editing", "editing", {"editing_guidance_beats_naive": _rec(-0.004, -0.001)}, {})
    write_metrics(root / "ground_truth", "ground_truth",
                  {"ground_truth_above_random_disks": _rec(0.1, 0.2), "ground_truth_above_random_shapes": _rec(0.0, 0.1),
                   "ground_truth_vs_pca_disks": _rec(-0.2, -0.1)}, {})
    return root


def _row(rows, record):
    (row,) = [r for r in rows if r.record == record]
    return row


def test_verdicts_follow_the_rule_applied_to_each_ci(tmp_path):
    rows = sc.collect(fabricate(tmp_path))
    assert _row(rows, "coarse_to_fine").verdict == REPRODUCED
    assert _row(rows, "coarse_to_fine_edits").verdict == INCONCLUSIVE
    assert _row(rows, "early_cross_sample_similarity").verdict == REPRODUCED       # "less", CI below 0
    assert _row(rows, "early_cross_sample_similarity_h").verdict == NOT_REPRODUCED  # "less", CI above 0
    assert _row(rows, "dataset_complexity").verdict == NOT_REPRODUCED
    assert _row(rows, "text_influence_fades").verdict == INCONCLUSIVE              # null 0.5 inside [0.3, 0.6]
    assert _row(rows, "editing_guidance_beats_naive").verdict == NOT_REPRODUCED
    # the prompt chapter has no h-side records: shown, not dropped
    missing = _row(rows, "similar_prompts_similar_tangents_h")
    assert missing.verdict == sc.NOT_MEASURED and "similar_prompts_similar_tangents_h" in missing.reason

    verdicts = sc.claim_verdicts(rows)
    assert list(verdicts) == [s.id for s in sc.PAPER_CLAIMS + sc.EXTENSIONS]
    assert verdicts["coarse_to_fine"] == REPRODUCED and verdicts["dataset_complexity"] == NOT_REPRODUCED
    counts = sc.verdict_counts(rows)
    assert sum(counts.values()) == len(sc.PAPER_CLAIMS)
    assert counts == {REPRODUCED: 4, NOT_REPRODUCED: 2, INCONCLUSIVE: 1, sc.NOT_MEASURED: 0}


def test_numbers_model_and_side_come_from_the_files(tmp_path):
    rows = sc.collect(fabricate(tmp_path))
    r = _row(rows, "timestep_discrepancy_h")
    assert (r.low, r.high, r.estimate, r.side, r.model) == (0.1, 0.9, 0.5, "h", "disks")
    assert _row(rows, "dataset_complexity").model == "disks, shapes, textures"
    assert _row(rows, "dataset_complexity_h").model == "disks, shapes, textures"  # a {model: ...} dict: its keys
    table = sc.to_markdown(rows)
    assert "[0.100, 0.900]" in table and "not reproduced" in table
    assert table.count("\n") == len(rows) + 2  # header, rule, one line per row
    assert all(line.count(" | ") == 6 for line in table.splitlines() if not line.startswith("|-"))
    wide = sc.to_markdown(rows, detailed=True)
    assert "a statistic" in wide and wide.splitlines()[0].count(" | ") == 8


def test_changing_a_metrics_file_changes_the_scorecard(tmp_path):
    root = fabricate(tmp_path)
    assert sc.claim_verdicts(sc.collect(root))["dataset_complexity"] == NOT_REPRODUCED
    write_metrics(root / "dataset_complexity", "dataset_complexity",
                  {"dataset_complexity": _rec(0.2, 0.6), "dataset_complexity_h": _rec(0.1, 0.5)}, {})
    rows = sc.collect(root)
    assert sc.claim_verdicts(rows)["dataset_complexity"] == REPRODUCED
    assert _row(rows, "dataset_complexity").low == 0.2


def test_stored_verdict_is_recomputed_and_a_disagreement_flagged(tmp_path):
    root = fabricate(tmp_path)
    path = root / "coarse_to_fine" / "metrics.json"
    data = json.loads(path.read_text())
    data["claims"]["coarse_to_fine"]["verdict"] = "not reproduced"  # hand-edited, inconsistent with its CI
    path.write_text(json.dumps(data))
    row = _row(sc.collect(root), "coarse_to_fine")
    assert row.verdict == REPRODUCED and row.verdict_mismatch
    assert "stored" in sc.describe(row) and "stored: not reproduced" in sc.to_markdown([row])


@pytest.mark.parametrize("content, fragment", [
    ("{not json", "not readable JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"notebook": "coarse_to_fine"}', "no 'claims' object"),
    ('{"claims": {"coarse_to_fine": {"estimate": 1, "ci": [2, 1], "direction": "greater"}}}', "low <= high"),
    ('{"claims": {"coarse_to_fine": {"estimate": NaN, "ci": [0, 1], "direction": "greater"}}}', "finite"),
    ('{"claims": {"coarse_to_fine": {"estimate": 1, "ci": [0, 2], "direction": "up"}}}', "direction"),
])
def test_a_broken_file_is_not_measured_with_its_reason(tmp_path, content, fragment):
    root = fabricate(tmp_path)
    (root / "coarse_to_fine" / "metrics.json").write_text(content)
    rows = sc.collect(root)
    for rec in ("coarse_to_fine", "coarse_to_fine_edits"):
        r = _row(rows, rec)
        assert r.verdict == sc.NOT_MEASURED and fragment in r.reason and "coarse_to_fine" in r.reason
    assert _row(rows, "timestep_discrepancy").verdict == REPRODUCED  # the other chapters are unaffected
    with pytest.raises(sc.MetricsError, match=fragment):
        sc.read_metrics(root / "coarse_to_fine" / "metrics.json")


def test_a_chapter_not_run_is_not_measured(tmp_path):
    root = fabricate(tmp_path)
    shutil.rmtree(root / "editing")
    r = _row(sc.collect(root), "editing_guidance_beats_naive")
    assert r.verdict == sc.NOT_MEASURED and "has not been run" in r.reason


def test_wildcard_records_give_one_row_each(tmp_path):
    rows = sc.collect(fabricate(tmp_path))
    gt = [r.record for r in rows if r.claim_id == "ground_truth_random"]
    assert gt == ["ground_truth_above_random_disks", "ground_truth_above_random_shapes"]
    assert [r.primary for r in rows if r.claim_id == "ground_truth_random"] == [True, False]
    assert sc.claim_verdicts(rows)["ground_truth_pca"] == NOT_REPRODUCED
    assert all(not r.extension for r in sc.collect(tmp_path, extensions=()))


def test_per_model_records_from_another_chapter_are_support_rows(tmp_path):
    rows = sc.collect(fabricate(tmp_path))
    c2f = [r for r in rows if r.claim_id == "coarse_to_fine"]
    assert [r.record for r in c2f] == ["coarse_to_fine", "coarse_to_fine_edits", "coarse_to_fine@disks",
                                       "coarse_to_fine@textures"]
    per_model = c2f[2:]
    assert [r.model for r in per_model] == ["disks", "textures"]  # from the record, not the file's model list
    assert [r.verdict for r in per_model] == [REPRODUCED, INCONCLUSIVE]
    assert not any(r.primary for r in per_model) and all(r.chapter == "dataset_complexity" for r in per_model)
    # the claim's verdict is still its primary record's
    assert sc.claim_verdicts(rows)["coarse_to_fine"] == REPRODUCED
    # a per-model pattern with no record is shown as not measured
    (missing,) = [r for r in rows if r.record == "early_cross_sample_similarity@*"]
    assert missing.verdict == sc.NOT_MEASURED and "dataset_complexity" in missing.reason


def test_model_matrix_places_each_claim_on_its_models(tmp_path):
    rows = sc.collect(fabricate(tmp_path))
    titles, models, cells = sc.model_matrix(rows)
    assert models == ["disks", "textures", "shapes-text"]  # the zoo's order; multi-model rows left out
    assert cells[("Coarse to fine", "disks")].record == "coarse_to_fine"  # the primary wins over coarse_to_fine@disks
    assert cells[("Coarse to fine", "textures")].verdict == INCONCLUSIVE
    assert ("Dataset complexity", "disks") not in cells and "Dataset complexity" not in titles
    assert all(r.side == "x" for r in cells.values())
    fig = sc.model_matrix_figure(rows)
    assert len(fig.axes) == 1
    with pytest.raises(ValueError, match="rows"):
        sc.model_matrix_figure([r for r in rows if not r.measured])


def test_results_dir_must_be_a_folder(tmp_path):
    with pytest.raises(ValueError, match="results_dir"):
        sc.collect(tmp_path / "nowhere")


def test_summary_figure_has_a_panel_per_row(tmp_path):
    rows = sc.collect(fabricate(tmp_path))
    fig = sc.summary_figure(rows)
    assert len(fig.axes) == len(rows)
    summary = sc.scorecard_summary(rows)
    json.dumps(summary, allow_nan=False)
    assert summary["claim_verdicts"]["coarse_to_fine"] == REPRODUCED
    with pytest.raises(ValueError, match="rows"):
        sc.summary_figure([])


FAKE_CHAPTER = '''import json, pathlib
rec = {"claim": "fabricated", "statistic": "fabricated statistic", "estimate": (low + high) / 2,
       "ci": [low, high], "null": 0.0, "direction": "greater"}
pathlib.Path(output_dir, "metrics.json").write_text(json.dumps({"claims": {"coarse_to_fine": rec}}))'''


def test_runner_reruns_the_scorecard_when_a_metrics_file_changes(tmp_path):
    """End to end with the book runner: a fabricated chapter, then the real scorecard notebook; editing the
    chapter's metrics.json by hand makes the next run re-execute the scorecard, whose verdict changes."""
    root = tmp_path / "book-root"
    (root / "book" / "params").mkdir(parents=True)
    (root / "notebooks").mkdir()
    shutil.copy(REPO / "_config.yml", root / "_config.yml")
    (root / "book" / "_toc.yml").write_text(
        "format: jb-book\nroot: intro\nparts:\n  - caption: Chapters\n    chapters:\n"
        "      - file: generated/coarse_to_fine/coarse_to_fine\n      - file: generated/scorecard/scorecard\n")
    fake = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("low = 0.1\nhigh = 0.3\noutput_dir = '.'", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(FAKE_CHAPTER)])
    fake.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nbformat.write(fake, root / "notebooks" / "coarse_to_fine.ipynb")
    shutil.copy(REPO / "notebooks" / "scorecard.ipynb", root / "notebooks" / "scorecard.ipynb")
    layout = Layout(root)

    def verdict_now() -> str:
        data = json.loads((layout.out_dir("scorecard") / "metrics.json").read_text())
        return data["claim_verdicts"]["coarse_to_fine"]

    results = {r.name: r.status for r in run(layout, progress=False, log=lambda *_: None)}
    assert results == {"coarse_to_fine": "ok", "scorecard": "ok"}
    assert verdict_now() == REPRODUCED
    assert (layout.out_dir("scorecard") / "scorecard.png").is_file()
    first = read_stamp(layout, "scorecard")["key"]

    results = {r.name: r.status for r in run(layout, progress=False, log=lambda *_: None)}
    assert results == {"coarse_to_fine": "skipped", "scorecard": "skipped"}

    path = layout.out_dir("coarse_to_fine") / "metrics.json"
    data = json.loads(path.read_text())
    data["claims"]["coarse_to_fine"].update(estimate=-0.2, ci=[-0.3, -0.1])
    path.write_text(json.dumps(data))
    results = {r.name: r.status for r in run(layout, progress=False, log=lambda *_: None)}
    assert results == {"coarse_to_fine": "skipped", "scorecard": "ok"}
    assert verdict_now() == NOT_REPRODUCED
    assert read_stamp(layout, "scorecard")["key"] != first
