"""Optimizers and learning-rate schedules built from :class:`zoo.train.config.OptimizerConfig`.

The learning rate is a pure function of the global step (:func:`lr_factor`), written into the optimizer before each
update; no scheduler object carries state, so resuming needs nothing but the step.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import torch


def build_optimizer(params: Iterable[torch.nn.Parameter], config: Any) -> torch.optim.Optimizer:
    """``torch.optim.AdamW`` / ``Adam`` / ``SGD`` (momentum = ``betas[0]``) with the config's hyper-parameters."""
    params = list(params)
    beta1, beta2 = (float(b) for b in config.betas)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=float(config.lr), betas=(beta1, beta2), eps=float(config.eps),
                                 weight_decay=float(config.weight_decay))
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=float(config.lr), betas=(beta1, beta2), eps=float(config.eps),
                                weight_decay=float(config.weight_decay))
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=float(config.lr), momentum=beta1, weight_decay=float(config.weight_decay))
    raise ValueError(f"unknown optimizer {config.optimizer!r}")


def lr_factor(config: Any, step: int, total_steps: int) -> float:
    """Multiplier of ``config.lr`` at the 0-based global ``step`` of a run of ``total_steps`` steps.

    1. Linear warm-up: ``(step + 1) / warmup_steps`` for the first ``warmup_steps`` steps.
    2. Then, with progress ``p = (step - warmup) / (total - warmup - 1)`` in [0, 1]:
       ``constant``: 1; ``linear``: ``1 - (1 - m) p``; ``cosine``: ``m + (1 - m) (1 + cos(pi p)) / 2``
       (SGDR, arXiv 1608.03983, without restarts), where ``m = min_lr_ratio``, so both end at ``m`` on the last step;
       ``multistep``: ``gamma ** (number of milestones <= step)``.
    """
    warmup = int(config.warmup_steps)
    # 1. warm-up
    warm = (step + 1) / warmup if step < warmup else 1.0
    # 2. decay
    if config.scheduler == "constant":
        decay = 1.0
    elif config.scheduler == "multistep":
        decay = float(config.gamma) ** sum(1 for m in config.milestones if step >= int(m))
    else:
        progress = min(1.0, max(0.0, (step - warmup) / max(1, total_steps - warmup - 1)))
        floor = float(config.min_lr_ratio)
        if config.scheduler == "linear":
            decay = 1.0 - (1.0 - floor) * progress
        elif config.scheduler == "cosine":
            decay = floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
        else:
            raise ValueError(f"unknown scheduler {config.scheduler!r}")
    return warm * decay
