"""Image I/O: loading into model size and range, grids."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusion_helpers import tiny_scheduler
from PIL import Image
from unet_factories import make_tiny_unet2d

from pullback_utils.diffusion.images import load_image, make_grid, resize_center_crop, save_grid, to_pil
from pullback_utils.models.diffusion_model import DiffusionModel


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


# ------------------------------------------------------------------ issue 13: bit depths and range checks
def _png16(path, a: np.ndarray) -> None:
    """Write a 16-bit PNG by hand (grayscale (H, W) or RGB (H, W, 3) uint16; no PIL encoder)."""
    import struct
    import zlib

    h, w = a.shape[:2]
    color_type = 0 if a.ndim == 2 else 2
    raw = b"".join(b"\x00" + a[y].astype(">u2").tobytes() for y in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def _ramp16(h=20, w=40) -> np.ndarray:
    return np.linspace(0, 65535, h * w).round().astype(np.uint16).reshape(h, w)


@pytest.mark.parametrize("channels", [1, 3])
def test_16_bit_grayscale_png_loads_in_range(tmp_path, channels):
    a = _ramp16()
    _png16(tmp_path / "g16.png", a)
    x = load_image(tmp_path / "g16.png", channels=channels)
    expected = torch.from_numpy(a.astype(np.float64) / 65535 * 2 - 1).float()
    assert x.shape == (1, channels, 20, 40)
    for c in range(channels):
        torch.testing.assert_close(x[0, c], expected, rtol=0, atol=1e-6)
    assert float((x > 0.99).float().mean()) < 0.02  # was 99.6 % at +1
    # the same through numpy uint16 and a 16-bit PGM (opened by PIL as 32-bit 'I')
    torch.testing.assert_close(load_image(a, channels=channels), x, rtol=0, atol=1e-6)
    (tmp_path / "g16.pgm").write_bytes(b"P5 40 20 65535\n" + a.astype(">u2").tobytes())
    torch.testing.assert_close(load_image(tmp_path / "g16.pgm", channels=channels), x, rtol=0, atol=1e-6)


def test_16_bit_resize_keeps_precision_and_range(tmp_path):
    a = _ramp16(40, 40)
    _png16(tmp_path / "g16.png", a)
    x = load_image(tmp_path / "g16.png", size=20, channels=1)
    ref = load_image((a / 65535.0).astype(np.float32), size=20, channels=1)  # the 8-bit path
    assert x.min() >= -1 and x.max() <= 1
    assert float((x - ref).abs().max()) < 2.5 / 127.5  # the same picture, finer steps


def test_16_bit_rgb_and_float_modes(tmp_path):
    rgb = np.stack([_ramp16(), _ramp16()[::-1], 65535 - _ramp16()], -1)
    _png16(tmp_path / "rgb16.png", rgb)
    x = load_image(tmp_path / "rgb16.png")
    torch.testing.assert_close(x, load_image(rgb), rtol=0, atol=1.5 / 127.5)  # PIL truncates to 8 bits
    torch.testing.assert_close(
        x[0, 0], torch.from_numpy(rgb[..., 0] / 65535.0 * 2 - 1).float(), rtol=0, atol=1.5 / 127.5
    )
    f = Image.fromarray(np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8), mode="F")
    torch.testing.assert_close(
        load_image(f, channels=1)[0, 0], torch.linspace(-1, 1, 64).reshape(8, 8), rtol=0, atol=1e-6
    )
    with pytest.raises(ValueError, match=r"mode 'F'.*\[0, 1\]"):
        load_image(Image.fromarray(np.full((4, 4), 3.0, np.float32), mode="F"))
    with pytest.raises(ValueError, match=r"mode 'I'.*0\.\.65535"):
        load_image(Image.fromarray(np.full((4, 4), 70000, np.int32)))


def test_check_image_range():
    from pullback_utils.diffusion.images import check_image_range

    check_image_range(torch.linspace(-1, 1, 10), "image")
    check_image_range(torch.tensor([-1.04, 1.04]), "image")  # within the tolerance
    with pytest.raises(ValueError, match=r"image must be in the model range \[-1, 1\].*\[0, 255\].*x / 127.5 - 1"):
        check_image_range(torch.tensor([0.0, 255.0]), "image")
    with pytest.raises(ValueError, match=r"images must be in the model range.*1\.2"):
        check_image_range(torch.tensor([0.0, 1.2]))
    with pytest.raises(ValueError, match="NaN"):
        check_image_range(torch.tensor([0.0, float("nan")]), "image")


def test_to_latent_refuses_out_of_range_images():
    model = DiffusionModel(make_tiny_unet2d(), tiny_scheduler())
    ok = torch.rand(1, 3, 16, 16) * 2 - 1
    assert torch.equal(model.to_latent(ok), ok)
    with pytest.raises(ValueError, match=r"images must be in the model range \[-1, 1\]"):
        model.to_latent(ok * 127.5 + 127.5)
