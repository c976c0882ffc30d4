"""Configurations and builders of the testbed's Stable Diffusion parts (diffusers / transformers classes).

The testbed is a genuine ``StableDiffusionPipeline``: a ``CLIPTokenizer`` (:mod:`zoo.testbed.tokenizer`), a small
``CLIPTextModel``, a small ``AutoencoderKL`` (32x32 RGB <-> 4x8x8 latents, downsampling 4) and a
``UNet2DConditionModel`` trained with epsilon prediction on the SD1.5 noise schedule. Saved with ``save_pretrained``
it has the same folder layout as SD1.5, so samplers and trainers run exactly the code path they run on SD1.5.

Everything here imports torch lazily (inside the builders) so that importing the module stays cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zoo.testbed.data import IMAGE_SIZE

LATENT_CHANNELS = 4
VAE_DOWNSAMPLE = 4
LATENT_SIZE = IMAGE_SIZE // VAE_DOWNSAMPLE  # 8

TEXT_ENCODER_CONFIG: dict[str, Any] = dict(
    hidden_size=64,
    intermediate_size=128,
    num_attention_heads=4,
    num_hidden_layers=2,
    max_position_embeddings=77,
    projection_dim=64,
)
"""``CLIPTextConfig`` fields (vocabulary size and special token ids come from the tokenizer)."""

VAE_CONFIG: dict[str, Any] = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 3,
    up_block_types=("UpDecoderBlock2D",) * 3,
    block_out_channels=(16, 32, 64),
    layers_per_block=1,
    latent_channels=LATENT_CHANNELS,
    norm_num_groups=8,
    sample_size=IMAGE_SIZE,
)
"""``AutoencoderKL`` config: three blocks = two 2x downsamplings, 32x32 pixels -> 8x8 latents.
``scaling_factor`` is set after training from the latents' standard deviation, as SD does."""

UNET_CONFIG: dict[str, Any] = dict(
    sample_size=LATENT_SIZE,
    in_channels=LATENT_CHANNELS,
    out_channels=LATENT_CHANNELS,
    block_out_channels=(32, 64, 64),
    layers_per_block=1,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=TEXT_ENCODER_CONFIG["hidden_size"],
    attention_head_dim=8,
    norm_num_groups=16,
)
"""``UNet2DConditionModel`` config for 4x8x8 latents (8 -> 4 -> 2), cross-attention at 8x8 and 4x4 and in the middle."""

SCHEDULER_CONFIG: dict[str, Any] = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    prediction_type="epsilon",
    clip_sample=False,
    set_alpha_to_one=False,
    steps_offset=1,
)
"""The SD1.5 noise schedule (``DDIMScheduler`` / ``DDPMScheduler`` fields)."""


def build_text_encoder(tokenizer):
    """A randomly initialised ``CLIPTextModel`` sized for the testbed, matching ``tokenizer``'s special ids."""
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **TEXT_ENCODER_CONFIG,
    )
    return CLIPTextModel(config)


def build_vae(scaling_factor: float = 1.0):
    from diffusers import AutoencoderKL

    return AutoencoderKL(**VAE_CONFIG, scaling_factor=scaling_factor)


def build_unet():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(**UNET_CONFIG)


def build_scheduler():
    from diffusers import DDIMScheduler

    return DDIMScheduler(**SCHEDULER_CONFIG)


def build_training_scheduler():
    from diffusers import DDPMScheduler

    fields = {k: v for k, v in SCHEDULER_CONFIG.items() if k != "set_alpha_to_one"}
    return DDPMScheduler(**fields)


def build_pipeline(tokenizer, text_encoder, vae, unet, scheduler=None):
    """Assemble a ``StableDiffusionPipeline`` (no safety checker, no feature extractor) from the parts."""
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
        scheduler=scheduler if scheduler is not None else build_scheduler(),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )


def count_parameters(module) -> int:
    return sum(p.numel() for p in module.parameters())


def weights_size(folder: str | Path) -> int:
    """Total size in bytes of every file under ``folder``."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())
