"""SwiftBrush trainer: variational score distillation of a one-step student (arXiv 2312.05239, Algorithm 1).

Networks (``VinAIResearch/SwiftBrush`` ``train_swiftbrush.py``; methods.md §1(a)):

* student ``f_theta``: a full UNet initialised from the teacher; ``x0 = (z - sigma_T f(z, T, c)) / alpha_T``;
* teacher ``eps_phi`` and LoRA teacher ``eps_psi``: ONE UNet (the teacher's base weights, frozen) with a PEFT LoRA;
  adapters off = teacher, on = LoRA teacher (:class:`zoo.diffusion.teacher.SharedBaseTeacher`).

One step, groups in this order (the runtime's ``every`` gives the update ratio):

``student``
    1. z ~ N(0, I); x0 = f_theta(z)                              (one-step generator at t = T - 1)
    2. t ~ U[20, 981); x_t = alpha_t x0 + sigma_t eps             (noised without gradient)
    3. eps_T = cfg(teacher), eps_L = cfg(LoRA teacher)            (same guidance scale w, no gradient)
    4. g = sigma_t^2 (eps_T - eps_L); loss = 0.5 mse(x0, sg(x0 - g))   (Eq. 5 with w(t) = sigma_t^2)
``lora_teacher``
    5. x0 from the *pre-update* student, detached (cached from step 1 of the same global step)
    6. t ~ U[0, 1000); c -> "" with p = 0.1; loss = mse(alpha_t eps_psi(x_t, t, c), alpha_t eps)

Differences from the reference: ᾱ_T comes from the schedule (0.00466) instead of the hard-coded 0.0047.
"""

from __future__ import annotations

import torch

from zoo.diffusion import schedule
from zoo.diffusion.losses import vsd_loss
from zoo.diffusion.vsd_trainer import OneStepVSDTrainer


class SwiftBrushTrainer(OneStepVSDTrainer):
    """VSD student + LoRA teacher on one shared teacher base, at one fixed guidance scale.

    The generator, the LoRA-teacher update (steps 5-6), validation and export are the shared one-step VSD machinery
    of :class:`zoo.diffusion.vsd_trainer.OneStepVSDTrainer`; SwiftBrush's own part is the student update.
    """

    def student_loss(self, step: int, cond: torch.Tensor, batch=None) -> dict[str, torch.Tensor]:
        cfg = self.config
        uncond = self.encoder.null(cond.shape[0])
        # 1. one-step generation (gradient flows through x0 only)
        x0 = self.generate(cond)
        # 2. t ~ U[t_min, t_max); x_t without gradient
        t = schedule.uniform_timesteps(x0.shape[0], int(cfg.student_t_min), int(cfg.student_t_max), device=self.device)
        x_t = schedule.add_noise(x0.detach(), torch.randn_like(x0), t, self.alphas_cumprod)
        # 3. teacher and LoRA teacher with the same CFG scale
        with torch.no_grad():
            eps_teacher = self.scores.teacher_eps(x_t, t, cond, uncond, float(cfg.guidance_scale))
            eps_lora = self.scores.fake_eps(x_t, t, cond, uncond, float(cfg.guidance_scale))
        # 4. VSD loss, w(t) = sigma_t^2
        loss, g = vsd_loss(x0, eps_teacher, eps_lora, t, self.alphas_cumprod)
        self._cached = (step, x0.detach(), cond)
        return {"loss": loss, "grad_abs": g.abs().mean().detach()}


def build_trainer(config) -> SwiftBrushTrainer:
    return SwiftBrushTrainer(config)
