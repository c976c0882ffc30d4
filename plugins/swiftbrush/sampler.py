"""SwiftBrush sampler: one UNet evaluation at t = T-1 on pure noise, then the x0 formula (no CFG).

SwiftBrush (arXiv 2312.05239) ``infer.py``: ``eps = unet(z, 999, c)``; ``x0 = (z - sqrt(1 - ᾱ_T) eps) / sqrt(ᾱ_T)``;
``vae.decode(x0 / scaling_factor)``. ᾱ_T is read from the model's schedule (SwiftBrush hard-codes 0.0047 ≈ ᾱ_999 of
SD; pass ``alpha_prod_t=0.0047`` to reproduce it exactly). Runs the public full-pipeline layout
(``thuanz123/swiftbrush``) and the zoo's student folders (``unet/`` + ``zoo.json`` naming the base model).
"""

from __future__ import annotations

import torch

from zoo.diffusion.schedule import x0_from_eps
from zoo.diffusion.student_folder import load_student_components
from zoo.t2i import TextToImageSampler, resolve_default


class SwiftBrushSampler(TextToImageSampler):
    method = "swiftbrush"
    default_steps = 1
    min_steps = 1
    max_steps = 1
    default_guidance_scale = 0.0

    def __init__(self, components, model=None, **settings):
        super().__init__(components, model, **settings)
        self.timestep = int(self.settings.get("timestep", components.scheduler_config.get("num_train_timesteps",
                                                                                          1000) - 1))
        table = components.alphas_cumprod.clone()
        if self.settings.get("alpha_prod_t") is not None:
            table[self.timestep] = float(self.settings["alpha_prod_t"])
        self._alphas_cumprod = table

    def denoise(self, latents, cond, uncond, steps, guidance_scale, generator, progress, **options):
        # 1. One UNet call on pure noise at t = T-1 (CFG only if the caller insists on guidance_scale > 1).
        eps = self.predict_eps(latents, self.timestep, cond, uncond, guidance_scale)
        # 2. x0 = (z - sigma_T eps) / alpha_T  (SwiftBrush predict_original).
        x0 = x0_from_eps(latents, eps, self.timestep, self._alphas_cumprod)
        if progress is not None:
            progress(1, 1)
        return x0

    def extra_metadata(self, options):
        return {**super().extra_metadata(options), "timestep": self.timestep}


def build_sampler(model=None, *, device="cpu", dtype=None, attention="auto", **settings):
    """Registry factory: a SwiftBrush sampler for a full pipeline folder or a student folder."""
    from zoo.attention import set_attention_backend

    resolved = resolve_default(model)
    components = load_student_components(resolved, device, dtype or torch.float32)
    set_attention_backend(components.unet, attention)
    return SwiftBrushSampler(components, resolved, **settings)
