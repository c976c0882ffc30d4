"""Phased DMD trainer on DMD2 machinery (arXiv 2510.27684; DMD2 arXiv 2405.14867).

Set-up (methods.md §5.2-5.3):

* the few-step generator is a mixture of experts: expert ``k`` (a full UNet initialised from the teacher) runs the
  denoising steps of SNR phase ``k`` (:func:`experts.phase_steps`);
* the teacher and the fake scores share ONE UNet: adapters off = teacher, adapter ``fake_k`` = phase k's fake score
  (a fresh LoRA, i.e. initialised from the teacher, as the paper re-initialises F per phase);
* phases are trained one after another: global step ``i`` trains phase ``floor(i K / train.steps)``.

One step for the current phase ``k`` ending at timestep ``s`` (``CLEAN`` for the last phase), groups in order:

``generator`` (every ``optim.generator.every`` steps: DMD2's two-time-scale rule)
    1. back-simulation: z at T-1, experts 0..k-1 without gradient, then expert k's steps; only its last step has
       gradient (SGTS inside the phase); it yields the phase output x_s and its x0 estimate x0_hat
    2. t ~ U[max(t_min, s + margin), t_max); x_t = alpha_{t|s} x_s + sigma_{t|s} eps   (no gradient)
    3. x0_real from the teacher with CFG w, x0_fake from fake_k without CFG
    4. grad = (x0_fake - x0_real) / mean|x0_hat - x0_real|; loss = 0.5 mse(x_s, sg(x_s - grad))   (DMD2)
``fake_score`` (every step)
    5. x_s from the same step's simulation (detached)
    6. t ~ U[s + margin, 1000); x_t = alpha_{t|s} x_s + sigma_{t|s} eps
    7. loss = mean(((sigma_{t|s}/sigma_t) eps_fake_k(x_t) - eps)^2)   (subinterval target, Eq. 11/13)

Differences from the reference: DDPM epsilon-UNets and trailing timesteps instead of flow matching (the method is
schedule-agnostic); full-UNet experts instead of LoRA experts (the testbed UNet is small); no GAN, as in the paper.
"""

from __future__ import annotations

import copy
from collections import Counter
from pathlib import Path

import torch
from torch import nn

from zoo.diffusion import schedule
from zoo.diffusion.distill_data import (PromptEncoder, PromptSource, drop_captions, load_components, prompt_batches,
                                        save_unet)
from zoo.diffusion.losses import dmd_loss
from zoo.diffusion.teacher import SharedBaseTeacher
from zoo.errors import ConfigError
from zoo.sdk import OptimizerGroup, StepCache, Trainer

from .experts import check_boundaries, phase_steps
from .subinterval import subinterval_loss


class PhasedDMDTrainer(Trainer):

    def build(self) -> None:
        cfg = self.config
        self.timesteps = schedule.trailing_timesteps(int(cfg.steps))
        self.boundaries = [int(b) for b in cfg.phase_boundaries]
        try:
            check_boundaries(self.timesteps, self.boundaries)
        except ValueError as exc:
            raise ConfigError(f"phase_boundaries: {exc}") from None
        self.num_phases = len(self.boundaries) + 1
        self.steps_by_phase = phase_steps(self.timesteps, self.boundaries)
        for k in range(self.num_phases):
            low = self.phase_end(k) + int(cfg.score_timestep_margin)
            if low >= int(cfg.t_max):
                raise ConfigError(f"Phase {k} ends at t={self.phase_end(k)}: no DM timestep is left below "
                                  f"t_max={cfg.t_max}; lower score_timestep_margin or raise t_max")
        self.components = load_components(cfg.teacher, self.device)
        self.alphas_cumprod = self.components.alphas_cumprod
        self.encoder = PromptEncoder(self.components)
        self.prompts = PromptSource(str(cfg.prompts))
        self.experts = nn.ModuleList(copy.deepcopy(self.components.unet).requires_grad_(True).train()
                                     for _ in range(self.num_phases))
        self.adapter_names = [f"fake_{k}" for k in range(self.num_phases)]
        self.scores = SharedBaseTeacher(self.components.unet, self.alphas_cumprod, adapters=self.adapter_names,
                                        rank=int(cfg.lora_rank), lora_alpha=float(cfg.lora_alpha),
                                        target_modules=list(cfg.lora_targets))
        self.fake_score = self.components.unet
        self._cached = None
        self.step_cache = StepCache()
        self.loss_calls: Counter = Counter()

    # -- phases ---------------------------------------------------------------------------------------------------
    def phase_at(self, step: int) -> int:
        """Phases run one after another, each for an equal share of ``train.steps``."""
        return min(self.num_phases - 1, step * self.num_phases // int(self.config.train.steps))

    def phase_end(self, phase: int) -> int:
        """The timestep phase ``phase`` delivers samples at: the next phase's first step, or CLEAN (-1)."""
        return self.boundaries[phase] if phase < len(self.boundaries) else schedule.CLEAN

    # -- runtime contract -----------------------------------------------------------------------------------------
    def trainable_modules(self):
        return {"experts": self.experts, "fake_score": self.fake_score}

    def ema_modules(self):
        return {"experts": self.experts}

    def optimizer_groups(self):
        fake = [p for name in self.adapter_names for p in self.scores.fake_parameters(name)]
        return [OptimizerGroup("generator", self.experts.parameters(), self.config.optim.generator),
                OptimizerGroup("fake_score", fake, self.config.optim.fake_score)]

    def batches(self, seed: int):
        return prompt_batches(self.prompts, int(self.config.train.batch_size), seed)

    # -- back-simulation ------------------------------------------------------------------------------------------
    def _step(self, x, eps, t, t_next):
        if t_next == schedule.CLEAN:
            return schedule.x0_from_eps(x, eps, t, self.alphas_cumprod)
        if self.config.stochastic:
            x0 = schedule.x0_from_eps(x, eps, t, self.alphas_cumprod)
            return schedule.add_noise(x0, torch.randn_like(x0), t_next, self.alphas_cumprod)
        return schedule.ddim_jump(x, eps, t, t_next, self.alphas_cumprod)

    def simulate(self, cond: torch.Tensor, phase: int, grad: bool):
        """Run experts 0..phase from noise; returns ``(x_s, x0_hat, s)`` with gradient only through the last step."""
        config = self.components.unet.config
        x = torch.randn(cond.shape[0], config.in_channels, config.sample_size, config.sample_size).to(self.device)
        nexts = dict(zip(self.timesteps, schedule.next_timesteps(self.timesteps)))
        for k in range(phase + 1):
            for j, t in enumerate(self.steps_by_phase[k]):
                last = k == phase and j == len(self.steps_by_phase[k]) - 1
                with torch.set_grad_enabled(grad and last):
                    ts = torch.full((x.shape[0],), t, device=self.device)
                    eps = self.experts[k](x, ts, encoder_hidden_states=cond).sample
                    if last:
                        x0_hat = schedule.x0_from_eps(x, eps, t, self.alphas_cumprod)
                        return self._step(x, eps, t, nexts[t]), x0_hat, nexts[t]
                    x = self._step(x, eps, t, nexts[t])
        raise AssertionError("unreachable: every phase has at least one step")

    # -- losses -------------------------------------------------------------------------------------------------
    def loss(self, group: str, step: int, batch):
        cond = self.encoder(batch["prompts"])
        self.loss_calls[group] += 1
        phase = self.phase_at(step)
        if group == "generator":
            self._cached = None
            result = self.generator_loss(step, phase, cond)
            self.step_cache.put(step, batch, self._cached)
            return result
        self._cached = self.step_cache.get(step, batch)  # this micro-batch's generator output, if it ran this step
        return self.fake_loss(step, phase, cond)

    def generator_loss(self, step, phase, cond):
        cfg = self.config
        batch = cond.shape[0]
        # 1. back-simulation to the phase end s
        x_s, x0_hat, s = self.simulate(cond, phase, grad=True)
        # 2. diffuse further to t in (s, t_max)
        low = max(int(cfg.t_min), s + int(cfg.score_timestep_margin))
        t = schedule.uniform_timesteps(batch, low, int(cfg.t_max), device=self.device)
        x_t = schedule.add_noise_from(x_s.detach(), torch.randn_like(x_s), s, t, self.alphas_cumprod)
        # 3. teacher (CFG) and phase fake score (no CFG)
        with torch.no_grad():
            eps_real = self.scores.teacher_eps(x_t, t, cond, self.encoder.null(batch), float(cfg.guidance_scale))
            eps_fake = self.scores.fake_eps(x_t, t, cond, adapter=self.adapter_names[phase])
        x0_real = schedule.x0_from_eps(x_t, eps_real, t, self.alphas_cumprod)
        x0_fake = schedule.x0_from_eps(x_t, eps_fake, t, self.alphas_cumprod)
        # 4. DMD2 normalised distribution-matching loss on the phase output
        loss, grad = dmd_loss(x_s, x0_real, x0_fake, x0_reference=x0_hat, norm_clip_min=float(cfg.norm_clip_min))
        self._cached = (step, x_s.detach(), s, cond)
        return {"loss": loss, "grad_abs": grad.abs().mean().detach(), "phase": torch.tensor(float(phase))}

    def fake_loss(self, step, phase, cond):
        cfg = self.config
        # 5. the phase output of this step's generator (detached), or a fresh simulation
        if self._cached is not None and self._cached[0] == step:
            _, x_s, s, cond = self._cached
        else:
            with torch.no_grad():
                x_s, _, s = self.simulate(cond, phase, grad=False)
        # 6. t in (s + margin, T)
        low = 0 if s == schedule.CLEAN else s + int(cfg.score_timestep_margin)
        t = schedule.uniform_timesteps(x_s.shape[0], low, 1000, device=self.device)
        noise = torch.randn_like(x_s)
        x_t = schedule.add_noise_from(x_s, noise, s, t, self.alphas_cumprod)
        cond = drop_captions(cond, self.encoder.null(cond.shape[0]), float(cfg.caption_dropout))
        # 7. subinterval score matching
        eps = self.scores.fake_eps(x_t, t, cond, adapter=self.adapter_names[phase])
        return {"loss": subinterval_loss(eps, noise, s, t, self.alphas_cumprod)}

    def validate(self, step: int, out_dir: Path) -> dict[str, float]:
        """Testbed colour / shape accuracy and FD of the full (EMA) few-step generator, for the training curves."""
        if str(self.config.prompts) != "testbed":
            return {}
        from zoo.diffusion.distill_data import testbed_validation

        last = self.num_phases - 1
        with self.ema_weights():
            return testbed_validation(lambda cond: self.simulate(cond, last, grad=False)[0], self.components,
                                      self.encoder)

    # -- export ---------------------------------------------------------------------------------------------------
    def export_manifest(self):
        return {"base_model": str(self.config.teacher),
                "sampler": {"steps": int(self.config.steps), "guidance_scale": 0.0,
                            "phase_boundaries": list(self.boundaries), "stochastic": bool(self.config.stochastic)}}

    def export(self, out_dir: Path, metrics):
        from zoo.train.checkpoint import unwrap
        from zoo.train.export import write_export_metadata

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        with self.ema_weights():
            experts = unwrap(self.experts)
            files = [f"experts/{save_unet(e, out_dir / 'experts' / f'phase_{k}')}" for k, e in enumerate(experts)]
        write_export_metadata(self, out_dir, metrics, files=files)
        return out_dir


def build_trainer(config) -> PhasedDMDTrainer:
    return PhasedDMDTrainer(config)
