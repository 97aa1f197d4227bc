"""Measurement helpers of the model cards: renderer fitting, nearest neighbours, held-out loss."""

from __future__ import annotations

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
