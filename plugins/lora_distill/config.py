"""Config of the LoRA-distill trainer (torch-free). The paper (arXiv 2312.06899) publishes no hyper-parameters beyond
"dreambooth-LoRA defaults"; values below are those defaults (lr 1e-4, rank 4 -> we use 16 for the testbed) and Meng et
al.'s w range (reconstruction, methods.md §6)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

from zoo.train.config import OptimizerConfig, TrainingConfig


@dataclass
class LoRADistillOptim:
    student: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(lr=1e-4))
    """LoRA and w-embedding parameters (diffusers train_dreambooth_lora default lr)."""


@dataclass
class LoRADistillConfig:
    train: TrainingConfig = field(default_factory=lambda: TrainingConfig(steps=2000, batch_size=16))
    optim: LoRADistillOptim = field(default_factory=LoRADistillOptim)
    teacher: str = "pkg:zoo.testbed/weights/teacher"
    guidance_min: float = 1.0
    guidance_max: float = 8.0
    """w ~ U[guidance_min, guidance_max] per sample; equal values train a fixed-w student (the paper's special case)."""
    lora_rank: int = 16
    lora_alpha: float = 16.0
    lora_targets: List[str] = field(default_factory=lambda: ["to_q", "to_k", "to_v", "to_out.0", "proj_in",
                                                             "proj_out", "ff.net.0.proj", "ff.net.2", "conv1",
                                                             "conv2", "time_emb_proj"])
    guidance_features: int = 256
    data_seed: int = 0
    """Seed offset of the testbed image stream (x0 = VAE latents of testbed images, forward-noised)."""
    sample_steps: int = 25
    sample_guidance_scale: float = 5.0
    """Recommended sampler settings written into the exported zoo.json."""
