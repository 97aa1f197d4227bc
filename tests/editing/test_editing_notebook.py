"""The editing chapter runs end to end on a model of the user's own (a saved random-weight pipeline) and a
latent text model (papermill; slow)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.mark.slow
def test_editing_notebook_runs_with_tiny_parameters(tmp_path):
    pm = pytest.importorskip("papermill")
    from diffusion_helpers import save_pixel_pipeline, save_sd_pipeline

    folder = save_pixel_pipeline(tmp_path / "pipe")
    text_folder = save_sd_pipeline(tmp_path / "sd")  # a latent text model: exercises the prompt section
    nb = Path(__file__).resolve().parents[2] / "notebooks" / "editing.ipynb"
    from pullback_utils.book import _venv_kernel

    out = tmp_path / "out"
    out.mkdir()
    with _venv_kernel():
        pm.execute_notebook(
            str(nb),
            str(out / "editing.ipynb"),
            kernel_name="python3",
            cwd=str(out),
            parameters=dict(
                model=str(folder),
                text_model=str(text_folder),
                output_dir=".",
                cache_dir="",
                prompt_pair=["a dog", "a cat"],
                n_samples=3,
                edit_times=[0.7, 0.4],
                k=2,
                tol=0.1,
                max_iters=3,
                edit_settings={"n_steps": 3, "n_steps_prompt": 2, "inversion_steps": 7},  # both models
            ),
            progress_bar=False,
        )

    from pullback_utils.claims import read_metrics

    metrics = read_metrics(out / "metrics.json")  # the records follow the contract
    rec = metrics["claims"]["editing"]
    assert rec["model"] == str(folder) and rec["n_units"] == 3
    assert rec["measure"].startswith("the model's own denoising error")  # a model without a renderer
    assert (out / "prompt_edits.png").is_file() and (out / "guidance_vs_naive.png").is_file()
    used = metrics["settings"]  # the edit settings the chapter ran with: the model's, with edit_settings applied
    assert (used["n_steps"], used["inversion_steps"]) == (3, 7) and "edit_settings" in used["source"]
    text = metrics["text_settings"]  # the text model's own defaults, with the same overrides
    assert (text["n_steps"], text["n_steps_prompt"], text["inversion_steps"]) == (3, 2, 7)
