"""Configuration of YONOS-SR training (torch-free: ``zoo list`` / ``zoo info`` import this module).

YONOS-SR (Noroozi et al., "You Only Need One Step: Fast Super-Resolution with Stable Diffusion via Scale
Distillation", arXiv 2401.17258, ECCV 2024) has no public code; the paper's hyper-parameters (learning rate, batch,
iterations, loss weighting, parameterisation) are not known to us (docs/SR.md, "YONOS-SR"). Defaults below are the
choices of this re-implementation, each marked as such, and fit the CPU testbed.

One run trains one *stage* (``stage=...``):

``regress``
    the x0 objective of Sec. 3 against the clean HR latent ``z_h`` at scale ``scale`` (the x2 teacher of round 0, or
    the "direct" baseline trained at x4);
``distill``
    scale distillation (Sec. 3.1): the student at ``scale`` regresses the frozen teacher (``teacher=`` model folder,
    trained at ``scale / 2``) on the same noisy latent ``z_t`` and timestep;
``decoder``
    decoder fine-tuning (Sec. 3.2): the UNet and encoder are frozen, the VAE decoder is trained on one-step latents;
``autoencoder``
    trains the VAE itself (only needed for the testbed, which has no pretrained SD VAE).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from zoo.sdk import OptimizerConfig, TrainingConfig

STAGES = ("regress", "distill", "decoder", "autoencoder")
LOSS_WEIGHTINGS = ("truncated_snr", "x0", "snr_plus_one")


@dataclass
class YonosData:
    """Where HR training crops come from."""

    source: str = "testbed"
    """``testbed``: procedural shape scenes (``plugins/yonos_sr/testbed.py``); or a folder of images (random crops)."""
    crop_size: int = 32
    """HR crop side in pixels (a multiple of ``scale`` times the VAE factor). Choice of this re-implementation."""
    texture: str = "none"
    """``testbed`` only: ``none`` (flat shapes) or ``stripes`` (shapes filled with stripes finer than the x2 LR can
    show, so the x2 teacher is uncertain about them; see ``plugins/yonos_sr/testbed.py``)."""


@dataclass
class YonosOptim:
    """One optimizer: the UNet (``regress``/``distill``), the decoder (``decoder``) or the VAE (``autoencoder``)."""

    model: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(lr=2e-4, max_grad_norm=1.0))


@dataclass
class YonosConfig:
    """A YONOS-SR training run (see the module docstring for the stages)."""

    train: TrainingConfig = field(default_factory=lambda: TrainingConfig(steps=2000, batch_size=16, checkpoint_every=500))
    optim: YonosOptim = field(default_factory=YonosOptim)
    data: YonosData = field(default_factory=YonosData)
    stage: str = "regress"
    """One of ``regress``, ``distill``, ``decoder``, ``autoencoder``."""
    scale: int = 2
    """Upscaling factor trained in this stage (the student's scale for ``distill``; paper: 2 -> 4 (-> 8))."""
    init_from: str = ""
    """Model folder / hub ref to start from (``distill``: default the teacher, as in the paper; ``decoder``: the
    distilled model). Empty for ``regress``: a new model on the testbed VAE (``vae_from``)."""
    teacher: str = ""
    """``distill`` only: the model trained at ``scale / 2`` (frozen)."""
    vae_from: str = "pkg:zoo_plugins.yonos_sr/testbed"
    """``regress`` from scratch: model folder whose ``vae/`` is used (frozen); default the committed testbed model's
    VAE, so ``zoo train yonos_sr`` alone trains an x2 teacher on the testbed."""
    loss_weighting: str = "truncated_snr"
    """w(lambda_t) of the x0 loss: ``truncated_snr`` = max(SNR, 1) (Salimans & Ho, arXiv 2202.00512, Sec. 4),
    ``x0`` = 1, ``snr_plus_one`` = SNR + 1 (equal to the v-loss). The paper's choice is unknown."""
    decoder_l2_weight: float = 1.0
    """``decoder`` stage: loss = L1 + this * MSE on pixels (the paper's decoder losses are unknown)."""
    kl_weight: float = 1e-6
    """``autoencoder`` stage: weight of the KL term (SD's VAE uses a tiny KL weight)."""
    vae_blocks: list[int] = field(default_factory=lambda: [16, 32, 64])
    """``autoencoder`` stage: channels per VAE block; the VAE factor is 2 ** (number of blocks - 1)."""
    vae_latent_channels: int = 4
    """``autoencoder`` stage: latent channels (SD: 4). The UNet of a later ``regress`` stage follows the VAE."""
    validation_images: int = 8
    """Number of held-out testbed crops scored (Y-PSNR) by ``validate``."""
