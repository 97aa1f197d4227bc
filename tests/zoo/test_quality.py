"""The quality bar (pullback_utils.zoo.quality): calibration by simulation, the cards it reads, the
record beside the weights, and the chapters' gate."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from pullback_utils.book.params import notebook_defaults
from pullback_utils.chapters import chapter
from pullback_utils.zoo import evaluate as ev
from pullback_utils.zoo import quality as Q
from pullback_utils.zoo.registry import LADDER_MODELS, ZOO_MODELS, is_bundled, model_dir

REPO = Path(__file__).resolve().parents[2]
CARDS = REPO / "book" / "model_cards"
NOTEBOOKS = REPO / "notebooks"


def _numbers(clean=0.95, memo=0.05, n=256, obeyed=None):
    out = {"n_samples": n, "memorisation": memo, "clean": clean}
    if obeyed is not None:
        out["obeyed"] = obeyed
    return out


def test_bar_on_known_numbers():
    assert Q.check_bar(_numbers()).meets
    q = Q.check_bar(_numbers(clean=0.89))
    assert not q.meets and q.misses == ["clean samples 89.0 % < 90 %"]
    assert "misses the bar: clean samples 89.0 %" in q.sentence()
    lo, hi = Q.memorisation_band(256)
    assert not Q.check_bar(_numbers(memo=hi + 0.01)).meets  # memorises: a miss
    below = Q.check_bar(_numbers(memo=0.0))  # further from the training set than fresh data: a note
    assert below.meets and below.notes and "note:" in below.sentence()
    assert not Q.check_bar({"n_samples": 128, "memorisation": 0.05}).meets  # no fidelity score at all


def test_bar_reads_only_the_attributes_a_chapter_varies():
    obeyed = {"shape": 0.4, "colour": 1.0, "background": 0.95, "position": 0.91, "size": 0.68}
    assert Q.check_bar(_numbers(obeyed=obeyed), ["colour", "background", "position"]).meets
    q = Q.check_bar(_numbers(obeyed=obeyed), ["colour", "shape"])
    assert q.misses == ["'shape' obeyed 40 % < 90 %"]
    assert len(Q.check_bar(_numbers(obeyed=obeyed)).misses) == 2  # default: every measured attribute
    with pytest.raises(ValueError, match="attributes: \\['mood'\\]"):
        Q.check_bar(_numbers(obeyed=obeyed), ["mood"])


def test_varied_attributes_read_with_the_captions_vocabulary():
    prompts = ["a small red circle", "a large red circle", "a small blue square", "a large blue square"]
    assert Q.varied_attributes(prompts) == ["shape", "colour", "size"]
    assert Q.varied_attributes(["a red circle on a blue background", "a red circle"]) == ["background"]
    assert Q.varied_attributes(["a photo of a cat", "a dog"]) == []  # outside the vocabulary


def test_memorisation_band_is_wider_than_two_points_and_validated():
    lo, hi = Q.memorisation_band(256)
    assert lo <= 0.03 and hi >= 0.07
    assert Q.memorisation_band(256) == Q.memorisation_band(256)  # seeded: the same band every time
    with pytest.raises(ValueError, match="n_samples"):
        Q.memorisation_band(0)


def _images(z: torch.Tensor) -> torch.Tensor:
    """Points of a 4-dimensional latent space rendered as small (N, 3, 4, 4) images in [-1, 1] (the
    statistic reads flattened pixels, so the size only sets the cost)."""
    g = torch.Generator().manual_seed(123)
    basis = torch.randn(4, 3 * 4 * 4, generator=g) / 2
    return torch.tanh(z @ basis).reshape(-1, 3, 4, 4)


def test_a_model_that_draws_its_data_passes_the_memorisation_bar_at_the_stated_rate():
    """The card's own statistic (evaluate.memorisation) on samples drawn from the data distribution:
    the upper end of the band is crossed in at most 0.5 % + MC error of runs (the band's design), and
    a model that copies 20 % of its samples from the training set is caught."""
    n, sims, g = 128, 300, torch.Generator().manual_seed(0)
    _, hi = Q.memorisation_band(n)
    fails, caught = 0, 0
    for _ in range(sims):
        train = _images(torch.randn(400, 4, generator=g))
        fresh = _images(torch.randn(n, 4, generator=g))
        samples = _images(torch.randn(n, 4, generator=g))
        share = ev.memorisation(samples, fresh, train)[0]["share_samples_closer_than_fresh_p05"]
        fails += share > hi
        copies = samples.clone()
        copies[: n // 5] = train[: n // 5] + 1e-3 * torch.randn(n // 5, 3, 4, 4, generator=g)
        caught += ev.memorisation(copies, fresh, train)[0]["share_samples_closer_than_fresh_p05"] > hi
    assert fails / sims <= 0.005 + 3 * np.sqrt(0.005 * 0.995 / sims)
    assert caught == sims


@pytest.mark.parametrize("name", list(ZOO_MODELS) + list(LADDER_MODELS))
def test_every_bundled_model_has_a_bar_record_that_matches_its_card_and_weights(name):
    if not is_bundled(name):
        pytest.skip(f"{name} has no bundled weights")
    card_dir = CARDS / "ladder" / name if name in LADDER_MODELS else CARDS / name
    card = json.loads((card_dir / "card.json").read_text())
    numbers = Q.read_quality(model_dir(name))
    assert numbers is not None, f"{name}: quality.json missing or measured on other weights"
    assert numbers == Q.card_numbers(card)
    md = (card_dir.with_suffix(".md")).read_text()
    assert Q.check_bar(numbers).sentence() in md  # the card prints the bar's verdict


def test_retrained_weights_count_as_unmeasured(tmp_path):
    folder = tmp_path / "disks"
    shutil.copytree(model_dir("disks"), folder)
    assert Q.model_quality(str(folder)).meets
    (folder / "WEIGHTS.sha256").write_text("0" * 64 + "  unet/diffusion_pytorch_model.safetensors\n")
    q = Q.model_quality(str(folder))
    assert not q.measured and not q.meets and "zoo card" in q.sentence()
    assert Q.model_quality("google/ddpm-cifar10-32") is None  # not a zoo model: nothing to check


def _defaults(nb: str) -> dict:
    return {k: v for k, v in notebook_defaults(NOTEBOOKS / f"{nb}.ipynb").items() if v is not None}


@pytest.mark.parametrize(
    "nb", ["coarse_to_fine", "timestep_discrepancy", "editing", "prompt_influence", "dataset_complexity"]
)
def test_each_deciding_chapter_runs_its_default_models_only_as_the_cards_allow(nb, tmp_path):
    """Reads the cards through quality.json: a chapter's default model either meets the bar or the
    chapter's default parameters run it as an exploration (which its records then carry)."""
    params = dict(_defaults(nb), output_dir=str(tmp_path), cache_dir="")
    models = chapter._decided_models(nb, params)
    assert models
    attributes = Q.varied_attributes(params["prompts"]) if "prompts" in params else None
    misses = [m for m in models if not Q.model_quality(m, attributes).meets]
    assert params["exploration"] == bool(misses), (nb, misses)
    ch = chapter.setup(nb, params)
    assert set(ch.quality) == set(models)
    if misses:
        with pytest.raises(Q.BarNotMet, match=r"misses the bar.*exploration=True"):
            chapter.setup(nb, dict(params, exploration=False))


def test_exploration_is_carried_by_the_records(tmp_path):
    from pullback_utils.analysis import inference as inf

    params = dict(_defaults("prompt_influence"), output_dir=str(tmp_path), cache_dir="")
    ch = chapter.setup("prompt_influence", params)
    res = inf.sign_flip_test(np.linspace(-0.2, 1.0, 10), unit="prompt-state", seed=0)
    rec = ch.claim(
        "text_influence_fades",
        res,
        model="shapes-text",
        baselines={"spectrum_matched": 0.0},
        controls={"random_weights": 0.0},
    )
    assert rec["exploration"] is True and rec["model_quality"].startswith("misses the bar")
