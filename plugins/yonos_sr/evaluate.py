"""Scoring YONOS-SR models on held-out testbed images with the zoo's SR metrics (Y-channel PSNR / SSIM, border = scale).

Paper: Noroozi et al., arXiv 2401.17258 (reports PSNR/SSIM among its metrics). The metric code is
:mod:`zoo.sr_metrics` (the same as ``zoo eval-sr``); images are rounded to uint8 before scoring, as a saved PNG would be.
"""

from __future__ import annotations

import numpy as np
import torch

from zoo.sr_metrics import score_sr
from zoo_plugins.yonos_sr.model import YonosSRModel, degrade, upsample_lr


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """``[B, 3, H, W]`` in [0, 1] -> ``uint8 [B, H, W, 3]``."""
    array = images.detach().float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
    return np.round(array * 255.0).astype(np.uint8)


def mean_scores(sr: torch.Tensor, hr: torch.Tensor, scale: int) -> tuple[float, float]:
    """Mean Y-PSNR and Y-SSIM over a batch (border ``scale``), SR and HR in [0, 1]."""
    psnrs, ssims = [], []
    for sr_image, hr_image in zip(to_uint8(sr), to_uint8(hr)):
        scores = score_sr(sr_image, hr_image, scale)
        psnrs.append(scores["psnr"])
        ssims.append(scores["ssim"])
    return float(np.mean(psnrs)), float(np.mean(ssims))


def bicubic_baseline(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """Bicubic x``scale`` of the bicubic-downsampled HR (the same LR every model sees), in [0, 1]."""
    return upsample_lr(degrade(hr, scale), scale).clamp(0, 1)


@torch.no_grad()
def super_resolve(model: YonosSRModel, hr: torch.Tensor, scale: int, steps: int = 1, seed: int = 0,
                  batch_size: int = 64) -> tuple[torch.Tensor, int]:
    """SR of the bicubic-downsampled ``hr`` (``[B, 3, H, W]`` in [0, 1]) with the sampler's code path; returns the
    images in [0, 1] and the NFE per image."""
    from zoo_plugins.yonos_sr.sampler import YonosSRSampler

    sampler = YonosSRSampler(model, ref="in-memory", scale=scale, steps=steps)
    generator = torch.Generator().manual_seed(seed)
    outputs, nfe = [], 0
    for start in range(0, hr.shape[0], batch_size):
        lr = degrade(hr[start:start + batch_size], scale).clamp(0, 1)
        output, nfe = sampler.upscale_tensor(lr, scale, steps, generator)
        outputs.append(output.cpu())
    return torch.cat(outputs), nfe


def one_step_psnr(model: YonosSRModel, hr: torch.Tensor, scale: int) -> float:
    """Mean Y-PSNR of one-step SR (validation metric of the trainer)."""
    was_training = model.training
    model.eval()
    try:
        sr, _ = super_resolve(model, hr, scale, steps=1)
    finally:
        model.train(was_training)
    return mean_scores(sr, hr, scale)[0]


@torch.no_grad()
def reconstruction_psnr(model: YonosSRModel, hr: torch.Tensor) -> float:
    """Mean Y-PSNR of VAE reconstructions (posterior mode), border 0."""
    device = next(model.parameters()).device
    images = hr.to(device) * 2 - 1
    recon = ((model.vae.decode(model.vae.encode(images).latent_dist.mode()).sample + 1) / 2).clamp(0, 1)
    psnrs = [score_sr(a, b, 1, border=0)["psnr"] for a, b in zip(to_uint8(recon), to_uint8(hr))]
    return float(np.mean(psnrs))
