"""Measurement helpers of the model cards: renderer fitting, nearest neighbours, held-out loss."""

from __future__ import annotations

import pytest
import torch

from pullback_utils.zoo import cards
from pullback_utils.zoo.datasets import make_dataset


def test_fit_recovers_real_disks():
    d = make_dataset("disks", 8, seed=21)
    fit = cards.fit_factors("disks", d.images, progress=False)
    assert fit["rmse"].shape == (8,)
    assert (fit["rmse"] < cards.FIDELITY_RMSE / 4).all()
    assert torch.allclose(fit["factors"][:, :3], d.factors[:, :3], atol=0.01)


def test_nearest_distances():
    train = make_dataset("shapes", 32, seed=1).images
    q = torch.cat([train[5:6], -train[:1]])
    dist, idx = cards.nearest_distances(q, train, chunk=7)
    assert idx[0] == 5 and dist[0] < 1e-3 and dist[1] > 0.05


def test_heldout_loss_of_an_oracle_is_zero(tmp_path):
    """A U-Net stand-in that outputs the exact v target has zero epsilon error."""
    from pullback_utils.zoo.train import make_scheduler

    make_scheduler().save_pretrained(tmp_path)
    acp = make_scheduler().alphas_cumprod
    x0 = make_dataset("disks", 4, seed=0).images
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))

    class Oracle(torch.nn.Module):
        def forward(self, xt, t):
            a = acp[t].view(-1, 1, 1, 1)
            v = a.sqrt() * noise - (1 - a).sqrt() * x0

            class Out:
                sample = v
            return Out()

    res = cards.heldout_loss(Oracle(), tmp_path, x0, timesteps=(10, 500), seed=0)
    assert max(res.values()) < 1e-8


def test_prompts_obeyed_oracle_and_mismatch():
    """A 'fit' equal to the prompts' own factors obeys every attribute; fits of other images
    (a cyclic shift: different colour pairs by construction of the draw) obey fewer."""
    d = make_dataset("shapes-text", 64, seed=3)
    true_fit = {"factors": d.factors, "shape": d.discrete["shape"], "rmse": torch.zeros(64)}
    ok = cards.prompts_obeyed(true_fit, d.factors, d.discrete)
    assert set(ok) == {"shape", "colour", "background", "position", "size", "colour+shape", "all"}
    assert all(v == 1.0 for v in ok.values())
    shifted = {"factors": d.factors.roll(1, 0), "shape": d.discrete["shape"].roll(1, 0),
               "rmse": torch.zeros(64)}
    bad = cards.prompts_obeyed(shifted, d.factors, d.discrete)
    assert bad["all"] < 0.2 and bad["colour"] < 0.5


def test_card_markdown_shows_the_guidance_sweep():
    import json

    path = cards.WEIGHTS_DIR / "shapes-text"
    info = json.loads((path / "zoo.json").read_text())
    cfg = json.loads((path / "unet" / "config.json").read_text())
    att = {"shape": 0.25, "colour": 0.9, "background": 1.0, "position": 0.9, "size": 0.5,
           "colour+shape": 0.2, "all": 0.1}
    res = {"n_samples": 8, "ddim_steps": 5, "guidance": 1.0, "heldout_loss": {10: 0.1},
           "memorisation": {"n_train": 1, "sample_nn_median": 0.1, "sample_nn_p05": 0.1,
                            "fresh_nn_median": 0.1, "fresh_nn_p05": 0.1,
                            "share_samples_closer_than_fresh_p05": 0.0},
           "prompts_obeyed": att, "prompts_chance": {"shape": 0.25},
           "guidance_sweep": {"n_samples": 8, "obeyed": {
               "1.0": {**att, "explained": 0.7}, "3.0": {**att, "colour": 0.1, "explained": 0.1}}}}
    md = cards.card_markdown("shapes-text", info, res, cfg)
    assert "| attribute | guidance 1.0 | guidance 3.0 |" in md
    assert "| colour | 90.0 % | 10.0 % |" in md and "| explained | 70.0 % | 10.0 % |" in md


def test_index_lists_every_model_with_its_scores(tmp_path):
    import json

    cdir, wdir = tmp_path / "cards", tmp_path / "weights"
    (wdir / "disks").mkdir(parents=True)
    (wdir / "disks" / "zoo.json").write_text(json.dumps({"steps": 120}))
    (cdir / "disks").mkdir(parents=True)
    (cdir / "disks" / "card.json").write_text(json.dumps({
        "steps": 100, "fidelity": {"samples_explained": 0.5, "samples_explained_visible": 0.25,
                                   "threshold_rmse": 0.04, "samples_clean": 0.125,
                                   "iou_threshold": 0.9, "data_clean": 1.0},
        "memorisation": {"share_samples_closer_than_fresh_p05": 0.03}}))
    (cdir / "disks" / "notes.json").write_text(json.dumps({"step": 120, "summary": "round", "text": "x"}))
    md = cards.index_markdown(cdir, wdir)
    row = next(line for line in md.splitlines() if line.startswith("| `disks`"))
    assert "| 120 |" in row and "25 % of samples fit a rendered disk within RMS 0.04" in row
    assert "12 % are clean disks (foreground IoU >= 0.9; data: 100 %)" in row
    assert "3 % of samples nearer" in row and "(card measured at step 100)" in row
    assert "| round |" in row
    for name in cards.MODELS:  # models without weights or a card are listed, not dropped
        assert f"| `{name}` |" in md
    assert "no card yet" in next(line for line in md.splitlines() if line.startswith("| `shapes` |"))


def test_foreground_iou_oracles():
    """True factors as the 'fit' give IoU ~1; the wrong shape type at the same place scores lower;
    a plain background (no foreground anywhere) scores 0."""
    d = make_dataset("shapes", 32, seed=4)
    truth = {"factors": d.factors, "shape": d.discrete["shape"]}
    iou = cards.foreground_iou("shapes", d.images, truth)
    assert iou.shape == (32,) and (iou >= 0.97).all()
    is_plus = d.discrete["shape"] == cards.SHAPES.index("plus")
    wrong = {"factors": d.factors, "shape": torch.where(is_plus, 0, cards.SHAPES.index("plus"))}
    assert (cards.foreground_iou("shapes", d.images, wrong) < 0.9).all()
    blank = d.factors[:, 7:10].clone()[:, :, None, None].expand(-1, -1, 32, 32) * 2 - 1
    assert (cards.foreground_iou("shapes", blank, truth) == 0).all()
    dd = make_dataset("disks", 16, seed=4)
    assert (cards.foreground_iou("disks", dd.images, {"factors": dd.factors}) >= 0.97).all()


@pytest.mark.parametrize("name", ["disks", "shapes-text"])
def test_write_card_end_to_end_on_a_tiny_model(tmp_path, name):
    import json

    from pullback_utils.zoo import train as tr

    model_dir = tmp_path / "weights" / name
    tr.train(name, 2, batch_size=2, tiny=True, n_train=8, out_dir=model_dir, cache_dir=None,
             progress=False)
    res = cards.write_card(name, model_path=model_dir, out_dir=tmp_path / "cards", n_samples=4,
                           ddim_steps=2, progress=False)
    stored = json.loads((tmp_path / "cards" / name / "card.json").read_text())
    assert stored["steps"] == 2 and stored["samples_finite"] is True
    fi = stored["fidelity"]
    assert 0 <= fi["samples_clean"] <= fi["samples_visible"] <= 1 and fi["data_clean"] == 1.0
    for png in ("samples", "data", "loss", "neighbours"):
        assert (tmp_path / "cards" / name / f"{png}.png").is_file()
    md = (tmp_path / "cards" / f"{name}.md").read_text()
    assert "clean shape (IoU)" in md
    index = (tmp_path / "cards" / "index.md").read_text()
    assert f"| `{name}` |" in index and "| 2 |" in index
    if name == "shapes-text":
        assert res["guidance"] == 1.0
        assert set(res["guidance_sweep"]["obeyed"]) == {str(g) for g in cards.GUIDANCE_SWEEP}
        assert "| attribute | guidance 1.0 | guidance 2.0 | guidance 3.0 |" in md
