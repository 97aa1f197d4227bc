"""Fitting the renderer to images, and the foreground IoU score, on every fitted family."""

from __future__ import annotations

import pytest
import torch

from pullback_utils.zoo import fitting, ladder
from pullback_utils.zoo.datasets import make_dataset

LADDER = [ladder.dataset_name(r) for r in ladder.RUNGS]


@pytest.mark.parametrize("family", LADDER)
def test_true_factors_give_iou_one_and_a_blank_image_zero(family):
    """Real draws of each rung: their own factors as the 'fit' give IoU >= 0.97 (rung 5 scores
    the union of both disks); the rung's plain background without any disk scores 0."""
    d = make_dataset(family, 32, seed=5)
    truth = {"factors": d.factors}
    iou = fitting.foreground_iou(family, d.images, truth)
    assert iou.shape == (32,) and (iou >= 0.97).all()
    assert fitting.visible(family, truth).all()
    bg, _ = fitting.shape_layout(family, d.factors)
    blank = bg[:, :, None, None].expand(-1, -1, 32, 32) * 2 - 1
    assert (fitting.foreground_iou(family, blank, truth) == 0).all()


def test_rung5_iou_counts_both_disks():
    """Leaving out the second disk of a rung-5 image (its radius set to 0 in the 'fit') lowers the
    IoU to about the share of the foreground the first disk covers, far below 0.97."""
    d = make_dataset("ladder-5", 32, seed=6)
    one = d.factors.clone()
    one[:, 11] = 0.0
    iou = fitting.foreground_iou("ladder-5", d.images, {"factors": one})
    assert (iou < 0.9).float().mean() > 0.8


@pytest.mark.parametrize("family", LADDER)
def test_fit_recovers_real_ladder_draws(family):
    """The fitter explains real images of every rung (per-pixel RMS well under the card's 0.04)
    and scores them as clean (visible, IoU >= 0.9); it recovers the position of disk 1 where disk
    1 is not mostly hidden by disk 2."""
    d = make_dataset(family, 24, seed=21)
    fit = fitting.fit_factors(family, d.images, progress=False)
    assert fit["factors"].shape == d.factors.shape
    assert (fit["rmse"] < 0.01).float().mean() >= 0.95
    iou = fitting.foreground_iou(family, d.images, fit)
    clean = (iou >= 0.9) & fitting.visible(family, fit)
    assert clean.float().mean() >= 0.95
    if family != "ladder-5":
        assert torch.allclose(fit["factors"][:, :2], d.factors[:, :2], atol=0.01)


def test_fit_family_and_bad_family():
    assert fitting.fit_family("shapes-text") == "shapes"
    assert fitting.fit_family("ladder-3") == "ladder-3"
    assert fitting.fit_family("textures") is None and fitting.fit_family("scenes") is None
    with pytest.raises(ValueError, match="family: fitting is defined for"):
        fitting.fit_factors("scenes", torch.zeros(1, 3, 32, 32))


def test_two_means_separates_two_clusters():
    g = torch.Generator().manual_seed(0)
    pts = torch.cat([torch.randn(20, 2, generator=g) * 0.05, torch.randn(30, 2, generator=g) * 0.05 + 1])
    lab = fitting._two_means(pts)
    assert len(set(lab[:20].tolist())) == 1 and len(set(lab[20:].tolist())) == 1 and lab[0] != lab[-1]
