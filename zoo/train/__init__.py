"""The shared training runtime: every method's trainer runs on it, so methods write only models and losses.

Importing ``zoo.train`` (or ``zoo.train.config``) does not import torch; the names below are loaded on first use.

Writing a trainer (see ``docs/TRAINING.md``; ``zoo/train/toy.py`` is a complete, runnable example)::

    from zoo.sdk import OptimizerGroup, Trainer

    class MyTrainer(Trainer):
        def build(self):                                   # models and data; called after seeding
            self.student = make_student()                  # trainable: moved to the device by the runtime
            self.teacher = make_teacher().to(self.device).eval().requires_grad_(False)

        def trainable_modules(self):                       # checkpointed, EMA-able, exported
            return {"student": self.student}               # key = attribute name

        def optimizer_groups(self):                        # list order = update order within a step
            return [OptimizerGroup("student", self.student.parameters(), self.config.optim.student)]

        def loss(self, group, step, batch):                # one micro-batch of one group
            return {"loss": (self.student(batch) - self.teacher(batch)).pow(2).mean()}

        def batches(self, seed):                           # deterministic given seed; no global RNG
            ...

    # the method's spec points at it: MethodSpec(..., trainer="my_pkg.trainer:MyTrainer", config="my_pkg.config:Cfg")

Running: ``zoo train NAME [--config file.yaml] [--output-dir DIR] [--resume] [key=value ...]``, or from Python
:func:`train` (``train("imdn", config, output_dir="runs/imdn")``). Several processes or GPUs:
``accelerate launch --multi_gpu --num_processes 2 -m zoo train NAME ...`` (on CPU-only machines too).

The runtime (:mod:`zoo.train.runtime`) does, per step: fetch ``gradient_accumulation_steps`` micro-batches; for each
group due at this step (``step % every == 0``), in list order: set the learning rate from the group's schedule,
run ``loss`` under autocast on each micro-batch, stop on a non-finite loss, backward, clip, optimizer step, zero
grads; then update the EMA, log, validate, checkpoint. Checkpoints (:mod:`zoo.train.checkpoint`) are written
atomically, hold weights as safetensors and the rest as JSON + safetensors (no pickle), and make ``--resume``
bit-identical to an uninterrupted run. Export (:mod:`zoo.train.export`) writes a hub-ready folder with ``zoo.json``.

Public names:
    :class:`Trainer`, :class:`OptimizerGroup` (zoo.train.trainer); :class:`TrainingConfig`,
    :class:`OptimizerConfig` (zoo.train.config, torch-free); :func:`train`, :class:`RunResult`
    (zoo.train.runtime); :class:`TrainState` (zoo.train.state); :class:`EMA` (zoo.train.ema);
    :func:`latest_checkpoint`, :func:`load_checkpoint` (zoo.train.checkpoint); :func:`export_run`
    (zoo.train.export).
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "Trainer": "zoo.train.trainer",
    "OptimizerGroup": "zoo.train.trainer",
    "TrainingConfig": "zoo.train.config",
    "OptimizerConfig": "zoo.train.config",
    "train": "zoo.train.runtime",
    "RunResult": "zoo.train.runtime",
    "TrainState": "zoo.train.state",
    "EMA": "zoo.train.ema",
    "latest_checkpoint": "zoo.train.checkpoint",
    "load_checkpoint": "zoo.train.checkpoint",
    "export_run": "zoo.train.export",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'zoo.train' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
