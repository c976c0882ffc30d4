"""SwiftBrush: one-step text-to-image by variational score distillation (no torch imported here).

Paper: "SwiftBrush: One-Step Text-to-Image Diffusion Model with Variational Score Distillation", Nguyen & Tran,
CVPR 2024, arXiv 2312.05239. Official code: https://github.com/VinAIResearch/SwiftBrush (CC BY-NC 4.0; not copied).
"""

from zoo.sdk import Artifact, MethodSpec, Paper, hookimpl

SPEC = MethodSpec(
    name="swiftbrush",
    aliases=("swift_brush",),
    task="text-to-image",
    summary="One-step student distilled by variational score distillation (VSD) with a LoRA teacher; 1 NFE, no CFG.",
    paper=Paper("SwiftBrush: One-Step Text-to-Image Diffusion Model with Variational Score Distillation",
                arxiv="2312.05239", code="https://github.com/VinAIResearch/SwiftBrush"),
    sampler="zoo_plugins.swiftbrush.sampler:build_sampler",
    trainer="zoo_plugins.swiftbrush.trainer:build_trainer",
    config="zoo_plugins.swiftbrush.config:SwiftBrushConfig",
    artifacts=(Artifact(repo_id="thuanz123/swiftbrush", base_model="stabilityai/stable-diffusion-2-1-base",
                        license="cc-by-nc-4.0",
                        description="SwiftBrush v1 on SD2.1-base: a full diffusers StableDiffusionPipeline folder",
                        settings={"steps": 1, "guidance_scale": 0.0}),),
    default_model="pkg:zoo_plugins.swiftbrush/testbed",
    comfy_patch="zoo.comfy_native:apply_student_unet",
)


@hookimpl
def register_methods(register):
    register(SPEC)
