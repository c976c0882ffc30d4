"""Config fields of the one-step VSD trainer (:mod:`zoo.diffusion.vsd_trainer`) shared by SwiftBrush and SNOOPI.

Torch-free, so the registry can read method configs that extend it without importing torch. Defaults are
SwiftBrush's (``VinAIResearch/SwiftBrush`` README and ``train_swiftbrush.py``); a method overrides what its paper
changes (e.g. SNOOPI's LoRA alpha) and adds its own fields and ``optim`` section.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from zoo.train.config import TrainingConfig


@dataclass
class OneStepVSDConfig:
    train: TrainingConfig = field(default_factory=TrainingConfig)
    teacher: str = "pkg:zoo.testbed/weights/teacher"
    """Model reference of the teacher pipeline (SD2.1-base in SwiftBrush)."""
    prompts: str = "testbed"
    """``testbed``: captions of the testbed's shapes world; or a text file with one prompt per line."""
    lora_rank: int = 64
    """LoRA-teacher rank. SwiftBrush README: 64."""
    lora_alpha: float = 108.0
    """LoRA-teacher alpha. SwiftBrush README: 108."""
    lora_targets: list[str] = field(default_factory=lambda: ["to_q", "to_k", "to_v", "to_out.0", "proj_in",
                                                             "proj_out", "ff.net.0.proj", "ff.net.2", "conv1",
                                                             "conv2"])
    """Modules that get the LoRA (SwiftBrush: to_q, to_v; the testbed prototype: attention and conv layers)."""
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
    student_init: str = ""
    """Where the student starts. ``""``: a copy of the teacher (SwiftBrush v1). Otherwise a model reference whose
    own sampler's UNet becomes the student's start, e.g. a few-step model (SwiftBrush v2 starts from SD-Turbo, arXiv
    2408.14176 §4.1; on the testbed ``plugins/hyper_sd/testbed``: its LoRA fused into the teacher) or a student
    folder. Must have the teacher's UNet layout."""
    init_merge: float = 1.0
    """Weight merging with the start (SwiftBrush v2 §4.4, ``theta = lam theta_VSD + (1 - lam) theta_init``): the
    weight ``lam`` of the trained (EMA) student in what validation samples and export writes. 1.0: the trained student
    alone. Training itself never sees the merge."""
    regression_weight: float = 0.0
    """DMD's regression loss (DMD = VSD + regression; Yin et al., arXiv 2311.18828, Eq. 9): ``regression_weight *
    mse(f_theta(z), x0_teacher(z))`` on a fixed set of teacher ODE pairs, added to the student loss. 0: off (VSD
    alone)."""
    regression_pairs: int = 1024
    """Number of (noise, prompt, teacher output) pairs, made once at build time by the teacher's deterministic DDIM
    from t = T - 1 (``regression_steps`` steps, CFG ``regression_guidance_scale``), from their own seeded noise."""
    regression_steps: int = 25
    regression_guidance_scale: float = 3.0
    regression_batch_size: int = 0
    """Pairs per student update (0: ``train.batch_size``); drawn with their own seeded generator per step."""
    validate_prompts: list[str] = field(default_factory=lambda: ["a red circle", "a blue square"])
