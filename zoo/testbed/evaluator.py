"""Deterministic measurement of testbed images against their prompts.

For each image the evaluator finds the foreground (pixels whose saturation ``max(rgb) - min(rgb)`` exceeds
:data:`FOREGROUND_SATURATION`, or half the image's peak saturation in washed-out images; the background is neutral
grey) and measures:

- **colour**: every foreground pixel votes for the palette colour nearest in hue; the dominant colour wins. An image
  with fewer than :data:`MIN_FOREGROUND_PIXELS` foreground pixels has no colour (counted as wrong).
- **shape**: the arg-max of a small CNN (:class:`ShapeClassifier`, about 70k parameters, weights committed in
  ``classifier.safetensors``) trained on procedural images with the perturbations of generated images (:func:`augment`:
  wobbly, cut and soft-edged outlines, stray blobs, low contrast, blur, noise, speckle; small sizes), so that a soft,
  noisy one-step sample is judged as a clean 25-step one (``scripts/stress_evaluator.py`` measures this).
- **position and size**: the foreground's centroid ``(cx, cy)`` and ``sqrt(area)`` in pixels.
- **features**: the classifier's 32-dimensional penultimate activations, standardised with their mean and standard
  deviation over 4096 real images (stored with the weights), for the Fréchet distance.

Over a set of ``(image, prompt)`` pairs, :meth:`Evaluator.evaluate` reports:

- ``color_acc``: the fraction of images whose prompt names a colour that show that colour;
- ``shape_acc``: the same for shapes;
- ``diversity``: for every prompt with at least two images, the standard deviation over its images of ``cx``,
  ``cy`` and ``sqrt(area)``, each divided by the same standard deviation in real dataset images for that prompt;
  averaged over the three quantities and over prompts. 1.0 means as spread out as the data; 0 means every seed gives
  the same position and size (mode collapse);
- ``fd``: the Fréchet distance ``|mu_g - mu_r|^2 + tr(S_g + S_r - 2 (S_g S_r)^(1/2))`` ("GANs Trained by a Two
  Time-Scale Update Rule Converge to a Local Nash Equilibrium", Heusel et al., arXiv 1706.08500) between classifier
  features of the generated images and of :data:`REFERENCE_PER_IMAGE` real images per generated image, drawn for the
  same prompts with a fixed seed.

Everything is deterministic: the same images and prompts always give the same numbers.
"""

from __future__ import annotations

import functools
import math
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from zoo.testbed.data import (BACKGROUND, COLORS, IMAGE_SIZE, MIN_SIZE, PALETTE, SHAPES, Attributes, ShapesDataset,
                              parse_caption, render, sample_attributes)

CLASSIFIER_WEIGHTS = Path(__file__).with_name("classifier.safetensors")
FOREGROUND_SATURATION = 0.25
"""A pixel is foreground when ``max(r, g, b) - min(r, g, b)`` exceeds this (palette colours: 0.62-0.85, grey: 0), or,
in a washed-out image whose most saturated pixel is below ``2 x FOREGROUND_SATURATION``, half of that pixel's
saturation (the half-coverage outline of a shape at that contrast), but at least :data:`FOREGROUND_SATURATION_FLOOR`.
Images with a pixel of saturation 0.5 or more -- every clean, multi-step and one-step sample measured -- use 0.25."""
FOREGROUND_SATURATION_FLOOR = 0.12
MIN_FOREGROUND_PIXELS = 4
REFERENCE_PER_IMAGE = 4
"""Real images per generated image in the Fréchet distance's reference set."""
DIVERSITY_REFERENCE = 256
"""Real images per prompt whose position / size spread is the denominator of the diversity."""
REFERENCE_SEED = 20240611
FEATURE_DIM = 32


# --------------------------------------------------------------------------------------------------------------------
# Image helpers
# --------------------------------------------------------------------------------------------------------------------
def as_float_images(images: Any) -> np.ndarray:
    """PIL images, a list of arrays or an array ``[N, H, W, 3]`` (uint8 or floats in ``[0, 1]``) -> ``float32
    [N, 32, 32, 3]`` in ``[0, 1]``; other sizes are resized with a box filter."""
    from PIL import Image

    if isinstance(images, np.ndarray) and images.ndim == 3:
        images = images[None]
    out = []
    for image in images:
        if isinstance(image, Image.Image):
            image = image.convert("RGB")
            if image.size != (IMAGE_SIZE, IMAGE_SIZE):
                image = image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BOX)
            array = np.asarray(image, dtype=np.float32) / 255.0
        else:
            array = np.asarray(image)
            if array.dtype == np.uint8:
                array = array.astype(np.float32) / 255.0
            array = array.astype(np.float32)
            if array.shape[:2] != (IMAGE_SIZE, IMAGE_SIZE):
                pil = Image.fromarray(np.clip(np.round(array * 255), 0, 255).astype(np.uint8))
                array = np.asarray(pil.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BOX), dtype=np.float32) / 255.0
        if array.ndim != 3 or array.shape[2] != 3:
            raise ValueError(f"Expected RGB images of shape [H, W, 3], got {array.shape}")
        out.append(np.clip(array, 0.0, 1.0))
    return np.stack(out) if out else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.float32)


def _hue(rgb: np.ndarray) -> np.ndarray:
    """Hue angle in degrees ``[0, 360)`` of RGB values in ``[0, 1]`` (last axis)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    # Hue from the chromaticity plane (the standard hexagon projection, smooth version).
    alpha = r - 0.5 * (g + b)
    beta = (math.sqrt(3) / 2.0) * (g - b)
    return np.degrees(np.arctan2(beta, alpha)) % 360.0


PALETTE_HUES = {name: float(_hue(np.asarray(rgb, dtype=np.float32))) for name, rgb in PALETTE.items()}


def foreground_thresholds(images: np.ndarray) -> np.ndarray:
    """``[N]``: the saturation above which a pixel of each image is foreground (see :data:`FOREGROUND_SATURATION`)."""
    saturation = images.max(axis=-1) - images.min(axis=-1)
    peak = saturation.reshape(len(images), -1).max(axis=1) if len(images) else np.zeros(0, dtype=np.float32)
    return np.clip(0.5 * peak, FOREGROUND_SATURATION_FLOOR, FOREGROUND_SATURATION)


def foreground_mask(images: np.ndarray) -> np.ndarray:
    """``bool [N, 32, 32]``: pixels saturated enough to belong to the shape."""
    saturation = images.max(axis=-1) - images.min(axis=-1)
    return saturation > foreground_thresholds(images)[:, None, None]


def dominant_colors(images: np.ndarray) -> list[str | None]:
    """The palette colour nearest in hue to most foreground pixels of each image (None when there is no shape)."""
    hues = _hue(images)
    mask = foreground_mask(images)
    names = list(PALETTE_HUES)
    centres = np.asarray([PALETTE_HUES[n] for n in names], dtype=np.float32)
    # Angular distance of every pixel's hue to every palette hue -> nearest palette colour per pixel.
    distance = np.abs((hues[..., None] - centres + 180.0) % 360.0 - 180.0)
    nearest = distance.argmin(axis=-1)
    result: list[str | None] = []
    for i in range(len(images)):
        votes = nearest[i][mask[i]]
        if votes.size < MIN_FOREGROUND_PIXELS:
            result.append(None)
            continue
        counts = np.bincount(votes, minlength=len(names))
        result.append(names[int(counts.argmax())])
    return result


def geometry(images: np.ndarray) -> np.ndarray:
    """``[N, 3]``: foreground centroid ``cx``, ``cy`` and ``sqrt(area)`` in pixels (NaN when there is no shape)."""
    mask = foreground_mask(images)
    ys, xs = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float64) + 0.5
    out = np.full((len(images), 3), np.nan)
    for i in range(len(images)):
        area = mask[i].sum()
        if area < MIN_FOREGROUND_PIXELS:
            continue
        out[i] = (xs[mask[i]].mean(), ys[mask[i]].mean(), math.sqrt(area))
    return out


# --------------------------------------------------------------------------------------------------------------------
# Shape classifier
# --------------------------------------------------------------------------------------------------------------------
def build_classifier():
    """A small CNN: 32x32 RGB -> 32-d features -> shape logits (3) and colour logits (4)."""
    import torch
    from torch import nn

    class ShapeClassifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
                nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),   # 16x16
                nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
                nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),   # 8x8
                nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
            )
            self.features = nn.Linear(64, FEATURE_DIM)
            self.shape_head = nn.Linear(FEATURE_DIM, len(SHAPES))
            self.color_head = nn.Linear(FEATURE_DIM, len(COLORS))

        def embed(self, x: torch.Tensor) -> torch.Tensor:
            """Features of images ``[N, 3, 32, 32]`` in ``[-1, 1]``."""
            return self.features(self.body(x).mean(dim=(2, 3)))

        def forward(self, x: torch.Tensor):
            features = self.embed(x)
            hidden = torch.relu(features)
            return features, self.shape_head(hidden), self.color_head(hidden)

    return ShapeClassifier()


def _to_tensor(images: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() * 2.0 - 1.0


def _gaussian_blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of one image ``[H, W]`` or ``[H, W, C]`` (edges replicated)."""
    radius = max(1, int(math.ceil(3 * sigma)))
    t = np.arange(-radius, radius + 1, dtype=np.float32)
    kernel = np.exp(-0.5 * (t / max(sigma, 1e-3)) ** 2)
    kernel /= kernel.sum()
    for axis in (0, 1):
        pad = [(0, 0)] * x.ndim
        pad[axis] = (radius, radius)
        padded = np.pad(x, pad, mode="edge")
        n = x.shape[axis]
        x = sum(w * np.take(padded, np.arange(k, k + n), axis=axis) for k, w in enumerate(kernel))
    return x.astype(np.float32)


def _smooth_noise(rng: np.random.Generator, sigma: float = 3.0) -> np.ndarray:
    """A smooth random field ``[32, 32]`` with peak magnitude 1."""
    field = _gaussian_blur(rng.normal(size=(IMAGE_SIZE, IMAGE_SIZE)).astype(np.float32), sigma)
    return field / (np.abs(field).max() + 1e-8)


def _warp(x: np.ndarray, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """Bilinear resampling of ``[H, W]`` at ``(y + dy, x + dx)`` (edges replicated)."""
    ys, xs = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float32)
    ys, xs = np.clip(ys + dy, 0, IMAGE_SIZE - 1), np.clip(xs + dx, 0, IMAGE_SIZE - 1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, IMAGE_SIZE - 1), np.minimum(x0 + 1, IMAGE_SIZE - 1)
    fy, fx = ys - y0, xs - x0
    return ((x[y0, x0] * (1 - fx) + x[y0, x1] * fx) * (1 - fy) + (x[y1, x0] * (1 - fx) + x[y1, x1] * fx) * fy)


_PALETTE_ARRAY = np.asarray([PALETTE[c] for c in COLORS], dtype=np.float32)
_GREY = np.asarray(BACKGROUND, dtype=np.float32)


def augment(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Perturbations that generated images show, each applied to a random part of the batch at a random strength.

    ``images`` are clean renderings (one palette colour over the grey background), so each image's coverage is its
    saturation divided by the colour's. Shape: smooth random warps of the outline (up to 2.5 px), a straight cut
    removing up to 25 % of the shape, soft outward-fading edges; colour: patches of another palette colour inside the
    shape, stray blobs of other colours in the background; then the photometric perturbations: background tint,
    contrast (down to 0.3) and saturation (down to 0.3), Gaussian blur (sigma up to 2 px), pixel noise (sigma up to
    0.3, most often small), salt-and-pepper and coloured speckle. About a fifth of the images get only the mild tint,
    contrast and noise of clean-looking samples. (Issue #21 §5: the classifier trained on the mild perturbations
    alone called soft, noisy or wobbly shapes circles (docs/TESTBED.md, "How far the evaluator can be trusted")).
    """
    n = len(images)
    out = np.empty_like(images)
    saturation = images.max(axis=-1) - images.min(axis=-1)
    ys, xs = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float32) + 0.5
    for i in range(n):
        image = images[i]
        peak = float(saturation[i].max())
        if rng.random() < 0.2 or peak <= 0:
            out[i] = image
            continue
        flat = int(saturation[i].argmax())
        color_index = int(np.abs(_PALETTE_ARRAY - image.reshape(-1, 3)[flat]).sum(axis=1).argmin())
        alpha = saturation[i] / peak
        # 1. Shape: warp, cut, soft edges (on the coverage).
        if rng.random() < 0.4:
            amplitude = rng.uniform(0.3, 2.5)
            alpha = _warp(alpha, _smooth_noise(rng) * amplitude, _smooth_noise(rng) * amplitude)
        if rng.random() < 0.1:
            theta = rng.uniform(0, 2 * math.pi)
            proj = (xs * math.cos(theta) + ys * math.sin(theta)).ravel()
            order = np.argsort(-proj)
            cumulative = np.cumsum(alpha.ravel()[order])
            cut = int(np.searchsorted(cumulative, rng.uniform(0.05, 0.25) * cumulative[-1]))
            alpha = alpha.copy().ravel()
            alpha[order[:cut + 1]] = 0.0
            alpha = alpha.reshape(IMAGE_SIZE, IMAGE_SIZE)
        if rng.random() < 0.25:
            alpha = np.clip(2.0 * _gaussian_blur(alpha, rng.uniform(0.3, 2.0)), 0.0, 1.0)
        # 2. Colour: patches of a second palette colour inside the shape.
        color = np.broadcast_to(_PALETTE_ARRAY[color_index], (IMAGE_SIZE, IMAGE_SIZE, 3))
        if rng.random() < 0.25:
            other = _PALETTE_ARRAY[(color_index + int(rng.integers(1, len(COLORS)))) % len(COLORS)]
            weight = np.clip(_smooth_noise(rng, 2.0), 0, 1)[..., None] * rng.uniform(0.2, 0.5)
            color = color * (1 - weight) + other * weight
        x = _GREY * (1 - alpha[..., None]) + color * alpha[..., None]
        # 3. Stray blobs of other colours.
        if rng.random() < 0.2:
            for _ in range(int(rng.integers(1, 4))):
                by, bx = rng.uniform(1, IMAGE_SIZE - 1, size=2)
                blob = np.clip(rng.uniform(1.0, 3.0) + 0.5 - np.hypot(xs - bx, ys - by), 0, 1) * rng.uniform(0.4, 0.9)
                other = _PALETTE_ARRAY[(color_index + int(rng.integers(1, len(COLORS)))) % len(COLORS)]
                x = x * (1 - blob[..., None]) + other * blob[..., None]
        out[i] = x
    # 4. Photometric, on the whole batch: tint, contrast, saturation, blur, noise, salt-and-pepper, speckle.
    heavy = rng.random(n) < 0.5
    out += rng.normal(0.0, 0.04, size=(n, 1, 1, 3)).astype(np.float32)
    contrast = np.where(heavy & (rng.random(n) < 0.6), rng.uniform(0.3, 1.15, n), rng.uniform(0.8, 1.15, n))
    out = 0.5 + (out - 0.5) * contrast[:, None, None, None].astype(np.float32)
    for i in np.nonzero(heavy & (rng.random(n) < 0.3))[0]:
        luminance = out[i] @ np.asarray([0.299, 0.587, 0.114], dtype=np.float32)
        out[i] = luminance[..., None] + (out[i] - luminance[..., None]) * rng.uniform(0.3, 1.0)
    for i in np.nonzero(rng.random(n) < 0.5)[0]:
        out[i] = _gaussian_blur(out[i], rng.uniform(0.2, 2.0) if heavy[i] else rng.uniform(0.2, 0.8))
    sigma = np.where(heavy, 0.3 * rng.random(n) ** 2, rng.uniform(0.0, 0.06, n)).astype(np.float32)
    out += rng.normal(0.0, 1.0, size=out.shape).astype(np.float32) * sigma[:, None, None, None]
    for i in np.nonzero(heavy & (rng.random(n) < 0.25))[0]:
        hit = rng.random((IMAGE_SIZE, IMAGE_SIZE)) < rng.uniform(0.0, 0.25)
        if rng.random() < 0.5:
            out[i][hit] = (rng.random(int(hit.sum())) < 0.5).astype(np.float32)[:, None]
        else:
            out[i][hit] = _PALETTE_ARRAY[rng.integers(len(COLORS), size=int(hit.sum()))]
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def training_batch(seed, n: int, small_fraction: float = 0.15):
    """A classifier training batch: :class:`ShapesDataset` images, ``small_fraction`` of them re-drawn with
    half-extents 2.5-5 px (below the data's 5-11: generated shapes may be smaller than the data's)."""
    batch = ShapesDataset(seed=seed).batch(n)
    rng = np.random.default_rng([*np.atleast_1d(seed).tolist(), 99])
    attributes = list(batch.attributes)
    small = np.nonzero(rng.random(n) < small_fraction)[0]
    for i in small:
        a = attributes[i]
        size = float(rng.uniform(2.5, MIN_SIZE))
        low, high = size + 1.0, IMAGE_SIZE - size - 1.0
        attributes[i] = Attributes(a.shape, a.color, float(rng.uniform(low, high)), float(rng.uniform(low, high)),
                                   size)
    images = batch.images.copy()
    if len(small):
        images[small] = render([attributes[i] for i in small])
    return images, attributes


def train_classifier(steps: int = 2400, seed: int = 0, batch_size: int = 128, lr: float = 2e-3,
                     path: Path = CLASSIFIER_WEIGHTS, log: Callable[[str], None] = print) -> dict[str, float]:
    """Train :func:`build_classifier` on augmented procedural images and save it (fp16 safetensors) to ``path``.

    Returns the accuracies on 2000 clean held-out images.
    """
    import torch
    import torch.nn.functional as F
    from safetensors.torch import save_file
    from tqdm import tqdm

    torch.manual_seed(seed)
    model = build_classifier()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for step in tqdm(range(steps), desc="classifier", mininterval=10):
        rng = np.random.default_rng([seed, 10, step])
        images, attributes = training_batch([seed, 11, step], batch_size)
        x = _to_tensor(augment(images, rng))
        shape_target = torch.tensor([SHAPES.index(a.shape) for a in attributes])
        color_target = torch.tensor([COLORS.index(a.color) for a in attributes])
        _, shape_logits, color_logits = model(x)
        loss = F.cross_entropy(shape_logits, shape_target) + F.cross_entropy(color_logits, color_target)
        for group in optimizer.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if (step + 1) % 100 == 0:
            log(f"classifier step {step + 1}: loss {loss.item():.4f}")
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata={"steps": str(steps), "seed": str(seed), "batch_size": str(batch_size),
                                          "augment": "issue 21 section 5 (warp, cut, soft edges, blobs, speckle, "
                                                     "contrast, blur, noise, small sizes)"})
    add_feature_statistics(path, seed=seed)
    evaluator = Evaluator(path)
    held_out = ShapesDataset(seed=[seed, 12]).batch(2000)
    shapes = evaluator.classify_shapes(held_out.images)
    accuracy = float(np.mean([s == a.shape for s, a in zip(shapes, held_out.attributes)]))
    log(f"classifier saved to {path} ({path.stat().st_size / 1e3:.0f} kB); held-out shape accuracy {accuracy:.4f}")
    return {"shape_acc": accuracy}


def add_feature_statistics(path: Path = CLASSIFIER_WEIGHTS, seed: int = 0, n: int = 4096) -> None:
    """Store the mean and standard deviation of the classifier's features over ``n`` real images in the weights file
    (``feature_mean`` / ``feature_std``), so that :meth:`Evaluator.features` are standardised: every feature of real
    data has zero mean and unit variance, and Fréchet distances are in those units."""
    import torch
    from safetensors.torch import load_file, save_file

    from safetensors import safe_open

    state = {k: v for k, v in load_file(str(path)).items() if not k.startswith("feature_")}
    with safe_open(str(path), "pt") as handle:
        metadata = dict(handle.metadata() or {})
    evaluator = Evaluator(path)
    images = ShapesDataset(seed=[seed, 13]).batch(n).images
    features = evaluator._forward(images)[0]
    state["feature_mean"] = torch.from_numpy(features.mean(axis=0)).float()
    state["feature_std"] = torch.from_numpy(features.std(axis=0)).float()
    save_file(state, str(path), metadata={**metadata, "feature_statistics": f"{n} real images, seed {seed}"})


# --------------------------------------------------------------------------------------------------------------------
# Fréchet distance
# --------------------------------------------------------------------------------------------------------------------
def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))`` of two feature sets ``[N, D]`` (Heusel et al. 2017).

    ``tr((S_a S_b)^(1/2))`` is computed as the sum of square roots of the eigenvalues of the symmetric matrix
    ``S_a^(1/2) S_b S_a^(1/2)``, which has the same eigenvalues as ``S_a S_b``.
    """
    a = np.asarray(features_a, dtype=np.float64)
    b = np.asarray(features_b, dtype=np.float64)
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a = np.cov(a, rowvar=False)
    cov_b = np.cov(b, rowvar=False)
    # 1. Symmetric square root of cov_a from its eigen-decomposition (clipping round-off negatives).
    eigenvalues, eigenvectors = np.linalg.eigh(cov_a)
    sqrt_a = (eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ eigenvectors.T
    # 2. tr((S_a S_b)^(1/2)) = sum sqrt(eig(S_a^(1/2) S_b S_a^(1/2))).
    middle = sqrt_a @ cov_b @ sqrt_a
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2.0), 0.0, None)).sum()
    distance = float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2.0 * trace_sqrt)
    return max(distance, 0.0)


# --------------------------------------------------------------------------------------------------------------------
# Reference (real) images for a prompt list
# --------------------------------------------------------------------------------------------------------------------
def reference_images(prompt: str, n: int, seed: int = REFERENCE_SEED) -> np.ndarray:
    """``n`` real images for ``prompt``: the attributes it names are fixed, the others random. The images depend
    only on ``(prompt, n, seed)``."""
    shape, color = parse_caption(prompt)
    rng = np.random.default_rng([seed, zlib.crc32(prompt.encode("utf-8"))])
    return render(sample_attributes(rng, n, shape=shape, color=color))


@functools.lru_cache(maxsize=256)
def reference_spread(prompt: str) -> np.ndarray:
    """Standard deviation of ``(cx, cy, sqrt(area))`` over :data:`DIVERSITY_REFERENCE` real images for ``prompt``
    (the denominator of the diversity)."""
    return geometry(reference_images(prompt, DIVERSITY_REFERENCE)).std(axis=0)


# --------------------------------------------------------------------------------------------------------------------
# The evaluator
# --------------------------------------------------------------------------------------------------------------------
@dataclass
class EvalReport:
    """What :meth:`Evaluator.evaluate` measures (see the module docstring for the definitions)."""

    n_images: int
    color_acc: float | None
    shape_acc: float | None
    diversity: float | None
    fd: float | None
    no_shape: float
    """Fraction of images in which no shape was found."""
    per_prompt: dict[str, dict[str, Any]] = field(default_factory=dict)
    color_hits: list[bool | None] = field(default_factory=list, repr=False)
    """Per image: whether it shows the colour its prompt names (None: the prompt names no colour). Two reports on
    the same prompts and noise compare image by image with :func:`paired_counts`."""
    shape_hits: list[bool | None] = field(default_factory=list, repr=False)
    """Per image: the same for the shape."""

    def to_dict(self) -> dict[str, Any]:
        """The summary numbers and the per-prompt table (the per-image hits are left out)."""
        return {k: v for k, v in asdict(self).items() if k not in ("color_hits", "shape_hits")}


class Evaluator:
    """Scores testbed images. ``Evaluator().evaluate(images, prompts)`` -> :class:`EvalReport`."""

    def __init__(self, weights: str | Path = CLASSIFIER_WEIGHTS) -> None:
        import torch
        from safetensors.torch import load_file

        weights = Path(weights)
        if not weights.is_file():
            from zoo.errors import FileMissingError

            raise FileMissingError(f"Evaluator classifier weights not found at {weights}; "
                                   "train them with: python scripts/train_testbed.py --stage classifier")
        state = {k: v.float() for k, v in load_file(str(weights)).items()}
        self.feature_mean = state.pop("feature_mean").numpy() if "feature_mean" in state else 0.0
        self.feature_std = state.pop("feature_std").numpy() if "feature_std" in state else 1.0
        self.model = build_classifier()
        self.model.load_state_dict(state)
        self.model.eval()
        self._torch = torch
        self._reference_cache: dict[tuple[str, int], np.ndarray] = {}

    def _forward(self, images: np.ndarray):
        torch = self._torch
        features, shape_logits = [], []
        with torch.no_grad():
            for start in range(0, len(images), 256):
                f, s, _ = self.model(_to_tensor(images[start:start + 256]))
                features.append(f.numpy())
                shape_logits.append(s.numpy())
        if not features:
            return np.zeros((0, FEATURE_DIM)), np.zeros((0, len(SHAPES)))
        standardised = (np.concatenate(features) - self.feature_mean) / self.feature_std
        return standardised, np.concatenate(shape_logits)

    def _reference_features(self, prompt: str, n: int) -> np.ndarray:
        """Features of :func:`reference_images` ``(prompt, n)``, computed once per evaluator."""
        key = (prompt, n)
        if key not in self._reference_cache:
            self._reference_cache[key] = self._forward(reference_images(prompt, n))[0]
        return self._reference_cache[key]

    def features(self, images: Any) -> np.ndarray:
        return self._forward(as_float_images(images))[0]

    def classify_shapes(self, images: Any) -> list[str]:
        logits = self._forward(as_float_images(images))[1]
        return [SHAPES[int(i)] for i in logits.argmax(axis=1)]

    def analyze(self, images: Any) -> list[dict[str, Any]]:
        """Per image: ``color``, ``shape``, ``cx``, ``cy``, ``size`` (``sqrt(area)``)."""
        images = as_float_images(images)
        _, logits = self._forward(images)
        colors = dominant_colors(images)
        geo = geometry(images)
        return [{"color": colors[i], "shape": SHAPES[int(logits[i].argmax())],
                 "cx": float(geo[i, 0]), "cy": float(geo[i, 1]), "size": float(geo[i, 2])}
                for i in range(len(images))]

    def evaluate(self, images: Any, prompts: Sequence[str] | str) -> EvalReport:
        """Score ``images`` against ``prompts`` (one prompt per image, or one for all)."""
        images = as_float_images(images)
        if isinstance(prompts, str):
            prompts = [prompts] * len(images)
        prompts = list(prompts)
        if len(prompts) != len(images):
            raise ValueError(f"Got {len(images)} images but {len(prompts)} prompts; give one prompt per image")
        features, logits = self._forward(images)
        colors = dominant_colors(images)
        shapes = [SHAPES[int(i)] for i in logits.argmax(axis=1)]
        geo = geometry(images)

        # 1. Accuracies over the images whose prompt names the attribute.
        wanted = [parse_caption(p) for p in prompts]
        color_hit = [None if c is None else colors[i] == c for i, (_, c) in enumerate(wanted)]
        shape_hit = [None if s is None else bool(shapes[i] == s and not np.isnan(geo[i, 0]))
                     for i, (s, _) in enumerate(wanted)]
        color_hits = [h for h in color_hit if h is not None]
        shape_hits = [h for h in shape_hit if h is not None]

        # 2. Diversity: spread of (cx, cy, sqrt(area)) per prompt relative to real images for that prompt.
        unique = list(dict.fromkeys(prompts))
        per_prompt: dict[str, dict[str, Any]] = {}
        ratios = []
        for prompt in unique:
            members = [i for i, p in enumerate(prompts) if p == prompt]
            found = geo[members][~np.isnan(geo[members, 0])]
            entry: dict[str, Any] = {"n": len(members)}
            s, c = wanted[members[0]]
            if c is not None:
                entry["color_acc"] = float(np.mean([color_hit[i] for i in members]))
            if s is not None:
                entry["shape_acc"] = float(np.mean([shape_hit[i] for i in members]))
            if len(found) >= 2:
                ratio = float(np.mean(found.std(axis=0) / reference_spread(prompt)))
                entry["diversity"] = ratio
                ratios.append(ratio)
            per_prompt[prompt] = entry

        # 3. Fréchet distance to REFERENCE_PER_IMAGE real images per generated image, drawn for the same prompts.
        fd = None
        if len(images) >= 2:
            counts = {prompt: prompts.count(prompt) for prompt in unique}
            reference = np.concatenate([self._reference_features(p, REFERENCE_PER_IMAGE * k)
                                        for p, k in counts.items()])
            fd = frechet_distance(features, reference)

        return EvalReport(
            n_images=len(images),
            color_acc=float(np.mean(color_hits)) if color_hits else None,
            shape_acc=float(np.mean(shape_hits)) if shape_hits else None,
            diversity=float(np.mean(ratios)) if ratios else None,
            fd=fd,
            no_shape=float(np.isnan(geo[:, 0]).mean()) if len(images) else 0.0,
            per_prompt=per_prompt,
            color_hits=color_hit,
            shape_hits=shape_hit,
        )


def paired_counts(hits_a: Sequence[bool | None], hits_b: Sequence[bool | None]) -> tuple[int, int, float]:
    """Compare two methods image by image on the same prompts and noise: ``(wins, losses, p)`` with ``wins`` the
    images that ``a`` gets right and ``b`` wrong, ``losses`` the reverse (images either gets right or wrong in both
    count for neither), and ``p`` the two-sided exact McNemar test of "a and b are equally accurate": the probability
    that a fair coin split ``wins + losses`` discordant images at least as unevenly. With accuracies near 1 the
    difference between two rows rests on a few discordant images; ``p`` says whether it can be told from chance."""
    if len(hits_a) != len(hits_b):
        raise ValueError(f"paired_counts needs the same images: {len(hits_a)} against {len(hits_b)} hits")
    pairs = [(a, b) for a, b in zip(hits_a, hits_b) if a is not None and b is not None]
    wins = sum(1 for a, b in pairs if a and not b)
    losses = sum(1 for a, b in pairs if b and not a)
    n, low = wins + losses, min(wins, losses)
    tail = sum(math.comb(n, k) for k in range(low + 1))  # exact integers: 2 ** n overflows a float past n = 1023
    p = 1.0 if n == 0 else min(1.0, 2 * tail / 2 ** n)
    return wins, losses, p
