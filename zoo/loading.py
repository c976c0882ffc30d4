"""From "method name and/or model reference" to a ready sampler — the one function the CLI, the ComfyUI nodes and the
gradio app all call.

Resolution rules (``load_sampler``):

1. A model reference (``hf-hub:org/repo@rev``, ``org/repo``, a folder, ``pkg:package/dir``) is resolved by
   :mod:`zoo.hub`; its ``zoo.json`` manifest names the method that made it, so the method may be omitted.
2. A method without a model uses the method's ``default_model`` (e.g. its committed testbed student); a method with
   no default model gets ``None`` and decides itself (e.g. a preset that names its own hub artifacts).
3. Neither: the embedded default model :data:`zoo.t2i.DEFAULT_MODEL` (the testbed teacher).
4. The manifest method ``"base"`` (an undistilled model) runs with the core :class:`zoo.t2i.DDIMSampler`.
"""

from __future__ import annotations

import warnings
from typing import Any

from zoo.errors import HubError, InputError
from zoo.registry import get_registry
from zoo.spec import MethodSpec, Preset, ResolvedModel

BASE_METHOD = "base"


def looks_like_model_ref(text: str) -> bool:
    """True for strings that are model references rather than method names."""
    from pathlib import Path

    return (text.startswith(("hf-hub:", "pkg:", ".", "/", "~")) or "/" in text or "\\" in text
            or Path(text).expanduser().exists())


def pick_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {device} was requested but CUDA is not available on this machine; use --device cpu")
    return device


def pick_dtype(dtype: str | None, device: str):
    """``auto`` → float32 on CPU (the safe default), float16 on CUDA."""
    import torch

    names = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16, "float16": torch.float16,
             "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}
    if dtype in (None, "auto"):
        return torch.float16 if device.startswith("cuda") else torch.float32
    if dtype not in names:
        raise InputError(f"Unknown dtype {dtype!r}; choose one of: auto, fp32, fp16, bf16")
    return names[dtype]


def resolve_method_and_model(method: str | None = None, model: str | ResolvedModel | None = None
                             ) -> tuple[MethodSpec | None, ResolvedModel | None]:
    """Apply the resolution rules above; returns ``(spec, resolved_model)`` (spec None = the core base sampler)."""
    from zoo.hub import resolve_model
    from zoo.t2i import DEFAULT_MODEL

    registry = get_registry()
    spec = registry.get(method) if method and method != BASE_METHOD else None
    if model is None:
        if spec is not None:
            return spec, (resolve_model(spec.default_model) if spec.default_model else None)
        model = DEFAULT_MODEL
    if isinstance(model, ResolvedModel):
        resolved = model
    elif spec is not None and spec.hub_files:
        resolved = resolve_model(str(model), **_method_files(spec))
    else:
        resolved = resolve_model(str(model))
    made_by = (resolved.manifest or {}).get("method")
    if spec is None and method != BASE_METHOD:
        if made_by and made_by != BASE_METHOD:
            spec = registry.get(made_by)
        elif not made_by and not (resolved.path / "unet").is_dir():
            raise InputError(f"Cannot tell which method runs {resolved.ref} (it has no zoo.json manifest); "
                             f"name the method: zoo run METHOD --model {resolved.ref}")
    elif spec is not None and made_by and made_by not in (BASE_METHOD, *spec.names):
        warnings.warn(f"{resolved.ref} was made by method {made_by!r} but is run with {spec.name!r}", stacklevel=2)
    if spec is not None and spec.hub_files and resolved.source == "hub" and not made_by == spec.name:
        resolved = resolve_model(resolved.ref, **_method_files(spec))  # the method became known from zoo.json
    return spec, resolved


def _method_files(spec: MethodSpec) -> dict:
    """Download settings that add the files a method loads safely itself (e.g. IMDN's official ``.pth``, read with
    ``weights_only=True``) to the safe defaults; other pickles stay out."""
    from zoo.hub import DEFAULT_ALLOW_PATTERNS

    return {"allow_patterns": [*DEFAULT_ALLOW_PATTERNS, *spec.hub_files], "allow_pickle": True}


def check_task(spec: MethodSpec | None, resolved: ResolvedModel | None, task: str | None) -> None:
    """One line when the model's ``zoo.json`` task, the method's task and the task asked for disagree."""
    method_task = spec.task if spec is not None else "text-to-image"
    made_for = (resolved.manifest or {}).get("task") if resolved is not None else None
    name = spec.name if spec is not None else BASE_METHOD
    if made_for and made_for != method_task:
        raise InputError(f"{resolved.ref} is a {made_for} model (its zoo.json says so) but {name} is a {method_task} "
                         f"method; run it with a {made_for} method")
    if task and method_task != task:
        raise InputError(f"{name} is a {method_task} method, not a {task} one; pick a {task} method or model")


def load_sampler(method: str | None = None, model: str | ResolvedModel | None = None, *, device: str = "auto",
                 dtype: str | None = None, preset: str | None = None, task: str | None = None, **settings: Any
                 ) -> tuple[MethodSpec | None, Any]:
    """Build the sampler for ``method`` and/or ``model``; returns ``(spec or None for the base sampler, sampler)``.

    ``settings`` (steps, guidance_scale, attention, method options) override the manifest's recommended settings.
    ``task`` (when given) must be the method's task; the model's ``zoo.json`` task must be too. Both are checked
    before anything is loaded. With a ``preset``, a hub failure (offline and not cached, hub unreachable, ...) names
    everything the preset downloads (:func:`preset_download_error`).
    """
    spec, resolved = resolve_method_and_model(method, model)
    check_task(spec, resolved, task)
    device = pick_device(device)
    torch_dtype = pick_dtype(dtype, device)
    options = {k: v for k, v in settings.items() if v is not None}
    if preset is not None:
        if spec is None:
            raise InputError("--preset needs a method that has presets (see 'zoo info METHOD')")
        spec.preset(preset)  # validates the name with a one-line error listing the valid presets
        options["preset"] = preset
    if spec is None:
        from zoo.t2i import DDIMSampler

        return None, DDIMSampler.from_model(resolved, device=device, dtype=torch_dtype, **options)
    factory = spec.load("sampler")
    if preset is None:
        return spec, factory(resolved, device=device, dtype=torch_dtype, **options)
    try:
        return spec, factory(resolved, device=device, dtype=torch_dtype, **options)
    except HubError as exc:
        raise preset_download_error(spec, spec.preset(preset), exc, base_model=options.get("base_model")) from None


def preset_download_error(spec: MethodSpec, preset: Preset, exc: HubError, base_model: str | None = None) -> HubError:
    """``exc`` (a hub failure while a preset's files were fetched) as one line that names everything the preset
    downloads -- its base model and each file with its repository -- and the ``zoo download`` commands that fetch
    them, keeping the error's class."""
    from zoo.errors import HubConnectionError, OfflineNotCachedError
    from zoo.hub import hub_cache_dir

    artifact = preset.artifact
    if artifact is None:
        return exc
    base = base_model if isinstance(base_model, str) and base_model else artifact.base_model
    needs, commands = [], []
    if base:
        needs.append(f"the base model {base}")
        commands.append(f"`zoo download {base}`")
    if artifact.files:
        needs.append(f"{', '.join(artifact.files)} from {artifact.repo_id}")
        includes = " ".join(f"--include '{name}'" for name in artifact.files)
        commands.append(f"`zoo download {artifact.repo_id} {includes}`")
    elif artifact.repo_id and artifact.repo_id != base:
        needs.append(f"the repository {artifact.repo_id}")
        commands.append(f"`zoo download {artifact.repo_id}`")
    what = f"preset {preset.name!r} of {spec.name} needs {' and '.join(needs)}"
    fetch = " and ".join(commands)
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, OfflineNotCachedError):
        text = (f"Offline mode is on and {what}, not (all) in the local cache ({hub_cache_dir()}); download them "
                f"while online with {fetch}, or unset HF_HUB_OFFLINE")
    elif isinstance(exc, HubConnectionError):
        text = (f"{message.split('; ')[0]}, and {what}; check your network and HF_ENDPOINT, or download them where "
                f"the hub is reachable with {fetch} and use that cache (HF_HUB_CACHE)")
    else:
        text = f"{message} ({what}; fetch them with {fetch})"
    return type(exc)(text)
