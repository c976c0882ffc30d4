"""The ``progressive`` trainer: one round of guided progressive distillation on the distill-zoo runtime.

Each micro-batch: testbed images -> VAE latents ``x0``; per sample a student step ``t -> s`` drawn from the student's
trailing schedule (for 2 steps: 999 -> 499 or 499 -> clean); ``x_t`` = ``x0`` forward-noised to ``t``. The target
is where the teacher lands from ``x_t`` after ``teacher_substeps`` DDIM steps with CFG (:func:`zoo.sdk.
teacher_ddim_solve`), expressed as the noise prediction that makes one DDIM step land there (:func:`zoo.sdk.
ddim_eps_target`, Salimans & Ho Alg. 2). The student, initialised from the teacher, regresses it with one
conditional call.
"""

import copy

import torch
import torch.nn.functional as F

from zoo.sdk import (OptimizerGroup, PromptEncoder, Trainer, add_noise, ddim_eps_target, load_components,
                     next_timesteps, save_unet, teacher_ddim_solve, testbed_image_batches, testbed_validation,
                     trailing_timesteps, write_export_metadata)

from zoo_progressive.sampler import STUDENT_FOLDER, student_sample


class ProgressiveTrainer(Trainer):
    def build(self):
        cfg = self.config
        self.components = load_components(cfg.teacher, self.device)  # fp32, frozen
        self.teacher = self.components.unet
        self.student = copy.deepcopy(self.teacher).requires_grad_(True).train()
        self.encoder = PromptEncoder(self.components)
        self.alphas_cumprod = self.components.alphas_cumprod
        starts = trailing_timesteps(int(cfg.student_steps), len(self.alphas_cumprod))
        self.student_steps = torch.tensor([starts, next_timesteps(starts)], dtype=torch.long)  # [2, N]: t and s

    def trainable_modules(self):
        return {"student": self.student}

    def optimizer_groups(self):
        return [OptimizerGroup("student", self.student.parameters(), self.config.optim.student)]

    def batches(self, seed):
        return testbed_image_batches(seed, int(self.config.data_seed), int(self.config.train.batch_size))

    def loss(self, group, step, batch):
        cfg = self.config
        x0 = self.components.encode_images(batch["images"])
        b = x0.shape[0]
        pick = torch.randint(self.student_steps.shape[1], (b,))
        t, s = self.student_steps[0, pick].to(self.device), self.student_steps[1, pick].to(self.device)
        x_t = add_noise(x0, torch.randn_like(x0), t, self.alphas_cumprod)
        cond = self.encoder(batch["captions"])
        x_s = teacher_ddim_solve(lambda x, ts, c: self.teacher(x, ts, encoder_hidden_states=c).sample, x_t, t, s,
                                 cond, self.encoder.null(b), float(cfg.guidance_scale), self.alphas_cumprod,
                                 substeps=int(cfg.teacher_substeps))
        target = ddim_eps_target(x_t, x_s, t, s, self.alphas_cumprod)
        prediction = self.student(x_t, t, encoder_hidden_states=cond).sample
        return {"loss": F.mse_loss(prediction.float(), target.float())}

    def validate(self, step, out_dir):
        steps = int(self.config.student_steps)

        def generate(cond):
            noise = torch.randn(self.components.latent_shape(cond.shape[0], self.components.default_size,
                                                             self.components.default_size), device=self.device)
            return student_sample(self.student, noise, cond, steps, self.alphas_cumprod)

        with self.ema_weights():
            return testbed_validation(generate, self.components, self.encoder,
                                      per_prompt=int(self.config.validate_per_prompt))

    def export(self, out_dir, metrics):
        out_dir.mkdir(parents=True, exist_ok=True)
        with self.ema_weights():
            files = [save_unet(self.student, out_dir / STUDENT_FOLDER)]
        write_export_metadata(self, out_dir, metrics, files=files)
        return out_dir

    def export_manifest(self):
        return {"base_model": self.config.teacher,
                "sampler": {"steps": int(self.config.student_steps), "guidance_scale": 0.0},
                "distillation": {"teacher_guidance_scale": float(self.config.guidance_scale),
                                 "teacher_substeps": int(self.config.teacher_substeps)}}
