"""SwiftBrush sampler: one UNet evaluation at t = T-1 on pure noise, then the x0 formula (no CFG).

SwiftBrush (arXiv 2312.05239) ``infer.py``: ``eps = unet(z, 999, c)``; ``x0 = (z - sqrt(1 - ᾱ_T) eps) / sqrt(ᾱ_T)``;
``vae.decode(x0 / scaling_factor)``. ᾱ_T is read from the model's schedule (SwiftBrush hard-codes 0.0047 ≈ ᾱ_999 of
SD; pass ``alpha_prod_t=0.0047`` to reproduce it exactly). Runs the public full-pipeline layout
(``thuanz123/swiftbrush``) and the zoo's student folders (``unet/`` + ``zoo.json`` naming the base model). The loop
is the shared :class:`zoo.diffusion.one_step.OneStepSampler`.
"""

from __future__ import annotations

from zoo.diffusion.one_step import OneStepSampler


class SwiftBrushSampler(OneStepSampler):
    method = "swiftbrush"


build_sampler = SwiftBrushSampler.from_model
