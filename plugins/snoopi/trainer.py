"""SNOOPI trainer: Proper-Guidance SwiftBrush (PG-SB) with optional NASA-T (arXiv 2412.02687 §4.1, §5.3).

The same VSD objective as SwiftBrush (arXiv 2312.05239) with two changes:

* PG-SB (§4.1, Tab. 2): the CFG scale inside VSD is random per sample, ``kappa ~ U(kappa_min, kappa_max)``, and the
  SAME kappa tensor guides the teacher and the LoRA teacher;
* NASA-T (§5.3, Tab. 5): the teacher's CFG uses a negative prompt instead of the empty prompt (Eq. 5), the LoRA
  teacher keeps the empty prompt, and the student runs NASA attention with ``alpha ~ U(0, 1)`` per sample.

One step (groups in order):

``student``
    1. z ~ N(0, I); x0 = f_theta(z) (under NASA with the negative prompt when NASA-T is on)
    2. kappa ~ U(kappa_min, kappa_max) per sample; t ~ U[20, 981); x_t = alpha_t x0 + sigma_t eps
    3. eps_T = cfg(teacher(c), teacher(neg or ""), kappa); eps_L = cfg(lora(c), lora(""), kappa)
    4. g = sigma_t^2 (eps_T - eps_L); loss = 0.5 mse(x0, sg(x0 - g))
``lora_teacher``
    5. the pre-update x0 (detached); t ~ U[0, 1000); caption dropout 0.1; alpha_t-weighted epsilon MSE
"""

from __future__ import annotations

import numpy as np
import torch

from zoo.diffusion import schedule
from zoo.diffusion.losses import vsd_loss
from zoo.diffusion.vsd_trainer import OneStepVSDTrainer
from zoo.errors import ConfigError

from .nasa import negative_attention, sample_nasa_alpha


def sample_kappa(batch_size: int, kappa_min: float, kappa_max: float, device="cpu") -> torch.Tensor:
    """PG-SB guidance scales ``kappa ~ U(kappa_min, kappa_max)``, one per sample (global torch RNG).

    A degenerate range draws nothing, so ``kappa_min == kappa_max == w`` reproduces SwiftBrush's run exactly.
    """
    if kappa_min == kappa_max:
        return torch.full((batch_size,), float(kappa_min), device=device)
    return (kappa_min + (kappa_max - kappa_min) * torch.rand(batch_size)).to(device)


class SnoopiTrainer(OneStepVSDTrainer):
    """PG-SB: VSD with one random guidance scale per sample shared by both teachers; NASA-T optional.

    The generator, the LoRA-teacher update, validation and export are the shared one-step VSD machinery of
    :class:`zoo.diffusion.vsd_trainer.OneStepVSDTrainer` (SwiftBrush's); SNOOPI's own parts are below.
    """

    def build(self) -> None:
        cfg = self.config
        if not float(cfg.kappa_min) <= float(cfg.kappa_max):
            raise ConfigError(f"kappa_min={cfg.kappa_min} is above kappa_max={cfg.kappa_max}; give a range")
        if cfg.nasa_t and not list(cfg.negative_prompts):
            raise ConfigError("nasa_t=true needs negative prompts; set negative_prompts=['...'] (e.g. 'low quality')")
        super().build()
        self.last_kappa: torch.Tensor | None = None

    def batches(self, seed: int):
        """``{"prompts", "negatives"?}`` micro-batches from one seeded numpy generator."""
        negatives = list(self.config.negative_prompts)
        size = int(self.config.train.batch_size)
        rng = np.random.default_rng(seed)
        while True:
            batch = {"prompts": self.prompts.sample(rng, size)}
            if self.config.nasa_t:
                batch["negatives"] = [negatives[int(i)] for i in rng.integers(len(negatives), size=size)]
            yield batch

    def generator_context(self, negative, alpha):
        """NASA-T: the student generates under NASA attention on the negative prompt."""
        if negative is None:
            return super().generator_context(negative, alpha)
        return negative_attention(self.student, negative, alpha)

    def student_loss(self, step, cond, micro_batch):
        cfg = self.config
        negative = self.encoder(micro_batch["negatives"]) if micro_batch.get("negatives") else None
        batch = cond.shape[0]
        null = self.encoder.null(batch)
        alpha = None
        if negative is not None:
            alpha = sample_nasa_alpha(batch, float(cfg.nasa_alpha_min), float(cfg.nasa_alpha_max), device=self.device)
        # 1. one-step generation (NASA-T: with NASA on the negative prompt)
        x0 = self.generate(cond, negative, alpha)
        # 2. PG-SB: one kappa per sample, shared by both teachers
        kappa = sample_kappa(batch, float(cfg.kappa_min), float(cfg.kappa_max), device=self.device)
        self.last_kappa = kappa
        t = schedule.uniform_timesteps(batch, int(cfg.student_t_min), int(cfg.student_t_max), device=self.device)
        x_t = schedule.add_noise(x0.detach(), torch.randn_like(x0), t, self.alphas_cumprod)
        # 3. teacher CFG against the negative prompt (NASA-T, Eq. 5) or "", LoRA teacher against ""
        with torch.no_grad():
            eps_teacher = self.scores.teacher_eps(x_t, t, cond, negative if negative is not None else null, kappa)
            eps_lora = self.scores.fake_eps(x_t, t, cond, null, kappa)
        # 4. VSD
        loss, g = vsd_loss(x0, eps_teacher, eps_lora, t, self.alphas_cumprod)
        self._cached = (step, x0.detach(), cond)
        return {"loss": loss, "grad_abs": g.abs().mean().detach(), "kappa": kappa.mean().detach()}

    def sampler_settings(self) -> dict:
        return {**super().sampler_settings(), "nasa_alpha": float(self.config.nasa_alpha)}


def build_trainer(config) -> SnoopiTrainer:
    return SnoopiTrainer(config)
