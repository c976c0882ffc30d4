"""LoRA-Enhanced Distillation on Guided Diffusion Models (Golnari, arXiv 2312.06899): guidance distillation into a
LoRA that shares the teacher's base weights, conditioned on the guidance scale. Registration only (no torch)."""

from zoo.sdk import MethodSpec, Paper, hookimpl


@hookimpl
def register_methods(register):
    register(MethodSpec(
        name="lora_distill",
        aliases=("lora_guidance_distill",),
        task="text-to-image",
        summary="LoRA-enhanced guidance distillation: teacher + w-conditioned LoRA on one set of base weights, "
                "one UNet call per step instead of CFG's two",
        paper=Paper("LoRA-Enhanced Distillation on Guided Diffusion Models", arxiv="2312.06899"),
        sampler="zoo_plugins.lora_distill.sampler:build_sampler",
        trainer="zoo_plugins.lora_distill.trainer:LoRADistillTrainer",
        config="zoo_plugins.lora_distill.config:LoRADistillConfig",
        default_model="pkg:zoo_plugins.lora_distill/testbed",
        comfy_patch="zoo_plugins.lora_distill.comfy:patch_model",
    ))
