"""SNOOPI: Proper-Guidance SwiftBrush (PG-SB) and Negative-Away Steer Attention (NASA) (no torch imported here).

Paper: "SNOOPI: Supercharged One-step Diffusion Distillation with Proper Guidance" (v3: "Supercharged One-step
Text-to-Image Diffusion Models with Negative Prompts"), Nguyen et al., arXiv 2412.02687. Official code:
https://github.com/VinAIResearch/SNOOPI (not copied; written from the paper).
"""

from zoo.sdk import MethodSpec, Paper, hookimpl

SPEC = MethodSpec(
    name="snoopi",
    aliases=("pg_sb", "pgsb"),
    task="text-to-image",
    summary="One-step VSD student with random guidance per sample (PG-SB); negative prompts through NASA attention.",
    paper=Paper("SNOOPI: Supercharged One-step Diffusion Distillation with Proper Guidance", arxiv="2412.02687",
                code="https://github.com/VinAIResearch/SNOOPI"),
    sampler="zoo_plugins.snoopi.sampler:build_sampler",
    trainer="zoo_plugins.snoopi.trainer:build_trainer",
    config="zoo_plugins.snoopi.config:SnoopiConfig",
    default_model="pkg:zoo_plugins.snoopi/testbed",
    comfy_patch="zoo.comfy_native:apply_student_unet",
)


@hookimpl
def register_methods(register):
    register(SPEC)
