"""Phase routing of Phased DMD (arXiv 2510.27684 §3): a few-step generator that is a mixture of experts, one per
SNR phase; a step at timestep ``t`` runs the expert of the phase that contains ``t``."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


def phase_of(timestep: int, boundaries: Sequence[int]) -> int:
    """Index of the phase containing ``timestep``: the number of boundaries ``b`` with ``timestep <= b``.

    Boundaries are the first timesteps of phases 1, 2, ... (descending): with ``[499]`` steps 999 and 749 belong to
    phase 0 and steps 499 and 249 to phase 1.
    """
    return sum(1 for b in boundaries if int(timestep) <= int(b))


def phase_steps(timesteps: Sequence[int], boundaries: Sequence[int]) -> list[list[int]]:
    """The denoising timesteps of each phase, in order."""
    phases: list[list[int]] = [[] for _ in range(len(boundaries) + 1)]
    for t in timesteps:
        phases[phase_of(t, boundaries)].append(int(t))
    return phases


def check_boundaries(timesteps: Sequence[int], boundaries: Sequence[int]) -> None:
    """Raise ``ValueError`` unless every boundary is one of the steps, descending, and every phase has a step."""
    steps = [int(t) for t in timesteps]
    for b in boundaries:
        if int(b) not in steps:
            raise ValueError(f"Phase boundary {b} is not one of the denoising timesteps {steps}; "
                             f"pick boundaries among them")
    if list(boundaries) != sorted(boundaries, reverse=True) or len(set(boundaries)) != len(boundaries):
        raise ValueError(f"Phase boundaries {list(boundaries)} must be distinct and descending")
    if any(not p for p in phase_steps(steps, boundaries)):
        raise ValueError(f"Phase boundaries {list(boundaries)} leave a phase without steps for {steps}")


class ExpertRouter(nn.Module):
    """Looks like one UNet to samplers (``config``, ``forward(sample, t, encoder_hidden_states)``, attention
    processors) and routes each call to the expert of ``t``'s phase. All samples of a call share one timestep."""

    def __init__(self, experts: Sequence[nn.Module], boundaries: Sequence[int]) -> None:
        super().__init__()
        if len(experts) != len(boundaries) + 1:
            raise ValueError(f"{len(experts)} experts for {len(boundaries) + 1} phases (boundaries {list(boundaries)})")
        self.experts = nn.ModuleList(experts)
        self.boundaries = [int(b) for b in boundaries]
        self.config = experts[0].config
        self.calls = [0] * len(experts)

    @property
    def dtype(self):
        return self.experts[0].dtype

    def forward(self, sample, timestep, encoder_hidden_states=None, **kwargs):
        t = torch.as_tensor(timestep).reshape(-1)
        index = phase_of(int(t[0]), self.boundaries)
        if t.numel() > 1 and any(phase_of(int(v), self.boundaries) != index for v in t):
            raise ValueError("ExpertRouter: one call must not mix timesteps of different phases")
        self.calls[index] += 1
        return self.experts[index](sample, timestep, encoder_hidden_states=encoder_hidden_states, **kwargs)

    # Attention processors of all experts, keyed "<expert>.<name>" (NASA and the attention backends use these).
    @property
    def attn_processors(self):
        return {f"{i}.{name}": proc for i, expert in enumerate(self.experts)
                for name, proc in expert.attn_processors.items()}

    def set_attn_processor(self, processors):
        if not isinstance(processors, dict):
            for expert in self.experts:
                expert.set_attn_processor(processors)
            return
        for i, expert in enumerate(self.experts):
            prefix = f"{i}."
            expert.set_attn_processor({k[len(prefix):]: v for k, v in processors.items() if k.startswith(prefix)})
