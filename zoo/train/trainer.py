"""The base class every method's trainer subclasses: models and losses in, nothing else.

The runtime (:func:`zoo.train.runtime.train`) owns the loop, devices, precision, optimizers, LR schedules,
gradient accumulation and clipping, EMA, checkpoints, logging, guards and export. A trainer says:

* what to build (:meth:`Trainer.build`), which modules are trained (:meth:`Trainer.trainable_modules`),
* which optimizers update which parameters and how often (:meth:`Trainer.optimizer_groups`),
* the loss of one group on one micro-batch (:meth:`Trainer.loss`),
* where micro-batches come from (:meth:`Trainer.batches`),
* and optionally how to validate and export.

See ``docs/TRAINING.md`` for a complete example (``zoo/train/toy.py`` is a working one).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import torch
from torch import nn


@dataclass
class OptimizerGroup:
    """Parameters updated by one optimizer.

    Attributes:
        name: the group's name, passed back to :meth:`Trainer.loss`; also names its optimizer state in checkpoints
            and its metrics (``<name>/loss``, ``lr/<name>``).
        params: the parameters (each parameter may belong to one group only).
        config: a :class:`zoo.train.config.OptimizerConfig` (or the omegaconf node of one, e.g.
            ``self.config.optim.generator``): optimizer, learning rate, schedule, clipping and update period ``every``.

    Groups are updated in list order within a step, each only at steps ``s`` (0-based) with ``s % every == 0``:
    ``[OptimizerGroup("fake_score", ..., every=1), OptimizerGroup("generator", ..., every=5)]`` is DMD2's
    two-time-scale rule; ``[student, lora_teacher]`` both at ``every=1`` is SwiftBrush's alternation.
    """

    name: str
    params: Iterable[nn.Parameter]
    config: Any


class StepCache:
    """What one optimizer group's loss computed on a micro-batch, kept for a later group's loss on the *same*
    micro-batch in the same step (e.g. the generator's detached sample that the fake score then learns from).

    Keyed by the micro-batch object, so gradient accumulation and several processes see the same pairing: with k
    micro-batches per step, the fake score of micro-batch j learns from the generator sample of micro-batch j."""

    def __init__(self) -> None:
        self._step: int | None = None
        self._items: dict[int, Any] = {}

    def put(self, step: int, batch: Any, value: Any) -> None:
        if step != self._step:
            self._step, self._items = step, {}
        self._items[id(batch)] = value

    def get(self, step: int, batch: Any) -> Any:
        """The value stored for ``batch`` at ``step``, or None."""
        return self._items.get(id(batch)) if step == self._step else None


class Trainer:
    """Base class of the methods' trainers. Subclass it and implement the five required methods.

    Set by the runtime before :meth:`build` is called:
        ``self.accelerator``: the ``accelerate.Accelerator`` (None when exporting from a checkpoint),
        ``self.device``: the device to put frozen models and data on (trainable modules are moved by the runtime),
        ``self.process_index`` / ``self.num_processes``: this process's rank and the world size,
        ``self.method_name``: the registered method name (or the class name for unregistered trainers),
        ``self.ema``: the :class:`zoo.train.ema.EMA` of the EMA modules, or None when ``train.ema_decay == 0``.

    Required:
        :meth:`build`, :meth:`trainable_modules`, :meth:`optimizer_groups`, :meth:`loss`, :meth:`batches`.
    Optional:
        :meth:`ema_modules`, :meth:`validate`, :meth:`export` (or just :meth:`export_manifest` and
        :meth:`export_modules`), :meth:`state_dict_extra` / :meth:`load_state_dict_extra`, :meth:`parallel_modules`.
    """

    method: str | None = None
    """Name used for unregistered trainers (run folder, manifest); registered methods get their spec name."""
    task: str = "text-to-image"
    """The task of the exported model (``text-to-image`` or ``super-resolution``), written to ``zoo.json``."""

    def __init__(self, config: Any) -> None:
        """``config`` is the resolved method config (an omegaconf DictConfig with a ``train`` section)."""
        self.config = config
        self.accelerator = None
        self.device = torch.device("cpu")
        self.process_index = 0
        self.num_processes = 1
        self.method_name = self.method or type(self).__name__.lower()
        self.ema = None

    # -- required -----------------------------------------------------------------------------------------------
    def build(self) -> None:
        """Create the models (frozen and trainable), put frozen ones on ``self.device``, prepare data sources.

        Called once per process after seeding, so random initialisation is reproducible. Frozen models should be
        set to ``eval()`` and ``requires_grad_(False)``.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement build()")

    def trainable_modules(self) -> dict[str, nn.Module]:
        """The modules whose weights are trained, checkpointed and exported, by name.

        Names are file names in checkpoints (``models/<name>.safetensors``); use ``[a-z0-9_]``. Modules are never
        wrapped: on several processes (``train.distributed``, :mod:`zoo.train.parallel`) DDP averages the gradients
        of each optimizer group during the backward pass and FSDP2 shards the modules in place, so a module may be
        reached through any reference.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement trainable_modules()")

    def optimizer_groups(self) -> list[OptimizerGroup]:
        """The optimizers, in the order they are updated within a step; see :class:`OptimizerGroup`."""
        raise NotImplementedError(f"{type(self).__name__} must implement optimizer_groups()")

    def loss(self, group: str, step: int, batch: Any) -> dict[str, torch.Tensor]:
        """The loss of ``group`` on one micro-batch at the 0-based global ``step``.

        Return at least ``{"loss": scalar tensor}``; other scalar entries are logged as ``<group>/<key>``. The
        runtime runs it under autocast, checks the loss is finite, then does backward (scaled by
        ``1 / gradient_accumulation_steps``), clipping, the optimizer step, zero_grad and the LR schedule. Only the
        group's own parameters are stepped; gradients that leak into other groups' parameters are discarded (wrap
        forward passes through other trainable modules in ``torch.no_grad()`` where the loss does not need them).
        Random draws should use torch/numpy/python global RNGs (restored exactly on resume) or generators seeded
        from ``step``.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement loss()")

    def batches(self, seed: int) -> Iterable[Any]:
        """Micro-batches of ``config.train.batch_size`` items, as an iterable that depends only on ``seed``.

        It may be infinite (procedural data) or finite (a DataLoader with a ``torch.Generator`` seeded from
        ``seed``); a finite one is started again with a new seed each epoch. The runtime passes a seed that differs
        per process and per epoch, and makes resume exact by skipping the micro-batches already consumed in the
        current epoch, so batches must not draw from global RNGs and skipping should be cheap. Each process should
        yield its own shard (use ``self.process_index`` / ``self.num_processes``). Tensors may stay on the CPU;
        move them to ``self.device`` in :meth:`loss`.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement batches()")

    # -- optional -----------------------------------------------------------------------------------------------
    def ema_modules(self) -> dict[str, nn.Module]:
        """The trainable modules to keep an EMA of when ``train.ema_decay > 0`` (default: all of them).

        Only parameters with ``requires_grad`` are averaged (a LoRA-only run averages only the LoRA weights).
        """
        return self.trainable_modules()

    def parallel_modules(self) -> dict[str, nn.Module]:
        """The modules whose forward the losses run, for ``train.distributed=fsdp`` to shard per block (default:
        the trainable modules, containers such as ``nn.ModuleList`` expanded to their elements).

        Override it when a trainable module only holds parameters that another module runs (a LoRA parameter
        holder whose layers live in a UNet): return that UNet, e.g. ``{"unet": self.components.unet}``. Frozen
        networks returned here (a teacher base) are sharded too.
        """
        return self.trainable_modules()

    def validate(self, step: int, out_dir: Path) -> dict[str, float]:
        """Write validation samples under ``out_dir`` and return scalar metrics (logged as ``val/<key>``).

        Runs on the main process only, under ``torch.no_grad()``, with the training RNG state saved and restored
        around it (so validation never changes the training run). Use :meth:`ema_weights` to sample with the EMA.
        """
        return {}

    def export_modules(self) -> dict[str, nn.Module]:
        """The modules the default :meth:`export` writes (default: the trainable ones, unwrapped)."""
        from zoo.train.checkpoint import unwrap

        return {name: unwrap(module) for name, module in self.trainable_modules().items()}

    def export_manifest(self) -> dict[str, Any]:
        """Entries for the exported ``zoo.json``: ``base_model`` (hub id or None) and ``sampler`` (recommended
        sampler settings such as steps and guidance_scale). ``method`` and ``task`` are filled in by the runtime."""
        return {"base_model": None, "sampler": {}}

    def export(self, out_dir: Path, metrics: dict[str, Any]) -> Path:
        """Write a hub-ready folder at ``out_dir`` and return it.

        The default writes each of :meth:`export_modules` with the EMA weights when there are any (diffusers and
        PEFT models through ``save_pretrained`` in ``<name>/``, others as ``<name>.safetensors``), then ``zoo.json``
        (:data:`zoo.spec.MANIFEST_NAME`), ``README.md`` (model card), ``config.yaml`` and ``metrics.json``
        via :func:`zoo.train.export.write_export_metadata`. Override to write a diffusers pipeline or LoRA layout;
        call ``write_export_metadata`` at the end.
        """
        from zoo.train.export import save_module, write_export_metadata

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        files = []
        with self.ema_weights():
            for name, module in self.export_modules().items():
                files.append(save_module(module, out_dir, name))
        write_export_metadata(self, out_dir, metrics, files=files)
        return out_dir

    def state_dict_extra(self) -> dict[str, Any]:
        """JSON-serialisable state that is not in a module (counters, curriculum position); saved in checkpoints."""
        return {}

    def load_state_dict_extra(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict_extra` returned."""

    # -- helpers for subclasses ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def ema_weights(self) -> Iterator[None]:
        """Within the block the EMA modules hold their EMA weights (no-op without EMA)."""
        if self.ema is None:
            yield
            return
        with self.ema.swapped():
            yield

    @property
    def train_config(self) -> Any:
        """``self.config.train``."""
        return self.config.train
