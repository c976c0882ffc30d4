"""A teacher's multi-step DDIM solve with classifier-free guidance, from per-sample start to per-sample end timesteps.

Progressive distillation (Salimans & Ho, arXiv 2202.00512, Alg. 2) and its guided variant (Meng et al., arXiv
2210.03142 §3.2) train a student to do in one step what the teacher does in several: the target of a student step
``t -> s`` is the teacher's DDIM solve from ``x_t`` to ``x_s`` in ``substeps`` steps. In a batch every sample has its
own ``t`` and ``s``; this module runs the sub-steps of the whole batch together (one UNet call per sub-step, or one
batched call of twice the size with CFG).

The intermediate timesteps split ``t -> s`` evenly: ``t_k = round(t - (t - s) k / n)``, so ``999 -> 499`` in two
sub-steps visits 749, and ``499 -> CLEAN`` visits 249 (:data:`zoo.diffusion.schedule.CLEAN` is ``-1``: the clean end).
"""

from __future__ import annotations

from typing import Callable

import torch

from zoo.diffusion.guidance import cfg, uses_cfg
from zoo.diffusion.schedule import alpha_sigma, ddim_jump

EpsModel = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""``eps(x_t, t, encoder_hidden_states) -> predicted noise``, e.g. ``lambda x, t, c: unet(x, t, c).sample``."""


def substep_timesteps(t: torch.Tensor, s: torch.Tensor, substeps: int) -> list[torch.Tensor]:
    """The ``substeps + 1`` per-sample timesteps from ``t`` to ``s`` (both ``[B]`` long tensors), evenly split."""
    if not isinstance(substeps, int) or substeps < 1:
        raise ValueError(f"substeps={substeps!r} must be a whole number >= 1")
    t, s = torch.as_tensor(t).long(), torch.as_tensor(s).long()
    if bool((s > t).any()):
        raise ValueError("every end timestep s must be at or below its start timestep t")
    span = (t - s).double()
    return [torch.round(t.double() - span * k / substeps).long() for k in range(substeps + 1)]


@torch.no_grad()
def teacher_ddim_solve(eps_model: EpsModel, x_t: torch.Tensor, t, s, cond: torch.Tensor,
                       uncond: torch.Tensor | None, guidance_scale: float, alphas_cumprod: torch.Tensor,
                       substeps: int = 2) -> torch.Tensor:
    """``x_s``: the deterministic DDIM solve (η = 0) of the teacher from ``x_t`` at timesteps ``t`` to ``s``.

    ``t`` and ``s`` are ints or ``[B]`` tensors (``s`` may be :data:`~zoo.diffusion.schedule.CLEAN`). With
    ``uncond`` given and ``guidance_scale > 1`` each sub-step uses classifier-free guidance
    ``eps_u + w (eps_c - eps_u)`` from one call on the doubled batch; otherwise one conditional call.
    """
    batch = x_t.shape[0]
    t = torch.as_tensor(t).long().reshape(-1).expand(batch)
    s = torch.as_tensor(s).long().reshape(-1).expand(batch)
    points = substep_timesteps(t, s, substeps)
    guided = uncond is not None and uses_cfg(guidance_scale)
    x = x_t
    for here, there in zip(points[:-1], points[1:]):
        step = here.to(x.device)
        if guided:
            both = eps_model(torch.cat([x, x]), torch.cat([step, step]), torch.cat([cond, uncond]))
            eps_cond, eps_uncond = both.chunk(2)
            eps = cfg(eps_cond, eps_uncond, guidance_scale)
        else:
            eps = eps_model(x, step, cond)
        # A sub-step that starts at the clean end (t == s == CLEAN) has nothing left to do.
        moved = ddim_jump(x, eps, here.clamp(min=0), there, alphas_cumprod)
        x = torch.where((here < 0).view(-1, *[1] * (x.ndim - 1)).to(x.device), x, moved)
    return x


def ddim_eps_target(x_t: torch.Tensor, x_s: torch.Tensor, t, s, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """The noise prediction that makes a single DDIM step ``t -> s`` from ``x_t`` land exactly on ``x_s``.

    From ``x_s = alpha_s x0 + sigma_s eps`` and ``x_t = alpha_t x0 + sigma_t eps``:
    ``eps = (alpha_t x_s - alpha_s x_t) / (alpha_t sigma_s - alpha_s sigma_t)``; at ``s = CLEAN`` (alpha_s = 1,
    sigma_s = 0) this is ``(x_t - alpha_t x_s) / sigma_t``, the noise that explains ``x_t`` around the clean ``x_s``.
    """
    alpha_t, sigma_t = alpha_sigma(alphas_cumprod, t, x_t)
    alpha_s, sigma_s = alpha_sigma(alphas_cumprod, s, x_t)
    return (alpha_t * x_s - alpha_s * x_t) / (alpha_t * sigma_s - alpha_s * sigma_t)
