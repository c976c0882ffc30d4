"""SNOOPI (PG-SB + NASA-T) training configuration (torch-free).

PG-SB = SwiftBrush VSD with a random guidance scale kappa ~ U(kappa_min, kappa_max) per sample, the same kappa for
the teacher and the LoRA teacher (arXiv 2412.02687 §4.1, Tab. 6: U(0.5, 4) for SD1.5/SD2.1). NASA-T (§5.3): the
teacher's CFG uses a negative prompt instead of the empty prompt, and the student runs NASA with alpha ~ U(0, 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from zoo.diffusion.vsd_config import OneStepVSDConfig
from zoo.sdk import OptimizerConfig


@dataclass
class SnoopiOptim:
    student: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(
        lr=1e-6, optimizer="adamw", max_grad_norm=1.0, every=1))
    """Tab. 6: student lr 1e-6, AdamW."""
    lora_teacher: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(
        lr=1e-3, optimizer="adamw", max_grad_norm=1.0, every=1))
    """Tab. 6: LoRA-teacher lr 1e-3, AdamW."""


@dataclass
class SnoopiConfig(OneStepVSDConfig):
    """The shared one-step VSD fields (teacher, prompts, LoRA teacher, timestep ranges) plus PG-SB and NASA-T."""

    optim: SnoopiOptim = field(default_factory=SnoopiOptim)
    lora_alpha: float = 128.0
    """Tab. 6: LoRA teacher r = 64, scaling gamma = 128."""
    kappa_min: float = 0.5
    """PG-SB guidance range, diffusers convention (SNOOPI's kappa is the diffusers scale). Tab. 6: U(0.5, 4)."""
    kappa_max: float = 4.0
    nasa_t: bool = False
    """NASA-T: negative prompts in the teacher's CFG and NASA (random alpha) in the student."""
    negative_prompts: list[str] = field(default_factory=list)
    """NASA-T negative prompts (the paper uses 10K quality terms); empty with nasa_t=True is an error."""
    nasa_alpha_min: float = 0.0
    """NASA-T alpha ~ U(nasa_alpha_min, nasa_alpha_max) per sample. Tab. 6: U(0, 1)."""
    nasa_alpha_max: float = 1.0
    nasa_alpha: float = 0.5
    """NASA strength first written into the exported zoo.json (paper form; paper: 0.1-0.3 for SD). Calibrate the trained
    model with ``scripts/bench_nasa.py --calibrate --write``, which replaces it with the measured setting."""
