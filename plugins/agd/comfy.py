"""AGD on ComfyUI's own MODEL: the trained adapters added to every cross-attention (object patches on each
``attn2``), fed the UNet's own timestep embedding (recorded by an object patch on ``time_embed``), the prompt
(the cross-attention context) and the guidance scale w (a widget). Sample with cfg 1: one UNet call per step.

ComfyUI runs nodes and sampling under ``torch.inference_mode``; the adapters keep caches keyed on tensor versions,
which inference tensors do not have, so they are built and run outside it (on copies of the inputs, no grad)."""

from __future__ import annotations

import torch

from zoo.comfy_native import HookedModule, comfy_module_path, get_module

from zoo_plugins.agd.sampler import load_adapters


def patch_model(model, resolved, *, strength: float = 1.0, guidance: float | None = None):
    """The registry's ``comfy_patch`` for ``agd``: see :mod:`zoo.comfy_native`."""
    manifest = dict(resolved.manifest or {})
    if guidance is None:
        guidance = float(manifest.get("sampler", {}).get("guidance_scale", 5.0))
    with torch.inference_mode(False):
        adapters = load_adapters(resolved).eval().requires_grad_(False)
    w = torch.tensor([float(guidance)])
    state: dict[str, torch.Tensor] = {}
    patched = model.clone()

    def record_temb(inner, args, kwargs, output):
        with torch.inference_mode(False):
            state["temb"] = output.clone()
        return output

    temb_path = "diffusion_model.time_embed"
    if adapters.config["use_timestep"]:
        patched.add_object_patch(temb_path, HookedModule(get_module(model, temb_path), record_temb))
    for name in adapters.config["layers"]:
        adapter = adapters.layers[name.replace(".", "__")]

        def add_adapter(inner, args, kwargs, output, adapter=adapter):
            context = kwargs.get("context", args[1] if len(args) > 1 else None)
            with torch.inference_mode(False), torch.no_grad():
                hidden = args[0].clone()
                adapter.to(device=hidden.device, dtype=hidden.dtype)
                delta = adapter(hidden, w.to(hidden.device), state.get("temb"), context.clone(), base=None)
            return output + float(strength) * delta.to(output.dtype)

        path = comfy_module_path(model, name)
        patched.add_object_patch(path, HookedModule(get_module(model, path), add_adapter))
    return patched
