"""The content-addressed basis cache: keys, validated reads, atomic writes, resumable sweeps."""

from __future__ import annotations

import math
import os
import pickle
import warnings

import pytest
import torch
from diffusion_helpers import tiny_scheduler
from unet_factories import make_tiny_unet2d

from pullback_utils.engine.solvers import LocalBasis
from pullback_utils.features.cache import (
    BasisCache,
    BasisCacheWarning,
    basis_key_fields,
    module_fingerprint,
    tensor_hash,
)
from pullback_utils.models.diffusion_model import DiffusionModel


def fake_basis(seed: int = 0, k: int = 3) -> LocalBasis:
    g = torch.Generator().manual_seed(seed)
    return LocalBasis(
        v=torch.randn(k, 1, 3, 4, 4, generator=g),
        u=torch.randn(k, 1, 8, 2, 2, generator=g),
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
    same = basis_key_fields(
        "m",
        x.clone(),
        499,
        3,
        layer="mid",
        cond=cond.clone(),
        solver={"method": "krylov", "tol": 1e-3, "seed": 0, "chunk_size": 4, "progress": True},
    )
    assert key(same) == key(base)


def test_a_changed_krylov_block_size_misses_the_cache(tmp_path):
    """issue 27: block_size changes the Krylov space, so it is in the key when given; its default (None)
    leaves the key of an entry written before the setting existed unchanged, and so hits it."""
    x = torch.ones(1, 3, 4, 4)
    key = BasisCache("unused").key
    default = basis_key_fields("m", x, 499, 3, solver={"method": "krylov"})
    none = basis_key_fields("m", x, 499, 3, solver={"method": "krylov", "block_size": None})
    two = basis_key_fields("m", x, 499, 3, solver={"method": "krylov", "block_size": 2})
    three = basis_key_fields("m", x, 499, 3, solver={"method": "krylov", "block_size": 3})
    assert key(none) == key(default)
    assert len({key(default), key(two), key(three)}) == 3
    assert "block_size" not in default["solver"] and two["solver"]["block_size"] == 2

    model = DiffusionModel(make_tiny_unet2d(), tiny_scheduler(), name="tiny")
    xt = model.noise(1, seed=0)
    first = model.local_basis(xt, 0.5, 2, cache_dir=tmp_path, method="krylov")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        small = model.local_basis(xt, 0.5, 2, cache_dir=tmp_path, method="krylov", block_size=1)
    assert not small.info["cache"]["hit"] and small.info["block_size"] == 1 and first.info["block_size"] == 4
    assert model.local_basis(xt, 0.5, 2, cache_dir=tmp_path, method="krylov", block_size=None).info["cache"]["hit"]
    assert len(list(tmp_path.glob("*.safetensors"))) == 2


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
def _count_engine(monkeypatch):
    """Count the engine calls DiffusionModel.local_basis makes (it calls
    pullback_utils.features.basis.network_basis)."""
    import pullback_utils.features.basis

    engine, calls = pullback_utils.features.basis.network_basis, []

    def counting(*a, **k):
        calls.append(1)
        return engine(*a, **k)

    monkeypatch.setattr(pullback_utils.features.basis, "network_basis", counting)
    return calls


def test_model_local_basis_uses_the_cache(tmp_path, monkeypatch):
    model = DiffusionModel(make_tiny_unet2d(), tiny_scheduler(), name="tiny")
    x = model.noise(1, seed=0)
    calls = _count_engine(monkeypatch)
    first = model.local_basis(x, 0.5, 2, cache_dir=tmp_path, method="krylov")
    again = model.local_basis(x.clone(), 0.5, 2, cache_dir=tmp_path, method="krylov", chunk_size=1)
    assert len(calls) == 1 and again.info["cache"]["hit"]
    for name in ("v", "u", "s"):
        assert torch.equal(getattr(first, name), getattr(again, name))
    model.local_basis(x, 0.6, 2, cache_dir=tmp_path, method="krylov")
    assert len(calls) == 2 and len(list(tmp_path.glob("*.safetensors"))) == 2


# ------------------------------------------------------------------ issue 13: stale keys, types, warnings, folders
@pytest.mark.parametrize("change", ["load_state_dict", "in_place", "to_double"])
def test_weights_changed_in_place_give_a_fresh_basis(tmp_path, monkeypatch, change):
    """The key follows the weights actually used: after an in-place change the cache must not
    serve the old basis, and the new one equals an uncached computation with the new weights."""
    model = DiffusionModel(make_tiny_unet2d(seed=0), tiny_scheduler(), name="tiny")
    x = model.noise(1, seed=0)
    calls = _count_engine(monkeypatch)
    old = model.local_basis(x, 0.5, 2, cache_dir=tmp_path, method="krylov")
    if change == "load_state_dict":
        model.unet.load_state_dict(make_tiny_unet2d(seed=1).state_dict())
    elif change == "in_place":
        with torch.no_grad():
            model.unet.conv_in.weight.mul_(2.0)
    else:
        model.unet.double()
        x = x.double()
    new = model.local_basis(x, 0.5, 2, cache_dir=tmp_path, method="krylov")
    assert len(calls) == 2 and new.info["cache"]["hit"] is False
    truth = model.local_basis(x, 0.5, 2, method="krylov")  # no cache
    torch.testing.assert_close(new.s, truth.s, rtol=0, atol=0)
    torch.testing.assert_close(new.v, truth.v, rtol=0, atol=0)
    if change != "to_double":  # (float64 gives the old basis to float32 rounding)
        assert not torch.allclose(new.s.double(), old.s.double(), rtol=1e-3)
    again = model.local_basis(x, 0.5, 2, cache_dir=tmp_path, method="krylov")
    assert len(calls) == 3 and again.info["cache"]["hit"] is True  # unchanged weights: a hit


def test_fingerprint_is_not_recomputed_while_weights_are_unchanged(monkeypatch):
    """Above FULL_PROBE_BYTES the full hash is recomputed only when the token or the value probe
    changes (below it, the probe is the full hash, read on every call: the documented cost)."""
    import pullback_utils.features.cache as cache_mod

    monkeypatch.setattr(cache_mod, "FULL_PROBE_BYTES", 0)
    model = DiffusionModel(make_tiny_unet2d(seed=0), tiny_scheduler(), name="tiny")
    hashed = []
    real = cache_mod.module_fingerprint
    monkeypatch.setattr(cache_mod, "module_fingerprint", lambda m: hashed.append(1) or real(m))
    first = model.fingerprint
    assert model.fingerprint == first and len(hashed) == 1
    with torch.no_grad():
        next(model.unet.parameters())[0].zero_()
    assert model.fingerprint != first and len(hashed) == 2


def test_a_hit_keeps_types_and_values_of_info(tmp_path):
    model = DiffusionModel(make_tiny_unet2d(seed=0), tiny_scheduler(), name="tiny")
    x = model.noise(1, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (whether power converges in 10 iterations is not the point)
        miss = model.local_basis(x, 0.5, 1, cache_dir=tmp_path, method="power", max_iters=10)
        hit = model.local_basis(x, 0.5, 1, cache_dir=tmp_path, method="power", max_iters=10)
    # floats stay floats (power's estimate was NaN before it had a Krylov check; NaN is covered below)
    assert isinstance(miss.info["angle_estimate"], float) and isinstance(miss.info["gap"], float)
    assert isinstance(miss.info["stopped_changing"], bool) and isinstance(miss.info["reason"], str)
    assert hit.info["cache"]["hit"] is True
    assert set(hit.info) == set(miss.info)
    for name, value in miss.info.items():
        if name == "cache":
            continue
        got = hit.info[name]
        assert type(got) is type(value), name
        if isinstance(value, torch.Tensor):
            assert got.dtype == value.dtype and torch.equal(got, value), name
        elif isinstance(value, float) and math.isnan(value):
            assert math.isnan(got), name
        else:
            assert got == value, name


def test_an_unconverged_hit_warns_as_the_miss_did(tmp_path):
    model = DiffusionModel(make_tiny_unet2d(seed=0), tiny_scheduler(), name="tiny")
    x = model.noise(1, seed=0)
    kw = dict(cache_dir=tmp_path, method="randomized", max_iters=1, tol=1e-9)
    with pytest.warns(RuntimeWarning) as miss_record:
        miss = model.local_basis(x, 0.5, 2, **kw)
    assert miss.info["converged"] is False
    with pytest.warns(RuntimeWarning) as hit_record:
        hit = model.local_basis(x, 0.5, 2, **kw)
    assert hit.info["cache"]["hit"] is True
    as_pairs = lambda rec: sorted((w.category.__name__, str(w.message)) for w in rec)  # noqa: E731
    assert as_pairs(hit_record) == as_pairs(miss_record)


def test_a_degenerate_hit_warns_as_the_miss_did(tmp_path):
    from pullback_utils.engine.solvers import DegenerateJacobianWarning, jacobian_svd

    cache = BasisCache(tmp_path)
    fields = basis_key_fields("m", torch.zeros(5), 1, 2)

    def compute():
        return jacobian_svd(lambda z: 0 * z, torch.ones(5), 2, method="exact")

    with pytest.warns(DegenerateJacobianWarning, match="k = 2 exceeds the numerical rank 0") as miss:
        cache.get_or_compute(fields, compute)
    with pytest.warns(DegenerateJacobianWarning) as hit:
        b = cache.get_or_compute(fields, compute)
    assert b.info["cache"]["hit"] and [str(w.message) for w in hit] == [str(w.message) for w in miss]
    assert b.info["rank"] == 0 and type(b.info["rank"]) is int


def _read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    probe = folder / "probe"
    try:
        probe.write_bytes(b"")
    except OSError:
        return folder
    probe.unlink()
    folder.chmod(0o700)
    pytest.skip("chmod does not stop this user from writing (root); the path-under-a-file case covers it")


@pytest.mark.parametrize("where", ["read_only", "a_file", "under_a_file"])
def test_unusable_cache_folder_keeps_the_result_and_warns_before_computing(tmp_path, where):
    if where == "read_only":
        root = _read_only_folder(tmp_path)
    else:
        (tmp_path / "file").write_text("not a folder")
        root = tmp_path / "file" if where == "a_file" else tmp_path / "file" / "cache"
    cache = BasisCache(root)
    computed = []

    def compute():
        computed.append(1)
        return fake_basis(0)

    with pytest.warns(BasisCacheWarning, match=r"cannot be used.*not saved") as rec:
        first = cache.get_or_compute(FIELDS, compute)
    assert torch.equal(first.v, fake_basis(0).v) and first.info["cache"]["hit"] is False
    assert str(root) in str(rec[0].message)
    # a sweep goes on: the next item is computed and returned too
    with pytest.warns(BasisCacheWarning):
        second = cache.get_or_compute(basis_key_fields("m", torch.zeros(3), 1, 2), compute)
    assert torch.equal(second.s, fake_basis(0).s) and len(computed) == 2
    if where == "read_only":
        root.chmod(0o700)


def test_unusable_cache_warning_comes_before_the_compute(tmp_path):
    (tmp_path / "file").write_text("x")
    cache = BasisCache(tmp_path / "file")
    seen = []

    def compute():
        seen.append(len(caught))
        return fake_basis(0)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cache.get_or_compute(FIELDS, compute)
    assert seen == [1] and issubclass(caught[0].category, BasisCacheWarning)
