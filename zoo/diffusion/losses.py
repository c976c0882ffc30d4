"""Score-distillation losses shared by SwiftBrush / SNOOPI (VSD) and DMD2 / Phased DMD (distribution matching).

Both losses use the same "target trick": for a generator sample ``x`` and a per-element gradient ``g`` computed without
autograd, ``loss = 0.5 * mean((x - stopgrad(x - g))^2)`` has ``d loss / d x = g / x.numel()``, so back-propagating it
through the generator applies exactly ``g`` (up to the mean's constant) to the generator's parameters. The loss *value*
is ``0.5 * mean(g^2)`` and is not a convergence signal (methods.md §1(f)).

Notation (methods.md §0): ``alpha_t = sqrt(ᾱ_t)``, ``sigma_t = sqrt(1 - ᾱ_t)``; ``eps_*`` are epsilon predictions at
the noised sample ``x_t = alpha_t x + sigma_t eps``; ``x0_*`` the matching clean-sample estimates.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from zoo.diffusion.schedule import alpha_sigma


def target_trick_loss(x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """``0.5 * mse(x, stopgrad(x - grad))``: its gradient w.r.t. ``x`` is ``grad / x.numel()``."""
    grad = torch.nan_to_num(grad.detach().float())
    target = (x.detach().float() - grad)
    return 0.5 * F.mse_loss(x.float(), target, reduction="mean")


def vsd_gradient(eps_teacher: torch.Tensor, eps_fake: torch.Tensor, t, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """SwiftBrush's variational-score-distillation gradient ``g = w(t) (eps_teacher - eps_fake)`` with
    ``w(t) = sigma_t^2 = 1 - ᾱ_t`` (SwiftBrush, arXiv 2312.05239, Eq. 5; ProlificDreamer, arXiv 2305.16213, Eq. 9).

    ``eps_teacher`` and ``eps_fake`` must be guided with the *same* scale (SNOOPI, arXiv 2412.02687, §4.1).
    """
    _, sigma_t = alpha_sigma(alphas_cumprod, t, eps_teacher)
    return torch.nan_to_num((sigma_t ** 2) * (eps_teacher.float() - eps_fake.float()))


def vsd_loss(x0: torch.Tensor, eps_teacher: torch.Tensor, eps_fake: torch.Tensor, t,
             alphas_cumprod: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loss, g)``: the VSD student loss on the generator output ``x0`` and its per-element gradient ``g``.

    1. ``g = sigma_t^2 (eps_teacher - eps_fake)``            (SwiftBrush Eq. 5, w(t) = sigma_t^2)
    2. ``loss = 0.5 * mse(x0, stopgrad(x0 - g))``            (so d loss / d x0 = g / numel)
    """
    g = vsd_gradient(eps_teacher, eps_fake, t, alphas_cumprod)
    return target_trick_loss(x0, g), g


def dmd_gradient(x: torch.Tensor, x0_real: torch.Tensor, x0_fake: torch.Tensor, x0_reference: torch.Tensor | None = None,
                 norm_clip_min: float = 0.0) -> torch.Tensor:
    """DMD2's normalised distribution-matching gradient (DMD, arXiv 2311.18828, Eq. 7-8; DMD2, arXiv 2405.14867).

    1. ``p_real = x_ref - x0_real``, ``p_fake = x_ref - x0_fake``     (``x_ref`` = ``x0_reference`` or ``x``)
    2. ``grad = (p_real - p_fake) / mean_CHW |p_real|``              (per-sample normalisation, nan_to_num)
       ``= (x0_fake - x0_real) / mean_CHW |x_ref - x0_real|``
    ``norm_clip_min`` floors the normaliser (Phased DMD's reference code uses 1e-4).
    """
    reference = (x if x0_reference is None else x0_reference).detach().float()
    p_real = reference - x0_real.float()
    p_fake = reference - x0_fake.float()
    dims = tuple(range(1, p_real.ndim))
    normaliser = p_real.abs().mean(dim=dims, keepdim=True)
    if norm_clip_min > 0:
        normaliser = normaliser.clamp(min=norm_clip_min)
    return torch.nan_to_num((p_real - p_fake) / normaliser)


def dmd_loss(x: torch.Tensor, x0_real: torch.Tensor, x0_fake: torch.Tensor, x0_reference: torch.Tensor | None = None,
             norm_clip_min: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loss, grad)``: DMD2's generator distribution-matching loss ``0.5 * mse(x, stopgrad(x - grad))``.

    ``x`` is the generator output the gradient is applied to (x0 for one-step generators, the phase-boundary sample
    x_{t_k} for Phased DMD); both estimates ``x0_real`` (teacher with CFG) and ``x0_fake`` (fake score, no CFG) are
    computed from the same noised sample without gradients.
    """
    grad = dmd_gradient(x, x0_real, x0_fake, x0_reference, norm_clip_min)
    return target_trick_loss(x, grad), grad


def denoising_loss(prediction: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """``mean(weight * (prediction - target)^2)``: the fake-score (LoRA teacher) regression loss."""
    squared = (prediction.float() - target.float()) ** 2
    if weight is not None:
        squared = weight.float() * squared
    return squared.mean()


def alpha_weighted_eps_loss(eps_prediction: torch.Tensor, noise: torch.Tensor, t,
                            alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """SwiftBrush's LoRA-teacher loss ``mse(alpha_t * eps_pred, alpha_t * noise)`` = ᾱ_t-weighted epsilon MSE
    (``VinAIResearch/SwiftBrush`` ``train_swiftbrush.py``)."""
    alpha_t, _ = alpha_sigma(alphas_cumprod, t, eps_prediction)
    return denoising_loss(eps_prediction, noise, weight=alpha_t.float() ** 2)
