"""Text-to-image plumbing every sampler shares: load a Stable Diffusion folder, encode prompts, seed latents, count
network evaluations, decode, return a :class:`zoo.sampling.SampleResult` with the generation parameters.

A method's sampler subclasses :class:`TextToImageSampler` and implements only :meth:`TextToImageSampler.denoise`
(its own loop over the UNet). :class:`DDIMSampler` — plain multi-step DDIM with classifier-free guidance — runs
undistilled models (the testbed teacher, the baselines in ``scripts/bench_quality.py``).

Components are loaded part by part from a diffusers ``StableDiffusionPipeline`` folder (``unet/``, ``vae/``,
``text_encoder/``, ``tokenizer/``, ``scheduler/``) with ``local_files_only=True``; :mod:`zoo.hub` brings hub models to a
local folder first. Samplers accept already-loaded :class:`SDComponents`, so the nodes and the app reuse weights.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from zoo.diffusion.guidance import cfg, uses_cfg
from zoo.errors import FileMissingError, InputError, WeightsError
from zoo.limits import plan_text_to_image
from zoo.negative_attention import (  # NASA: negatives via attention, no CFG
    NASA_LAYERS_OPTION, NASA_MODE_OPTION, NASA_OPTION, NASA_OPTIONS, nasa_for_call)
from zoo.sampling import ProgressCallback, SampleResult, check_seed, require_finite
from zoo.spec import ResolvedModel

DEFAULT_MODEL = "pkg:zoo.testbed/weights/teacher"
"""The embedded default model: the testbed's miniature Stable Diffusion teacher (see ``docs/TESTBED.md``)."""

BASE_METHOD = "base"
"""Manifest ``method`` value of an undistilled diffusion model, run by :class:`DDIMSampler`."""


def _quiet_diffusers() -> None:
    from diffusers.utils import logging as diffusers_logging

    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    diffusers_logging.set_verbosity(diffusers_logging.CRITICAL)  # its load errors become one-line WeightsErrors
    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()


def require_complete(module: Any, folder: Path | str) -> Any:
    """``module`` when every weight was in its file, else one line: diffusers and transformers leave the weights a
    file lacks on the ``meta`` device without a word, and the first use fails with "Cannot copy out of meta tensor"."""
    missing = [name for name, tensor in [*module.named_parameters(), *module.named_buffers()] if tensor.is_meta]
    if missing:
        raise WeightsError(f"The weights in {folder} are incomplete: {len(missing)} tensor(s) missing (e.g. "
                           f"{missing[0]!r}); the file is truncated or from another architecture, download or export "
                           f"it again")
    return module


@dataclass
class SDComponents:
    """The parts of a Stable Diffusion pipeline a sampler needs, on one device and dtype."""

    unet: Any
    vae: Any
    text_encoder: Any
    tokenizer: Any
    scheduler_config: dict
    device: torch.device
    dtype: torch.dtype
    path: Path | None = None

    @classmethod
    def from_folder(cls, path: str | Path, device: str | torch.device = "cpu",
                    dtype: torch.dtype | None = None, unet: Any = None) -> "SDComponents":
        """Load a diffusers SD folder. ``unet`` replaces the folder's UNet (e.g. a distilled student)."""
        from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizer

        _quiet_diffusers()
        path = Path(path)
        device = torch.device(device)
        dtype = dtype or torch.float32
        wanted = ["vae", "text_encoder", "tokenizer", "scheduler"] + ([] if unet is not None else ["unet"])
        missing = [part for part in wanted if not (path / part).is_dir()]
        if missing:
            raise FileMissingError(f"{path} is not a Stable Diffusion folder: missing {', '.join(m + '/' for m in missing)} "
                                   f"(expected the diffusers save_pretrained layout)")
        try:
            if unet is None:
                unet = UNet2DConditionModel.from_pretrained(path / "unet", local_files_only=True, torch_dtype=dtype)
            vae = AutoencoderKL.from_pretrained(path / "vae", local_files_only=True, torch_dtype=dtype)
            text_encoder = CLIPTextModel.from_pretrained(path / "text_encoder", local_files_only=True,
                                                         torch_dtype=dtype)
            tokenizer = CLIPTokenizer.from_pretrained(path / "tokenizer", local_files_only=True)
            scheduler_config = dict(DDPMScheduler.load_config(path / "scheduler", local_files_only=True))
        except (OSError, ValueError, RuntimeError) as exc:
            parts = [part for part in ("unet", "vae", "text_encoder") if (path / part).is_dir()]
            if any(not list((path / part).glob("*.safetensors")) and not list((path / part).glob("*.bin"))
                   for part in parts):
                raise WeightsError(f"{path} has no safetensors weights (pickle weights .bin/.ckpt are skipped unless "
                                   f"--allow-pickle): download it with 'zoo download REF --allow-pickle' if you trust "
                                   f"its source, or use a model published as safetensors") from None
            raise WeightsError(f"Cannot load the Stable Diffusion folder {path}: {str(exc).splitlines()[0]}") from None
        components = cls(unet, vae, text_encoder, tokenizer, scheduler_config, device, dtype, path)
        for name, module in (("unet", unet), ("vae", vae), ("text_encoder", text_encoder)):
            require_complete(module, path / name).to(device=device, dtype=dtype).eval().requires_grad_(False)
        return components

    # -- geometry -------------------------------------------------------------------------------------------------
    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def size_multiple(self) -> int:
        """Image height and width must be multiples of this (VAE factor times the UNet's total downsampling)."""
        return self.vae_scale_factor * 2 ** (len(self.unet.config.block_out_channels) - 1)

    @property
    def default_size(self) -> int:
        return self.unet.config.sample_size * self.vae_scale_factor

    def new_scheduler(self, cls_name: str = "DDIMScheduler", **overrides):
        """A diffusers scheduler of class ``cls_name`` built from the model's scheduler config."""
        import diffusers

        try:
            scheduler_cls = getattr(diffusers, cls_name)
        except AttributeError:
            raise InputError(f"Unknown diffusers scheduler {cls_name!r}") from None
        return scheduler_cls.from_config({**self.scheduler_config, **overrides})

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        """ᾱ_t for t = 0..T-1 of the model's training schedule (float64, CPU)."""
        return self.new_scheduler("DDPMScheduler").alphas_cumprod.to(torch.float64)

    # -- the three stages ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_prompt(self, prompts: Sequence[str]) -> torch.Tensor:
        """Text-encoder hidden states ``[B, 77, D]`` for ``prompts`` (the SD convention: last hidden state)."""
        tokens = self.tokenizer(list(prompts), padding="max_length", max_length=self.tokenizer.model_max_length,
                                truncation=True, return_tensors="pt")
        hidden = self.text_encoder(tokens.input_ids.to(self.device))[0]
        return hidden.to(self.dtype)

    def latent_shape(self, batch_size: int, height: int, width: int) -> tuple[int, int, int, int]:
        return (batch_size, self.unet.config.in_channels, height // self.vae_scale_factor,
                width // self.vae_scale_factor)

    def initial_latents(self, batch_size: int, height: int, width: int, seed: int,
                        generator: torch.Generator | None = None) -> torch.Tensor:
        """Gaussian latents from a CPU generator seeded with ``seed`` (identical on every device). With
        ``generator`` the draw continues its stream (chunks drawn one after the other equal one draw of all)."""
        generator = generator or torch.Generator("cpu").manual_seed(int(seed))
        shape = self.latent_shape(batch_size, height, width)
        return torch.randn(shape, generator=generator, dtype=torch.float32).to(self.device, self.dtype)

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Scaled latents of images ``[B, 3, H, W]`` in ``[0, 1]`` (a sample of the VAE posterior, global RNG)."""
        pixels = images.to(self.device, self.dtype) * 2 - 1
        shift = getattr(self.vae.config, "shift_factor", None) or 0.0
        return (self.vae.encode(pixels).latent_dist.sample() - shift) * self.vae.config.scaling_factor

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Images ``[B, 3, H, W]`` in ``[0, 1]`` (float32, CPU) from latents."""
        scaling = self.vae.config.scaling_factor
        shift = getattr(self.vae.config, "shift_factor", None) or 0.0
        images = self.vae.decode(latents / scaling + shift).sample
        return ((images.float() + 1) / 2).clamp(0, 1).cpu()

    @staticmethod
    def to_pil(images: torch.Tensor) -> list:
        from PIL import Image

        arrays = (images.permute(0, 2, 3, 1).numpy() * 255).round().astype("uint8")
        return [Image.fromarray(array) for array in arrays]


class NFECounter:
    """Counts network evaluations per image through a forward pre-hook on the UNet.

    A call on a batch of ``k * batch_size`` latents (CFG batching conditional and unconditional branches) counts ``k``.
    """

    def __init__(self, module: torch.nn.Module, batch_size: int) -> None:
        self.batch_size = batch_size
        self.count = 0.0
        self._handle = module.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        sample = args[0] if args else kwargs["sample"]
        self.count += sample.shape[0] / self.batch_size

    def close(self) -> int:
        self._handle.remove()
        return int(math.ceil(self.count - 1e-9))


def resolve_default(model: ResolvedModel | str | Path | None) -> ResolvedModel:
    """A :class:`ResolvedModel` for ``model`` (a ref, a folder, or None for the embedded default)."""
    if isinstance(model, ResolvedModel):
        return model
    from zoo.hub import resolve_model

    return resolve_model(str(model) if model is not None else DEFAULT_MODEL)


class TextToImageSampler:
    """Base class of text-to-image samplers.

    Subclasses set the class attributes and implement :meth:`denoise`. Calling the sampler validates arguments,
    encodes prompts, seeds latents, runs :meth:`denoise` while counting UNet evaluations, decodes and returns a
    :class:`SampleResult` whose metadata holds every generation parameter.

    Class attributes:
        method: method name written into the metadata.
        default_steps / min_steps / max_steps: step count default and allowed range.
        default_guidance_scale: CFG scale used when the caller passes none (diffusers convention, ``<= 1`` = off).
        call_options: the keyword options a call accepts besides the common ones (steps, seed, ..., and NASA's
            ``nasa_alpha`` / ``nasa_mode`` / ``nasa_layers``, which every sampler accepts); any other name
            is refused with one line listing these, so a misspelt option cannot be silently ignored.
    """

    method: str = BASE_METHOD
    call_options: frozenset[str] = frozenset({"scheduler", "timestep_spacing"})
    default_steps: int = 25
    min_steps: int = 1
    max_steps: int = 1000
    default_guidance_scale: float = 0.0

    def __init__(self, components: SDComponents, model: ResolvedModel | None = None, **settings: Any) -> None:
        self.components = components
        self.model = model
        manifest = dict(model.manifest or {}) if model is not None else {}
        # A manifest's recommended settings apply to the method that made the model, not to another method's
        # sampler run on it (e.g. a distillation sampler on the base model).
        same_method = manifest.get("method") in (None, self.method)
        manifest_settings = dict(manifest.get("sampler", {})) if same_method else {}
        self.settings = {**manifest_settings, **{k: v for k, v in settings.items() if v is not None}}
        source = f"the zoo.json of {model.ref}" if model is not None and manifest_settings else "the settings"
        if "steps" in self.settings:
            steps = self.settings.pop("steps")
            if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
                raise InputError(f"steps={steps!r} in {source} is not a whole number of steps >= 1; fix it (e.g. 4)")
            self.default_steps = steps
        if "guidance_scale" in self.settings:
            guidance = self.settings.pop("guidance_scale")
            if isinstance(guidance, bool) or not isinstance(guidance, (int, float)):
                raise InputError(f"guidance_scale={guidance!r} in {source} is not a number; fix it (e.g. 5.0)")
            self.default_guidance_scale = float(guidance)

    @classmethod
    def from_model(cls, model: ResolvedModel | str | Path | None = None, *, device: str = "cpu",
                   dtype: torch.dtype | None = None, attention: str = "auto", **settings: Any):
        """Load the sampler for ``model`` (None: the embedded testbed default). This is the registry factory."""
        from zoo.attention import set_attention_backend

        resolved = resolve_default(model)
        components = SDComponents.from_folder(resolved.path, device=device, dtype=dtype)
        set_attention_backend(components.unet, attention)
        return cls(components, resolved, **settings)

    # -- to implement ---------------------------------------------------------------------------------------------
    def denoise(self, latents: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor | None, steps: int,
                guidance_scale: float, generator: torch.Generator, progress: ProgressCallback | None,
                **options: Any) -> torch.Tensor:
        """Turn initial noise ``latents`` into clean latents with ``steps`` steps. ``uncond`` is None without CFG."""
        raise NotImplementedError

    # -- shared helpers -----------------------------------------------------------------------------------------
    def predict_eps(self, latents: torch.Tensor, timestep, cond: torch.Tensor, uncond: torch.Tensor | None,
                    guidance_scale: float) -> torch.Tensor:
        """The UNet's prediction at ``timestep``, with CFG (one batched call) when ``uncond`` is given."""
        unet = self.components.unet
        t = torch.as_tensor(timestep, device=latents.device)
        if uncond is None:
            return unet(latents, t, encoder_hidden_states=cond).sample
        both = unet(torch.cat([latents, latents]), t, encoder_hidden_states=torch.cat([cond, uncond])).sample
        eps_cond, eps_uncond = both.chunk(2)
        return cfg(eps_cond, eps_uncond, guidance_scale)

    def scheduler_choice(self, options: dict[str, Any]) -> tuple[str, str]:
        """``(diffusers scheduler class name, timestep_spacing)``: call options, then the model's recommended
        settings, then DDIM with ``trailing`` spacing (methods.md §0.3)."""
        name = options.get("scheduler") or self.settings.get("scheduler", "DDIMScheduler")
        spacing = options.get("timestep_spacing") or self.settings.get("timestep_spacing", "trailing")
        return name, spacing

    def make_scheduler(self, steps: int, options: dict[str, Any]):
        """The scheduler of :meth:`scheduler_choice`, with ``steps`` timesteps set."""
        name, spacing = self.scheduler_choice(options)
        scheduler = self.components.new_scheduler(name, timestep_spacing=spacing)
        scheduler.set_timesteps(steps, device=self.components.device)
        return scheduler

    def validate(self, steps: int, height: int, width: int, batch_size: int) -> None:
        if not isinstance(steps, int) or not self.min_steps <= steps <= self.max_steps:
            raise InputError(f"steps={steps} is out of range for {self.method}: use {self.min_steps}..{self.max_steps}")
        multiple = self.components.size_multiple
        if height <= 0 or width <= 0 or height % multiple or width % multiple:
            raise InputError(f"Image size {width}x{height} is not a positive multiple of {multiple} for this model; "
                             f"use e.g. {self.components.default_size}x{self.components.default_size}")
        if batch_size < 1:
            raise InputError(f"batch_size={batch_size} must be at least 1")

    def metadata(self) -> dict[str, Any]:
        model = self.model
        return {"method": self.method,
                "model": model.ref if model else None,
                "commit": model.commit if model else None}

    # -- the call -------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(self, prompt: str | Sequence[str], negative_prompt: str | Sequence[str] | None = None,
                 steps: int | None = None, guidance_scale: float | None = None, seed: int = 0,
                 height: int | None = None, width: int | None = None, batch_size: int = 1,
                 progress: ProgressCallback | None = None, output_type: str = "pil",
                 latents: torch.Tensor | None = None, **options: Any) -> SampleResult:
        """Sample ``batch_size`` images (or one per prompt of a list). ``latents``: initial noise to start from
        instead of the Gaussian seeded by ``seed`` (``[B, C, H / f, W / f]``; ``seed`` still seeds stochastic
        samplers' fresh noise)."""
        c = self.components
        steps = self.default_steps if steps is None else steps
        guidance_scale = self.default_guidance_scale if guidance_scale is None else float(guidance_scale)
        height = height or c.default_size
        width = width or c.default_size
        prompts = [prompt] * batch_size if isinstance(prompt, str) else list(prompt)
        batch_size = len(prompts)
        self.validate(steps, height, width, batch_size)
        check_seed(seed)
        self.check_options(options)
        if (negative_prompt is not None and options.get(NASA_OPTION) is None and not uses_cfg(guidance_scale)
                and self.settings.get(NASA_OPTION) is not None):
            # without CFG a negative prompt acts through NASA, at the model's calibrated strength (zoo.json)
            options = {**options, NASA_OPTION: self.settings[NASA_OPTION]}
        if options.get(NASA_OPTION) is not None:
            # the form and layers the model's strength was calibrated for (zoo.json), else the paper's: all layers
            for key, default in ((NASA_MODE_OPTION, "paper"), (NASA_LAYERS_OPTION, "all")):
                if options.get(key) is None:
                    options = {**options, key: self.settings.get(key) or default}
        negatives = None
        if negative_prompt is not None:
            negatives = [negative_prompt] * batch_size if isinstance(negative_prompt, str) else list(negative_prompt)
            if len(negatives) != batch_size:
                raise InputError(f"{len(negatives)} negative prompts for {batch_size} prompts; give one or one each")

        if latents is not None and tuple(latents.shape) != c.latent_shape(batch_size, height, width):
            raise InputError(f"latents of shape {tuple(latents.shape)} do not fit {batch_size} image(s) of "
                             f"{height}x{width}; give shape {c.latent_shape(batch_size, height, width)}")
        chunk = plan_text_to_image(c, batch_size, height, width)  # one line when too large; chunks keep memory flat

        started = time.perf_counter()
        noise = torch.Generator("cpu").manual_seed(int(seed))  # the initial noise, drawn chunk after chunk
        generator = torch.Generator("cpu").manual_seed(int(seed) + 1)  # for stochastic samplers' fresh noise
        label = f"{self.method} sampling of {self.model.ref if self.model else 'the model'}"
        chunks = range(0, batch_size, chunk)
        outputs, finals, nfe = [], [], 0
        for number, first in enumerate(chunks):
            part = slice(first, first + chunk)
            count = len(prompts[part])
            cond = c.encode_prompt(prompts[part])
            part_negatives = negatives[part] if negatives else None
            uncond = c.encode_prompt(part_negatives or [""] * count) if uses_cfg(guidance_scale) else None
            if latents is None:
                start = c.initial_latents(count, height, width, seed, generator=noise)
            else:
                start = latents[part].to(c.device, c.dtype)

            def part_progress(done: int, total: int, _number: int = number) -> None:
                if progress is not None:
                    progress(_number * total + done, len(chunks) * total)

            counter = NFECounter(c.unet, count)
            try:
                with nasa_for_call(c.unet, c.encode_prompt, part_negatives, options.get(NASA_OPTION),
                                   options.get(NASA_MODE_OPTION), options.get(NASA_LAYERS_OPTION)):
                    final = self.denoise(start, cond, uncond, steps, guidance_scale, generator, part_progress,
                                         negative_prompt=part_negatives, **options)
            finally:
                nfe = max(nfe, counter.close())
            images = c.decode(require_finite(final, label))
            outputs += c.to_pil(images) if output_type == "pil" else [images]
            finals.append(final)
        latents = torch.cat(finals)
        images = outputs if output_type == "pil" else torch.cat(outputs)
        seconds = time.perf_counter() - started
        metadata = {**self.metadata(), "prompt": prompts[0] if len(set(prompts)) == 1 else prompts,
                    "negative_prompt": negative_prompt, "steps": steps, "guidance_scale": guidance_scale,
                    "seed": seed, "height": height, "width": width, "nfe": nfe,
                    "seconds_per_image": round(seconds / batch_size, 6), **self.extra_metadata(options)}
        return SampleResult(images=images, nfe=nfe, metadata=metadata, latents=latents)

    def check_options(self, options: dict[str, Any]) -> None:
        accepted_options = self.call_options | NASA_OPTIONS  # NASA runs in this shared call for every sampler
        unknown = sorted(set(options) - accepted_options)
        if unknown:
            accepted = ", ".join(sorted(accepted_options))
            raise InputError(f"Unknown option {unknown[0]!r} for {self.method}: the options it accepts are {accepted}")

    def extra_metadata(self, options: dict[str, Any]) -> dict[str, Any]:
        """Method-specific parameters to record (e.g. the preset, eta, NASA alpha)."""
        return {k: v for k, v in options.items() if isinstance(v, (int, float, str, bool))}


class DDIMSampler(TextToImageSampler):
    """Plain multi-step DDIM (η = 0) with classifier-free guidance: the sampler for undistilled models.

    Uses ``timestep_spacing="trailing"`` by default (methods.md §0.3), which is the fair choice for few-step baselines;
    pass ``timestep_spacing="leading"`` for SD's original spacing.
    """

    method = BASE_METHOD
    default_steps = 25
    default_guidance_scale = 5.0
    call_options = frozenset({"timestep_spacing"})  # the scheduler is always DDIM

    def denoise(self, latents, cond, uncond, steps, guidance_scale, generator, progress, **options):
        scheduler = self.make_scheduler(steps, {**options, "scheduler": "DDIMScheduler"})
        for index, t in enumerate(scheduler.timesteps):
            eps = self.predict_eps(latents, t, cond, uncond, guidance_scale)
            latents = scheduler.step(eps, t, latents).prev_sample
            if progress is not None:
                progress(index + 1, steps)
        return latents

    def extra_metadata(self, options):
        return {**super().extra_metadata(options), "scheduler": "DDIMScheduler",
                "timestep_spacing": self.scheduler_choice(options)[1]}


build_ddim_sampler = DDIMSampler.from_model
