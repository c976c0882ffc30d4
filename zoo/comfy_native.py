"""Shared parts of the methods' ComfyUI MODEL patches (used inside ComfyUI only; ComfyUI is imported lazily).

A method that works on ComfyUI's own MODEL registers ``comfy_patch="package.module:function"`` in its
:class:`zoo.spec.MethodSpec`; the function is called as ``function(model, resolved, *, strength, guidance)`` with a
ComfyUI ``ModelPatcher`` and the :class:`zoo.spec.ResolvedModel` of a folder ``zoo train`` exported, and returns a
patched clone. The node ``DistillZooApplyModel`` lists such folders in ComfyUI's model folders and calls it, so a
third-party method plugs in exactly like the built-ins. The pieces here serve every method:

* :func:`student_weight_patches` / :func:`apply_student_unet` -- a student UNet (diffusers keys) as weight patches
  on its base MODEL (SwiftBrush, SNOOPI, Phased DMD experts);
* :func:`apply_lora` -- a LoRA file through ComfyUI's own LoRA loading (what core ``LoraLoader`` does), refusing
  files whose modules do not all load;
* :class:`HookedModule` -- an object patch that wraps one module of the UNet and post-processes its output
  (AGD adapters on ``attn2``, LoRA-distill's guidance embedding on ``time_embed``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from zoo.errors import InputError, WeightsError


def unet_folder() -> str:
    """ComfyUI's folder of diffusion models: ``diffusion_models`` now, ``unet`` before 2025."""
    import folder_paths

    names = getattr(folder_paths, "folder_names_and_paths", {})
    return "diffusion_models" if "diffusion_models" in names else "unet"


def diffusers_to_comfy_keys(model) -> dict[str, str]:
    """``{diffusers UNet key: ComfyUI state-dict key}`` of a ComfyUI MODEL (``comfy.utils.unet_to_diffusers``)."""
    import comfy.utils

    mapping = comfy.utils.unet_to_diffusers(model.model.model_config.unet_config)
    return {diffusers: f"diffusion_model.{ldm}" for diffusers, ldm in mapping.items()}


def comfy_module_path(model, diffusers_module: str) -> str:
    """The ComfyUI attribute path (``diffusion_model.input_blocks.4.1...``) of a diffusers UNet module name."""
    keys = diffusers_to_comfy_keys(model)
    weight = keys.get(f"{diffusers_module}.to_q.weight") or keys.get(f"{diffusers_module}.weight")
    if weight is None:
        raise WeightsError(f"The MODEL's UNet has no module {diffusers_module!r}; use the base model the weights "
                           f"were trained on")
    suffix = ".to_q.weight" if weight == keys.get(f"{diffusers_module}.to_q.weight") else ".weight"
    return weight[: -len(suffix)]


def base_weights(model) -> dict[str, torch.Tensor]:
    """The UNet weights of a MODEL *without* any patch applied (ComfyUI keeps the last sampled clone's patches in the
    shared weights; ``get_key_patches`` is ComfyUI's own way to read past them, in every version)."""
    weights = {}
    for key, entries in model.get_key_patches("diffusion_model.").items():
        first = entries[0]
        weights[key] = first[0] if isinstance(first, tuple) else first  # (weight, convert) in ComfyUI >= 0.3
    return weights


def student_weight_patches(model, state: dict[str, torch.Tensor], label: str) -> dict[str, tuple[torch.Tensor]]:
    """ComfyUI weight patches (``diff`` form) that turn the MODEL's UNet into the student ``state`` (diffusers keys).

    Raises:
        WeightsError: one line naming the first key or shape that does not fit, or the weights the file lacks.
    """
    keys = diffusers_to_comfy_keys(model)
    base = base_weights(model)
    patches = {}
    for name, tensor in state.items():
        target = keys.get(name)
        if target is None or target not in base:
            raise WeightsError(f"{label} does not fit this MODEL: its weight {name!r} has no place in the model's "
                               f"UNet; use the base checkpoint the student was distilled from")
        current = base[target]
        if tuple(current.shape) != tuple(tensor.shape):
            raise WeightsError(f"{label} does not fit this MODEL: {name} has shape {tuple(tensor.shape)}, the "
                               f"model's {tuple(current.shape)}; use the base checkpoint the student was distilled from")
        patches[target] = ((tensor.float() - current.float()).to(current.dtype),)
    missing = [name for name, target in keys.items() if name not in state and target in base]
    if missing:
        raise WeightsError(f"{label} does not fit this MODEL: it lacks {len(missing)} UNet weights (e.g. "
                           f"{missing[0]!r}); export the full student UNet")
    return patches


def read_safetensors(path: str | Path, label: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        raise WeightsError(f"{label} cannot be read as safetensors ({type(exc).__name__}); export it again or "
                           f"check the file") from None


def apply_student_unet(model, resolved, *, strength: float = 1.0, guidance: float | None = None,
                       subfolder: str = "unet"):
    """The MODEL with the student UNet ``<folder>/<subfolder>`` of a zoo export (SwiftBrush, SNOOPI) applied."""
    file = resolved.file(f"{subfolder}/diffusion_pytorch_model.safetensors", "student UNet")
    patched = model.clone()
    patched.add_patches(student_weight_patches(model, read_safetensors(file, file.name), str(resolved.ref)),
                        float(strength))
    return patched


def apply_lora(model, path: str | Path, strength: float = 1.0):
    """The MODEL with a LoRA file applied through ComfyUI's own loader (``comfy.sd.load_lora_for_models``, what core
    ``LoraLoader`` does). Every module of the file must load: ComfyUI itself only logs the ones it skips."""
    import comfy.lora
    import comfy.sd

    lora = read_safetensors(path, Path(path).name)
    modules = {key.split(".lora_")[0].split(".alpha")[0] for key in lora}
    key_map = comfy.lora.model_lora_keys_unet(model.model, {})
    unknown = sorted(m for m in modules if m not in key_map)
    if unknown:
        raise WeightsError(f"LoRA {Path(path).name} does not fit this MODEL: {len(unknown)} of its modules are not "
                           f"in the model's UNet (e.g. {unknown[0]!r}); use the base model it was trained on")
    patched, _ = comfy.sd.load_lora_for_models(model, None, lora, float(strength), 0.0)
    return patched


class HookedModule(nn.Module):
    """A module of ComfyUI's UNet wrapped for an object patch: ``hook(inner, args, kwargs, output)`` returns the
    output to use.

    The wrapper shares the wrapped module's children, parameters and buffers (the same dicts), so while the patch is
    installed the model's ``state_dict`` keys, weight patches (LoRAs) and attribute paths (``time_embed.0.weight``,
    ``attn2.to_q``) stay exactly as without it: ComfyUI leaves the last sampled model's object patches installed, and
    other nodes read the model through them."""

    def __init__(self, inner: nn.Module, hook: Callable[[nn.Module, tuple, dict, Any], Any]) -> None:
        super().__init__()
        object.__setattr__(self, "_inner", inner)
        object.__setattr__(self, "_hook", hook)
        self._modules, self._parameters, self._buffers = inner._modules, inner._parameters, inner._buffers

    def forward(self, *args, **kwargs):
        inner = object.__getattribute__(self, "_inner")
        return object.__getattribute__(self, "_hook")(inner, args, kwargs, inner(*args, **kwargs))

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(object.__getattribute__(self, "_inner"), name)


def get_module(model, path: str) -> nn.Module:
    """The original module at ``path`` (``diffusion_model.input_blocks.4.1...``) of a ComfyUI MODEL's BaseModel.

    ComfyUI leaves the object patches of the last sampled clone installed (their originals wait in the clones' shared
    ``object_patches_backup``), so the backup is read first: wrapping the installed module would stack another
    model's patch under this one."""
    backup = getattr(model, "object_patches_backup", None) or {}
    if path in backup:
        return backup[path]
    module = model.model
    for part in path.split("."):
        module = getattr(module, part)
    return module


def expert_index(timesteps: list[int], boundaries: list[int]) -> int:
    """The phase of a model call (Phased DMD's rule: the number of boundaries ``b`` with ``t <= b``); one call may
    not mix phases."""
    phases = {sum(1 for b in boundaries if int(t) <= int(b)) for t in timesteps}
    if len(phases) != 1:
        raise InputError("Phased DMD: one model call mixes timesteps of different phases; sample the batch at one "
                         "timestep per step")
    return phases.pop()


def switch_experts(experts: list, boundaries: list[int]):
    """One MODEL that runs ``experts[k]`` for the timesteps of phase ``k`` (``boundaries`` descending, the first
    timesteps of phases 1, 2, ...; see ``zoo_plugins.phased_dmd.experts.phase_of``), switched per call with
    ``set_model_unet_function_wrapper`` inside one sampling run. Experts other than the first are loaded by
    ComfyUI's model management when their phase starts."""
    import comfy.model_management as model_management

    if len(experts) != len(boundaries) + 1:
        raise InputError(f"{len(experts)} experts for {len(boundaries) + 1} phases (boundaries {list(boundaries)})")
    combined = experts[0].clone()
    previous = combined.model_options.get("model_function_wrapper")
    sampling = experts[0].model.model_sampling

    def wrapper(apply_model, args):
        index = expert_index(sampling.timestep(args["timestep"]).reshape(-1).tolist(), boundaries)
        if index == 0:
            if previous is not None:
                return previous(apply_model, args)
            return apply_model(args["input"], args["timestep"], **args["c"])
        expert = experts[index]
        model_management.load_models_gpu([expert])
        return expert.model.apply_model(args["input"], args["timestep"], **args["c"])

    combined.set_model_unet_function_wrapper(wrapper)
    return combined
