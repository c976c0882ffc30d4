"""The IMDN super-resolution sampler: weights file(s) in, an upscaled image out.

Paper: "Lightweight Image Super-Resolution with Information Multi-distillation Network" (arXiv 1909.11856).

``build_sampler(model, *, device="cpu", dtype=None, variant=None, overlap=32, alpha="white")`` accepts a
:class:`zoo.sdk.ResolvedModel` whose ``path`` is a weights file (``.pth`` / ``.safetensors``) or a folder of them (e.g.
the official ``checkpoints/`` folder with IMDN_x2/x3/x4, IMDN_AS, RTC and RTE). The sampler is called as
``sampler(image, scale=None, tile=None, progress=None)`` and picks the weights for ``scale``: a fixed-scale network of
that scale (IMDN before RTC before RTE), otherwise IMDN_AS (any scale: the image is bicubic-upsampled to the target
size first).

``tile``: ``None`` tiles automatically when the input has more than :data:`AUTO_TILE_PIXELS` pixels (tiles of
:data:`DEFAULT_TILE`); ``0`` never tiles (exact whole-image forward, used by ``zoo eval-sr``); ``N`` tiles of N input
pixels with ``overlap`` pixels of context. For IMDN_AS and IMDN_RTE, whose bodies run at 1/4 and 1/2 of the network
input, both numbers count body pixels (input windows are 4x / 2x larger), so memory and context per tile match IMDN.

Precision: fp32 on CPU; fp16 by default on CUDA (bf16 on request).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from zoo.errors import FileMissingError, InputError, WeightsError
from zoo.images import to_pil, to_rgb_float
from zoo.sampling import SampleResult
from zoo.spec import ResolvedModel
from zoo_plugins.imdn.arch import prepare_for_inference
from zoo_plugins.imdn.checkpoint import WEIGHT_SUFFIXES, build_model, load_state_dict
from zoo_plugins.imdn.degradation import imresize
from zoo_plugins.imdn.detect import VARIANTS, ArchInfo
from zoo_plugins.imdn.tiling import count_tiles, upscale_tiled

DEFAULT_TILE = 512
"""Tile side (input pixels) used when tiling is automatic."""
AUTO_TILE_PIXELS = 640 * 640
"""Inputs with more pixels than this are tiled when ``tile=None``."""
DEFAULT_OVERLAP = 32
"""Input pixels of context on each side of a tile."""
ANY_SCALE_DEFAULT = 4.0
"""Scale used by IMDN_AS when none is given."""
GET_WEIGHTS_HINT = ("download the official checkpoints (IMDN_x2.pth, IMDN_x3.pth, IMDN_x4.pth, IMDN_AS.pth, "
                    "model_RTC.pth, model_RTE.pth) from https://github.com/Zheng222/IMDN/tree/master/checkpoints")
_DTYPES = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16, "float16": torch.float16,
           "half": torch.float16, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class WeightsEntry:
    """One weights file and the architecture detected in it."""

    path: Path
    info: ArchInfo


def resolve_dtype(device: torch.device, dtype: Any) -> torch.dtype:
    """fp32 on CPU; fp16 (default) or bf16 on CUDA. Half precision on CPU is refused (slow and not validated)."""
    if dtype is None:
        return torch.float16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, str):
        key = dtype.lower()
        if key not in _DTYPES:
            raise InputError(f"Unknown dtype {dtype!r}; use one of fp32, fp16, bf16")
        dtype = _DTYPES[key]
    if dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise InputError(f"dtype {dtype} is not supported; use fp32, fp16 or bf16")
    if device.type == "cpu" and dtype != torch.float32:
        raise InputError(f"IMDN runs in fp32 on CPU (got {str(dtype).replace('torch.', '')}); use fp16/bf16 only on CUDA")
    return dtype


def find_weights(path: Path) -> list[WeightsEntry]:
    """The IMDN weights at ``path`` (a file, or the weight files directly inside a folder)."""
    if path.is_file():
        _, info = load_state_dict(path)
        return [WeightsEntry(path, info)]
    if not path.is_dir():
        raise InputError(f"IMDN weights not found: {path} is neither a file nor a folder")
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    entries, rejected = [], []
    for file in files:
        try:
            entries.append(WeightsEntry(file, load_state_dict(file)[1]))
        except WeightsError as exc:
            rejected.append(str(exc))
    if not entries:
        detail = f" ({rejected[0]})" if rejected else ""
        raise FileMissingError(f"No IMDN weights (.pth or .safetensors) in {path}{detail}; {GET_WEIGHTS_HINT}")
    return entries


def select_weights(entries: list[WeightsEntry], scale: float | None, variant: str | None,
                   where: str) -> tuple[WeightsEntry, float]:
    """Pick the weights for ``scale`` (and ``variant``); returns the entry and the effective scale."""
    if variant is not None:
        wanted = variant.upper()
        if wanted not in VARIANTS:
            raise InputError(f"Unknown IMDN variant {variant!r}; use one of {', '.join(v.lower() for v in VARIANTS)}")
        entries = [e for e in entries if e.info.variant == wanted]
        if not entries:
            raise InputError(f"No {wanted} weights in {where}")
    fixed = [e for e in entries if e.info.variant != "IMDN_AS"]
    any_scale = [e for e in entries if e.info.variant == "IMDN_AS"]
    if scale is None:
        if len(entries) == 1:
            entry = entries[0]
            return entry, ANY_SCALE_DEFAULT if entry.info.variant == "IMDN_AS" else float(entry.info.scale)
        raise InputError(f"{where} holds IMDN weights for several scales ({_available(entries)}); pass --scale")
    if scale <= 0 or not np.isfinite(scale):
        raise InputError(f"Scale must be a positive number, got {scale}")
    order = {v: i for i, v in enumerate(VARIANTS)}
    matching = sorted((e for e in fixed if e.info.scale == scale), key=lambda e: order[e.info.variant])
    if matching:
        return matching[0], float(scale)
    if any_scale:
        if scale < 1:
            raise InputError(f"IMDN_AS upscales; scale {scale:g} < 1 is not supported")
        return any_scale[0], float(scale)
    raise InputError(f"No IMDN weights for scale {scale:g} in {where}: available {_available(entries)}; "
                     "IMDN_AS.pth handles any scale")


def _available(entries: list[WeightsEntry]) -> str:
    return ", ".join(f"{e.info.label} ({e.path.name})" for e in entries)


class IMDNSampler:
    """Callable SR sampler over one or more IMDN weight files (networks loaded lazily and cached)."""

    def __init__(self, entries: list[WeightsEntry], *, device: torch.device, dtype: torch.dtype, ref: str,
                 variant: str | None = None, overlap: int = DEFAULT_OVERLAP, alpha: str = "white",
                 default_scale: float | None = None) -> None:
        if overlap < 0:
            raise InputError(f"overlap must be >= 0, got {overlap}")
        self.entries = entries
        self.device = device
        self.dtype = dtype
        self.ref = ref
        self.variant = variant
        self.overlap = int(overlap)
        self.alpha = alpha
        self.default_scale = default_scale
        self._networks: dict[Path, torch.nn.Module] = {}

    def network(self, entry: WeightsEntry) -> torch.nn.Module:
        """The inference-ready network for ``entry`` (loaded on first use)."""
        if entry.path not in self._networks:
            state, info = load_state_dict(entry.path)
            model = build_model(state, info, source=entry.path.name)
            self._networks[entry.path] = prepare_for_inference(model, self.device, self.dtype)
        return self._networks[entry.path]

    def upscale_array(self, rgb: np.ndarray, scale: float | None = None, tile: int | None = None,
                      progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """``float32 [H, W, 3]`` in [0, 1] → ``uint8 [H·s, W·s, 3]`` and the generation metadata."""
        entry, scale = select_weights(self.entries, scale if scale is not None else self.default_scale, self.variant,
                                      self.ref)
        info = entry.info
        network = self.network(entry)
        height, width = rgb.shape[:2]
        if min(height, width) < 1:
            raise InputError(f"Image of size {width}x{height} is empty")
        x = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None]
        if info.variant == "IMDN_AS":
            # IMDN_AS restores a bicubic-upsampled image of the target size (output size = input size).
            x = _bicubic_resize(x, round(height * scale), round(width * scale))
        x = x.to(self.device, self.dtype)
        if network.input_range != 1.0:
            x = x * network.input_range
        # Tile and overlap count body feature pixels: IMDN_AS (stride 4) and RTE (stride 2) get proportionally larger
        # input windows, so that memory and context per tile are the same for every variant.
        stride = network.feature_stride
        in_height, in_width = x.shape[-2:]
        if tile is None:
            tile = DEFAULT_TILE if in_height * in_width > AUTO_TILE_PIXELS * stride * stride else 0
        if tile < 0:
            raise InputError(f"tile must be >= 0 (0 = no tiling), got {tile}")
        window, overlap = tile * stride, self.overlap * stride
        tiles = count_tiles(in_height, in_width, window, overlap, network.size_multiple)
        started = time.perf_counter()
        with torch.inference_mode():
            output = upscale_tiled(network, x, scale=network.scale, multiple=network.size_multiple, tile=window,
                                   overlap=overlap, input_range=network.input_range, progress=progress)
        metadata = {
            "method": "imdn", "task": "super-resolution", "model": self.ref, "weights": entry.path.name,
            "variant": info.variant, "scale": scale, "network_scale": info.scale,
            "input_size": [width, height], "output_size": [output.shape[1], output.shape[0]],
            "tile": tile, "overlap": self.overlap if tiles > 1 else 0, "tiles": tiles,
            "device": str(self.device), "dtype": str(self.dtype).replace("torch.", ""),
            "seconds": round(time.perf_counter() - started, 3),
        }
        return output, metadata

    def __call__(self, image: Any, scale: float | None = None, tile: int | None = None,
                 progress: Callable[[int, int], None] | None = None) -> SampleResult:
        rgb = _image_to_rgb(image, self.alpha)
        output, metadata = self.upscale_array(rgb, scale=scale, tile=tile, progress=progress)
        return SampleResult(images=[to_pil(output)], nfe=1, metadata=metadata)


def _image_to_rgb(image: Any, alpha: str) -> np.ndarray:
    if isinstance(image, torch.Tensor):
        tensor = image.detach().float().cpu()
        if tensor.dim() == 4 and tensor.shape[0] == 1:
            tensor = tensor[0]
        if tensor.dim() != 3 or tensor.shape[0] not in (1, 3):
            raise InputError(f"Tensor images must be [3, H, W] or [1, 3, H, W] in [0, 1], got {tuple(image.shape)}")
        image = tensor.permute(1, 2, 0).numpy()
    return to_rgb_float(image, alpha=alpha)


def _bicubic_resize(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """MATLAB-style bicubic resize (the benchmarks' convention), clamped to [0, 1]."""
    if (height, width) == tuple(x.shape[-2:]):
        return x
    return imresize(x, size=(height, width)).clamp_(0, 1)


def build_sampler(model: ResolvedModel | None, *, device: str | torch.device = "cpu", dtype: Any = None,
                  variant: str | None = None, overlap: int = DEFAULT_OVERLAP, alpha: str = "white",
                  preset: str | None = None, **options: Any) -> IMDNSampler:
    """Sampler factory (see the module docstring). ``model`` is required: distill-zoo ships no IMDN weights.

    ``preset`` (x2, x3, x4, as, rtc, rte; see ``zoo info imdn``) selects that official checkpoint in a folder and
    its scale becomes the default.
    """
    if options:
        raise InputError(f"Unknown IMDN sampler option(s): {', '.join(sorted(options))}; valid: variant, overlap, "
                         "alpha, preset")
    if model is None:
        raise InputError(f"IMDN needs weights: give the model as an IMDN .pth/.safetensors file or a folder of them "
                         f"(in ComfyUI: a file name in models/upscale_models); {GET_WEIGHTS_HINT} (distill-zoo "
                         f"ships none: the IMDN repository publishes no license)")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError("CUDA was requested but torch.cuda.is_available() is False; use --device cpu")
    resolved_dtype = resolve_dtype(device, dtype)
    path = Path(model.path)
    entries = find_weights(path)
    default_scale = None
    if preset is not None:
        entries, variant, default_scale = _apply_preset(preset, entries, variant, path)
    return IMDNSampler(entries, device=device, dtype=resolved_dtype, ref=model.ref or str(path), variant=variant,
                       overlap=overlap, alpha=alpha, default_scale=default_scale)


def _apply_preset(name: str, entries: list[WeightsEntry], variant: str | None,
                  where: Path) -> tuple[list[WeightsEntry], str | None, float | None]:
    """Narrow ``entries`` to the preset's checkpoint (by file name, else by variant and scale)."""
    from zoo_plugins.imdn import _presets

    presets = {p.name: p for p in _presets()}
    if name not in presets:
        raise InputError(f"Unknown IMDN preset {name!r}; valid presets: {', '.join(presets)}")
    settings = presets[name].settings
    scale = settings.get("scale")
    by_name = [e for e in entries if e.path.name == settings["weights"]]
    by_arch = [e for e in entries if e.info.variant == settings["variant"]
               and (scale is None or e.info.scale == scale)]
    chosen = by_name or by_arch
    if not chosen:
        raise InputError(f"Preset {name!r} needs {settings['weights']} ({settings['variant']}"
                         f"{f' x{scale}' if scale else ''}) but {where} has {_available(entries)}")
    return chosen, variant or settings["variant"], float(scale) if scale is not None else None
