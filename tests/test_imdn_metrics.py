"""zoo.sr_metrics (shared by every SR method): Y conversion, PSNR/SSIM against scikit-image, the protocol helpers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from zoo.errors import InputError
from zoo.sr_metrics import modcrop, psnr, rgb_to_y, score_sr, shave, ssim


def _pair(seed=0, size=(40, 52)):
    from skimage import data

    hr = data.astronaut()[200:200 + size[0], 180:180 + size[1]]
    noise = np.random.default_rng(seed).normal(0, 6, hr.shape)
    sr = np.clip(np.round(hr + noise), 0, 255).astype(np.uint8)
    return sr, hr


def test_rgb_to_y_matches_skimage_bt601():
    sr, _ = _pair()
    np.testing.assert_allclose(rgb_to_y(sr), rgb2ycbcr(sr)[..., 0], rtol=0, atol=1e-10)
    assert rgb_to_y(np.zeros((1, 1, 3), np.uint8))[0, 0] == pytest.approx(16.0)
    assert rgb_to_y(np.full((1, 1, 3), 255, np.uint8))[0, 0] == pytest.approx(235.0)
    # float [0, 1] and uint16 inputs mean the same colours
    np.testing.assert_allclose(rgb_to_y(sr.astype(np.float32) / 255), rgb_to_y(sr), atol=1e-4)
    np.testing.assert_allclose(rgb_to_y(sr.astype(np.uint16) * 257), rgb_to_y(sr), atol=1e-9)


@pytest.mark.parametrize("seed", [0, 1])
def test_psnr_and_ssim_match_skimage_on_float_y(seed):
    sr, hr = _pair(seed)
    y_sr, y_hr = rgb_to_y(sr), rgb_to_y(hr)
    assert psnr(y_sr, y_hr) == pytest.approx(peak_signal_noise_ratio(y_hr, y_sr, data_range=255), abs=1e-10)
    expected = structural_similarity(y_hr, y_sr, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                     data_range=255, K1=0.01, K2=0.03)
    assert ssim(y_sr, y_hr) == pytest.approx(expected, abs=1e-9)


def test_ssim_on_rgb_is_mean_over_channels():
    sr, hr = _pair(2)
    expected = np.mean([structural_similarity(hr[..., c].astype(float), sr[..., c].astype(float),
                                              gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                              data_range=255) for c in range(3)])
    assert ssim(sr, hr) == pytest.approx(expected, abs=1e-9)


def test_identical_images():
    _, hr = _pair()
    assert psnr(hr, hr) == math.inf
    assert ssim(rgb_to_y(hr), rgb_to_y(hr)) == pytest.approx(1.0)


def test_modcrop_and_shave():
    image = np.zeros((103, 98, 3))
    assert modcrop(image, 4).shape == (100, 96, 3)
    assert modcrop(image, 1).shape == image.shape
    assert shave(image, 3).shape == (97, 92, 3)
    assert shave(image, 0) is image
    with pytest.raises(InputError):
        shave(np.zeros((6, 6)), 3)


def test_score_sr_protocol_border_rounding_and_channels():
    sr, hr = _pair(3, size=(42, 54))  # 42 x 54: modcrop(4) → 40 x 52 (the SR size for a x4 model)
    sr = sr[:40, :52]
    default = score_sr(sr, hr, 4)
    manual_y = rgb_to_y(shave(sr, 4)), rgb_to_y(shave(modcrop(hr, 4), 4))
    assert default["psnr"] == pytest.approx(psnr(*manual_y))
    assert default["ssim"] == pytest.approx(ssim(*manual_y))
    rounded = score_sr(sr, hr, 4, round_y=True)
    assert rounded["psnr"] == pytest.approx(psnr(np.round(manual_y[0]), np.round(manual_y[1])))
    assert rounded["psnr"] != pytest.approx(default["psnr"], abs=1e-6)
    rgb = score_sr(sr, hr, 4, y_channel=False)
    assert rgb["psnr"] == pytest.approx(peak_signal_noise_ratio(shave(modcrop(hr, 4), 4), shave(sr, 4)))
    no_border = score_sr(sr, hr, 4, border=0)
    assert no_border["psnr"] == pytest.approx(psnr(rgb_to_y(sr), rgb_to_y(modcrop(hr, 4))))


def test_score_sr_size_mismatch_is_one_clear_line():
    sr, hr = _pair()
    with pytest.raises(InputError, match="check the scale"):
        score_sr(sr[:20], hr, 2)
