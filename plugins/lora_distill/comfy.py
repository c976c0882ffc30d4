"""LoRA-enhanced guidance distillation on ComfyUI's own MODEL: the LoRA through ComfyUI's own LoRA loading and the
guidance embedding added to the UNet's timestep embedding (an object patch on ``time_embed``), with the guidance
scale w as a widget. Sample with cfg 1: the student makes one UNet call per step."""

from __future__ import annotations

import torch

from zoo.comfy_native import HookedModule, apply_lora, get_module
from zoo.errors import WeightsError
from zoo.hub import manifest_file

from zoo_plugins.lora_distill.guidance_embedding import GuidanceEmbedding


def load_embedding(resolved) -> GuidanceEmbedding:
    from safetensors.torch import load_file

    manifest = dict(resolved.manifest or {})
    config = manifest.get("guidance_embedding_config") or {}
    file = resolved.file(manifest.get("guidance_embedding", "guidance_embedding.safetensors"),
                         "guidance embedding file")
    if not file.is_file() or "temb_dim" not in config:
        raise WeightsError(f"{resolved.ref} lacks {file.name} or its config; export the model again")
    embedding = GuidanceEmbedding(int(config["temb_dim"]), int(config.get("num_features", 256)))
    embedding.load_state_dict({k: v.float() for k, v in load_file(str(file)).items()})
    return embedding.eval().requires_grad_(False)


def patch_model(model, resolved, *, strength: float = 1.0, guidance: float | None = None):
    """The registry's ``comfy_patch`` for ``lora_distill``: see :mod:`zoo.comfy_native`."""
    manifest = dict(resolved.manifest or {})
    if guidance is None:
        guidance = float(manifest.get("sampler", {}).get("guidance_scale", 5.0))
    patched = apply_lora(model, manifest_file(resolved, manifest.get("lora", "lora.safetensors"), "LoRA file"),
                         float(strength))
    embedding = load_embedding(resolved)
    w = torch.tensor([float(guidance)])

    def add_guidance(inner, args, kwargs, output):
        extra = embedding.to(device=output.device)(w.to(output.device).expand(output.shape[0]))
        return output + extra.to(output.dtype)

    path = "diffusion_model.time_embed"
    patched.add_object_patch(path, HookedModule(get_module(model, path), add_guidance))
    return patched
