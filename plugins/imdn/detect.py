"""Recognise an IMDN state dict and read its hyper-parameters from tensor shapes (spandrel-style detection).

No torch import: only ``.shape`` of the values is used, so detection also works on safetensors headers.

Detection order and characteristic keys (after :func:`zoo_plugins.imdn.checkpoint.canonicalize_state_dict` removed a
``module.`` prefix):

==========  ======================================================================================================
variant     keys that must all be present
==========  ======================================================================================================
IMDN_AS     ``fea_conv.0.weight``, ``fea_conv.2.weight``, ``IMDB1.c1.weight``, ``IMDB1.cca.conv_du.0.weight``,
            ``c.0.weight``, ``LR_conv.weight``, ``upsampler.0.weight``
IMDN        ``fea_conv.weight``, ``IMDB1.c1.weight``, ``IMDB1.cca.conv_du.0.weight``, ``c.0.weight``,
            ``LR_conv.weight``, ``upsampler.0.weight``
IMDN_RTC    ``model.0.weight``, ``model.1.sub.0.c1.weight``, ``model.1.sub.0.c5.weight``, ``model.2.weight``
IMDN_RTE    ``fea_conv.0.weight``, ``fea_conv.2.weight``, ``block1.c1.weight``, ``block1.c7.weight``,
            ``LR_conv.weight``, ``upsampler.0.weight``
==========  ======================================================================================================

Hyper-parameters: ``nf`` from the first conv's output channels, the number of blocks by counting ``IMDB{n}.c1.weight``
(``block{n}``, ``model.1.sub.{n}``), the distilled channels from ``c4``, the pixel-shuffle factor from the upsampler's
output channels ``= out_channels · s²``.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any, Mapping

from zoo.errors import WeightsError

VARIANTS = ("IMDN", "IMDN_AS", "IMDN_RTC", "IMDN_RTE")

_REQUIRED = {
    "IMDN_AS": ("fea_conv.0.weight", "fea_conv.2.weight", "IMDB1.c1.weight", "IMDB1.cca.conv_du.0.weight",
                "c.0.weight", "LR_conv.weight", "upsampler.0.weight"),
    "IMDN": ("fea_conv.weight", "IMDB1.c1.weight", "IMDB1.cca.conv_du.0.weight", "c.0.weight", "LR_conv.weight",
             "upsampler.0.weight"),
    "IMDN_RTC": ("model.0.weight", "model.1.sub.0.c1.weight", "model.1.sub.0.c5.weight", "model.2.weight"),
    "IMDN_RTE": ("fea_conv.0.weight", "fea_conv.2.weight", "block1.c1.weight", "block1.c7.weight", "LR_conv.weight",
                 "upsampler.0.weight"),
}


@dataclass(frozen=True)
class ArchInfo:
    """What a state dict says about the network that produced it.

    Attributes:
        variant: one of :data:`VARIANTS`.
        scale: output size / input size of the network (IMDN_AS: 1; the LR image is pre-upsampled).
        upscale: the constructor's ``upscale`` (IMDN/AS/RTC: pixel-shuffle factor; RTE: net scale, shuffle ×2·upscale).
        in_channels, out_channels, num_features, num_blocks: shapes read from the tensors.
        distilled_channels: channels each distillation stage keeps (``c4`` outputs for IMDB).
        reduction: CCA bottleneck reduction (IMDN, IMDN_AS).
    """

    variant: str
    scale: int
    upscale: int
    in_channels: int
    out_channels: int
    num_features: int
    num_blocks: int
    distilled_channels: int
    reduction: int | None = None

    @property
    def label(self) -> str:
        """Human name, e.g. ``IMDN x4`` or ``IMDN_AS (any scale)``."""
        return f"{self.variant} (any scale)" if self.variant == "IMDN_AS" else f"{self.variant} x{self.scale}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def build(self):
        """A freshly initialised ``torch.nn.Module`` of this architecture (imports torch)."""
        from zoo_plugins.imdn import arch

        rate = self.distilled_channels / self.num_features
        if self.variant == "IMDN":
            return arch.IMDN(self.in_channels, self.num_features, self.num_blocks, self.out_channels, self.upscale,
                             rate, self.reduction or 16)
        if self.variant == "IMDN_AS":
            return arch.IMDNAnyScale(self.in_channels, self.num_features, self.num_blocks, self.out_channels,
                                     self.upscale, rate, self.reduction or 16)
        if self.variant == "IMDN_RTC":
            return arch.IMDNRTC(self.in_channels, self.num_features, self.num_blocks, self.out_channels, self.upscale,
                                rate)
        return arch.IMDNRTE(self.upscale, self.in_channels, self.num_features, self.num_blocks, self.out_channels)


def _shape(state_dict: Mapping[str, Any], key: str) -> tuple[int, ...]:
    return tuple(int(n) for n in state_dict[key].shape)


def _count(state_dict: Mapping[str, Any], pattern: str) -> int:
    """Number of consecutive indices n (from ``start``) for which ``pattern.format(n)`` is a key."""
    start = 0 if "sub.{}" in pattern else 1
    n = start
    while pattern.format(n) in state_dict:
        n += 1
    return n - start


def _shuffle_factor(upsampler_channels: int, out_channels: int, source: str) -> int:
    factor = math.isqrt(upsampler_channels // out_channels) if upsampler_channels % out_channels == 0 else 0
    if factor < 1 or factor * factor * out_channels != upsampler_channels:
        raise WeightsError(f"{source}: upsampler has {upsampler_channels} output channels, which is not "
                           f"{out_channels}·s² for an integer scale s; the file is not a valid IMDN checkpoint")
    return factor


def _detect_imdb_body(state_dict: Mapping[str, Any], variant: str, first_conv: str, source: str) -> ArchInfo:
    num_features, in_channels = _shape(state_dict, first_conv)[:2]
    num_blocks = _count(state_dict, "IMDB{}.c1.weight")
    distilled = _shape(state_dict, "IMDB1.c4.weight")[0] if "IMDB1.c4.weight" in state_dict else num_features // 4
    cca_hidden = _shape(state_dict, "IMDB1.cca.conv_du.0.weight")[0]
    out_channels = in_channels
    factor = _shuffle_factor(_shape(state_dict, "upsampler.0.weight")[0], out_channels, source)
    if variant == "IMDN_AS" and factor != 4:
        raise WeightsError(f"{source}: IMDN_AS checkpoint with a x{factor} upsampler; IMDN_AS needs x4 "
                           "(two stride-2 convs in, x4 out, so that output size = input size)")
    return ArchInfo(variant=variant, scale=1 if variant == "IMDN_AS" else factor, upscale=factor,
                    in_channels=in_channels, out_channels=out_channels, num_features=num_features,
                    num_blocks=num_blocks, distilled_channels=distilled,
                    reduction=max(1, (4 * distilled) // max(cca_hidden, 1)))


def detect_architecture(state_dict: Mapping[str, Any], source: str = "checkpoint") -> ArchInfo:
    """The :class:`ArchInfo` of an IMDN-family state dict, or :class:`WeightsError` when it is not one.

    ``source`` names the file in error messages.
    """
    keys = set(state_dict)
    if all(k in keys for k in _REQUIRED["IMDN_AS"]):
        return _detect_imdb_body(state_dict, "IMDN_AS", "fea_conv.0.weight", source)
    if all(k in keys for k in _REQUIRED["IMDN"]):
        return _detect_imdb_body(state_dict, "IMDN", "fea_conv.weight", source)
    if all(k in keys for k in _REQUIRED["IMDN_RTC"]):
        num_features, in_channels = _shape(state_dict, "model.0.weight")[:2]
        factor = _shuffle_factor(_shape(state_dict, "model.2.weight")[0], in_channels, source)
        return ArchInfo(variant="IMDN_RTC", scale=factor, upscale=factor, in_channels=in_channels,
                        out_channels=in_channels, num_features=num_features,
                        num_blocks=_count(state_dict, "model.1.sub.{}.c1.weight"),
                        distilled_channels=_shape(state_dict, "model.1.sub.0.c4.weight")[0]
                        if "model.1.sub.0.c4.weight" in keys else num_features // 4)
    if all(k in keys for k in _REQUIRED["IMDN_RTE"]):
        num_features, in_channels = _shape(state_dict, "fea_conv.0.weight")[:2]
        factor = _shuffle_factor(_shape(state_dict, "upsampler.0.weight")[0], in_channels, source)
        if factor % 2:
            raise WeightsError(f"{source}: IMDN_RTE checkpoint with an odd x{factor} upsampler; IMDN_RTE "
                               "downsamples by 2 first, so its pixel shuffle must be even")
        return ArchInfo(variant="IMDN_RTE", scale=factor // 2, upscale=factor // 2, in_channels=in_channels,
                        out_channels=in_channels, num_features=num_features,
                        num_blocks=_count(state_dict, "block{}.c1.weight"),
                        distilled_channels=num_features // 4)
    raise WeightsError(f"{source} is not an IMDN checkpoint: {_describe_keys(keys)}; expected the key layout of "
                       "IMDN x2/x3/x4, IMDN_AS, IMDN_RTC or IMDN_RTE (e.g. 'fea_conv.weight', 'IMDB1.c1.weight')")


def _describe_keys(keys: set[str]) -> str:
    if not keys:
        return "it holds no tensors"
    sample = sorted(keys, key=_natural_key)[:3]
    return f"its {len(keys)} keys start with {', '.join(repr(k) for k in sample)}"


def _natural_key(key: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", key)]
