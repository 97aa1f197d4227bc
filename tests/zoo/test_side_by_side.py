"""Side-by-side training (one process, a thread per model) and the seed replicates' names."""

from __future__ import annotations

import json
import signal
import threading

import pytest
import torch
from safetensors.torch import load_file

from pullback_utils.zoo import registry as R
from pullback_utils.zoo import train as tr
from pullback_utils.zoo.__main__ import main
from pullback_utils.zoo.side_by_side import train_side_by_side

RECIPE = dict(steps=12, batch_size=4, lr=2e-3, tiny=True, n_train=32, warmup=2, save_every=5)


def _weights(folder):
    return load_file(folder / "unet" / "diffusion_pytorch_model.safetensors")


def test_side_by_side_equals_one_at_a_time_bitwise(tmp_path):
    """Two models trained in threads of one process == the same two trained by `train` alone."""
    torch.set_num_threads(1)
    names = ["disks", "ladder-2-s1"]
    alone = {
        n: tr.train(
            n,
            out_dir=tmp_path / "alone" / n,
            cache_dir=tmp_path / "ca",
            progress=False,
            **{k: v for k, v in RECIPE.items() if k != "steps"},
            steps=RECIPE["steps"],
        ).out_dir
        for n in names
    }
    res = train_side_by_side(
        names, RECIPE, out_dirs={n: tmp_path / "sbs" / n for n in names}, cache_dir=tmp_path / "cs", progress=False
    )
    assert {n: r["status"] for n, r in res.items()} == {n: "trained" for n in names}
    for n in names:
        a, b = _weights(alone[n]), _weights(tmp_path / "sbs" / n)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), n
        ia = json.loads((alone[n] / "zoo.json").read_text())
        ib = json.loads((tmp_path / "sbs" / n / "zoo.json").read_text())
        assert ia["steps"] == ib["steps"] == RECIPE["steps"] and ia["seed"] == ib["seed"]
    # a second run finds the target reached and skips both
    again = train_side_by_side(
        names, RECIPE, out_dirs={n: tmp_path / "sbs" / n for n in names}, cache_dir=tmp_path / "cs", progress=False
    )
    assert {r["status"] for r in again.values()} == {"skipped"}


def test_stop_event_saves_and_a_rerun_resumes(tmp_path):
    torch.set_num_threads(1)
    out = {"disks": tmp_path / "d"}
    default = signal.getsignal(signal.SIGTERM)

    def sigterm_once_handled() -> None:  # SIGTERM as soon as the run has installed its handler
        while signal.getsignal(signal.SIGTERM) is default:
            threading.Event().wait(0.01)
        threading.Event().wait(0.5)
        signal.raise_signal(signal.SIGTERM)

    recipe = dict(RECIPE, steps=10_000)
    threading.Thread(target=sigterm_once_handled, daemon=True).start()  # each model saves and returns
    res = train_side_by_side(["disks"], recipe, out_dirs=out, cache_dir=tmp_path / "c", progress=False)
    assert res["disks"]["status"] == "trained" and 0 < res["disks"]["step"] < 10_000
    done = res["disks"]["step"]
    res = train_side_by_side(
        ["disks"], dict(RECIPE, steps=done + 3), out_dirs=out, cache_dir=tmp_path / "c", progress=False
    )
    assert res["disks"]["step"] == done + 3
    res = train_side_by_side(
        ["disks"], recipe, out_dirs=out, cache_dir=tmp_path / "c", progress=False, max_minutes=0.002
    )  # the wall-time bound stops the run the same way
    assert res["disks"]["status"] == "trained" and done + 3 <= res["disks"]["step"] < 10_000


def test_a_failing_model_does_not_stop_the_others(tmp_path):
    out = {"disks": tmp_path / "d", "shapes": tmp_path / "s"}
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "zoo.json").write_text(json.dumps({"seed": 5}))  # another seed's folder: refused
    (tmp_path / "s" / "unet").mkdir()
    res = train_side_by_side(
        ["disks", "shapes"], dict(RECIPE, steps=3), out_dirs=out, cache_dir=tmp_path / "c", progress=False
    )
    assert res["disks"]["status"] == "trained"
    assert res["shapes"]["status"] == "failed" and "seed" in res["shapes"]["error"]


def test_bad_arguments_are_refused_before_training(tmp_path):
    with pytest.raises(ValueError, match="names: each model once"):
        train_side_by_side(["disks", "disks"], RECIPE)
    with pytest.raises(ValueError, match="name: unknown zoo model 'diskz'"):
        train_side_by_side(["diskz"], RECIPE)
    with pytest.raises(ValueError, match="recipe: needs 'steps'"):
        train_side_by_side(["disks"], {"lr": 1e-3})
    with pytest.raises(ValueError, match="recipe: \\['device'\\]"):
        train_side_by_side(["disks"], dict(RECIPE, device="cuda"))
    with pytest.raises(ValueError, match="max_minutes"):
        train_side_by_side(["disks"], RECIPE, max_minutes=0)
    with pytest.raises(SystemExit):
        main(["train-many", "disks", "--ladder-recipe", "--steps", "5"])


def test_seed_replicates_are_named_and_seeded_by_their_name(tmp_path):
    assert R.canonical_name("disks-s0") == "disks" and R.default_folder("disks-s0") == R.default_folder("disks")
    assert R.replicas("shapes-text") == ["shapes-text", "shapes-text-s1", "shapes-text-s2"]
    assert R.MODELS["disks-s2"]["seed"] == 2 and R.MODELS["disks-s2"]["dataset"] == "disks"
    assert "disks-s1" not in R.ZOO_MODELS  # the chapters' list stays the five main models
    with pytest.raises(ValueError, match="seed-1 replicate of 'disks'"):
        tr.train("disks-s1", 2, seed=2, tiny=True, out_dir=tmp_path / "m", cache_dir=None)
    res = tr.train(
        "disks-s1", 2, batch_size=2, tiny=True, n_train=8, out_dir=tmp_path / "m", cache_dir=None, progress=False
    )
    info = json.loads((tmp_path / "m" / "zoo.json").read_text())
    assert res.step == 2 and info["seed"] == 1 and info["dataset"] == "disks"
    if not R.is_bundled("disks-s1"):
        with pytest.raises(KeyError, match="not been trained yet.*zoo train disks-s1"):
            R.model_dir("disks-s1")
