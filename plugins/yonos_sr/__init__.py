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
  It is a testbed model, not for real photos (on Set5 x4 it is 6.3 dB below bicubic and shifts colours: its VAE never
  saw a photo; docs/SR.md, "YONOS-SR on real images"), so the summary ``zoo list`` / ``zoo info`` print says so, its
  ``zoo.json`` has ``"testbed_only": true`` and the sampler notes it once on stderr for images larger than 128 px.

This module registers the method without importing torch.
"""

from zoo.sdk import MethodSpec, Paper, hookimpl

DEFAULT_MODEL_NOTE = ("Its default model is a testbed model: trained on synthetic shapes, not for real photos; use "
                      "imdn for real images")
"""What ``zoo info yonos_sr`` (and ``zoo list``) print about the committed default model (zoo.json
``testbed_only``)."""


@hookimpl
def register_methods(register):
    register(MethodSpec(
        name="yonos_sr",
        task="super-resolution",
        summary="YONOS-SR: one-step latent diffusion SR trained by scale distillation (x2 teacher -> x4 student) plus "
                "decoder fine-tuning. " + DEFAULT_MODEL_NOTE,
        paper=Paper("You Only Need One Step: Fast Super-Resolution with Stable Diffusion via Scale Distillation "
                    "(YONOS-SR)", arxiv="2401.17258"),
        sampler="zoo_plugins.yonos_sr.sampler:build_sampler",
        trainer="zoo_plugins.yonos_sr.trainer:YonosSRTrainer",
        config="zoo_plugins.yonos_sr.config:YonosConfig",
        aliases=("yonos",),
        default_model="pkg:zoo_plugins.yonos_sr/testbed",
    ))
