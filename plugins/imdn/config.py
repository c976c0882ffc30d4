"""IMDN training configuration (torch-free): the paper's recipe as defaults.

Recipe of "Lightweight Image Super-Resolution with Information Multi-distillation Network" (arXiv 1909.11856, Sec. 4.1)
and the official ``train_IMDN.py``: DIV2K HR images with MATLAB-bicubic LR, HR patches of 192, batch 16, random
flips and 90° rotations, L1 loss, Adam (β = 0.9, 0.999, ε = 1e-8) at 2e-4 halved every 200 epochs for 1000 epochs.
One official epoch is 1,000 iterations (16,000 patches: 800 images repeated 20 times), so the schedule is 1M steps
with the learning rate halved at 200k, 400k, 600k and 800k.

Distillation from a larger SR teacher (``distill.teacher``): the student's loss becomes
``hr_weight · L1(S(x), y) + teacher_weight · L1(S(x), T(x))`` with the teacher frozen.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from zoo.sdk import OptimizerConfig, TrainingConfig


@dataclass
class IMDNModelConfig:
    """The network being trained."""

    variant: str = "IMDN"
    """``IMDN`` (with CCA, the paper's model) or ``IMDN_RTC`` (IMDB_speed blocks without CCA)."""
    scale: int = 4
    """Upscaling factor (the paper trains x2, x3 and x4 separately)."""
    num_features: int = 64
    """Channels of the body (paper Sec. 4.1: 64; IMDN_RTC uses 12)."""
    num_blocks: int = 6
    """Number of IMDBs (paper: 6; IMDN_RTC: 5)."""
    init_from: str = ""
    """Weights to start from (a .pth/.safetensors IMDN file); tensors whose shape differs, e.g. the upsampler of
    another scale, keep their fresh initialisation. The author initialised x4 from the x2 model (GitHub issue #19)."""


@dataclass
class IMDNDataConfig:
    """Where training patches come from."""

    hr_dir: str = ""
    """Folder of HR images (PNG, JPEG, BMP, ...); LR images are made from them with MATLAB-style bicubic."""
    patch_size: int = 192
    """HR patch side (``train_IMDN.py --patch_size 192``); must be a multiple of the scale."""
    augment: bool = True
    """Random horizontal flip, vertical flip and transpose, each with probability 1/2 (``data/common.py``)."""
    cache_images: int = 32
    """Decoded HR/LR image pairs kept in memory (least recently used are dropped)."""


@dataclass
class IMDNDistillConfig:
    """Optional distillation from a larger SR teacher."""

    teacher: str = ""
    """IMDN-family weights file of the teacher (same scale as the student); empty: plain L1 training on HR."""
    teacher_weight: float = 1.0
    """Weight of ``L1(student(x), teacher(x))``."""
    hr_weight: float = 1.0
    """Weight of ``L1(student(x), HR)`` (0: learn from the teacher only)."""


@dataclass
class IMDNValidationConfig:
    """Optional PSNR/SSIM validation (Y channel, float Y, border = scale) during training."""

    lr_dir: str = ""
    hr_dir: str = ""


@dataclass
class IMDNOptim:
    student: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(
        lr=2e-4, optimizer="adam", betas=[0.9, 0.999], eps=1e-8, scheduler="multistep",
        milestones=[200_000, 400_000, 600_000, 800_000], gamma=0.5))
    """Adam 2e-4, halved every 200 epochs of 1,000 iterations (``train_IMDN.py``: --lr 2e-4 --step_size 200
    --gamma 0.5)."""


@dataclass
class IMDNConfig:
    train: TrainingConfig = field(default_factory=lambda: TrainingConfig(
        steps=1_000_000, batch_size=16, checkpoint_every=5_000, log_every=100))
    """1000 epochs × 1,000 iterations, batch 16 (``train_IMDN.py``)."""
    optim: IMDNOptim = field(default_factory=IMDNOptim)
    model: IMDNModelConfig = field(default_factory=IMDNModelConfig)
    data: IMDNDataConfig = field(default_factory=IMDNDataConfig)
    distill: IMDNDistillConfig = field(default_factory=IMDNDistillConfig)
    validation: IMDNValidationConfig = field(default_factory=IMDNValidationConfig)
