"""Score matching within a subinterval (Phased DMD, arXiv 2510.27684 §3.3, Eq. 11/13).

A phase-k fake score never sees clean data: it is trained on generator samples ``x_s`` at the phase end ``s`` and
noised further, ``x_t = alpha_{t|s} x_s + sigma_{t|s} eps`` (t > s). Regressing the naive target ``eps`` (as if
``x_s`` were clean) is biased. The unbiased targets follow from denoising score matching on ``q(x_t | x_s)``:
``grad log p_t(x_t) = E[-eps / sigma_{t|s} | x_t]``, so

* DDPM epsilon parameterisation (this zoo's UNets):   ``eps_target = (sigma_t / sigma_{t|s}) eps``;
* flow matching (the paper, x_t = (1-t) x0 + t eps):   ``v_target = ((a_s^2 s_t + a_t s_s^2) / (a_s^2 s_{t|s})) eps
  - x_s / a_s`` with ``a = 1 - time``, ``s = time`` (Eq. 13; LightX2V ``phased_velocity_target``).

Both reduce to the ordinary targets (``eps``; ``eps - x0``) when ``s`` is the clean end.
"""

from __future__ import annotations

import torch

from zoo.diffusion.schedule import alpha_sigma, conditional_alpha_sigma


def subinterval_eps_target(noise: torch.Tensor, s, t, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Unbiased epsilon target ``(sigma_t / sigma_{t|s}) noise`` for ``x_t = alpha_{t|s} x_s + sigma_{t|s} noise``."""
    _, sigma_t = alpha_sigma(alphas_cumprod, t, noise)
    _, sigma_ts = conditional_alpha_sigma(alphas_cumprod, s, t, noise)
    return sigma_t / sigma_ts * noise


def subinterval_loss(eps_prediction: torch.Tensor, noise: torch.Tensor, s, t,
                     alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """``mean(((sigma_{t|s} / sigma_t) eps_pred - noise)^2)``: the subinterval regression with the weight
    ``(sigma_{t|s} / sigma_t)^2 <= 1``, which keeps it bounded as t -> s (the paper clamps instead)."""
    _, sigma_t = alpha_sigma(alphas_cumprod, t, noise)
    _, sigma_ts = conditional_alpha_sigma(alphas_cumprod, s, t, noise)
    return ((sigma_ts / sigma_t) * eps_prediction.float() - noise.float()).pow(2).mean()


def flow_velocity_target(x_s: torch.Tensor, noise: torch.Tensor, s: float, t: float) -> torch.Tensor:
    """Paper Eq. 13 in flow-matching time (``alpha = 1 - time``, ``sigma = time``, ``0 <= s < t <= 1``)."""
    alpha_s, sigma_s, alpha_t, sigma_t = 1.0 - s, s, 1.0 - t, t
    alpha_ts = alpha_t / alpha_s
    sigma_ts = (sigma_t ** 2 - alpha_ts ** 2 * sigma_s ** 2) ** 0.5
    coefficient = (alpha_s ** 2 * sigma_t + alpha_t * sigma_s ** 2) / (alpha_s ** 2 * sigma_ts)
    return coefficient * noise - x_s / alpha_s


def flow_forward_from(x_s: torch.Tensor, noise: torch.Tensor, s: float, t: float) -> torch.Tensor:
    """``x_t = alpha_{t|s} x_s + sigma_{t|s} noise`` in flow-matching time."""
    alpha_ts = (1.0 - t) / (1.0 - s)
    sigma_ts = (t ** 2 - alpha_ts ** 2 * s ** 2) ** 0.5
    return alpha_ts * x_s + sigma_ts * noise
