"""The testbed's procedural dataset: one coloured shape on a plain background, with a caption.

Every sample is a 32x32 RGB image of exactly one shape (circle, square or triangle) in one colour (red, green, blue or
yellow), at a random position and size, on a plain grey background, rendered with 4x4 supersampling so edges are
anti-aliased. Its caption names both attributes (``"a red circle"``), only the shape (``"a circle"``), only the colour
(``"something red"``) or neither (``"something"``), so that unconditional and partially conditioned prompts exist for
classifier-free guidance and negative prompts.

The dataset is seeded and unlimited: :func:`sample_attributes` draws attributes from a ``numpy.random.Generator`` and
:func:`render` turns them into pixels; the same seed always gives the same images and captions. Nothing here imports
torch (images are ``float32`` arrays in ``[0, 1]``, shape ``[N, 32, 32, 3]``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IMAGE_SIZE = 32
SHAPES = ("circle", "square", "triangle")
COLORS = ("red", "green", "blue", "yellow")
PALETTE = {
    "red": (0.90, 0.12, 0.10),
    "green": (0.10, 0.72, 0.18),
    "blue": (0.12, 0.25, 0.92),
    "yellow": (0.95, 0.85, 0.10),
}
"""RGB of each colour in ``[0, 1]``; all are saturated, the background is neutral grey."""
BACKGROUND = (0.5, 0.5, 0.5)

MIN_SIZE = 5.0
MAX_SIZE = 11.0
"""Range of the shape's half-extent in pixels: circle radius, half the square's side, half the triangle's base and
height. The centre is drawn so that the whole shape lies inside the image with a margin of :data:`MARGIN`."""
MARGIN = 1.0

CAPTION_KINDS = ("both", "shape", "color", "none")
CAPTION_PROBS = (0.55, 0.15, 0.15, 0.15)
"""How often a caption names both attributes, only the shape, only the colour, or neither."""

_SUPERSAMPLE = 4


@dataclass(frozen=True)
class Attributes:
    """What one image shows. ``cx``, ``cy`` and ``size`` are in pixels (``x`` to the right, ``y`` down)."""

    shape: str
    color: str
    cx: float
    cy: float
    size: float


def caption_for(shape: str | None, color: str | None) -> str:
    """The caption naming ``shape`` and/or ``color`` (either may be None): ``"a red circle"``, ``"a circle"``,
    ``"something red"`` or ``"something"``."""
    if shape and color:
        return f"a {color} {shape}"
    if shape:
        return f"a {shape}"
    if color:
        return f"something {color}"
    return "something"


def parse_caption(caption: str) -> tuple[str | None, str | None]:
    """The inverse of :func:`caption_for`: ``(shape, color)``, None for an attribute the caption does not name.

    Works on any prompt: it picks the first shape word and the first colour word it finds.
    """
    words = caption.lower().replace(",", " ").split()
    shape = next((w for w in words if w in SHAPES), None)
    color = next((w for w in words if w in COLORS), None)
    return shape, color


def sample_attributes(rng: np.random.Generator, n: int, shape: str | None = None,
                      color: str | None = None) -> list[Attributes]:
    """Draw ``n`` attribute sets; ``shape`` / ``color`` fix that attribute, otherwise it is uniform."""
    out = []
    for _ in range(n):
        s = shape if shape is not None else SHAPES[int(rng.integers(len(SHAPES)))]
        c = color if color is not None else COLORS[int(rng.integers(len(COLORS)))]
        size = float(rng.uniform(MIN_SIZE, MAX_SIZE))
        low, high = size + MARGIN, IMAGE_SIZE - size - MARGIN
        cx, cy = float(rng.uniform(low, high)), float(rng.uniform(low, high))
        out.append(Attributes(s, c, cx, cy, size))
    return out


def sample_captions(rng: np.random.Generator, attributes: list[Attributes]) -> list[str]:
    """One caption per image, naming both, one or none of its attributes with :data:`CAPTION_PROBS`."""
    kinds = rng.choice(len(CAPTION_KINDS), size=len(attributes), p=CAPTION_PROBS)
    captions = []
    for attr, kind in zip(attributes, kinds):
        name = CAPTION_KINDS[int(kind)]
        captions.append(caption_for(attr.shape if name in ("both", "shape") else None,
                                    attr.color if name in ("both", "color") else None))
    return captions


def shape_mask(attr: Attributes, size: int = IMAGE_SIZE, supersample: int = _SUPERSAMPLE) -> np.ndarray:
    """Coverage of the shape in each pixel, ``float32 [size, size]`` in ``[0, 1]`` (anti-aliased)."""
    n = size * supersample
    coords = (np.arange(n, dtype=np.float32) + 0.5) / supersample  # sub-pixel centres in pixel units
    y, x = np.meshgrid(coords, coords, indexing="ij")
    dx, dy = x - attr.cx, y - attr.cy
    if attr.shape == "circle":
        inside = dx * dx + dy * dy <= attr.size * attr.size
    elif attr.shape == "square":
        inside = (np.abs(dx) <= attr.size) & (np.abs(dy) <= attr.size)
    elif attr.shape == "triangle":
        # Upright isosceles triangle: apex (cx, cy - size), base from (cx - size, cy + size) to (cx + size, cy + size).
        # A point is inside when it is above the base and |dx| <= half-width at its height (which grows linearly
        # from 0 at the apex to size at the base).
        half_width = (dy + attr.size) / 2.0
        inside = (dy <= attr.size) & (np.abs(dx) <= half_width)
    else:
        raise ValueError(f"Unknown shape {attr.shape!r}; valid shapes: {', '.join(SHAPES)}")
    coverage = inside.reshape(size, supersample, size, supersample).mean(axis=(1, 3))
    return coverage.astype(np.float32)


def render(attributes: list[Attributes], size: int = IMAGE_SIZE) -> np.ndarray:
    """Images ``float32 [N, size, size, 3]`` in ``[0, 1]`` showing each attribute set on the plain background."""
    images = np.empty((len(attributes), size, size, 3), dtype=np.float32)
    background = np.asarray(BACKGROUND, dtype=np.float32)
    for i, attr in enumerate(attributes):
        coverage = shape_mask(attr, size)[..., None]
        color = np.asarray(PALETTE[attr.color], dtype=np.float32)
        images[i] = background * (1.0 - coverage) + color * coverage
    return images


@dataclass
class Batch:
    images: np.ndarray
    """``float32 [N, 32, 32, 3]`` in ``[0, 1]``."""
    captions: list[str]
    attributes: list[Attributes]


class ShapesDataset:
    """An unlimited, seeded stream of captioned images.

    ``ShapesDataset(seed).batch(n)`` returns the next ``n`` samples; two datasets with the same seed yield the same
    sequence of batches.
    """

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)

    def batch(self, n: int) -> Batch:
        attributes = sample_attributes(self.rng, n)
        captions = sample_captions(self.rng, attributes)
        return Batch(render(attributes), captions, attributes)


def to_uint8(images: np.ndarray) -> np.ndarray:
    """``[0, 1]`` floats to ``uint8`` pixels."""
    return np.clip(np.round(images * 255.0), 0, 255).astype(np.uint8)
