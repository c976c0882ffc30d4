"""AGD: Adapter Guidance Distillation — adapters on cross-attention learn the CFG output from guided trajectories, so
sampling needs one UNet call per step. Paper: arXiv 2503.07274; code: github.com/cristianpjensen/agd (MIT).
Registration only (no torch import)."""

from zoo.sdk import MethodSpec, Paper, hookimpl


@hookimpl
def register_methods(register):
    register(MethodSpec(
        name="agd",
        aliases=("adapter_guidance_distillation",),
        task="text-to-image",
        summary="Adapter Guidance Distillation: cross-attention adapters conditioned on guidance scale, timestep and "
                "prompt replace CFG's second UNet call",
        paper=Paper("Efficient Distillation of Classifier-Free Guidance using Adapters", arxiv="2503.07274",
                    code="https://github.com/cristianpjensen/agd"),
        sampler="zoo_plugins.agd.sampler:build_sampler",
        trainer="zoo_plugins.agd.trainer:AGDTrainer",
        config="zoo_plugins.agd.config:AGDConfig",
        default_model="pkg:zoo_plugins.agd/testbed",
        comfy_patch="zoo_plugins.agd.comfy:patch_model",
    ))
