"""Image I/O: loading into model size and range, grids."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from unet_factories import make_tiny_unet2d
from diffusion_helpers import tiny_scheduler
from pullback_utils.images import load_image, make_grid, resize_center_crop, save_grid, to_pil
from pullback_utils.models import DiffusionModel


def halves(width: int = 40, height: int = 20) -> np.ndarray:
    """Left half pure red, right half pure blue, with a 4-px green border left and right."""
    a = np.zeros((height, width, 3), np.uint8)
    a[:, : width // 2, 0] = 255
    a[:, width // 2 :, 2] = 255
    a[:, :4] = (0, 255, 0)
    a[:, -4:] = (0, 255, 0)
    return a


def test_sources_agree_and_range_is_exact(tmp_path):
    a = halves()
    Image.fromarray(a).save(tmp_path / "im.png")
    from_path = load_image(tmp_path / "im.png")
    from_str = load_image(str(tmp_path / "im.png"))
    from_pil = load_image(Image.fromarray(a))
    from_u8 = load_image(a)
    from_float = load_image(a.astype(np.float32) / 255.0)
    for x in (from_str, from_pil, from_u8, from_float):
        torch.testing.assert_close(x, from_path, rtol=0, atol=0)
    assert from_path.shape == (1, 3, 20, 40) and from_path.dtype == torch.float32
    assert from_path.min() == -1.0 and from_path.max() == 1.0  # 0 -> -1, 255 -> +1 exactly
    torch.testing.assert_close(from_path[0, :, 0, 10], torch.tensor([1.0, -1.0, -1.0]))


def test_resize_center_crop_keeps_the_centre():
    x = load_image(halves(40, 20), size=16)  # scale 20 -> 16 (x0.8): 32 x 16, crop 8 px each side
    assert x.shape == (1, 3, 16, 16)
    red, blue = x[0, :, :, :7], x[0, :, :, 9:]
    assert (red[0] > 0.9).all() and (red[2] < -0.9).all()  # left half red, the green border cropped
    assert (blue[2] > 0.9).all() and (blue[0] < -0.9).all()
    assert (x[0, 1] < -0.9).all()
    im = resize_center_crop(Image.new("RGB", (30, 90)), (12, 8))
    assert im.size == (8, 12)


def test_model_gives_size_channels_and_dtype():
    model = DiffusionModel(make_tiny_unet2d().double(), tiny_scheduler())
    x = load_image(halves(), model=model)
    assert x.shape == (1, 3, 16, 16) and x.dtype == torch.float64
    gray = load_image(np.full((10, 10), 255, np.uint8), size=(4, 6), channels=1)
    assert gray.shape == (1, 1, 4, 6) and torch.equal(gray, torch.ones(1, 1, 4, 6))
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 3] = 255
    assert load_image(rgba).shape == (1, 3, 8, 8)


def test_grid_layout_and_file_round_trip(tmp_path):
    g = torch.Generator().manual_seed(0)
    imgs = torch.rand(5, 3, 6, 4, generator=g) * 2 - 1
    grid = save_grid(imgs, tmp_path / "sub" / "grid.png", nrow=3, padding=2)
    assert grid.size == (3 * 4 + 4 * 2, 2 * 6 + 3 * 2)
    back = np.asarray(Image.open(tmp_path / "sub" / "grid.png"))
    assert back.shape == (18, 20, 3)
    expected = ((imgs + 1) / 2 * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    # image 4 is in row 1, column 1: top = 2 + 1 * (6 + 2), left = 2 + 1 * (4 + 2)
    np.testing.assert_array_equal(back[10:16, 8:12], expected[4])
    np.testing.assert_array_equal(back[2:8, 2:6], expected[0])
    assert (back[:2] == 255).all() and (back[10:16, 14:18] == 255).all()  # padding, empty cell
    assert np.asarray(to_pil(imgs[:1])[0]).shape == (6, 4, 3)
    assert make_grid([imgs[0], imgs[1]], nrow=8).size == (2 * 4 + 3 * 2, 6 + 2 * 2)
    clamped = np.asarray(make_grid(torch.full((1, 1, 2, 2), 5.0), padding=0))
    assert (clamped == 255).all()


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match=r"image as a numpy array must have shape"):
        load_image(np.zeros((8, 8, 5), np.uint8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        load_image(np.full((8, 8, 3), 200.0))
    with pytest.raises(TypeError, match="image must be"):
        load_image(torch.zeros(3, 8, 8))
    with pytest.raises(FileNotFoundError):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ValueError, match="channels"):
        load_image(halves(), channels=4)
    with pytest.raises(ValueError, match="size"):
        load_image(halves(), size=0)
    with pytest.raises(ValueError, match="nrow"):
        save_grid(torch.zeros(2, 3, 4, 4), tmp_path / "g.png", nrow=0)
    with pytest.raises(ValueError, match="same"):
        make_grid([torch.zeros(3, 4, 4), torch.zeros(3, 5, 4)])
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        make_grid(torch.zeros(2, 5, 4, 4))


def test_grid_scale_is_nearest_upscaling_of_the_canvas(tmp_path):
    """scale=k: every pixel of the unscaled grid becomes a k x k block (checked against the
    unscaled grid, element by element); a bad scale names the parameter."""
    g = torch.Generator().manual_seed(1)
    imgs = torch.rand(3, 3, 5, 4, generator=g) * 2 - 1
    small = np.asarray(make_grid(imgs, nrow=2, padding=1))
    big = np.asarray(save_grid(imgs, tmp_path / "big.png", nrow=2, padding=1, scale=3))
    assert big.shape == (3 * small.shape[0], 3 * small.shape[1], 3)
    for dy in range(3):
        for dx in range(3):
            np.testing.assert_array_equal(big[dy::3, dx::3], small)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "big.png")), big)
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="scale must be an int >= 1"):
            make_grid(imgs, scale=bad)
