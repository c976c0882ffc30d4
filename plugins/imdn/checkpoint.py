"""Read IMDN weights safely, build the matching network, convert official ``.pth`` files to safetensors.

* ``.pth`` / ``.pt`` / ``.bin`` / ``.ckpt``: ``torch.load(..., weights_only=True, map_location="cpu")`` only (the official
  files hold CUDA storages, hence the ``map_location``). A pickle that needs code to unpickle is refused.
* ``.safetensors``: read with :mod:`safetensors`; preferred.
* Containers are unwrapped (``state_dict``, ``params_ema``, ``params``, ``model_state_dict``, ``net``, a single-key dict)
  and a ``module.`` (DataParallel) or ``netG.`` prefix shared by all keys is removed. RTC's ``model.`` prefix is a real
  attribute name and is kept.
* The architecture and scale come from :func:`zoo_plugins.imdn.detect.detect_architecture`; the weights are then loaded
  with ``strict=True``.

Convert from the command line::

    python -m zoo_plugins.imdn.checkpoint IMDN_x4.pth IMDN_x4.safetensors [--half]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch

from zoo.errors import InputError, WeightsError
from zoo_plugins.imdn.detect import ArchInfo, detect_architecture

PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
SAFETENSORS_SUFFIX = ".safetensors"
WEIGHT_SUFFIXES = (SAFETENSORS_SUFFIX, *PICKLE_SUFFIXES)
_CONTAINER_KEYS = ("params_ema", "params-ema", "params", "state_dict", "model_state_dict", "net", "model")
_PREFIXES = ("module.", "netG.")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The raw tensors of a weights file, read without executing code; :class:`WeightsError` when unreadable."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"Weights file not found: {path}")
    if path.stat().st_size == 0:
        raise WeightsError(f"{path.name} is empty (0 bytes); download it again")
    if path.suffix == SAFETENSORS_SUFFIX or (path.suffix not in PICKLE_SUFFIXES and _looks_like_safetensors(path)):
        return _read_safetensors(path)
    return _read_pickle(path)


def _looks_like_safetensors(path: Path) -> bool:
    with path.open("rb") as handle:
        head = handle.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"Cannot read {path.name} as safetensors ({_first_line(exc)}): the file is truncated or "
                           "corrupt; download or convert it again") from None


def _read_pickle(path: Path) -> Any:
    with open(path, "rb") as handle:
        head = handle.read(2)
    if head[:1] != b"\x80" and head != b"PK":  # neither a pickle (protocol 2+) nor torch's zip format
        raise WeightsError(f"{path.name} is not a PyTorch checkpoint (it is corrupt or another kind of file); use an "
                           f"official IMDN .pth or a .safetensors file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" in str(exc).lower() or "weights_only" in str(exc):
            raise WeightsError(
                f"Refusing to load {path.name}: it contains pickled Python objects or code, not only tensors "
                "(torch.load weights_only=True); get the official state dict or a .safetensors file instead"
            ) from None
        raise WeightsError(f"Cannot read {path.name} ({_first_line(exc)}): the file is truncated or corrupt; "
                           "download it again") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, AttributeError, TypeError, IndexError,
            KeyError) as exc:
        raise WeightsError(f"Cannot read {path.name} ({_first_line(exc)}): the file is truncated, corrupt or not a "
                           "PyTorch checkpoint; download it again") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:160]}" if text else type(exc).__name__


def canonicalize_state_dict(obj: Any, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Unwrap common containers and strip a prefix shared by all keys (``module.``, ``netG.``)."""
    state = obj
    for _ in range(3):  # nested containers such as {"state_dict": {"params_ema": {...}}}
        if not isinstance(state, Mapping):
            break
        if len(state) == 1 and isinstance(next(iter(state.values())), Mapping):
            state = next(iter(state.values()))
            continue
        container = next((k for k in _CONTAINER_KEYS if isinstance(state.get(k), Mapping)), None)
        if container is None:
            break
        state = state[container]
    if not isinstance(state, Mapping):
        raise WeightsError(f"{source} holds a {type(state).__name__}, not a state dict of tensors; "
                           "expected an IMDN checkpoint")
    not_tensors = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise WeightsError(f"{source} is not a state dict of tensors (entry {not_tensors[0]!r} is a "
                           f"{type(state[not_tensors[0]]).__name__}); expected an IMDN checkpoint")
    keys = list(state)
    for prefix in _PREFIXES:
        if keys and all(k.startswith(prefix) for k in keys):
            return {k[len(prefix):]: v for k, v in state.items()}
    return dict(state)


def load_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], ArchInfo]:
    """The canonical state dict of an IMDN weights file and its detected architecture."""
    path = Path(path)
    state = canonicalize_state_dict(read_state_dict(path), source=path.name)
    return state, detect_architecture(state, source=path.name)


def build_model(state: Mapping[str, torch.Tensor], info: ArchInfo, source: str = "checkpoint") -> torch.nn.Module:
    """The network of ``info`` with ``state`` loaded strictly; :class:`WeightsError` on any key or shape mismatch."""
    model = info.build()
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]!r})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]!r})")
        if wrong:
            key = wrong[0]
            parts.append(f"{len(wrong)} with another shape (e.g. {key!r}: {tuple(state[key].shape)} in the file, "
                         f"{tuple(expected[key].shape)} expected)")
        raise WeightsError(f"{source} looks like {info.label} but its tensors do not match that network: "
                           f"{'; '.join(parts)}; the file is incomplete or from a modified architecture")
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return model


def load_model(path: str | Path) -> tuple[torch.nn.Module, ArchInfo]:
    """Read, detect and strictly load an IMDN-family weights file (fp32, CPU, train mode)."""
    state, info = load_state_dict(path)
    return build_model(state, info, source=Path(path).name), info


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def convert_to_safetensors(source: str | Path, target: str | Path, half: bool = False) -> Path:
    """Write ``source`` (any supported IMDN file) as safetensors with canonical keys and metadata.

    The metadata records the variant, scale and hyper-parameters (JSON under ``imdn_arch``), the source file name and
    its sha256. ``half=True`` stores fp16 (half the size; outputs change by ~1e-3 at most).
    """
    from safetensors.torch import save_file

    source, target = Path(source), Path(target)
    state, info = load_state_dict(source)
    build_model(state, info, source=source.name)  # strict check before writing anything
    dtype = torch.float16 if half else torch.float32
    tensors = {k: v.detach().to(dtype).contiguous() for k, v in state.items()}
    metadata = {"format": "pt", "imdn_arch": json.dumps(info.to_dict(), sort_keys=True),
                "source_file": source.name, "source_sha256": sha256_of(source)}
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.replace(target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoo_plugins.imdn.checkpoint",
                                     description="Convert an IMDN checkpoint (.pth) to safetensors.")
    parser.add_argument("source", help="official IMDN .pth (or any supported weights file)")
    parser.add_argument("target", help="output .safetensors path")
    parser.add_argument("--half", action="store_true", help="store fp16 weights")
    args = parser.parse_args(argv)
    from zoo.errors import ZooError

    try:
        out = convert_to_safetensors(args.source, args.target, half=args.half)
    except ZooError as exc:
        parser.exit(1, f"Error: {exc}\n")
    info = load_state_dict(out)[1]
    print(f"Wrote {out} ({info.label}, {out.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
