"""Checkpoints of a training run: atomic, pickle-free, exact to resume from.

Layout (``<run>/checkpoints/step-000100/``)::

    models/<name>.safetensors        trainable weights (parameters with requires_grad) and buffers of each module
    models/<name>.ema.safetensors    EMA weights, when the run keeps an EMA
    optimizers/<group>.safetensors   tensors of each optimizer's state (Adam moments, step counts)
    rng.safetensors                  torch (and CUDA) RNG states of every process
    state.json                       step, data position, python/numpy RNG states of every process, optimizer
                                     hyper-parameters and non-tensor state, grad-scaler state, trainer extras,
                                     config hash, last metrics

Writing goes to ``step-000100.tmp-<pid>/``; every file is fsynced, then the folder is renamed to ``step-000100`` and
the parent folder is fsynced. A folder named ``step-NNNNNN`` is therefore always complete: a run killed while
writing leaves only a ``.tmp-<pid>`` folder, which :func:`latest_checkpoint` ignores and the next run removes. A
write that fails (disk full, read-only disk) removes its temporary folder and raises one line; the previous
checkpoint stays as it was. ``state.json`` records the size and SHA-256 of every other file, so a checkpoint damaged
later (a truncated copy, a bad disk) is recognised (:func:`verify_checkpoint`) and resuming falls back to the newest
intact one, saying which were skipped and why (:func:`find_resumable`).
Frozen parameters are not saved: they are rebuilt by the trainer's ``build()``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zoo.errors import TrainingError
from zoo.train.state import TrainState

CHECKPOINTS_DIR = "checkpoints"
FORMAT_VERSION = 1
SHARDED_DIR = "dcp"
"""In checkpoints of ``train.distributed=fsdp`` runs: weights, EMA and optimizer state written by every process
through :mod:`torch.distributed.checkpoint` (loadable on any number of processes, one included)."""
TEST_PAUSE_ENV = "ZOO_TEST_CHECKPOINT_PAUSE"
"""Test hook: ``"STEP:SECONDS"`` makes the writer of checkpoint STEP pause SECONDS half-way (after the model files,
before the rest), after creating ``.paused`` in the temporary folder, so a test can SIGKILL it mid-write."""

_STEP_RE = re.compile(r"^step-(\d+)$")
_TMP_RE = re.compile(r"^step-(\d+)\.(?:tmp|replaced)-(\d+)$")


def unwrap(module: nn.Module) -> nn.Module:
    """The model inside a DDP/FSDP/DeepSpeed/``torch.compile`` wrapper (the module itself when unwrapped)."""
    from accelerate.utils import extract_model_from_parallel

    return extract_model_from_parallel(module, keep_fp32_wrapper=True, keep_torch_compile=False)


def checkpoint_name(step: int) -> str:
    return f"step-{step:06d}"


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints of the run as ``(step, folder)``, oldest first."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = _STEP_RE.match(path.name)
        if match and path.is_dir():
            found.append((int(match.group(1)), path))
    return sorted(found)


def verify_checkpoint(checkpoint: str | Path) -> str | None:
    """Why ``checkpoint`` cannot be resumed from (``state.json`` unreadable, a file missing, truncated or changed
    since it was written), or None when it is intact. Checkpoints written before the file records are checked for
    a readable ``state.json`` only."""
    checkpoint = Path(checkpoint)
    try:
        document = json.loads((checkpoint / "state.json").read_text())
    except (OSError, ValueError) as exc:
        return f"its state.json is unreadable ({type(exc).__name__})"
    if not isinstance(document, dict):
        return "its state.json is not a checkpoint record"
    for name, record in (document.get("files") or {}).items():
        path = checkpoint / name
        if not path.is_file():
            return f"{name} is missing"
        size = path.stat().st_size
        if size != record.get("size"):
            return f"{name} is truncated or changed ({size} of {record.get('size')} bytes)"
        if record.get("sha256") and _sha256(path) != record["sha256"]:
            return f"{name} has changed since it was written (checksum differs)"
    return None


def find_resumable(run_dir: str | Path) -> tuple[Path | None, list[tuple[int, str]]]:
    """The newest intact checkpoint of the run (None when there is none) and the newer ones skipped, with why."""
    skipped = []
    for step, path in reversed(list_checkpoints(run_dir)):
        problem = verify_checkpoint(path)
        if problem is None:
            return path, skipped
        skipped.append((step, problem))
    return None, skipped


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest intact checkpoint (see :func:`find_resumable`), or None."""
    return find_resumable(run_dir)[0]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def config_hash(config: Any) -> str:
    """Hash of the resolved config without the run-control keys (steps, output_dir, checkpoint_every, ...)."""
    from omegaconf import OmegaConf

    from zoo.train.config import RUN_CONTROL_KEYS

    data = OmegaConf.to_container(config, resolve=True) if not isinstance(config, dict) else dict(config)
    train = dict(data.get("train", {}))
    for key in RUN_CONTROL_KEYS:
        train.pop(key, None)
    data["train"] = train
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


# -- tensors <-> files -------------------------------------------------------------------------------------------
def module_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """What a checkpoint keeps of ``module``: parameters with ``requires_grad`` and persistent buffers."""
    module = unwrap(module)
    state = {key: p.detach() for key, p in module.named_parameters() if p.requires_grad}
    full = module.state_dict(keep_vars=True)
    for key, buffer in module.named_buffers():
        if key in full:  # persistent buffers only
            state[key] = buffer.detach()
    return state


def save_tensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    """safetensors file of ``tensors`` (copied to CPU; tensors sharing memory are stored once, aliases in metadata)."""
    from safetensors.torch import save_file

    seen: dict[tuple, str] = {}
    aliases: dict[str, str] = {}
    out: dict[str, torch.Tensor] = {}
    for key, tensor in tensors.items():
        ident = (tensor.device, tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape),
                 tuple(tensor.stride()), tensor.dtype) if tensor.numel() else None
        if ident is not None and ident in seen:
            aliases[key] = seen[ident]
            continue
        if ident is not None:
            seen[ident] = key
        out[key] = tensor.detach().to("cpu").contiguous()
    # safetensors refuses tensors that share storage even after .contiguous(); clone only those
    ptrs: dict[int, str] = {}
    for key, tensor in out.items():
        if tensor.numel() == 0:
            continue
        ptr = tensor.untyped_storage().data_ptr()
        if ptr in ptrs:
            out[key] = tensor.clone()
        else:
            ptrs[ptr] = key
    meta = dict(metadata or {})
    if aliases:
        meta["aliases"] = json.dumps(aliases)
    save_file(out, str(path), metadata=meta or None)


def load_tensors(path: Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    tensors = {}
    with safe_open(str(path), framework="pt", device=str(device)) as handle:
        for key in handle.keys():
            tensors[key] = handle.get_tensor(key)
        aliases = json.loads((handle.metadata() or {}).get("aliases", "{}"))
    for key, target in aliases.items():
        tensors[key] = tensors[target]
    return tensors


def load_module_state(module: nn.Module, path: Path) -> None:
    """Load a ``models/<name>.safetensors`` into ``module``; missing keys may only be frozen parameters."""
    from zoo.errors import WeightsError

    module = unwrap(module)
    state = load_tensors(path)
    result = module.load_state_dict(state, strict=False)
    frozen = {key for key, p in module.named_parameters() if not p.requires_grad}
    missing = [key for key in result.missing_keys if key not in frozen]
    if result.unexpected_keys or missing:
        detail = (f"unexpected {result.unexpected_keys[:3]}" if result.unexpected_keys else f"missing {missing[:3]}")
        raise WeightsError(f"Checkpoint file {path} does not fit the trainer's module ({detail}); resume with the "
                           f"same method and config that wrote it")


def _optimizer_to_files(optimizer: Any) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state dict into tensors (for safetensors) and JSON (hyper-parameters, scalars)."""
    state_dict = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entry in state_dict["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = value
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in group.items()}
              for group in state_dict["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def _optimizer_from_files(optimizer: Any, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, tensor in tensors.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = tensor
    for index, entries in meta.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(entries)
    groups = []
    for group in meta["param_groups"]:
        group = dict(group)
        if isinstance(group.get("betas"), list):
            group["betas"] = tuple(group["betas"])
        groups.append(group)
    optimizer.load_state_dict({"state": state, "param_groups": groups})


# -- RNG ----------------------------------------------------------------------------------------------------------
def capture_rng() -> dict[str, Any]:
    """RNG states of this process (python, numpy, torch and CUDA), as the libraries return them (cheap to take)."""
    import random

    import numpy as np

    rng: dict[str, Any] = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def _rng_json(rng: dict[str, Any]) -> dict[str, Any]:
    """The python and numpy parts of :func:`capture_rng` as JSON-ready lists."""
    version, internal, gauss = rng["python"]
    name, keys, pos, has_gauss, cached = rng["numpy"]
    return {"python": [version, list(internal), gauss],
            "numpy": [name, [int(k) for k in keys], int(pos), int(has_gauss), float(cached)]}


def restore_rng(rng: dict[str, Any]) -> None:
    """Set the RNG states from :func:`capture_rng` or from a checkpoint."""
    import random

    import numpy as np

    version, internal, gauss = rng["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = rng["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), int(pos), int(has_gauss), float(cached)))
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


# -- save / load --------------------------------------------------------------------------------------------------
def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _test_pause(step: int, tmp: Path) -> None:
    value = os.environ.get(TEST_PAUSE_ENV)
    if not value:
        return
    want, _, seconds = value.partition(":")
    if int(want) == step:
        (tmp / ".paused").write_text(str(os.getpid()))
        time.sleep(float(seconds or 60))
        (tmp / ".paused").unlink()


def checkpoint_tmp(run_dir: str | Path, step: int, pid: int | None = None) -> Path:
    """The temporary folder a checkpoint of ``step`` is written into before its atomic rename."""
    return Path(run_dir) / CHECKPOINTS_DIR / f"{checkpoint_name(step)}.tmp-{pid or os.getpid()}"


def _tensors(obj: Any):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for value in obj.values():
            yield from _tensors(value)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            yield from _tensors(value)


@contextlib.contextmanager
def _single_process_quiet():
    """Silence torch.distributed.checkpoint's note that it runs in one process (that is intended here)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*assuming the intent is to (load|save) in a single process.*")
        yield


def _has_dtensor(state: Any) -> bool:
    """Whether ``state`` holds sharded tensors (then saving and loading are collectives of every process)."""
    from torch.distributed.tensor import DTensor

    return any(isinstance(t, DTensor) for t in _tensors(state))


def sharded_state(modules: dict[str, nn.Module], optimizers: dict[str, Any], ema: Any = None) -> dict[str, Any]:
    """The state of a sharded run as :mod:`torch.distributed.checkpoint` saves it: each module's
    :func:`module_state`, each optimizer's state keyed by parameter names (``get_optimizer_state_dict``, so it
    loads on another number of processes) and the EMA weights. Tensors are the live ones (loading writes in place).
    """
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    root = nn.ModuleDict(modules)
    state: dict[str, Any] = {"models": {name: module_state(module) for name, module in modules.items()}}
    if optimizers:
        state["optimizers"] = {name: get_optimizer_state_dict(root, optimizer)
                               for name, optimizer in optimizers.items()}
    if ema is not None:
        state["ema"] = {name: ema.state_dict(name) for name in ema.shadow}
    return state


def _load_sharded(checkpoint: Path, modules: dict[str, nn.Module], optimizers: dict[str, Any] | None,
                  ema: Any) -> None:
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    state = sharded_state(modules, optimizers or {}, ema)
    try:
        with _single_process_quiet():
            dcp.load(state, checkpoint_id=str(checkpoint / SHARDED_DIR), no_dist=not _has_dtensor(state))
    except Exception as exc:  # noqa: BLE001 - CheckpointException / missing keys: a checkpoint of another run
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TrainingError(f"Checkpoint {checkpoint} does not fit this run ({reason[:200]}); resume with the same "
                            f"method and config that wrote it") from None
    for name, module in modules.items():
        module.load_state_dict(state["models"][name], strict=False)
    root = nn.ModuleDict(modules)
    for name, optimizer in (optimizers or {}).items():
        set_optimizer_state_dict(root, optimizer, state["optimizers"][name])
    if ema is not None:
        for name in ema.shadow:
            ema.load_state_dict(name, state["ema"][name])


def save_sharded_state(tmp: str | Path, state: dict[str, Any]) -> None:
    """Write :func:`sharded_state` into ``<tmp>/dcp`` with :mod:`torch.distributed.checkpoint` (every process of a
    sharded run calls it; each writes its own shards)."""
    import torch.distributed.checkpoint as dcp

    folder = Path(tmp) / SHARDED_DIR
    folder.mkdir(parents=True, exist_ok=True)
    with _single_process_quiet():
        dcp.save(state, checkpoint_id=str(folder), no_dist=not _has_dtensor(state))


def save_checkpoint(run_dir: str | Path, *, step: int, modules: dict[str, nn.Module],
                    optimizers: dict[str, Any], state: TrainState, rng_by_process: list[dict[str, Any]],
                    ema: Any = None, scaler: Any = None, extra: dict[str, Any] | None = None,
                    config_digest: str = "", info: dict[str, Any] | None = None, sharded_tmp: Path | None = None
                    ) -> Path:
    """Write ``<run>/checkpoints/step-NNNNNN`` atomically and return it. An existing folder of that step (from before
    a resume that went back past it, or damaged) is replaced only once the new one is complete.

    Call on the main process only; ``rng_by_process`` holds :func:`capture_rng` of every process, by index. With
    ``sharded_tmp`` (a sharded run) the weights, EMA and optimizer state are already in ``<sharded_tmp>/dcp``
    (:func:`save_sharded_state`, written by every process); the rest is added there and the folder renamed.
    """
    root = Path(run_dir) / CHECKPOINTS_DIR
    final = root / checkpoint_name(step)
    tmp = sharded_tmp or checkpoint_tmp(run_dir, step)
    try:
        root.mkdir(parents=True, exist_ok=True)
        if tmp.exists() and sharded_tmp is None:
            shutil.rmtree(tmp)
        return _write_checkpoint(root, tmp, final, step=step, modules=modules, optimizers=optimizers, state=state,
                                 rng_by_process=rng_by_process, ema=ema, scaler=scaler, extra=extra,
                                 config_digest=config_digest, info=info, sharded=sharded_tmp is not None)
    except Exception as exc:  # noqa: BLE001 - OSError, SafetensorError...: the write failed, the run must not
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            free = f", {shutil.disk_usage(root if root.exists() else root.parent).free / 2**30:.1f} GiB free"
        except OSError:
            free = ""
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        previous = list_checkpoints(root.parent)
        kept = f"{previous[-1][1].name} is intact" if previous else "no earlier checkpoint exists"
        raise TrainingError(f"Could not write checkpoint {checkpoint_name(step)} in {root} ({reason}{free}); {kept} "
                            f"and the partial one was removed; free disk space or choose a writable --output-dir, "
                            f"then continue with --resume") from None


def _write_checkpoint(root: Path, tmp: Path, final: Path, *, step: int, modules: dict[str, nn.Module],
                      optimizers: dict[str, Any], state: TrainState, rng_by_process: list[dict[str, Any]],
                      ema: Any, scaler: Any, extra: dict[str, Any] | None, config_digest: str,
                      info: dict[str, Any] | None, sharded: bool = False) -> Path:
    written: list[Path] = []
    if sharded:  # weights, EMA and optimizer state are in dcp/ already
        written += sorted(path for path in (tmp / SHARDED_DIR).rglob("*") if path.is_file())
        modules, optimizers = {}, {}
    else:
        (tmp / "models").mkdir(parents=True)
        (tmp / "optimizers").mkdir()

    # 1. weights (and EMA weights)
    for name, module in modules.items():
        path = tmp / "models" / f"{name}.safetensors"
        save_tensors(module_state(module), path)
        written.append(path)
        if ema is not None and name in ema.shadow:
            path = tmp / "models" / f"{name}.ema.safetensors"
            save_tensors(ema.state_dict(name), path)
            written.append(path)
    _test_pause(step, tmp)

    # 2. optimizer state: tensors to safetensors, the rest to state.json
    optimizer_meta = {}
    for name, optimizer in optimizers.items():
        tensors, meta = _optimizer_to_files(optimizer)
        path = tmp / "optimizers" / f"{name}.safetensors"
        save_tensors(tensors, path)
        written.append(path)
        optimizer_meta[name] = meta

    # 3. RNG states of every process
    rng_tensors = {}
    rng_json = []
    for index, rng in enumerate(rng_by_process):
        rng_tensors[f"torch.{index}"] = rng["torch"]
        for device, cuda_state in enumerate(rng.get("cuda", [])):
            rng_tensors[f"cuda.{index}.{device}"] = cuda_state
        rng_json.append({**_rng_json(rng), "cuda_devices": len(rng.get("cuda", []))})
    save_tensors(rng_tensors, tmp / "rng.safetensors")
    written.append(tmp / "rng.safetensors")

    # 4. state.json last: a folder without it is never complete; it records every other file's size and hash
    files = {path.relative_to(tmp).as_posix(): {"size": path.stat().st_size, "sha256": _sha256(path)}
             for path in written}
    document = {
        "files": files,
        "format": FORMAT_VERSION,
        "step": step,
        "train_state": state.to_dict(),
        "config_hash": config_digest,
        "num_processes": len(rng_by_process),
        "rng": rng_json,
        "optimizers": optimizer_meta,
        "grad_scaler": scaler.state_dict() if scaler is not None else None,
        "ema": {"decay": ema.decay, "modules": sorted(ema.shadow)} if ema is not None else None,
        "sharded": sharded,
        "trainer_extra": extra or {},
        **(info or {}),
    }
    (tmp / "state.json").write_text(json.dumps(document, default=float))
    written.append(tmp / "state.json")

    # 5. durability, then the atomic rename
    for path in written:
        _fsync_file(path)
    for folder in (tmp / "models", tmp / "optimizers", tmp / SHARDED_DIR, tmp):
        if folder.is_dir():
            _fsync_dir(folder)
    replaced = root / f"{final.name}.replaced-{os.getpid()}"
    if final.exists():
        os.rename(final, replaced)
    os.rename(tmp, final)
    _fsync_dir(root)
    shutil.rmtree(replaced, ignore_errors=True)
    return final


def read_state(checkpoint: str | Path) -> dict[str, Any]:
    path = Path(checkpoint) / "state.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise TrainingError(f"Checkpoint {checkpoint} is unreadable ({exc}); resume from an older one with "
                            f"'--checkpoint' or delete it") from None


def load_checkpoint(checkpoint: str | Path, *, modules: dict[str, nn.Module], optimizers: dict[str, Any] | None = None,
                    ema: Any = None, scaler: Any = None, process_index: int = 0,
                    num_processes: int = 1) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Load weights (and optimizer, EMA, scaler state when given) from ``checkpoint``.

    Returns ``(state_json, rng)`` where ``rng`` is this process's RNG state for :func:`restore_rng`, or None when the
    checkpoint was written by a different number of processes.
    """
    checkpoint = Path(checkpoint)
    document = read_state(checkpoint)
    if document.get("sharded"):
        _load_sharded(checkpoint, modules, optimizers, ema)
        modules, optimizers = {}, {}
        ema = None
    elif _has_dtensor({name: module_state(module) for name, module in modules.items()}):
        raise TrainingError(f"Checkpoint {checkpoint} was written by a run without train.distributed=fsdp; resume "
                            f"it with train.distributed=ddp (or auto), or start a new fsdp run")
    for name, module in modules.items():
        path = checkpoint / "models" / f"{name}.safetensors"
        if not path.is_file() and not any(p.requires_grad for p in module.parameters()):
            continue  # a buffers-only module added after this checkpoint was written (it keeps its initial state)
        if not path.is_file():
            raise TrainingError(f"Checkpoint {checkpoint} has no weights for module {name!r}; resume with the same "
                                f"method and config that wrote it")
        load_module_state(module, path)
        if ema is not None and name in ema.shadow:
            ema_path = checkpoint / "models" / f"{name}.ema.safetensors"
            if ema_path.is_file():
                ema.load_state_dict(name, load_tensors(ema_path))
            else:
                ema.load_state_dict(name, {k: p.detach() for k, p in zip(ema.names[name], ema.params[name])})
    for name, optimizer in (optimizers or {}).items():
        path = checkpoint / "optimizers" / f"{name}.safetensors"
        if not path.is_file() or name not in document.get("optimizers", {}):
            raise TrainingError(f"Checkpoint {checkpoint} has no state for optimizer group {name!r}; resume with "
                                f"the same method and config that wrote it")
        _optimizer_from_files(optimizer, load_tensors(path), document["optimizers"][name])
    if scaler is not None and document.get("grad_scaler"):
        scaler.load_state_dict(document["grad_scaler"])
    rng = None
    if document.get("num_processes") == num_processes and process_index < len(document.get("rng", [])):
        tensors = load_tensors(checkpoint / "rng.safetensors")
        entry = document["rng"][process_index]
        rng = {"python": entry["python"], "numpy": entry["numpy"], "torch": tensors[f"torch.{process_index}"]}
        if entry.get("cuda_devices"):
            rng["cuda"] = [tensors[f"cuda.{process_index}.{d}"] for d in range(entry["cuda_devices"])]
    return document, rng


def prune_checkpoints(run_dir: str | Path, keep_last: int) -> list[Path]:
    """Delete all but the newest ``keep_last`` complete checkpoints (0 keeps all); return the deleted folders."""
    if keep_last <= 0:
        return []
    removed = []
    for _, path in list_checkpoints(run_dir)[:-keep_last]:
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(run_dir: str | Path) -> list[Path]:
    """Delete ``step-*.tmp-<pid>`` / ``.replaced-<pid>`` folders left by killed writers (whose process no longer
    runs)."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    removed = []
    if root.is_dir():
        for path in root.iterdir():
            match = _TMP_RE.match(path.name)
            if match and (int(match.group(2)) == os.getpid() or not _pid_alive(int(match.group(2)))):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    return removed
