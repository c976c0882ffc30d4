"""Stress test of the testbed evaluator (issue #21 §5): how far can its colour and shape verdicts be trusted on images
that are not clean renderings -- in particular on the soft, washed-out, noisy outputs of one-step students?

Part 1, degraded ground truth. Images are rendered with known shape and colour (``zoo.testbed.data``, fixed seed,
``--n`` per condition) and degraded at graded strengths:

============  ==========================================================================================
condition     strength
============  ==========================================================================================
noise         sigma of additive Gaussian pixel noise (0.05 .. 0.3)
blur          sigma in pixels of a Gaussian blur of the whole image (0.5 .. 2)
salt_pepper   fraction of pixels set to black or white
speckle       fraction of pixels set to a random palette colour (stray saturated pixels)
blobs         number of stray blobs of other palette colours (one-step samples show such smudges)
occlusion     fraction of the shape's area removed by a random straight cut (0.1 .. 0.4)
small         the shape's half-extent range in pixels (the data has 5..11)
soft_edges    sigma in pixels of an outward fade: opacity min(1, 2 x blurred coverage), the interior opaque
contrast      factor of the contrast around the grey background (1 = clean)
desaturate    factor of the saturation around each pixel's luminance (1 = clean)
bleed         opacity of a halo of the shape's colour around it (the colour bleeding into the background)
warp          amplitude in pixels of a smooth random displacement of the shape (wobbly outlines)
one_step      soft edges + low contrast + noise (+ warp at the strongest level): what one-step samples look like
============  ==========================================================================================

For every condition and strength the table gives the evaluator's colour accuracy, shape accuracy and no-shape rate
(the definitions of ``Evaluator.evaluate``) and the shape accuracy of the independent geometric scorer below.

Part 2, real samples (``--samplers``, default the committed swiftbrush and snoopi students at one step and the
teacher at 25 DDIM steps with its recommended CFG, plus the teacher at 2 steps): the 15 benchmark prompts that name a
shape, ``--batches`` batches of 16 with seeds 7000 + 100 k + prompt index (neither benchmark nor validation noise). The
evaluator's shape verdict is compared with a geometric scorer written independently of it:

- foreground: each pixel's chroma ``(r - (g + b) / 2, sqrt(3) / 2 (g - b))`` projected on the image's dominant hue
  direction (the chroma-weighted hue histogram's peak); threshold at half the 99th percentile (so washed-out images
  are segmented at their own contrast), at least 0.08; the largest 8-connected component;
- fit: for each shape, the template of the data's geometry whose area and centroid match the component's, then the
  best intersection-over-union over 5 scales x 5 x 5 shifts; the verdict is the shape with the highest IoU.

Its verdicts are not ground truth on generated images either; where the two disagree, ``--dump DIR`` writes a grid of
those images (evaluator verdict / geometric verdict in the file name) for inspection.

Usage::

    OMP_NUM_THREADS=1 python scripts/stress_evaluator.py --json runs/stress/before.json
    python scripts/stress_evaluator.py --weights runs/stress/candidate.safetensors --sample-cache runs/stress/s.npz
    python scripts/stress_evaluator.py --no-samples --n 96     # the degraded table only, quickly
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from zoo.testbed.data import (BACKGROUND, COLORS, IMAGE_SIZE, PALETTE, SHAPES, Attributes, caption_for,  # noqa: E402
                              sample_attributes, shape_mask)

GREY = np.asarray(BACKGROUND, dtype=np.float32)
PALETTE_RGB = {name: np.asarray(rgb, dtype=np.float32) for name, rgb in PALETTE.items()}


# --------------------------------------------------------------------------------------------------------------------
# Image operations (numpy only)
# --------------------------------------------------------------------------------------------------------------------
def gaussian_blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur over axes 1 and 2 of ``[N, H, W]`` or ``[N, H, W, C]``, edges replicated."""
    if sigma <= 0:
        return x.copy()
    radius = max(1, int(math.ceil(3 * sigma)))
    t = np.arange(-radius, radius + 1, dtype=np.float32)
    kernel = np.exp(-0.5 * (t / sigma) ** 2)
    kernel /= kernel.sum()
    out = x.astype(np.float32)
    for axis in (1, 2):
        pad = [(0, 0)] * out.ndim
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="edge")
        n = out.shape[axis]
        out = sum(w * np.take(padded, np.arange(k, k + n), axis=axis) for k, w in enumerate(kernel))
    return out.astype(np.float32)


def compose(alpha: np.ndarray, colors: np.ndarray, background: np.ndarray | None = None) -> np.ndarray:
    """Images from per-pixel opacity ``[N, H, W]`` of per-image colours ``[N, 3]`` over the grey background."""
    bg = GREY if background is None else background
    a = alpha[..., None]
    return (bg * (1 - a) + colors[:, None, None, :] * a).astype(np.float32)


def smooth_field(rng: np.random.Generator, n: int, sigma: float = 3.0) -> np.ndarray:
    """``[N, 32, 32]`` smooth random field with unit peak magnitude per image."""
    field = gaussian_blur(rng.normal(size=(n, IMAGE_SIZE, IMAGE_SIZE)).astype(np.float32), sigma)
    return field / (np.abs(field).reshape(n, -1).max(axis=1)[:, None, None] + 1e-8)


def bilinear(x: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Sample ``x [N, H, W]`` at pixel-centre coordinates ``ys, xs [N, H, W]`` (edges replicated)."""
    n, h, w = x.shape
    ys = np.clip(ys, 0, h - 1)
    xs = np.clip(xs, 0, w - 1)
    y0 = np.floor(ys).astype(int)
    x0 = np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    fy, fx = ys - y0, xs - x0
    idx = np.arange(n)[:, None, None]
    return ((x[idx, y0, x0] * (1 - fx) + x[idx, y0, x1] * fx) * (1 - fy)
            + (x[idx, y1, x0] * (1 - fx) + x[idx, y1, x1] * fx) * fy).astype(np.float32)


# --------------------------------------------------------------------------------------------------------------------
# Ground truth and degradations
# --------------------------------------------------------------------------------------------------------------------
class Truth:
    """``n`` ground-truth shapes (balanced over the 12 shape-colour pairs) with their coverage masks."""

    def __init__(self, n: int, seed: int, size_range: tuple[float, float] | None = None) -> None:
        rng = np.random.default_rng(seed)
        attrs = []
        for i in range(n):
            shape, color = SHAPES[i % 3], COLORS[(i // 3) % 4]
            a = sample_attributes(rng, 1, shape=shape, color=color)[0]
            if size_range is not None:
                size = float(rng.uniform(*size_range))
                low, high = size + 1.0, IMAGE_SIZE - size - 1.0
                a = Attributes(shape, color, float(rng.uniform(low, high)), float(rng.uniform(low, high)), size)
            attrs.append(a)
        self.attributes = attrs
        self.alpha = np.stack([shape_mask(a) for a in attrs])
        self.colors = np.stack([PALETTE_RGB[a.color] for a in attrs])
        self.prompts = [caption_for(a.shape, a.color) for a in attrs]

    def images(self, alpha: np.ndarray | None = None) -> np.ndarray:
        return compose(self.alpha if alpha is None else alpha, self.colors)


def _noise(t, rng, sigma):
    x = t.images()
    return np.clip(x + rng.normal(0, sigma, x.shape).astype(np.float32), 0, 1)


def _blur(t, rng, sigma):
    return np.clip(gaussian_blur(t.images(), sigma), 0, 1)


def _salt_pepper(t, rng, fraction):
    x = t.images()
    hit = rng.random(x.shape[:3]) < fraction
    x[hit] = (rng.random(int(hit.sum())) < 0.5).astype(np.float32)[:, None]
    return x


def _speckle(t, rng, fraction):
    x = t.images()
    hit = rng.random(x.shape[:3]) < fraction
    palette = np.stack(list(PALETTE_RGB.values()))
    x[hit] = palette[rng.integers(len(palette), size=int(hit.sum()))]
    return x


def _blobs(t, rng, count):
    """``count`` soft blobs (radius 1.5-3 px) of other palette colours, placed away from the shape when possible."""
    x = t.images()
    ys, xs = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE] + 0.5
    for i, attr in enumerate(t.attributes):
        others = [c for c in COLORS if c != attr.color]
        for _ in range(int(count)):
            for _try in range(20):
                by, bx = rng.uniform(2, IMAGE_SIZE - 2, size=2)
                if math.hypot(bx - attr.cx, by - attr.cy) > attr.size + 3:
                    break
            radius = rng.uniform(1.5, 3.0)
            a = np.clip(radius + 0.5 - np.hypot(xs - bx, ys - by), 0, 1)[..., None] * 0.9
            x[i] = x[i] * (1 - a) + PALETTE_RGB[others[int(rng.integers(3))]] * a
    return x


def _occlusion(t, rng, fraction):
    """Remove ``fraction`` of each shape's coverage by a straight cut in a random direction (background shows)."""
    alpha = t.alpha.copy()
    ys, xs = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE] + 0.5
    for i in range(len(alpha)):
        theta = rng.uniform(0, 2 * math.pi)
        proj = xs * math.cos(theta) + ys * math.sin(theta)
        order = np.argsort(-proj.ravel())
        cumulative = np.cumsum(alpha[i].ravel()[order])
        cut = np.searchsorted(cumulative, fraction * cumulative[-1])
        keep = np.ones(alpha[i].size, dtype=np.float32)
        keep[order[:cut + 1]] = 0.0
        alpha[i] *= keep.reshape(alpha[i].shape)
    return t.images(alpha)


def _soft_edges(t, rng, sigma):
    """Alpha-blended edges: the opacity ``min(1, 2 blur(coverage))`` keeps the shape opaque up to its outline and
    fades it out over about ``sigma`` pixels outside (unlike ``blur``, the interior and corners keep full colour)."""
    return t.images(np.clip(2.0 * gaussian_blur(t.alpha, sigma), 0, 1))


def _contrast(t, rng, factor):
    return 0.5 + (t.images() - 0.5) * factor


def _desaturate(t, rng, factor):
    x = t.images()
    luminance = (x @ np.asarray([0.299, 0.587, 0.114], dtype=np.float32))[..., None]
    return np.clip(luminance + (x - luminance) * factor, 0, 1)


def _bleed(t, rng, opacity):
    halo = gaussian_blur(t.alpha, 3.0)
    halo /= halo.reshape(len(halo), -1).max(axis=1)[:, None, None]
    return t.images(t.alpha + (1 - t.alpha) * opacity * halo)


def _warp_alpha(alpha, rng, amplitude):
    ys, xs = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float32)
    n = len(alpha)
    dy, dx = smooth_field(rng, n) * amplitude, smooth_field(rng, n) * amplitude
    return bilinear(alpha, ys[None] + dy, xs[None] + dx)


def _warp(t, rng, amplitude):
    return t.images(_warp_alpha(t.alpha, rng, amplitude))


ONE_STEP_LEVELS = {  # soft-edge sigma, contrast factor, noise sigma, warp amplitude
    "mild": (0.75, 0.7, 0.05, 0.0),
    "medium": (1.25, 0.55, 0.08, 0.0),
    "strong": (1.5, 0.45, 0.12, 1.0),
    "severe": (2.0, 0.4, 0.15, 1.5),
}


def _one_step(t, rng, level):
    soft, contrast, noise, warp = ONE_STEP_LEVELS[level]
    alpha = t.alpha if warp == 0 else _warp_alpha(t.alpha, rng, warp)
    x = 0.5 + (t.images(np.clip(2.0 * gaussian_blur(alpha, soft), 0, 1)) - 0.5) * contrast
    return np.clip(x + rng.normal(0, noise, x.shape).astype(np.float32), 0, 1)


CONDITIONS = {
    "clean": ([0], None),
    "noise": ([0.05, 0.1, 0.2, 0.3], _noise),
    "blur": ([0.5, 1.0, 1.5, 2.0], _blur),
    "salt_pepper": ([0.05, 0.1, 0.2, 0.3], _salt_pepper),
    "speckle": ([0.02, 0.05, 0.1, 0.2], _speckle),
    "blobs": ([1, 2, 3], _blobs),
    "occlusion": ([0.1, 0.2, 0.3, 0.4], _occlusion),
    "small": (["5-6", "4-5", "3-4", "2-3"], None),
    "soft_edges": ([0.5, 1.0, 1.5, 2.0], _soft_edges),
    "contrast": ([0.7, 0.5, 0.4, 0.3], _contrast),
    "desaturate": ([0.7, 0.5, 0.4, 0.3], _desaturate),
    "bleed": ([0.1, 0.2, 0.3, 0.4], _bleed),
    "warp": ([0.5, 1.0, 1.5, 2.0], _warp),
    "one_step": (list(ONE_STEP_LEVELS), _one_step),
}


def degraded_sets(n: int, seed: int = 0, conditions=None):
    """Yield ``(condition, strength, images, truth)`` for every condition and strength (seeded)."""
    base = Truth(n, seed)
    for ci, (name, (strengths, fn)) in enumerate(CONDITIONS.items()):
        if conditions and name not in conditions:
            continue
        for si, strength in enumerate(strengths):
            rng = np.random.default_rng([seed, 1, ci, si])
            if name == "clean":
                yield name, strength, base.images(), base
            elif name == "small":
                low, high = (float(v) for v in str(strength).split("-"))
                truth = Truth(n, seed + 1 + si, size_range=(low, high))
                yield name, strength, truth.images(), truth
            else:
                yield name, strength, fn(base, rng, strength).astype(np.float32), base


# --------------------------------------------------------------------------------------------------------------------
# The independent geometric scorer
# --------------------------------------------------------------------------------------------------------------------
_SS = 2  # template supersampling
_SUB = (np.arange(IMAGE_SIZE * _SS, dtype=np.float32) + 0.5) / _SS
_SCALES = np.asarray([0.85, 0.92, 1.0, 1.08, 1.15], dtype=np.float32)
_SHIFTS = np.asarray([-1.0, -0.5, 0.0, 0.5, 1.0], dtype=np.float32)
_PALETTE_CHROMA = {name: (rgb[0] - (rgb[1] + rgb[2]) / 2, math.sqrt(3) / 2 * (rgb[1] - rgb[2]))
                   for name, rgb in PALETTE_RGB.items()}
_PALETTE_ANGLE = {name: math.atan2(b, a) for name, (a, b) in _PALETTE_CHROMA.items()}


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected component of a boolean ``[H, W]`` mask (flood fill)."""
    seen = np.zeros_like(mask)
    best: list[tuple[int, int]] = []
    h, w = mask.shape
    for y0, x0 in zip(*np.nonzero(mask)):
        if seen[y0, x0]:
            continue
        stack, component = [(y0, x0)], []
        seen[y0, x0] = True
        while stack:
            y, x = stack.pop()
            component.append((y, x))
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    yy, xx = y + dy, x + dx
                    if 0 <= yy < h and 0 <= xx < w and mask[yy, xx] and not seen[yy, xx]:
                        seen[yy, xx] = True
                        stack.append((yy, xx))
        if len(component) > len(best):
            best = component
    out = np.zeros_like(mask)
    if best:
        ys, xs = zip(*best)
        out[list(ys), list(xs)] = True
    return out


def geometric_mask(image: np.ndarray) -> np.ndarray | None:
    """Boolean foreground of one image ``[32, 32, 3]`` for the geometric scorer, or None when there is no shape."""
    a = image[..., 0] - (image[..., 1] + image[..., 2]) / 2
    b = math.sqrt(3) / 2 * (image[..., 1] - image[..., 2])
    chroma = np.hypot(a, b)
    angle = np.arctan2(b, a)
    # Dominant hue: the palette direction with the most chroma-squared weight within 45 degrees.
    weights = {}
    for name, centre in _PALETTE_ANGLE.items():
        diff = np.abs((angle - centre + math.pi) % (2 * math.pi) - math.pi)
        weights[name] = float((chroma ** 2 * (diff < math.pi / 4)).sum())
    dominant = max(weights, key=weights.get)
    direction = _PALETTE_ANGLE[dominant]
    projection = chroma * np.cos(angle - direction)
    top = float(np.percentile(projection, 99))
    threshold = max(0.5 * top, 0.08)
    mask = projection > threshold
    if mask.sum() < 4:
        return None
    mask = _largest_component(mask)
    return mask if mask.sum() >= 4 else None


def _templates(shape: str, cx: np.ndarray, cy: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Coverage ``[K, 32, 32]`` of K templates (the data's geometry) at centres ``cx, cy`` and sizes ``s``."""
    x = _SUB[None, None, :] - cx[:, None, None]
    y = _SUB[None, :, None] - cy[:, None, None]
    s = s[:, None, None]
    if shape == "circle":
        inside = x * x + y * y <= s * s
    elif shape == "square":
        inside = (np.abs(x) <= s) & (np.abs(y) <= s)
    else:
        inside = (y <= s) & (np.abs(x) <= (y + s) / 2)
    k = len(cx)
    return inside.reshape(k, IMAGE_SIZE, _SS, IMAGE_SIZE, _SS).mean(axis=(2, 4)).astype(np.float32)


AREA_PER_SIZE2 = {"circle": math.pi, "square": 4.0, "triangle": 2.0}
CENTROID_OFFSET = {"circle": 0.0, "square": 0.0, "triangle": 1.0 / 3.0}  # centroid y - cy, in units of the size


def geometric_shape(image: np.ndarray) -> tuple[str | None, dict[str, float]]:
    """``(verdict, best IoU per shape)`` for one image; verdict None when no foreground is found."""
    mask = geometric_mask(image)
    if mask is None:
        return None, {}
    ys, xs = np.nonzero(mask)
    area = float(mask.sum())
    mx, my = xs.mean() + 0.5, ys.mean() + 0.5
    m = mask.astype(np.float32)
    scores = {}
    for shape in SHAPES:
        s0 = math.sqrt(area / AREA_PER_SIZE2[shape])
        s = np.repeat(s0 * _SCALES, len(_SHIFTS) ** 2)
        dx = np.tile(np.repeat(_SHIFTS, len(_SHIFTS)), len(_SCALES))
        dy = np.tile(_SHIFTS, len(_SCALES) * len(_SHIFTS))
        cx = mx + dx
        cy = my - CENTROID_OFFSET[shape] * s + dy
        t = _templates(shape, cx, cy, s)
        inter = (t * m).sum(axis=(1, 2))
        union = t.sum(axis=(1, 2)) + area - inter
        scores[shape] = float((inter / union).max())
    return max(scores, key=scores.get), scores


def geometric_shapes(images: np.ndarray) -> list[str | None]:
    return [geometric_shape(image)[0] for image in images]


# --------------------------------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------------------------------
def score(evaluator, images: np.ndarray, truth: Truth, geometric: bool) -> dict:
    report = evaluator.evaluate(images, truth.prompts)
    row = {"color_acc": report.color_acc, "shape_acc": report.shape_acc, "no_shape": report.no_shape}
    if geometric:
        verdicts = geometric_shapes(images)
        row["geo_shape_acc"] = float(np.mean([v == a.shape for v, a in zip(verdicts, truth.attributes)]))
    return row


def stress_table(evaluator, n: int, seed: int = 0, conditions=None, geometric: bool = True, log=print) -> list[dict]:
    rows = []
    for name, strength, images, truth in degraded_sets(n, seed, conditions):
        row = {"condition": name, "strength": strength, "n": len(images),
               **score(evaluator, images, truth, geometric)}
        rows.append(row)
        log(format_row(row))
    return rows


def format_row(row: dict) -> str:
    def cell(v):
        return "-" if v is None else f"{v:.3f}"

    return (f"{row['condition']:<12} {str(row['strength']):>7} {cell(row['color_acc']):>7} {cell(row['shape_acc']):>7}"
            f" {cell(row['no_shape']):>8} {cell(row.get('geo_shape_acc')):>9}")


HEADER = f"{'condition':<12} {'strength':>7} {'colour':>7} {'shape':>7} {'no_shape':>8} {'geo_shape':>9}"


# --------------------------------------------------------------------------------------------------------------------
# Real samples
# --------------------------------------------------------------------------------------------------------------------
SAMPLERS = {  # name -> (how to build the sampler, call options)
    "teacher_25": ("teacher", {"steps": 25}),
    "teacher_2": ("teacher", {"steps": 2}),
    "swiftbrush": ("swiftbrush", {}),
    "snoopi": ("snoopi", {}),
}
SAMPLE_SEED = 7000


def generate(name: str, batches: int, log=print) -> tuple[np.ndarray, list[str]]:
    from zoo.testbed.evaluator import as_float_images
    from zoo.testbed.prompts import BENCHMARK_PROMPTS

    kind, options = SAMPLERS[name]
    if kind == "teacher":
        from zoo.t2i import DDIMSampler

        sampler = DDIMSampler.from_model(device="cpu")
    else:
        from zoo.loading import load_sampler

        sampler = load_sampler(kind, device="cpu")[1]
    prompts = [p for p in BENCHMARK_PROMPTS if any(s in p for s in SHAPES)]
    images, labels = [], []
    started = time.perf_counter()
    for k in range(batches):
        for index, prompt in enumerate(prompts):
            result = sampler(prompt, seed=SAMPLE_SEED + 100 * k + index, batch_size=16, **options)
            images.append(as_float_images(result.images))
            labels += [prompt] * len(result.images)
    log(f"sampled {name}: {len(labels)} images in {time.perf_counter() - started:.0f} s")
    return np.concatenate(images), labels


def agreement_table(evaluator, samples: dict[str, tuple[np.ndarray, list[str]]], dump: Path | None = None,
                    log=print) -> list[dict]:
    from zoo.testbed.data import parse_caption
    from zoo.testbed.evaluator import geometry

    rows = []
    for name, (images, prompts) in samples.items():
        cnn = evaluator.classify_shapes(images)
        found = ~np.isnan(geometry(images)[:, 0])
        cnn = [c if f else None for c, f in zip(cnn, found)]
        geo = geometric_shapes(images)
        wanted = [parse_caption(p)[0] for p in prompts]
        both = [i for i in range(len(images)) if cnn[i] is not None and geo[i] is not None]
        agree = [cnn[i] == geo[i] for i in both]
        row = {"sampler": name, "n": len(images),
               "cnn_shape_acc": float(np.mean([c == w for c, w in zip(cnn, wanted)])),
               "geo_shape_acc": float(np.mean([g == w for g, w in zip(geo, wanted)])),
               "agreement": float(np.mean(agree)) if agree else None, "n_compared": len(both),
               "cnn_right_geo_wrong": sum(cnn[i] == wanted[i] != geo[i] for i in both),
               "geo_right_cnn_wrong": sum(geo[i] == wanted[i] != cnn[i] for i in both)}
        rows.append(row)
        if dump is not None:
            dump_disagreements(dump / name, images, [(i, cnn[i], geo[i], wanted[i]) for i in both
                                                     if cnn[i] != geo[i]])
    log(f"{'sampler':<12} {'n':>5} {'cnn_acc':>8} {'geo_acc':>8} {'agree':>7} {'cnn+/geo-':>10} {'geo+/cnn-':>10}")
    for r in rows:
        log(f"{r['sampler']:<12} {r['n']:>5} {r['cnn_shape_acc']:>8.3f} {r['geo_shape_acc']:>8.3f} "
            f"{r['agreement']:>7.3f} {r['cnn_right_geo_wrong']:>10} {r['geo_right_cnn_wrong']:>10}")
    return rows


def dump_disagreements(folder: Path, images: np.ndarray, cases: list) -> None:
    """One enlarged PNG per disagreement: ``{index}_{prompt shape}_cnn-{verdict}_geo-{verdict}.png``."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, cnn, geo, wanted in cases:
        pixels = np.clip(np.round(images[i] * 255), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).resize((128, 128), Image.NEAREST).save(
            folder / f"{i:04d}_{wanted}_cnn-{cnn}_geo-{geo}.png")


# --------------------------------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=300, help="Ground-truth images per condition and strength.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--weights", default=None, help="Classifier weights (default: the committed ones).")
    parser.add_argument("--conditions", nargs="*", default=None, choices=list(CONDITIONS))
    parser.add_argument("--no-geometric", action="store_true", help="Skip the geometric scorer in the stress table.")
    parser.add_argument("--no-samples", action="store_true", help="Skip part 2 (real samples).")
    parser.add_argument("--samplers", nargs="*", default=list(SAMPLERS), choices=list(SAMPLERS))
    parser.add_argument("--batches", type=int, default=2, help="Batches of 16 per prompt and sampler.")
    parser.add_argument("--sample-cache", default=None,
                        help="NPZ file: load the samples from it when it has them, else sample and save them there.")
    parser.add_argument("--dump", default=None, help="Folder for PNGs of the images the two scorers disagree on.")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    import torch

    from zoo.testbed.evaluator import CLASSIFIER_WEIGHTS, Evaluator

    torch.set_num_threads(args.threads)
    evaluator = Evaluator(args.weights or CLASSIFIER_WEIGHTS)
    started = time.perf_counter()
    print(HEADER)
    rows = stress_table(evaluator, args.n, args.seed, args.conditions, geometric=not args.no_geometric)
    print(f"({time.perf_counter() - started:.0f} s)")
    result = {"weights": str(args.weights or CLASSIFIER_WEIGHTS), "n": args.n, "stress": rows}

    if not args.no_samples:
        cache = Path(args.sample_cache) if args.sample_cache else None
        stored = dict(np.load(cache, allow_pickle=False)) if cache and cache.is_file() else {}
        samples = {}
        for name in args.samplers:
            key = f"{name}_{args.batches}"
            if key + "_images" not in stored:
                images, prompts = generate(name, args.batches)
                stored[key + "_images"], stored[key + "_prompts"] = images, np.asarray(prompts)
                if cache:
                    cache.parent.mkdir(parents=True, exist_ok=True)
                    np.savez_compressed(cache, **stored)
            samples[name] = (stored[key + "_images"], [str(p) for p in stored[key + "_prompts"]])
        result["agreement"] = agreement_table(evaluator, samples, Path(args.dump) if args.dump else None)

    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
