"""LoRA-distill sampler: the base model plus the distilled LoRA (fused by default, or live) and the w-embedding; one
conditional UNet call per step at guidance scale w (CFG is never evaluated). Paper: arXiv 2312.06899."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from zoo.errors import InputError, WeightsError
from zoo.spec import ResolvedModel
from zoo.t2i import SDComponents, TextToImageSampler

from zoo_plugins.lora_distill.guidance_embedding import GuidanceEmbedding

METHOD = "lora_distill"
LORA_FILE = "lora.safetensors"
EMBEDDING_FILE = "guidance_embedding.safetensors"


class LoRADistillSampler(TextToImageSampler):
    method = METHOD
    default_steps = 25
    default_guidance_scale = 5.0

    def __init__(self, components: SDComponents, embedding: GuidanceEmbedding, model: ResolvedModel | None = None,
                 **settings: Any) -> None:
        super().__init__(components, model, **settings)
        self.embedding = embedding.to(device=components.device, dtype=components.dtype).eval().requires_grad_(False)
        self.embedding.attach(components.unet)

    def denoise(self, latents, cond, uncond, steps, guidance_scale, generator, progress, **options):
        scheduler = self.make_scheduler(steps, options)
        latents = latents * scheduler.init_noise_sigma
        self.embedding.set_guidance(float(guidance_scale))
        for index, t in enumerate(scheduler.timesteps):
            eps = self.predict_eps(scheduler.scale_model_input(latents, t), t, cond, None, 1.0)  # one call
            latents = scheduler.step(eps, t, latents).prev_sample
            if progress is not None:
                progress(index + 1, steps)
        return latents

    def extra_metadata(self, options):
        return {"scheduler": self.scheduler_choice(options)[0]}


def build_sampler(model: ResolvedModel | str | Path | None = None, *, device: str = "cpu",
                  dtype: torch.dtype | None = None, attention: str = "auto", base_model: str | None = None,
                  fuse: bool = True, **settings: Any) -> LoRADistillSampler:
    """Registry factory: a LoRA-distill model folder (``zoo.json`` with ``base_model``, ``lora`` and
    ``guidance_embedding``)."""
    from safetensors.torch import load_file

    from zoo.attention import set_attention_backend
    from zoo.diffusion.lora_io import add_lora_adapter, fuse_lora, load_lora
    from zoo.diffusion.student_folder import require_base_model
    from zoo.hub import manifest_file, resolve_model

    if model is None:
        raise InputError("lora_distill needs a model: a folder exported by 'zoo train lora_distill'")
    resolved = model if isinstance(model, ResolvedModel) else resolve_model(str(model))
    manifest = dict(resolved.manifest or {})
    if manifest.get("method") != METHOD:  # a plain base model: no LoRA, zero w-embedding = its conditional model
        import warnings

        warnings.warn(f"{resolved.ref} is not a LoRA-distill model; sampling its conditional prediction (one call "
                      f"per step, no guidance)", stacklevel=2)
        components = SDComponents.from_folder(resolved.path, device=device, dtype=dtype)
        set_attention_backend(components.unet, attention)
        return LoRADistillSampler(components, GuidanceEmbedding.for_unet(components.unet), resolved, **settings)
    base = require_base_model(resolved, base_model)
    components = SDComponents.from_folder(base.path, device=device, dtype=dtype)
    lora = load_lora(manifest_file(resolved, manifest.get("lora", LORA_FILE), "LoRA file"))
    if fuse:
        fuse_lora(lora, {"unet": components.unet})
    else:
        add_lora_adapter(components.unet, lora, adapter_name="lora_distill")
    emb_file = resolved.file(manifest.get("guidance_embedding", EMBEDDING_FILE), "guidance embedding file")
    config = manifest.get("guidance_embedding_config") or {}
    if not emb_file.is_file() or "temb_dim" not in config:
        raise WeightsError(f"{resolved.ref} lacks {emb_file.name} or its config; export the model again")
    embedding = GuidanceEmbedding(int(config["temb_dim"]), int(config.get("num_features", 256)))
    embedding.load_state_dict({k: v.float() for k, v in load_file(str(emb_file)).items()})
    set_attention_backend(components.unet, attention)
    return LoRADistillSampler(components, embedding, resolved, **settings)
