"""Hyper-SD: Trajectory Segmented Consistency Distillation and the published ByteDance/Hyper-SD recipes.

Paper: "Hyper-SD: Trajectory Segmented Consistency Model for Efficient Image Synthesis" (Ren et al., arXiv 2404.13686).
Weights: huggingface.co/ByteDance/Hyper-SD (no official training code). This module registers the method without
importing torch: sampler, trainer and config are lazy ``"module:attr"`` targets.
"""

from zoo.sdk import Artifact, MethodSpec, Paper, Preset, hookimpl

from zoo_plugins.hyper_sd.presets import REPO, RECIPES


def _presets() -> tuple[Preset, ...]:
    return tuple(Preset(name=r.name, description=r.description,
                        artifact=Artifact(repo_id=REPO, files=(r.file,), base_model=r.base_model,
                                          license="openrail++" if r.family in ("sd15", "sdxl") else None,
                                          settings=r.settings()),
                        settings=r.settings())
                 for r in RECIPES)


@hookimpl
def register_methods(register):
    presets = _presets()
    register(MethodSpec(
        name="hyper_sd",
        aliases=("hypersd",),
        task="text-to-image",
        summary="Hyper-SD: segmented consistency distillation (8->4->2->1) with LoRA students; every published "
                "ByteDance/Hyper-SD recipe as a preset",
        paper=Paper("Hyper-SD: Trajectory Segmented Consistency Model for Efficient Image Synthesis",
                    arxiv="2404.13686", code="https://huggingface.co/ByteDance/Hyper-SD"),
        sampler="zoo_plugins.hyper_sd.sampler:build_sampler",
        trainer="zoo_plugins.hyper_sd.trainer:HyperSDTrainer",
        config="zoo_plugins.hyper_sd.config:HyperSDConfig",
        artifacts=tuple(p.artifact for p in presets),
        presets=presets,
        default_model="pkg:zoo_plugins.hyper_sd/testbed",
        comfy_patch="zoo_plugins.hyper_sd.comfy:patch_model",
    ))
