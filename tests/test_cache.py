"""The content-addressed basis cache: keys, validated reads, atomic writes, resumable sweeps."""

from __future__ import annotations

import os
import pickle
import warnings

import pytest
import torch

from unet_factories import make_tiny_unet2d
from diffusion_helpers import tiny_scheduler
from pullback_utils.cache import (
    BasisCache,
    BasisCacheWarning,
    basis_key_fields,
    module_fingerprint,
    tensor_hash,
)
from pullback_utils.models import DiffusionModel
from pullback_utils.solvers import LocalBasis


def fake_basis(seed: int = 0, k: int = 3) -> LocalBasis:
    g = torch.Generator().manual_seed(seed)
    return LocalBasis(
        v=torch.randn(k, 1, 3, 4, 4, generator=g), u=torch.randn(k, 1, 8, 2, 2, generator=g),
        s=torch.rand(k, generator=g).sort(descending=True).values,
        info={"method": "fake", "residuals": torch.rand(k, generator=g), "seconds": 0.5, "nan": float("nan")},
    )


class Counter:
    def __init__(self, seed: int = 0):
        self.n, self.seed = 0, seed

    def __call__(self) -> LocalBasis:
        self.n += 1
        return fake_basis(self.seed)


FIELDS = basis_key_fields("model-a", torch.ones(1, 3, 4, 4), 499, 3, layer="mid")


# ------------------------------------------------------------------ keys
def test_key_covers_everything_that_changes_the_basis():
    x = torch.ones(1, 3, 4, 4)
    cond = torch.zeros(1, 5, 24)
    base = basis_key_fields("m", x, 499, 3, layer="mid", cond=cond, solver={"method": "krylov"})
    key = BasisCache("unused").key
    nudged = x.clone()
    nudged[0, 0, 0, 0] = torch.nextafter(torch.tensor(1.0), torch.tensor(2.0))
    variants = [
        basis_key_fields("m2", x, 499, 3, layer="mid", cond=cond, solver={"method": "krylov"}),
        basis_key_fields("m", nudged, 499, 3, layer="mid", cond=cond, solver={"method": "krylov"}),
        basis_key_fields("m", x, 498, 3, layer="mid", cond=cond, solver={"method": "krylov"}),
        basis_key_fields("m", x, 499, 4, layer="mid", cond=cond, solver={"method": "krylov"}),
        basis_key_fields("m", x, 499, 3, layer="down.1", cond=cond, solver={"method": "krylov"}),
        basis_key_fields("m", x, 499, 3, layer="mid", cond=cond + 1e-3, solver={"method": "krylov"}),
        basis_key_fields("m", x, 499, 3, layer="mid", cond=None, solver={"method": "krylov"}),
        basis_key_fields("m", x, 499, 3, layer="mid", cond=cond, solver={"method": "power"}),
        basis_key_fields("m", x, 499, 3, layer="mid", cond=cond, solver={"method": "krylov", "tol": 1e-4}),
        basis_key_fields("m", x, 499, 3, layer="mid", cond=cond, solver={"method": "krylov", "seed": 1}),
        basis_key_fields("m", x.double(), 499, 3, layer="mid", cond=cond, solver={"method": "krylov"}),
    ]
    keys = {key(v) for v in variants}
    assert len(keys) == len(variants) and key(base) not in keys
    # Defaults filled in; speed/display-only arguments ignored.
    same = basis_key_fields("m", x.clone(), 499, 3, layer="mid", cond=cond.clone(),
                            solver={"method": "krylov", "tol": 1e-3, "seed": 0, "chunk_size": 4,
                                    "progress": True})
    assert key(same) == key(base)


def test_model_fingerprint_tracks_config_and_weights():
    a, b = make_tiny_unet2d(seed=0), make_tiny_unet2d(seed=0)
    assert module_fingerprint(a) == module_fingerprint(b)
    with torch.no_grad():
        next(b.parameters()).view(-1)[0] += 1e-6
    assert module_fingerprint(a) != module_fingerprint(b)
    assert module_fingerprint(make_tiny_unet2d(seed=0, sample_size=32)) != module_fingerprint(a)
    assert tensor_hash(None) is None and tensor_hash(torch.zeros(2)) != tensor_hash(torch.zeros(3))


# ------------------------------------------------------------------ storage
def test_round_trip_is_exact(tmp_path):
    cache = BasisCache(tmp_path)
    compute = Counter()
    first = cache.get_or_compute(FIELDS, compute)
    assert first.info["cache"]["hit"] is False and FIELDS in cache
    again = cache.get_or_compute(FIELDS, compute)
    assert compute.n == 1 and again.info["cache"]["hit"] is True
    for name in ("v", "u", "s"):
        assert torch.equal(getattr(again, name), getattr(first, name))
    assert again.info["method"] == "fake" and again.info["seconds"] == 0.5
    assert again.info["residuals"] == pytest.approx(first.info["residuals"].tolist())
    assert list(tmp_path.iterdir()) == [cache.path(cache.key(FIELDS))]  # no temporary files left


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip_last_byte(path):
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def _garbage(path):
    path.write_bytes(b"\x00not a safetensors file")


def _pickle(path):
    path.write_bytes(pickle.dumps({"v": [1, 2, 3]}))


@pytest.mark.parametrize("damage", [_truncate, _flip_last_byte, _garbage, _pickle])
def test_damaged_entry_is_reported_once_and_recomputed(tmp_path, damage, monkeypatch):
    def no_unpickling(*a, **k):
        raise AssertionError("the cache must never unpickle")

    monkeypatch.setattr(torch, "load", no_unpickling)
    monkeypatch.setattr(pickle, "loads", no_unpickling)
    monkeypatch.setattr(pickle, "load", no_unpickling)
    cache = BasisCache(tmp_path)
    compute = Counter()
    cache.get_or_compute(FIELDS, compute)
    path = cache.path(cache.key(FIELDS))
    damage(path)
    with pytest.warns(BasisCacheWarning, match="unreadable.*recomputing"):
        repaired = cache.get_or_compute(FIELDS, compute)
    assert compute.n == 2 and repaired.info["cache"]["hit"] is False
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # repaired: no second report
        hit = cache.get_or_compute(FIELDS, compute)
    assert compute.n == 2 and hit.info["cache"]["hit"] is True
    assert torch.equal(hit.v, fake_basis().v)


def test_entry_under_the_wrong_key_is_rejected(tmp_path):
    cache = BasisCache(tmp_path)
    other = basis_key_fields("model-b", torch.ones(1, 3, 4, 4), 499, 3)
    cache.get_or_compute(other, Counter(seed=1))
    os.replace(cache.path(cache.key(other)), cache.path(cache.key(FIELDS)))
    compute = Counter()
    with pytest.warns(BasisCacheWarning, match="header"):
        cache.get_or_compute(FIELDS, compute)
    assert compute.n == 1


def test_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    cache = BasisCache(tmp_path)

    def crash(src, dst):
        raise KeyboardInterrupt  # e.g. the user interrupts the sweep mid-write

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        cache.get_or_compute(FIELDS, Counter())
    assert list(tmp_path.iterdir()) == []


def test_interrupted_sweep_resumes_without_recomputing(tmp_path):
    items = [basis_key_fields("m", torch.full((1, 3, 4, 4), float(i)), 499, 3) for i in range(5)]
    cache = BasisCache(tmp_path)
    done = []

    def compute_for(i, fail_at=None):
        def compute():
            if i == fail_at:
                raise RuntimeError("interrupted")
            done.append(i)
            return fake_basis(i)
        return compute

    with pytest.raises(RuntimeError):
        for i, f in enumerate(items):
            cache.get_or_compute(f, compute_for(i, fail_at=3))
    assert done == [0, 1, 2]
    results = [cache.get_or_compute(f, compute_for(i)) for i, f in enumerate(items)]
    assert done == [0, 1, 2, 3, 4]
    for i, r in enumerate(results):
        assert torch.equal(r.s, fake_basis(i).s)


# ------------------------------------------------------------------ DiffusionModel.local_basis
def test_model_local_basis_uses_the_cache(tmp_path, monkeypatch):
    import pullback_utils

    model = DiffusionModel(make_tiny_unet2d(), tiny_scheduler(), name="tiny")
    x = model.noise(1, seed=0)
    engine = pullback_utils.local_basis
    calls = []

    def counting(*a, **k):
        calls.append(1)
        return engine(*a, **k)

    monkeypatch.setattr(pullback_utils, "local_basis", counting)
    first = model.local_basis(x, 0.5, 2, cache_dir=tmp_path, method="krylov")
    again = model.local_basis(x.clone(), 0.5, 2, cache_dir=tmp_path, method="krylov", chunk_size=1)
    assert len(calls) == 1 and again.info["cache"]["hit"]
    for name in ("v", "u", "s"):
        assert torch.equal(getattr(first, name), getattr(again, name))
    model.local_basis(x, 0.6, 2, cache_dir=tmp_path, method="krylov")
    assert len(calls) == 2 and len(list(tmp_path.glob("*.safetensors"))) == 2
