"""Guided progressive distillation (Meng et al., "On Distillation of Guided Diffusion Models", arXiv 2210.03142;
Salimans & Ho, "Progressive Distillation for Fast Sampling of Diffusion Models", arXiv 2202.00512), as a third-party
distill-zoo plugin written against ``zoo.sdk`` alone.

One round: a student that takes N DDIM steps without CFG (1 UNet call per step) learns to land, at every one of its
steps, where the teacher lands after ``substeps`` DDIM steps with CFG (2 calls each). With N = 2 and 2 substeps the
student makes 2 calls where the teacher at the same quality makes 8.

This module only registers the method: no torch import here (``zoo list`` stays fast).
"""

from zoo.sdk import MethodSpec, Paper, hookimpl


@hookimpl
def register_methods(register):
    register(MethodSpec(
        name="progressive",
        aliases=("guided_progressive",),
        task="text-to-image",
        summary="Guided progressive distillation: one round halves the teacher's DDIM steps and folds CFG into a "
                "single call per step (2-step student on the testbed)",
        paper=Paper("On Distillation of Guided Diffusion Models", arxiv="2210.03142"),
        sampler="zoo_progressive.sampler:build_sampler",
        trainer="zoo_progressive.trainer:ProgressiveTrainer",
        config="zoo_progressive.config:ProgressiveConfig",
        default_model="pkg:zoo_progressive/testbed",
    ))
