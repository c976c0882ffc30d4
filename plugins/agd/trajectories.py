"""CFG-guided sampling trajectories of the teacher: AGD's training data (Algorithm 1 of arXiv 2503.07274).

For each prompt, ω is drawn from ``U[guidance_min, guidance_max]`` and the teacher is sampled with CFG at ω; at every
step the pipeline's actual input ``x_t`` and the guided prediction ``eps_cfg = eps_u + ω (eps_c - eps_u)`` are stored
(the reference stores them as float16 memmaps; ``agd/sd/sample_trajectories.py``). Because the pairs lie ON the guided
trajectory, ``scheduler.step(eps_cfg[i], t[i], x_t[i])`` replays ``x_t[i + 1]`` (methods.md §4(h) 4).

Storage: one safetensors file (``x_t``, ``eps_cfg`` ``[N, S, C, H, W]`` in float16 by default, ``timesteps`` ``[S]``,
``guidance`` ``[N]``, ``prompt_embeds`` ``[N, L, D]``, ``x_final``) with the prompts and the scheduler config as JSON
metadata.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from zoo.errors import FileMissingError, WeightsError


@dataclass
class TrajectorySet:
    x_t: torch.Tensor
    eps_cfg: torch.Tensor
    timesteps: torch.Tensor
    guidance: torch.Tensor
    prompt_embeds: torch.Tensor
    x_final: torch.Tensor
    prompts: list[str]
    scheduler: dict[str, Any]
    """``{"class_name": ..., "config": {...}, "steps": S}`` — enough to rebuild the scheduler and replay."""

    @property
    def num_trajectories(self) -> int:
        return int(self.x_t.shape[0])

    @property
    def num_steps(self) -> int:
        return int(self.x_t.shape[1])

    def __len__(self) -> int:
        return self.num_trajectories * self.num_steps

    def points(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        """Training points by flat index (trajectory * steps + step), as float32 tensors."""
        traj, step = index // self.num_steps, index % self.num_steps
        return {"x_t": self.x_t[traj, step].float(), "eps_cfg": self.eps_cfg[traj, step].float(),
                "timesteps": self.timesteps[step], "guidance": self.guidance[traj].float(),
                "prompt_embeds": self.prompt_embeds[traj].float()}

    def split(self, holdout: int) -> tuple["TrajectorySet", "TrajectorySet"]:
        """The first ``N - holdout`` trajectories and the last ``holdout`` ones."""
        cut = self.num_trajectories - holdout

        def part(sl: slice) -> "TrajectorySet":
            return TrajectorySet(self.x_t[sl], self.eps_cfg[sl], self.timesteps, self.guidance[sl],
                                 self.prompt_embeds[sl], self.x_final[sl], self.prompts[sl], self.scheduler)
        return part(slice(0, cut)), part(slice(cut, None))

    def make_scheduler(self):
        import diffusers

        scheduler = getattr(diffusers, self.scheduler["class_name"]).from_config(self.scheduler["config"])
        scheduler.set_timesteps(self.scheduler["steps"])
        return scheduler

    def replay_error(self, trajectory: int = 0) -> float:
        """Max |scheduler.step(eps_cfg[i], t[i], x_t[i]) - x_t[i+1]| along one trajectory (0 up to storage precision)."""
        scheduler = self.make_scheduler()
        worst = 0.0
        for i, t in enumerate(scheduler.timesteps):
            x = self.x_t[trajectory, i].float()[None]
            nxt = scheduler.step(self.eps_cfg[trajectory, i].float()[None], t, x).prev_sample
            reference = self.x_t[trajectory, i + 1] if i + 1 < self.num_steps else self.x_final[trajectory]
            worst = max(worst, float((nxt[0] - reference.float()).abs().max()))
        return worst

    # -- files ----------------------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {"x_t": self.x_t, "eps_cfg": self.eps_cfg, "timesteps": self.timesteps, "guidance": self.guidance,
                   "prompt_embeds": self.prompt_embeds, "x_final": self.x_final}
        metadata = {"prompts": json.dumps(self.prompts), "scheduler": json.dumps(self.scheduler, default=str),
                    "format": "agd-trajectories-v1"}
        tmp = path.with_name(f".{path.name}.tmp")
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "TrajectorySet":
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise FileMissingError(f"Trajectory file not found: {path}; collect it first (AGD trainer does this)")
        try:
            with safe_open(str(path), framework="pt") as handle:
                meta = handle.metadata() or {}
                tensors = {k: handle.get_tensor(k) for k in handle.keys()}
            return cls(prompts=json.loads(meta["prompts"]), scheduler=json.loads(meta["scheduler"]), **tensors)
        except (KeyError, TypeError, json.JSONDecodeError, OSError, RuntimeError) as exc:
            raise WeightsError(f"{path.name} is not an AGD trajectory file ({str(exc).splitlines()[0][:100]}); "
                               f"collect the trajectories again") from None


@torch.no_grad()
def collect_trajectories(components, prompts: Sequence[str], guidance_min: float, guidance_max: float, steps: int,
                         seed: int = 0, batch_size: int = 16, scheduler: str = "DDIMScheduler",
                         timestep_spacing: str = "trailing", storage_dtype: torch.dtype = torch.float16,
                         progress=None) -> TrajectorySet:
    """Algorithm 1: sample the CFG teacher once per prompt with ω ~ U[guidance_min, guidance_max] and record
    (x_t, eps_cfg) at every step. ``components`` is a :class:`zoo.t2i.SDComponents` of the teacher."""
    from zoo.diffusion.guidance import cfg

    generator = torch.Generator("cpu").manual_seed(int(seed))
    prompts = list(prompts)
    n = len(prompts)
    guidance = guidance_min + (guidance_max - guidance_min) * torch.rand(n, generator=generator)
    xs, epss, finals, embeds = [], [], [], []
    c = components
    size = c.default_size
    template = c.new_scheduler(scheduler, timestep_spacing=timestep_spacing)
    for start in range(0, n, batch_size):
        chunk = prompts[start:start + batch_size]
        b = len(chunk)
        w = guidance[start:start + b].to(c.device).view(-1, 1, 1, 1)
        cond = c.encode_prompt(chunk)
        uncond = c.encode_prompt([""] * b)
        latents = c.initial_latents(b, size, size, seed=int(seed) * 100003 + start)
        sched = c.new_scheduler(scheduler, timestep_spacing=timestep_spacing)
        sched.set_timesteps(steps)
        x_steps, eps_steps = [], []
        for t in sched.timesteps:
            both = c.unet(torch.cat([latents, latents]), t, encoder_hidden_states=torch.cat([cond, uncond])).sample
            eps_c, eps_u = both.chunk(2)
            eps = cfg(eps_c, eps_u, w.to(eps_c.dtype))
            x_steps.append(latents.to(storage_dtype).cpu())
            eps_steps.append(eps.to(storage_dtype).cpu())
            latents = sched.step(eps, t, latents).prev_sample
        xs.append(torch.stack(x_steps, 1))
        epss.append(torch.stack(eps_steps, 1))
        finals.append(latents.to(storage_dtype).cpu())
        embeds.append(cond.to(storage_dtype).cpu())
        if progress is not None:
            progress(min(start + b, n), n)
    template.set_timesteps(steps)
    return TrajectorySet(torch.cat(xs), torch.cat(epss), template.timesteps.cpu().long(), guidance.float(),
                         torch.cat(embeds), torch.cat(finals), prompts,
                         {"class_name": scheduler, "config": dict(template.config), "steps": steps})
