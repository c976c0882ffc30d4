"""Helpers for the IMDN tests: the shared reference data and tiny checkpoints.

The official checkpoints and Set5 live in ``../shared/data/imdn`` (always present in CI); a test that needs them calls
:func:`imdn_data` and fails with a message that says what is missing instead of skipping.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED_DATA

IMDN_DATA = SHARED_DATA / "imdn"
CHECKPOINTS = IMDN_DATA / "checkpoints"
SET5 = IMDN_DATA / "Set5"
OFFICIAL_FILES = ("IMDN_x2.pth", "IMDN_x3.pth", "IMDN_x4.pth", "IMDN_AS.pth", "model_RTC.pth", "model_RTE.pth")


def imdn_data() -> Path:
    """The reference data folder; fails the test (not a skip) when it or a file in it is missing."""
    missing = [name for name in OFFICIAL_FILES if not (CHECKPOINTS / name).is_file()]
    if not (SET5 / "HR").is_dir():
        missing.append("Set5/HR")
    if missing:
        pytest.fail(f"IMDN reference data missing under {IMDN_DATA}: {', '.join(missing)} (expected beside the "
                    "checkout at ../shared/data/imdn, see /work/shared/data/imdn/README.md)")
    return IMDN_DATA


def save_tiny_imdn(path: Path, scale: int = 2, num_features: int = 16, num_blocks: int = 2, seed: int = 0,
                   prefix: str = "") -> Path:
    """Write a small random IMDN as a .pth (or .safetensors by suffix) with optional key ``prefix``."""
    import torch

    from zoo_plugins.imdn.arch import IMDN

    torch.manual_seed(seed)
    state = {f"{prefix}{k}": v for k, v in IMDN(num_features=num_features, num_blocks=num_blocks,
                                                  upscale=scale).state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    return path


def natural_image(height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    """A smooth-ish float32 RGB test image in [0, 1] (crop of scikit-image's astronaut, shifted by ``seed``)."""
    from skimage import data

    image = data.astronaut()[100 + seed:100 + seed + height, 150:150 + width]
    return image.astype(np.float32) / 255.0


def hr_folder(tmp_path: Path) -> Path:
    """Three small HR training images (scikit-image's astronaut, chelsea, coffee, cropped) in a folder."""
    from PIL import Image
    from skimage import data

    folder = tmp_path / "hr"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("astronaut", "chelsea", "coffee"):
        Image.fromarray(getattr(data, name)()[:160, :200]).save(folder / f"{name}.png")
    return folder
