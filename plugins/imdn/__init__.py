"""IMDN: Information Multi-distillation Network for lightweight super-resolution.

Paper: Zheng Hui, Xinbo Gao, Yunchu Yang, Xiumei Wang, "Lightweight Image Super-Resolution with Information
Multi-distillation Network", ACM MM 2019, arXiv 1909.11856. Official code and checkpoints:
https://github.com/Zheng222/IMDN (no license file is published, so distill-zoo ships no IMDN weights; ``--model``
must point at the official ``.pth`` files or at converted ``.safetensors``).

The architecture (x2/x3/x4, IMDN_AS, IMDN_RTC, IMDN_RTE) is re-implemented in :mod:`zoo_plugins.imdn.arch`; the
official checkpoints load strictly (:mod:`zoo_plugins.imdn.checkpoint`). This module registers the method without
importing torch.
"""

from zoo.sdk import MethodSpec, Paper, Preset, hookimpl

RELEASE = "https://github.com/Zheng222/IMDN/raw/master/checkpoints"
"""Where the official checkpoints are published (a GitHub folder; there is no Hugging Face repository)."""

_CHECKPOINTS = (
    ("x2", "IMDN_x2.pth", "IMDN", 2, "IMDN x2 (694K params), bicubic; Set5 38.00 dB / 0.9605"),
    ("x3", "IMDN_x3.pth", "IMDN", 3, "IMDN x3 (703K params), bicubic; Set5 34.36 dB / 0.9270"),
    ("x4", "IMDN_x4.pth", "IMDN", 4, "IMDN x4 (715K params), bicubic; Set5 32.21 dB / 0.8948"),
    ("as", "IMDN_AS.pth", "IMDN_AS", None, "IMDN_AS (752K params), any scale on a bicubic-upsampled input (RealSR)"),
    ("rtc", "model_RTC.pth", "IMDN_RTC", 2, "IMDN_RTC x2 (20K params), AI-in-RTC 2019 winner"),
    ("rte", "model_RTE.pth", "IMDN_RTE", 2, "IMDN_RTE x2 (90K params), AI-in-RTE 2020, down-sampling + noise"),
)


def _presets() -> tuple[Preset, ...]:
    presets = []
    for name, file, variant, scale, text in _CHECKPOINTS:
        settings = {"variant": variant, "weights": file}
        if scale is not None:
            settings["scale"] = scale
        presets.append(Preset(name=name, description=f"{text}; weights {RELEASE}/{file}", settings=settings))
    return tuple(presets)


@hookimpl
def register_methods(register):
    register(MethodSpec(
        name="imdn",
        task="super-resolution",
        summary="IMDN: lightweight CNN super-resolution (x2/x3/x4, any-scale IMDN_AS, RTC, RTE) with the official "
                "checkpoints; adaptive cropping and tiled inference; trainer with optional teacher distillation",
        paper=Paper("Lightweight Image Super-Resolution with Information Multi-distillation Network",
                    arxiv="1909.11856", code="https://github.com/Zheng222/IMDN"),
        sampler="zoo_plugins.imdn.sampler:build_sampler",
        trainer="zoo_plugins.imdn.trainer:IMDNTrainer",
        config="zoo_plugins.imdn.config:IMDNConfig",
        presets=_presets(),
        default_model=None,
        spandrel_arch="zoo_plugins.imdn.spandrel_arch:arch_support",
        hub_files=("*.pth",),  # the official checkpoints; read with torch.load(weights_only=True)
    ))
