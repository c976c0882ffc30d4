"""AGD adapter training (Algorithm 2 of arXiv 2503.07274): regress the CFG prediction stored along the teacher's guided
trajectories with the frozen base UNet plus adapters, in one forward pass:

    loss = || eps_{θ,φ}(x_t, t, c, ω) - eps_cfg ||²       (θ frozen, φ = adapters; no teacher pass while training)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import torch
import torch.nn.functional as F

from zoo.train.trainer import OptimizerGroup, Trainer

from zoo_plugins.agd.adapters import AGDAdapters
from zoo_plugins.agd.sampler import ADAPTER_FILE
from zoo_plugins.agd.trajectories import TrajectorySet, collect_trajectories


def testbed_prompts(n: int, seed: int) -> list[str]:
    """``n`` captions of the testbed's data stream (the stand-in for the paper's COCO captions)."""
    from zoo.testbed.data import ShapesDataset

    return list(ShapesDataset(seed).batch(n).captions)


def step_weights(steps: int, early_steps: int, early_step_weight: float) -> torch.Tensor | None:
    """Relative probabilities ``[steps]`` of drawing each step of a trajectory: ``early_step_weight`` for the first
    ``early_steps``, 1 for the others; None when that is uniform."""
    from zoo.errors import ConfigError

    if early_steps < 0 or early_step_weight <= 0:
        raise ConfigError(f"early_steps={early_steps}, early_step_weight={early_step_weight}: use early_steps >= 0 "
                          f"and early_step_weight > 0 (e.g. 5 and 4)")
    if early_steps == 0 or early_step_weight == 1.0:
        return None
    weights = torch.ones(steps, dtype=torch.float64)
    weights[:early_steps] = early_step_weight
    return weights


class AGDTrainer(Trainer):
    method_name = "agd"

    def build(self) -> None:
        from zoo.hub import resolve_model
        from zoo.t2i import SDComponents

        cfg = self.config
        self.method_name = "agd"
        teacher = resolve_model(cfg.teacher)
        self.components = SDComponents.from_folder(teacher.path, device=self.device)
        unet = self.components.unet
        unet.requires_grad_(False)
        self.adapters = AGDAdapters.for_unet(unet, hidden_dim=int(cfg.hidden_dim), use_timestep=bool(cfg.use_timestep),
                                             use_prompt=bool(cfg.use_prompt))
        self.adapters.attach(unet)
        path = Path(cfg.trajectories) if cfg.trajectories else Path(cfg.train.output_dir) / "trajectories.safetensors"
        if not path.is_file():
            self._collect(path)
        self.trajectories = TrajectorySet.load(path)

    def _collect(self, path: Path) -> None:
        from tqdm.auto import tqdm

        cfg = self.config
        prompts = testbed_prompts(int(cfg.num_prompts), int(cfg.prompt_seed))
        bar = tqdm(total=len(prompts), desc="AGD: collecting CFG trajectories", unit="traj")

        def progress(done, total):
            bar.update(done - bar.n)

        with self.adapters.disabled():
            data = collect_trajectories(self.components, prompts, float(cfg.guidance_min), float(cfg.guidance_max),
                                        int(cfg.collect_steps), seed=int(cfg.prompt_seed), scheduler=cfg.scheduler,
                                        timestep_spacing=cfg.timestep_spacing, progress=progress)
        bar.close()
        data.save(path)

    def trainable_modules(self):
        return {"adapters": self.adapters}

    def parallel_modules(self):
        # the adapters run from hooks inside the UNet's cross-attention: shard the UNet and each adapter
        return {"unet": self.components.unet, "adapters": self.adapters.layers}

    def optimizer_groups(self):
        params = [p for p in self.adapters.parameters() if p.requires_grad]
        return [OptimizerGroup("adapters", params, self.config.optim.adapters)]

    def batches(self, seed: int) -> Iterator[dict[str, torch.Tensor]]:
        generator = torch.Generator().manual_seed(int(seed))
        size = int(self.config.train.batch_size)
        weights = step_weights(self.trajectories.num_steps, int(self.config.early_steps),
                               float(self.config.early_step_weight))
        while True:
            if weights is None:  # uniform over all points (the reference's sampling)
                yield self.trajectories.points(torch.randint(len(self.trajectories), (size,), generator=generator))
                continue
            traj = torch.randint(self.trajectories.num_trajectories, (size,), generator=generator)
            step = torch.multinomial(weights, size, replacement=True, generator=generator)
            yield self.trajectories.points(traj * self.trajectories.num_steps + step)

    def loss(self, group: str, step: int, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        device, dtype = self.device, self.components.dtype
        x_t = batch["x_t"].to(device, dtype)
        self.adapters.set_guidance(batch["guidance"].to(device))
        eps = self.components.unet(x_t, batch["timesteps"].to(device),
                                   encoder_hidden_states=batch["prompt_embeds"].to(device, dtype)).sample
        loss = F.mse_loss(eps.float(), batch["eps_cfg"].to(device).float())
        return {"loss": loss}

    def export_manifest(self) -> dict[str, Any]:
        cfg = self.config
        return {"base_model": cfg.teacher, "adapters": self.adapters.config, "adapter_file": ADAPTER_FILE,
                "sampler": {"steps": int(cfg.collect_steps), "guidance_scale": float(cfg.sample_guidance_scale),
                            "scheduler": cfg.scheduler, "timestep_spacing": cfg.timestep_spacing}}

    def export(self, out_dir: Path, metrics: dict[str, Any]) -> Path:
        from safetensors.torch import save_file

        from zoo.train.checkpoint import unwrap
        from zoo.train.export import write_export_metadata

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        with self.ema_weights():
            state = {k: v.detach().cpu().to(torch.float16 if v.is_floating_point() else v.dtype).contiguous()
                     for k, v in unwrap(self.adapters).state_dict().items()}
        save_file(state, str(out_dir / ADAPTER_FILE))
        write_export_metadata(self, out_dir, metrics, files=[ADAPTER_FILE])
        return out_dir
