"""Phased DMD: few-step distribution matching with one expert per SNR phase (no torch imported here).

Paper: "Phased DMD: Few-step Distribution Matching Distillation via Score Matching within Subintervals",
arXiv 2510.27684 (SenseTime). Built on DMD2 ("Improved Distribution Matching Distillation for Fast Image Synthesis",
Yin et al., arXiv 2405.14867, https://github.com/tianweiy/DMD2). Reference implementation consulted:
ModelTC/LightX2V ``lightx2v_train/trainers/phased_dmd`` (Apache-2.0; not copied).
"""

from zoo.sdk import MethodSpec, Paper, hookimpl

SPEC = MethodSpec(
    name="phased_dmd",
    aliases=("phaseddmd",),
    task="text-to-image",
    summary="Few-step DMD2 generator split into SNR phases, one expert per phase (mixture-of-experts sampler).",
    paper=Paper("Phased DMD: Few-step Distribution Matching Distillation via Score Matching within Subintervals",
                arxiv="2510.27684", code="https://github.com/ModelTC/LightX2V"),
    sampler="zoo_plugins.phased_dmd.sampler:build_sampler",
    trainer="zoo_plugins.phased_dmd.trainer:build_trainer",
    config="zoo_plugins.phased_dmd.config:PhasedDMDConfig",
    default_model="pkg:zoo_plugins.phased_dmd/testbed",
    comfy_patch="zoo_plugins.phased_dmd.comfy:patch_model",
)


@hookimpl
def register_methods(register):
    register(SPEC)
