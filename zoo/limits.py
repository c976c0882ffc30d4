"""Work is bounded before it starts: the size of one text-to-image request is checked against a pixel limit and the
memory the machine has, and large batches run in chunks so that memory stays flat.

* ``max_pixels`` (width x height of one image): ``$ZOO_MAX_PIXELS``, ``zoo run --max-pixels`` (which sets it), else
  :data:`DEFAULT_MAX_PIXELS`. A larger image is refused with one line naming the limit and how to raise it.
* Memory: a request needs its outputs (the images, as 8-bit pixels and float tensors of one chunk, and the final
  latents) plus the working memory of one chunk (UNet and VAE-decoder activations, estimated from the layer widths).
  When that exceeds what is available (free CUDA memory; the kernel's ``MemAvailable`` on the CPU) the request is
  refused with one line giving both numbers.
* Chunks: at most :data:`MAX_CHUNK` images, fewer when memory is short, run through prompt encoding, denoising and
  decoding at a time; the initial noise is drawn chunk after chunk from one generator, which gives the same numbers
  as one draw for the whole batch, so a batch that fits one chunk samples exactly as before.

This module imports torch only inside its functions.
"""

from __future__ import annotations

import os
from typing import Any

MAX_PIXELS_ENV = "ZOO_MAX_PIXELS"
DEFAULT_MAX_PIXELS = 2048 * 2048
MAX_CHUNK = 64
"""The most images one chunk holds (the benchmarks' batches of 16 and 64 run in one chunk)."""
HEADROOM = 0.8
"""Share of the available memory a request may plan to use."""


def max_pixels() -> int:
    """The pixel limit of one image: ``$ZOO_MAX_PIXELS``, else :data:`DEFAULT_MAX_PIXELS`."""
    from zoo.errors import InputError

    value = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not value:
        return DEFAULT_MAX_PIXELS
    try:
        limit = int(float(value))
    except ValueError:
        raise InputError(f"{MAX_PIXELS_ENV}={value!r} is not a number of pixels; set e.g. {MAX_PIXELS_ENV}=16777216"
                         ) from None
    if limit < 1:
        raise InputError(f"{MAX_PIXELS_ENV}={value!r} must be at least 1")
    return limit


def available_bytes(device: Any) -> int | None:
    """Memory a request may use on ``device``: free CUDA memory, or the kernel's ``MemAvailable`` (None: unknown)."""
    import torch

    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def _gib(value: float) -> str:
    return f"{value / 2**30:.1f} GiB"


def working_bytes_per_image(components: Any, height: int, width: int) -> int:
    """Activation memory of one image through the UNet (at latent size, its widest level, CFG counted twice) and
    the VAE decoder (at pixel size, its widest level): a deliberate over-estimate of the peak."""
    element = 2 if str(components.dtype) in ("torch.float16", "torch.bfloat16") else 4
    factor = components.vae_scale_factor
    latent_pixels = (height // factor) * (width // factor)
    unet = latent_pixels * max(components.unet.config.block_out_channels) * element * 2 * 24
    decoder = height * width * max(components.vae.config.block_out_channels) * element * 6
    return int(unet + decoder)


def plan_text_to_image(components: Any, batch_size: int, height: int, width: int) -> int:
    """Check one request and return how many images to run per chunk.

    Raises:
        InputError: one line when an image has more pixels than :func:`max_pixels`, or when the request would need
            more memory than the machine has.
    """
    from zoo.errors import InputError

    limit = max_pixels()
    if height * width > limit:
        raise InputError(f"{width}x{height} is {height * width:,} pixels per image, over the limit of {limit:,}; "
                         f"make the image smaller, or raise the limit with --max-pixels or {MAX_PIXELS_ENV}")
    per_image = working_bytes_per_image(components, height, width)
    factor = components.vae_scale_factor
    latent_bytes = components.unet.config.in_channels * (height // factor) * (width // factor) * 4
    outputs = batch_size * (height * width * 3 + latent_bytes)
    available = available_bytes(components.device)
    if available is None:
        return min(batch_size, MAX_CHUNK)
    budget = available * HEADROOM
    if outputs + per_image + height * width * 3 * 4 > budget:
        needed = outputs + per_image + height * width * 12
        raise InputError(f"{batch_size} image(s) of {width}x{height} need about {_gib(needed)} but "
                         f"{_gib(available)} are available on {components.device}; lower the batch size or the "
                         f"image size")
    room = (budget - outputs) / (per_image + height * width * 3 * 4)
    return max(1, min(batch_size, MAX_CHUNK, int(room)))
