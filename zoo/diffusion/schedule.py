"""Discrete variance-preserving (DDPM) schedule helpers shared by every distillation method.

Notation (methods.md §0.1; DDPM, Ho et al., arXiv 2006.11239; DDIM, Song et al., arXiv 2010.02502)::

    alphas_cumprod[t] = ᾱ_t                t in {0, ..., T-1}
    alpha_t = sqrt(ᾱ_t)                    signal scale
    sigma_t = sqrt(1 - ᾱ_t)                noise scale
    x_t     = alpha_t x0 + sigma_t eps     forward process (= diffusers ``DDPMScheduler.add_noise``)
    v       = alpha_t eps - sigma_t x0     v-prediction target (Salimans & Ho, arXiv 2202.00512)

A timestep of ``-1`` (:data:`CLEAN`) means "the clean end of the chain": ᾱ = 1, so ``alpha = 1`` and ``sigma = 0``.
This lets DDIM jumps land on x0 (``ddim_jump(x_t, eps, t, CLEAN)``) without special cases.

Every function takes ``alphas_cumprod`` explicitly (a 1-D tensor, e.g. ``SDComponents.alphas_cumprod`` or
:func:`sd_alphas_cumprod`) and timesteps as an int, a 0-d tensor or a ``[B]`` tensor; coefficients are gathered in
float64 and broadcast to the sample's shape and dtype.
"""

from __future__ import annotations

from typing import Sequence

import torch

CLEAN = -1
"""Pseudo-timestep of clean data (ᾱ = 1)."""

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


def sd_alphas_cumprod(num_train_timesteps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012,
                      beta_schedule: str = "scaled_linear") -> torch.Tensor:
    """ᾱ_t (float64) of Stable Diffusion's training schedule (``scaled_linear``: betas linear in sqrt space).

    With the defaults ᾱ_999 ≈ 0.00466 (SwiftBrush hard-codes 0.0047).
    """
    if beta_schedule == "scaled_linear":
        betas = torch.linspace(beta_start ** 0.5, beta_end ** 0.5, num_train_timesteps, dtype=torch.float64) ** 2
    elif beta_schedule == "linear":
        betas = torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float64)
    else:
        raise ValueError(f"Unknown beta_schedule {beta_schedule!r}; use 'scaled_linear' or 'linear'")
    return torch.cumprod(1.0 - betas, dim=0)


def _abar(alphas_cumprod: torch.Tensor, t) -> torch.Tensor:
    """ᾱ at timestep(s) ``t`` in float64; ``t == CLEAN`` gives 1."""
    table = alphas_cumprod.detach().to(device="cpu", dtype=torch.float64)
    steps = torch.as_tensor(t).detach().to(device="cpu").long()
    clean = steps < 0
    values = table[steps.clamp(min=0)]
    return torch.where(clean, torch.ones_like(values), values)


def _broadcast(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Shape ``values`` ([], [1] or [B]) to broadcast against ``like`` ([B, ...]) on its device and dtype."""
    values = values.reshape(-1) if values.ndim else values.reshape(1)
    values = values.reshape(values.shape[0], *([1] * (like.ndim - 1)))
    return values.to(device=like.device, dtype=like.dtype)


def alpha_sigma(alphas_cumprod: torch.Tensor, t, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(alpha_t, sigma_t) = (sqrt(ᾱ_t), sqrt(1 - ᾱ_t))`` broadcast to ``like``."""
    abar = _abar(alphas_cumprod, t)
    return _broadcast(abar.sqrt(), like), _broadcast((1.0 - abar).clamp(min=0).sqrt(), like)


def add_noise(x0: torch.Tensor, noise: torch.Tensor, t, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Forward process ``x_t = alpha_t x0 + sigma_t noise`` (matches ``DDPMScheduler.add_noise``)."""
    alpha_t, sigma_t = alpha_sigma(alphas_cumprod, t, x0)
    return alpha_t * x0 + sigma_t * noise


def x0_from_eps(x_t: torch.Tensor, eps: torch.Tensor, t, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """``x0 = (x_t - sigma_t eps) / alpha_t`` (DMD2 ``get_x0_from_noise``, SwiftBrush ``predict_original``)."""
    alpha_t, sigma_t = alpha_sigma(alphas_cumprod, t, x_t)
    return (x_t - sigma_t * eps) / alpha_t


def eps_from_x0(x_t: torch.Tensor, x0: torch.Tensor, t, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """``eps = (x_t - alpha_t x0) / sigma_t`` (undefined at the clean end, where sigma = 0)."""
    alpha_t, sigma_t = alpha_sigma(alphas_cumprod, t, x_t)
    return (x_t - alpha_t * x0) / sigma_t


def v_from_eps_x0(eps: torch.Tensor, x0: torch.Tensor, t, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """``v = alpha_t eps - sigma_t x0``."""
    alpha_t, sigma_t = alpha_sigma(alphas_cumprod, t, eps)
    return alpha_t * eps - sigma_t * x0


def x0_eps_from_v(x_t: torch.Tensor, v: torch.Tensor, t, alphas_cumprod: torch.Tensor):
    """``(x0, eps) = (alpha_t x_t - sigma_t v, sigma_t x_t + alpha_t v)`` for v-prediction models."""
    alpha_t, sigma_t = alpha_sigma(alphas_cumprod, t, x_t)
    return alpha_t * x_t - sigma_t * v, sigma_t * x_t + alpha_t * v


def x0_eps_from_output(model_output: torch.Tensor, x_t: torch.Tensor, t, alphas_cumprod: torch.Tensor,
                       prediction_type: str = "epsilon") -> tuple[torch.Tensor, torch.Tensor]:
    """``(x0_hat, eps_hat)`` from a UNet output of the given ``prediction_type`` (diffusers' names)."""
    if prediction_type == "epsilon":
        return x0_from_eps(x_t, model_output, t, alphas_cumprod), model_output
    if prediction_type == "v_prediction":
        return x0_eps_from_v(x_t, model_output, t, alphas_cumprod)
    if prediction_type == "sample":
        return model_output, eps_from_x0(x_t, model_output, t, alphas_cumprod)
    raise ValueError(f"Unknown prediction_type {prediction_type!r}; use one of {', '.join(PREDICTION_TYPES)}")


def ddim_jump(x_t: torch.Tensor, eps: torch.Tensor, t, s, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Deterministic DDIM step (η = 0) from timestep ``t`` to ``s`` along the predicted noise ``eps``.

    1. ``x0_hat = (x_t - sigma_t eps) / alpha_t``           (DDIM Eq. 9, "predicted x0")
    2. ``x_s = alpha_s x0_hat + sigma_s eps``               (DDIM Eq. 12 with sigma = 0)

    ``s == t`` returns ``x_t``; ``s == CLEAN`` returns ``x0_hat``.
    """
    alpha_t, sigma_t = alpha_sigma(alphas_cumprod, t, x_t)
    alpha_s, sigma_s = alpha_sigma(alphas_cumprod, s, x_t)
    x0_hat = (x_t - sigma_t * eps) / alpha_t
    return alpha_s * x0_hat + sigma_s * eps


def conditional_alpha_sigma(alphas_cumprod: torch.Tensor, s, t, like: torch.Tensor):
    """Transition coefficients of ``q(x_t | x_s)`` for ``t >= s``: ``alpha_{t|s} = alpha_t / alpha_s`` and
    ``sigma_{t|s} = sqrt(sigma_t^2 - alpha_{t|s}^2 sigma_s^2)`` (Kingma et al. VDM, arXiv 2107.00630, Eq. 2-3)."""
    abar_s = _abar(alphas_cumprod, s)
    abar_t = _abar(alphas_cumprod, t)
    ratio = abar_t / abar_s  # alpha_{t|s}^2
    var = ((1.0 - abar_t) - ratio * (1.0 - abar_s)).clamp(min=0)
    return _broadcast(ratio.sqrt(), like), _broadcast(var.sqrt(), like)


def add_noise_from(x_s: torch.Tensor, noise: torch.Tensor, s, t, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Diffuse an intermediate sample further: ``x_t = alpha_{t|s} x_s + sigma_{t|s} noise`` (``t >= s``)."""
    alpha_ts, sigma_ts = conditional_alpha_sigma(alphas_cumprod, s, t, x_s)
    return alpha_ts * x_s + sigma_ts * noise


def trailing_timesteps(num_steps: int, num_train_timesteps: int = 1000) -> list[int]:
    """diffusers' ``timestep_spacing="trailing"`` set: ``round(arange(T, 0, -T/N)) - 1``.

    N=1 → [999]; N=2 → [999, 499]; N=4 → [999, 749, 499, 249] (methods.md §0.3).
    """
    if not isinstance(num_steps, int) or not 1 <= num_steps <= num_train_timesteps:
        raise ValueError(f"num_steps={num_steps!r} must be an integer in 1..{num_train_timesteps}")
    step = num_train_timesteps / num_steps
    return [int(round(num_train_timesteps - i * step)) - 1 for i in range(num_steps)]


def uniform_timesteps(batch_size: int, low: int, high: int, generator: torch.Generator | None = None,
                      device: torch.device | str = "cpu") -> torch.Tensor:
    """``batch_size`` integer timesteps drawn uniformly from ``[low, high)`` (e.g. SwiftBrush's [20, 981))."""
    if not 0 <= low < high:
        raise ValueError(f"Empty timestep range [{low}, {high})")
    return torch.randint(low, high, (batch_size,), generator=generator, device="cpu").to(device)


def next_timesteps(timesteps: Sequence[int]) -> list[int]:
    """The timestep each step of a descending schedule lands on (the next one, then :data:`CLEAN`)."""
    timesteps = [int(t) for t in timesteps]
    return timesteps[1:] + [CLEAN]
