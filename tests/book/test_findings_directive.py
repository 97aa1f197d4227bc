"""The findings directives: the Markdown they render from ``metrics.json`` files, and a real Sphinx build in
which a changed ``metrics.json`` changes the page on the next (incremental) build -- the box cannot go stale."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pullback_utils import claims
from pullback_utils.analysis import inference as inf
from pullback_utils.book.findings_directive import chapter_markdown, headline_markdown
from pullback_utils.chapters import scorecard as sc
from pullback_utils.claims.report import fmt

REPO = Path(__file__).resolve().parents[2]
BASE = {
    "white_noise_low_share": 0.07,
    "spectrum_matched": 0.1,
    "noise_floor": 0.01,
    "shuffled_prompts": 0.0,
    "unedited_residual": 0.02,
    "chance_level": 1.0,
}


def _rec(name: str, shift: float, model: str = "disks", seed: int = 0) -> dict:
    spec = claims.get(name)
    values = np.random.default_rng(seed).standard_normal(20) * 0.1 + spec.null + shift
    res = inf.sign_flip_test(values, null=spec.null, n_draws=999)
    return claims.record(
        name, res, model=model, baselines={b: BASE[b] for b in spec.baselines}, controls={c: 0.0 for c in spec.controls}
    )


def _write_all(generated: Path, shift: float = 0.5) -> None:
    by_chapter: dict[str, dict] = {}
    for spec in claims.CLAIMS:
        if spec.kind == "paper":
            sign = inf.direction_sign(spec.direction)
            by_chapter.setdefault(spec.chapter, {})[spec.id] = _rec(spec.id, sign * shift, model=spec.primary_model)
    by_chapter["coarse_to_fine"]["coarse_to_fine_edits"] = _rec("coarse_to_fine_edits", 0.3)
    for chapter, recs in by_chapter.items():
        models = {"disks": {"clean": 0.9, "quality": "meets the bar", "card": "model_cards/disks"}}
        claims.write_metrics(generated / chapter, chapter, recs, {}, models=models)


@pytest.fixture(autouse=True)
def _no_zoo_lookup(monkeypatch):
    monkeypatch.setattr(sc, "_misses_bar", lambda model: False)


def test_chapter_markdown_reports_its_own_records_holm_adjusted(tmp_path):
    generated = tmp_path / "book" / "generated"
    _write_all(generated)
    (tmp_path / "book" / "model_cards").mkdir(parents=True)
    (tmp_path / "book" / "model_cards" / "disks.md").write_text("# disks")
    box = chapter_markdown(generated, "coarse_to_fine")
    rows = {r.record: r for r in sc.collect(generated)}
    p_holm = fmt(rows["coarse_to_fine"].rec["p_adjusted"], 3)
    assert box.startswith("````{admonition}") and "**Coarse to fine: reproduced** on `disks`" in box
    assert f"Holm p = {p_holm}" in box and "Coarse-to-fine edits: reproduced" in box
    assert "Timestep discrepancy" not in box  # another chapter's record
    assert "{doc}`card </model_cards/disks>`): 90.0 % clean samples" in box
    summary = chapter_markdown(generated, "coarse_to_fine", summary=True)
    assert summary.startswith("- *Coarse to fine*: **reproduced**") and "admonition" not in summary


def test_a_chapter_not_run_or_broken_says_so(tmp_path):
    generated = tmp_path / "generated"
    assert "has no `metrics.json`" in chapter_markdown(generated, "editing")
    (generated / "editing").mkdir(parents=True)
    (generated / "editing" / "metrics.json").write_text("{not json")
    assert "unusable" in chapter_markdown(generated, "editing")
    assert "has not been run" in headline_markdown(generated)


def test_headline_markdown_has_the_figure_when_the_scorecard_drew_it(tmp_path):
    generated = tmp_path / "generated"
    _write_all(generated)
    claims.write_metrics(generated / "scorecard", "scorecard", {}, {})
    text = headline_markdown(generated)
    assert "Of the paper's 7 claims, 7 reproduced" in text and "{figure}" not in text
    (generated / "scorecard" / "scorecard.png").write_bytes(b"")
    assert "```{figure} /generated/scorecard/scorecard.png" in headline_markdown(generated)
    own_page = headline_markdown(generated, figure=False)  # the scorecard's own page: no figure, no link
    assert "{figure}" not in own_page and "{doc}" not in own_page and "7 reproduced" in own_page


CONF = """extensions = ["myst_parser", "pullback_utils.book.findings_directive"]
exclude_patterns = ["generated/*/metrics.json"]
"""


@pytest.mark.slow
def test_sphinx_renders_the_box_and_a_changed_metrics_file_changes_the_page(tmp_path):
    pytest.importorskip("myst_parser")
    src, out = tmp_path / "src", tmp_path / "out"
    generated = src / "generated"
    _write_all(generated, shift=0.5)
    (src / "model_cards").mkdir()
    (src / "model_cards" / "disks.md").write_text("# disks\n")
    for name in {s.chapter for s in claims.CLAIMS if s.kind == "paper"} | {"scorecard"}:
        (generated / name).mkdir(parents=True, exist_ok=True)
        (generated / name / f"{name}.md").write_text(
            f"# {name}\n\n```{{chapter-findings}}\n```\n\n## Summary\n\n```{{chapter-findings}}\n:summary:\n```\n"
        )
    claims.write_metrics(generated / "scorecard", "scorecard", {}, {})
    (src / "index.md").write_text(
        "# Book\n\n```{scorecard-headline}\n```\n\n```{toctree}\n:glob:\n\ngenerated/*/*\nmodel_cards/*\n```\n"
    )
    (src / "conf.py").write_text(CONF)
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def build() -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "sphinx", "-W", "-q", "-b", "html", str(src), str(out)],
            capture_output=True,
            text=True,
            env=env,
        )
        assert proc.returncode == 0, proc.stderr
        return (out / "generated" / "editing" / "editing.html").read_text()

    page = build()
    assert "What this run found" in page and "Guidance beats naive traversal: reproduced" in page
    assert "7 reproduced" in (out / "index.html").read_text()
    # the editing chapter reruns and finds the opposite: only its metrics.json changes
    rec = _rec("editing", -0.5)
    claims.write_metrics(generated / "editing", "editing", {"editing": rec}, {})
    page = build()
    assert "Guidance beats naive traversal: not reproduced" in page
    assert "6 reproduced" in (out / "index.html").read_text()
