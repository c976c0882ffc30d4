"""AGD sampler: one UNet call per step (conditional prompt only), the guidance scale ω fed to the adapters; any
diffusers scheduler. Paper: arXiv 2503.07274 (``agd/sd/sample.py`` of cristianpjensen/agd runs the pipeline with
``guidance_scale=1`` and passes ω to the adapters). ``disable_adapter=True`` falls back to ordinary CFG (2 calls)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from zoo.diffusion.student_folder import require_base_model
from zoo.errors import InputError, WeightsError
from zoo.spec import ResolvedModel
from zoo.t2i import SDComponents, TextToImageSampler

from zoo_plugins.agd.adapters import AGDAdapters

METHOD = "agd"
ADAPTER_FILE = "agd_adapters.safetensors"


class AGDSampler(TextToImageSampler):
    """Adapter-guided sampling. ``guidance_scale`` is ω given to the adapters (CFG is never evaluated)."""

    method = METHOD
    default_steps = 25
    default_guidance_scale = 5.0
    call_options = TextToImageSampler.call_options | {"disable_adapter", "cfg_steps"}

    def __init__(self, components: SDComponents, adapters: AGDAdapters, model: ResolvedModel | None = None,
                 **settings: Any) -> None:
        super().__init__(components, model, **settings)
        self.adapters = adapters.to(device=components.device, dtype=components.dtype).eval().requires_grad_(False)
        self.adapters.attach(components.unet)

    def denoise(self, latents, cond, uncond, steps, guidance_scale, generator, progress, **options):
        scheduler = self.make_scheduler(steps, options)
        latents = latents * scheduler.init_noise_sigma
        use_cfg = bool(options.get("disable_adapter"))
        cfg_steps = cfg_step_indices(options.get("cfg_steps"), len(scheduler.timesteps))
        if (use_cfg or cfg_steps) and uncond is None:
            uncond = self.components.encode_prompt([""] * latents.shape[0])
        self.adapters.set_guidance(float(guidance_scale))
        self.adapters.enabled = not use_cfg
        try:
            with self.adapters.sampling_loop(self.components.unet, scheduler.timesteps, cond):
                for index, t in enumerate(scheduler.timesteps):
                    model_input = scheduler.scale_model_input(latents, t)
                    if use_cfg:
                        eps = self.predict_eps(model_input, t, cond, uncond, guidance_scale)
                    elif index in cfg_steps:  # the teacher's CFG at ω here: the base model, two calls
                        with self.adapters.disabled():
                            eps = self.predict_eps(model_input, t, cond, uncond, guidance_scale)
                    else:
                        self.adapters.at_step(index)  # this step's tokens, folded ahead of the loop
                        eps = self.predict_eps(model_input, t, cond, None, 1.0)  # ONE call: adapters supply guidance
                    step_kwargs = {"generator": generator} if "generator" in scheduler.step.__code__.co_varnames else {}
                    latents = scheduler.step(eps, t, latents, **step_kwargs).prev_sample
                    if progress is not None:
                        progress(index + 1, steps)
        finally:
            self.adapters.enabled = True
        return latents

    def extra_metadata(self, options):
        extra = {"scheduler": self.scheduler_choice(options)[0],
                 "adapters": not options.get("disable_adapter", False)}
        if options.get("cfg_steps") is not None:
            extra["cfg_steps"] = list(options["cfg_steps"])
        return extra


def cfg_step_indices(cfg_steps: Any, steps: int) -> frozenset[int]:
    """The step indices of a ``cfg_steps=(start, stop)`` option (None: none) at which the sampler uses true CFG."""
    if cfg_steps is None:
        return frozenset()
    try:
        start, stop = (int(v) for v in cfg_steps)
    except (TypeError, ValueError):
        raise InputError(f"cfg_steps={cfg_steps!r}: give (start, stop) step indices, e.g. (0, {steps // 3})") from None
    if not 0 <= start <= stop <= steps:
        raise InputError(f"cfg_steps={cfg_steps!r} is outside the {steps} steps: use 0 <= start <= stop <= {steps}")
    return frozenset(range(start, stop))


def load_adapters(model: ResolvedModel) -> AGDAdapters:
    from safetensors.torch import load_file

    manifest = dict(model.manifest or {})
    config = manifest.get("adapters")
    file = model.file(manifest.get("adapter_file") or ADAPTER_FILE, "adapter file")
    if not isinstance(config, dict) or not file.is_file():
        raise WeightsError(f"{model.ref} is not an AGD model: it needs zoo.json 'adapters' settings and {file.name}")
    adapters = AGDAdapters.from_config(config)
    try:
        adapters.load_state_dict(load_file(str(file)), strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"{file.name} does not match its adapter config ({str(exc).splitlines()[0][:120]})") from None
    return adapters


def build_sampler(model: ResolvedModel | str | Path | None = None, *, device: str = "cpu",
                  dtype: torch.dtype | None = None, attention: str = "auto", base_model: str | None = None,
                  **settings: Any) -> AGDSampler:
    """Registry factory: an AGD model folder (``zoo.json`` with ``base_model`` and ``adapters``)."""
    from zoo.attention import set_attention_backend
    from zoo.hub import resolve_model

    if model is None:
        raise InputError("AGD needs a model: a folder with trained adapters (zoo train agd exports one)")
    resolved = model if isinstance(model, ResolvedModel) else resolve_model(str(model))
    manifest = dict(resolved.manifest or {})
    if manifest.get("method") != METHOD:  # a plain base model: identity adapters = its conditional prediction
        import warnings

        warnings.warn(f"{resolved.ref} has no trained AGD adapters; sampling it with freshly initialised (identity) "
                      f"adapters, i.e. without guidance", stacklevel=2)
        components = SDComponents.from_folder(resolved.path, device=device, dtype=dtype)
        set_attention_backend(components.unet, attention)
        adapters = AGDAdapters.for_unet(components.unet, hidden_dim=int(settings.pop("hidden_dim", 64)))
        return AGDSampler(components, adapters, resolved, **settings)
    base = require_base_model(resolved, base_model)
    components = SDComponents.from_folder(base.path, device=device, dtype=dtype)
    set_attention_backend(components.unet, attention)
    return AGDSampler(components, load_adapters(resolved), resolved, **settings)
