"""Phased DMD sampler: few trailing-timestep steps, each run by the expert of its SNR phase (arXiv 2510.27684).

At each step ``t_i``: ``eps = expert_k(x, t_i)`` with ``k = phase_of(t_i)``; ``x0 = (x - sigma eps) / alpha``; then
either the deterministic DDIM jump ``x = alpha_next x0 + sigma_next eps`` (default) or, with ``stochastic=True``,
DMD2's re-noising ``x = alpha_next x0 + sigma_next z`` with fresh noise; the last step returns x0. No CFG.

A model folder holds ``experts/phase_<k>/`` diffusers UNet folders and a ``zoo.json`` whose ``sampler`` dict gives
``steps``, ``phase_boundaries`` and ``stochastic``; the VAE and text encoder come from its ``base_model``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from zoo.diffusion import schedule
from zoo.diffusion.student_folder import base_components, base_unet_config, load_unet
from zoo.errors import FileMissingError, InputError
from zoo.t2i import TextToImageSampler, resolve_default

from .experts import ExpertRouter, check_boundaries


class PhasedDMDSampler(TextToImageSampler):
    method = "phased_dmd"
    default_steps = 4
    min_steps = 1
    max_steps = 50
    default_guidance_scale = 0.0
    call_options = frozenset({"stochastic"})  # trailing timesteps fixed by the phases

    def __init__(self, components, model=None, **settings):
        super().__init__(components, model, **settings)
        self.boundaries = [int(b) for b in self.settings.get("phase_boundaries", [])]
        self.stochastic = bool(self.settings.get("stochastic", False))
        self._alphas_cumprod = components.alphas_cumprod

    def timesteps(self, steps: int) -> list[int]:
        timesteps = schedule.trailing_timesteps(steps, int(self.components.scheduler_config.get(
            "num_train_timesteps", 1000)))
        try:
            check_boundaries(timesteps, self.boundaries)
        except ValueError as exc:
            raise InputError(f"steps={steps} does not fit this model's phases: {exc}") from None
        return timesteps

    def denoise(self, latents, cond, uncond, steps, guidance_scale, generator, progress, **options):
        stochastic = bool(options.get("stochastic", self.stochastic))
        timesteps = self.timesteps(steps)
        x = latents
        for index, (t, t_next) in enumerate(zip(timesteps, schedule.next_timesteps(timesteps))):
            # 1. The router sends the call to expert phase_of(t).
            eps = self.predict_eps(x, t, cond, uncond, guidance_scale)
            if t_next == schedule.CLEAN:
                x = schedule.x0_from_eps(x, eps, t, self._alphas_cumprod)
            elif stochastic:
                # 2a. DMD2 multi-step: x0, then re-noise to t_next with fresh noise.
                x0 = schedule.x0_from_eps(x, eps, t, self._alphas_cumprod)
                noise = torch.randn(x.shape, generator=generator, dtype=torch.float32).to(x)
                x = schedule.add_noise(x0, noise, t_next, self._alphas_cumprod)
            else:
                # 2b. Deterministic DDIM jump along the predicted noise.
                x = schedule.ddim_jump(x, eps, t, t_next, self._alphas_cumprod)
            if progress is not None:
                progress(index + 1, steps)
        return x

    def extra_metadata(self, options):
        return {"phase_boundaries": self.boundaries,
                "stochastic": bool(options.get("stochastic", self.stochastic))}


def expert_folders(path: Path) -> list[Path]:
    """``experts/phase_<k>/`` in phase order; a plain model with only ``unet/`` is one expert for every step (the
    DMD2 multi-step sampler)."""
    folders = sorted((path / "experts").glob("phase_*"), key=lambda p: int(p.name.split("_")[-1]))
    if not folders and (path / "unet").is_dir():
        return [path / "unet"]
    if not folders:
        raise FileMissingError(f"{path} has neither experts/phase_<k>/ nor unet/ UNet folders; it is not a "
                               f"Phased DMD model")
    return folders


def build_sampler(model=None, *, device="cpu", dtype=None, attention="auto", **settings):
    """Registry factory: load every phase expert and route through :class:`ExpertRouter`."""
    from zoo.attention import set_attention_backend

    resolved = resolve_default(model)
    dtype = dtype or torch.float32
    base_config, base_label = base_unet_config(resolved)
    experts = [load_unet(folder, device, dtype, base_config, f"{resolved.ref} ({folder.name})", base_label)
               for folder in expert_folders(Path(resolved.path))]
    boundaries = settings.get("phase_boundaries") or (resolved.manifest or {}).get("sampler", {}).get(
        "phase_boundaries", [])
    if len(experts) == 1:
        boundaries = []
    settings["phase_boundaries"] = boundaries
    router = ExpertRouter(experts, boundaries).to(device)
    components = base_components(resolved, device, dtype, unet=router)
    set_attention_backend(router, attention)
    return PhasedDMDSampler(components, resolved, **settings)
