"""Exponential moving average of model weights (Polyak averaging), as used by consistency and DMD-style distillation.

The shadow weights follow ``ema <- decay * ema + (1 - decay) * weight`` after every step (one fused ``lerp`` per
module); they are kept in float32 on the weights' device and saved in every checkpoint.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn


def _unwrap(module: nn.Module) -> nn.Module:
    from zoo.train.checkpoint import unwrap

    return unwrap(module)


class EMA:
    """EMA of the trainable parameters (``requires_grad``) of several named modules."""

    def __init__(self, modules: dict[str, nn.Module], decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        self.modules = {name: _unwrap(module) for name, module in modules.items()}
        self.names: dict[str, list[str]] = {}
        self.params: dict[str, list[nn.Parameter]] = {}
        self.shadow: dict[str, list[torch.Tensor]] = {}
        for name, module in self.modules.items():
            named = [(key, p) for key, p in module.named_parameters() if p.requires_grad]
            self.names[name] = [key for key, _ in named]
            self.params[name] = [p for _, p in named]
            self.shadow[name] = [p.detach().float().clone() for _, p in named]

    @torch.no_grad()
    def update(self) -> None:
        """One EMA step for every module: ``ema += (1 - decay) * (weight - ema)``."""
        weight = 1.0 - self.decay
        for name, shadow in self.shadow.items():
            if not shadow:
                continue
            current = [p.detach().float() for p in self.params[name]]
            torch._foreach_lerp_(shadow, current, weight)

    def state_dict(self, name: str) -> dict[str, torch.Tensor]:
        """The EMA weights of module ``name`` keyed like its ``named_parameters``."""
        return dict(zip(self.names[name], self.shadow[name]))

    @torch.no_grad()
    def load_state_dict(self, name: str, state: dict[str, torch.Tensor]) -> None:
        missing = [key for key in self.names[name] if key not in state]
        if missing:
            raise KeyError(f"EMA state of {name!r} lacks {len(missing)} weights, e.g. {missing[0]!r}")
        for key, tensor in zip(self.names[name], self.shadow[name]):
            tensor.copy_(state[key])

    @contextlib.contextmanager
    def swapped(self) -> Iterator[None]:
        """Within the block the modules hold the EMA weights; the trained weights are restored afterwards."""
        backup = {name: [p.detach().clone() for p in params] for name, params in self.params.items()}
        try:
            with torch.no_grad():
                for name, params in self.params.items():
                    for p, s in zip(params, self.shadow[name]):
                        p.copy_(s)
            yield
        finally:
            with torch.no_grad():
                for name, params in self.params.items():
                    for p, b in zip(params, backup[name]):
                        p.copy_(b)
