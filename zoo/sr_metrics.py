"""Super-resolution metrics: PSNR and SSIM on the Y channel, the way published SR tables compute them.

numpy arrays in, floats out; no torch. Used by ``zoo eval-sr`` for every super-resolution method.

Protocol (RCAN's MATLAB ``Evaluate_PSNR_SSIM.m``, used for the IMDN paper's tables):

1. The HR image is cropped to a multiple of the scale (:func:`modcrop`); SR and HR must then have the same size.
2. ``border`` (default: the scale) pixels are removed on every side of both images (:func:`shave`).
3. Y of ITU-R BT.601 YCbCr, ``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255`` for R, G, B in [0, 255]
   (:func:`rgb_to_y`). **Y stays in floating point**: MATLAB keeps it in floating point, while the official IMDN
   Python script rounds it to uint8, which alone lowers Set5 PSNR by 0.02-0.09 dB. ``round_y=True`` reproduces the
   Python script for comparison.
4. PSNR with peak 255 (:func:`psnr`); SSIM (Wang et al. 2004) with an 11x11 Gaussian window σ = 1.5, K1 = 0.01,
   K2 = 0.03, L = 255, population statistics, averaged over the valid region (:func:`ssim`) — the same numbers as
   MATLAB ``ssim_index`` and ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
   use_sample_covariance=False, data_range=255)``.
"""

from __future__ import annotations

import math

import numpy as np

from zoo.errors import InputError

PEAK = 255.0
SSIM_SIGMA = 1.5
SSIM_RADIUS = 5  # 11x11 window: int(3.5 * sigma + 0.5), as skimage and MATLAB fspecial('gaussian', 11, 1.5)
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def as_float255(image: np.ndarray) -> np.ndarray:
    """An image as float64 in [0, 255]: uint8 as is, uint16 scaled by 255/65535, floats taken as [0, 1]."""
    array = np.asarray(image)
    if array.dtype == np.uint8:
        return array.astype(np.float64)
    if array.dtype == np.uint16:
        return array.astype(np.float64) * (PEAK / 65535.0)
    if np.issubdtype(array.dtype, np.floating):
        return array.astype(np.float64) * PEAK
    raise InputError(f"Unsupported image dtype {array.dtype} for SR metrics; use uint8, uint16 or float in [0, 1]")


def rgb_to_y(image: np.ndarray) -> np.ndarray:
    """BT.601 luma Y in [16, 235] (float64) of an RGB image ``[H, W, 3]`` (see :func:`as_float255` for dtypes)."""
    rgb = as_float255(image)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise InputError(f"rgb_to_y expects an RGB image of shape [H, W, 3], got {rgb.shape}")
    return 16.0 + (65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / PEAK


def modcrop(image: np.ndarray, scale: int) -> np.ndarray:
    """Crop the bottom and right so that height and width are multiples of ``scale``."""
    height, width = image.shape[:2]
    return image[: height - height % scale, : width - width % scale, ...]


def shave(image: np.ndarray, border: int) -> np.ndarray:
    """Remove ``border`` pixels on every side (``border=0``: unchanged)."""
    if border <= 0:
        return image
    if image.shape[0] <= 2 * border or image.shape[1] <= 2 * border:
        raise InputError(f"Image of size {image.shape[1]}x{image.shape[0]} is too small for a {border}-pixel border")
    return image[border:-border, border:-border, ...]


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = PEAK) -> float:
    """Peak signal-to-noise ratio in dB of two same-shape arrays (inf when identical)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    _check_same_shape(a, b)
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(data_range ** 2 / mse)


def _gaussian_kernel(sigma: float = SSIM_SIGMA, radius: int = SSIM_RADIUS) -> np.ndarray:
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-(offsets ** 2) / (2.0 * sigma ** 2))
    return kernel / kernel.sum()


def _filter_valid(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Separable 2-D filter keeping only positions where the window fits (MATLAB ``filter2(..., 'valid')``)."""
    window = len(kernel)
    rows = np.lib.stride_tricks.sliding_window_view(image, window, axis=0) @ kernel
    return np.lib.stride_tricks.sliding_window_view(rows, window, axis=1) @ kernel


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = PEAK) -> float:
    """Mean SSIM of two same-shape 2-D arrays (3-D: mean over channels), Gaussian-weighted as in Wang et al. 2004."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    _check_same_shape(a, b)
    if a.ndim == 3:
        return float(np.mean([ssim(a[..., c], b[..., c], data_range) for c in range(a.shape[2])]))
    if a.ndim != 2:
        raise InputError(f"ssim expects 2-D or [H, W, C] arrays, got shape {a.shape}")
    if min(a.shape) < 2 * SSIM_RADIUS + 1:
        raise InputError(f"Images of size {a.shape[1]}x{a.shape[0]} are too small for SSIM's 11x11 window")
    kernel = _gaussian_kernel()
    # 1. Local means, variances and covariance (population statistics) under the Gaussian window.
    mu_a, mu_b = _filter_valid(a, kernel), _filter_valid(b, kernel)
    var_a = _filter_valid(a * a, kernel) - mu_a ** 2
    var_b = _filter_valid(b * b, kernel) - mu_b ** 2
    cov_ab = _filter_valid(a * b, kernel) - mu_a * mu_b
    # 2. SSIM map (Wang et al. Eq. 13) with C1 = (K1 L)², C2 = (K2 L)², then its mean.
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov_ab + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return float(ssim_map.mean())


def _check_same_shape(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise InputError(f"Images differ in shape: {a.shape} vs {b.shape}")


def score_sr(sr: np.ndarray, hr: np.ndarray, scale: int, *, border: int | None = None, y_channel: bool = True,
             round_y: bool = False) -> dict[str, float]:
    """PSNR and SSIM of a super-resolved image against its ground truth, following the protocol above.

    Args:
        sr: the SR output ``[H, W, 3]`` (uint8, uint16 or float in [0, 1]).
        hr: the ground truth; cropped to a multiple of ``scale`` before comparing.
        scale: the upscaling factor (for ``modcrop`` and the default border).
        border: pixels removed on every side; default ``scale`` (use 0 for none).
        y_channel: compare Y of YCbCr (default) or all RGB channels.
        round_y: round Y to uint8 like the official IMDN Python script (default: float, as MATLAB).

    Returns:
        ``{"psnr": dB, "ssim": value}``.
    """
    hr = modcrop(np.asarray(hr), int(scale)) if float(scale).is_integer() else np.asarray(hr)
    sr = np.asarray(sr)
    if sr.shape[:2] != hr.shape[:2]:
        raise InputError(f"SR image is {sr.shape[1]}x{sr.shape[0]} but the ground truth (cropped to a multiple of "
                         f"the scale {scale}) is {hr.shape[1]}x{hr.shape[0]}; check the scale and the image pairing")
    border = int(math.ceil(scale)) if border is None else border
    sr, hr = shave(sr, border), shave(hr, border)
    if y_channel:
        sr_plane, hr_plane = rgb_to_y(sr), rgb_to_y(hr)
        if round_y:
            sr_plane, hr_plane = np.round(sr_plane), np.round(hr_plane)
    else:
        sr_plane, hr_plane = as_float255(sr), as_float255(hr)
        if round_y:
            sr_plane, hr_plane = np.round(sr_plane), np.round(hr_plane)
    return {"psnr": psnr(sr_plane, hr_plane), "ssim": ssim(sr_plane, hr_plane)}
