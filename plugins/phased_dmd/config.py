"""Phased DMD training configuration (torch-free).

Paper values (arXiv 2510.27684, via the LightX2V defaults; unverified): fake:generator updates 5:1, fake-score lr
4e-7, generator lr 5e-5 (LoRA); 4 steps in 2 phases with the boundary at the middle denoising step. Values marked
"testbed" are scaled for the 32x32 CPU testbed (full-UNet experts, higher learning rates, fewer steps).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from zoo.sdk import OptimizerConfig, TrainingConfig


@dataclass
class PhasedDMDOptim:
    generator: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(
        lr=5e-5, optimizer="adamw", betas=[0.9, 0.999], weight_decay=0.01, max_grad_norm=10.0, every=5))
    """Generator experts; updated every 5th step (DMD2 two-time-scale rule, dfake_gen_update_ratio 5)."""
    fake_score: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(
        lr=1e-4, optimizer="adamw", betas=[0.9, 0.999], weight_decay=0.01, max_grad_norm=10.0, every=1))
    """Fake scores (one LoRA per phase on the shared teacher base); updated every step."""


@dataclass
class PhasedDMDConfig:
    train: TrainingConfig = field(default_factory=TrainingConfig)
    optim: PhasedDMDOptim = field(default_factory=PhasedDMDOptim)
    teacher: str = "pkg:zoo.testbed/weights/teacher"
    prompts: str = "testbed"
    steps: int = 4
    """Number of denoising steps (trailing timesteps: 4 -> [999, 749, 499, 249])."""
    phase_boundaries: list[int] = field(default_factory=lambda: [499])
    """Timesteps where a new phase (and expert) starts; each must be one of the denoising steps."""
    guidance_scale: float = 4.5
    """Teacher CFG inside the DM loss (diffusers convention); the fake score runs without CFG."""
    lora_rank: int = 16
    """Fake-score LoRA rank (one adapter per phase on the teacher's base weights)."""
    lora_alpha: float = 16.0
    lora_targets: list[str] = field(default_factory=lambda: ["to_q", "to_k", "to_v", "to_out.0", "proj_in",
                                                             "proj_out", "ff.net.0.proj", "ff.net.2", "conv1",
                                                             "conv2"])
    t_min: int = 20
    """DM-loss timesteps t ~ U[max(t_min, s + margin), t_max) above the phase end s."""
    t_max: int = 981
    score_timestep_margin: int = 20
    """Keep t >= s + margin in the subinterval fake-score loss (LightX2V score_timestep_margin = 20)."""
    norm_clip_min: float = 1e-4
    """Floor of DMD2's per-sample normaliser (LightX2V norm_clip_min)."""
    caption_dropout: float = 0.0
    """Probability of the empty prompt in the fake-score loss (DMD2 uses none)."""
    stochastic: bool = False
    """Sampler and back-simulation: re-noise with fresh noise between steps (DMD2 / LCM style) instead of the
    deterministic DDIM jump along the predicted noise (Phased DMD's Euler steps)."""
    validate_prompts: list[str] = field(default_factory=lambda: ["a red circle", "a blue square"])
