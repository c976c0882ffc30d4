"""SNOOPI sampler: the one-step student (one UNet call at t = T-1, x0 formula, no CFG) with NASA negative prompts.

``sampler(prompt, negative_prompt="...", nasa_alpha=0.5)``: NASA (SNOOPI arXiv 2412.02687 Eq. 7-9) subtracts the
negative prompt's cross-attention output inside the single UNet call. Without ``nasa_alpha`` the model's
recommended strength from its ``zoo.json`` ``sampler`` settings is used when a negative prompt is given.
"""

from __future__ import annotations

from zoo.diffusion.one_step import OneStepSampler
from zoo.negative_attention import NASA_OPTION


class SnoopiSampler(OneStepSampler):
    """The shared one-step loop (:class:`zoo.diffusion.one_step.OneStepSampler`) with NASA's recommended strength
    applied whenever a negative prompt is given."""

    method = "snoopi"

    def __init__(self, components, model=None, **settings):
        super().__init__(components, model, **settings)
        self.default_nasa_alpha = float(self.settings.get(NASA_OPTION, 0.5))

    def __call__(self, prompt, negative_prompt=None, *args, **options):
        if negative_prompt is not None and options.get(NASA_OPTION) is None:
            options[NASA_OPTION] = self.default_nasa_alpha
        return super().__call__(prompt, negative_prompt, *args, **options)


build_sampler = SnoopiSampler.from_model
