"""The plan before a run (issue 27): products per basis, the memory check that stops a run before any kernel."""

from __future__ import annotations

from pathlib import Path

import pytest

from pullback_utils.book import plan as bp
from pullback_utils.chapters.parameters import ParameterError
from pullback_utils.engine import jvp_memory
from pullback_utils.zoo import loading
from pullback_utils.zoo.replicas import write_replica

CELEBA = "google/ddpm-ema-celebahq-256"
SMALL = {"unet": dict(sample_size=64, block_out_channels=(32,) * 6)}


def test_products_per_basis_follow_the_solvers_blocks():
    # block Krylov: (k + 2) J·v and (k + 2) Jᵀu per iteration, ~8 iterations at tol 0.01, ~12 below, max_iters caps
    assert bp._products_per_basis(dict(k=8, tol=0.01, max_iters=30)) == 2 * 10 * 8
    assert bp._products_per_basis(dict(k=50, tol=1e-3, max_iters=30)) == 2 * 52 * 12
    assert bp._products_per_basis(dict(k=2, tol=0.1, max_iters=3)) == 2 * 4 * 3
    assert bp._products_per_basis(dict(k=5, power_max_iters=100), "power") == 2 * 5 * 100
    assert bp._products_per_basis(dict(k=5, tol=0.01), "randomized") == 2 * 15 * 8


@pytest.fixture
def mapped(tmp_path, monkeypatch):
    folder = write_replica(CELEBA, tmp_path / "celeba", overrides=SMALL)
    monkeypatch.setenv(loading.MODEL_MAP_ENV, f"{CELEBA}={folder}")
    return folder


VALUES = dict(
    model=CELEBA,
    n_samples=3,
    times=[0.7, 0.3],
    control_times=[0.7, 0.3],
    k=4,
    tol=0.01,
    max_iters=30,
    ddim_steps=5,
    sensitivity_samples=2,
)


def test_plan_counts_and_chunks_as_the_engine_would(mapped):
    (row,) = bp.plan_chapters([("coarse_to_fine", VALUES)], available=None)
    assert row.model == CELEBA and row.bases == 3 * (2 + 2) + 4 * 2
    assert row.products == row.bases * 2 * 6 * 8 and row.fits and row.chunk == 6  # unknown memory: the block
    arch = bp.model_architecture(CELEBA)
    assert arch["sample_shape"] == (3, 64, 64) and arch["extra_params"] == 0
    cost = bp._costs(arch)
    weights = cost.param_bytes
    # a budget with room for exactly 3 vectors in forward mode beside the weights and the recorded pass
    available = weights + int(cost.saved_bytes * (1 + 1.5 * 3.5) / jvp_memory.HEADROOM)
    (row,) = bp.plan_chapters([("coarse_to_fine", VALUES)], available=available)
    assert row.chunk == jvp_memory.max_chunk("forward", cost.saved_bytes, available - weights, 6) == 3
    assert row.peak_bytes == weights + int(cost.saved_bytes * (1 + 1.5 * 3))
    assert row.cpu_seconds > 0 and row.gpu_seconds > 0


def test_memory_check_stops_naming_the_chapter_when_one_vector_does_not_fit(mapped):
    plans = bp.plan_chapters([("coarse_to_fine", VALUES)], available=1000, timing=False)
    assert not plans[0].fits and plans[0].cpu_seconds is None
    with pytest.raises(
        ParameterError, match="coarse_to_fine: google/ddpm-ema-celebahq-256 needs about .* no chunk size fixes it"
    ):
        bp.check_memory(plans, 1000)
    bp.check_memory(bp.plan_chapters([("coarse_to_fine", VALUES)], available=None, timing=False), None)  # fits


def test_unknown_models_and_chapters_are_listed_not_planned():
    plans = bp.plan_chapters(
        [("coarse_to_fine", dict(VALUES, model="someone/unmapped-model")), ("not_a_chapter", {})], available=None
    )
    assert plans[0].fits and plans[0].chunk is None and "not planned" in plans[0].note
    assert plans[1].bases == 0
    text = bp.format_plan(plans, available=None)
    assert "someone/unmapped-model" in text and "GPU rate ASSUMED" in text


def test_book_plan_and_run_stop_before_any_kernel(mapped, tmp_path, monkeypatch):
    """`book plan` prints the table and exits 2 when a chapter does not fit; `book chapter` refuses before
    papermill starts; `--model-map` is checked and reaches $PULLBACK_MODEL_MAP."""
    import nbformat
    import papermill
    import yaml

    from pullback_utils import book

    root = tmp_path / "book-root"
    (root / "book" / "params").mkdir(parents=True)
    (root / "_config.yml").write_text("title: test\n")
    (root / "book" / "_toc.yml").write_text(
        yaml.safe_dump(
            {"format": "jb-book", "root": "intro", "chapters": [{"file": "generated/coarse_to_fine/coarse_to_fine"}]}
        )
    )
    (root / "book" / "intro.md").write_text("# Intro\n")
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cell = nbformat.v4.new_code_cell("".join(f"{k} = {v!r}\n" for k, v in VALUES.items()) + "output_dir = '.'\n")
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, nbformat.v4.new_code_cell("x = 1")]
    (root / "notebooks").mkdir()
    nbformat.write(nb, root / "notebooks" / "coarse_to_fine.ipynb")
    monkeypatch.setattr(papermill, "execute_notebook", lambda *a, **k: pytest.fail("a kernel started"))
    monkeypatch.delenv(loading.MODEL_MAP_ENV)
    assert book.main(["--root", str(root), "plan", "--model-map", f"{CELEBA}={mapped}"]) == 0
    assert book.main(["--root", str(root), "plan", "--model-map", f"{CELEBA}={mapped}", "--memory", "1e-6"]) == 2
    assert book.main(["--root", str(root), "plan", "--model-map", f"{CELEBA}=/no/such/folder"]) == 2
    monkeypatch.setattr(jvp_memory, "available_bytes", lambda device: 1000)
    assert (
        book.main(
            [
                "--root",
                str(root),
                "chapter",
                "coarse_to_fine",
                "--model-map",
                f"{CELEBA}={mapped}",
                "-o",
                str(tmp_path / "out"),
                "-q",
            ]
        )
        == 2
    )


def test_the_model_map_is_part_of_a_chapters_stamp(tmp_path, monkeypatch):
    """A chapter run with a hub id mapped to a replica is not 'unchanged' for a run with the real model."""
    from pullback_utils.book.stamps import stamp_key

    nb = tmp_path / "c.ipynb"
    nb.write_text("{}")
    monkeypatch.delenv(loading.MODEL_MAP_ENV, raising=False)
    plain = stamp_key(nb, {"model": CELEBA}, "1", "h")
    (tmp_path / "replica").mkdir()
    monkeypatch.setenv(loading.MODEL_MAP_ENV, f"{CELEBA}={tmp_path / 'replica'}")
    assert stamp_key(nb, {"model": CELEBA}, "1", "h") != plain
    assert stamp_key(nb, {"model": "disks"}, "1", "h") == stamp_key(nb, {"model": "disks"}, "1", "h")
    monkeypatch.setenv(loading.MODEL_MAP_ENV, f"other/model={tmp_path / 'replica'}")
    assert stamp_key(nb, {"model": CELEBA}, "1", "h") == plain  # an entry the chapter does not name changes nothing


def test_prompt_bases_count_every_prompt_and_the_empty_one():
    """prompt_study sweeps each prompt and the empty prompt over n_states trained and n_control random-weight
    states at every time (chapters/measurements.prompt_study); the rehearsal found the first formula missed it."""
    v = dict(model="x", prompts=["a", "b", "c", "d"], n_states=3, n_control=2, times=[1.0, 0.1])
    assert bp.BASES["prompt_influence"](v) == [("model", 5 * 5 * 2)]
    assert bp.BASES["prompt_influence"](dict(v, prompts=None)) == [("model", 13 * 5 * 2)]


def _planned_and_written(name: str, tmp_path: Path) -> tuple[list, int]:
    """The plan's bases of chapter ``name`` at its quick parameters, and the bases a quick run of it writes to
    an empty cache (one entry per distinct basis it computes; the Gaussian control's fit is a folder)."""
    import yaml

    from pullback_utils.book import Layout, run_chapter
    from pullback_utils.book.params import notebook_defaults

    root = Path(__file__).resolve().parents[2]
    quick = yaml.safe_load((root / "book" / "params" / "quick.yaml").read_text())[name]
    cache = tmp_path / "cache"
    overrides = {"cache_dir": str(cache), "model": "disks"}
    result = run_chapter(Layout(root), name, out_dir=tmp_path / "out", quick=True, overrides=overrides, progress=False)
    assert result.status == "ok", result.message
    defaults = notebook_defaults(root / "notebooks" / f"{name}.ipynb")
    return bp.BASES[name]({**defaults, **quick, **overrides}), len(list(cache.glob("*.safetensors")))


@pytest.mark.slow  # a real kernel runs the tutorial (about 20 s)
def test_tutorial_plan_counts_the_bases_the_chapter_computes(tmp_path):
    """Oracle: the tutorial, run with its quick parameters and an empty basis cache, writes one cache entry per
    distinct basis it computes; the plan must count as many (the first rule counted only the methods and the
    reference, 2 of the 8 bases of the issue-28 command)."""
    planned, written = _planned_and_written("local_basis_tutorial", tmp_path)
    assert planned == [("model", written)]


def test_discrepancy_bases_count_the_lag_times_the_control_additions_and_the_sensitivity_rows():
    """The rehearsal's timestep_discrepancy (n 4, times 0.7/0.5/0.3, lag 0.25 from anchor 0.5, control at
    0.7/0.3, ablation 0.7/0.3, 4 sensitivity samples) drew bars of 16 study bases (0.75 = anchor + lag is a time
    of the study), 16 random-weight bases (anchor and 0.75 added to the control), 8 of the noise floor (anchor
    and next step, other solver seed), 8 + 8 crossed and 2 x 4 x 4 sensitivity bases; the first formula counted
    44 of these 88."""
    import importlib.util

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("paper_rehearsal", root / "benchmarks" / "paper_rehearsal.py")
    rehearsal = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rehearsal)
    v = rehearsal.REDUCED["timestep_discrepancy"]  # the counts of the rehearsal's bars
    assert bp.BASES["timestep_discrepancy"](v) == [("model", 16 + 16 + 8 + 8 + 8 + 32)]
    # ablation times outside the control's: no crossed control; fewer sensitivity samples than asked when
    # n_samples is smaller; the coarse-to-fine rows likewise
    assert bp.BASES["timestep_discrepancy"](dict(v, control_times=[0.3])) == [("model", 16 + 12 + 8 + 8 + 32)]
    assert bp.BASES["coarse_to_fine"](
        dict(n_samples=3, times=[0.7, 0.3], control_times=[0.7], sensitivity_samples=10)
    ) == [("model", 3 * 3 + 4 * 3)]


@pytest.mark.slow  # a real kernel runs the chapter (about 35 s)
def test_discrepancy_plan_counts_the_bases_the_chapter_computes(tmp_path):
    """Oracle as for the tutorial: 88 bases at these counts; the plan counted 44 before the rehearsal's bars
    showed the rest."""
    planned, written = _planned_and_written("timestep_discrepancy", tmp_path)
    assert planned == [("model", written)]
