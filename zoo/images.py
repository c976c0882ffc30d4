"""Image input and output for the super-resolution methods: any image in, an RGB float array out.

:func:`load_image` and :func:`to_rgb_float` return ``float32 [H, W, 3]`` in [0, 1] and handle the modes Pillow
reports:

===================================  ===============================================================================
mode                                 handling
===================================  ===============================================================================
``RGB``                              as is
``L``, ``1``, ``CMYK``, ``YCbCr``,   converted to RGB by Pillow
``RGBX``
``P`` (palette)                      converted to RGB (to RGBA first when the palette has transparency)
``I;16``, ``I;16B/L/N``, ``I``       16-bit grey: divided by 65535 (keeps the 16-bit precision), replicated to RGB
``RGBA``, ``LA``, ``PA``, ``RGBa``,  alpha composited on white (``alpha="white"``, default) or dropped
``La``                               (``alpha="drop"``), with a warning either way
``F``, ``HSV``, ``LAB``              refused with one :class:`zoo.errors.InputError` line
===================================  ===============================================================================

16-bit RGB PNGs are decoded by Pillow to 8-bit RGB (Pillow has no 16-bit RGB mode).
numpy inputs: ``uint8`` (÷255), ``uint16`` (÷65535), floats in [0, 1]; ``[H, W]`` grey, ``[H, W, 3]``, ``[H, W, 4]``.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from zoo.errors import InputError

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
ALPHA_MODES = ("white", "drop")
_CONVERTIBLE = {"L", "1", "CMYK", "YCbCr", "RGBX"}
_WITH_ALPHA = {"RGBA", "LA", "PA", "RGBa", "La"}
_SIXTEEN_BIT = {"I;16", "I;16B", "I;16L", "I;16N"}


def load_image(path: str | Path, *, alpha: str = "white") -> np.ndarray:
    """Read an image file as ``float32 [H, W, 3]`` in [0, 1] (see the module table for modes)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise InputError(f"Image not found: {path}")
    try:
        with Image.open(path) as image:
            image.load()
            return to_rgb_float(image, alpha=alpha, source=path.name)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(f"Cannot read image {path.name}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                         "; use a PNG, JPEG, BMP, TIFF or WebP file") from None


def to_rgb_float(image: Any, *, alpha: str = "white", source: str = "image") -> np.ndarray:
    """A PIL image or numpy array as ``float32 [H, W, 3]`` in [0, 1]."""
    if alpha not in ALPHA_MODES:
        raise InputError(f"alpha={alpha!r} is not valid; use one of {', '.join(ALPHA_MODES)}")
    if isinstance(image, (str, Path)):
        return load_image(image, alpha=alpha)
    if isinstance(image, np.ndarray):
        return _array_to_rgb_float(image, alpha, source)
    if hasattr(image, "mode") and hasattr(image, "convert"):
        return _pil_to_rgb_float(image, alpha, source)
    raise InputError(f"Unsupported image type {type(image).__name__}; pass a file path, a PIL image or a numpy array")


def _pil_to_rgb_float(image, alpha: str, source: str) -> np.ndarray:
    mode = image.mode
    if mode == "RGB":
        return np.asarray(image, dtype=np.float32) / 255.0
    if mode == "P":
        has_alpha = "transparency" in image.info
        return _pil_to_rgb_float(image.convert("RGBA" if has_alpha else "RGB"), alpha, source)
    if mode in _CONVERTIBLE:
        return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    if mode in _SIXTEEN_BIT or mode == "I":
        values = np.asarray(image, dtype=np.float64)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise InputError(f"{source}: 32-bit integer image with values outside 0..65535 is not supported; "
                             "save it as an 8- or 16-bit PNG")
        grey = (values / 65535.0).astype(np.float32)
        return np.repeat(grey[..., None], 3, axis=2)
    if mode in _WITH_ALPHA:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255.0
        return _remove_alpha(rgba, alpha, source)
    raise InputError(f"{source}: image mode {mode!r} is not supported; convert it to an RGB PNG first")


def _array_to_rgb_float(array: np.ndarray, alpha: str, source: str) -> np.ndarray:
    if array.dtype == np.uint8:
        values = array.astype(np.float32) / 255.0
    elif array.dtype == np.uint16:
        values = array.astype(np.float32) / 65535.0
    elif np.issubdtype(array.dtype, np.floating):
        values = array.astype(np.float32)
        if values.size and (not np.isfinite(values).all() or values.min() < 0.0 or values.max() > 1.0):
            raise InputError(f"{source}: float image values must be finite and in [0, 1] "
                             f"(got {np.nanmin(values):.3g}..{np.nanmax(values):.3g}); divide by 255 first")
    else:
        raise InputError(f"{source}: unsupported array dtype {array.dtype}; use uint8, uint16 or float in [0, 1]")
    if values.ndim == 2:
        values = values[..., None]
    if values.ndim != 3 or values.shape[2] not in (1, 3, 4):
        raise InputError(f"{source}: expected an image array [H, W], [H, W, 3] or [H, W, 4], got shape {array.shape}")
    if values.shape[2] == 1:
        return np.repeat(values, 3, axis=2)
    if values.shape[2] == 4:
        return _remove_alpha(values, alpha, source)
    return np.ascontiguousarray(values)


def _remove_alpha(rgba: np.ndarray, alpha: str, source: str) -> np.ndarray:
    opacity = rgba[..., 3:4]
    rgb = rgba[..., :3]
    if alpha == "drop":
        logger.warning("%s has an alpha channel; dropping it (transparent areas keep their hidden colours)", source)
        return np.ascontiguousarray(rgb)
    logger.warning("%s has an alpha channel; compositing it on a white background", source)
    return np.ascontiguousarray(rgb * opacity + (1.0 - opacity))


def to_uint8(image: np.ndarray) -> np.ndarray:
    """``float [H, W, 3]`` in [0, 1] → ``uint8`` (clamped, rounded half to even as numpy)."""
    return np.clip(np.round(np.asarray(image, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)


def to_pil(image: np.ndarray):
    """A ``uint8 [H, W, 3]`` array (or float in [0, 1]) as a PIL RGB image."""
    from PIL import Image

    array = image if image.dtype == np.uint8 else to_uint8(image)
    return Image.fromarray(np.ascontiguousarray(array), mode="RGB")


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly inside ``folder`` (by extension), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"Not a folder: {folder}")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def paired_images(lr_dir: str | Path, hr_dir: str | Path, scale: float) -> list[tuple[Path, Path]]:
    """``(lr, hr)`` pairs matched by name: ``baby.bmp`` pairs with ``baby.bmp``, ``babyx2.bmp``, ``baby_x2.png`` or
    ``baby_LRBI_x2.png`` in ``lr_dir``. Raises :class:`InputError` listing HR images without an LR partner."""
    lr_files = list_images(lr_dir)
    hr_files = list_images(hr_dir)
    if not hr_files:
        raise InputError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) in HR folder {hr_dir}")
    factor = f"{scale:g}"
    suffix = re.compile(rf"(?:_?lrbi)?[_-]?x{re.escape(factor)}$", re.IGNORECASE)
    by_stem: dict[str, Path] = {}
    for lr in lr_files:
        by_stem.setdefault(suffix.sub("", lr.stem).lower(), lr)
    pairs, missing = [], []
    for hr in hr_files:
        lr = by_stem.get(hr.stem.lower())
        if lr is None:
            missing.append(hr.name)
        else:
            pairs.append((lr, hr))
    if missing:
        raise InputError(f"No LR image in {lr_dir} for {len(missing)} HR image(s) (e.g. {missing[0]}); name LR files "
                         f"like the HR ones, optionally with an 'x{factor}' suffix")
    return pairs
