"""Registers the upscaler architectures of distill-zoo methods with spandrel, the library ComfyUI's core
``UpscaleModelLoader`` uses, so their weights files in ``models/upscale_models`` load there (e.g. the official IMDN
``.pth`` files). Methods declare it with ``MethodSpec.spandrel_arch``; nothing happens where spandrel is absent."""

from __future__ import annotations

import logging

log = logging.getLogger("distill_zoo")


def register_spandrel_architectures() -> list[str]:
    """Add every registered method's spandrel architecture to ``spandrel.MAIN_REGISTRY``; returns the ids added."""
    try:
        import spandrel
    except ImportError:
        return []
    from zoo.registry import get_registry

    added = []
    for spec in get_registry().list():
        if spec.spandrel_arch is None:
            continue
        try:
            support = spec.load("spandrel_arch")()
            added += [a.architecture.id for a in spandrel.MAIN_REGISTRY.add(support, ignore_duplicates=True)]
        except Exception as exc:  # noqa: BLE001 - one method's problem must not stop the pack from loading
            log.warning("distill-zoo: %s's upscaler architecture was not added to spandrel (%s: %s)", spec.name,
                        type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
    return [str(arch_id) for arch_id in added]
