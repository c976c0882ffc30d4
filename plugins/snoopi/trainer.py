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

import contextlib
import copy
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from zoo.diffusion import schedule
from zoo.diffusion.distill_data import PromptEncoder, PromptSource, drop_captions, load_components, save_unet
from zoo.diffusion.losses import alpha_weighted_eps_loss, vsd_loss
from zoo.diffusion.teacher import SharedBaseTeacher
from zoo.errors import ConfigError
from zoo.sdk import OptimizerGroup, Trainer

from .nasa import negative_attention, sample_nasa_alpha


def sample_kappa(batch_size: int, kappa_min: float, kappa_max: float, device="cpu") -> torch.Tensor:
    """PG-SB guidance scales ``kappa ~ U(kappa_min, kappa_max)``, one per sample (global torch RNG).

    A degenerate range draws nothing, so ``kappa_min == kappa_max == w`` reproduces SwiftBrush's run exactly.
    """
    if kappa_min == kappa_max:
        return torch.full((batch_size,), float(kappa_min), device=device)
    return (kappa_min + (kappa_max - kappa_min) * torch.rand(batch_size)).to(device)


class SnoopiTrainer(Trainer):
    """PG-SB: VSD with one random guidance scale per sample shared by both teachers; NASA-T optional."""

    def build(self) -> None:
        cfg = self.config
        if not float(cfg.kappa_min) <= float(cfg.kappa_max):
            raise ConfigError(f"kappa_min={cfg.kappa_min} is above kappa_max={cfg.kappa_max}; give a range")
        if cfg.nasa_t and not list(cfg.negative_prompts):
            raise ConfigError("nasa_t=true needs negative prompts; set negative_prompts=['...'] (e.g. 'low quality')")
        self.components = load_components(cfg.teacher, self.device)
        self.alphas_cumprod = self.components.alphas_cumprod
        self.encoder = PromptEncoder(self.components)
        self.prompts = PromptSource(str(cfg.prompts))
        self.student = copy.deepcopy(self.components.unet).requires_grad_(True).train()
        self.scores = SharedBaseTeacher(self.components.unet, self.alphas_cumprod, adapters=("lora_teacher",),
                                        rank=int(cfg.lora_rank), lora_alpha=float(cfg.lora_alpha),
                                        target_modules=list(cfg.lora_targets))
        self.lora_teacher = self.components.unet
        self._cached = None
        self.loss_calls: Counter = Counter()
        self.last_kappa: torch.Tensor | None = None

    def trainable_modules(self):
        return {"student": self.student, "lora_teacher": self.lora_teacher}

    def ema_modules(self):
        return {"student": self.student}

    def optimizer_groups(self):
        return [OptimizerGroup("student", self.student.parameters(), self.config.optim.student),
                OptimizerGroup("lora_teacher", self.scores.fake_parameters(), self.config.optim.lora_teacher)]

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

    def generate(self, cond: torch.Tensor, negative: torch.Tensor | None = None,
                 alpha: torch.Tensor | None = None) -> torch.Tensor:
        """One-step x0 from fresh noise; under NASA when ``negative`` embeddings are given (NASA-T)."""
        config = self.components.unet.config
        z = torch.randn(cond.shape[0], config.in_channels, config.sample_size, config.sample_size).to(self.device)
        t = int(self.config.generator_timestep)
        context = (negative_attention(self.student, negative, alpha) if negative is not None
                   else contextlib.nullcontext())
        with context:
            eps = self.student(z, torch.full((z.shape[0],), t, device=self.device), encoder_hidden_states=cond).sample
        return schedule.x0_from_eps(z, eps, t, self.alphas_cumprod)

    def loss(self, group: str, step: int, batch) -> dict[str, torch.Tensor]:
        cond = self.encoder(batch["prompts"])
        self.loss_calls[group] += 1
        negative = self.encoder(batch["negatives"]) if batch.get("negatives") else None
        if group == "student":
            return self.student_loss(step, cond, negative)
        return self.lora_loss(step, cond)

    def student_loss(self, step, cond, negative=None):
        cfg = self.config
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

    def lora_loss(self, step, cond):
        cfg = self.config
        if self._cached is not None and self._cached[0] == step:
            _, x0, cond = self._cached
        else:
            with torch.no_grad():
                x0 = self.generate(cond)
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

    def export_manifest(self):
        return {"base_model": str(self.config.teacher),
                "sampler": {"steps": 1, "guidance_scale": 0.0, "timestep": int(self.config.generator_timestep),
                            "nasa_alpha": float(self.config.nasa_alpha)}}

    def export(self, out_dir: Path, metrics):
        from zoo.train.export import write_export_metadata

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        with self.ema_weights():
            files = [save_unet(self.student, out_dir / "unet")]
        write_export_metadata(self, out_dir, metrics, files=files)
        return out_dir


def build_trainer(config) -> SnoopiTrainer:
    return SnoopiTrainer(config)
