"""The training loop every method runs on (accelerate; one or many processes, CPU or GPU).

Usage::

    from zoo.train import train
    result = train("imdn", config, output_dir="runs/imdn")          # a registered method and its resolved config
    result = train(MyTrainer(config), output_dir="runs/x", resume=True)

Several processes: ``torchrun --nproc_per_node 4 -m zoo train NAME ...`` or ``accelerate launch --multi_gpu
--num_processes 4 -m zoo train NAME ...`` (also on a CPU-only machine, where the processes use gloo), with
``train.distributed`` = ``ddp`` (PyTorch DDP's reducer averages gradients during the backward pass), ``fsdp`` (FSDP2
shards the modules per block; checkpoints through ``torch.distributed.checkpoint``) or ``auto`` (ddp on several
processes); see :mod:`zoo.train.parallel`. Modules are never wrapped.

One step (0-based index ``s``), in order:

1. take ``gradient_accumulation_steps`` micro-batches from the trainer's ``batches`` (shared by the groups below);
2. for each optimizer group with ``s % every == 0``, in the trainer's list order: set its learning rate from its
   schedule at ``s``; for each micro-batch run ``trainer.loss(group, s, batch)`` under autocast, stop if the loss is
   not finite, backward ``loss / accumulation`` (the last micro-batch's backward also averages the gradients across
   processes); clip the group's gradient norm; optimizer step; zero every group's gradients;
3. update the EMA; log every ``log_every`` steps (stdout, ``metrics.jsonl``, tensorboard when installed); validate
   every ``validate_every`` steps (main process, RNG saved and restored); checkpoint every ``checkpoint_every`` steps
   (main process writes; RNG states of all processes are gathered); stop cleanly on SIGINT/SIGTERM.

Exact resume: weights, EMA, optimizer state, grad-scaler state, the RNG states of python/numpy/torch(/CUDA) of every
process and the data position (epoch, micro-batches consumed, which are skipped) are restored, and learning rates are
a function of the step, so ``--resume`` continues bit-identically on CPU.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import shutil
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field, is_dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import torch

from zoo.errors import TrainingError, ZooError
from zoo.spec import MethodSpec
from zoo.train import parallel
from zoo.train.checkpoint import (capture_rng, checkpoint_name, checkpoint_tmp, config_hash, find_resumable,
                                  list_checkpoints, load_checkpoint, prune_checkpoints, remove_stale_temporaries,
                                  restore_rng, save_checkpoint, save_sharded_state, sharded_state, verify_checkpoint)
from zoo.train.config import check_optimizer_config, check_training_config
from zoo.train.ema import EMA
from zoo.train.optim import build_optimizer, lr_factor
from zoo.train.state import TrainState
from zoo.train.trainer import Trainer

RUN_INFO = "run.json"
METRICS_FILE = "metrics.jsonl"


@dataclass
class RunResult:
    """What :func:`train` returns.

    Attributes:
        run_dir: the run folder.
        step: optimizer steps completed.
        status: ``"finished"`` (reached ``train.steps``) or ``"interrupted"`` (SIGINT/SIGTERM; resume with
            ``resume=True``).
        checkpoint: the newest checkpoint folder.
        export_dir: the hub-ready folder written at the end (None when interrupted or ``export_on_finish`` is off).
        metrics: the last logged metrics.
        checkpoints_written: checkpoint folders this process wrote (empty on every process but the main one).
        message: a one-line summary.
    """

    run_dir: Path
    step: int
    status: str
    checkpoint: Path | None = None
    export_dir: Path | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    checkpoints_written: list[Path] = field(default_factory=list)
    message: str = ""


@dataclass
class _Group:
    name: str
    config: Any
    params: list[torch.nn.Parameter]
    optimizer: Any
    every: int
    base_lr: float
    max_grad_norm: float | None


class _NonFiniteLoss(Exception):
    def __init__(self, group: str, step: int, value: float, applied: list[str]) -> None:
        super().__init__(group, step, value, applied)
        self.group, self.step, self.value, self.applied = group, step, value, applied


def train(target: str | MethodSpec | Trainer | type, config: Any = None, *, output_dir: str | Path | None = None,
          resume: bool = False, progress: bool = True, checkpoint: str | Path | None = None) -> RunResult:
    """Train ``target`` and return a :class:`RunResult`.

    Args:
        target: a registered method name or a :class:`zoo.spec.MethodSpec` (its trainer is built from ``config``),
            a :class:`Trainer` instance, or a Trainer subclass (instantiated with ``config``).
        config: the resolved method config (omegaconf DictConfig or dataclass instance); None for a method name
            means the method's defaults; ignored for a Trainer instance (its ``config`` is used).
        output_dir: the run folder (default ``config.train.output_dir``, else ``runs/<method>``).
        resume: continue from the newest complete checkpoint of ``output_dir`` (or ``checkpoint``).
        progress: show a progress bar (main process only).
        checkpoint: with ``resume``, the checkpoint folder to continue from instead of the newest.

    Raises:
        TrainingError: non-finite loss (after saving the last good step), out of memory, disk full, nothing to
            resume from, or a run folder that already holds checkpoints without ``resume``.
    """
    trainer, config, method, refs = _resolve(target, config)
    check_training_config(config.train)
    run_dir = Path(output_dir or config.train.output_dir or f"runs/{method}")
    config.train.output_dir = str(run_dir)
    runtime = _Runtime(trainer, config, run_dir, method=method, refs=refs, progress=progress)
    try:
        return runtime.run(resume=resume, checkpoint=checkpoint)
    except ZooError:
        raise
    except BaseException as exc:  # noqa: BLE001 - translated into one-line errors where we know the fix
        translated = _translate(exc, runtime)
        if translated is None:
            raise
        raise translated from exc
    finally:
        runtime.close()


# -- resolution of the target -------------------------------------------------------------------------------------
def _as_dictconfig(config: Any) -> Any:
    from omegaconf import DictConfig, OmegaConf

    if isinstance(config, DictConfig):
        return config
    if is_dataclass(config):
        return OmegaConf.structured(config)
    if isinstance(config, dict):
        return OmegaConf.create(config)
    raise TrainingError(f"Config must be an omegaconf DictConfig or a dataclass instance, got {type(config).__name__}")


def _ref(obj: Any) -> str:
    """``"module:qualname"`` of a class, with ``__main__`` replaced by the module's import name (``python -m``)."""
    module = obj.__module__
    if module == "__main__":
        spec = getattr(sys.modules["__main__"], "__spec__", None)
        module = spec.name if spec is not None and spec.name else module
    return f"{module}:{obj.__qualname__}"


def _resolve(target: Any, config: Any) -> tuple[Trainer, Any, str, dict[str, str | None]]:
    from omegaconf import OmegaConf

    if isinstance(target, (str, MethodSpec)):
        from zoo.config import load_config
        from zoo.registry import get_method

        spec = target if isinstance(target, MethodSpec) else get_method(target)
        config_class = spec.load("config")
        config = load_config(config_class) if config is None else _as_dictconfig(config)
        factory = spec.load("trainer")
        trainer = factory(config)
        trainer.method_name = spec.name
        refs = {"trainer": spec.trainer if isinstance(spec.trainer, str) else _ref(factory),
                "config": spec.config if isinstance(spec.config, str) else _ref(config_class)}
        return trainer, config, spec.name, refs
    if isinstance(target, type):
        if config is None:
            raise TrainingError(f"train({target.__name__}) needs a config")
        target = target(_as_dictconfig(config))
    if not isinstance(target, Trainer):
        raise TrainingError(f"train() takes a method name or a zoo.train.Trainer, got {type(target).__name__}")
    target.config = _as_dictconfig(target.config)
    config_type = OmegaConf.get_type(target.config)
    refs = {"trainer": _ref(type(target)),
            "config": _ref(config_type) if config_type is not None and is_dataclass(config_type) else None}
    return target, target.config, target.method_name, refs


LOCK_FILE = ".zoo-train.lock"


def lock_run_folder(run_dir: Path):
    """Create ``run_dir`` and hold an exclusive lock on it for this process (released when it exits, however it
    exits); one line naming the other process when another ``zoo train`` holds it, or when the folder cannot be
    written. Returns the open lock file (keep it open)."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        handle = open(run_dir / LOCK_FILE, "a+")
    except OSError as exc:
        raise TrainingError(f"Cannot write the run folder {run_dir} ({exc.strerror or type(exc).__name__}); "
                            f"choose a writable --output-dir") from None
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock, as before
        return handle
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        owner = handle.read().strip() or "another process"
        handle.close()
        raise TrainingError(f"{run_dir} is in use by another zoo train ({owner}); wait for it to finish or choose "
                            f"another --output-dir") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"process {os.getpid()} on {socket.gethostname()}")
    handle.flush()
    return handle


def check_run_method(run_dir: Path, method: str) -> None:
    """One line when the run folder was written by another method than the one asked to resume it."""
    try:
        owner = json.loads((run_dir / RUN_INFO).read_text()).get("method")
    except (OSError, ValueError, AttributeError):
        return
    if owner and owner != method:
        raise TrainingError(f"{run_dir} holds a {owner} run, not {method}; resume it with: zoo train {owner} "
                            f"--output-dir {run_dir} --resume")


def _translate(exc: BaseException, runtime: "_Runtime") -> TrainingError | None:
    """One-line errors for the failures whose fix we know (out of memory, disk full)."""
    train_cfg = runtime.config.train
    oom_types = tuple(t for t in (getattr(torch, "OutOfMemoryError", None),
                                  getattr(torch.cuda, "OutOfMemoryError", None)) if t is not None)
    if isinstance(exc, oom_types) or (isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()):
        return TrainingError(
            f"Out of memory at step {runtime.state.step} (train.batch_size={train_cfg.batch_size}, "
            f"gradient_accumulation_steps={train_cfg.gradient_accumulation_steps}, "
            f"mixed_precision={train_cfg.mixed_precision}): lower train.batch_size and raise "
            f"train.gradient_accumulation_steps to keep the effective batch, or set train.mixed_precision=bf16")
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        try:
            free = shutil.disk_usage(runtime.run_dir if runtime.run_dir.exists() else Path.cwd()).free / 2**30
        except OSError:
            free = float("nan")
        return TrainingError(
            f"Disk full while writing to {runtime.run_dir} ({free:.1f} GiB free): free space there, lower "
            f"train.keep_last, or pass another --output-dir")
    return None


# -- the loop -----------------------------------------------------------------------------------------------------
class _BatchStream:
    """Micro-batches from ``trainer.batches(seed)``, restarted each epoch, with a position that resume can skip to."""

    def __init__(self, trainer: Trainer, seed: int, process_index: int, epoch: int = 0, position: int = 0) -> None:
        self.trainer = trainer
        self.seed = seed
        self.process_index = process_index
        self.epoch = epoch
        self.position = 0
        self._iterator = self._open()
        for _ in range(position):  # skip what the interrupted run consumed
            self.next()

    def seed_for(self, epoch: int) -> int:
        """The seed given to ``batches``: ``train.seed + 1_000_003 * process_index + 10_007 * epoch``."""
        return self.seed + 1_000_003 * self.process_index + 10_007 * epoch

    def _open(self) -> Iterator[Any]:
        return iter(self.trainer.batches(self.seed_for(self.epoch)))

    def next(self) -> Any:
        try:
            item = next(self._iterator)
        except StopIteration:
            if self.position == 0:
                raise TrainingError(f"{type(self.trainer).__name__}.batches() yielded no batch; check the data "
                                    f"source (folder, file list or batch_size)") from None
            self.epoch += 1
            self.position = 0
            self._iterator = self._open()
            return self.next()
        self.position += 1
        return item


class _MetricsLog:
    """``metrics.jsonl`` (+ tensorboard when importable) on the main process."""

    def __init__(self, run_dir: Path, enabled: bool, tensorboard: bool, resume_step: int | None) -> None:
        self.enabled = enabled
        self.file = None
        self.tensorboard = None
        if not enabled:
            return
        path = run_dir / METRICS_FILE
        if resume_step is not None and path.is_file():
            # drop lines logged after the checkpoint we resume from (the interrupted run's tail)
            kept = [line for line in path.read_text().splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= resume_step]
            path.write_text("".join(line + "\n" for line in kept))
        self.file = open(path, "a", buffering=1)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                return
            self.tensorboard = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.file.write(json.dumps(record, sort_keys=True) + "\n")
        if self.tensorboard is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    self.tensorboard.add_scalar(key, value, record["step"])

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
        if self.tensorboard is not None:
            self.tensorboard.close()
            self.tensorboard = None


class _Runtime:
    def __init__(self, trainer: Trainer, config: Any, run_dir: Path, *, method: str, refs: dict[str, str | None],
                 progress: bool) -> None:
        self.trainer = trainer
        self.config = config
        self.run_dir = run_dir
        self.method = method
        self.refs = refs
        self.progress = progress
        self.state = TrainState()
        self.accelerator = None
        self.metrics_log: _MetricsLog | None = None
        self.written: list[Path] = []
        self._stop_signal: int | None = None
        self._lock = None
        self._previous_handlers: dict[int, Any] = {}
        self._last_outputs: dict[str, dict[str, torch.Tensor]] = {}
        self._last_log_time = time.perf_counter()
        self._last_log_step = 0

    # 1. set-up ------------------------------------------------------------------------------------------------
    def _setup(self, resume: bool, checkpoint: str | Path | None) -> Path | None:
        from accelerate import Accelerator
        from accelerate.utils import DistributedType, set_seed

        train_cfg = self.config.train
        try:
            self.accelerator = Accelerator(cpu=_cpu_only_distributed(), mixed_precision=train_cfg.mixed_precision)
        except (ValueError, RuntimeError) as exc:
            raise TrainingError(f"Cannot set up training with train.mixed_precision={train_cfg.mixed_precision} "
                                f"({str(exc).splitlines()[0]}); use mixed_precision=no or bf16 on this machine") from None
        acc = self.accelerator
        self.is_main = acc.is_main_process
        self.num_processes = acc.num_processes
        if train_cfg.mixed_precision == "fp16" and acc.device.type == "cpu" and self.is_main:
            print("Note: train.mixed_precision=fp16 has no effect on CPU (accelerate trains in fp32 there); use bf16 "
                  "for mixed precision on CPU, or train on a CUDA GPU", file=sys.stderr, flush=True)

        # 1a. the run folder: one run at a time, refuse to mix runs, find the checkpoint to resume from
        if self.is_main:
            self._lock = lock_run_folder(self.run_dir)
        resume_from = None
        existing = list_checkpoints(self.run_dir)
        if resume:
            check_run_method(self.run_dir, self.method)
            if checkpoint:
                resume_from = Path(checkpoint)
                problem = verify_checkpoint(resume_from) if (resume_from / "state.json").is_file() else "missing"
                if problem:
                    raise TrainingError(f"Checkpoint {resume_from} cannot be resumed from: {problem}; pick another "
                                        f"with --checkpoint or leave it out to use the newest intact one")
            else:
                resume_from, skipped = find_resumable(self.run_dir)
                for step, problem in skipped:
                    if self.is_main:
                        print(f"Skipping checkpoint {checkpoint_name(step)}: {problem}", file=sys.stderr, flush=True)
            if resume_from is None:
                where = checkpoint or self.run_dir / "checkpoints"
                raise TrainingError(f"No complete checkpoint to resume from in {where}; start without --resume, or "
                                    f"pass the run's folder with --output-dir")
        elif existing:
            raise TrainingError(f"{self.run_dir} already holds checkpoints (latest step {existing[-1][0]}); pass "
                                f"--resume to continue that run or choose another --output-dir")
        if self.is_main:
            remove_stale_temporaries(self.run_dir)
        acc.wait_for_everyone()

        # 1b. seed, then let the trainer build its models and data
        set_seed(int(train_cfg.seed), device_specific=True)
        trainer = self.trainer
        trainer.accelerator = acc
        trainer.device = acc.device
        trainer.process_index = acc.process_index
        trainer.num_processes = acc.num_processes
        trainer.method_name = self.method
        trainer.build()

        # 1c. several processes (zoo.train.parallel): the same initial weights everywhere, then FSDP2 shards the
        # modules the losses run in place (references stay valid; parameter lists are re-tied to the shards), or
        # DDP's reducer averages each group's gradients during the backward pass. Modules are never wrapped.
        if acc.distributed_type not in (DistributedType.NO, DistributedType.MULTI_CPU, DistributedType.MULTI_GPU):
            raise TrainingError(f"accelerate's {acc.distributed_type} mode is not how distill-zoo shards training; "
                                f"launch with 'accelerate launch --multi_gpu' or torchrun and set "
                                f"train.distributed=fsdp (or ddp)")
        self.mode = parallel.resolve_mode(str(train_cfg.distributed), acc.num_processes)
        self.accumulation = int(train_cfg.gradient_accumulation_steps)
        modules = dict(trainer.trainable_modules())
        if not modules:
            raise TrainingError(f"{type(trainer).__name__}.trainable_modules() returned no module")
        for module in modules.values():
            module.to(acc.device)
        self._sharded: list[torch.nn.Module] = []
        self._state_bytes, self._state_measured, self._state_reported = 0, False, False
        try:
            units = parallel.expand_units(dict(trainer.parallel_modules()))
        except TrainingError:
            if self.mode == parallel.FSDP and acc.num_processes > 1:
                raise
            units = {}  # only needed to shard (and to count the training state's memory)
        self._units = units
        if acc.num_processes > 1:
            _broadcast_from_main([*modules.values(), *(units.values() if self.mode == parallel.FSDP else ())])
            if self.mode == parallel.FSDP:
                for unit in units.values():
                    unit.to(acc.device)
                parallel.retie(trainer, parallel.shard(units, str(train_cfg.mixed_precision)))
                self._sharded = parallel.fsdp_modules(units.values())
                modules = dict(trainer.trainable_modules())
        self.modules = modules

        # 1d. optimizers (after sharding: they hold the sharded parameters), DDP reducers
        self.groups = self._build_groups()
        self.reducers = {}
        if self.mode == parallel.DDP and acc.num_processes > 1:
            self.reducers = {group.name: parallel.GroupReducer(group.params) for group in self.groups}
        self._plain_steps = acc.scaler is None
        self._full_precision = acc.mixed_precision == "no"
        self._zero_grad()

        # 1e. EMA
        self.ema = None
        if float(train_cfg.ema_decay) > 0:
            self.ema = EMA(dict(trainer.ema_modules()), float(train_cfg.ema_decay))
        trainer.ema = self.ema

        # 1f. resume state
        self.config_digest = config_hash(self._trajectory_config())
        rng = None
        if resume_from is not None:
            document, rng = load_checkpoint(
                resume_from, modules=self.modules, optimizers={g.name: _inner(g.optimizer) for g in self.groups},
                ema=self.ema, scaler=acc.scaler, process_index=acc.process_index, num_processes=acc.num_processes)
            self.state = TrainState.from_dict(document["train_state"])
            trainer.load_state_dict_extra(document.get("trainer_extra", {}))
            if document.get("config_hash") != self.config_digest:
                self._say(f"Note: the config differs from the one that wrote {resume_from.name} (beyond run-control "
                          f"keys such as train.steps); the resumed run will not match an uninterrupted one")
        # data: one stream (one process), or one stream per micro-batch of the global step (see zoo.train.parallel)
        self.first_stream = acc.process_index * self.accumulation
        indices = [0] if self.mode == parallel.SINGLE else range(self.first_stream,
                                                                 self.first_stream + self.accumulation)
        self.streams = [_BatchStream(trainer, int(train_cfg.seed), index, self.state.epoch,
                                     self.state.batches_in_epoch) for index in indices]
        if resume_from is not None:
            if rng is not None:
                restore_rng(rng)
            elif self.mode != parallel.SINGLE:
                pass  # every micro-batch reseeds from (seed, step, group, stream): nothing to restore
            else:
                self._say(f"Note: {resume_from.name} was written by a different number of processes; RNG streams "
                          f"are reseeded, so the resumed run will not match an uninterrupted one")
                set_seed(int(train_cfg.seed) + self.state.step, device_specific=True)

        # 1g. what the run folder says about itself
        if self.is_main:
            from zoo import __version__
            from zoo.config import save_config

            save_config(self.config, self.run_dir / "config.yaml")
            info = {"method": self.method, "trainer": self.refs.get("trainer"), "config": self.refs.get("config"),
                    "zoo_version": __version__, "num_processes": acc.num_processes,
                    "mixed_precision": train_cfg.mixed_precision}
            tmp = self.run_dir / f".{RUN_INFO}.tmp"
            tmp.write_text(json.dumps(info, indent=2))
            tmp.replace(self.run_dir / RUN_INFO)
        self.metrics_log = _MetricsLog(self.run_dir, self.is_main, bool(train_cfg.tensorboard),
                                       self.state.step if resume_from is not None else None)
        return resume_from

    def _trajectory_config(self) -> Any:
        """The config as far as it decides the training trajectory: with ddp/fsdp what counts is the number of
        micro-batches per step over all processes, not how they are split (2 processes x 1 = 1 process x 2)."""
        if self.mode == parallel.SINGLE:
            return self.config
        from omegaconf import OmegaConf

        config = OmegaConf.create(OmegaConf.to_container(self.config, resolve=True))
        config.train.gradient_accumulation_steps = self.accumulation * self.num_processes
        return config

    def _build_groups(self) -> list[_Group]:
        groups = []
        seen: dict[int, str] = {}
        for group in self.trainer.optimizer_groups():
            params = [p for p in group.params if p.requires_grad]
            if not params:
                raise TrainingError(f"Optimizer group {group.name!r} has no trainable parameter")
            if any(g.name == group.name for g in groups):
                raise TrainingError(f"Two optimizer groups are named {group.name!r}; give each a unique name")
            for p in params:
                if id(p) in seen:
                    raise TrainingError(f"A parameter is in optimizer groups {seen[id(p)]!r} and {group.name!r}; "
                                        f"each parameter may belong to one group only")
                seen[id(p)] = group.name
            config = _plain(group.config)
            check_optimizer_config(f"optim.{group.name}", config)
            optimizer = self.accelerator.prepare(build_optimizer(params, config))
            max_norm = config.max_grad_norm
            groups.append(_Group(group.name, config, params, optimizer, int(config.every), float(config.lr),
                                 float(max_norm) if max_norm else None))
        if not groups:
            raise TrainingError(f"{type(self.trainer).__name__}.optimizer_groups() returned no group")
        return groups

    # 2. one step ----------------------------------------------------------------------------------------------
    def _zero_grad(self) -> None:
        for group in self.groups:
            _inner(group.optimizer).zero_grad(set_to_none=True)

    def _autocast(self):
        return contextlib.nullcontext() if self._full_precision else self.accelerator.autocast()

    def _backward(self, loss: torch.Tensor) -> None:
        """``accelerator.backward`` (loss scaling, DeepSpeed) or, when that adds nothing, ``loss.backward()``."""
        if self._plain_steps:
            loss.backward()
        else:
            self.accelerator.backward(loss)

    def _optimizer_step(self, group: _Group) -> None:
        """``AcceleratedOptimizer.step`` when it does something (loss scaling, XLA, DeepSpeed), else the optimizer's
        own step (accelerate's wrapper costs ~1 ms of package look-ups per call)."""
        if self._plain_steps:
            _inner(group.optimizer).step()
        else:
            group.optimizer.step()

    def _gradient_sync(self, group: _Group, last: bool):
        """Synchronise gradients only in the backward pass of a step's last micro-batch (accumulation)."""
        if self._sharded:
            parallel.set_gradient_sync(self._sharded, last)
        reducer = self.reducers.get(group.name)
        return reducer.no_sync() if reducer is not None and not last else contextlib.nullcontext()

    def _all_finite(self, loss: torch.Tensor) -> bool:
        if self.num_processes == 1 and loss.numel() == 1:
            return math.isfinite(loss.item())
        finite = torch.isfinite(loss.detach()).all()
        if self.num_processes == 1:
            return bool(finite)
        flag = self.accelerator.reduce(finite.to(torch.float32).reshape(1), reduction="sum")
        return int(flag.item()) == self.num_processes

    def _micro_batches(self) -> list[Any]:
        if self.mode == parallel.SINGLE:
            return [self.streams[0].next() for _ in range(self.accumulation)]
        return [stream.next() for stream in self.streams]

    def _step(self, s: int) -> None:
        micro_batches = self._micro_batches()
        applied: list[str] = []
        seed = int(self.config.train.seed)
        for group_index, group in enumerate(self.groups):
            if s % group.every:
                continue
            lr = group.base_lr * lr_factor(group.config, s, self.total_steps)
            for param_group in group.optimizer.param_groups:
                param_group["lr"] = lr
            outputs = []
            reducer = self.reducers.get(group.name)
            for index, batch in enumerate(micro_batches):
                last = index == self.accumulation - 1
                if self.mode != parallel.SINGLE:
                    parallel.seed_everything(parallel.micro_seed(seed, s, group_index, self.first_stream + index))
                with self._gradient_sync(group, last):
                    with self._autocast():
                        out = self.trainer.loss(group.name, s, batch)
                    loss = out.get("loss") if isinstance(out, dict) else None
                    if not isinstance(loss, torch.Tensor):
                        raise TrainingError(f"{type(self.trainer).__name__}.loss() must return a dict with a 'loss' "
                                            f"tensor for group {group.name!r}")
                    if not self._all_finite(loss):
                        raise _NonFiniteLoss(group.name, s, float(loss.detach().float().mean()), applied)
                    scaled = loss / self.accumulation if self.accumulation > 1 else loss
                    self._backward(reducer.prepare(scaled) if reducer is not None and last else scaled)
                outputs.append({k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in out.items()})
            if group.max_grad_norm:
                self.accelerator.clip_grad_norm_(group.params, group.max_grad_norm)
            self._optimizer_step(group)
            if not self._state_measured:
                self._state_bytes = max(self._state_bytes, self._training_state_bytes())
            self._zero_grad()
            applied.append(group.name)
            self._last_outputs[group.name] = {"_lr": lr, "_outputs": outputs}
        if self.ema is not None:
            self.ema.update()
        self._state_measured = self._state_measured or len(applied) == len(self.groups)

    def _training_state_bytes(self) -> int:
        """Bytes this process holds of the training state: the parameters of the trainable modules and of the
        modules the losses run (frozen teacher bases included; local shards in a sharded run), their gradients and
        the optimizer state (measured once, when every group has stepped: reported as ``memory/train_state_mib``)."""
        params = {id(p): p for m in [*self.modules.values(), *self._units.values()] for p in m.parameters()}
        tensors = [*params.values(), *(p.grad for p in params.values() if p.grad is not None)]
        for group in self.groups:
            for state in _inner(group.optimizer).state.values():
                tensors += [v for v in state.values() if isinstance(v, torch.Tensor) and v.ndim > 0]
        return parallel.local_bytes(tensors)

    # 3. logging, validation, checkpoints ----------------------------------------------------------------------
    def _say(self, message: str) -> None:
        if self.accelerator is None or self.accelerator.is_main_process:
            if self.bar is not None and not self.bar.disable:
                self.bar.write(message, file=sys.stdout)
            else:
                print(message, flush=True)

    def _metrics(self) -> dict[str, Any]:
        now = time.perf_counter()
        record: dict[str, Any] = {"step": self.state.step}
        if self._state_bytes and not self._state_reported:
            record["memory/train_state_mib"] = self._state_bytes / 2**20
            self._state_reported = True
        for name, last in self._last_outputs.items():
            record[f"lr/{name}"] = last["_lr"]
            outputs = last["_outputs"]
            for key in outputs[0]:
                values = [_scalar(out[key]) for out in outputs if isinstance(out.get(key), (torch.Tensor, int, float))]
                if values:
                    record[f"{name}/{key}"] = sum(values) / len(values)  # mean over the step's micro-batches
        steps = self.state.step - self._last_log_step
        if steps > 0:
            record["steps_per_s"] = steps / max(now - self._last_log_time, 1e-9)
        self._last_log_time, self._last_log_step = now, self.state.step
        return record

    def _log(self) -> None:
        record = self._metrics()
        if self.num_processes > 1:  # the mean over every process's micro-batches
            keys = [k for k, v in record.items() if "/" in k and not k.startswith("lr/") and isinstance(v, float)]
            if keys:
                values = torch.tensor([record[k] for k in keys], dtype=torch.float64, device=self.accelerator.device)
                values = self.accelerator.reduce(values, reduction="mean")
                record.update({k: float(v) for k, v in zip(keys, values.tolist())})
        self.state.metrics = record
        if not self.is_main:
            return
        self.metrics_log.write(record)
        shown = {k: v for k, v in record.items() if "/" in k and not k.startswith("lr/")}
        if self.bar is not None and not self.bar.disable:
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in shown.items()}, refresh=False)
        line = " | ".join(f"{k} {v:.4g}" for k, v in shown.items())
        self._say(f"step {self.state.step}/{self.total_steps} | {line}")

    def _validate(self) -> None:
        """The trainer's ``validate`` on the main process. In a sharded run every process first gathers the full
        weights (EMA weights swapped in by all of them), so the main process alone can run the modules."""
        if not self._sharded:
            return self._validate_on_main()
        ema = self.ema
        with ema.swapped() if ema is not None else contextlib.nullcontext(), parallel.unsharded(self._sharded):
            self.trainer.ema = None  # the EMA weights are in place already
            try:
                self._validate_on_main()
            finally:
                self.trainer.ema = ema
            self.accelerator.wait_for_everyone()

    def _validate_on_main(self) -> None:
        if not self.is_main:
            return
        out_dir = self.run_dir / "samples" / checkpoint_name(self.state.step)
        out_dir.mkdir(parents=True, exist_ok=True)
        rng = capture_rng()
        try:
            with torch.no_grad():
                metrics = self.trainer.validate(self.state.step, out_dir) or {}
        finally:
            restore_rng(rng)
        if metrics:
            record = {"step": self.state.step, **{f"val/{k}": float(v) for k, v in metrics.items()}}
            self.metrics_log.write(record)
            self._say(f"step {self.state.step} validation | " + " | ".join(f"{k} {v:.4g}" for k, v in record.items()
                                                                               if k != "step"))

    def _checkpoint(self, *, state: TrainState | None = None, rng: dict[str, Any] | None = None,
                    info: dict[str, Any] | None = None) -> Path | None:
        from accelerate.utils import broadcast_object_list, gather_object

        state = state or self.state
        rng = rng or capture_rng()
        rngs = gather_object([rng]) if self.num_processes > 1 else [rng]
        optimizers = {g.name: _inner(g.optimizer) for g in self.groups}
        sharded_tmp = None
        for module in self._sharded:  # a root left gathered by a forward without backward (a frozen teacher's)
            module.reshard()
        if self.mode == parallel.FSDP:  # every process writes its shards into the main process's temporary folder
            names = [str(checkpoint_tmp(self.run_dir, state.step))]
            if self.num_processes > 1:
                broadcast_object_list(names, from_process=0)
            sharded_tmp = Path(names[0])
            if self.is_main and sharded_tmp.exists():
                shutil.rmtree(sharded_tmp)
            self.accelerator.wait_for_everyone()
            try:
                save_sharded_state(sharded_tmp, sharded_state(self.modules, optimizers, self.ema))
            except Exception as exc:  # noqa: BLE001 - OSError and the like: the run must stop with one line
                shutil.rmtree(sharded_tmp, ignore_errors=True)
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise TrainingError(f"Could not write the sharded checkpoint of step {state.step} ({reason}); free "
                                    f"disk space or choose a writable --output-dir, then continue with --resume"
                                    ) from None
            self.accelerator.wait_for_everyone()
        path = None
        if self.is_main:
            path = save_checkpoint(
                self.run_dir, step=state.step, modules=self.modules, optimizers=optimizers, state=state,
                rng_by_process=rngs, ema=self.ema, scaler=self.accelerator.scaler,
                extra=self.trainer.state_dict_extra(), config_digest=self.config_digest, sharded_tmp=sharded_tmp,
                info={"method": self.method, "writer_process_index": self.accelerator.process_index,
                      "distributed": self.mode, **(info or {})})
            self.written.append(path)
            prune_checkpoints(self.run_dir, int(self.config.train.keep_last))
        self.accelerator.wait_for_everyone()
        return path or (self.run_dir / "checkpoints" / checkpoint_name(state.step))

    # 4. signals -----------------------------------------------------------------------------------------------
    def _on_signal(self, signum: int, frame: Any) -> None:
        if self._stop_signal is not None:  # a second signal: stop now
            raise KeyboardInterrupt
        self._stop_signal = signum

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous_handlers[signum] = signal.signal(signum, self._on_signal)

    def _restore_signals(self) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers.clear()

    def _should_stop(self) -> bool:
        stop = self._stop_signal is not None
        if self.num_processes > 1:
            flag = torch.tensor([1.0 if stop else 0.0], device=self.accelerator.device)
            stop = bool(self.accelerator.reduce(flag, reduction="sum").item() > 0)
        return stop

    # 5. the run -----------------------------------------------------------------------------------------------
    def run(self, *, resume: bool, checkpoint: str | Path | None) -> RunResult:
        from tqdm.auto import tqdm

        self.bar = None
        self._install_signals()
        resume_from = self._setup(resume, checkpoint)
        train_cfg = self.config.train
        self.total_steps = int(train_cfg.steps)
        log_every, validate_every = int(train_cfg.log_every), int(train_cfg.validate_every)
        checkpoint_every = int(train_cfg.checkpoint_every)
        if self.is_main:
            trainable = sum(p.numel() for g in self.groups for p in g.params)
            start = f"resuming from {resume_from} at step {self.state.step}" if resume_from else "starting"
            print(f"Training {self.method} in {self.run_dir}: {trainable:,} trainable parameters in groups "
                  f"{', '.join(f'{g.name} (every {g.every})' for g in self.groups)}; {self.num_processes} "
                  f"process(es) on {self.accelerator.device}; {start}", flush=True)
        self.bar = tqdm(total=self.total_steps, initial=self.state.step, unit="step", dynamic_ncols=True,
                        disable=not (self.progress and self.is_main), file=sys.stderr, desc=self.method)
        self._last_log_step, self._last_log_time = self.state.step, time.perf_counter()
        last_checkpoint = resume_from
        while self.state.step < self.total_steps:
            s = self.state.step
            start = (self.streams[0].epoch, self.streams[0].position)
            try:
                self._step(s)
            except _NonFiniteLoss as bad:
                return self._stop_non_finite(bad, TrainState(s, *start, dict(self.state.metrics)))
            self.state.step = s + 1
            self.state.epoch, self.state.batches_in_epoch = self.streams[0].epoch, self.streams[0].position
            self.bar.update(1)
            done = self.state.step == self.total_steps
            if log_every and (self.state.step % log_every == 0 or done):
                self._log()
            if validate_every and (self.state.step % validate_every == 0 or done):
                self._validate()
            if (checkpoint_every and self.state.step % checkpoint_every == 0) or done:
                last_checkpoint = self._checkpoint()
            if not done and self._should_stop():
                name = signal.Signals(self._stop_signal).name if self._stop_signal else "a signal"
                path = self._checkpoint()
                message = (f"Stopped by {name} at step {self.state.step}/{self.total_steps}; checkpoint saved to "
                           f"{path}; continue with --resume")
                self._say(message)
                return RunResult(self.run_dir, self.state.step, "interrupted", path, None, dict(self.state.metrics),
                                 list(self.written), message)
        self.bar.close()
        if last_checkpoint is None:
            last_checkpoint = self._checkpoint()
        export_dir = None
        if bool(train_cfg.export_on_finish) and self.is_main:
            from zoo.train.export import export_run, export_trainer

            if self._sharded:  # a normal single-file model: rebuilt unsharded from the final checkpoint
                export_dir = export_run(self.run_dir, self.run_dir / "export", last_checkpoint)
            else:
                export_dir = export_trainer(self.trainer, self.run_dir / "export", dict(self.state.metrics))
        self.accelerator.wait_for_everyone()
        message = f"Finished {self.total_steps} steps; checkpoint {last_checkpoint}" + (
            f"; exported to {export_dir}" if export_dir else "")
        self._say(message)
        return RunResult(self.run_dir, self.state.step, "finished", last_checkpoint, export_dir,
                         dict(self.state.metrics), list(self.written), message)

    def _stop_non_finite(self, bad: _NonFiniteLoss, start: TrainState) -> RunResult:
        """Save the last good state and raise a one-line TrainingError.

        When the failing group is the first one updated in its step, nothing has changed the weights or optimizer
        state since step ``s - 1``: the checkpoint is that state, with the data position of step ``s`` (the RNG
        states are the current ones, after the failed step's draws: taking them before every step would cost more
        than the rest of the runtime's bookkeeping)."""
        self._zero_grad()
        if bad.applied:
            # groups earlier in this step already stepped: save that state (marked), not a fake "step s"
            self.state.epoch, self.state.batches_in_epoch = self.streams[0].epoch, self.streams[0].position
            path = self._checkpoint(state=TrainState(bad.step, self.state.epoch, self.state.batches_in_epoch,
                                                     dict(self.state.metrics)),
                                    info={"partial_step": {"step": bad.step, "groups_applied": bad.applied}})
            note = f" (groups {', '.join(bad.applied)} of that step had already been applied)"
        else:
            path = self._checkpoint(state=start)
            note = ""
        raise TrainingError(
            f"Non-finite loss ({bad.value}) in group '{bad.group}' at step {bad.step}; the last good weights are in "
            f"{path}{note}; lower optim.{bad.group}.lr, set optim.{bad.group}.max_grad_norm, or use "
            f"train.mixed_precision=bf16 instead of fp16, then continue with --resume")

    def close(self) -> None:
        self._restore_signals()
        if getattr(self, "_lock", None) is not None:
            self._lock.close()
            self._lock = None
        if getattr(self, "bar", None) is not None:
            self.bar.close()
        if self.metrics_log is not None:
            self.metrics_log.close()
        if self.accelerator is not None:
            try:
                self.accelerator.end_training()
            finally:
                _reset_accelerate_state()


def _scalar(value: Any) -> float:
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.float().mean().item()
    return float(value)


def _broadcast_from_main(modules: Iterable[torch.nn.Module]) -> None:
    """Give every process the main process's weights and buffers (what DDP does when it wraps a model)."""
    import torch.distributed as dist

    with torch.no_grad():
        for module in modules:
            for tensor in list(module.parameters()) + list(module.buffers()):
                dist.broadcast(tensor.data, src=0)


def _inner(optimizer: Any) -> torch.optim.Optimizer:
    """The torch optimizer inside accelerate's ``AcceleratedOptimizer``."""
    return getattr(optimizer, "optimizer", optimizer)


def _plain(config: Any) -> Any:
    """An optimizer config as a plain object (omegaconf attribute access costs ~0.1 ms per read in the loop)."""
    from types import SimpleNamespace

    from omegaconf import DictConfig, OmegaConf

    if isinstance(config, DictConfig):
        obj = OmegaConf.to_object(config)
        return SimpleNamespace(**obj) if isinstance(obj, dict) else obj
    return config


def _cpu_only_distributed() -> bool:
    """True for several processes (torchrun / ``accelerate launch --multi_gpu``) on a machine without an accelerator.

    accelerate picks its multi-CPU (gloo) mode only when told to run on the CPU, and its ``--cpu`` launcher starts
    several processes only through mpirun; so a torchrun-style launch on a CPU-only machine is switched to CPU here.
    """
    import os

    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1 or int(os.environ.get("LOCAL_RANK", "-1")) >= 0
    has_xpu = hasattr(torch, "xpu") and torch.xpu.is_available()
    return launched and not torch.cuda.is_available() and not has_xpu


def _reset_accelerate_state() -> None:
    """Let a later run in this process choose another mixed precision (the process group itself is kept)."""
    try:
        from accelerate.state import AcceleratorState, GradientState

        AcceleratorState._reset_state()
        GradientState._reset_state()
    except Exception:  # noqa: BLE001 - private accelerate API; a stale state only matters for in-process reruns
        pass
