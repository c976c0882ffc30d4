"""Hyper-SD TSCD trainer: progressive segmented consistency distillation into a LoRA student (arXiv 2404.13686 §3.1).

One UNet holds everything (methods.md §0.3): the frozen teacher (all LoRA adapters off), the trainable ``student``
LoRA, its EMA ``target`` LoRA θ⁻ (LCM-style consistency target), and, when ``score_distill_weight > 0``, a ``fake``
LoRA for the DMD score-distillation term of the last stage (§3(a)(iii)). Adapters are switched by setting PEFT's
active adapter on each LoRA layer directly, so ``requires_grad`` flags (set once in :meth:`build`) never change.

Stages: ``segments = [8, 4, 2, 1]`` by default; stage ``j`` runs ``stage_steps[j]`` optimizer steps and continues from
stage ``j - 1``'s LoRA (the paper initialises each stage from the previous one). At each stage start the target is reset
to the student. Per step (see :mod:`.tscd` for the equations):

1. x0 = VAE latents of testbed images; captions dropped to "" with probability ``uncond_prob``;
2. t from the teacher's DDIM grid (``num_ddim_steps``), x_t = forward noise of x0 (at high t, with probability
   ``conflict_prob``, of another example's x0 or of nothing, ``conflict_source``: see ``tscd.conflicting_images``);
3. target = stopgrad f_{θ⁻}(DDIM_jump(x_t, cfg(teacher), t -> t'), t')   (boundary: x̂_{t'} when t' is the edge);
4. loss = pseudo-Huber(f_θ(x_t, t), target) [+ w_sd · DMD loss of the one-step student sample, last stage only].

Resume: the target LoRA is not checkpointed; after a resume it restarts from the student (as at a stage start).

N-step LoRAs: Hyper-SD publishes 8-, 4- and 2-step LoRAs next to the unified 1-step one. Here they are the student as
it stood at the end of the k = 8, 4 and 2 stages: :class:`_StageSnapshots` keeps a copy of each (buffers, so they
are checkpointed and survive a resume), and :meth:`HyperSDTrainer.export` writes each as a model folder ``<k>step/``
inside the export (``export_stage_loras``).

Data: the paper trains on LAION/COYO image-text pairs; the testbed uses its own captioned images.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.nn.functional as F

from zoo.train.trainer import OptimizerGroup, Trainer

from zoo_plugins.hyper_sd.tscd import (CONFLICT_SOURCES, conflicting_images, segment_grid, stage_of, teacher_grid,
                                       tscd_loss, tscd_targets)

STUDENT, TARGET, FAKE = "student", "target", "fake"


def _per_stage(name: str, values, default, stages: int) -> list:
    """A per-stage config list: ``values`` (one per stage), or ``default`` for every stage when it is empty."""
    if not values:
        return [default] * stages
    if len(values) != stages:
        from zoo.errors import ConfigError

        raise ConfigError(f"{name} has {len(values)} entries for {stages} segments stages; "
                          f"give one per stage or leave it empty")
    return list(values)
LORA_FILE = "lora.safetensors"


def _lora_layers(unet: torch.nn.Module):
    from peft.tuners.lora import LoraLayer

    return [m for m in unet.modules() if isinstance(m, LoraLayer)]


class _LoRAParams(torch.nn.Module):
    """The parameters of one adapter as a module (what the runtime checkpoints, EMAs and optimises)."""

    def __init__(self, params: list[torch.nn.Parameter]) -> None:
        super().__init__()
        self.params = torch.nn.ParameterList(params)


class _StageSnapshots(torch.nn.Module):
    """The student LoRA at the end of each stage but the last (buffers ``s<j>_<i>`` plus a ``s<j>_done`` flag)."""

    def __init__(self, params: list[torch.nn.Parameter], stages: int) -> None:
        super().__init__()
        self.count = len(params)
        for j in range(stages):
            for i, param in enumerate(params):
                self.register_buffer(f"s{j}_{i}", torch.zeros_like(param, requires_grad=False))
            self.register_buffer(f"s{j}_done", torch.zeros((), dtype=torch.bool))

    def done(self, stage: int) -> bool:
        return bool(getattr(self, f"s{stage}_done"))

    @torch.no_grad()
    def store(self, stage: int, params: list[torch.Tensor]) -> None:
        for i, param in enumerate(params):
            # a sharded run (train.distributed=fsdp) holds 1/N of each parameter: gather the whole (every process)
            getattr(self, f"s{stage}_{i}").copy_(param.full_tensor() if hasattr(param, "full_tensor") else param)
        getattr(self, f"s{stage}_done").fill_(True)

    def weights(self, stage: int) -> list[torch.Tensor]:
        return [getattr(self, f"s{stage}_{i}") for i in range(self.count)]


class HyperSDTrainer(Trainer):
    def build(self) -> None:
        from peft import LoraConfig

        from zoo.hub import resolve_model
        from zoo.t2i import SDComponents

        cfg = self.config
        self.method_name = "hyper_sd"
        self.components = SDComponents.from_folder(resolve_model(cfg.teacher).path, device=self.device)
        unet = self.components.unet
        unet.requires_grad_(False)
        present = {name.rsplit(".", 1)[-1] for name, _ in unet.named_modules()}
        targets = [t for t in cfg.lora_targets if "." in t or t in present]
        names = [STUDENT, TARGET] + ([FAKE] if cfg.score_distill_weight > 0 else [])
        import warnings

        for name in names:
            rank = int(cfg.fake_score_rank) if name == FAKE else int(cfg.lora_rank)
            alpha = float(cfg.fake_score_rank) if name == FAKE else float(cfg.lora_alpha)
            with warnings.catch_warnings():  # "multiple adapters" is the point here
                warnings.filterwarnings("ignore", message=".*multiple adapters.*")
                unet.add_adapter(LoraConfig(r=rank, lora_alpha=alpha, target_modules=targets,
                                            init_lora_weights=True), adapter_name=name)
        self.layers = _lora_layers(unet)
        self.params = {name: [p for n, p in unet.named_parameters() if "lora_" in n and f".{name}." in n]
                       for name in names}
        for name in names:
            for param in self.params[name]:
                param.requires_grad_(name != TARGET)
        self.student = _LoRAParams(self.params[STUDENT])
        self.fake = _LoRAParams(self.params[FAKE]) if FAKE in self.params else None
        self._copy_student_to_target()
        self.activate(STUDENT)
        self.uncond = self.components.encode_prompt([""])
        segments = list(cfg.segments)
        stage_steps = [int(n) for n in _per_stage("stage_steps", cfg.stage_steps,
                                                  int(cfg.train.steps) // len(segments), len(segments))]
        grid_steps = [int(n) for n in _per_stage("stage_ddim_steps", cfg.stage_ddim_steps, cfg.num_ddim_steps,
                                                 len(segments))]
        # per stage: the teacher solver's timesteps and skip
        self.grids = [segment_grid(int(k), n) if cfg.grid_at_segment_tops else teacher_grid(n)
                      for k, n in zip(segments, grid_steps)]
        self.skips = [1000 // n for n in grid_steps]
        self.stage_scales = [float(w) for w in _per_stage("stage_guidance", cfg.stage_guidance, cfg.guidance_scale,
                                                           len(segments))]
        from zoo.errors import ConfigError

        if not 0.0 <= float(cfg.conflict_prob) <= 1.0:
            raise ConfigError(f"conflict_prob={cfg.conflict_prob} is not a probability; use a value in [0, 1]")
        if cfg.conflict_source not in CONFLICT_SOURCES:
            raise ConfigError(f"conflict_source={cfg.conflict_source!r} is not one of: {', '.join(CONFLICT_SOURCES)}")
        if cfg.stage_guidance and len(cfg.guidance_range) == 2:
            raise ConfigError("stage_guidance and guidance_range both set the teacher's guidance; keep one")
        self.segments, self.stage_steps = segments, stage_steps
        self.current_stage = -1
        self.stage_snapshots = _StageSnapshots(self.params[STUDENT], len(segments) - 1) \
            if cfg.export_stage_loras and len(segments) > 1 else None

    # -- adapters -------------------------------------------------------------------------------------------------
    def activate(self, name: str | None) -> None:
        """Make ``name`` the active adapter of every LoRA layer (None: the teacher) without touching requires_grad."""
        for layer in self.layers:
            layer._active_adapter = [name] if name else []
            layer._disable_adapters = name is None

    @contextlib.contextmanager
    def using(self, name: str | None) -> Iterator[None]:
        self.activate(name)
        try:
            yield
        finally:
            self.activate(STUDENT)

    @torch.no_grad()
    def _copy_student_to_target(self) -> None:
        for s, t in zip(self.params[STUDENT], self.params[TARGET]):
            t.copy_(s)

    @torch.no_grad()
    def _update_target(self, decay: float) -> None:
        for s, t in zip(self.params[STUDENT], self.params[TARGET]):
            t.lerp_(s, 1.0 - decay)

    # -- runtime contract -----------------------------------------------------------------------------------------
    def trainable_modules(self):
        modules = {"student": self.student}
        if self.fake is not None:
            modules["fake"] = self.fake
        if self.stage_snapshots is not None:  # buffers only: checkpointed with the run, never trained
            modules["stage_snapshots"] = self.stage_snapshots
        return modules

    def ema_modules(self):
        return {"student": self.student}

    def parallel_modules(self):
        # the student, target and fake-score LoRAs all live in the teacher's UNet (the holders only list them)
        return {"unet": self.components.unet}

    def optimizer_groups(self):
        groups = [OptimizerGroup("student", list(self.student.parameters()), self.config.optim.student)]
        if self.fake is not None:
            groups.append(OptimizerGroup("fake", list(self.fake.parameters()), self.config.optim.fake_score))
        return groups

    def batches(self, seed: int) -> Iterator[dict[str, Any]]:
        from zoo.diffusion.distill_data import testbed_image_batches

        return testbed_image_batches(seed, int(self.config.data_seed), int(self.config.train.batch_size))

    def _guidance(self, b: int, stage: int) -> torch.Tensor:
        cfg = self.config
        if len(cfg.guidance_range) == 2:
            lo, hi = float(cfg.guidance_range[0]), float(cfg.guidance_range[1])
            return lo + (hi - lo) * torch.rand(b, device=self.device)
        return torch.full((b,), self.stage_scales[stage], device=self.device)

    def _eps(self, adapter: str | None, x, t, cond, uncond=None, w=None) -> torch.Tensor:
        from zoo.diffusion.guidance import cfg as combine

        unet = self.components.unet
        with self.using(adapter):
            if uncond is None:
                return unet(x, t, encoder_hidden_states=cond).sample
            both = unet(torch.cat([x, x]), torch.cat([t, t]), encoder_hidden_states=torch.cat([cond, uncond])).sample
        eps_c, eps_u = both.chunk(2)
        return combine(eps_c, eps_u, w.view(-1, 1, 1, 1).to(eps_c.dtype))

    def _stage(self, step: int) -> int:
        stage = stage_of(step, self.stage_steps)
        if stage != self.current_stage:  # a new stage continues from the student; the target restarts from it
            self._copy_student_to_target()
            self.current_stage = stage
        first_step = sum(int(n) for n in self.stage_steps[:stage])
        if (self.stage_snapshots is not None and stage > 0 and step == first_step
                and not self.stage_snapshots.done(stage - 1)):
            with self.ema_weights():  # the finished stage's student, as the final export would write it
                self.stage_snapshots.store(stage - 1, self.params[STUDENT])
        return stage

    def loss(self, group: str, step: int, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        c, cfg = self.components, self.config
        stage = self._stage(step)
        k = int(self.segments[stage])
        x0 = self.components.encode_images(batch["images"])
        b = x0.shape[0]
        captions = [("" if torch.rand(()).item() < float(cfg.uncond_prob) else text) for text in batch["captions"]]
        cond = c.encode_prompt(captions)
        uncond = self.uncond.expand(b, -1, -1)
        if group == "fake":
            return self._fake_loss(cond, b)
        self._update_target(float(cfg.target_ema))
        grid = self.grids[stage]
        t = grid[torch.randint(len(grid), (b,))].to(self.device)
        noise = torch.randn_like(x0)
        from zoo.diffusion.schedule import add_noise

        x0 = conflicting_images(x0, t, float(cfg.conflict_prob), int(cfg.conflict_min_timestep),
                                str(cfg.conflict_source))
        x_t = add_noise(x0, noise, t, c.alphas_cumprod)
        w = self._guidance(b, stage)
        guided = bool((w != 1.0).any())  # w = 1 everywhere: the teacher is the conditional model (one call)
        target, lower = tscd_targets(
            x_t, t, k, self.skips[stage],
            teacher_eps=lambda x, tt, rows: self._eps(None, x, tt, cond[rows], uncond[rows] if guided else None,
                                                      w[rows]),
            target_eps=lambda x, tt, rows: self._eps(TARGET, x, tt, cond[rows]),
            alphas_cumprod=c.alphas_cumprod)
        eps_student = self._eps(STUDENT, x_t, t, cond)
        loss = tscd_loss(eps_student, x_t, t, target, lower, c.alphas_cumprod, float(cfg.huber_c))
        out = {"consistency": loss.detach(), "segments": torch.tensor(float(k))}
        if self.fake is not None and k == 1:
            dm = self._score_distillation(cond, uncond, w, b)
            loss = loss + float(cfg.score_distill_weight) * dm
            out["dmd"] = dm.detach()
        out["loss"] = loss
        return out

    # -- optional score distillation (last stage) -----------------------------------------------------------------
    def _one_step_sample(self, cond: torch.Tensor, b: int, grad: bool) -> torch.Tensor:
        from zoo.diffusion.schedule import CLEAN, ddim_jump

        c = self.components
        noise = torch.randn(b, c.unet.config.in_channels, c.unet.config.sample_size, c.unet.config.sample_size,
                            device=self.device, dtype=c.dtype)
        t = torch.full((b,), len(c.alphas_cumprod) - 1, device=self.device, dtype=torch.long)
        with torch.set_grad_enabled(grad):
            eps = self._eps(STUDENT, noise, t, cond)
            return ddim_jump(noise, eps, t, CLEAN, c.alphas_cumprod)

    def _score_distillation(self, cond, uncond, w, b) -> torch.Tensor:
        from zoo.diffusion.losses import dmd_loss
        from zoo.diffusion.schedule import add_noise, x0_from_eps

        c = self.components
        x0 = self._one_step_sample(cond, b, grad=True)
        t = torch.randint(20, 981, (b,), device=self.device)
        with torch.no_grad():
            x_t = add_noise(x0.detach(), torch.randn_like(x0), t, c.alphas_cumprod)
            x0_real = x0_from_eps(x_t, self._eps(None, x_t, t, cond, uncond, w), t, c.alphas_cumprod)
            x0_fake = x0_from_eps(x_t, self._eps(FAKE, x_t, t, cond), t, c.alphas_cumprod)
        return dmd_loss(x0, x0_real, x0_fake)[0]

    def _fake_loss(self, cond, b) -> dict[str, torch.Tensor]:
        from zoo.diffusion.schedule import add_noise

        c = self.components
        if int(self.segments[self.current_stage]) != 1:
            zero = sum(p.sum() for p in self.fake.parameters()) * 0.0
            return {"loss": zero}
        with torch.no_grad():
            x0 = self._one_step_sample(cond, b, grad=False)
        t = torch.randint(0, len(c.alphas_cumprod), (b,), device=self.device)
        noise = torch.randn_like(x0)
        eps = self._eps(FAKE, add_noise(x0, noise, t, c.alphas_cumprod), t, cond)
        return {"loss": F.mse_loss(eps.float(), noise.float())}

    # -- export ---------------------------------------------------------------------------------------------------
    def _finished_stages(self) -> list[int]:
        """Stages (but the last) whose end-of-stage LoRA was recorded and that are N-step models (k > 1)."""
        if self.stage_snapshots is None:
            return []
        return [j for j in range(len(self.segments) - 1)
                if self.stage_snapshots.done(j) and int(self.segments[j]) > 1]

    def export_manifest(self) -> dict[str, Any]:
        cfg = self.config
        k = getattr(self, "_exporting_k", None)
        if k is not None:  # an N-step LoRA of an earlier stage (the published N-step recipe)
            sampler = {"scheduler": "ddim_trailing", "steps": k, "guidance_scale": 0.0, "min_steps": k,
                       "max_steps": 2 * k}
            return {"base_model": cfg.teacher, "lora": LORA_FILE, "kind": "lora", "lora_scale": 1.0,
                    "segments": [k], "sampler": sampler}
        sampler = {"scheduler": cfg.export_scheduler, "steps": int(cfg.export_steps), "guidance_scale": 0.0,
                   "min_steps": 1, "max_steps": 8}
        if cfg.export_scheduler == "tcd":
            sampler["eta"] = float(cfg.export_eta)
        if cfg.export_timesteps:
            sampler["timesteps"] = [int(t) for t in cfg.export_timesteps]
        manifest = {"base_model": cfg.teacher, "lora": LORA_FILE, "kind": "lora", "lora_scale": 1.0,
                    "segments": [int(k) for k in cfg.segments], "sampler": sampler}
        variants = [f"{int(self.segments[j])}step" for j in self._finished_stages()]
        if variants:
            manifest["variants"] = variants
        return manifest

    def export(self, out_dir: Path, metrics: dict[str, Any]) -> Path:
        from zoo.diffusion.lora_io import peft_adapter_to_kohya, save_lora
        from zoo.train.export import write_export_metadata

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        with self.ema_weights():
            state = peft_adapter_to_kohya(self.components.unet, STUDENT, dtype=torch.float16)
        save_lora(state, out_dir / LORA_FILE)  # the published Hyper-SD key format (kohya, with alpha)
        for j in self._finished_stages():
            self._export_stage(j, out_dir / f"{int(self.segments[j])}step", metrics)
        write_export_metadata(self, out_dir, metrics, files=[LORA_FILE])
        return out_dir

    @torch.no_grad()
    def _export_stage(self, stage: int, out_dir: Path, metrics: dict[str, Any]) -> None:
        """Write stage ``stage``'s LoRA (loaded into the idle target adapter for the key conversion) as a model."""
        from zoo.diffusion.lora_io import peft_adapter_to_kohya, save_lora
        from zoo.train.export import write_export_metadata

        for target, weight in zip(self.params[TARGET], self.stage_snapshots.weights(stage)):
            target.copy_(weight)
        save_lora(peft_adapter_to_kohya(self.components.unet, TARGET, dtype=torch.float16), out_dir / LORA_FILE)
        self._exporting_k = int(self.segments[stage])
        stage_end = {"step": sum(int(n) for n in self.stage_steps[: stage + 1])}  # its own training length
        try:
            write_export_metadata(self, out_dir, stage_end, files=[LORA_FILE])
        finally:
            self._exporting_k = None
        self._copy_student_to_target()
