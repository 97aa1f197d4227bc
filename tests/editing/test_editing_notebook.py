"""The editing chapter runs end to end with tiny parameters (papermill; slow)."""

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
    if not nb.is_file():
        pytest.skip("notebooks/editing.ipynb is not written yet")
    from pullback_utils.book import _venv_kernel

    out = tmp_path / "out"
    out.mkdir()
    with _venv_kernel():
        pm.execute_notebook(
            str(nb), str(out / "editing.ipynb"), kernel_name="python3", cwd=str(out),
            parameters=dict(model=str(folder), text_model=str(text_folder), quick=True, output_dir=".",
                            prompt_pair=["a dog", "a cat"]),
            progress_bar=False,
        )
    import json

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == str(folder)
    assert not metrics["prompt"].get("skipped") and metrics["prompt"]["geodesic_distance"]
    assert metrics["transport"]["per_sample"] and metrics["guidance_vs_naive"]["per_sample"]
    assert any(p.suffix == ".png" for p in out.iterdir())
