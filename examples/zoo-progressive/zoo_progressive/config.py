"""Configuration of ``progressive`` (torch-free: the registry reads it without importing torch).

Defaults are one round of guided progressive distillation on distill-zoo's CPU testbed; ``testbed.yaml`` next to this
file is the recipe of the committed student.
"""

from dataclasses import dataclass, field

from zoo.sdk import TEACHER_REF, OptimizerConfig, TrainingConfig


@dataclass
class ProgressiveOptim:
    student: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(lr=1e-4, max_grad_norm=1.0))


@dataclass
class ProgressiveConfig:
    teacher: str = TEACHER_REF
    """The teacher: a diffusers Stable Diffusion folder or hub reference (default: distill-zoo's testbed)."""
    guidance_scale: float = 3.0
    """CFG scale of the teacher's steps, folded into the student (Meng et al. fix w per model in stage 2)."""
    student_steps: int = 2
    """DDIM steps of the student (trailing timesteps; 2 gives 999 -> 499 -> clean)."""
    teacher_substeps: int = 2
    """Teacher DDIM steps per student step (2 = one round of progressive distillation)."""
    data_seed: int = 0
    """Seed of the testbed image stream that is forward-noised to the student's timesteps."""
    validate_per_prompt: int = 8
    """Images per colour-shape prompt in validation (12 prompts)."""
    train: TrainingConfig = field(default_factory=lambda: TrainingConfig(steps=600, batch_size=16, ema_decay=0.0))
    optim: ProgressiveOptim = field(default_factory=ProgressiveOptim)
