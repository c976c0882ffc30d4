"""The pack's node ids (all prefixed ``DistillZoo``) and display names.

Every node's function is wrapped so that a client of a ComfyUI reachable by others sees only distill-zoo's one-line
errors: any other exception is logged in full on the server and reaches the client as its type and a pointer to the
log, never with paths or text from the server (Cancel and out-of-memory pass through to ComfyUI as they are).
"""

import functools
import logging

from .dz_native import (DistillZooApplyModel, DistillZooFewStepSchedule, DistillZooNASA,
                        DistillZooPhasedExperts)
from .dz_text_to_image import DistillZooLoadModel, DistillZooLoadPreset, DistillZooRecommendedSettings, DistillZooSampler
from .dz_upscale import DistillZooCoreUpscaleModel, DistillZooLoadUpscaleModel, DistillZooUpscale

PASS_THROUGH = ("InterruptProcessingException", "OutOfMemoryError")
"""Exceptions ComfyUI itself handles (Cancel; its out-of-memory advice)."""


def _one_line_errors(cls):
    function = getattr(cls, cls.FUNCTION)

    @functools.wraps(function)
    def run(self, *args, **kwargs):
        from zoo.errors import ZooError

        try:
            return function(self, *args, **kwargs)
        except ZooError:
            raise
        except Exception as exc:
            if type(exc).__name__ in PASS_THROUGH:
                raise
            logging.getLogger("distill_zoo").exception("%s failed", cls.__name__)
            raise RuntimeError(f"{cls.__name__} failed ({type(exc).__name__}); the details are in the ComfyUI "
                               f"server's log") from None

    setattr(cls, cls.FUNCTION, run)
    return cls


NODE_CLASS_MAPPINGS = {
    "DistillZooLoadModel": DistillZooLoadModel,
    "DistillZooLoadPreset": DistillZooLoadPreset,
    "DistillZooRecommendedSettings": DistillZooRecommendedSettings,
    "DistillZooSampler": DistillZooSampler,
    "DistillZooLoadUpscaleModel": DistillZooLoadUpscaleModel,
    "DistillZooUpscale": DistillZooUpscale,
    "DistillZooFewStepSchedule": DistillZooFewStepSchedule,
    "DistillZooNASA": DistillZooNASA,
    "DistillZooApplyModel": DistillZooApplyModel,
    "DistillZooPhasedExperts": DistillZooPhasedExperts,
    "DistillZooCoreUpscaleModel": DistillZooCoreUpscaleModel,
}

NODE_CLASS_MAPPINGS = {name: _one_line_errors(cls) for name, cls in NODE_CLASS_MAPPINGS.items()}

NODE_DISPLAY_NAME_MAPPINGS = {
    "DistillZooLoadModel": "Load Distilled Model (distill-zoo)",
    "DistillZooLoadPreset": "Load Distilled Preset, e.g. Hyper-SD (distill-zoo)",
    "DistillZooRecommendedSettings": "Recommended Steps/Guidance (distill-zoo)",
    "DistillZooSampler": "Few-Step Sampler + NASA (distill-zoo)",
    "DistillZooLoadUpscaleModel": "Load Upscale Model: IMDN / YONOS-SR (distill-zoo)",
    "DistillZooUpscale": "Upscale Image (distill-zoo)",
    "DistillZooFewStepSchedule": "Few-Step Schedule: SAMPLER + SIGMAS for SamplerCustom (distill-zoo)",
    "DistillZooNASA": "NASA Negative Prompt Patch (distill-zoo)",
    "DistillZooApplyModel": "Apply Distilled Model to MODEL (distill-zoo)",
    "DistillZooPhasedExperts": "Phased DMD Experts (distill-zoo)",
    "DistillZooCoreUpscaleModel": "Upscaler as UPSCALE_MODEL for core nodes (distill-zoo)",
}
