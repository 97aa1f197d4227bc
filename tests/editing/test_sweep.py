"""Many edits per call (pullback_utils.editing.sweep): states at times, direction sweeps, edit_along,
held-out zoo images."""

from __future__ import annotations

import pytest
import torch

from pullback_utils import editing as E


def test_states_at_times_runs_once_and_keeps_the_order(pixel):
    x_T = pixel.noise(2, seed=5)
    lo, hi = E.states_at_times(pixel, x_T, [0.3, 0.8], sampling_steps=10)
    torch.testing.assert_close(hi, E.to_edit_time(pixel, x_T, 0.8, from_noise=True, sampling_steps=10), rtol=0, atol=0)
    assert lo.shape == hi.shape == (2, 3, 16, 16) and not torch.allclose(lo, hi)


def test_direction_sweep_table_and_images(pixel, fast):
    sw = E.direction_sweep(
        pixel,
        pixel.noise(2, seed=1),
        [0.7],
        n_directions=1,
        k=1,
        gamma=1.0,
        n_steps=2,
        sampling_steps=6,
        basis_kwargs=fast,
        progress=False,
    )
    assert sw.labels == ["+v1", "-v1"]
    assert sw.originals.shape == (1, 2, 3, 16, 16) and sw.edits.shape == (1, 2, 2, 3, 16, 16)
    assert len(sw.table) == 4 and {r["sign"] for r in sw.table} == {1, -1}
    assert all(-1 <= r["along"] <= 1 + 1e-6 and r["moved"] > 0 for r in sw.table)
    row = sw.table[0]
    assert row["size"] == pytest.approx(float(E.change_size(sw.edits[0, 0, :1], sw.originals[0, :1])[0]))
    x0, _ = E.edit_along(pixel, sw.x_t[0][:1], 0.7, sw.bases[0][0].v[0], gamma=1.0, n_steps=2, sampling_steps=6)
    torch.testing.assert_close(x0, sw.x0_edits[0, 0, :1])
    with pytest.raises(ValueError, match="n_directions=2 must be <= k=1"):
        E.direction_sweep(pixel, pixel.noise(1), [0.7], n_directions=2, k=1, gamma=1.0, n_steps=1)


def test_edit_along_guidance_prompt(text):
    """guidance_prompt="edit": guidance on the edit prompt, finishing on the generation prompt."""
    x = E.states_at_times(text, text.noise(1, seed=2), [0.6], sampling_steps=4)[0]
    v = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    kw = dict(gamma=1.0, n_steps=2, sampling_steps=4, prompt="a dog", basis_prompt="a red disk")
    for mode, guide in (("edit", "a red disk"), ("generation", "a dog")):
        x0, moved = E.edit_along(text, x, 0.6, v, guidance_prompt=mode, **kw)
        it = E.xspace_guidance(text, x, 0.6, v, gamma=1.0, n_steps=2, prompt=guide)
        assert torch.equal(x0, E.finish(text, it[-1], 0.6, sampling_steps=4, prompt="a dog"))
        assert torch.equal(moved, (it[-1] - it[0]).flatten(1).norm(dim=1))


# ---------------------------------------------------------------------------- zoo data
def test_held_out_images(pixel, tmp_path):
    import json

    from diffusion_helpers import save_zoo_folder
    from unet_factories import make_tiny_unet2d

    from pullback_utils.zoo.datasets import make_dataset
    from pullback_utils.zoo.loading import load_model
    from pullback_utils.zoo.registry import available_models

    assert E.held_out_images(pixel) is None  # not a zoo model
    folder = save_zoo_folder(tmp_path / "zoo")  # a zoo folder outside the bundle, dataset "fake"
    assert E.held_out_images(load_model(str(folder))) is None
    info = json.loads((folder / "zoo.json").read_text())
    info.pop("name")  # the model is then named by its folder, where its zoo.json is read
    (folder / "zoo.json").write_text(json.dumps({**info, "dataset": "disks"}))
    assert E.held_out_images(load_model(str(folder))) is None  # 16x16 model, 32x32 dataset
    make_tiny_unet2d(sample_size=32).save_pretrained(folder / "unet")
    imgs = E.held_out_images(load_model(str(folder)), 2)
    torch.testing.assert_close(imgs, make_dataset("disks", 2, seed=10_000).images, rtol=0, atol=0)
    with pytest.raises(ValueError, match="n must be an int >= 1"):
        E.held_out_images(load_model(str(folder)), 0)
    if "disks" not in available_models():
        pytest.skip("bundled model disks not installed")
    imgs = E.held_out_images(load_model("disks"), 2)
    assert imgs.shape == (2, 3, 32, 32) and float(imgs.min()) >= -1 and float(imgs.max()) <= 1
    torch.testing.assert_close(imgs, make_dataset("disks", 2, seed=10_000).images, rtol=0, atol=0)
