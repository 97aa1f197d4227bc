"""The zoo training loop on a tiny config: loss falls, resuming and warm start work."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from pullback_utils.zoo import train as tr


def test_tiny_training_loss_falls_and_resumes(tmp_path):
    out, cache = tmp_path / "model", tmp_path / "cache"
    kw = dict(
        batch_size=8,
        lr=2e-3,
        tiny=True,
        n_train=64,
        out_dir=out,
        cache_dir=cache,
        progress=False,
        warmup=5,
        save_every=0,
    )
    res = tr.train("disks", 50, **kw)
    assert res.step == 50
    log = json.loads((out / "training_log.json").read_text())
    assert log["loss"][-1] < 0.6 * log["loss"][0]
    info = json.loads((out / "zoo.json").read_text())
    assert info["name"] == "disks" and info["kind"] == "pixel" and info["steps"] == 50
    assert (out / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert (out / "model_index.json").is_file() and (cache / "disks" / "state.pt").is_file()
    # resume from the checkpoint
    res = tr.train("disks", 55, **kw)
    assert res.step == 55
    # warm start from the model folder alone
    shutil.rmtree(cache)
    res = tr.train("disks", 58, **kw)
    assert res.step == 58
    runs = json.loads((out / "zoo.json").read_text())["runs"]
    assert [(r["from_step"], r["to_step"]) for r in runs] == [(0, 50), (50, 55), (55, 58)]
    assert len(json.loads((out / "training_log.json").read_text())["step"]) >= 3
    from diffusers import DDPMPipeline

    pipe = DDPMPipeline.from_pretrained(out)
    assert pipe.unet.config.sample_size == 32


def test_tiny_text_training_runs(tmp_path):
    res = tr.train(
        "shapes-text",
        4,
        batch_size=4,
        tiny=True,
        n_train=16,
        out_dir=tmp_path / "m",
        cache_dir=tmp_path / "c",
        progress=False,
    )
    assert res.step == 4 and torch.isfinite(torch.tensor(res.loss))
    info = json.loads((tmp_path / "m" / "zoo.json").read_text())
    assert info["kind"] == "text" and info["text_encoder"] == "minilm"


def test_bad_arguments():
    with pytest.raises(ValueError, match="name.*valid models"):
        tr.train("mnist", 10)
    with pytest.raises(ValueError, match="steps"):
        tr.train("disks", 0)
    with pytest.raises(ValueError, match="batch_size"):
        tr.train("disks", 10, batch_size=0)


def test_learning_rate_schedule_closed_form():
    # warm-up: linear to lr; then constant; cosine annealing reaches lr_final exactly at `steps`
    assert tr.learning_rate(0, 1.0, 10, 100) == pytest.approx(0.1)
    assert tr.learning_rate(9, 1.0, 10, 100) == pytest.approx(1.0)
    assert tr.learning_rate(50, 1.0, 10, 100) == pytest.approx(1.0)
    assert tr.learning_rate(59, 1.0, 10, 100, decay_from=60, lr_final=0.2) == pytest.approx(1.0)
    assert tr.learning_rate(60, 1.0, 10, 100, decay_from=60, lr_final=0.2) == pytest.approx(1.0)
    assert tr.learning_rate(80, 1.0, 10, 100, decay_from=60, lr_final=0.2) == pytest.approx(0.6)
    assert tr.learning_rate(100, 1.0, 10, 100, decay_from=60, lr_final=0.2) == pytest.approx(0.2)


def test_annealed_run_is_recorded(tmp_path):
    out = tmp_path / "m"
    kw = dict(
        batch_size=4,
        tiny=True,
        n_train=16,
        out_dir=out,
        cache_dir=tmp_path / "c",
        progress=False,
        warmup=2,
        save_every=0,
    )
    tr.train("disks", 4, **kw)
    tr.train("disks", 8, decay_from=4, lr_final=1e-4, **kw)
    runs = json.loads((out / "zoo.json").read_text())["runs"]
    assert runs[-1]["from_step"] == 4 and runs[-1]["to_step"] == 8
    assert runs[-1]["decay_from"] == 4 and runs[-1]["lr_final"] == 1e-4
    assert runs[0]["decay_from"] is None


def test_bad_schedule_arguments():
    with pytest.raises(ValueError, match="decay_from, lr_final"):
        tr.train("disks", 10, decay_from=5)
    with pytest.raises(ValueError, match="decay_from"):
        tr.train("disks", 10, decay_from=10, lr_final=1e-4)
    with pytest.raises(ValueError, match="lr_final"):
        tr.train("disks", 10, lr=1e-3, decay_from=2, lr_final=1e-2)


def test_channels_option_builds_that_size_and_guards_resume(tmp_path):
    kw = dict(
        batch_size=2,
        tiny=True,
        n_train=8,
        out_dir=tmp_path / "m",
        cache_dir=tmp_path / "c",
        progress=False,
        save_every=0,
    )
    tr.train("disks", 2, channels=(8, 16, 24), **kw)
    cfg = json.loads((tmp_path / "m" / "unet" / "config.json").read_text())
    assert cfg["block_out_channels"] == [8, 16, 24]
    assert json.loads((tmp_path / "m" / "zoo.json").read_text())["block_out_channels"] == [8, 16, 24]
    with pytest.raises(ValueError, match="channels.*checkpoint"):
        tr.train("disks", 4, channels=(16, 32, 32), **kw)
    shutil.rmtree(tmp_path / "c")  # warm start from the folder checks its size too
    with pytest.raises(ValueError, match="channels.*model folder"):
        tr.train("disks", 4, **kw)
    assert tr.train("disks", 3, channels=(8, 16, 24), **kw).step == 3


@pytest.mark.parametrize("bad", [(8, 16), (8, 16, 20), (0, 8, 8), "abc", (8.5, 16, 16)])
def test_bad_channels(bad):
    with pytest.raises(ValueError, match="channels"):
        tr.train("disks", 2, tiny=True, channels=bad)


def test_cli_rejects_bad_channels():
    from pullback_utils.zoo.__main__ import main

    with pytest.raises(SystemExit, match="--channels"):
        main(["train", "disks", "--channels", "8,x,16"])


def test_a_trained_folder_of_another_size_loads_with_load_model(tmp_path):
    from pullback_utils.zoo.loading import load_model

    tr.train(
        "disks",
        2,
        batch_size=2,
        tiny=True,
        n_train=8,
        out_dir=tmp_path / "m",
        cache_dir=None,
        progress=False,
        channels=(8, 16, 24),
    )
    model = load_model(tmp_path / "m")
    assert list(model.unet.config.block_out_channels) == [8, 16, 24]
    assert model.sample_shape == (3, 32, 32)


def test_steps_no_folder_record_covers_are_recorded_as_such(tmp_path):
    """A checkpoint ahead of the model folder's run records (a run that stopped before writing the
    folder) gets an explicit 'not recorded' run, so the history stays contiguous."""
    from pullback_utils.zoo.card_text import schedule_text

    out = tmp_path / "m"
    kw = dict(batch_size=2, tiny=True, n_train=8, out_dir=out, cache_dir=tmp_path / "c", progress=False, save_every=0)
    tr.train("disks", 4, **kw)
    info = json.loads((out / "zoo.json").read_text())
    info["runs"][-1]["to_step"] = 3  # the folder lags the checkpoint (step 4)
    (out / "zoo.json").write_text(json.dumps(info))
    tr.train("disks", 6, **kw)
    runs = json.loads((out / "zoo.json").read_text())["runs"]
    assert [(r["from_step"], r["to_step"]) for r in runs] == [(0, 3), (3, 4), (4, 6)]
    assert runs[1]["lr"] is None and "no model-folder record" in runs[1]["note"]
    assert "steps 3-4: not recorded" in schedule_text({"runs": runs})


def test_resume_refuses_another_seed_or_batch_and_records_warmup(tmp_path):
    out, cache = tmp_path / "model", tmp_path / "cache"
    kw = dict(tiny=True, n_train=16, out_dir=out, cache_dir=cache, progress=False, save_every=0)
    tr.train("disks", 3, batch_size=4, warmup=0, seed=0, **kw)  # warmup=0 used to divide by zero
    assert json.loads((out / "zoo.json").read_text())["runs"][-1]["warmup"] == 0
    # the checkpoint loads with weights_only=True (no pickled code can run)
    torch.load(cache / "disks" / "state.pt", weights_only=True)
    with pytest.raises(ValueError, match="seed: checkpoint .* was trained with seed=0, not 1"):
        tr.train("disks", 5, batch_size=4, seed=1, **kw)
    with pytest.raises(ValueError, match="batch_size: checkpoint .* was trained with batch_size=4, not 8"):
        tr.train("disks", 5, batch_size=8, seed=0, **kw)
    shutil.rmtree(cache)  # warm start from the folder: another seed is refused too
    with pytest.raises(ValueError, match="seed: the model folder .* was trained with seed=0"):
        tr.train("disks", 5, batch_size=4, seed=2, **kw)
    with pytest.raises(ValueError, match="seed: ladder model 'ladder-2-s1' is trained with seed 1"):
        tr.train("ladder-2-s1", 5, seed=0, tiny=True, out_dir=tmp_path / "l", cache_dir=None)
    with pytest.raises(ValueError, match="lr: must be a finite number > 0"):
        tr.train("disks", 5, lr=float("nan"), tiny=True, out_dir=tmp_path / "n", cache_dir=None)


def test_lr_without_warmup_is_constant():
    assert [tr.learning_rate(s, 1e-3, 0, 100) for s in (0, 1, 50)] == [1e-3] * 3


def test_min_snr_weights_closed_form():
    """min(SNR, gamma) / (SNR + 1) with SNR = a / (1 - a) is a itself where SNR <= gamma and
    gamma (1 - a) above; "none" weighs every t by 1."""
    a = tr.make_scheduler().alphas_cumprod.double()
    w = tr.loss_weights(a, "min-snr", 5.0)
    snr = a / (1 - a)
    expected = torch.where(snr <= 5.0, a, 5.0 * (1 - a))
    assert torch.allclose(w, expected, rtol=1e-12, atol=0)
    assert (snr[:10] > 5).all() and (snr[-10:] < 5).all()  # both branches are exercised
    assert torch.equal(tr.loss_weights(a, "none"), torch.ones_like(a))
    # gamma large: the weight is abar everywhere (the eps-loss, unweighted by SNR)
    assert torch.allclose(tr.loss_weights(a, "min-snr", 1e12), a, rtol=1e-9, atol=0)


def test_min_snr_training_is_recorded_and_differs(tmp_path):
    kw = dict(batch_size=4, tiny=True, n_train=16, cache_dir=None, progress=False, save_every=0, warmup=0)
    plain = tr.train("disks", 3, out_dir=tmp_path / "plain", **kw)
    snr = tr.train("disks", 3, out_dir=tmp_path / "snr", loss_weighting="min-snr", snr_gamma=2.0, **kw)
    run = json.loads((tmp_path / "snr" / "zoo.json").read_text())["runs"][-1]
    assert run["loss_weighting"] == "min-snr" and run["snr_gamma"] == 2.0
    assert json.loads((tmp_path / "plain" / "zoo.json").read_text())["runs"][-1]["loss_weighting"] == "none"
    assert snr.loss < plain.loss  # same batches, noise and init; every weight is <= 1, most < 1
    from pullback_utils.zoo.card_text import schedule_text

    assert "min-SNR-2 loss weighting" in schedule_text(json.loads((tmp_path / "snr" / "zoo.json").read_text()))


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"loss_weighting": "snr"}, r"loss_weighting: expected one of \['none', 'min-snr'\]"),
        ({"loss_weighting": "min-snr", "snr_gamma": 0.0}, "snr_gamma: must be > 0"),
        ({"loss_weighting": "min-snr", "snr_gamma": float("inf")}, "snr_gamma"),
        ({"snr_gamma": True}, "snr_gamma"),
    ],
)
def test_bad_loss_weighting(kw, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        tr.train("disks", 2, tiny=True, out_dir=tmp_path / "m", cache_dir=None, **kw)
    assert not (tmp_path / "m").exists()  # refused before any work


def test_checkpoint_keys_and_format_unchanged(tmp_path):
    """The checkpoint keeps the keys a running ladder training resumes from, all loadable with
    weights_only=True; a checkpoint written by the code before the split (same keys) resumes."""
    kw = dict(
        batch_size=2,
        tiny=True,
        n_train=8,
        out_dir=tmp_path / "m",
        cache_dir=tmp_path / "c",
        progress=False,
        save_every=0,
    )
    tr.train("disks", 2, **kw)
    st = torch.load(tmp_path / "c" / "disks" / "state.pt", weights_only=True)
    assert set(st) == {
        "model",
        "ema",
        "opt",
        "gen",
        "torch_rng",
        "step",
        "wall_s",
        "log",
        "tiny",
        "kind",
        "channels",
        "seed",
        "batch_size",
        "n_train",
    }  # n_train since issue 25 (older ones resume)
    assert st["step"] == 2 and st["channels"] == [16, 32, 32] and st["seed"] == 0
    assert tr.train("disks", 3, **kw).step == 3
