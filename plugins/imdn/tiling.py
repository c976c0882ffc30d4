"""Running an SR network on images of any size: the adaptive cropping strategy and tiled inference with overlap.

* :func:`forward_any_size` — sides that are not multiples of the network's ``size_multiple`` (IMDN_AS: 4, RTE: 2) use
  the **adaptive cropping strategy** of IMDN (paper Sec. 3.4 / ``crop_forward`` in ``test_IMDN_AS.py``): four
  overlapping quadrant crops, each of ``⌊H/2⌋ + 32`` rounded down to the multiple (same for W), run as one batch, and
  the quadrants stitched back at ``H/2``, ``W/2``. Inputs too small for that (a side under ~64 px) are padded
  (replicate) to the multiple instead and the output cropped.
* :func:`upscale_tiled` — large images are cut into a grid of tiles; each tile is run with ``overlap`` extra input
  pixels of context on every side and only its core is kept, so memory is bounded by the tile size and seams are
  hidden. Output is written tile by tile into a ``uint8`` buffer (``[H·s, W·s, 3]``), never as one float tensor.
  CCA statistics are per tile, so tiled output differs slightly from a whole-image forward (IMDN x4, 96-pixel tiles,
  32-pixel overlap: 53 dB PSNR apart; larger tiles are closer); ``tile=0`` disables tiling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from zoo.sampling import require_finite

ACS_SHAVE = 32
"""Extra rows/columns each adaptive-cropping quadrant takes beyond the half (``shave=32`` in ``test_IMDN_AS.py``)."""


@dataclass(frozen=True)
class Span:
    """One tile along one axis: keep output for ``[core_start, core_stop)``, run the network on
    ``[window_start, window_stop)`` (input pixel coordinates)."""

    core_start: int
    core_stop: int
    window_start: int
    window_stop: int


def tile_spans(length: int, tile: int, overlap: int, multiple: int = 1) -> list[Span]:
    """Evenly sized cores covering ``[0, length)`` with at most ``tile`` pixels each, windows widened by ``overlap``
    and, where the axis allows, to a length that is a multiple of ``multiple``."""
    if tile <= 0 or tile >= length:
        return [Span(0, length, 0, length)]
    count = math.ceil(length / tile)
    size = math.ceil(length / count)
    spans = []
    for index in range(count):
        core_start, core_stop = index * size, min(length, (index + 1) * size)
        window_start, window_stop = max(0, core_start - overlap), min(length, core_stop + overlap)
        shortfall = (-(window_stop - window_start)) % multiple
        grow_left = min(shortfall, window_start)
        window_start -= grow_left
        window_stop = min(length, window_stop + shortfall - grow_left)
        spans.append(Span(core_start, core_stop, window_start, window_stop))
    return spans


def _acs_size(length: int, multiple: int) -> int:
    """Side of an adaptive-cropping quadrant: ``⌊L/2⌋ + 32`` rounded down to ``multiple``."""
    half = length // 2
    return half + ACS_SHAVE - (half + ACS_SHAVE) % multiple


def adaptive_crop_forward(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, multiple: int,
                          scale: int) -> torch.Tensor:
    """The adaptive cropping strategy: four overlapping quadrants run as one batch, stitched at the image centre."""
    _, _, height, width = x.shape
    h_half, w_half = height // 2, width // 2
    h_size, w_size = _acs_size(height, multiple), _acs_size(width, multiple)
    # 1. Four corner crops of h_size × w_size, batched.
    crops = torch.cat([x[:, :, :h_size, :w_size], x[:, :, :h_size, width - w_size:],
                       x[:, :, height - h_size:, :w_size], x[:, :, height - h_size:, width - w_size:]], dim=0)
    top_left, top_right, bottom_left, bottom_right = model(crops).chunk(4, dim=0)
    # 2. Each quadrant of the output comes from the crop that contains it (output coordinates = input × scale).
    s = scale
    h_off, w_off = (h_size - height + h_half) * s, (w_size - width + w_half) * s
    out = x.new_empty(x.shape[0], top_left.shape[1], height * s, width * s)
    out[:, :, :h_half * s, :w_half * s] = top_left[:, :, :h_half * s, :w_half * s]
    out[:, :, :h_half * s, w_half * s:] = top_right[:, :, :h_half * s, w_off:w_size * s]
    out[:, :, h_half * s:, :w_half * s] = bottom_left[:, :, h_off:h_size * s, :w_half * s]
    out[:, :, h_half * s:, w_half * s:] = bottom_right[:, :, h_off:h_size * s, w_off:w_size * s]
    return out


def forward_any_size(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, multiple: int,
                     scale: int) -> torch.Tensor:
    """``model(x)`` for any ``H × W``: direct when both are multiples of ``multiple``, else adaptive cropping, else
    (tiny inputs) replicate padding to the multiple and cropping of the output."""
    _, _, height, width = x.shape
    if height % multiple == 0 and width % multiple == 0:
        return model(x)
    acs_fits = all(length - length // 2 <= _acs_size(length, multiple) <= length for length in (height, width))
    if acs_fits:
        return adaptive_crop_forward(model, x, multiple, scale)
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    padded = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
    return model(padded)[:, :, :height * scale, :width * scale]


def quantize_to_uint8(output: torch.Tensor, input_range: float = 1.0) -> np.ndarray:
    """Network output ``[1, 3, H, W]`` → ``uint8 [H, W, 3]``: clamp to the range, scale to 255, round."""
    image = output[0].float().clamp_(0.0, input_range)
    if input_range != 255.0:
        image = image.mul_(255.0 / input_range)
    return image.round_().to(torch.uint8).permute(1, 2, 0).contiguous().cpu().numpy()


def count_tiles(height: int, width: int, tile: int, overlap: int, multiple: int = 1) -> int:
    return len(tile_spans(height, tile, overlap, multiple)) * len(tile_spans(width, tile, overlap, multiple))


def upscale_tiled(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, *, scale: int, multiple: int,
                  tile: int, overlap: int, input_range: float = 1.0,
                  progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Run ``model`` over ``x`` (``[1, 3, H, W]``) tile by tile; returns the ``uint8 [H·s, W·s, 3]`` output.

    With ``tile <= 0`` or a tile at least as large as the image this is one :func:`forward_any_size` call.
    """
    _, _, height, width = x.shape
    rows = tile_spans(height, tile, overlap, multiple)
    cols = tile_spans(width, tile, overlap, multiple)
    total = len(rows) * len(cols)
    out = np.empty((height * scale, width * scale, 3), dtype=np.uint8)
    done = 0
    for row in rows:
        for col in cols:
            window = x[:, :, row.window_start:row.window_stop, col.window_start:col.window_stop]
            result = forward_any_size(model, window, multiple, scale)
            # Keep the core: drop the overlap context (in output pixels).
            top = (row.core_start - row.window_start) * scale
            left = (col.core_start - col.window_start) * scale
            core = result[:, :, top:top + (row.core_stop - row.core_start) * scale,
                          left:left + (col.core_stop - col.core_start) * scale]
            out[row.core_start * scale:row.core_stop * scale, col.core_start * scale:col.core_stop * scale] = \
                quantize_to_uint8(require_finite(core, "The IMDN network"), input_range)
            del result, core
            done += 1
            if progress is not None:
                progress(done, total)
    return out
