"""Hyper-SD on ComfyUI's own MODEL: the exported LoRA (kohya keys, the published Hyper-SD format) through ComfyUI's
own LoRA loading, or a full UNet file (``kind: unet``) as weight patches."""

from __future__ import annotations

from zoo.comfy_native import apply_lora, read_safetensors, student_weight_patches
from zoo.hub import manifest_file


def patch_model(model, resolved, *, strength: float = 1.0, guidance: float | None = None):
    """The registry's ``comfy_patch`` for ``hyper_sd``: see :mod:`zoo.comfy_native`."""
    manifest = dict(resolved.manifest or {})
    weights = manifest_file(resolved, manifest.get("lora", "lora.safetensors"), "LoRA file")
    if manifest.get("kind") == "unet":
        patched = model.clone()
        patched.add_patches(student_weight_patches(model, read_safetensors(weights, weights.name), weights.name),
                            float(strength))
        return patched
    return apply_lora(model, weights, float(manifest.get("lora_scale", 1.0)) * float(strength))
