"""Config of the AGD trainer (torch-free). Defaults from cristianpjensen/agd's SD trainer (methods.md §4(b)); the
testbed sizes are set in ``testbed.yaml``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from zoo.train.config import OptimizerConfig, TrainingConfig


@dataclass
class AGDOptim:
    adapters: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(
        lr=1e-4, optimizer="adamw", scheduler="cosine", warmup_steps=500, min_lr_ratio=1e-4))
    """AdamW, lr 1e-4, 10% linear warm-up then cosine to lr·1e-4 (``get_opt_scheduler``)."""


@dataclass
class AGDConfig:
    train: TrainingConfig = field(default_factory=lambda: TrainingConfig(steps=5000, batch_size=64,
                                                                         checkpoint_every=500))
    optim: AGDOptim = field(default_factory=AGDOptim)
    teacher: str = "pkg:zoo.testbed/weights/teacher"
    """The frozen base model (also the CFG teacher whose trajectories are collected)."""
    hidden_dim: int = 320
    """Adapter width (SD default 320)."""
    use_timestep: bool = True
    use_prompt: bool = True
    trajectories: Optional[str] = None
    """Trajectory file; None = ``<run dir>/trajectories.safetensors``, collected by the trainer when missing."""
    num_prompts: int = 64
    """Prompts (one trajectory each) collected when no trajectory file exists. The paper uses 500 COCO captions;
    the default is sized for the testbed (``testbed.yaml`` uses 256)."""
    prompt_seed: int = 0
    """Seed of the testbed caption stream the prompts are drawn from."""
    guidance_min: float = 1.0
    guidance_max: float = 12.0
    """ω ~ U[guidance_min, guidance_max] per trajectory (SD: 1..12)."""
    collect_steps: int = 25
    """Sampling steps of each collected trajectory (the reference uses 999; few steps suffice on the testbed)."""
    scheduler: str = "DDIMScheduler"
    timestep_spacing: str = "trailing"
    early_steps: int = 0
    early_step_weight: float = 1.0
    """Training points are drawn uniformly over trajectories and steps, except that the first ``early_steps`` steps
    of every trajectory (the highest noise levels) are drawn ``early_step_weight`` times as often as the others.
    On the testbed the colour of an image is decided in the first 2-3 of 25 steps, where the adapters missed most
    of the guidance (docs/AGD-COLOUR.md). 0 / 1.0: uniform (the reference's sampling)."""
    sample_guidance_scale: float = 5.0
    """Recommended ω written into the exported zoo.json."""
