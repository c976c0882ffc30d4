"""LoRA-Enhanced Distillation on Guided Diffusion Models (Golnari, arXiv 2312.06899): guidance distillation where the
student is the frozen teacher plus a LoRA, so teacher and student share one copy of the base weights (the teacher pass
is the same UNet with its adapters disabled). Written from methods.md §6; the paper's code is not public.

Objective (Meng et al. stage 1 with the shared-base trick), per micro-batch::

    x0 = VAE(image); t ~ U{0..T-1}; x_t = alpha_t x0 + sigma_t eps                       (forward-noised data)
    eps_cfg = eps_u + w (eps_c - eps_u)        teacher: adapters and w-embedding off, no grad, one batched call
    eps_s   = unet_lora(x_t, t, c, w)          student: LoRA and w-embedding on, ONE pass, conditional prompt only
    loss    = || eps_s - eps_cfg ||²
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn.functional as F

from zoo.diffusion.guidance import cfg


class SharedBaseStudent:
    """One UNet holding the frozen teacher, a trainable PEFT LoRA (adapter ``student``) and the w-embedding."""

    ADAPTER = "student"

    def __init__(self, unet: torch.nn.Module, rank: int, lora_alpha: float, target_modules, guidance_embedding) -> None:
        from peft import LoraConfig

        self.unet = unet
        unet.requires_grad_(False)
        present = {name.rsplit(".", 1)[-1] for name, _ in unet.named_modules()}
        targets = [t for t in target_modules if "." in t or t in present]
        unet.add_adapter(LoraConfig(r=int(rank), lora_alpha=float(lora_alpha), target_modules=list(targets),
                                    init_lora_weights=True), adapter_name=self.ADAPTER)
        unet.set_adapter(self.ADAPTER)
        for param in self.lora_parameters():
            param.requires_grad_(True)
        self.guidance_embedding = guidance_embedding.attach(unet)

    def lora_parameters(self) -> list[torch.nn.Parameter]:
        return [p for n, p in self.unet.named_parameters() if "lora_" in n and f".{self.ADAPTER}." in n + "."]

    @contextlib.contextmanager
    def teacher_mode(self) -> Iterator[None]:
        """The frozen teacher: LoRA adapters and the w-embedding disabled."""
        self.unet.disable_adapters()
        try:
            with self.guidance_embedding.disabled():
                yield
        finally:
            self.unet.enable_adapters()

    @torch.no_grad()
    def teacher_cfg(self, x_t, t, cond, uncond, guidance) -> torch.Tensor:
        """``eps_u + w (eps_c - eps_u)`` of the teacher (one batched call); ``guidance`` is a float or ``[B]``."""
        with self.teacher_mode():
            t2 = torch.cat([t, t]) if torch.as_tensor(t).ndim else t
            both = self.unet(torch.cat([x_t, x_t]), t2, encoder_hidden_states=torch.cat([cond, uncond])).sample
        eps_c, eps_u = both.chunk(2)
        w = torch.as_tensor(guidance, dtype=eps_c.dtype, device=eps_c.device).reshape(-1, *([1] * (x_t.ndim - 1)))
        return cfg(eps_c, eps_u, w)

    def student_eps(self, x_t, t, cond, guidance) -> torch.Tensor:
        self.guidance_embedding.set_guidance(guidance)
        return self.unet(x_t, t, encoder_hidden_states=cond).sample

    def loss(self, x_t, t, cond, uncond, guidance) -> torch.Tensor:
        """``|| eps_s(x_t, t, c, w) - eps_cfg ||²`` (mean over elements)."""
        target = self.teacher_cfg(x_t, t, cond, uncond, guidance)
        return F.mse_loss(self.student_eps(x_t, t, cond, guidance).float(), target.float())
