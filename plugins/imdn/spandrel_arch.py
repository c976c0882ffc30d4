"""IMDN in spandrel's architecture registry, so that ComfyUI's core ``UpscaleModelLoader`` + ``ImageUpscaleWithModel``
(which load upscalers through spandrel) run the official IMDN ``.pth`` files placed in ``models/upscale_models``.

The state dict ComfyUI hands over is recognised with this plugin's own detection (:mod:`zoo_plugins.imdn.detect`) and
loaded strictly into its network (:mod:`zoo_plugins.imdn.checkpoint`); the descriptor runs it on ``[B, 3, H, W]``
images in [0, 1] like zoo's IMDN sampler. The fixed-scale networks (IMDN x2/x3/x4, RTC, RTE) are registered; IMDN_AS
restores a pre-upsampled image of the target size, which a plain upscale node cannot express, so it stays with the
pack's own upscale node. Used only where spandrel is installed (ComfyUI's environment); this module imports it.
"""

from __future__ import annotations

import torch
from torch import nn

from zoo.errors import WeightsError

from zoo_plugins.imdn.checkpoint import build_model, canonicalize_state_dict
from zoo_plugins.imdn.detect import detect_architecture
from zoo_plugins.imdn.tiling import forward_any_size

ARCH_ID = "IMDN"


class _ZeroToOne(nn.Module):
    """An IMDN network on images in [0, 1], whatever range it was trained on, at any input size."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        network = self.network
        scaled = x * network.input_range if network.input_range != 1.0 else x
        out = forward_any_size(network, scaled, network.size_multiple, network.scale)
        return out / network.input_range if network.input_range != 1.0 else out


def _detect(state_dict) -> bool:
    try:
        info = detect_architecture(canonicalize_state_dict(state_dict), source="spandrel state dict")
    except (WeightsError, KeyError, ValueError, AttributeError):
        return False
    return info.variant != "IMDN_AS"


def arch_support():
    """The ``spandrel.ArchSupport`` of IMDN (registered by the ComfyUI node pack when spandrel is present)."""
    from spandrel import Architecture, ArchSupport, ImageModelDescriptor, SizeRequirements

    class IMDNArch(Architecture):
        def __init__(self) -> None:
            super().__init__(id=ARCH_ID, detect=_detect)

        def load(self, state_dict):
            state = canonicalize_state_dict(state_dict)
            info = detect_architecture(state, source="IMDN weights")
            network = build_model(state, info, source=info.label).eval()
            model = _ZeroToOne(network)
            wrapped = {f"network.{key}": value for key, value in state.items()}  # the descriptor loads it into model
            return ImageModelDescriptor(model, wrapped, architecture=self, purpose="SR", tags=[info.label],
                                        supports_half=False, supports_bfloat16=True, scale=info.scale,
                                        input_channels=info.in_channels, output_channels=info.out_channels,
                                        size_requirements=SizeRequirements(multiple_of=network.size_multiple))

    return ArchSupport.from_architecture(IMDNArch())
