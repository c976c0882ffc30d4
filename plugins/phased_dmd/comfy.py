"""Phased DMD on ComfyUI's own MODEL: every expert of a zoo export applied to the base MODEL as weight patches,
switched by timestep inside one sampling run (:func:`zoo.comfy_native.switch_experts`)."""

from __future__ import annotations

from pathlib import Path

from zoo.comfy_native import read_safetensors, student_weight_patches, switch_experts


def patch_model(model, resolved, *, strength: float = 1.0, guidance: float | None = None):
    """The registry's ``comfy_patch`` for ``phased_dmd``: see :mod:`zoo.comfy_native`."""
    from zoo_plugins.phased_dmd.sampler import expert_folders

    experts = []
    for folder in expert_folders(Path(resolved.path)):
        relative = folder.relative_to(resolved.path).as_posix()
        file = resolved.file(f"{relative}/diffusion_pytorch_model.safetensors", "expert UNet")
        expert = model.clone()
        expert.add_patches(student_weight_patches(model, read_safetensors(file, relative), f"{resolved.ref} "
                                                  f"({folder.name})"), float(strength))
        experts.append(expert)
    boundaries = [] if len(experts) == 1 else list((resolved.manifest or {}).get("sampler", {}).get(
        "phase_boundaries", []))
    return experts[0] if len(experts) == 1 else switch_experts(experts, [int(b) for b in boundaries])
