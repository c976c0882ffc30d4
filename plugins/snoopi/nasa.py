"""NASA (SNOOPI arXiv 2412.02687 §5.1, Algorithm 1) for this plugin: the processor lives in the core
(:mod:`zoo.negative_attention`) so that every sampler in the zoo accepts ``negative_prompt=`` + ``nasa_alpha=``;
this module re-exports it and adds NASA-T's per-sample strength draw (§5.3: alpha ~ U(0, 1) during training)."""

from __future__ import annotations

import torch

from zoo.negative_attention import NASAAttnProcessor, negative_attention, nasa_for_call

__all__ = ["NASAAttnProcessor", "negative_attention", "nasa_for_call", "sample_nasa_alpha"]


def sample_nasa_alpha(batch_size: int, low: float, high: float, generator: torch.Generator | None = None,
                      device="cpu") -> torch.Tensor:
    """Per-sample NASA strengths ``alpha ~ U(low, high)`` (NASA-T, SNOOPI Tab. 6: U(0, 1))."""
    u = torch.rand(batch_size, generator=generator)
    return (low + (high - low) * u).to(device)
