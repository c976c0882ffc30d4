"""The one-step sampler shared by one-step students (SwiftBrush arXiv 2312.05239, SNOOPI arXiv 2412.02687, DMD-style
1-step generators): one UNet evaluation at ``t = T-1`` on pure noise, then the x0 formula (no CFG by default).

``eps = unet(z, T-1, c)``; ``x0 = (z - sqrt(1 - ᾱ_T) eps) / sqrt(ᾱ_T)`` (SwiftBrush ``infer.py`` ``predict_original``).
ᾱ_T is read from the model's schedule; ``alpha_prod_t=0.0047`` reproduces SwiftBrush's hard-coded value, and
``timestep`` changes the timestep the student is told. Works on full pipeline folders and on the zoo's student
folders (``unet/`` + ``zoo.json`` naming the base model).
"""

from __future__ import annotations

import torch

from zoo.diffusion.schedule import x0_from_eps
from zoo.diffusion.student_folder import load_student_components
from zoo.t2i import TextToImageSampler, resolve_default


class OneStepSampler(TextToImageSampler):
    """One UNet call at ``timestep`` (default T-1), then x0. Subclasses set ``method``."""

    default_steps = 1
    min_steps = 1
    max_steps = 1
    default_guidance_scale = 0.0
    call_options = frozenset()  # no scheduler: one call at a fixed timestep

    def __init__(self, components, model=None, **settings):
        super().__init__(components, model, **settings)
        last = components.scheduler_config.get("num_train_timesteps", 1000) - 1
        self.timestep = int(self.settings.get("timestep", last))
        table = components.alphas_cumprod.clone()
        if self.settings.get("alpha_prod_t") is not None:
            table[self.timestep] = float(self.settings["alpha_prod_t"])
        self._alphas_cumprod = table

    def denoise(self, latents, cond, uncond, steps, guidance_scale, generator, progress, **options):
        # 1. One UNet call on pure noise at t = T-1 (CFG only if the caller insists on guidance_scale > 1;
        #    NASA, when on, acts inside this call).
        eps = self.predict_eps(latents, self.timestep, cond, uncond, guidance_scale)
        # 2. x0 = (z - sigma_T eps) / alpha_T  (SwiftBrush predict_original).
        x0 = x0_from_eps(latents, eps, self.timestep, self._alphas_cumprod)
        if progress is not None:
            progress(1, 1)
        return x0

    def extra_metadata(self, options):
        return {**super().extra_metadata(options), "timestep": self.timestep}

    @classmethod
    def from_model(cls, model=None, *, device="cpu", dtype=None, attention="auto", **settings):
        """Registry factory: the sampler for a full pipeline folder or a student folder."""
        from zoo.attention import set_attention_backend

        resolved = resolve_default(model)
        components = load_student_components(resolved, device, dtype or torch.float32)
        set_attention_backend(components.unet, attention)
        return cls(components, resolved, **settings)
