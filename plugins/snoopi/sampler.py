"""SNOOPI sampler: the one-step student (one UNet call at t = T-1, x0 formula, no CFG) with NASA negative prompts.

``sampler(prompt, negative_prompt="...", nasa_alpha=0.5)``: NASA (SNOOPI arXiv 2412.02687 Eq. 7-9) subtracts the
negative prompt's cross-attention output inside the single UNet call. Without ``nasa_alpha`` the model's
recommended strength from its ``zoo.json`` ``sampler`` settings is used when a negative prompt is given.
"""

from __future__ import annotations

import torch

from zoo.diffusion.schedule import x0_from_eps
from zoo.diffusion.student_folder import load_student_components
from zoo.negative_attention import NASA_OPTION
from zoo.t2i import TextToImageSampler, resolve_default


class SnoopiSampler(TextToImageSampler):
    method = "snoopi"
    default_steps = 1
    min_steps = 1
    max_steps = 1
    default_guidance_scale = 0.0

    def __init__(self, components, model=None, **settings):
        super().__init__(components, model, **settings)
        self.timestep = int(self.settings.get("timestep", components.scheduler_config.get("num_train_timesteps",
                                                                                          1000) - 1))
        self.default_nasa_alpha = float(self.settings.get(NASA_OPTION, 0.5))
        self._alphas_cumprod = components.alphas_cumprod

    def __call__(self, prompt, negative_prompt=None, *args, **options):
        if negative_prompt is not None and options.get(NASA_OPTION) is None:
            options[NASA_OPTION] = self.default_nasa_alpha
        return super().__call__(prompt, negative_prompt, *args, **options)

    def denoise(self, latents, cond, uncond, steps, guidance_scale, generator, progress, **options):
        # 1. One UNet call at t = T-1 (NASA, when on, acts inside it).  2. x0 = (z - sigma_T eps) / alpha_T.
        eps = self.predict_eps(latents, self.timestep, cond, uncond, guidance_scale)
        x0 = x0_from_eps(latents, eps, self.timestep, self._alphas_cumprod)
        if progress is not None:
            progress(1, 1)
        return x0


def build_sampler(model=None, *, device="cpu", dtype=None, attention="auto", **settings):
    from zoo.attention import set_attention_backend

    resolved = resolve_default(model)
    components = load_student_components(resolved, device, dtype or torch.float32)
    set_attention_backend(components.unet, attention)
    return SnoopiSampler(components, resolved, **settings)
