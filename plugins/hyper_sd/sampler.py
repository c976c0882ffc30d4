"""Hyper-SD samplers: the model card's three recipes on a base model with a fused LoRA (or a replaced UNet).

Paper: "Hyper-SD: Trajectory Segmented Consistency Model for Efficient Image Synthesis", Ren et al., arXiv 2404.13686.
Weights and recipes: huggingface.co/ByteDance/Hyper-SD (no official training or inference code beyond the card).

* ``ddim_trailing`` — N-step and CFG LoRAs: ``DDIMScheduler(timestep_spacing="trailing")``; with N steps the
  timesteps are the segment edges minus one (999, 874, ... for N=8), so each DDIM step is one segment jump.
* ``tcd`` — the unified 1-step LoRA: ``TCDScheduler`` with ``eta`` (1.0 for one step; lower eta keeps more detail).
* ``lcm`` — the SDXL 1-step UNet: ``LCMScheduler`` with ``timesteps=[800]``.

Model sources, in order: a ``preset`` (base model and file fetched through :mod:`zoo.hub`); a model folder whose
``zoo.json`` names ``base_model`` and a ``lora`` file (the committed testbed student); a plain base model plus
``lora=<path or hub ref>``. SD1.5-layout models run on :class:`zoo.t2i.TextToImageSampler`; SDXL/SD3/FLUX presets
need their diffusers pipelines and the real weights (:class:`PipelineHyperSampler`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from zoo.diffusion.lora_io import add_lora_adapter, fuse_lora, load_lora, read_state_dict
from zoo.errors import InputError, WeightsError
from zoo.spec import ResolvedModel
from zoo.t2i import SDComponents, TextToImageSampler

from zoo_plugins.hyper_sd.presets import REPO, SCHEDULERS, HyperRecipe, recipe as get_recipe

METHOD = "hyper_sd"
TESTBED_REF = "pkg:zoo_plugins.hyper_sd/testbed"
"""The committed testbed student (default model of the method)."""


class HyperSDSampler(TextToImageSampler):
    """Hyper-SD sampling on an SD1.5-layout model whose UNet already carries the (fused or live) Hyper-SD LoRA.

    Settings (from the preset, the model's ``zoo.json`` ``sampler`` dict, or keyword arguments): ``scheduler``
    (``ddim_trailing``/``tcd``/``lcm``), ``steps``, ``min_steps``, ``max_steps``, ``guidance_scale``, ``eta``,
    ``timesteps``. Call-time options ``eta`` and ``timesteps`` override them.
    """

    method = METHOD
    default_steps = 4
    default_guidance_scale = 0.0
    call_options = frozenset({"eta", "timesteps"})  # the scheduler comes from the recipe

    def __init__(self, components: SDComponents, model: ResolvedModel | None = None, preset: str | None = None,
                 **settings: Any) -> None:
        super().__init__(components, model, **settings)
        self.preset = preset
        self.scheduler_kind = self.settings.get("scheduler", "ddim_trailing")
        if self.scheduler_kind not in SCHEDULERS[:3]:
            raise InputError(f"Hyper-SD scheduler {self.scheduler_kind!r} is not one of ddim_trailing, tcd, lcm "
                             f"(flow_euler presets run through their diffusers pipeline)")
        self.min_steps = int(self.settings.get("min_steps", 1))
        self.max_steps = int(self.settings.get("max_steps", 50))

    def validate(self, steps, height, width, batch_size):
        if not isinstance(steps, int) or not self.min_steps <= steps <= self.max_steps:
            what = f"preset {self.preset!r}" if self.preset else "this Hyper-SD model"
            raise InputError(f"steps={steps} is out of range for {what}: use {self.min_steps}..{self.max_steps}")
        super().validate(steps, height, width, batch_size)

    def _option(self, options: dict, key: str, default: Any = None) -> Any:
        value = options.get(key)
        return self.settings.get(key, default) if value is None else value

    def make_scheduler(self, steps: int, options: dict):
        """The diffusers scheduler of this recipe with its timesteps set (not yet stepped)."""
        c = self.components
        timesteps = self._option(options, "timesteps")
        if self.scheduler_kind == "ddim_trailing":
            scheduler = c.new_scheduler("DDIMScheduler", timestep_spacing="trailing")
            scheduler.set_timesteps(steps)
        elif self.scheduler_kind == "tcd":
            scheduler = c.new_scheduler("TCDScheduler")
            if timesteps:
                scheduler.set_timesteps(timesteps=[int(t) for t in timesteps][:steps])
            else:
                scheduler.set_timesteps(steps)
        else:
            scheduler = c.new_scheduler("LCMScheduler")
            if timesteps:
                scheduler.set_timesteps(timesteps=[int(t) for t in timesteps][:steps])
            else:
                scheduler.set_timesteps(steps)
        return scheduler

    def check_options(self, options):
        if "lora" in options:
            raise InputError("Unknown option 'lora' for hyper_sd: a LoRA is chosen when the sampler is built "
                             "(a preset, a model folder, or build_sampler(lora=...))")
        super().check_options(options)

    def denoise(self, latents, cond, uncond, steps, guidance_scale, generator, progress, **options):
        scheduler = self.make_scheduler(steps, options)
        eta = float(self._option(options, "eta", 1.0))
        if self.scheduler_kind == "tcd" and not 0.0 <= eta <= 1.0:
            raise InputError(f"eta={eta} is out of range for TCD: use a value in [0, 1]")
        for index, t in enumerate(scheduler.timesteps):
            model_output = self.predict_eps(latents, t, cond, uncond, guidance_scale)
            if self.scheduler_kind == "ddim_trailing":
                latents = scheduler.step(model_output, t, latents).prev_sample
            elif self.scheduler_kind == "tcd":
                latents = scheduler.step(model_output, t, latents, eta=eta, generator=generator).prev_sample
            else:  # LCM: the denoised sample is the output at the last step; re-noised in between
                out = scheduler.step(model_output, t, latents, generator=generator)
                latents = out.denoised if index == len(scheduler.timesteps) - 1 else out.prev_sample
            if progress is not None:
                progress(index + 1, steps)
        return latents

    def metadata(self):
        return {**super().metadata(), "preset": self.preset}

    def extra_metadata(self, options):
        meta: dict[str, Any] = {"scheduler": self.scheduler_kind}
        if self.scheduler_kind == "tcd":
            meta["eta"] = float(self._option(options, "eta", 1.0))
        timesteps = self._option(options, "timesteps")
        if timesteps:
            meta["timesteps"] = [int(t) for t in timesteps]
        return meta


# -- loading ---------------------------------------------------------------------------------------------------------
def _resolve(ref: str) -> ResolvedModel:
    from zoo.hub import resolve_model

    return resolve_model(ref)


def _lora_path(ref: str | Path) -> Path:
    """A LoRA the user gave (option ``lora=``): a file path, or ``org/repo::file`` on the hub."""
    text = str(ref)
    if "::" in text:  # org/repo::file.safetensors
        from zoo.hub import hf_hub_file

        repo, _, filename = text.partition("::")
        return hf_hub_file(repo, filename)
    path = Path(text).expanduser()
    if not path.is_file():
        raise InputError(f"LoRA {text!r} is not a file; give a path to a .safetensors file or 'org/repo::file'")
    return path


def _apply_lora(components: SDComponents, path: Path, scale: float, fuse: bool) -> None:
    lora = load_lora(path)
    if lora.components - {"unet"}:
        models = {"unet": components.unet, "text_encoder": components.text_encoder}
    else:
        models = {"unet": components.unet}
    if fuse:
        fuse_lora(lora, models, scale)
    else:
        for name, model in models.items():
            if name in lora.components:
                add_lora_adapter(model, lora, component=name, adapter_name="hyper_sd", scale=scale)


def _replace_unet(components: SDComponents, path: Path) -> None:
    """Load a full UNet state dict (the Hyper-SDXL 1-step UNet layout) into the base UNet, strictly."""
    state, _ = read_state_dict(path)
    try:
        components.unet.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"UNet file {path.name} does not fit the base model's UNet "
                           f"({str(exc).splitlines()[0][:160]}); use the base model it was made for") from None
    components.unet.to(device=components.device, dtype=components.dtype)


def build_sampler(model: ResolvedModel | str | Path | None = None, *, device: str = "cpu",
                  dtype: torch.dtype | None = None, attention: str = "auto", preset: str | None = None,
                  base_model: str | None = None, lora: str | Path | None = None, lora_scale: float | None = None,
                  fuse: bool = True, **settings: Any):
    """The registry's sampler factory for ``hyper_sd``.

    Args:
        model: a Hyper-SD model folder (``zoo.json`` with ``base_model`` and ``lora``), or a base model when ``lora``
            or ``preset`` is given; None with a preset uses the preset's base model.
        preset: a published recipe name (``zoo info hyper_sd`` lists them), e.g. ``sd15-1step``.
        base_model: overrides the base model of the preset or manifest (e.g. an SD1.5 fine-tune).
        lora: a LoRA file (path or ``org/repo::file``) to apply instead of the preset's / manifest's.
        lora_scale: fuse scale (default: the recipe's, 1.0; 0.125 for SD3/FLUX).
        fuse: fuse the LoRA into the weights (default) or keep it as a live PEFT adapter.
        settings: sampler settings overriding the recipe (steps, guidance_scale, eta, scheduler, ...).
    """
    from zoo.attention import set_attention_backend

    if isinstance(model, (str, Path)):
        model = _resolve(str(model))
    recipe: HyperRecipe | None = get_recipe(preset) if preset else None
    if recipe is not None and model is not None and model.ref == TESTBED_REF:
        model = None  # the method's default model was filled in by the loader; the preset names its own files
    manifest = dict(model.manifest or {}) if model is not None else {}
    is_student = manifest.get("method") == METHOD

    recipe_settings: dict[str, Any] = {}
    if recipe is not None:
        if recipe.family != "sd15":
            return PipelineHyperSampler.from_recipe(recipe, model, device=device, dtype=dtype, base_model=base_model,
                                                    lora=lora, lora_scale=lora_scale, **settings)
        recipe_settings = {k: v for k, v in recipe.settings().items()
                           if k in ("scheduler", "steps", "min_steps", "max_steps", "guidance_scale", "eta",
                                    "timesteps")}
        base_ref = base_model or (model.ref if model is not None else recipe.base_model)
        base = model if (model is not None and base_model is None) else _resolve(base_ref)
        from zoo.hub import hf_hub_file

        weights = _lora_path(lora) if lora else hf_hub_file(REPO, recipe.file)
        kind = recipe.kind
        scale = recipe.lora_scale if lora_scale is None else lora_scale
    elif is_student:
        from zoo.diffusion.student_folder import require_base_model
        from zoo.hub import manifest_file

        base = require_base_model(model, base_model)
        if lora:
            weights = _lora_path(lora)
        else:
            weights = manifest_file(model, manifest["lora"], "LoRA file") if manifest.get("lora") else None
        kind = manifest.get("kind", "lora")
        scale = float(manifest.get("lora_scale", 1.0) if lora_scale is None else lora_scale)
    else:
        if model is None and lora is None:
            raise InputError("Hyper-SD needs a preset (e.g. --preset sd15-4step), a Hyper-SD model folder, or "
                             "a base model plus lora=<file>")
        base = model if model is not None else _resolve(base_model)
        if base_model is not None:
            base = _resolve(base_model)
        weights = _lora_path(lora) if lora else None
        kind = "lora"
        scale = 1.0 if lora_scale is None else lora_scale

    components = SDComponents.from_folder(base.path, device=device, dtype=dtype)
    if weights is not None:
        if kind == "unet":
            _replace_unet(components, weights)
        else:
            _apply_lora(components, weights, scale, fuse)
    set_attention_backend(components.unet, attention)
    resolved = model if model is not None else base
    merged = {**recipe_settings, **{k: v for k, v in settings.items() if v is not None}}
    sampler = HyperSDSampler(components, resolved if is_student else None, preset=preset, **merged)
    if not is_student:
        sampler.model = resolved
    return sampler


class PipelineHyperSampler:
    """SDXL / SD3 / FLUX Hyper-SD presets through their diffusers pipelines (needs the real base weights).

    The LoRA is fused with :func:`zoo.diffusion.lora_io.fuse_lora` (validated keys and shapes) at the recipe's scale;
    the scheduler is set from the recipe (DDIM trailing, TCD, LCM at 800, or the pipeline's flow-matching default).
    """

    method = METHOD

    def __init__(self, pipe, recipe: HyperRecipe, model: ResolvedModel | None) -> None:
        self.pipe = pipe
        self.recipe = recipe
        self.model = model

    @classmethod
    def from_recipe(cls, recipe: HyperRecipe, model: ResolvedModel | None, *, device="cpu", dtype=None,
                    base_model=None, lora=None, lora_scale=None, **settings):
        from diffusers import DiffusionPipeline

        from zoo.hub import hf_hub_file

        base = _resolve(base_model) if base_model else (model or _resolve(recipe.base_model))
        try:
            pipe = DiffusionPipeline.from_pretrained(base.path, dtype=dtype or torch.float32,
                                                     local_files_only=True)
        except (OSError, ValueError) as exc:
            raise WeightsError(f"Cannot load the base pipeline {base.ref}: {str(exc).splitlines()[0]}") from None
        weights = _lora_path(lora) if lora else hf_hub_file(REPO, recipe.file)
        denoiser = getattr(pipe, "unet", None) or pipe.transformer
        if recipe.kind == "unet":
            state, _ = read_state_dict(weights)
            denoiser.load_state_dict(state, strict=True)
        else:
            component = "unet" if hasattr(pipe, "unet") and pipe.unet is not None else "transformer"
            fuse_lora(load_lora(weights), {component: denoiser},
                      recipe.lora_scale if lora_scale is None else lora_scale)
        if recipe.scheduler == "ddim_trailing":
            from diffusers import DDIMScheduler

            pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config, timestep_spacing="trailing")
        elif recipe.scheduler == "tcd":
            from diffusers import TCDScheduler

            pipe.scheduler = TCDScheduler.from_config(pipe.scheduler.config)
        elif recipe.scheduler == "lcm":
            from diffusers import LCMScheduler

            pipe.scheduler = LCMScheduler.from_config(pipe.scheduler.config)
        pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        sampler = cls(pipe, recipe, base)
        sampler.settings = settings
        return sampler

    def __call__(self, prompt, negative_prompt=None, steps=None, guidance_scale=None, seed=0, height=None,
                 width=None, batch_size=1, progress=None, output_type="pil", **options):
        from zoo.sampling import SampleResult

        r = self.recipe
        steps = r.steps if steps is None else steps
        if not isinstance(steps, int) or not r.min_steps <= steps <= r.max_steps:
            raise InputError(f"steps={steps} is out of range for preset {r.name!r}: use {r.min_steps}..{r.max_steps}")
        guidance = r.guidance_scale if guidance_scale is None else float(guidance_scale)
        kwargs: dict[str, Any] = {"num_inference_steps": steps, "guidance_scale": guidance,
                                  "generator": torch.Generator("cpu").manual_seed(int(seed)),
                                  "num_images_per_prompt": batch_size, "height": height, "width": width,
                                  "output_type": output_type}
        if negative_prompt is not None and r.negative_prompt:
            kwargs["negative_prompt"] = negative_prompt
        if r.scheduler == "tcd":
            kwargs["eta"] = float(options.get("eta", r.eta if r.eta is not None else 1.0))
        if r.timesteps:
            kwargs["timesteps"] = list(r.timesteps)[:steps]
            kwargs.pop("num_inference_steps")
        if progress is not None:
            kwargs["callback_on_step_end"] = lambda pipe, i, t, kw: (progress(i + 1, steps), kw)[1]
        denoiser = getattr(self.pipe, "unet", None) or self.pipe.transformer
        calls = []

        def count(module, args, kw):
            sample = args[0] if args else (kw.get("sample") if "sample" in kw else kw.get("hidden_states"))
            calls.append(sample.shape[0] / batch_size)

        handle = denoiser.register_forward_pre_hook(count, with_kwargs=True)
        try:
            images = self.pipe(prompt, **kwargs).images
        finally:
            handle.remove()
        nfe = int(round(sum(calls)))
        metadata = {"method": METHOD, "preset": r.name, "model": self.model.ref if self.model else None,
                    "commit": self.model.commit if self.model else None, "prompt": prompt,
                    "negative_prompt": negative_prompt, "steps": steps, "guidance_scale": guidance, "seed": seed,
                    "nfe": nfe, "scheduler": r.scheduler}
        if "eta" in kwargs:
            metadata["eta"] = kwargs["eta"]
        if r.timesteps:
            metadata["timesteps"] = kwargs["timesteps"]
        return SampleResult(images=images, nfe=nfe, metadata=metadata)
