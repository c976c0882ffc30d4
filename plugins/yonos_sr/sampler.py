"""YONOS-SR sampler: LR image -> bicubic upsample -> encode -> DDIM from pure noise (1 step by default) -> decode.

Paper: Noroozi et al., "You Only Need One Step: Fast Super-Resolution with Stable Diffusion via Scale Distillation",
arXiv 2401.17258. Inference is "a single DDIM step" (Sec. 3); any number of steps is allowed here, on diffusers'
``DDIMScheduler`` with ``timestep_spacing="trailing"`` (so 1 step is t = 999, never the no-op t = 0 that "leading"
spacing gives; docs/SR.md §10.1), η = 0 by default.

``build_sampler(model, *, device="cpu", dtype=None, steps=None, scale=None, eta=0.0)`` takes a
:class:`zoo.sdk.ResolvedModel` of a folder written by :meth:`YonosSRModel.save` (default: the committed testbed
student). The sampler is called as ``sampler(image, scale=None, tile=None, steps=None, seed=0, progress=None)`` and
returns a :class:`zoo.sampling.SampleResult` whose ``nfe`` counts UNet evaluations (= steps; tiles run as one batch).

``tile``: ``0`` upscales the whole image at once; ``N > 0`` cuts the bicubic-upsampled image into N-LR-pixel tiles
(with ``overlap`` LR pixels of context, blended linearly), encodes, denoises and decodes them :data:`TILE_BATCH` at
a time (the noise of every tile is drawn up front, so batching changes nothing) and stitches the decoded tiles;
``None`` (automatic) tiles images larger than :data:`AUTO_TILE` LR pixels with that tile size.

A model whose ``zoo.json`` says ``"testbed_only": true`` (the committed default: trained on 32x32 synthetic shapes,
its VAE turns sky blue green and orange yellow on photos; docs/SR.md, "YONOS-SR on real images") writes one line on
stderr, once per process and model, when it is given an image larger than :data:`TESTBED_NOTE_SIZE` pixels.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from zoo.errors import InputError
from zoo.images import to_pil, to_rgb_float
from zoo.sampling import SampleResult
from zoo.spec import MANIFEST_NAME, ResolvedModel
from zoo.sampling import check_seed, require_finite
from zoo_plugins.yonos_sr.model import YonosSRModel, new_scheduler, upsample_lr

DEFAULT_STEPS = 1
MAX_STEPS = 1000
DEFAULT_OVERLAP = 4
AUTO_TILE = 64
"""``tile=None`` (automatic): images larger than this many LR pixels on a side are cut into tiles of this size."""
TILE_BATCH = 4
"""Tiles denoised together; progress (and a front-end's Cancel check) comes between batches."""
TESTBED_NOTE_SIZE = 128
"""A ``testbed_only`` model notes (once) that it is not for real photos when an input side exceeds this."""
TESTBED_NOTE = ("testbed model: trained on synthetic shapes, not for real photos (expect wrong colours); use imdn for "
                "real images (zoo upscale imdn --model IMDN_x4.pth; docs/SR.md)")
_NOTED: set[str] = set()
"""Model refs that already wrote :data:`TESTBED_NOTE` in this process."""


class YonosSRSampler:
    """Callable super-resolution sampler around a :class:`YonosSRModel`."""

    def __init__(self, model: YonosSRModel, *, ref: str, scale: int, steps: int = DEFAULT_STEPS, eta: float = 0.0,
                 overlap: int = DEFAULT_OVERLAP, testbed_only: bool = False) -> None:
        self.model = model.eval()
        self.testbed_only = bool(testbed_only)
        self.ref = ref
        self.default_scale = int(scale)
        self.default_steps = int(steps)
        self.eta = float(eta)
        self.overlap = int(overlap)
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype

    # -- core: tensors in, tensors out -------------------------------------------------------------------------
    @torch.no_grad()
    def upscale_tensor(self, lr: torch.Tensor, scale: int, steps: int, generator: torch.Generator,
                       progress: Callable[[int, int], None] | None = None,
                       noise: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
        """``[B, 3, h, w]`` LR in [0, 1] -> ``[B, 3, h*scale, w*scale]`` SR in [0, 1], and the NFE per image.

        1. x_up = bicubic↑scale(x_l), padded (reflect) to a multiple of the model's size multiple
        2. z_l = E(x_up); z_T ~ N(0, I) (``noise``, else drawn on the CPU from ``generator``: identical on every
           device)
        3. for t in trailing(steps): ẑ = model(z_t, z_l, t); z_{t'} = DDIM step (Eq. 12 of DDIM, η = ``eta``)
        4. x̂ = D(z_0), cropped back, mapped to [0, 1]
        """
        model = self.model
        height, width = lr.shape[-2] * scale, lr.shape[-1] * scale
        lr = lr.to(self.device, self.dtype)
        upsampled = upsample_lr(lr * 2.0 - 1.0, scale)
        multiple = model.size_multiple
        pad_h, pad_w = (-height) % multiple, (-width) % multiple
        if pad_h or pad_w:
            mode = "reflect" if pad_h < height and pad_w < width else "replicate"
            upsampled = F.pad(upsampled, (0, pad_w, 0, pad_h), mode=mode)
        z_l = model.encode(upsampled)
        scheduler = new_scheduler(model.scheduler_config)
        scheduler.set_timesteps(steps, device=self.device)
        if noise is None:
            noise = torch.randn(z_l.shape, generator=generator, dtype=torch.float32)
        latents = noise.to(self.device, self.dtype)
        latents = latents * scheduler.init_noise_sigma
        nfe = 0
        for index, t in enumerate(scheduler.timesteps):
            z_in = scheduler.scale_model_input(latents, t)
            output = model(z_in, z_l, t.reshape(1).to(self.device))
            nfe += 1
            latents = scheduler.step(output, t, latents, eta=self.eta, generator=generator).prev_sample
            if progress is not None:
                progress(index + 1, steps)
        decoded = model.decode(latents)[..., :height, :width]
        return ((decoded.float() + 1.0) / 2.0).clamp(0.0, 1.0), nfe

    def upscale_tiled(self, lr: torch.Tensor, scale: int, steps: int, generator: torch.Generator, tile: int,
                      progress: Callable[[int, int], None] | None = None) -> tuple[torch.Tensor, int, int]:
        """Tiles of ``tile`` LR pixels (plus :attr:`overlap` of context), upscaled :data:`TILE_BATCH` at a time and
        blended. Every tile's noise is drawn first, in one draw (the same numbers as one batch of all tiles)."""
        _, _, height, width = lr.shape
        step = max(tile - 2 * self.overlap, 1)
        boxes = []
        for top in range(0, max(height - 2 * self.overlap, 1), step):
            for left in range(0, max(width - 2 * self.overlap, 1), step):
                bottom, right = min(top + tile, height), min(left + tile, width)
                boxes.append((max(bottom - tile, 0), max(right - tile, 0), bottom, right))
        boxes = sorted(set(boxes))
        crops = torch.cat([lr[..., t:b, l:r] for t, l, b, r in boxes])
        multiple, factor = self.model.size_multiple, self.model.vae_factor
        side = [-(-length * scale // multiple) * multiple // factor for length in crops.shape[-2:]]  # padded HR / f
        channels = self.model.vae.config.latent_channels
        noise = torch.randn((len(boxes), channels, *side), generator=generator, dtype=torch.float32)
        batches = range(0, len(boxes), TILE_BATCH)
        parts = []
        for number, first in enumerate(batches):
            def batch_progress(done, total, _number=number):
                if progress is not None:
                    progress(_number * total + done, len(batches) * total)

            part, nfe = self.upscale_tensor(crops[first:first + TILE_BATCH], scale, steps, generator, batch_progress,
                                            noise=noise[first:first + TILE_BATCH])
            parts.append(part)
        upscaled = torch.cat(parts)
        output = torch.zeros(1, 3, height * scale, width * scale, dtype=upscaled.dtype, device=upscaled.device)
        weight = torch.zeros_like(output[:, :1])
        ramp = _blend_window(upscaled.shape[-2], upscaled.shape[-1], self.overlap * scale, upscaled.device)
        for (t, l, b, r), patch in zip(boxes, upscaled):
            output[..., t * scale:b * scale, l * scale:r * scale] += patch * ramp
            weight[..., t * scale:b * scale, l * scale:r * scale] += ramp
        return output / weight.clamp(min=1e-8), nfe, len(boxes)

    # -- the SR sampler contract --------------------------------------------------------------------------------
    def __call__(self, image: Any, scale: float | None = None, tile: int | None = None, steps: int | None = None,
                 seed: int = 0, progress: Callable[[int, int], None] | None = None) -> SampleResult:
        scale = self._check_scale(scale)
        steps = self.default_steps if steps is None else steps
        if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= MAX_STEPS:
            raise InputError(f"steps={steps!r} is not valid for YONOS-SR; use an integer in 1..{MAX_STEPS} "
                             f"(1 is the method's one-step setting)")
        if tile is not None and (not isinstance(tile, int) or tile < 0):
            raise InputError(f"tile={tile!r} is not valid; use 0 (no tiling), a tile size in LR pixels, or None "
                             f"(automatic)")
        rgb = _image_to_rgb(image)
        self._note_testbed_only(rgb.shape[1], rgb.shape[0])
        if tile is None:
            tile = AUTO_TILE if max(rgb.shape[:2]) > AUTO_TILE else 0
        lr = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None]
        generator = torch.Generator().manual_seed(check_seed(seed))
        started = time.perf_counter()
        height, width = rgb.shape[:2]
        if tile and (height > tile or width > tile):
            if tile <= 2 * self.overlap:
                raise InputError(f"tile={tile} must exceed twice the overlap ({2 * self.overlap} LR pixels)")
            output, nfe, tiles = self.upscale_tiled(lr, scale, steps, generator, tile, progress)
        else:
            (output, nfe), tiles = self.upscale_tensor(lr, scale, steps, generator, progress), 1
        array = require_finite(output, f"YONOS-SR ({self.ref})")[0].permute(1, 2, 0).float().cpu().numpy()
        metadata = {
            "method": "yonos_sr", "task": "super-resolution", "model": self.ref, "scale": scale, "steps": steps,
            "nfe": nfe, "seed": int(seed), "eta": self.eta, "tile": tile or 0, "tiles": tiles,
            "input_size": [width, height], "output_size": [array.shape[1], array.shape[0]],
            "device": str(self.device), "dtype": str(self.dtype).replace("torch.", ""),
            "seconds": round(time.perf_counter() - started, 3),
        }
        return SampleResult(images=[to_pil(array)], nfe=nfe, metadata=metadata)

    def _note_testbed_only(self, width: int, height: int) -> None:
        """One stderr line, once per process and model, when a testbed-only model gets an image larger than
        :data:`TESTBED_NOTE_SIZE` (real photos; the testbed's images are 32x32)."""
        if not self.testbed_only or max(width, height) <= TESTBED_NOTE_SIZE or self.ref in _NOTED:
            return
        _NOTED.add(self.ref)
        stream = sys.stderr
        if stream is not None:  # pythonw and some embedders have no stderr
            try:
                stream.write(f"distill-zoo: {self.ref} ({width}x{height} input) is a {TESTBED_NOTE}\n")
                stream.flush()
            except (OSError, ValueError):
                pass

    def _check_scale(self, scale: float | None) -> int:
        if scale is None:
            return self.default_scale
        if float(scale) != self.default_scale:
            raise InputError(f"This YONOS-SR model was trained for x{self.default_scale}; got scale {scale:g}. "
                             f"Use --scale {self.default_scale} or a model trained for x{scale:g}")
        return self.default_scale


def _blend_window(height: int, width: int, ramp: int, device) -> torch.Tensor:
    """A ``[1, 1, H, W]`` weight rising linearly over ``ramp`` pixels at each border (never zero)."""
    def profile(n: int) -> torch.Tensor:
        position = torch.arange(n, dtype=torch.float32, device=device)
        distance = torch.minimum(position + 1, n - position)
        return (distance / max(ramp, 1)).clamp(max=1.0)

    return (profile(height)[:, None] * profile(width)[None, :])[None, None]


def _image_to_rgb(image: Any) -> np.ndarray:
    if isinstance(image, torch.Tensor):
        tensor = image.detach().float().cpu()
        if tensor.dim() == 4 and tensor.shape[0] == 1:
            tensor = tensor[0]
        if tensor.dim() != 3 or tensor.shape[0] != 3:
            raise InputError(f"Tensor images must be [3, H, W] or [1, 3, H, W] in [0, 1], got {tuple(image.shape)}")
        image = tensor.permute(1, 2, 0).numpy()
    return to_rgb_float(image)


def default_model_path() -> Path:
    """The committed testbed student (scale-distilled x4 with a fine-tuned decoder)."""
    return Path(__file__).parent / "testbed"


def build_sampler(model: ResolvedModel | None, *, device: str | torch.device = "cpu", dtype: Any = None,
                  steps: int | None = None, scale: int | None = None, eta: float = 0.0,
                  overlap: int = DEFAULT_OVERLAP, **options: Any) -> YonosSRSampler:
    """Sampler factory (see the module docstring). Settings come from the folder's ``zoo.json`` ``sampler`` dict,
    overridden by the keyword arguments."""
    import json

    if options:
        raise InputError(f"Unknown YONOS-SR sampler option(s): {', '.join(sorted(options))}; valid: steps, scale, "
                         "eta, overlap")
    path = Path(model.path) if model is not None else default_model_path()
    ref = model.ref if model is not None else "pkg:zoo_plugins.yonos_sr/testbed"
    manifest = dict(model.manifest) if model is not None and model.manifest else {}
    if not manifest and (path / MANIFEST_NAME).is_file():
        manifest = json.loads((path / MANIFEST_NAME).read_text())
    settings = dict(manifest.get("sampler", {}))
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError("CUDA was requested but torch.cuda.is_available() is False; use --device cpu")
    if isinstance(dtype, str):
        dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}.get(dtype.lower())
        if dtype is None:
            raise InputError("Unknown dtype; use one of fp32, fp16, bf16")
    if dtype is None or device.type == "cpu":
        dtype = torch.float32
    network = YonosSRModel.load(path, device=device, dtype=dtype)
    scale = scale if scale is not None else settings.get("scale", manifest.get("scale"))
    if scale is None:
        raise InputError(f"{path} does not say which scale it was trained for (zoo.json 'sampler.scale'); "
                         "pass scale=")
    return YonosSRSampler(network, ref=ref, scale=int(scale), steps=int(steps or settings.get("steps", DEFAULT_STEPS)),
                          eta=float(settings.get("eta", eta) if eta == 0.0 else eta), overlap=overlap,
                          testbed_only=bool(manifest.get("testbed_only", False)))
