"""The pack's node ids (all prefixed ``DistillZoo``) and display names."""

from .dz_native import (DistillZooApplyModel, DistillZooFewStepSchedule, DistillZooNASA,
                        DistillZooPhasedExperts)
from .dz_text_to_image import DistillZooLoadModel, DistillZooLoadPreset, DistillZooRecommendedSettings, DistillZooSampler
from .dz_upscale import DistillZooCoreUpscaleModel, DistillZooLoadUpscaleModel, DistillZooUpscale

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
