"""Helpers every node of the pack uses: ComfyUI type names, progress reporting, IMAGE/LATENT layouts.

ComfyUI layouts (docs.comfy.org, "Images, Latents, and Masks"):

* ``IMAGE``: ``torch.Tensor [B, H, W, C]``, C = 3, float32 in 0..1 (channels last);
* ``LATENT``: ``{"samples": Tensor [B, C, H/f, W/f]}`` in the VAE's raw latent space (ComfyUI applies the latent
  scaling factor inside its samplers, so LATENTs passed between nodes are *unscaled*).

distill-zoo samplers return images ``[B, 3, H, W]`` and latents in the diffusion (scaled) space; the functions here
convert between the two conventions.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

from zoo.errors import InputError

CATEGORY = "distill-zoo"
MODEL_TYPE = "DISTILL_ZOO_MODEL"
"""A loaded text-to-image sampler (:class:`LoadedModel`)."""
UPSCALE_MODEL_TYPE = "DISTILL_ZOO_UPSCALE_MODEL"
"""A loaded super-resolution sampler (:class:`LoadedModel`)."""

DEVICES = ["auto", "cpu", "cuda"]
DTYPES = ["auto", "fp32", "fp16", "bf16"]
ATTENTION = ["auto", "sdpa", "xformers"]
MAX_SEED = 2**64 - 2  # zoo.sampling.MAX_SEED: the sampler seeds a second generator with seed + 1
MAX_SIZE = 8192


def model_roots():
    """Where a workflow may load models from (:class:`zoo.paths.ModelRoots`): ComfyUI's model folders (its own and
    those of ``extra_model_paths.yaml``), the hub cache, ``pkg:`` models and ``$ZOO_MODEL_ROOTS``. A ComfyUI reachable
    by others thus reads no other file of the machine through the pack, and says nothing about what exists."""
    from zoo.paths import ModelRoots

    try:
        import folder_paths
    except ImportError:
        return ModelRoots.for_server()
    folders = [path for name, (paths, _) in getattr(folder_paths, "folder_names_and_paths", {}).items()
               if name not in ("custom_nodes", "configs") for path in paths]
    return ModelRoots.for_server(folders)


class LoadedModel:
    """What a loader node hands to the sampling nodes: the registry spec (None = the core base sampler), the sampler
    and how it was asked for (for display and metadata)."""

    def __init__(self, spec: Any, sampler: Any, method: str, model: str, preset: str | None = None) -> None:
        self.spec = spec
        self.sampler = sampler
        self.method = method
        self.model = model
        self.preset = preset

    def __repr__(self) -> str:
        name = self.spec.name if self.spec is not None else "base"
        return f"LoadedModel({name}, model={self.model or 'default'!r}, preset={self.preset!r})"


@contextlib.contextmanager
def progress_reporter(description: str) -> Iterator[Callable[[int, int], None]]:
    """A ``progress(done, total)`` callback: ComfyUI's progress bar inside ComfyUI, a tqdm bar otherwise.

    Inside ComfyUI it also honours the Cancel button (``throw_exception_if_processing_interrupted``).
    """
    try:
        import comfy.model_management as model_management
        import comfy.utils as comfy_utils
    except ImportError:
        comfy_utils = model_management = None

    if comfy_utils is not None:
        bar = None

        def progress(done: int, total: int) -> None:
            nonlocal bar
            model_management.throw_exception_if_processing_interrupted()
            if bar is None:
                bar = comfy_utils.ProgressBar(total)
            bar.update_absolute(done, total)

        yield progress
        return

    from tqdm.auto import tqdm

    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=description, unit="step", leave=False)
        bar.update(done - bar.n)

    try:
        yield progress
    finally:
        if bar is not None:
            bar.close()


def _modules_of(obj: Any, depth: int = 2) -> list:
    """The torch modules a sampler holds: its attributes, their values in dicts, and one level below (components)."""
    import torch

    found: list = []
    values = list(vars(obj).values()) if hasattr(obj, "__dict__") else []
    for value in values:
        if isinstance(value, torch.nn.Module):
            found.append(value)
        elif isinstance(value, dict):
            found += [v for v in value.values() if isinstance(v, torch.nn.Module)]
        elif depth > 1 and hasattr(value, "__dict__") and not isinstance(value, type):
            found += _modules_of(value, depth - 1)
    return found


@contextlib.contextmanager
def cancellable(sampler: Any) -> Iterator[None]:
    """Inside ComfyUI, the Cancel button is checked before every submodule of the sampler's networks runs, so a
    node stops within one block's time even inside one long UNet call or VAE decode (the progress callback checks
    only between steps). Outside ComfyUI this does nothing."""
    try:
        import comfy.model_management as model_management
    except ImportError:
        yield
        return

    def check(*_):
        model_management.throw_exception_if_processing_interrupted()

    handles = [module.register_forward_pre_hook(check) for root in {id(m): m for m in _modules_of(sampler)}.values()
               for module in root.modules()]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def images_to_comfy(images: Any):
    """``[B, 3, H, W]`` tensor or a list of PIL images → ComfyUI IMAGE ``[B, H, W, 3]`` float32 in 0..1 (CPU)."""
    import numpy as np
    import torch

    if isinstance(images, torch.Tensor):
        return images.detach().float().clamp(0, 1).permute(0, 2, 3, 1).contiguous().cpu()
    arrays = [np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0 for image in images]
    return torch.from_numpy(np.stack(arrays))


def comfy_to_pil(image: Any) -> list:
    """ComfyUI IMAGE ``[B, H, W, C]`` → PIL RGB images (rounded to 8 bits, as a saved PNG would be)."""
    import numpy as np
    from PIL import Image

    if image.ndim != 4 or image.shape[-1] not in (1, 3, 4):
        raise InputError(f"Expected an IMAGE tensor [B, H, W, C], got shape {list(image.shape)}")
    arrays = (image[..., :3].float().clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8)
    if arrays.shape[-1] == 1:
        arrays = np.repeat(arrays, 3, axis=-1)
    return [Image.fromarray(array) for array in arrays]


def latents_to_comfy(latents: Any, vae_config: Any) -> dict:
    """Scaled diffusion latents → a ComfyUI LATENT dict in the VAE's raw space (``latents / scaling + shift``)."""
    scaling = float(getattr(vae_config, "scaling_factor", 1.0) or 1.0)
    shift = float(getattr(vae_config, "shift_factor", None) or 0.0)
    return {"samples": (latents.detach().float() / scaling + shift).cpu()}
