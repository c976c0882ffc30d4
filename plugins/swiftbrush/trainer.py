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

import copy
from collections import Counter
from pathlib import Path

import torch

from zoo.diffusion import schedule
from zoo.diffusion.distill_data import (PromptEncoder, PromptSource, drop_captions, load_components, prompt_batches,
                                        save_unet)
from zoo.diffusion.losses import alpha_weighted_eps_loss, vsd_loss
from zoo.diffusion.teacher import SharedBaseTeacher
from zoo.sdk import OptimizerGroup, Trainer


class SwiftBrushTrainer(Trainer):
    """VSD student + LoRA teacher on one shared teacher base."""

    def build(self) -> None:
        cfg = self.config
        self.components = load_components(cfg.teacher, self.device)
        self.alphas_cumprod = self.components.alphas_cumprod
        self.encoder = PromptEncoder(self.components)
        self.prompts = PromptSource(str(cfg.prompts))
        # The student starts as a copy of the teacher (the only second copy of the UNet weights).
        self.student = copy.deepcopy(self.components.unet).requires_grad_(True).train()
        # The LoRA teacher lives on the teacher's own UNet: base weights exist once.
        self.scores = SharedBaseTeacher(self.components.unet, self.alphas_cumprod, adapters=("lora_teacher",),
                                        rank=int(cfg.lora_rank), lora_alpha=float(cfg.lora_alpha),
                                        target_modules=list(cfg.lora_targets))
        self.lora_teacher = self.components.unet
        self._cached: tuple[int, torch.Tensor, torch.Tensor] | None = None
        self.loss_calls: Counter = Counter()

    def trainable_modules(self):
        return {"student": self.student, "lora_teacher": self.lora_teacher}

    def ema_modules(self):
        return {"student": self.student}

    def optimizer_groups(self):
        return [OptimizerGroup("student", self.student.parameters(), self.config.optim.student),
                OptimizerGroup("lora_teacher", self.scores.fake_parameters(), self.config.optim.lora_teacher)]

    def batches(self, seed: int):
        return prompt_batches(self.prompts, int(self.config.train.batch_size), seed)

    # -- the generator ------------------------------------------------------------------------------------------
    def generate(self, cond: torch.Tensor, student=None) -> torch.Tensor:
        """One-step x0 from fresh noise (global torch RNG)."""
        student = student or self.student
        config = self.components.unet.config
        z = torch.randn(cond.shape[0], config.in_channels, config.sample_size, config.sample_size).to(self.device)
        t = int(self.config.generator_timestep)
        eps = student(z, torch.full((z.shape[0],), t, device=self.device), encoder_hidden_states=cond).sample
        return schedule.x0_from_eps(z, eps, t, self.alphas_cumprod)

    # -- losses -------------------------------------------------------------------------------------------------
    def loss(self, group: str, step: int, batch) -> dict[str, torch.Tensor]:
        cond = self.encoder(batch["prompts"])
        self.loss_calls[group] += 1
        if group == "student":
            return self.student_loss(step, cond)
        return self.lora_loss(step, cond)

    def student_loss(self, step: int, cond: torch.Tensor) -> dict[str, torch.Tensor]:
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

    def lora_loss(self, step: int, cond: torch.Tensor) -> dict[str, torch.Tensor]:
        cfg = self.config
        # 5. x0 of the pre-update student (same global step), detached
        if self._cached is not None and self._cached[0] == step:
            _, x0, cond = self._cached
        else:
            with torch.no_grad():
                x0 = self.generate(cond)
        # 6. alpha_t-weighted denoising loss with caption dropout
        t = schedule.uniform_timesteps(x0.shape[0], int(cfg.lora_t_min), int(cfg.lora_t_max), device=self.device)
        noise = torch.randn_like(x0)
        x_t = schedule.add_noise(x0, noise, t, self.alphas_cumprod)
        cond = drop_captions(cond, self.encoder.null(cond.shape[0]), float(cfg.caption_dropout))
        eps = self.scores.fake_eps(x_t, t, cond)
        return {"loss": alpha_weighted_eps_loss(eps, noise, t, self.alphas_cumprod)}

    def validate(self, step: int, out_dir: Path) -> dict[str, float]:
        """Testbed colour / shape accuracy and FD of the (EMA) student, for the training curves."""
        if str(self.config.prompts) != "testbed":
            return {}
        from zoo.diffusion.distill_data import testbed_validation

        with self.ema_weights():
            return testbed_validation(lambda cond: self.generate(cond), self.components, self.encoder)

    # -- export ---------------------------------------------------------------------------------------------------
    def export_manifest(self):
        return {"base_model": str(self.config.teacher),
                "sampler": {"steps": 1, "guidance_scale": 0.0, "timestep": int(self.config.generator_timestep)}}

    def export(self, out_dir: Path, metrics):
        from zoo.train.export import write_export_metadata

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        with self.ema_weights():
            files = [save_unet(self.student, out_dir / "unet")]
        write_export_metadata(self, out_dir, metrics, files=files)
        return out_dir


def build_trainer(config) -> SwiftBrushTrainer:
    return SwiftBrushTrainer(config)
