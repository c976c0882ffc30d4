"""The YONOS-SR testbed: procedural scenes of overlapping anti-aliased shapes, and the tiny models trained on them.

Everything here runs offline on a CPU in minutes. Each 32x32 image is a grey background with 1-3 overlapping
flat shapes (circles, rings, rotated rectangles, triangles) in 8 palette colours, rendered with 4x4 supersampling so
edges are anti-aliased: sharp, high-contrast detail that bicubic upsampling blurs and that the tiny VAE still
reconstructs well (35.5 dB Y-PSNR, against 32.2 dB for bicubic x4). The stream is seeded and unlimited; the test
set uses a seed the training stream never uses.
(scikit-image's bundled photos were tried first: a VAE small enough to train here reached only ~24 dB reconstruction
PSNR on them, below bicubic x4, so no latent model could beat bicubic there.) The x2 / x4 LR inputs are made from the
HR images by bicubic downsampling (:func:`zoo_plugins.yonos_sr.model.degrade`).

Images are float tensors ``[N, 3, H, W]`` in ``[0, 1]``; models take ``[-1, 1]`` (``to_model_range``).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

SHAPE_KINDS = ("circle", "rectangle", "triangle", "ring")
TEXTURES = ("none", "stripes")
"""``none``: flat shapes (the first testbed); ``stripes``: every shape is filled with one-pixel stripes (see
:func:`_stripes`), detail at the HR Nyquist frequency that neither the x2 nor the x4 LR shows."""
STRIPE_DEPTH = (0.25, 0.5)
"""Stripe contrast: the fraction of the way from the shape's colour to its complement on the "on" lines."""
MIN_SHAPES, MAX_SHAPES = 1, 3
BACKGROUND = 0.5
PALETTE = ((0.90, 0.12, 0.10), (0.10, 0.72, 0.18), (0.12, 0.25, 0.92), (0.95, 0.85, 0.10), (0.10, 0.80, 0.85),
           (0.85, 0.15, 0.80), (0.95, 0.95, 0.95), (0.08, 0.08, 0.08))
"""Shape colours: red, green, blue, yellow, cyan, magenta, white, black (a fixed palette, as in zoo.testbed)."""
MIN_RADIUS, MAX_RADIUS = 4.0, 11.0
"""Half-extent of a shape in pixels (at 32x32)."""
"""Each image holds this many shapes (inclusive range), painted in order over a random background."""
_SUPERSAMPLE = 4

VAE_BLOCKS = (16, 32, 64)
"""Tiny AutoencoderKL: factor 4, one layer per block (as zoo.testbed's VAE)."""
LATENT_CHANNELS = 4
"""SD's 4 latent channels: 32x32x3 images <-> 4x8x8 latents."""
UNET_BLOCKS = (32, 64)
"""Tiny UNet: one downsampling, cross-attention at the 64-channel level (docs/SR.md §11)."""


def _shape_mask(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """Coverage ``[size, size]`` in [0, 1] of one random shape, anti-aliased by supersampling."""
    fine = size * _SUPERSAMPLE
    coords = (np.arange(fine, dtype=np.float32) + 0.5) / _SUPERSAMPLE
    y, x = np.meshgrid(coords, coords, indexing="ij")
    cx, cy = rng.uniform(0, size, 2)
    radius = rng.uniform(MIN_RADIUS, MAX_RADIUS) * size / 32
    if kind == "circle":
        inside = (x - cx) ** 2 + (y - cy) ** 2 <= radius ** 2
    elif kind == "ring":
        dist = np.sqrt((x - cx) ** 2 + (y - cy) ** 2)
        inside = (dist <= radius) & (dist >= radius * rng.uniform(0.4, 0.8))
    elif kind == "rectangle":
        half_w, half_h = radius, radius * rng.uniform(0.3, 1.0)
        angle = rng.uniform(0, np.pi)
        u = (x - cx) * np.cos(angle) + (y - cy) * np.sin(angle)
        v = -(x - cx) * np.sin(angle) + (y - cy) * np.cos(angle)
        inside = (np.abs(u) <= half_w) & (np.abs(v) <= half_h)
    elif kind == "triangle":
        angles = rng.uniform(0, 2 * np.pi) + np.array([0.0, 2.1, 4.2]) + rng.uniform(-0.4, 0.4, 3)
        px, py = cx + radius * np.cos(angles), cy + radius * np.sin(angles)
        signs = []
        for i in range(3):
            j = (i + 1) % 3
            signs.append((px[j] - px[i]) * (y - py[i]) - (py[j] - py[i]) * (x - px[i]) >= 0)
        inside = (signs[0] == signs[1]) & (signs[1] == signs[2])
    else:
        raise ValueError(f"Unknown shape kind {kind!r}; use one of {', '.join(SHAPE_KINDS)}")
    return inside.reshape(size, _SUPERSAMPLE, size, _SUPERSAMPLE).mean(axis=(1, 3))


def _stripes(size: int, rng: np.random.Generator) -> np.ndarray:
    """``[size, size]`` pattern of alternate 1-pixel lines (0, 1, 0, 1, ...): rows or columns, random phase.

    A period of 2 HR pixels is the HR Nyquist frequency: bicubic x2 (antialiased) averages each pair of lines, so the
    x2 LR shows only their mean and the phase is unknowable from it (and from the x4 LR); a VAE with f = 4 and
    enough latent channels can still carry it (a few bits per 4x4 cell).
    """
    lines = (np.arange(size) + int(rng.integers(2))) % 2
    pattern = np.broadcast_to(lines[:, None], (size, size))
    return (pattern if rng.integers(2) else pattern.T).astype(np.float32)


def render_scene(size: int, rng: np.random.Generator, texture: str = "none") -> np.ndarray:
    """One ``[size, size, 3]`` image in [0, 1]: 1-3 overlapping shapes in palette colours on neutral grey, flat
    (``texture="none"``) or filled with fine stripes towards the colour's complement (``"stripes"``).

    The background is the same for every image on purpose: the VAE's GroupNorm layers normalise each image's own
    statistics, and a small VAE learns absolute colours far faster when they stand out from a fixed reference.
    """
    if texture not in TEXTURES:
        raise ValueError(f"Unknown testbed texture {texture!r}; use one of {', '.join(TEXTURES)}")
    image = np.full((size, size, 3), BACKGROUND, dtype=np.float32)
    for _ in range(int(rng.integers(MIN_SHAPES, MAX_SHAPES + 1))):
        kind = SHAPE_KINDS[int(rng.integers(len(SHAPE_KINDS)))]
        coverage = _shape_mask(kind, size, rng)[..., None]
        colour = np.asarray(PALETTE[int(rng.integers(len(PALETTE)))], dtype=np.float32)
        fill = colour
        if texture == "stripes":
            mix = rng.uniform(*STRIPE_DEPTH) * _stripes(size, rng)[..., None]
            fill = colour * (1 - mix) + (1 - colour) * mix
        image = image * (1 - coverage) + fill * coverage
    return image


def render_batch(count: int, size: int, rng: np.random.Generator, texture: str = "none") -> torch.Tensor:
    """``[count, 3, size, size]`` scenes in [0, 1]."""
    images = np.stack([render_scene(size, rng, texture) for _ in range(count)])
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous().float()


def training_batches(batch_size: int, crop_size: int, seed: int, shard: int = 0, num_shards: int = 1,
                     texture: str = "none") -> Iterator[torch.Tensor]:
    """An endless, seeded stream of HR batches in [0, 1] (this process's shard of it)."""
    rng = np.random.default_rng([int(seed), int(shard), int(num_shards)])
    while True:
        yield render_batch(batch_size, crop_size, rng, texture)


def test_crops(count: int = 64, size: int = 32, seed: int = 1234, texture: str = "none") -> torch.Tensor:
    """A fixed held-out set of HR scenes (a seed never used for training), for validation and the table."""
    return render_batch(count, size, np.random.default_rng([int(seed), 999_999]), texture)


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> [-1, 1]."""
    return images * 2.0 - 1.0


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1], clamped."""
    return ((images + 1.0) / 2.0).clamp(0.0, 1.0)


def build_testbed_vae(block_out_channels: tuple[int, ...] = VAE_BLOCKS, latent_channels: int = LATENT_CHANNELS):
    """The testbed's untrained VAE (default :data:`VAE_BLOCKS`, :data:`LATENT_CHANNELS`; factor
    2 ** (len(blocks) - 1))."""
    from zoo_plugins.yonos_sr.model import build_vae

    return build_vae(tuple(block_out_channels), latent_channels=latent_channels)


def build_testbed_unet(latent_channels: int = LATENT_CHANNELS):
    """The testbed's untrained UNet (see :data:`UNET_BLOCKS`) for latents with ``latent_channels`` channels."""
    from zoo_plugins.yonos_sr.model import build_unet

    return build_unet(latent_channels=latent_channels, block_out_channels=UNET_BLOCKS)
