"""The YONOS-SR objectives: x0 regression, scale distillation and decoder fine-tuning.

Paper: Noroozi et al., "You Only Need One Step: Fast Super-Resolution with Stable Diffusion via Scale Distillation",
arXiv 2401.17258. Notation as in :mod:`zoo_plugins.yonos_sr.model`; λ_t = log SNR_t, SNR_t = α_t² / σ_t².

* Eq. (1), the conditional latent-diffusion objective in clean-latent space::

      L(θ) = E_{ε,t} [ w(λ_t) ‖ ẑ_θ(z_t, z_l, λ_t) − z_h ‖² ]

* Eq. (2), scale distillation: teacher φ trained at scale N/2, student θ at N; both see the *same* z_t (same ε, t);
  the teacher's LR latent z_l' comes from the LR at 2/N of the same HR crop::

      L(θ) = E_{ε,t} [ w(λ_t) ‖ ẑ_θ(z_t, z_l, λ_t) − ẑ_φ(z_t, z_l', λ_t) ‖² ]

* Decoder fine-tuning (Sec. 3.2): UNet and encoder frozen; one DDIM step from z_T ~ N(0, I) gives ẑ; the decoder D is
  trained so that D(ẑ) matches the HR image (pixel L1 + MSE here; the paper's exact losses are not known to us).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from zoo.diffusion.schedule import add_noise, alpha_sigma
from zoo_plugins.yonos_sr.model import YonosSRModel, degrade

TRUNCATED_SNR, X0, SNR_PLUS_ONE = "truncated_snr", "x0", "snr_plus_one"


def loss_weight(alphas_cumprod: torch.Tensor, timesteps: torch.Tensor, kind: str, like: torch.Tensor) -> torch.Tensor:
    """w(λ_t) broadcast to ``like``.

    ``truncated_snr``: max(SNR_t, 1) (Salimans & Ho, arXiv 2202.00512, Sec. 4: "truncated SNR weighting");
    ``x0``: 1; ``snr_plus_one``: SNR_t + 1 (makes the x0 loss equal to the v-prediction loss).
    """
    alpha_t, sigma_t = alpha_sigma(alphas_cumprod, timesteps, like)
    if kind == X0:
        return torch.ones_like(alpha_t)
    snr = alpha_t ** 2 / (sigma_t ** 2).clamp(min=1e-12)
    if kind == TRUNCATED_SNR:
        return snr.clamp(min=1.0)
    if kind == SNR_PLUS_ONE:
        return snr + 1.0
    raise ValueError(f"Unknown loss weighting {kind!r}; use truncated_snr, x0 or snr_plus_one")


def weighted_mse(prediction: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """mean over the batch of w · mean-over-elements (ẑ − target)²."""
    per_element = (prediction.float() - target.float()) ** 2
    return (weight.float() * per_element).mean()


def lr_pair(hr: torch.Tensor, scale: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The student's and the teacher's LR images of the same HR batch: at 1/``scale`` and at 2/``scale``."""
    if scale % 2:
        raise ValueError(f"Scale distillation needs an even student scale; got {scale}")
    return degrade(hr, scale), degrade(hr, scale // 2)


def sample_training_inputs(model: YonosSRModel, z_h: torch.Tensor, generator: torch.Generator | None = None):
    """Draw t ~ U{0..T-1} and ε ~ N(0, I); return ``(z_t, t, ε)`` with z_t = α_t z_h + σ_t ε."""
    batch = z_h.shape[0]
    num_timesteps = model.alphas_cumprod.shape[0]
    timesteps = torch.randint(0, num_timesteps, (batch,), generator=generator).to(z_h.device)
    noise = torch.randn(z_h.shape, generator=generator, dtype=z_h.dtype).to(z_h.device)
    return add_noise(z_h, noise, timesteps, model.alphas_cumprod), timesteps, noise


def regression_loss(model: YonosSRModel, hr: torch.Tensor, scale: int, weighting: str = TRUNCATED_SNR,
                    generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Eq. (1) on a batch of HR images in [-1, 1] at ``scale`` (the teacher's stage, and the "direct" baseline).

    1. x_l = bicubic↓``scale``(x_h); z_h = E(x_h), z_l = E(bicubic↑(x_l))  (frozen encoder)
    2. t ~ U, ε ~ N(0, I), z_t = α_t z_h + σ_t ε
    3. loss = w(λ_t) ‖ ẑ_θ(z_t, z_l, t) − z_h ‖²
    """
    with torch.no_grad():
        z_h = model.encode(hr)
        z_l = model.encode_lr(degrade(hr, scale), scale)
    z_t, timesteps, _ = sample_training_inputs(model, z_h, generator)
    z0_pred = model.predict_x0(z_t, z_l, timesteps)
    weight = loss_weight(model.alphas_cumprod, timesteps, weighting, z0_pred)
    loss = weighted_mse(z0_pred, z_h, weight)
    return {"loss": loss, "x0_mse": F.mse_loss(z0_pred.detach().float(), z_h.float())}


def scale_distillation_loss(student: YonosSRModel, teacher: YonosSRModel, hr: torch.Tensor, scale: int,
                            weighting: str = TRUNCATED_SNR,
                            generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Eq. (2): the student at ``scale`` regresses the frozen teacher at ``scale / 2`` on the same z_t and t.

    1. x_l = bicubic↓N(x_h) (student), x_l' = bicubic↓(N/2)(x_h) (teacher), from the same HR crop
    2. z_l = E(↑x_l), z_l' = E(↑x_l'); z_h = E(x_h) (only to build z_t)
    3. t, ε shared: z_t = α_t z_h + σ_t ε
    4. target = ẑ_φ(z_t, z_l', t) under no_grad
    5. loss = w(λ_t) ‖ ẑ_θ(z_t, z_l, t) − target ‖²
    """
    lr_student, lr_teacher = lr_pair(hr, scale)
    with torch.no_grad():
        z_h = student.encode(hr)
        z_l = student.encode_lr(lr_student, scale)
        z_l_teacher = teacher.encode_lr(lr_teacher, scale // 2)
    z_t, timesteps, _ = sample_training_inputs(student, z_h, generator)
    with torch.no_grad():
        target = teacher.predict_x0(z_t, z_l_teacher, timesteps)
    z0_pred = student.predict_x0(z_t, z_l, timesteps)
    weight = loss_weight(student.alphas_cumprod, timesteps, weighting, z0_pred)
    loss = weighted_mse(z0_pred, target, weight)
    return {"loss": loss, "x0_mse_vs_hr": F.mse_loss(z0_pred.detach().float(), z_h.float()),
            "teacher_mse_vs_hr": F.mse_loss(target.float(), z_h.float())}


def one_step_latents(model: YonosSRModel, z_l: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """ẑ from a single DDIM step at the last (trailing) timestep from z_T ~ N(0, I): the x0 prediction."""
    last = model.alphas_cumprod.shape[0] - 1
    z_T = torch.randn(z_l.shape, generator=generator, dtype=z_l.dtype).to(z_l.device)
    timesteps = torch.full((z_l.shape[0],), last, device=z_l.device, dtype=torch.long)
    return model.predict_x0(z_T, z_l, timesteps)


def decoder_loss(model: YonosSRModel, hr: torch.Tensor, scale: int, l2_weight: float = 1.0,
                 generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Decoder fine-tuning: UNet and encoder frozen, one-step latents decoded and compared with the HR pixels.

    1. z_l = E(↑bicubic↓N(x_h)); ẑ = one DDIM step from z_T ~ N(0, I)   (no_grad)
    2. x̂ = D(ẑ); loss = ‖x̂ − x_h‖₁ + l2_weight ‖x̂ − x_h‖²            (only D and post_quant_conv get gradients)
    """
    with torch.no_grad():
        z_l = model.encode_lr(degrade(hr, scale), scale)
        latents = one_step_latents(model, z_l, generator)
    decoded = model.decode(latents)
    l1 = (decoded.float() - hr.float()).abs().mean()
    l2 = ((decoded.float() - hr.float()) ** 2).mean()
    return {"loss": l1 + l2_weight * l2, "l1": l1.detach(), "mse": l2.detach()}


def autoencoder_loss(model: YonosSRModel, hr: torch.Tensor, kl_weight: float = 1e-6) -> dict[str, torch.Tensor]:
    """Testbed VAE training: L1 + MSE reconstruction of the posterior mode plus a small KL term (SD-style)."""
    posterior = model.vae.encode(hr).latent_dist
    reconstruction = model.vae.decode(posterior.mode()).sample
    l1 = (reconstruction - hr).abs().mean()
    l2 = ((reconstruction - hr) ** 2).mean()
    kl = posterior.kl().mean()
    return {"loss": l1 + l2 + kl_weight * kl, "l1": l1.detach(), "mse": l2.detach(), "kl": kl.detach()}


def decoder_parameters(model: YonosSRModel) -> list[torch.nn.Parameter]:
    """The parameters the decoder stage trains: ``vae.decoder`` and ``vae.post_quant_conv``."""
    params = list(model.vae.decoder.parameters())
    if getattr(model.vae, "post_quant_conv", None) is not None:
        params += list(model.vae.post_quant_conv.parameters())
    return params
