"""SwiftBrush training configuration (torch-free).

Defaults follow the paper's README command (``VinAIResearch/SwiftBrush``: guidance 4.5, student lr 1e-6, LoRA lr 1e-3,
rank 64 / alpha 108, grad-clip 1.0, Adam) unless marked "testbed": those are scaled for the 32x32 CPU testbed, where
the issue's pixel-space prototype (student lr 1e-5, LoRA rank 16 on attention and conv layers, LoRA lr 1e-3, two LoRA
updates per student update) is the reference.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from zoo.sdk import OptimizerConfig, TrainingConfig


@dataclass
class SwiftBrushOptim:
    student: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(
        lr=1e-6, optimizer="adam", max_grad_norm=1.0, every=1))
    """Student (one-step generator). Paper: lr 1e-6, Adam, grad-clip 1.0."""
    lora_teacher: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(
        lr=1e-3, optimizer="adam", max_grad_norm=1.0, every=1))
    """LoRA teacher (fake score). Paper: lr 1e-3, 1:1 with the student (set student.every=2 for 2 LoRA updates)."""


@dataclass
class SwiftBrushConfig:
    train: TrainingConfig = field(default_factory=TrainingConfig)
    optim: SwiftBrushOptim = field(default_factory=SwiftBrushOptim)
    teacher: str = "pkg:zoo.testbed/weights/teacher"
    """Model reference of the teacher pipeline (SD2.1-base in the paper)."""
    prompts: str = "testbed"
    """``testbed``: captions of the testbed's shapes world; or a text file with one prompt per line."""
    guidance_scale: float = 4.5
    """CFG scale (diffusers convention) of both teacher and LoRA teacher inside VSD. Paper README: 4.5."""
    lora_rank: int = 64
    """LoRA-teacher rank. Paper README: 64."""
    lora_alpha: float = 108.0
    """LoRA-teacher alpha. Paper README: 108."""
    lora_targets: list[str] = field(default_factory=lambda: ["to_q", "to_k", "to_v", "to_out.0", "proj_in",
                                                             "proj_out", "ff.net.0.proj", "ff.net.2", "conv1",
                                                             "conv2"])
    """Modules that get the LoRA (paper: to_q, to_v; the prototype: attention and conv layers)."""
    student_t_min: int = 20
    """VSD timesteps t ~ U[student_t_min, student_t_max) (train_swiftbrush.py: [0.02, 0.981] * 1000)."""
    student_t_max: int = 981
    lora_t_min: int = 0
    """LoRA-teacher timesteps t ~ U[lora_t_min, lora_t_max)."""
    lora_t_max: int = 1000
    caption_dropout: float = 0.1
    """Probability of the empty prompt in the LoRA-teacher loss (so the LoRA teacher supports CFG)."""
    generator_timestep: int = 999
    """Timestep the one-step generator is told (T - 1)."""
    validate_prompts: list[str] = field(default_factory=lambda: ["a red circle", "a blue square"])
