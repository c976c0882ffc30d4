"""Tiny random Stable Diffusion models for tests and contract checks (built offline in about a second).

:func:`build_tiny_sd` saves a genuine diffusers ``StableDiffusionPipeline`` folder (UNet ~1M parameters, VAE,
2-layer CLIP text encoder, an in-memory byte-level CLIP tokenizer, SD1.5 betas) with random weights. Use it where
a test needs the SD code path but not image quality; the trained testbed (``zoo.testbed``) is for quality.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

SD15_SCHEDULER = {
    "_class_name": "DDIMScheduler",
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "timestep_spacing": "leading",
}


def byte_level_clip_tokenizer():
    """A real ``CLIPTokenizer`` over the 256 byte characters (with and without ``</w>``): 514 tokens, no files."""
    from transformers import CLIPTokenizer
    from tokenizers.pre_tokenizers import ByteLevel

    chars = sorted(ByteLevel.alphabet())
    vocab: dict[str, int] = {}
    for token in chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]:
        vocab.setdefault(token, len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77, bos_token="<|startoftext|>",
                         eos_token="<|endoftext|>", pad_token="<|endoftext|>", unk_token="<|endoftext|>")


def build_tiny_sd(path: str | Path, seed: int = 0, cross_attention_dim: int = 32, norm_num_groups: int = 8) -> Path:
    """Write a tiny random SD pipeline folder at ``path`` and return the path. ``norm_num_groups=32`` gives the UNet
    the SD1.5 layout ComfyUI's UNet can hold (its GroupNorm always has 32 groups)."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    path = Path(path)
    torch.manual_seed(seed)
    tokenizer = byte_level_clip_tokenizer()
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=cross_attention_dim, intermediate_size=37, num_attention_heads=4,
        num_hidden_layers=2, max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=cross_attention_dim, attention_head_dim=8, norm_num_groups=norm_num_groups)
    vae = AutoencoderKL(block_out_channels=(32, 64), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, layers_per_block=1,
                        norm_num_groups=8, sample_size=16)
    scheduler = DDIMScheduler.from_config(SD15_SCHEDULER)
    for name, part in [("unet", unet), ("vae", vae), ("text_encoder", text_encoder), ("tokenizer", tokenizer),
                       ("scheduler", scheduler)]:
        part.save_pretrained(path / name)
    (path / "model_index.json").write_text(json.dumps({
        "_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.42.1",
        "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
        "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
        "scheduler": ["diffusers", "DDIMScheduler"], "safety_checker": [None, None],
        "feature_extractor": [None, None], "image_encoder": [None, None], "requires_safety_checker": False,
    }, indent=2))
    (path / "zoo.json").write_text(json.dumps({"method": "base", "task": "text-to-image", "base_model": None,
                                               "sampler": {"steps": 4, "guidance_scale": 3.0}}, indent=2))
    return path
