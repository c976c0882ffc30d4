"""Scoring YONOS-SR models on held-out testbed images with the zoo's SR metrics (Y-channel PSNR / SSIM, border = scale).

Paper: Noroozi et al., arXiv 2401.17258 (reports PSNR/SSIM among its metrics). The metric code is
:mod:`zoo.sr_metrics` (the same as ``zoo eval-sr``); images are rounded to uint8 before scoring, as a saved PNG would be.
:func:`chroma_error` adds the colour check the Y-channel scores lack (mean |Cb| and |Cr| difference, BT.601), and
:func:`vae_round_trip` the colour path of the VAE alone (scripts/bench_sr_set5.py; docs/SR.md, "YONOS-SR on real
images").
"""

from __future__ import annotations

import numpy as np
import torch

from zoo.sr_metrics import PEAK, as_float255, modcrop, score_sr, shave
from zoo_plugins.yonos_sr.model import YonosSRModel, degrade, upsample_lr


def rgb_to_cbcr(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cb and Cr (float64, [16, 240]) of BT.601 YCbCr for an RGB ``[H, W, 3]`` image, the convention whose Y
    :func:`zoo.sr_metrics.rgb_to_y` computes (MATLAB ``rgb2ycbcr``, skimage ``rgb2ycbcr``)::

        Cb = 128 + (-37.797 R - 74.203 G + 112.0 B) / 255,  Cr = 128 + (112.0 R - 93.786 G - 18.214 B) / 255
    """
    rgb = as_float255(image)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb_to_cbcr expects an RGB image of shape [H, W, 3], got {rgb.shape}")
    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    cb = 128.0 + (-37.797 * red - 74.203 * green + 112.0 * blue) / PEAK
    cr = 128.0 + (112.0 * red - 93.786 * green - 18.214 * blue) / PEAK
    return cb, cr


def chroma_error(sr: np.ndarray, hr: np.ndarray, scale: int, border: int | None = None) -> dict[str, float]:
    """Mean absolute Cb and Cr difference (in 8-bit YCbCr levels) between an SR image and its ground truth, with the
    same cropping as :func:`zoo.sr_metrics.score_sr` (HR cropped to a multiple of ``scale``, ``border`` pixels,
    default ``scale``, removed on every side). A colour shift shows here while the Y-channel scores barely see it.
    """
    hr = modcrop(np.asarray(hr), int(scale))
    sr = np.asarray(sr)
    if sr.shape != hr.shape:
        raise ValueError(f"SR image {sr.shape} and ground truth {hr.shape} differ in shape")
    border = int(scale) if border is None else int(border)
    (sr_cb, sr_cr), (hr_cb, hr_cr) = rgb_to_cbcr(shave(sr, border)), rgb_to_cbcr(shave(hr, border))
    return {"cb": float(np.abs(sr_cb - hr_cb).mean()), "cr": float(np.abs(sr_cr - hr_cr).mean())}


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


@torch.no_grad()
def vae_round_trip(model: YonosSRModel, image: np.ndarray) -> np.ndarray:
    """``uint8 [H, W, 3]`` -> encode (posterior mode) -> decode -> ``uint8 [H, W, 3]``, with the sampler's value range
    ([0, 1] -> [-1, 1] and back) and its reflect padding to the model's size multiple. Whatever colour shift this
    shows comes from the VAE alone, not from the UNet."""
    device, dtype = next(model.parameters()).device, next(model.parameters()).dtype
    pixels = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255.0
    height, width = pixels.shape[-2:]
    multiple = model.size_multiple
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    pixels = pixels * 2.0 - 1.0
    if pad_h or pad_w:
        pixels = torch.nn.functional.pad(pixels, (0, pad_w, 0, pad_h), mode="reflect")
    decoded = model.decode(model.encode(pixels.to(device, dtype)))[..., :height, :width]
    return to_uint8((decoded.float() + 1.0) / 2.0)[0]
