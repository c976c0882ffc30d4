"""Loading distilled students that ship only their UNet(s) and borrow the rest from their base model.

A full diffusers pipeline folder (``unet/ vae/ text_encoder/ tokenizer/ scheduler/``, e.g. the public
``thuanz123/swiftbrush``) loads as is. A *student folder* holds only the trained network(s) plus a ``zoo.json`` whose
``base_model`` names the pipeline that provides the VAE, text encoder, tokenizer and schedule (for the committed
testbed students: ``pkg:zoo.testbed/weights/teacher``). A UNet that does not fit its base (other latent channels,
text width or block layout) is refused with one line naming the mismatch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from zoo.errors import FileMissingError, InputError, WeightsError
from zoo.spec import ResolvedModel

COMPATIBILITY_KEYS = ("in_channels", "out_channels", "cross_attention_dim", "sample_size")
"""UNet config fields a student must share with the base model whose VAE and text encoder it is run with."""


def check_unet_fits(unet_config: Any, base_config: Any, student: str, base: str) -> None:
    """Raise :class:`WeightsError` (one line) when the student UNet cannot run with the base model's parts."""
    for key in COMPATIBILITY_KEYS:
        mine, theirs = _get(unet_config, key), _get(base_config, key)
        if mine is not None and theirs is not None and mine != theirs:
            raise WeightsError(f"{student} was trained for a different base model: its UNet has {key}={mine} but "
                               f"{base} has {key}={theirs}; use the base model it was distilled from")


def _get(config: Any, key: str):
    return config.get(key) if isinstance(config, dict) else getattr(config, key, None)


def load_unet(folder: Path, device, dtype, base_config: Any = None, label: str | None = None,
              base_label: str = "the base model"):
    """A ``UNet2DConditionModel`` from a diffusers folder, checked against ``base_config`` when given."""
    from diffusers import UNet2DConditionModel

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise FileMissingError(f"{folder} has no UNet (config.json missing); expected a diffusers UNet folder")
    label = label or str(folder)
    if base_config is not None:
        check_unet_fits(UNet2DConditionModel.load_config(folder), base_config, label, base_label)
    try:
        unet = UNet2DConditionModel.from_pretrained(folder, local_files_only=True, torch_dtype=dtype)
    except (OSError, ValueError, RuntimeError) as exc:
        raise WeightsError(f"Cannot load the UNet in {folder}: {str(exc).splitlines()[0]}") from None
    from zoo.t2i import require_complete

    return require_complete(unet, folder).to(device=device).eval().requires_grad_(False)


def resolve_base_model(resolved: ResolvedModel, override: str | None = None) -> ResolvedModel | None:
    """The base model a student or LoRA runs with: ``override`` (the user's choice), else the manifest's
    ``base_model`` (checked by :func:`zoo.hub.manifest_model_ref`: a downloaded model names only hub ids and ``pkg:``
    folders). None when neither names one. A base that is not a diffusers Stable Diffusion folder is refused with
    one line."""
    from zoo.hub import manifest_model_ref, resolve_model

    ref = override or manifest_model_ref(resolved, "base_model")
    if not ref:
        return None
    base = resolve_model(str(ref))
    if not (base.path / "unet" / "config.json").is_file():
        raise FileMissingError(f"The base model {ref} of {resolved.ref} is not a diffusers Stable Diffusion folder "
                               f"(no unet/config.json); name the base model the weights were distilled from")
    return base


def require_base_model(resolved: ResolvedModel, override: str | None = None) -> ResolvedModel:
    """:func:`resolve_base_model`, with one line when neither the caller nor the manifest names a base model."""
    base = resolve_base_model(resolved, override)
    if base is None:
        raise InputError(f"{resolved.ref}: its zoo.json names no base_model; pass base_model=<ref>")
    return base


def base_components(resolved: ResolvedModel, device, dtype, unet: torch.nn.Module | None = None):
    """The :class:`zoo.t2i.SDComponents` a student runs with: the folder itself when it is a full pipeline, else
    its manifest's ``base_model`` (with ``unet`` put in place of the base UNet when given)."""
    from zoo.t2i import SDComponents

    path = Path(resolved.path)
    if (path / "vae").is_dir() and (path / "text_encoder").is_dir():
        return SDComponents.from_folder(path, device=device, dtype=dtype, unet=unet)
    base = resolve_base_model(resolved)
    if base is None:
        raise FileMissingError(f"{resolved.ref} has no vae/ and text_encoder/ and its zoo.json names no base_model; "
                               f"give a full diffusers pipeline folder or add base_model to zoo.json")
    return SDComponents.from_folder(base.path, device=device, dtype=dtype, unet=unet)


def base_unet_config(resolved: ResolvedModel) -> tuple[dict | None, str]:
    """The config of the base model's UNet (None when the folder is a full pipeline) and the base's name."""
    from diffusers import UNet2DConditionModel

    path = Path(resolved.path)
    if (path / "vae").is_dir():
        return None, resolved.ref
    base = resolve_base_model(resolved)
    if base is None:
        return None, "the base model"
    return dict(UNet2DConditionModel.load_config(base.path / "unet")), base.ref


def load_student_components(resolved: ResolvedModel, device, dtype, unet_subfolder: str = "unet"):
    """Components of a student whose UNet is ``<folder>/<unet_subfolder>`` (checked against its base model)."""
    base_config, base_label = base_unet_config(resolved)
    unet = load_unet(Path(resolved.path) / unet_subfolder, device, dtype, base_config, resolved.ref, base_label)
    return base_components(resolved, device, dtype, unet=unet)
