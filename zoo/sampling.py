"""What every sampler returns, and how images are written with their generation parameters.

Samplers of both tasks return a :class:`SampleResult`. :func:`save_image` writes a PNG whose text chunks carry the
parameters (method, model ref and resolved commit, seed, steps, NFE, ...) under the key ``distill_zoo`` as JSON, plus
a human-readable ``parameters`` chunk.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

PNG_METADATA_KEY = "distill_zoo"

ProgressCallback = Callable[[int, int], None]
"""``progress(done, total)``: called by samplers and trainers after each unit of work."""


MAX_SEED = 2**64 - 2
"""Largest seed a sampler takes: torch generators hold 64-bit seeds, and stochastic samplers also use ``seed + 1``."""


def check_seed(seed: Any) -> int:
    """``seed`` as an int, or one line (:class:`~zoo.errors.InputError`) when it is not a whole number in range."""
    from zoo.errors import InputError

    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise InputError(f"seed={seed!r} is out of range: use a whole number from 0 to {MAX_SEED}")
    return seed


def require_finite(tensor: Any, what: str) -> Any:
    """``tensor`` when every value is finite; else one line (:class:`~zoo.errors.WeightsError`) instead of a
    garbage image: the weights hold NaN/Inf, or fp16 overflowed."""
    if not bool(tensor.isfinite().all()):
        from zoo.errors import WeightsError

        raise WeightsError(f"{what} produced NaN or infinite values: the weights contain NaN/Inf or half precision "
                           f"overflowed; check the weights file, or run in fp32 (--dtype fp32)")
    return tensor


def check_writable(folder: str | Path) -> Path:
    """Create ``folder`` if needed and make sure a file can be written in it, before any work starts; one line
    (:class:`~zoo.errors.InputError`) otherwise."""
    import os
    import tempfile

    from zoo.errors import InputError

    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".zoo-write-check-"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise InputError(f"Cannot write into {folder} ({reason}); choose a writable output path") from None
    return Path(os.fspath(folder))


@dataclass
class SampleResult:
    """Images produced by a sampler.

    Attributes:
        images: PIL images (RGB).
        nfe: number of network (UNet or SR network) evaluations per image.
        metadata: generation parameters (method, model, commit, seed, steps, guidance_scale, ...).
        latents: the final latents as a tensor ``[B, C, h, w]`` where the sampler has them (text-to-image).
    """

    images: list
    nfe: int
    metadata: dict[str, Any] = field(default_factory=dict)
    latents: Any = None


def png_info(metadata: dict[str, Any]):
    """A ``PngInfo`` holding ``metadata`` as JSON and as a readable line."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text(PNG_METADATA_KEY, json.dumps(metadata, sort_keys=True, default=str))
    readable = ", ".join(f"{k}: {v}" for k, v in metadata.items() if k != "prompt")
    if "prompt" in metadata:
        readable = f"{metadata['prompt']}\n{readable}"
    info.add_text("parameters", readable)
    return info


def save_image(image, path: str | Path, metadata: dict[str, Any]) -> Path:
    """Save ``image`` as PNG at ``path`` with ``metadata`` in its text chunks (written atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    image.save(tmp, format="PNG", pnginfo=png_info(metadata))
    tmp.replace(path)
    return path


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The generation parameters stored by :func:`save_image` (empty dict when there are none)."""
    from PIL import Image

    with Image.open(path) as image:
        text = getattr(image, "text", {}) or {}
        raw = text.get(PNG_METADATA_KEY)
    return json.loads(raw) if raw else {}
