"""Tiny look-alikes of the published Hyper-SD files (artifact-formats.md §6) for offline tests.

:func:`kohya_lora_for` builds a kohya-format UNet LoRA (``lora_unet_*.lora_down.weight`` / ``lora_up`` / ``alpha``)
over the 14 Hyper-SD/DMD2 module patterns of a given UNet, with non-zero ``up`` weights so the LoRA changes outputs;
:func:`peft_lora_for` builds the PEFT-format (``unet.<module>.lora_A.weight``) equivalent.
"""

from __future__ import annotations

import torch


def _random_peft_state(unet, rank: int, seed: int, std: float = 0.02):
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    from zoo.diffusion.lora_io import LORA_TARGET_MODULES

    torch.manual_seed(seed)
    unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=list(LORA_TARGET_MODULES),
                                init_lora_weights=False), adapter_name="lookalike")
    state = {k: torch.randn_like(v) * std for k, v in get_peft_model_state_dict(unet, adapter_name="lookalike").items()}
    unet.delete_adapters("lookalike")
    return state


def kohya_lora_for(unet, rank: int = 4, alpha: float = 2.0, seed: int = 0, dtype=torch.float32, std: float = 0.02):
    """A kohya state dict (``lora_unet_<module>.lora_down.weight`` ... ``.alpha``) fitting ``unet``."""
    from zoo.diffusion.lora_io import peft_to_kohya

    return peft_to_kohya(_random_peft_state(unet, rank, seed, std), alpha, dtype=dtype)


def peft_lora_for(unet, rank: int = 4, seed: int = 0, prefix: str = "unet", std: float = 0.02):
    """A PEFT state dict (``<prefix>.<module>.lora_A.weight``) fitting ``unet`` (no alpha: scale 1)."""
    return {f"{prefix}.{k}": v for k, v in _random_peft_state(unet, rank, seed, std).items()}


def build_tiny_sdxl(path):
    """A tiny random ``StableDiffusionXLPipeline`` folder (artifact-formats.md §6.4 SDXL-like UNet, two 32-wide CLIP
    text encoders, byte-level tokenizers, SDXL's Euler scheduler config)."""
    from pathlib import Path

    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from zoo.tiny import byte_level_clip_tokenizer

    torch.manual_seed(0)
    tokenizer = byte_level_clip_tokenizer()
    text = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_attention_heads=4,
                num_hidden_layers=2, max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 2), attention_head_dim=(2, 4), use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=8, projection_class_embeddings_input_dim=80,
        cross_attention_dim=64, norm_num_groups=8)
    vae = AutoencoderKL(block_out_channels=(32, 64), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, layers_per_block=1,
                        norm_num_groups=8, sample_size=16)
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       steps_offset=1, timestep_spacing="leading")
    pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=CLIPTextModel(CLIPTextConfig(**text)),
                                     text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(projection_dim=32, **text)),
                                     tokenizer=tokenizer, tokenizer_2=tokenizer, unet=unet, scheduler=scheduler)
    pipe.save_pretrained(Path(path))
    return Path(path)
