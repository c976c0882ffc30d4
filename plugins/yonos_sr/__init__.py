"""YONOS-SR: one-step latent-diffusion super-resolution trained by scale distillation.

Paper: Mehdi Noroozi, Isma Hadji, Brais Martinez, Adrian Bulat, Georgios Tzimiropoulos, "You Only Need One Step:
Fast Super-Resolution with Stable Diffusion via Scale Distillation", arXiv 2401.17258 (ECCV 2024). No official code
or weights are published; this is a from-paper re-implementation on diffusers (docs/SR.md, "YONOS-SR"):

* the LR image is bicubic-upsampled, encoded by the VAE and concatenated to the noisy latent (UNet with 2x input
  channels); sampling is DDIM from pure noise at ``trailing`` timesteps, 1 step by default (any number allowed);
* the trainer (:mod:`zoo_plugins.yonos_sr.trainer`) has the x0 regression stage, the scale-distillation stage
  (teacher at scale N/2, student at N regresses the teacher's prediction on the same noisy input, repeated up the
  scales) and the decoder fine-tuning stage (UNet frozen);
* ``pkg:zoo_plugins.yonos_sr/testbed`` is a tiny x4 student trained here on procedural shapes (the default model).

This module registers the method without importing torch.
"""

from zoo.sdk import MethodSpec, Paper, hookimpl


@hookimpl
def register_methods(register):
    register(MethodSpec(
        name="yonos_sr",
        task="super-resolution",
        summary="YONOS-SR: one-step latent diffusion SR (LR latent concatenated to the noisy latent) trained by scale "
                "distillation (x2 teacher -> x4 student) plus decoder fine-tuning",
        paper=Paper("You Only Need One Step: Fast Super-Resolution with Stable Diffusion via Scale Distillation "
                    "(YONOS-SR)", arxiv="2401.17258"),
        sampler="zoo_plugins.yonos_sr.sampler:build_sampler",
        trainer="zoo_plugins.yonos_sr.trainer:YonosSRTrainer",
        config="zoo_plugins.yonos_sr.config:YonosConfig",
        aliases=("yonos",),
        default_model="pkg:zoo_plugins.yonos_sr/testbed",
    ))
