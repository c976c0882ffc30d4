"""Text-to-image nodes: load any registered few-step method (or a Hyper-SD-style preset), sample IMAGE + LATENT.

The nodes are thin: loading is :func:`zoo.frontend.load` (= :func:`zoo.loading.load_sampler`, what ``zoo run``
calls) and sampling calls the very same sampler object with the same arguments as ``zoo run``, so a node and the
CLI produce identical pixels for the same seed.
"""

from __future__ import annotations

import json

from .dz_common import (ATTENTION, CATEGORY, DEVICES, DTYPES, MAX_SEED, MAX_SIZE, MODEL_TYPE, LoadedModel,
                        cancellable, images_to_comfy, latents_to_comfy, model_roots, progress_reporter)

NO_PRESETS = "(no presets registered)"


def _model_ref_problem(model: str) -> str | None:
    """A one-line reason why ``model`` cannot name a model, checked without network access (None: looks fine)."""
    from zoo.errors import ZooError
    from zoo.hub import parse_ref

    model = (model or "").strip()
    if not model:
        return None
    try:
        model_roots().check(model)  # outside the allowed folders: one answer, whether it exists or not
        parsed = parse_ref(model)
    except ZooError as exc:
        return str(exc)
    if parsed.kind == "local" and not parsed.path.is_dir():
        return f"Model folder {parsed.path} does not exist; give an existing folder or a hub id (org/name)"
    return None


class DistillZooLoadModel:
    """Load a distilled text-to-image model of any registered method from the hub, a local folder or a package."""

    @classmethod
    def INPUT_TYPES(cls):
        from zoo.frontend import TEXT_TO_IMAGE, method_choices

        return {"required": {
            "method": (method_choices(TEXT_TO_IMAGE), {
                "default": "auto",
                "tooltip": "auto: the method named in the model's zoo.json (or the embedded testbed model)"}),
            "model": ("STRING", {
                "default": "", "multiline": False,
                "tooltip": "hf-hub:org/repo@rev, org/repo, a local folder or pkg:package/dir; empty: the method's "
                           "default model"}),
            "device": (DEVICES, {"default": "auto"}),
            "dtype": (DTYPES, {"default": "auto", "tooltip": "auto: fp16 on CUDA, fp32 on CPU"}),
            "attention": (ATTENTION, {"default": "auto"}),
        }}

    RETURN_TYPES = (MODEL_TYPE,)
    RETURN_NAMES = ("model",)
    FUNCTION = "load"
    CATEGORY = f"{CATEGORY}/loaders"
    DESCRIPTION = "Load a few-step distilled text-to-image model through the distill-zoo registry."

    @classmethod
    def VALIDATE_INPUTS(cls, model=""):
        return _model_ref_problem(model) or True

    def load(self, method, model, device, dtype, attention):
        from zoo.frontend import TEXT_TO_IMAGE, load

        spec, sampler = load(TEXT_TO_IMAGE, method, model, device=device, dtype=dtype, attention=attention,
                             roots=model_roots())
        return (LoadedModel(spec, sampler, method, model),)


class DistillZooLoadPreset:
    """Load a named recipe of a method (e.g. Hyper-SD's N-step LoRAs with their scheduler and guidance)."""

    @classmethod
    def INPUT_TYPES(cls):
        from zoo.frontend import preset_choices

        return {"required": {
            "preset": (preset_choices() or [NO_PRESETS], {"tooltip": "method.preset (see 'zoo info METHOD')"}),
            "model": ("STRING", {"default": "", "tooltip": "optional model/base-model reference; empty: the "
                                                           "preset's own artifact"}),
            "device": (DEVICES, {"default": "auto"}),
            "dtype": (DTYPES, {"default": "auto"}),
        }}

    RETURN_TYPES = (MODEL_TYPE,)
    RETURN_NAMES = ("model",)
    FUNCTION = "load"
    CATEGORY = f"{CATEGORY}/loaders"
    DESCRIPTION = "Load a method's preset (Hyper-SD recipes and the like) with its recommended settings."

    @classmethod
    def VALIDATE_INPUTS(cls, preset=NO_PRESETS, model=""):
        from zoo.frontend import preset_choices

        valid = preset_choices()
        if preset not in valid:
            listed = ", ".join(valid) or "none (no installed method has presets)"
            return f"Unknown preset {preset!r}; valid presets: {listed}"
        return _model_ref_problem(model) or True

    def load(self, preset, model, device, dtype):
        from zoo.frontend import TEXT_TO_IMAGE, load, split_preset_key

        method, preset_name = split_preset_key(preset)
        spec, sampler = load(TEXT_TO_IMAGE, method, model, device=device, dtype=dtype, preset=preset_name,
                             roots=model_roots())
        return (LoadedModel(spec, sampler, method, model, preset_name),)


class DistillZooRecommendedSettings:
    """The loaded model's recommended steps and guidance scale, to link into the sampler's inputs."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": (MODEL_TYPE,)}}

    RETURN_TYPES = ("INT", "FLOAT")
    RETURN_NAMES = ("steps", "guidance_scale")
    FUNCTION = "settings"
    CATEGORY = f"{CATEGORY}/sampling"
    DESCRIPTION = "Steps and guidance scale the model's manifest or preset recommends."

    def settings(self, model):
        from zoo.frontend import recommended_settings

        values = recommended_settings(model.sampler)
        return (values["steps"], values["guidance_scale"])


class DistillZooSampler:
    """Sample images with a loaded distill-zoo model; negative prompt through CFG or NASA."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": (MODEL_TYPE,),
            "prompt": ("STRING", {"default": "", "multiline": True, "dynamicPrompts": True}),
            "negative_prompt": ("STRING", {"default": "", "multiline": True,
                                           "tooltip": "used by CFG (guidance > 1) and by NASA (nasa_alpha > 0)"}),
            "steps": ("INT", {"default": 4, "min": 1, "max": 1000,
                              "tooltip": "link DistillZooRecommendedSettings to use the model's recommendation"}),
            "guidance_scale": ("FLOAT", {"default": -1.0, "min": -1.0, "max": 30.0, "step": 0.1, "round": 0.01,
                                         "tooltip": "-1: the model's recommended value; <= 1: no CFG"}),
            "seed": ("INT", {"default": 0, "min": 0, "max": MAX_SEED, "control_after_generate": True}),
            "width": ("INT", {"default": 0, "min": 0, "max": MAX_SIZE, "step": 8,
                              "tooltip": "0: the model's native size; otherwise a multiple of 8"}),
            "height": ("INT", {"default": 0, "min": 0, "max": MAX_SIZE, "step": 8,
                               "tooltip": "0: the model's native size; otherwise a multiple of 8"}),
            "batch_size": ("INT", {"default": 1, "min": 1, "max": 64}),
            "nasa_alpha": ("FLOAT", {"default": -1.0, "min": -1.0, "max": 2.0, "step": 0.01,
                                     "tooltip": "NASA negative-away steer attention (SNOOPI): strength with which "
                                                "the negative prompt is removed inside the one UNet call; works "
                                                "with any few-step model. -1: the method's default (off for most), "
                                                "0: off"}),
        }}

    RETURN_TYPES = ("IMAGE", "LATENT", "STRING")
    RETURN_NAMES = ("images", "latent", "info")
    OUTPUT_TOOLTIPS = ("[B, H, W, 3] images in 0..1", "final latents in the VAE's raw space",
                       "generation parameters as JSON (method, model, seed, steps, NFE, time per image)")
    FUNCTION = "sample"
    CATEGORY = f"{CATEGORY}/sampling"
    DESCRIPTION = "Few-step sampling with any distill-zoo text-to-image model (same sampler as 'zoo run')."

    @classmethod
    def VALIDATE_INPUTS(cls, width=0, height=0):
        from zoo.limits import MAX_PIXELS_ENV, max_pixels

        for name, value in (("width", width), ("height", height)):
            if not 0 <= value <= MAX_SIZE:
                return f"{name}={value} is out of range: use 0 (native size) or 8..{MAX_SIZE}"
            if value % 8:
                return f"{name}={value} is not a multiple of 8; use e.g. {value - value % 8 or 8}"
        limit = max_pixels()
        if width * height > limit:
            return (f"{width}x{height} is over the limit of {limit:,} pixels per image; make it smaller, or raise "
                    f"the limit with {MAX_PIXELS_ENV} when starting ComfyUI")
        return True

    def sample(self, model, prompt, negative_prompt, steps, guidance_scale, seed, width, height, batch_size,
               nasa_alpha):
        from zoo.errors import InputError

        if not isinstance(model, LoadedModel) or (model.spec is not None and model.spec.task != "text-to-image"):
            raise InputError("The sampler needs a text-to-image model from DistillZooLoadModel or DistillZooLoadPreset")
        options = {"nasa_alpha": nasa_alpha} if nasa_alpha >= 0 else {}
        with progress_reporter("distill-zoo sampling") as progress, cancellable(model.sampler):
            result = model.sampler(prompt, negative_prompt=negative_prompt or None, steps=steps,
                                   guidance_scale=None if guidance_scale < 0 else guidance_scale, seed=seed,
                                   height=height or None, width=width or None, batch_size=batch_size,
                                   progress=progress, output_type="pt", **options)
        if result.latents is None:
            raise InputError(f"{model!r} returned no latents; it does not follow the text-to-image sampler contract")
        components = getattr(model.sampler, "components", None)
        vae_config = getattr(getattr(components, "vae", None), "config", None)
        info = json.dumps({**result.metadata, "nfe": result.nfe}, sort_keys=True, default=str)
        return (images_to_comfy(result.images), latents_to_comfy(result.latents, vae_config), info)
