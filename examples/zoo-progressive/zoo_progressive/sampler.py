"""The ``progressive`` sampler: deterministic DDIM on the student's trailing timesteps, one UNet call per step.

The student has CFG folded in, so it runs without an unconditional branch; each step is the DDIM jump
``t -> next t`` with the student's noise prediction, and the last step lands on the clean sample.
"""

import torch

from zoo.sdk import (CLEAN, SDComponents, TextToImageSampler, ddim_jump, load_student_components, next_timesteps,
                     resolve_default, set_attention_backend, trailing_timesteps)

STUDENT_FOLDER = "student"


def student_step(unet, latents, t: int, s: int, cond, alphas_cumprod):
    """One student step ``t -> s`` (``s`` may be :data:`zoo.sdk.CLEAN`)."""
    timestep = torch.full((latents.shape[0],), int(t), device=latents.device, dtype=torch.long)
    eps = unet(latents, timestep, encoder_hidden_states=cond).sample
    return ddim_jump(latents, eps, timestep, s, alphas_cumprod)


def student_sample(unet, latents, cond, steps: int, alphas_cumprod, progress=None):
    """Clean latents from initial noise ``latents`` in ``steps`` student steps."""
    timesteps = trailing_timesteps(steps, len(alphas_cumprod))
    for index, (t, s) in enumerate(zip(timesteps, next_timesteps(timesteps))):
        latents = student_step(unet, latents, t, s, cond, alphas_cumprod)
        if progress is not None:
            progress(index + 1, steps)
    return latents


class ProgressiveSampler(TextToImageSampler):
    method = "progressive"
    default_steps = 2
    max_steps = 50
    default_guidance_scale = 0.0  # guidance is distilled into the student: one call per step

    def denoise(self, latents, cond, uncond, steps, guidance_scale, generator, progress, **options):
        unet = self.components.unet
        if uncond is None:
            return student_sample(unet, latents, cond, steps, self.components.alphas_cumprod, progress)
        # Explicit CFG on top of the student (guidance_scale > 1): allowed, as for any eps model, at 2 calls a step.
        timesteps = trailing_timesteps(steps, len(self.components.alphas_cumprod))
        for index, (t, s) in enumerate(zip(timesteps, next_timesteps(timesteps))):
            eps = self.predict_eps(latents, t, cond, uncond, guidance_scale)
            latents = ddim_jump(latents, eps, t, s, self.components.alphas_cumprod)
            if progress is not None:
                progress(index + 1, steps)
        return latents


def build_sampler(model=None, *, device="cpu", dtype=None, attention="auto", **settings):
    """Registry factory. ``model``: an exported ``progressive`` folder (``student/`` + ``zoo.json`` naming its
    ``base_model``), or any diffusers Stable Diffusion folder (its own UNet then plays the student)."""
    resolved = resolve_default(model)
    if (resolved.path / STUDENT_FOLDER).is_dir():
        components = load_student_components(resolved, device, dtype, unet_subfolder=STUDENT_FOLDER)
    else:
        components = SDComponents.from_folder(resolved.path, device=device, dtype=dtype)
    set_attention_backend(components.unet, attention)
    return ProgressiveSampler(components, resolved, **settings)


__all__ = ["CLEAN", "ProgressiveSampler", "build_sampler", "student_sample", "student_step"]
