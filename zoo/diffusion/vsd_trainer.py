"""The one-step VSD trainer that SwiftBrush (arXiv 2312.05239) and SNOOPI's PG-SB (arXiv 2412.02687) share.

A one-step student ``x0 = (z - sigma_T f_theta(z, T, c)) / alpha_T`` is distilled by variational score distillation
against a frozen teacher, with a LoRA "fake score" (the LoRA teacher) fitted to the student's samples. Teacher and
LoRA teacher are ONE UNet (the teacher's base weights, frozen) with a PEFT adapter
(:class:`zoo.diffusion.teacher.SharedBaseTeacher`). Groups, in update order:

``student``
    the method's :meth:`OneStepVSDTrainer.student_loss` (SwiftBrush: fixed guidance; SNOOPI: PG-SB, NASA-T);
``lora_teacher``
    5. x0 of the *pre-update* student, detached (cached by ``student_loss`` for the same global step)
    6. t ~ U[lora_t_min, lora_t_max); c -> "" with probability ``caption_dropout``;
       loss = mse(alpha_t eps_psi(x_t, t, c), alpha_t eps)                      (SwiftBrush ``train_swiftbrush.py``)

Subclasses implement :meth:`student_loss` and may extend :meth:`build`, :meth:`batches`, :meth:`generator_context`
and :meth:`sampler_settings`. The config must provide ``teacher``, ``prompts``, ``lora_rank``, ``lora_alpha``,
``lora_targets``, ``generator_timestep``, ``lora_t_min``, ``lora_t_max``, ``caption_dropout`` and
``optim.student`` / ``optim.lora_teacher``.
"""

from __future__ import annotations

import contextlib
import copy
from collections import Counter
from pathlib import Path

import torch

from zoo.diffusion import schedule
from zoo.diffusion.distill_data import (PromptEncoder, PromptSource, drop_captions, load_components, prompt_batches,
                                        save_unet)
from zoo.diffusion.losses import alpha_weighted_eps_loss
from zoo.diffusion.teacher import SharedBaseTeacher
from zoo.train.trainer import OptimizerGroup, StepCache, Trainer


class OneStepVSDTrainer(Trainer):
    """One-step student + LoRA teacher on one shared teacher base; subclasses write the student's VSD loss."""

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
        self.step_cache = StepCache()
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
    def generator_context(self, negative: torch.Tensor | None, alpha: torch.Tensor | None):
        """Context the student's forward runs in (SNOOPI: NASA attention for NASA-T). Default: none."""
        return contextlib.nullcontext()

    def generate(self, cond: torch.Tensor, negative: torch.Tensor | None = None,
                 alpha: torch.Tensor | None = None) -> torch.Tensor:
        """One-step x0 from fresh noise (global torch RNG) at ``generator_timestep``."""
        config = self.components.unet.config
        z = torch.randn(cond.shape[0], config.in_channels, config.sample_size, config.sample_size).to(self.device)
        t = int(self.config.generator_timestep)
        with self.generator_context(negative, alpha):
            eps = self.student(z, torch.full((z.shape[0],), t, device=self.device), encoder_hidden_states=cond).sample
        return schedule.x0_from_eps(z, eps, t, self.alphas_cumprod)

    # -- losses -------------------------------------------------------------------------------------------------
    def loss(self, group: str, step: int, batch) -> dict[str, torch.Tensor]:
        cond = self.encoder(batch["prompts"])
        self.loss_calls[group] += 1
        if group == "student":
            self._cached = None
            result = self.student_loss(step, cond, batch)
            self.step_cache.put(step, batch, self._cached)
            return result
        self._cached = self.step_cache.get(step, batch)  # this micro-batch's student sample, if it ran this step
        return self.lora_loss(step, cond)

    def student_loss(self, step: int, cond: torch.Tensor, batch) -> dict[str, torch.Tensor]:
        """The VSD loss of the student; must store ``self._cached = (step, x0.detach(), cond)``."""
        raise NotImplementedError(f"{type(self).__name__} must implement student_loss()")

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
    def sampler_settings(self) -> dict:
        """Recommended sampler settings written to the exported zoo.json."""
        return {"steps": 1, "guidance_scale": 0.0, "timestep": int(self.config.generator_timestep)}

    def export_manifest(self):
        return {"base_model": str(self.config.teacher), "sampler": self.sampler_settings()}

    def export(self, out_dir: Path, metrics):
        from zoo.train.export import write_export_metadata

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        with self.ema_weights():
            files = [save_unet(self.student, out_dir / "unet")]
        write_export_metadata(self, out_dir, metrics, files=files)
        return out_dir
