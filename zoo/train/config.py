"""Config sections every trainer shares: the run (:class:`TrainingConfig`) and one optimizer (:class:`OptimizerConfig`).

Importing this module never imports torch, so a plugin's ``config.py`` can embed these dataclasses. A method config
looks like this (the runtime reads only ``config.train``; optimizer sections reach it only through the trainer's
:meth:`zoo.train.Trainer.optimizer_groups`, by convention one ``OptimizerConfig`` per group under ``optim``)::

    from dataclasses import dataclass, field
    from zoo.sdk import OptimizerConfig, TrainingConfig

    @dataclass
    class MyOptim:
        generator: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(lr=1e-5, every=5))
        fake_score: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(lr=1e-5))

    @dataclass
    class MyConfig:
        train: TrainingConfig = field(default_factory=TrainingConfig)
        optim: MyOptim = field(default_factory=MyOptim)
        guidance_scale: float = 4.5  # the method's own sections and fields follow

and is overridden from the command line as ``zoo train my_method train.steps=200 optim.generator.lr=2e-6``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULERS = ("constant", "cosine", "linear", "multistep")
DISTRIBUTED_MODES = ("auto", "ddp", "fsdp")
MIXED_PRECISION = ("no", "fp16", "bf16")

# Keys that may change between a run and its resumption without making the resumed run differ from an uninterrupted
# one (they control how long the run goes on and what it writes, not what it computes).
RUN_CONTROL_KEYS = ("steps", "output_dir", "checkpoint_every", "keep_last", "log_every", "validate_every",
                    "export_on_finish", "tensorboard", "num_workers")


@dataclass
class OptimizerConfig:
    """One optimizer and its learning-rate schedule; one per :class:`zoo.train.OptimizerGroup`.

    The schedule is a function of the *global* step (not of how often this group was updated), so two groups at
    different ``every`` periods follow the same warm-up and decay clock.
    """

    lr: float = 1e-4
    """Peak learning rate (reached after ``warmup_steps``)."""
    optimizer: str = "adamw"
    """One of ``adamw``, ``adam``, ``sgd``."""
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    """Adam's (beta1, beta2); for ``sgd`` beta1 is the momentum."""
    weight_decay: float = 0.0
    eps: float = 1e-8
    scheduler: str = "constant"
    """``constant``; ``cosine`` (to ``min_lr_ratio * lr`` at the last step); ``linear`` (same end point);
    ``multistep`` (multiply by ``gamma`` at each of ``milestones``)."""
    warmup_steps: int = 0
    """Linear warm-up from 0 over this many global steps (applies to every scheduler)."""
    milestones: list[int] = field(default_factory=list)
    """Global steps at which ``multistep`` multiplies the learning rate by ``gamma``."""
    gamma: float = 0.5
    min_lr_ratio: float = 0.0
    """Floor of ``cosine`` and ``linear`` as a fraction of ``lr``."""
    max_grad_norm: Optional[float] = None
    """Clip this group's gradient norm to this value (None or 0: no clipping)."""
    every: int = 1
    """Update period: the group is updated at 0-based global steps ``s`` with ``s % every == 0`` (two-time-scale
    updates, e.g. DMD2's generator every 5 steps while the fake score is updated every step)."""


@dataclass
class TrainingConfig:
    """How a run goes: length, batch, seed, precision, checkpoints, logging, EMA. Read by :mod:`zoo.train.runtime`.

    One *step* is one update of every group due at that step; it consumes ``gradient_accumulation_steps``
    micro-batches of ``batch_size`` each (per process), shared by the groups updated in that step.
    """

    steps: int = 1000
    """Total optimizer steps of the run."""
    batch_size: int = 4
    """Micro-batch size per process (the trainer's :meth:`batches` should honour it)."""
    seed: int = 0
    """Seeds model initialisation, data and noise; each process adds its index (accelerate ``device_specific``)."""
    mixed_precision: str = "no"
    """``no`` (fp32), ``fp16`` (with loss scaling) or ``bf16``; passed to ``accelerate.Accelerator``."""
    gradient_accumulation_steps: int = 1
    distributed: str = "auto"
    """How several processes share the work (docs/TRAINING.md, "Several processes"): ``ddp`` (every process holds
    every module; PyTorch DDP averages gradients during the backward pass), ``fsdp`` (FSDP2: the trainable modules
    and the frozen networks they run through are sharded per block across processes; checkpoints through
    ``torch.distributed.checkpoint``), or ``auto`` (``ddp`` on several processes, plain training on one). With
    ``ddp`` and ``fsdp`` micro-batch ``v`` of a step (``v = rank * gradient_accumulation_steps + j``) draws its data
    and random numbers from streams that depend only on the seed, the step and ``v``: N processes with k
    accumulation steps train exactly like one process with N * k."""
    checkpoint_every: int = 500
    """Write a checkpoint every N steps (0: only at the end and on SIGINT/SIGTERM)."""
    keep_last: int = 3
    """Keep the newest K complete checkpoints (0: keep all)."""
    log_every: int = 10
    """Write metrics to stdout / ``metrics.jsonl`` every N steps."""
    validate_every: int = 0
    """Call the trainer's ``validate`` every N steps (0: never; it is also called at the end when N > 0)."""
    ema_decay: float = 0.0
    """Exponential moving average of the EMA modules' trainable weights (0: off; e.g. 0.999)."""
    output_dir: str = ""
    """Run folder; empty means ``runs/<method>``. The CLI's ``--output-dir`` overrides it."""
    num_workers: int = 0
    """DataLoader workers, for trainers that read files."""
    export_on_finish: bool = True
    """Write the hub-ready folder ``<run>/export`` when the run reaches ``steps``."""
    tensorboard: bool = True
    """Also log to tensorboard when the ``tensorboard`` package is importable."""


def _check_choice(key: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        from zoo.errors import ConfigError

        raise ConfigError(f"Bad value {value!r} for config key '{key}'; valid values: {', '.join(choices)}")


def check_optimizer_config(name: str, config: Any) -> None:
    """Raise :class:`zoo.errors.ConfigError` (one line) for an unusable optimizer section ``name``."""
    from zoo.errors import ConfigError

    _check_choice(f"{name}.optimizer", config.optimizer, OPTIMIZERS)
    _check_choice(f"{name}.scheduler", config.scheduler, SCHEDULERS)
    if not int(config.every) >= 1:
        raise ConfigError(f"Bad value {config.every!r} for '{name}.every'; use an integer >= 1 (1 = every step)")
    if not float(config.lr) >= 0:
        raise ConfigError(f"Bad value {config.lr!r} for '{name}.lr'; use a learning rate >= 0")
    if len(list(config.betas)) != 2:
        raise ConfigError(f"Bad value {list(config.betas)!r} for '{name}.betas'; give two numbers, e.g. [0.9, 0.999]")


def check_training_config(train: Any) -> None:
    """Raise :class:`zoo.errors.ConfigError` (one line) for an unusable ``train`` section."""
    from zoo.errors import ConfigError

    _check_choice("train.mixed_precision", train.mixed_precision, MIXED_PRECISION)
    _check_choice("train.distributed", getattr(train, "distributed", "auto"), DISTRIBUTED_MODES)
    for key in ("steps", "batch_size", "gradient_accumulation_steps"):
        if int(getattr(train, key)) < 1:
            raise ConfigError(f"Bad value {getattr(train, key)!r} for 'train.{key}'; use an integer >= 1")
    for key in ("checkpoint_every", "keep_last", "log_every", "validate_every", "num_workers"):
        if int(getattr(train, key)) < 0:
            raise ConfigError(f"Bad value {getattr(train, key)!r} for 'train.{key}'; use an integer >= 0")
    if not 0.0 <= float(train.ema_decay) < 1.0:
        raise ConfigError(f"Bad value {train.ema_decay!r} for 'train.ema_decay'; use 0 (off) or a value in (0, 1)")
