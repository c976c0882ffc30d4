"""zoo.images: every Pillow mode an SR input can come in, numpy inputs, and pairing of LR/HR folders."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image

from zoo.errors import InputError
from zoo.images import load_image, paired_images, to_pil, to_rgb_float, to_uint8


def _rgb(height=6, width=5):
    return (np.arange(height * width * 3).reshape(height, width, 3) * 7 % 256).astype(np.uint8)


def test_rgb_file_round_trip(tmp_path):
    rgb = _rgb()
    Image.fromarray(rgb).save(tmp_path / "a.png")
    loaded = load_image(tmp_path / "a.png")
    assert loaded.dtype == np.float32 and loaded.shape == (6, 5, 3)
    np.testing.assert_array_equal(to_uint8(loaded), rgb)
    np.testing.assert_array_equal(np.asarray(to_pil(loaded)), rgb)


def test_palette_becomes_rgb(tmp_path):
    rgb = _rgb()
    Image.fromarray(rgb).quantize(colors=16).save(tmp_path / "p.png")
    image = Image.open(tmp_path / "p.png")
    assert image.mode == "P"
    np.testing.assert_array_equal(to_uint8(load_image(tmp_path / "p.png")), np.asarray(image.convert("RGB")))


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 65535], [1000, 30000, 65000]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    loaded = load_image(tmp_path / "g16.png")
    np.testing.assert_allclose(loaded[..., 0], values / 65535.0, atol=1e-7)
    np.testing.assert_array_equal(loaded[..., 0], loaded[..., 2])  # grey replicated to RGB


def test_alpha_is_composited_on_white_with_a_warning(tmp_path, caplog):
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[0, 0, 3] = 255  # opaque red-ish pixel; the others fully transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    with caplog.at_level(logging.WARNING):
        loaded = to_uint8(load_image(tmp_path / "a.png"))
    assert "alpha" in caplog.text and "white" in caplog.text
    assert loaded[0, 0].tolist() == [200, 0, 0]
    assert loaded[1, 1].tolist() == [255, 255, 255]
    dropped = to_uint8(load_image(tmp_path / "a.png", alpha="drop"))
    assert dropped[1, 1].tolist() == [200, 0, 0]


def test_grey_cmyk_and_la_modes(tmp_path):
    Image.fromarray(np.full((3, 3), 90, np.uint8), "L").save(tmp_path / "l.png")
    assert to_uint8(load_image(tmp_path / "l.png"))[0, 0].tolist() == [90, 90, 90]
    Image.new("CMYK", (3, 3), (0, 0, 0, 0)).save(tmp_path / "c.jpg")
    assert to_uint8(load_image(tmp_path / "c.jpg")).min() >= 250
    Image.new("LA", (2, 2), (10, 255)).save(tmp_path / "la.png")
    assert to_uint8(load_image(tmp_path / "la.png"))[0, 0].tolist() == [10, 10, 10]


def test_unsupported_mode_and_corrupt_file_are_one_line_errors(tmp_path):
    Image.new("F", (3, 3), 0.5).save(tmp_path / "f.tif")
    with pytest.raises(InputError, match="mode 'F' is not supported") as info:
        load_image(tmp_path / "f.tif")
    assert "\n" not in str(info.value)
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(InputError, match="Cannot read image bad.png"):
        load_image(tmp_path / "bad.png")
    with pytest.raises(InputError, match="not found"):
        load_image(tmp_path / "missing.png")


def test_numpy_inputs():
    rgb = _rgb()
    np.testing.assert_allclose(to_rgb_float(rgb), rgb / 255.0, atol=1e-7)
    np.testing.assert_allclose(to_rgb_float(rgb[..., 0])[..., 1], rgb[..., 0] / 255.0, atol=1e-7)
    np.testing.assert_allclose(to_rgb_float(rgb.astype(np.uint16) * 257), rgb / 255.0, atol=1e-6)
    with pytest.raises(InputError, match=r"in \[0, 1\]"):
        to_rgb_float(rgb.astype(np.float32))
    with pytest.raises(InputError, match="shape"):
        to_rgb_float(np.zeros((2, 2, 2), np.uint8))


def test_paired_images_by_name(tmp_path):
    lr, hr = tmp_path / "lr", tmp_path / "hr"
    lr.mkdir()
    hr.mkdir()
    for name in ("baby", "bird"):
        Image.new("RGB", (4, 4)).save(hr / f"{name}.bmp")
    Image.new("RGB", (2, 2)).save(lr / "babyx2.bmp")
    Image.new("RGB", (2, 2)).save(lr / "bird_x2.png")
    pairs = paired_images(lr, hr, 2)
    assert [(a.name, b.name) for a, b in pairs] == [("babyx2.bmp", "baby.bmp"), ("bird_x2.png", "bird.bmp")]
    (lr / "bird_x2.png").unlink()
    with pytest.raises(InputError, match="bird.bmp"):
        paired_images(lr, hr, 2)
