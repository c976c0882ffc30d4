"""What the ComfyUI nodes (``nodes/``) and the gradio app (:mod:`zoo.app`) share on top of :mod:`zoo.loading`.

Front-ends hold no method logic: they list what the registry has, build samplers with
:func:`zoo.loading.load_sampler` (exactly as ``zoo run`` does) and call them through the sampler contracts of
:mod:`zoo.spec`. Nothing here imports torch at import time.
"""

from __future__ import annotations

import inspect
from typing import Any

from zoo.errors import InputError

AUTO = "auto"
"""Method choice meaning "the method named in the model's zoo.json" (or the embedded default model)."""

TEXT_TO_IMAGE = "text-to-image"
SUPER_RESOLUTION = "super-resolution"


def _specs(task: str, registry: Any = None) -> list:
    from zoo.registry import get_registry

    return (registry or get_registry()).list(task=task)


def method_choices(task: str, with_auto: bool = True, registry: Any = None) -> list[str]:
    """``["auto", *registered methods of task]`` — so every method that lands appears without front-end changes."""
    names = [spec.name for spec in _specs(task, registry)]
    return [AUTO, *names] if with_auto else names


def preset_choices(task: str = TEXT_TO_IMAGE, registry: Any = None) -> list[str]:
    """Every preset of every registered method of ``task``, as ``method.preset`` keys (e.g. Hyper-SD's recipes)."""
    return [f"{spec.name}.{preset.name}" for spec in _specs(task, registry) for preset in spec.presets]


def split_preset_key(key: str) -> tuple[str, str]:
    method, sep, preset = key.partition(".")
    if not sep or not method or not preset:
        raise InputError(f"Preset {key!r} is not of the form method.preset (e.g. hyper_sd.sd15_8step_lora); "
                         f"see 'zoo info METHOD' for the presets")
    return method, preset


def load(task: str, method: str | None, model: str | None, *, device: str = "auto", dtype: str | None = "auto",
         preset: str | None = None, roots: Any = None, **settings: Any) -> tuple[Any, Any]:
    """``zoo.loading.load_sampler`` with front-end input conventions, checking the method's task.

    ``method`` ``"auto"``/empty and ``model`` empty mean "not given". ``roots`` (a :class:`zoo.paths.ModelRoots`)
    limits where a client's model may come from; None allows any (a local user). Returns ``(spec or None, sampler)``.
    """
    from zoo.loading import load_sampler

    method = None if not method or method == AUTO else method
    model = (model or "").strip() or None
    if roots is not None:
        roots.check(model)
    return load_sampler(method, model, device=device, dtype=dtype, preset=preset, task=task, **settings)


def recommended_settings(sampler: Any) -> dict[str, Any]:
    """The loaded sampler's default steps and guidance scale (from its class, manifest and preset)."""
    return {"steps": int(getattr(sampler, "default_steps", 1)),
            "guidance_scale": float(getattr(sampler, "default_guidance_scale", 0.0))}


def accepted_options(function: Any, options: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """The subset of ``options`` that ``function`` accepts.

    An option the function does not take is dropped when it equals its entry in ``defaults`` and is an
    :class:`InputError` otherwise (e.g. ``steps=4`` for a one-network upscaler), so nothing is silently ignored.
    """
    parameters = inspect.signature(function).parameters
    if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        return dict(options)
    kept = {}
    for name, value in options.items():
        if name in parameters:
            kept[name] = value
        elif name not in defaults or value != defaults[name]:
            raise InputError(f"This model does not take {name}={value!r}; leave it at {defaults.get(name)!r}")
    return kept


def upscale(sampler: Any, image: Any, *, scale: int | None = None, tile: int | None = None, steps: int = 1,
            seed: int = 0, progress: Any = None):
    """Call a super-resolution sampler with the options it takes (IMDN: scale/tile; YONOS-SR: also steps/seed)."""
    options = accepted_options(sampler, {"scale": scale, "tile": tile, "steps": steps, "seed": seed,
                                         "progress": progress},
                               defaults={"scale": None, "tile": None, "steps": 1, "seed": 0, "progress": progress})
    return sampler(image, **options)
