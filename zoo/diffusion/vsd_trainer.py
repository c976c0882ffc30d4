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

Options against VSD's mode collapse (defaults: off, the plain recipe): ``student_init`` starts the student from another
model's UNet (SwiftBrush v2, arXiv 2408.14176 §4.1), ``init_merge`` exports/validates ``lam theta + (1 - lam)
theta_start`` (SwiftBrush v2 §4.4), ``regression_weight`` adds DMD's regression on teacher ODE pairs to the student
loss (DMD = VSD + regression; arXiv 2311.18828 Eq. 9).

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
from zoo.errors import ConfigError
from zoo.train.trainer import OptimizerGroup, StepCache, Trainer


def load_init_unet_state(ref: str, like: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The UNet weights that model ``ref``'s own sampler runs (a LoRA model: fused into its base), as a state dict
    of ``like``'s dtypes; refused with one line when the layout differs from the teacher's."""
    from zoo.hub import resolve_model
    from zoo.registry import get_method

    model = resolve_model(ref)
    method = (model.manifest or {}).get("method") or "swiftbrush"
    if method == "base":
        method = "swiftbrush"
    sampler = get_method(method).load("sampler")(model, device="cpu")
    state = sampler.components.unet.state_dict()
    own = like.state_dict()
    if set(state) != set(own) or any(state[k].shape != own[k].shape for k in own):
        raise ConfigError(f"student_init={ref!r}: its UNet does not have the teacher's layout")
    return {k: state[k].detach().to(dtype=own[k].dtype, device=own[k].device).clone() for k in own}


class OneStepVSDTrainer(Trainer):
    """One-step student + LoRA teacher on one shared teacher base; subclasses write the student's VSD loss."""

    def build(self) -> None:
        cfg = self.config
        self.components = load_components(cfg.teacher, self.device)
        self.alphas_cumprod = self.components.alphas_cumprod
        self.encoder = PromptEncoder(self.components)
        self.prompts = PromptSource(str(cfg.prompts))
        # The student starts as a copy of the teacher (the only second copy of the UNet weights), or from another
        # model's UNet (``student_init``, SwiftBrush v2).
        self.student = copy.deepcopy(self.components.unet).requires_grad_(True).train()
        self.init_state: dict[str, torch.Tensor] | None = None
        if str(cfg.student_init or ""):
            self.init_state = load_init_unet_state(str(cfg.student_init), self.student)
            self.student.load_state_dict(self.init_state)
        merge = float(cfg.init_merge)
        if not 0.0 <= merge <= 1.0:
            raise ConfigError(f"init_merge={merge}: give the trained student's weight in [0, 1]")
        if merge != 1.0 and self.init_state is None:
            # merging with the teacher copy the student started from
            self.init_state = {k: v.detach().clone() for k, v in self.components.unet.state_dict().items()}
        # The LoRA teacher lives on the teacher's own UNet: base weights exist once.
        self.scores = SharedBaseTeacher(self.components.unet, self.alphas_cumprod, adapters=("lora_teacher",),
                                        rank=int(cfg.lora_rank), lora_alpha=float(cfg.lora_alpha),
                                        target_modules=list(cfg.lora_targets))
        self.lora_teacher = self.components.unet
        self._cached: tuple[int, torch.Tensor, torch.Tensor] | None = None
        self.regression_data = self.make_regression_pairs() if float(cfg.regression_weight) > 0 else None
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
            result = self.add_regression(step, self.student_loss(step, cond, batch))
            self.step_cache.put(step, batch, self._cached)
            return result
        self._cached = self.step_cache.get(step, batch)  # this micro-batch's student sample, if it ran this step
        return self.lora_loss(step, cond)

    # -- DMD's regression loss on teacher ODE pairs ------------------------------------------------------------------
    @torch.no_grad()
    def make_regression_pairs(self) -> dict[str, torch.Tensor]:
        """``{"noise", "cond", "x0"}``: the teacher's deterministic DDIM solve from pure noise at ``generator_timestep``
        to the clean end, ``regression_steps`` steps with CFG ``regression_guidance_scale`` (DMD's paired data set),
        from a noise and prompt stream of its own (seeded by ``train.seed``; the training RNG is not touched)."""
        import numpy as np

        from zoo.diffusion.teacher_solve import teacher_ddim_solve

        cfg = self.config
        count = int(cfg.regression_pairs)
        if count < 1 or int(cfg.regression_steps) < 1:
            raise ConfigError("regression_pairs and regression_steps must be at least 1 with regression_weight > 0")
        seed = int(cfg.train.seed) + 1_000_003
        generator = torch.Generator().manual_seed(seed)
        prompts = self.prompts.sample(np.random.default_rng(seed), count)
        config = self.components.unet.config
        unet = self.components.unet
        noise, conds, outputs = [], [], []
        with self.scores.teacher_mode():
            for start in range(0, count, 64):
                part = list(prompts[start:start + 64])
                z = torch.randn(len(part), config.in_channels, config.sample_size, config.sample_size,
                                generator=generator).to(self.device)
                cond = self.encoder(part)
                x0 = teacher_ddim_solve(lambda x, t, c: unet(x, t, encoder_hidden_states=c).sample, z,
                                        int(cfg.generator_timestep), schedule.CLEAN, cond,
                                        self.encoder.null(len(part)), float(cfg.regression_guidance_scale),
                                        self.alphas_cumprod, substeps=int(cfg.regression_steps))
                noise.append(z)
                conds.append(cond)
                outputs.append(x0)
        return {"noise": torch.cat(noise), "cond": torch.cat(conds), "x0": torch.cat(outputs)}

    def regression_loss(self, step: int) -> torch.Tensor | None:
        """``regression_weight * mse(f_theta(z), x0_teacher)`` on this step's pairs (None when off)."""
        if self.regression_data is None:
            return None
        cfg = self.config
        data = self.regression_data
        size = int(cfg.regression_batch_size) or int(cfg.train.batch_size)
        generator = torch.Generator().manual_seed(int(cfg.train.seed) * 1_000_003 + int(step))
        index = torch.randint(0, data["noise"].shape[0], (size,), generator=generator)
        z, cond = data["noise"][index], data["cond"][index]
        t = int(cfg.generator_timestep)
        eps = self.student(z, torch.full((size,), t, device=self.device), encoder_hidden_states=cond).sample
        x0 = schedule.x0_from_eps(z, eps, t, self.alphas_cumprod)
        return float(cfg.regression_weight) * torch.nn.functional.mse_loss(x0.float(), data["x0"][index].float())

    def add_regression(self, step: int, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The student's loss dict with DMD's regression term added (unchanged when it is off)."""
        reg = self.regression_loss(step)
        if reg is None:
            return out
        return {**out, "loss": out["loss"] + reg, "regression": reg.detach()}

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

        with self.ema_weights(), self.merged_weights():
            return testbed_validation(lambda cond: self.generate(cond), self.components, self.encoder)

    @contextlib.contextmanager
    def merged_weights(self):
        """Within the block the student holds ``init_merge * theta + (1 - init_merge) * theta_init`` (SwiftBrush v2
        weight merging; no-op at ``init_merge = 1``)."""
        lam = float(self.config.init_merge)
        if lam == 1.0 or self.init_state is None:
            yield
            return
        saved = {k: v.detach().clone() for k, v in self.student.state_dict().items()}
        merged = {k: (lam * v.float() + (1 - lam) * self.init_state[k].float()).to(v.dtype)
                  if v.is_floating_point() else v for k, v in saved.items()}
        self.student.load_state_dict(merged)
        try:
            yield
        finally:
            self.student.load_state_dict(saved)

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
        with self.ema_weights(), self.merged_weights():
            files = [save_unet(self.student, out_dir / "unet")]
        write_export_metadata(self, out_dir, metrics, files=files)
        return out_dir
