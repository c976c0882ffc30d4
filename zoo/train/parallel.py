"""Several processes on PyTorch's own distributed engine: DDP gradient reduction and FSDP2 sharding for the runtime.

``train.distributed`` (:data:`zoo.train.config.DISTRIBUTED_MODES`) picks one of:

``ddp``
    Every process holds every module. Each optimizer group's parameters are registered with a
    :class:`torch.nn.parallel.DistributedDataParallel` whose reducer averages their gradients in buckets with
    asynchronous all-reduces *during* the backward pass (communication overlaps computation). The runtime calls the
    DDP hooks around the loss itself (as PyTorch's composable ``replicate`` does around a module's forward), so a
    trainer may reach a module through any reference: the shared-base teachers call one UNet through several objects.
    Unused parameters (an expert of another phase) are found from the loss's graph.

``fsdp``
    FSDP2 (:func:`torch.distributed.fsdp.fully_shard`, in place: every reference a trainer holds stays valid). The
    modules the trainer runs (:meth:`zoo.train.trainer.Trainer.parallel_modules`: the students, the fake-score /
    LoRA networks and the frozen teacher base they sit on) are sharded per block, then as a whole; parameters become
    DTensors holding 1/N of each tensor, gradients are reduce-scattered during the backward pass. References to the
    old parameter objects elsewhere in the trainer (parameter lists, containers) are re-tied to the sharded ones.
    Checkpoints go through :mod:`torch.distributed.checkpoint` (see :mod:`zoo.train.checkpoint`).

``auto``
    ``ddp`` on several processes, plain training on one.

In ``ddp`` and ``fsdp`` each micro-batch ``v = rank * accumulation + j`` of a step has its own data stream and its
random numbers are seeded from ``(seed, step, group, v)`` (:func:`micro_seed`), so N processes with k accumulation
steps compute what one process computes with N * k, and a run resumes exactly on another number of processes as long
as N * k stays the same.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
from typing import Any, Iterable, Iterator

import numpy as np
import torch
from torch import nn

from zoo.errors import TrainingError

SINGLE, DDP, FSDP = "single", "ddp", "fsdp"


def resolve_mode(requested: str, num_processes: int) -> str:
    """The mode the runtime runs: ``single`` (one process, classic data and RNG streams), ``ddp`` or ``fsdp``."""
    if requested == "auto":
        return DDP if num_processes > 1 else SINGLE
    return requested


def micro_seed(seed: int, step: int, group_index: int, stream: int) -> int:
    """A 63-bit seed for micro-batch ``stream`` of ``group_index`` at ``step``: independent of the world size."""
    digest = hashlib.blake2b(f"{seed}/{step}/{group_index}/{stream}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def seed_everything(value: int) -> None:
    """Seed python, numpy and torch (all devices) from ``value``."""
    random.seed(value)
    np.random.seed(value % 2**32)
    torch.manual_seed(value)


# -- ddp --------------------------------------------------------------------------------------------------------------
class GroupReducer:
    """PyTorch DDP's reducer for one optimizer group's parameters (see the module docstring).

    Use :meth:`prepare` on the loss of the micro-batch whose backward must synchronise, and :meth:`no_sync` around
    the backward passes of the other micro-batches (gradient accumulation)."""

    def __init__(self, params: list[nn.Parameter], bucket_cap_mb: float = 25.0) -> None:
        from torch.nn.parallel import DistributedDataParallel

        self.holder = nn.ParameterList(params)  # the same Parameter objects, not copies
        # The constructor broadcasts rank 0's values of these parameters (as DDP does when it wraps a model).
        self.ddp = DistributedDataParallel(self.holder, find_unused_parameters=True, bucket_cap_mb=bucket_cap_mb)

    def prepare(self, loss: torch.Tensor) -> torch.Tensor:
        """Arm the reducer for the backward pass of ``loss`` (what DDP's forward does before and after the model)."""
        self.ddp._pre_forward()
        return self.ddp._post_forward(loss)

    def no_sync(self):
        return self.ddp.no_sync()


# -- fsdp -------------------------------------------------------------------------------------------------------------
def _has_forward(module: nn.Module) -> bool:
    return type(module).forward is not nn.Module.forward


def expand_units(modules: dict[str, nn.Module]) -> dict[str, nn.Module]:
    """The modules whose forward runs: containers (``ModuleList``/``ModuleDict``) are replaced by their elements; a
    module without a forward of its own (a parameter holder) is refused with one line."""
    units: dict[str, nn.Module] = {}
    for name, module in modules.items():
        if isinstance(module, (nn.ModuleList, nn.ModuleDict)):
            children = module.items() if isinstance(module, nn.ModuleDict) else enumerate(module)
            units.update(expand_units({f"{name}.{key}": child for key, child in children}))
        elif _has_forward(module):
            units[name] = module
        elif any(True for _ in module.parameters()):
            raise TrainingError(f"train.distributed=fsdp: the trainable module {name!r} ({type(module).__name__}) "
                                f"only holds parameters that other modules run; override parallel_modules() in the "
                                f"trainer to name the modules whose forward uses them")
    return units


def blocks_of(unit: nn.Module) -> list[nn.Module]:
    """The blocks a unit is sharded by: the elements of its ``ModuleList`` children (a UNet's down and up blocks, a
    transformer's layers) and its other children holding a large share of its parameters (a UNet's mid block)."""
    total = sum(p.numel() for p in unit.parameters()) or 1
    blocks = []
    for child in unit.children():
        if isinstance(child, nn.ModuleList):
            blocks += [m for m in child if any(True for _ in m.parameters())]
        elif sum(p.numel() for p in child.parameters()) >= 0.1 * total and any(True for _ in child.children()):
            blocks.append(child)
    return blocks


def mixed_precision_policy(mixed_precision: str):
    """FSDP2's policy for ``train.mixed_precision``: compute in bf16/fp16, reduce gradients in fp32."""
    from torch.distributed.fsdp import MixedPrecisionPolicy

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mixed_precision)
    return MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=torch.float32 if dtype is not None else None)


def shard(units: dict[str, nn.Module], mixed_precision: str) -> dict[int, nn.Parameter]:
    """``fully_shard`` every unit per block, then as a whole; return ``{id(old parameter): new parameter}``."""
    from torch.distributed.fsdp import fully_shard

    owners = [(module, key, param) for unit in units.values() for module in unit.modules()
              for key, param in module._parameters.items() if param is not None]
    policy = mixed_precision_policy(mixed_precision)
    done: set[int] = set()
    for unit in units.values():
        if id(unit) in done:
            continue
        for block in blocks_of(unit):
            fully_shard(block, mp_policy=policy)
        fully_shard(unit, mp_policy=policy)
        done.add(id(unit))
    return {id(old): module._parameters[key] for module, key, old in owners if module._parameters[key] is not old}


_FOREIGN = {"accelerate", "omegaconf", "transformers", "tokenizers", "diffusers", "numpy", "torch", "peft",
            "huggingface_hub", "safetensors"}
"""Packages whose plain objects :func:`retie` does not look into (they hold no trainer-owned parameter lists)."""


def _package(obj: Any) -> str:
    return type(obj).__module__.split(".")[0]


def retie(root: Any, mapping: dict[int, nn.Parameter], depth: int = 6) -> int:
    """Replace, in place, every reference to an old parameter reachable from ``root`` (modules' parameter
    dictionaries, lists, dicts, tuples and plain objects' attributes) by its sharded replacement; return the count."""
    if not mapping:
        return 0
    seen: set[int] = set()
    count = 0

    def fix(value: Any) -> tuple[Any, bool]:
        new = mapping.get(id(value)) if isinstance(value, torch.Tensor) else None
        return (new, True) if new is not None else (value, False)

    def visit(obj: Any, level: int) -> None:
        nonlocal count
        if level > depth or id(obj) in seen or isinstance(obj, (str, bytes, int, float, bool, torch.Tensor)):
            return
        seen.add(id(obj))
        if isinstance(obj, nn.Module):
            for module in obj.modules():
                seen.add(id(module))
                for key, param in list(module._parameters.items()):
                    new, changed = fix(param)
                    if changed:
                        module._parameters[key] = new
                        count += 1
                for key, value in vars(module).items():  # plain attributes (lists of parameters, helpers)
                    if not key.startswith("_") and not isinstance(value, nn.Module):
                        visit(value, level + 1)
            return
        if isinstance(obj, list):
            for index, value in enumerate(obj):
                new, changed = fix(value)
                if changed:
                    obj[index] = new
                    count += 1
                else:
                    visit(value, level + 1)
        elif isinstance(obj, dict):
            for key, value in list(obj.items()):
                new, changed = fix(value)
                if changed:
                    obj[key] = new
                    count += 1
                else:
                    visit(value, level + 1)
        elif isinstance(obj, tuple):
            for value in obj:  # tuples cannot change in place; their mutable members can
                visit(value, level + 1)
        elif hasattr(obj, "__dict__") and not isinstance(obj, type) and _package(obj) not in _FOREIGN:
            for key, value in list(vars(obj).items()):
                new, changed = fix(value)
                if changed:
                    setattr(obj, key, new)
                    count += 1
                else:
                    visit(value, level + 1)

    visit(root, 0)
    return count


def fsdp_modules(units: Iterable[nn.Module]) -> list[nn.Module]:
    """Every FSDP-managed module inside ``units`` (blocks and roots), outermost last."""
    from torch.distributed.fsdp import FSDPModule

    found, seen = [], set()
    for unit in units:
        for module in unit.modules():
            if isinstance(module, FSDPModule) and id(module) not in seen:
                seen.add(id(module))
                found.append(module)
    return found


def set_gradient_sync(modules: list[nn.Module], enabled: bool) -> None:
    for module in modules:
        module.set_requires_gradient_sync(enabled)


@contextlib.contextmanager
def unsharded(modules: list[nn.Module]) -> Iterator[None]:
    """All processes gather the full parameters and keep them through forwards, so the main process alone may run
    the modules (validation); collective: every process must enter."""
    for module in modules:
        module.set_reshard_after_forward(False)
    for module in modules:
        module.unshard()
    try:
        yield
    finally:
        for module in modules:
            module.reshard()
            module.set_reshard_after_forward(True)


def local_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes this process holds of ``tensors`` (the local shard of a DTensor)."""
    total = 0
    for tensor in tensors:
        local = tensor.to_local() if hasattr(tensor, "to_local") else tensor
        total += local.numel() * local.element_size()
    return total
