"""Config of the Hyper-SD TSCD trainer (torch-free). Defaults follow methods.md §3(a)-(b); no official code exists,
so values the paper does not state are marked (reconstruction) and chosen as in LCM / LCM-LoRA."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from zoo.train.config import OptimizerConfig, TrainingConfig

_LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2", "conv1",
                 "conv2", "conv_shortcut", "downsamplers.0.conv", "upsamplers.0.conv", "time_emb_proj"]


@dataclass
class HyperSDOptim:
    student: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(lr=1e-4))
    """The student LoRA (LCM-LoRA's learning rate; reconstruction)."""
    fake_score: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(lr=1e-4))
    """The fake score of the optional score-distillation term of the last stage (DMD-style, §3(a)(iii))."""


@dataclass
class HyperSDConfig:
    train: TrainingConfig = field(default_factory=lambda: TrainingConfig(steps=2000, batch_size=16))
    optim: HyperSDOptim = field(default_factory=HyperSDOptim)
    teacher: str = "pkg:zoo.testbed/weights/teacher"
    """The teacher pipeline (model reference); the student is this model plus a LoRA."""
    segments: List[int] = field(default_factory=lambda: [8, 4, 2, 1])
    """Progressive stages: number of segments k per stage (paper: 8 -> 4 -> 2 -> 1)."""
    stage_steps: List[int] = field(default_factory=list)
    """Optimizer steps per stage; empty = ``train.steps`` split evenly over the stages."""
    num_ddim_steps: int = 50
    """Teacher solver grid: the skip between t and t' is ``1000 / num_ddim_steps`` (LCM's 50; reconstruction)."""
    stage_ddim_steps: List[int] = field(default_factory=list)
    """One teacher grid per stage (overrides num_ddim_steps stage by stage; empty = num_ddim_steps throughout). A
    coarser grid means fewer chained consistency targets inside each segment, at a larger teacher solver step."""
    grid_at_segment_tops: bool = False
    """Anchor the teacher grid at each segment's top edge (``tscd.segment_grid``), so the N-step sampler's trailing
    timesteps are training timesteps; False: LCM's grid ``Δ - 1, 2Δ - 1, ..., T - 1`` (``tscd.teacher_grid``)."""
    guidance_scale: float = 5.0
    """CFG scale of the teacher solver step (diffusers convention; 1 = conditional only)."""
    guidance_range: List[float] = field(default_factory=list)
    """If two numbers [lo, hi]: draw the teacher's guidance per sample from U[lo, hi] (overrides guidance_scale)."""
    stage_guidance: List[float] = field(default_factory=list)
    """One CFG scale per stage (overrides guidance_scale stage by stage; empty = guidance_scale throughout). A higher
    scale trades diversity (FD) for colour/shape accuracy, and the N-step LoRAs are the stages' students, so each
    stage can sit at its own point of that trade-off."""
    target_ema: float = 0.95
    """EMA rate of the consistency target θ⁻ (LCM's 0.95; reconstruction)."""
    huber_c: float = 0.001
    """Pseudo-Huber constant of the distance (0 = MSE; LCM uses 0.001)."""
    lora_rank: int = 64
    """Student LoRA rank (the published files are rank 64, artifact-formats §1.1)."""
    lora_alpha: float = 64.0
    lora_targets: List[str] = field(default_factory=lambda: list(_LORA_TARGETS))
    uncond_prob: float = 0.1
    """Fraction of captions replaced by the empty prompt while training (keeps the unconditional branch alive)."""
    conflict_prob: float = 0.0
    """Fraction of training states at ``t >= conflict_min_timestep`` noised from something other than their own
    image (``conflict_source``; 0 = off). At sampling time the initial noise can by chance resemble a latent of
    another colour or shape; training states whose faint signal contradicts the caption show the student the CFG
    teacher's way back to the prompt (this project's addition; neither the paper nor LCM does this)."""
    conflict_min_timestep: int = 500
    """Lowest timestep of those states: below it the signal is strong, and such states never occur when sampling."""
    conflict_source: str = "other"
    """What those states are noised from: ``other`` (another example's image) or ``noise`` (nothing: pure noise, the
    sampler's first state; with SD's schedule a training state at t = 999 still carries 7 % of its image)."""
    score_distill_weight: float = 0.0
    """Weight of the DMD score-distillation term added in the last (k = 1) stage (0 = off; §3(a)(iii))."""
    fake_score_rank: int = 16
    data_seed: int = 0
    """Seed offset of the testbed image stream (x0 latents come from testbed images through the VAE)."""
    export_scheduler: str = "tcd"
    """Recommended scheduler written to the exported zoo.json (tcd: one LoRA for 1-8 steps, like the unified LoRA)."""
    export_steps: int = 4
    export_eta: float = 0.3
    export_timesteps: Optional[List[int]] = None
    export_stage_loras: bool = True
    """Also export the student LoRA as it was at the end of each earlier stage with k > 1 as an N-step model (N = k)
    in the sub-folder ``<k>step/`` of the export: DDIM trailing, N steps, guidance 0, like the published N-step
    LoRAs, which come from the stages of the same progressive run (paper §3.1)."""
