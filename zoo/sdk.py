"""The public surface for plugin authors: import everything from here.

Registration (no heavy imports)::

    from zoo.sdk import hookimpl, MethodSpec, Paper

    @hookimpl
    def register_methods(register):
        register(MethodSpec(name="my_method", task="text-to-image", summary="...", paper=Paper("...", arxiv="..."),
                            sampler="my_pkg.sampler:build_sampler", trainer="my_pkg.trainer:build_trainer",
                            config="my_pkg.config:MyConfig"))

Declare the module in your package's ``pyproject.toml``::

    [project.entry-points.distill_zoo]
    my_method = "my_pkg"

Helpers that need torch (the training runtime, shared diffusion math, the testbed, attention processors) are reached
through this module too, but are imported only when first used: ``from zoo.sdk import Trainer`` imports torch,
``from zoo.sdk import MethodSpec`` does not. See ``docs/PLUGINS.md``.
"""

from __future__ import annotations

import importlib
from typing import Any

from zoo.errors import (ConfigError, FileMissingError, InputError, MissingExtraError, PluginError, TrainingError,
                        WeightsError, ZooError, require_extra)
from zoo.hookspecs import hookimpl
from zoo.spec import MANIFEST_NAME, TASKS, Artifact, MethodSpec, Paper, Preset, ResolvedModel

# name -> module that defines it; imported on first attribute access (PEP 562) so registration stays light.
_LAZY = {
    "SampleResult": "zoo.sampling",
    "save_image": "zoo.sampling",
    "ProgressCallback": "zoo.sampling",
    "load_config": "zoo.config",
    "resolve_model": "zoo.hub",
    "set_attention_backend": "zoo.attention",
    "AttentionBackend": "zoo.attention",
    "Trainer": "zoo.train",
    "TrainState": "zoo.train",
    "OptimizerGroup": "zoo.train", "TrainingConfig": "zoo.train.config", "OptimizerConfig": "zoo.train.config",
}

__all__ = [
    "hookimpl", "MethodSpec", "Paper", "Artifact", "Preset", "ResolvedModel", "TASKS", "MANIFEST_NAME",
    "ZooError", "ConfigError", "InputError", "PluginError", "WeightsError", "FileMissingError", "TrainingError",
    "MissingExtraError", "require_extra", *_LAZY,
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'zoo.sdk' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
