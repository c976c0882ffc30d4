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
