"""The guidance-scale input of the LoRA-distilled student: a sinusoidal embedding of w added to the UNet's timestep
embedding (Meng et al., "On Distillation of Guided Diffusion Models", arXiv 2210.03142, stage 1; recommended for
LoRA-Enhanced Distillation in methods.md §6). The last layer is zero-initialised, so at init the student is the
teacher's conditional model; a fixed-w student is the special case of a constant input.

Attached with a forward hook on ``unet.time_embedding`` (the UNet's module tree is unchanged)."""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
from torch import nn

W_SCALE = 100.0
"""w is embedded as ``w * W_SCALE`` with the timestep embedding's frequencies (w ∈ [1, 12] -> [100, 1200])."""


class GuidanceEmbedding(nn.Module):
    def __init__(self, temb_dim: int, num_features: int = 256) -> None:
        super().__init__()
        self.config = {"temb_dim": temb_dim, "num_features": num_features}
        self.num_features = num_features
        self.linear_1 = nn.Linear(num_features, temb_dim)
        self.act = nn.SiLU()
        self.linear_2 = nn.Linear(temb_dim, temb_dim)
        nn.init.zeros_(self.linear_2.weight)
        nn.init.zeros_(self.linear_2.bias)
        self.enabled = True
        self._guidance: Any = 1.0
        self._handle = None

    @classmethod
    def for_unet(cls, unet: nn.Module, num_features: int = 256) -> "GuidanceEmbedding":
        return cls(unet.time_embedding.linear_2.out_features, num_features)

    def forward(self, guidance: torch.Tensor) -> torch.Tensor:
        from diffusers.models.embeddings import get_timestep_embedding

        features = get_timestep_embedding(guidance.float() * W_SCALE, self.num_features, flip_sin_to_cos=True,
                                          downscale_freq_shift=0)
        return self.linear_2(self.act(self.linear_1(features.to(self.linear_1.weight.dtype))))

    def set_guidance(self, guidance: torch.Tensor | float) -> None:
        self._guidance = guidance

    def attach(self, unet: nn.Module) -> "GuidanceEmbedding":
        self.detach()

        def hook(module, args, output):
            if not self.enabled:
                return output
            w = torch.as_tensor(self._guidance, device=output.device, dtype=torch.float32).reshape(-1)
            if w.numel() == 1:
                w = w.expand(output.shape[0])
            if w.numel() != output.shape[0]:
                raise ValueError(f"guidance has {w.numel()} values for a UNet batch of {output.shape[0]}")
            return output + self(w).to(output.dtype)

        self._handle = unet.time_embedding.register_forward_hook(hook)
        return self

    def detach(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    @contextlib.contextmanager
    def disabled(self) -> Iterator[None]:
        previous, self.enabled = self.enabled, False
        try:
            yield
        finally:
            self.enabled = previous
