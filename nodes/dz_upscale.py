"""Super-resolution nodes: load any registered SR method (IMDN, YONOS-SR, ...) and upscale an IMAGE, tiled if asked.

The upscale node converts each IMAGE of the batch to the 8-bit RGB picture the CLI would read from a PNG and calls
the SR sampler through :func:`zoo.frontend.upscale`, so its output equals ``zoo upscale`` for the same input file.
"""

from __future__ import annotations

from .dz_common import (CATEGORY, DEVICES, DTYPES, MAX_SEED, UPSCALE_MODEL_TYPE, LoadedModel, cancellable,
                        comfy_to_pil, images_to_comfy, model_roots, progress_reporter)
from .dz_text_to_image import _model_ref_problem


DIFFUSION_SR_INPUTS = {
    "steps": ("INT", {"default": 1, "min": 1, "max": 100,
                      "tooltip": "diffusion steps for diffusion-based SR (YONOS-SR); ignored by IMDN"}),
    "seed": ("INT", {"default": 0, "min": 0, "max": MAX_SEED, "control_after_generate": True}),
}
"""The widgets of diffusion-based upscalers, the same on every upscale node."""


def require_upscaler(upscale_model, node: str) -> None:
    from zoo.errors import InputError

    if not isinstance(upscale_model, LoadedModel) or upscale_model.spec is None \
            or upscale_model.spec.task != "super-resolution":
        raise InputError(f"{node} needs a model from DistillZooLoadUpscaleModel")


def upscale_model_file(name: str) -> str | None:
    """The full path of ``name`` when it is a file in ComfyUI's ``models/upscale_models`` (None otherwise)."""
    try:
        import folder_paths
    except ImportError:
        return None
    name = (name or "").strip()
    if not name or "upscale_models" not in getattr(folder_paths, "folder_names_and_paths", {}):
        return None
    if name not in folder_paths.get_filename_list("upscale_models"):
        return None
    return folder_paths.get_full_path("upscale_models", name)


class DistillZooLoadUpscaleModel:
    """Load a distilled super-resolution model of any registered method."""

    @classmethod
    def INPUT_TYPES(cls):
        from zoo.frontend import SUPER_RESOLUTION, method_choices

        return {"required": {
            "method": (method_choices(SUPER_RESOLUTION), {"default": "auto",
                                                          "tooltip": "auto: the method named in the model's zoo.json."
                                                                     " Real photos: imdn with IMDN_x4.pth; yonos_sr's "
                                                                     "default model is a testbed model (synthetic "
                                                                     "shapes), not for real photos"}),
            "model": ("STRING", {"default": "", "tooltip": "a file name in ComfyUI's models/upscale_models (e.g. "
                                                           "IMDN_x4.pth), a hub id, folder or pkg: ref; empty: the "
                                                           "method's default model"}),
            "device": (DEVICES, {"default": "auto"}),
            "dtype": (DTYPES, {"default": "auto"}),
        }}

    RETURN_TYPES = (UPSCALE_MODEL_TYPE,)
    RETURN_NAMES = ("upscale_model",)
    FUNCTION = "load"
    CATEGORY = f"{CATEGORY}/loaders"
    DESCRIPTION = ("Load a distilled super-resolution model (IMDN, YONOS-SR, ...) through the distill-zoo registry. "
                   "For real photos use IMDN (official IMDN_x4.pth); YONOS-SR's default model is a testbed model "
                   "(trained on synthetic shapes, not for real photos).")

    @classmethod
    def VALIDATE_INPUTS(cls, model=""):
        if upscale_model_file(model):
            return True
        name = (model or "").strip()
        if name.lower().endswith((".pth", ".pt", ".safetensors")) and "/" not in name and "\\" not in name:
            return (f"{name} is not in ComfyUI's models/upscale_models; put the weights file there (for IMDN: the "
                    f"official checkpoints of github.com/Zheng222/IMDN) and refresh")
        return _model_ref_problem(model) or True

    def load(self, method, model, device, dtype):
        from zoo.frontend import SUPER_RESOLUTION, load

        spec, sampler = load(SUPER_RESOLUTION, method, upscale_model_file(model) or model, device=device, dtype=dtype,
                             roots=model_roots())
        return (LoadedModel(spec, sampler, method, model),)


class DistillZooUpscale:
    """Upscale IMAGE with a distill-zoo SR model; ``tile`` > 0 processes overlapping tiles of that size; 0 lets the method decide (large images are tiled)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "upscale_model": (UPSCALE_MODEL_TYPE,),
            "image": ("IMAGE",),
            "scale": ("INT", {"default": 0, "min": 0, "max": 8, "tooltip": "0: the model's own factor"}),
            "tile": ("INT", {"default": 0, "min": 0, "max": 4096, "step": 8,
                             "tooltip": "tile size in input pixels; 0: automatic (large images are tiled, for every "
                                        "upscaler)"}),
            **DIFFUSION_SR_INPUTS,
        }}

    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("images",)
    FUNCTION = "upscale"
    CATEGORY = f"{CATEGORY}/upscaling"
    DESCRIPTION = "Super-resolution with any distill-zoo SR model (same sampler as 'zoo upscale')."

    def upscale(self, upscale_model, image, scale, tile, steps, seed):
        import torch

        from zoo.frontend import upscale

        require_upscaler(upscale_model, "DistillZooUpscale")
        pictures = comfy_to_pil(image)
        outputs = []
        with progress_reporter("distill-zoo upscaling") as report, cancellable(upscale_model.sampler):
            for index, picture in enumerate(pictures):
                def progress(done, total, _index=index):
                    report(_index * total + done, len(pictures) * total)

                result = upscale(upscale_model.sampler, picture, scale=scale or None, tile=tile or None,
                                 steps=steps, seed=seed, progress=progress)
                outputs.append(images_to_comfy(result.images))
        return (torch.cat(outputs, dim=0),)


class CoreUpscaleModel:
    """A distill-zoo SR sampler in the shape ComfyUI's core ``ImageUpscaleWithModel`` uses (spandrel's model
    descriptor: ``scale``, ``model``, ``to()``, ``__call__`` on ``[B, 3, H, W]`` in 0..1), so any registered upscaler
    (YONOS-SR included) runs in core upscale graphs with ComfyUI's own tiling."""

    def __init__(self, loaded: LoadedModel, steps: int, seed: int) -> None:
        import torch
        from PIL import Image

        self.loaded, self.steps, self.seed = loaded, steps, seed
        modules = [m for m in vars(loaded.sampler).values() if isinstance(m, torch.nn.Module)]
        self.model = modules[0] if modules else torch.nn.Identity()  # what ComfyUI measures for its memory estimate
        probe = self._upscale_picture(Image.new("RGB", (16, 16)))
        self.scale = probe.size[0] // 16

    def _upscale_picture(self, picture):
        from zoo.frontend import upscale

        with progress_reporter("distill-zoo upscaling") as progress, cancellable(self.loaded.sampler):
            return upscale(self.loaded.sampler, picture, scale=None, tile=None, steps=self.steps, seed=self.seed,
                           progress=progress).images[0]

    def to(self, *args, **kwargs):
        return self  # the sampler keeps the device it was loaded on

    def cpu(self):
        return self

    def __call__(self, image):
        import torch

        pictures = comfy_to_pil(image.movedim(1, -1))
        return torch.cat([images_to_comfy([self._upscale_picture(p)]) for p in pictures]).movedim(-1, 1)


class DistillZooCoreUpscaleModel:
    """Any distill-zoo upscaler (IMDN, YONOS-SR, a plugin's) as ComfyUI's UPSCALE_MODEL, for core
    ``ImageUpscaleWithModel`` and every node that takes one."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "upscale_model": (UPSCALE_MODEL_TYPE,),
            **DIFFUSION_SR_INPUTS,
        }}

    RETURN_TYPES = ("UPSCALE_MODEL",)
    RETURN_NAMES = ("upscale_model",)
    FUNCTION = "convert"
    CATEGORY = f"{CATEGORY}/upscaling"
    DESCRIPTION = "Use a distill-zoo upscaler with ComfyUI's core Upscale Image (using Model) node."

    def convert(self, upscale_model, steps, seed):
        require_upscaler(upscale_model, "DistillZooCoreUpscaleModel")
        return (CoreUpscaleModel(upscale_model, steps, seed),)
