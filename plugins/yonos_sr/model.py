"""The YONOS-SR latent super-resolution model: a VAE plus a UNet that sees the LR latent beside the noisy HR latent.

Paper: Noroozi, Hadji, Martinez, Bulat, Tzimiropoulos, "You Only Need One Step: Fast Super-Resolution with Stable
Diffusion via Scale Distillation", arXiv 2401.17258 (ECCV 2024). No official code or weights exist; this is a
re-implementation from the paper's description (docs/SR.md, "YONOS-SR"), written on diffusers.

Notation (the paper's, after progressive distillation, Salimans & Ho, arXiv 2202.00512)::

    x_h, x_l         HR image and LR image (LR bicubic-upsampled to the HR size before encoding)
    z_h, z_l         their latents: E(x) * scaling_factor (posterior mode)
    z_t              alpha_t z_h + sigma_t eps, alpha_t = sqrt(ᾱ_t), sigma_t = sqrt(1 - ᾱ_t)
    ẑ(z_t, z_l, t)   the model's clean-latent prediction (here from a v-prediction head: ẑ = alpha_t z_t - sigma_t v)

Design choices of this re-implementation (unknown in the paper): v-prediction, a zero-terminal-SNR schedule
(``rescale_betas_zero_snr``; Lin et al., arXiv 2305.08891) so that t = 999 is pure noise at training and inference
alike, and a learned constant cross-attention context (the "empty prompt" of a text-to-image UNet).

Folder layout (``save`` / ``load``): ``vae/`` (AutoencoderKL), ``unet/`` (UNet2DConditionModel, 8 input channels),
``scheduler/`` (DDIMScheduler config), ``context.safetensors`` (the constant context), ``zoo.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zoo.diffusion.schedule import x0_eps_from_output
from zoo.sdk import MANIFEST_NAME, FileMissingError, InputError

SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "rescale_betas_zero_snr": True,
    "prediction_type": "v_prediction",
    "timestep_spacing": "trailing",
    "set_alpha_to_one": True,
    "clip_sample": False,
    "steps_offset": 0,
}
"""SD's training betas, rescaled to zero terminal SNR; trailing spacing, so one step is t = 999 (docs/SR.md §10.1)."""

CONTEXT_FILE = "context.safetensors"


def new_scheduler(config: dict[str, Any] | None = None):
    """A ``DDIMScheduler`` with :data:`SCHEDULER_CONFIG` (updated by ``config``)."""
    from diffusers import DDIMScheduler

    return DDIMScheduler.from_config({**SCHEDULER_CONFIG, **(config or {})})


def widen_conv_in(unet, extra_channels: int = 4):
    """Give a text-to-image UNet ``extra_channels`` more input channels, zero-initialised (InstructPix2Pix style).

    The widened UNet computes exactly what the original did whatever the extra channels hold, so a pretrained SD
    UNet starts as itself and learns to use the LR latent. Returns the UNet (modified in place).
    """
    old = unet.conv_in
    new = nn.Conv2d(old.in_channels + extra_channels, old.out_channels, old.kernel_size, old.stride, old.padding,
                    bias=old.bias is not None)
    with torch.no_grad():
        new.weight.zero_()
        new.weight[:, : old.in_channels].copy_(old.weight)
        if old.bias is not None:
            new.bias.copy_(old.bias)
    new.to(device=old.weight.device, dtype=old.weight.dtype)
    unet.conv_in = new
    unet.register_to_config(in_channels=old.in_channels + extra_channels)
    return unet


def bicubic_resize(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic resize of ``[B, C, H, W]`` images with antialiasing when shrinking (PIL-like)."""
    return F.interpolate(images, size=size, mode="bicubic", align_corners=False, antialias=True)


def degrade(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """The bicubic degradation: ``[B, C, H, W]`` HR to ``[B, C, H/scale, W/scale]`` LR (H, W multiples of scale)."""
    height, width = hr.shape[-2:]
    if height % scale or width % scale:
        raise InputError(f"HR size {height}x{width} is not a multiple of the scale {scale}; crop it first")
    return bicubic_resize(hr, (height // scale, width // scale))


def upsample_lr(lr: torch.Tensor, scale: int) -> torch.Tensor:
    """The LR path's first step: bicubic x``scale`` back to the HR size (Sec. 3: "upsampled, then encoded")."""
    height, width = lr.shape[-2:]
    return bicubic_resize(lr, (height * scale, width * scale))


class YonosSRModel(nn.Module):
    """VAE + conditional UNet + constant context, and the maths that ties them together.

    Attributes:
        vae: ``AutoencoderKL``; ``vae.config.scaling_factor`` scales latents to about unit variance.
        unet: ``UNet2DConditionModel`` with ``in_channels = 2 * latent_channels``: ``[z_t, z_l]``.
        context: ``[1, tokens, cross_attention_dim]`` constant cross-attention input.
        scheduler_config: the DDIM scheduler's config (its ``alphas_cumprod`` defines z_t).
    """

    def __init__(self, vae, unet, context: torch.Tensor | None = None,
                 scheduler_config: dict[str, Any] | None = None) -> None:
        super().__init__()
        latent_channels = vae.config.latent_channels
        if unet.config.in_channels != 2 * latent_channels or unet.config.out_channels != latent_channels:
            raise InputError(
                f"UNet has in/out channels {unet.config.in_channels}/{unet.config.out_channels}; YONOS-SR needs "
                f"{2 * latent_channels}/{latent_channels} (noisy latent + LR latent); widen it with widen_conv_in()")
        self.vae = vae
        self.unet = unet
        if context is None:
            context = torch.zeros(1, 1, unet.config.cross_attention_dim)
        self.context = nn.Parameter(context.detach().clone())
        scheduler = new_scheduler(scheduler_config)
        self.scheduler_config = dict(scheduler.config)
        self.register_buffer("alphas_cumprod", scheduler.alphas_cumprod.clone().float(), persistent=False)

    # -- geometry ---------------------------------------------------------------------------------------------------
    @property
    def vae_factor(self) -> int:
        """Pixels per latent cell (2 ** number of downsamplings)."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def size_multiple(self) -> int:
        """HR sizes must be multiples of this: the VAE factor times the UNet's total downsampling."""
        return self.vae_factor * 2 ** (len(self.unet.config.block_out_channels) - 1)

    @property
    def prediction_type(self) -> str:
        return self.scheduler_config["prediction_type"]

    # -- VAE ----------------------------------------------------------------------------------------------------------
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` images in [-1, 1] -> scaled latents (posterior mode, as for z_l and z_h in the paper)."""
        posterior = self.vae.encode(images).latent_dist
        return posterior.mode() * self.vae.config.scaling_factor

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> images in about [-1, 1] (not clamped)."""
        return self.vae.decode(latents / self.vae.config.scaling_factor).sample

    def encode_lr(self, lr: torch.Tensor, scale: int) -> torch.Tensor:
        """z_l: LR images in [-1, 1] -> bicubic x``scale`` -> encoder."""
        return self.encode(upsample_lr(lr, scale))

    # -- denoiser -----------------------------------------------------------------------------------------------------
    def forward(self, z_t: torch.Tensor, z_l: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """Raw UNet output (v for the default scheduler) on ``cat([z_t, z_l])`` with the constant context."""
        context = self.context.to(z_t.dtype).expand(z_t.shape[0], -1, -1)
        timesteps = torch.as_tensor(timesteps, device=z_t.device).reshape(-1).expand(z_t.shape[0])
        return self.unet(torch.cat([z_t, z_l], dim=1), timesteps, encoder_hidden_states=context).sample

    def predict_x0(self, z_t: torch.Tensor, z_l: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """ẑ(z_t, z_l, t): the clean-latent prediction (x0 from the v / eps / sample head)."""
        output = self(z_t, z_l, timesteps)
        x0, _ = x0_eps_from_output(output, z_t, timesteps, self.alphas_cumprod, self.prediction_type)
        return x0

    # -- persistence --------------------------------------------------------------------------------------------------
    def save(self, folder: str | Path, manifest: dict[str, Any] | None = None, half: bool = False) -> Path:
        """Write ``vae/``, ``unet/``, ``scheduler/``, ``context.safetensors`` and (if given) ``zoo.json``."""
        from diffusers import DDIMScheduler
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        variant_dtype = torch.float16 if half else None
        for name in ("vae", "unet"):
            module = getattr(self, name)
            if variant_dtype is not None:
                module = _copy_as(module, variant_dtype)
            module.save_pretrained(folder / name, safe_serialization=True)
        DDIMScheduler.from_config(self.scheduler_config).save_pretrained(folder / "scheduler")
        context = self.context.detach().cpu().contiguous()
        save_file({"context": context.half() if half else context}, str(folder / CONTEXT_FILE))
        if manifest is not None:
            (folder / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
        return folder

    @classmethod
    def load(cls, folder: str | Path, device: str | torch.device = "cpu",
             dtype: torch.dtype | None = None) -> "YonosSRModel":
        """Load a folder written by :meth:`save` (weights in float32 unless ``dtype`` is given)."""
        from diffusers import AutoencoderKL, UNet2DConditionModel
        from safetensors.torch import load_file

        folder = Path(folder)
        for part in ("vae", "unet", "scheduler", CONTEXT_FILE):
            if not (folder / part).exists():
                raise FileMissingError(f"{folder} is not a YONOS-SR model folder: it has no '{part}'; "
                                       f"train one with 'zoo train yonos_sr' or pass the right folder")
        dtype = dtype or torch.float32
        vae = AutoencoderKL.from_pretrained(folder / "vae", torch_dtype=dtype)
        unet = UNet2DConditionModel.from_pretrained(folder / "unet", torch_dtype=dtype)
        context = load_file(str(folder / CONTEXT_FILE))["context"].to(dtype)
        scheduler_config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
        scheduler_config = {k: v for k, v in scheduler_config.items() if not k.startswith("_")}
        model = cls(vae, unet, context, scheduler_config)
        return model.to(device=device, dtype=dtype)


def _copy_as(module: nn.Module, dtype: torch.dtype) -> nn.Module:
    import copy

    return copy.deepcopy(module).to(dtype)


# -- architectures ---------------------------------------------------------------------------------------------------

def build_vae(block_out_channels: tuple[int, ...] = (32, 64, 64), latent_channels: int = 4,
              scaling_factor: float = 1.0):
    """A small SD-style ``AutoencoderKL`` (one ResNet layer per block; factor 2 ** (len(blocks) - 1))."""
    from diffusers import AutoencoderKL

    blocks = len(block_out_channels)
    return AutoencoderKL(
        in_channels=3, out_channels=3, block_out_channels=tuple(block_out_channels),
        down_block_types=("DownEncoderBlock2D",) * blocks, up_block_types=("UpDecoderBlock2D",) * blocks,
        latent_channels=latent_channels, layers_per_block=1, norm_num_groups=8, scaling_factor=scaling_factor)


def build_unet(latent_channels: int = 4, block_out_channels: tuple[int, ...] = (32, 64),
               cross_attention_dim: int = 32, attention_head_dim: int = 8):
    """A small SD-style ``UNet2DConditionModel`` with ``2 * latent_channels`` inputs ([z_t, z_l]) and one
    cross-attention level (the deepest), as in the doc's CPU design (docs/SR.md §11)."""
    from diffusers import UNet2DConditionModel

    levels = len(block_out_channels)
    down = ("DownBlock2D",) * (levels - 1) + ("CrossAttnDownBlock2D",)
    up = ("CrossAttnUpBlock2D",) + ("UpBlock2D",) * (levels - 1)
    return UNet2DConditionModel(
        in_channels=2 * latent_channels, out_channels=latent_channels, block_out_channels=tuple(block_out_channels),
        layers_per_block=1, down_block_types=down, up_block_types=up, cross_attention_dim=cross_attention_dim,
        attention_head_dim=attention_head_dim, norm_num_groups=8)
