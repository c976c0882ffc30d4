"""SwiftBrush training configuration (torch-free).

Defaults follow the paper's README command (``VinAIResearch/SwiftBrush``: guidance 4.5, student lr 1e-6, LoRA lr 1e-3,
rank 64 / alpha 108, grad-clip 1.0, Adam) unless marked "testbed": those are scaled for the 32x32 CPU testbed, where
the issue's pixel-space prototype (student lr 1e-5, LoRA rank 16 on attention and conv layers, LoRA lr 1e-3, two LoRA
updates per student update) is the reference.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from zoo.diffusion.vsd_config import OneStepVSDConfig
from zoo.sdk import OptimizerConfig


@dataclass
class SwiftBrushOptim:
    student: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(
        lr=1e-6, optimizer="adam", max_grad_norm=1.0, every=1))
    """Student (one-step generator). Paper: lr 1e-6, Adam, grad-clip 1.0."""
    lora_teacher: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(
        lr=1e-3, optimizer="adam", max_grad_norm=1.0, every=1))
    """LoRA teacher (fake score). Paper: lr 1e-3, 1:1 with the student (set student.every=2 for 2 LoRA updates)."""


@dataclass
class SwiftBrushConfig(OneStepVSDConfig):
    """The shared one-step VSD fields (teacher, prompts, LoRA teacher, timestep ranges) plus SwiftBrush's own."""

    optim: SwiftBrushOptim = field(default_factory=SwiftBrushOptim)
    guidance_scale: float = 4.5
    """CFG scale (diffusers convention) of both teacher and LoRA teacher inside VSD. Paper README: 4.5."""
