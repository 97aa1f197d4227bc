"""Zoo datasets: determinism under a seed, documented ranges, renderer Jacobian."""

from __future__ import annotations

import math

import pytest
import torch

from pullback_utils.zoo import datasets as ds


@pytest.mark.parametrize("name", ["disks", "shapes", "scenes", "shapes-text"])
def test_procedural_deterministic_and_in_range(name):
    a = ds.make_dataset(name, 16, seed=3)
    b = ds.make_dataset(name, 16, seed=3)
    c = ds.make_dataset(name, 16, seed=4)
    assert a.images.shape == (16, 3, 32, 32) and a.images.dtype == torch.float32
    assert torch.equal(a.images, b.images) and torch.equal(a.factors, b.factors)
    assert not torch.equal(a.images, c.images)
    assert a.images.min() >= -1 and a.images.max() <= 1
    assert a.factors.shape == (16, len(ds.FACTOR_NAMES[name]))
    # the stored factors reproduce the images
    assert torch.allclose(ds.render(name, a.factors, a.discrete), a.images, atol=1e-6)


def test_documented_factor_ranges():
    f, _ = ds.sample_factors("disks", 500, seed=0)
    assert f[:, :2].min() >= 0.25 and f[:, :2].max() <= 0.75
    assert f[:, 2].min() >= 0.12 and f[:, 2].max() <= 0.25
    assert f[:, 3:].min() >= 0 and f[:, 3:].max() <= 1
    f, d = ds.sample_factors("shapes", 500, seed=0)
    assert f[:, :2].min() >= 0.25 and f[:, :2].max() <= 0.75
    assert f[:, 2].min() >= 0.12 and f[:, 2].max() <= 0.25
    assert f[:, 3].min() >= 0 and f[:, 3].max() < math.pi / 2
    assert f[:, 4:].min() >= 0 and f[:, 4:].max() <= 1
    assert (d["fg"] != d["bg"]).all()
    assert set(d["shape"].tolist()) == set(range(len(ds.SHAPES)))
    pal = torch.tensor(list(ds.PALETTE.values()))
    assert ((f[:, 4:7] - pal[d["fg"]]).abs() <= ds.COLOUR_JITTER + 1e-6).all()
    f, d = ds.sample_factors("scenes", 500, seed=0)
    assert d["present"][:, :2].eq(1).all() and 0.3 < d["present"][:, 2].float().mean() < 0.7
    for i in range(3):
        s = f[:, 7 * i : 7 * i + 7]
        assert s[:, :2].min() >= 0.2 and s[:, :2].max() <= 0.8
        assert s[:, 2].min() >= 0.1 and s[:, 2].max() <= 0.22


def test_textures_deterministic_and_in_range():
    a = ds.make_dataset("textures", 6, seed=1)
    b = ds.make_dataset("textures", 6, seed=1)
    assert a.images.shape == (6, 3, 32, 32)
    assert torch.equal(a.images, b.images)
    assert a.images.min() >= -1 and a.images.max() <= 1
    assert a.factors is None
    assert len(ds.load_photos()) == len(ds.PHOTOS)


@pytest.mark.parametrize("name", ["disks", "shapes", "scenes"])
def test_renderer_jacobian_matches_finite_differences(name):
    f, d = ds.sample_factors(name, 2, seed=11)
    f = f.double()
    jac = ds.factor_jacobian(name, f, d)  # (2, 3072, K)
    assert jac.shape == (2, 3 * 32 * 32, f.shape[1])
    h = 1e-5
    for k in range(f.shape[1]):
        e = torch.zeros_like(f)
        e[:, k] = h
        fd = (ds.render(name, f + e, d) - ds.render(name, f - e, d)).reshape(2, -1) / (2 * h)
        scale = fd.abs().max().clamp_min(1.0)
        assert (jac[..., k] - fd).abs().max() / scale < 1e-4, ds.FACTOR_NAMES[name][k]


def test_bad_input_raises_value_error():
    with pytest.raises(ValueError, match="name.*valid datasets"):
        ds.make_dataset("mnist", 4, seed=0)
    with pytest.raises(ValueError, match="n:"):
        ds.make_dataset("disks", 0, seed=0)
    with pytest.raises(ValueError, match="factors"):
        ds.render("disks", torch.zeros(2, 5))
    with pytest.raises(ValueError, match="discrete"):
        ds.render("shapes", torch.zeros(2, 10))
