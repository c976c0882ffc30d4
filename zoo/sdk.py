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

Everything else a method needs is reached through this module too, and imported only when first used:
``from zoo.sdk import Trainer`` imports torch, ``from zoo.sdk import MethodSpec`` does not. The groups (each name is
documented in ``docs/PLUGINS.md`` with an example):

- registration: ``hookimpl``, ``MethodSpec``, ``Paper``, ``Artifact``, ``Preset``, ``ResolvedModel``, the errors;
- text-to-image sampling: ``TextToImageSampler`` (implement ``denoise``), ``SDComponents``, ``DDIMSampler``,
  ``resolve_default``, ``DEFAULT_MODEL``, ``SampleResult``, ``save_image``;
- loading students: ``load_student_components`` (a UNet folder checked against its ``base_model``),
  ``check_unet_fits``;
- schedule maths (DDPM/DDIM, ``alphas_cumprod`` explicit): ``alpha_sigma``, ``add_noise``, ``ddim_jump``,
  ``x0_from_eps``, ``eps_from_x0``, ``trailing_timesteps``, ``next_timesteps``, ``uniform_timesteps``,
  ``sd_alphas_cumprod``, ``CLEAN`` (the clean-sample marker), and guidance: ``cfg``, ``uses_cfg``;
- teacher solves: ``teacher_ddim_solve`` (multi-step DDIM with CFG from per-sample ``t`` to ``s``),
  ``ddim_eps_target`` (the noise that makes one DDIM step land on a target);
- distillation data and export: ``PromptSource``, ``prompt_batches``, ``testbed_image_batches``, ``PromptEncoder``,
  ``drop_captions``, ``load_components``, ``save_unet``, ``testbed_validation``;
- training: ``Trainer``, ``OptimizerGroup``, ``TrainState``, ``StepCache``, ``TrainingConfig``, ``OptimizerConfig``,
  ``load_config``, and for custom exports ``save_module``, ``write_export_metadata``;
- evaluation: ``score_sampler`` (the shared testbed benchmark), ``QualityRow``, ``Comparison``, ``Evaluator``,
  ``paired_counts``, ``BENCHMARK_PROMPTS``, ``FULL_PROMPTS``, ``TEACHER_REF``; ``check_method`` (the contract
  check), ``get_method``, ``list_methods``, ``load_sampler`` (a method's sampler on its default model, as
  ``zoo run`` loads it), ``build_tiny_sd`` (a tiny random SD folder for fast tests);
- models and hub: ``resolve_model``, ``push_folder``; attention: ``set_attention_backend``, ``resolve_backend``,
  ``ZooAttnProcessor``.
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
    # sampling
    "SampleResult": "zoo.sampling", "save_image": "zoo.sampling", "ProgressCallback": "zoo.sampling",
    "TextToImageSampler": "zoo.t2i", "SDComponents": "zoo.t2i", "DDIMSampler": "zoo.t2i",
    "resolve_default": "zoo.t2i", "DEFAULT_MODEL": "zoo.t2i",
    "load_student_components": "zoo.diffusion.student_folder", "check_unet_fits": "zoo.diffusion.student_folder",
    # schedule maths and guidance
    "CLEAN": "zoo.diffusion.schedule", "alpha_sigma": "zoo.diffusion.schedule", "add_noise": "zoo.diffusion.schedule",
    "ddim_jump": "zoo.diffusion.schedule", "x0_from_eps": "zoo.diffusion.schedule",
    "eps_from_x0": "zoo.diffusion.schedule", "trailing_timesteps": "zoo.diffusion.schedule",
    "next_timesteps": "zoo.diffusion.schedule", "uniform_timesteps": "zoo.diffusion.schedule",
    "sd_alphas_cumprod": "zoo.diffusion.schedule",
    "cfg": "zoo.diffusion.guidance", "uses_cfg": "zoo.diffusion.guidance",
    "teacher_ddim_solve": "zoo.diffusion.teacher_solve", "ddim_eps_target": "zoo.diffusion.teacher_solve",
    # distillation data and export
    "PromptSource": "zoo.diffusion.distill_data", "prompt_batches": "zoo.diffusion.distill_data",
    "testbed_image_batches": "zoo.diffusion.distill_data", "PromptEncoder": "zoo.diffusion.distill_data",
    "drop_captions": "zoo.diffusion.distill_data", "load_components": "zoo.diffusion.distill_data",
    "save_unet": "zoo.diffusion.distill_data", "testbed_validation": "zoo.diffusion.distill_data",
    # training
    "load_config": "zoo.config",
    "Trainer": "zoo.train", "TrainState": "zoo.train", "OptimizerGroup": "zoo.train", "StepCache": "zoo.train.trainer",
    "TrainingConfig": "zoo.train.config", "OptimizerConfig": "zoo.train.config",
    "write_export_metadata": "zoo.train.export", "save_module": "zoo.train.export",
    # evaluation
    "score_sampler": "zoo.testbed.quality", "QualityRow": "zoo.testbed.quality", "Comparison": "zoo.testbed.quality",
    "Evaluator": "zoo.testbed.evaluator", "paired_counts": "zoo.testbed.evaluator",
    "BENCHMARK_PROMPTS": "zoo.testbed.prompts", "FULL_PROMPTS": "zoo.testbed.prompts", "TEACHER_REF": "zoo.testbed",
    "check_method": "zoo.testing",
    "get_method": "zoo.registry", "list_methods": "zoo.registry", "load_sampler": "zoo.loading",
    "build_tiny_sd": "zoo.tiny",
    # models, hub, attention
    "resolve_model": "zoo.hub", "push_folder": "zoo.publish",
    "set_attention_backend": "zoo.attention", "resolve_backend": "zoo.attention",
    "ZooAttnProcessor": "zoo.attention",
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
