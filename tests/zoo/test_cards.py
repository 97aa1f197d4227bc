"""The model cards: measurement helpers, the sampler they use, the text, the index pages, end to end."""

from __future__ import annotations

import json
import re

import pytest
import torch

from pullback_utils.zoo import card_index, card_text, cards
from pullback_utils.zoo import evaluate as ev
from pullback_utils.zoo.datasets import SHAPES, make_dataset
from pullback_utils.zoo.registry import WEIGHTS_DIR, ZOO_MODELS


def test_fit_recovers_real_disks():
    d = make_dataset("disks", 8, seed=21)
    fit = ev.fit_factors("disks", d.images, progress=False)
    assert fit["rmse"].shape == (8,)
    assert (fit["rmse"] < ev.FIDELITY_RMSE / 4).all()
    assert torch.allclose(fit["factors"][:, :3], d.factors[:, :3], atol=0.01)


def test_nearest_distances():
    train = make_dataset("shapes", 32, seed=1).images
    q = torch.cat([train[5:6], -train[:1]])
    dist, idx = ev.nearest_distances(q, train, chunk=7)
    assert idx[0] == 5 and dist[0] < 1e-3 and dist[1] > 0.05


def _oracle_model(x0: torch.Tensor, noise: torch.Tensor):
    """A DiffusionModel whose U-Net outputs the exact v target of (x0, noise) at every timestep."""
    from pullback_utils.models.diffusion_model import DiffusionModel
    from pullback_utils.zoo.unet import make_scheduler

    acp = make_scheduler().alphas_cumprod

    class Oracle(torch.nn.Module):
        def forward(self, xt, t):
            a = acp[t].view(-1, 1, 1, 1)
            return (a.sqrt() * noise - (1 - a).sqrt() * x0,)

    return DiffusionModel(Oracle(), make_scheduler(), conditional=False, sample_shape=(3, 32, 32))


def test_heldout_loss_of_an_oracle_is_zero():
    """A U-Net stand-in that outputs the exact v target has zero epsilon error (model.eps converts
    v to eps on the card's timesteps); a wrong timestep convention would not."""
    x0 = make_dataset("disks", 4, seed=0).images
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    res = ev.heldout_loss(_oracle_model(x0, noise), x0, timesteps=(10, 500, 999), seed=0)
    assert set(res) == {10, 500, 999} and max(res.values()) < 1e-8


def test_card_samples_are_the_package_sampler(tmp_path):
    """The card's samples are ddim_sample from model.noise(n, seed), level T to 0, whatever the
    batch (the book's sampler: no x_0 clipping, only the final images clamped)."""
    from pullback_utils.diffusion.ddim import ddim_sample
    from pullback_utils.zoo import train as tr
    from pullback_utils.zoo.loading import load_model

    tr.train("disks", 2, batch_size=2, tiny=True, n_train=8, out_dir=tmp_path / "m", cache_dir=None, progress=False)
    model = load_model(tmp_path / "m")
    got = ev.sample_images(model, 5, steps=3, seed=7, batch=2, progress=False)
    want = ddim_sample(model, model.noise(5, 7), 1.0, 0, steps=3).clamp(-1, 1)
    assert torch.allclose(got, want, atol=1e-5)
    with pytest.raises(ValueError, match="steps: must be an int >= 1"):
        ev.sample_images(model, 2, steps=0)
    with pytest.raises(ValueError, match="prompt: expected 1 or n=3 prompts"):
        ev.sample_images(model, 3, steps=2, prompt=["a", "b"])


def test_prompts_obeyed_oracle_and_mismatch():
    """A 'fit' equal to the prompts' own factors obeys every attribute; fits of other images
    (a cyclic shift: different colour pairs by construction of the draw) obey fewer."""
    d = make_dataset("shapes-text", 64, seed=3)
    true_fit = {"factors": d.factors, "shape": d.discrete["shape"], "rmse": torch.zeros(64)}
    ok = ev.prompts_obeyed(true_fit, d.factors, d.discrete)
    assert set(ok) == {"shape", "colour", "background", "position", "size", "colour+shape", "all"}
    assert all(v == 1.0 for v in ok.values())
    shifted = {"factors": d.factors.roll(1, 0), "shape": d.discrete["shape"].roll(1, 0), "rmse": torch.zeros(64)}
    bad = ev.prompts_obeyed(shifted, d.factors, d.discrete)
    assert bad["all"] < 0.2 and bad["colour"] < 0.5


def _res(**extra) -> dict:
    return {
        "n_samples": 8,
        "ddim_steps": 5,
        "sampler": "package-ddim",
        "heldout_loss": {10: 0.1},
        "memorisation": {
            "n_train": 1,
            "sample_nn_median": 0.1,
            "sample_nn_p05": 0.1,
            "fresh_nn_median": 0.1,
            "fresh_nn_p05": 0.1,
            "share_samples_closer_than_fresh_p05": 0.0,
        },
        **extra,
    }


def _info(name: str) -> tuple[dict, dict]:
    path = WEIGHTS_DIR / name
    return (json.loads((path / "zoo.json").read_text()), json.loads((path / "unet" / "config.json").read_text()))


def test_card_markdown_shows_the_guidance_sweep():
    info, cfg = _info("shapes-text")
    att = {
        "shape": 0.25,
        "colour": 0.9,
        "background": 1.0,
        "position": 0.9,
        "size": 0.5,
        "colour+shape": 0.2,
        "all": 0.1,
    }
    res = _res(
        guidance=1.0,
        prompts_obeyed=att,
        prompts_chance={"shape": 0.25},
        guidance_sweep={
            "n_samples": 8,
            "obeyed": {"1.0": {**att, "explained": 0.7}, "3.0": {**att, "colour": 0.1, "explained": 0.1}},
        },
    )
    md = card_text.card_markdown("shapes-text", info, res, cfg)
    assert "| attribute | guidance 1.0 | guidance 3.0 |" in md
    assert "| colour | 90.0 % | 10.0 % |" in md and "| explained | 70.0 % | 10.0 % |" in md


def test_card_says_which_sampler():
    info, cfg = _info("disks")
    md = card_text.card_markdown("disks", info, _res(), cfg)
    assert "the package's deterministic DDIM, eta=0, no clipping, 5 steps" in md
    old = {k: v for k, v in _res().items() if k != "sampler"}  # a card measured before the switch
    assert "diffusers' DDIMScheduler" in card_text.card_markdown("disks", info, old, cfg)


def _options_outside_code(md: str) -> list[str]:
    """Every '--' of ``md`` outside code spans and table rules."""
    text = re.sub(r"`[^`]*`", "", md)
    return [line for line in text.splitlines() if "--" in line and not re.fullmatch(r"[|\-\s]*", line)]


def test_command_lines_stay_in_code_spans():
    """Options in a note by eye ('(--device cuda --channels 64,128,128)') are put in code spans,
    so the book's typography cannot turn '--' into an en-dash; the generated texts have none outside."""
    assert (
        card_text.code_options("a run (--device cuda --channels 64,128,128) or `--steps N`; --tiny.")
        == "a run (`--device cuda` `--channels 64,128,128`) or `--steps N`; `--tiny`."
    )
    info, cfg = _info("shapes")
    notes = {"step": info["steps"], "text": "a GPU run (--device cuda --channels 64,128,128) is next"}
    md = card_text.card_markdown("shapes", info, _res(), cfg, notes)
    assert "(`--device cuda` `--channels 64,128,128`)" in md
    assert _options_outside_code(md) == []
    assert _options_outside_code(card_index.index_markdown()) == []
    assert _options_outside_code(card_index.ladder_markdown()) == []


def test_index_lists_every_model_with_its_scores(tmp_path):
    cdir, wdir = tmp_path / "cards", tmp_path / "weights"
    (wdir / "disks").mkdir(parents=True)
    (wdir / "disks" / "zoo.json").write_text(json.dumps({"steps": 120}))
    (cdir / "disks").mkdir(parents=True)
    (cdir / "disks" / "card.json").write_text(
        json.dumps(
            {
                "steps": 100,
                "fidelity": {
                    "samples_explained": 0.5,
                    "samples_explained_visible": 0.25,
                    "threshold_rmse": 0.04,
                    "samples_clean": 0.125,
                    "iou_threshold": 0.9,
                    "data_clean": 1.0,
                },
                "memorisation": {"share_samples_closer_than_fresh_p05": 0.03},
            }
        )
    )
    (cdir / "disks" / "notes.json").write_text(json.dumps({"step": 120, "summary": "round", "text": "x"}))
    md = card_index.index_markdown(cdir, wdir)
    row = next(line for line in md.splitlines() if line.startswith("| `disks`"))
    assert "| 120 |" in row and "25 % of samples fit a rendered disk within RMS 0.04" in row
    assert "12 % are clean disks (foreground IoU >= 0.9; data: 100 %)" in row
    assert "3 % of samples nearer" in row and "(card measured at step 100)" in row
    assert "| round |" in row
    rows = [line for line in md.splitlines() if line.startswith("| `")]
    assert [r.split("`")[1] for r in rows] == list(ZOO_MODELS)  # the zoo's order, none dropped
    assert "no card yet" in next(line for line in md.splitlines() if line.startswith("| `shapes` |"))


def test_ladder_table_rows_trained_or_not(tmp_path):
    from pullback_utils.zoo.registry import LADDER_MODELS

    cdir, wdir = tmp_path / "cards", tmp_path / "weights"
    (wdir / "ladder" / "ladder-3-s1").mkdir(parents=True)
    (wdir / "ladder" / "ladder-3-s1" / "zoo.json").write_text(json.dumps({"steps": 6000}))
    (wdir / "ladder" / "ladder-2-s0").mkdir(parents=True)
    (wdir / "ladder" / "ladder-2-s0" / "zoo.json").write_text(json.dumps({"steps": 10}))
    (cdir / "ladder" / "ladder-3-s1").mkdir(parents=True)
    (cdir / "ladder" / "ladder-3-s1" / "card.json").write_text(
        json.dumps(
            {
                "steps": 6000,
                "fidelity": {"samples_clean": 0.875, "data_clean": 1.0, "samples_median_iou": 0.95},
                "memorisation": {"share_samples_closer_than_fresh_p05": 0.0625},
            }
        )
    )
    md = card_index.ladder_markdown(cdir, wdir)
    rows = [line for line in md.splitlines() if re.match(r"\| \d \|", line)]
    assert len(rows) == len(LADDER_MODELS) == 15
    assert [r.split(" | ")[:3] for r in rows[:4]] == [
        ["| 1", "2 (position)", "0"],
        ["| 1", "2 (position)", "1"],
        ["| 1", "2 (position)", "2"],
        ["| 2", "3 (radius)", "0"],
    ]
    assert rows[7] == (
        "| 3 | 6 (colour) | 1 | 6000 | 87.5 % | 100.0 % | 0.950 | 6.2 % | [card](ladder/ladder-3-s1.md) |"
    )
    assert "| 2 | 3 (radius) | 0 | 10 | no card yet |" in rows[3]
    assert rows[0].endswith("| not trained | – | – | – | – | – |") and "15 (two disks)" in rows[-1]


def test_toc_lists_cards_in_the_zoo_order():
    """The appendix's sidebar lists the main zoo's cards in the catalogue's order, then the ladder
    (its models rung by rung), instead of a glob's alphabetical order."""
    import yaml

    from pullback_utils.zoo.paths import REPO_ROOT

    toc = yaml.safe_load((REPO_ROOT / "book" / "_toc.yml").read_text())
    appendix = next(p for p in toc["parts"] if p.get("caption") == "Appendix")
    cards_entry = next(c for c in appendix["chapters"] if c.get("file") == "model_cards/index")
    files = [s["file"] for s in cards_entry["sections"]]
    assert files == [f"model_cards/{n}" for n in ZOO_MODELS] + ["model_cards/ladder"]
    ladder_entry = cards_entry["sections"][-1]
    assert [s["file"] for s in ladder_entry["sections"]] == [
        f"model_cards/ladder/{n}" for n in card_index.ladder_order()
    ]


def test_notes_are_read_from_the_cards_out_dir(tmp_path):
    """The bug: card_markdown read notes.json from the package's book/model_cards, not from the
    out_dir the card is written to. The repository's disks card has notes; a card written to
    another folder must show that folder's notes (here: none, then one)."""
    from pullback_utils.zoo import train as tr

    model_dir = tmp_path / "weights" / "disks"
    tr.train("disks", 2, batch_size=2, tiny=True, n_train=8, out_dir=model_dir, cache_dir=None, progress=False)
    out = tmp_path / "cards"
    (out / "disks").mkdir(parents=True)
    (out / "disks" / "card.json").write_text(json.dumps({"name": "disks", "steps": 2, **_res()}))
    cards.rewrite_markdown("disks", model_dir, out)
    assert "Seen in the grids" not in (out / "disks.md").read_text()
    (out / "disks" / "notes.json").write_text(json.dumps({"step": 2, "text": "tmp-notes-xyz", "summary": "s"}))
    cards.rewrite_markdown("disks", model_dir, out)
    md = (out / "disks.md").read_text()
    assert "Seen in the grids at step 2: tmp-notes-xyz" in md
    assert "| s |" in (out / "index.md").read_text()
    with pytest.raises(ValueError, match="name: 'shapes' has no stored card"):
        cards.rewrite_markdown("shapes", model_dir, out)


def test_bad_card_arguments():
    with pytest.raises(ValueError, match="name: unknown zoo model 'diskz'.*did you mean 'disks'"):
        cards.write_card("diskz")
    with pytest.raises(ValueError, match="ddim_steps: must be an int >= 1"):
        cards.write_card("disks", ddim_steps=0)
    with pytest.raises(ValueError, match="n_samples: must be an int >= 1"):
        cards.write_card("disks", n_samples=2.5)


def test_foreground_iou_oracles():
    """True factors as the 'fit' give IoU ~1; the wrong shape type at the same place scores lower;
    a plain background (no foreground anywhere) scores 0."""
    d = make_dataset("shapes", 32, seed=4)
    truth = {"factors": d.factors, "shape": d.discrete["shape"]}
    iou = ev.foreground_iou("shapes", d.images, truth)
    assert iou.shape == (32,) and (iou >= 0.97).all()
    is_plus = d.discrete["shape"] == SHAPES.index("plus")
    wrong = {"factors": d.factors, "shape": torch.where(is_plus, 0, SHAPES.index("plus"))}
    assert (ev.foreground_iou("shapes", d.images, wrong) < 0.9).all()
    blank = d.factors[:, 7:10].clone()[:, :, None, None].expand(-1, -1, 32, 32) * 2 - 1
    assert (ev.foreground_iou("shapes", blank, truth) == 0).all()
    dd = make_dataset("disks", 16, seed=4)
    assert (ev.foreground_iou("disks", dd.images, {"factors": dd.factors}) >= 0.97).all()


@pytest.mark.parametrize("name", ["disks", "shapes-text", "ladder-5-s0"])
def test_write_card_end_to_end_on_a_tiny_model(tmp_path, name):
    from pullback_utils.zoo import train as tr
    from pullback_utils.zoo.registry import LADDER_DIR

    ladder = name.startswith("ladder-")
    model_dir = tmp_path / "weights" / (f"{LADDER_DIR}/{name}" if ladder else name)
    tr.train(name, 2, batch_size=2, tiny=True, n_train=8, out_dir=model_dir, cache_dir=None, progress=False)
    res = cards.write_card(
        name, model_path=model_dir, out_dir=tmp_path / "cards", n_samples=4, ddim_steps=2, progress=False
    )
    folder = tmp_path / "cards" / ("ladder" if ladder else "") / name
    stored = json.loads((folder / "card.json").read_text())
    assert stored["steps"] == 2 and stored["samples_finite"] is True and stored["sampler"] == "package-ddim"
    fi = stored["fidelity"]
    assert 0 <= fi["samples_clean"] <= fi["samples_visible"] <= 1 and fi["data_clean"] == 1.0
    for png in ("samples", "data", "loss") + (() if ladder else ("neighbours",)):
        assert (folder / f"{png}.png").is_file()
    from PIL import Image

    assert Image.open(folder / "samples.png").size == (3 * (4 * 32 + 5 * 2), 3 * (32 + 2 * 2))
    md = folder.with_suffix(".md").read_text()
    assert "the package's deterministic DDIM, eta=0, no clipping, 2 steps" in md
    assert _options_outside_code(md) == []
    if ladder:
        assert "Clean disks:" in md and "15 free factors" in md and "heldout_loss" not in stored
        table = (tmp_path / "cards" / "ladder.md").read_text()
        assert "| 5 | 15 (two disks) | 0 | 2 |" in table and "[card](ladder/ladder-5-s0.md)" in table
        assert "| 1 | 2 (position) | 0 | not trained |" in table
        return
    assert "clean shape (IoU)" in md or "clean disk (IoU)" in md
    index = (tmp_path / "cards" / "index.md").read_text()
    assert f"| `{name}` |" in index and "| 2 |" in index
    if name == "shapes-text":
        assert res["guidance"] == 1.0
        assert set(res["guidance_sweep"]["obeyed"]) == {str(g) for g in cards.GUIDANCE_SWEEP}
        assert "| attribute | guidance 1.0 | guidance 2.0 | guidance 3.0 |" in md
