"""IMDN network family: IMDN (x2/x3/x4), IMDN_AS (any scale), IMDN_RTC and IMDN_RTE.

Paper: Zheng Hui, Xinbo Gao, Yunchu Yang, Xiumei Wang, "Lightweight Image Super-Resolution with Information
Multi-distillation Network", ACM MM 2019, arXiv 1909.11856. Official code: https://github.com/Zheng222/IMDN (no license
file is published there; nothing is copied from it: this is a re-implementation from the paper and the project's
``super-resolution.md``).

Module and attribute names follow the official ``model/architecture.py`` so that the official checkpoints load with
``strict=True`` (``fea_conv``, ``IMDB1..6.c1..c5``, ``IMDB1.cca.conv_du.{0,2}``, ``c.0``, ``LR_conv``,
``upsampler.0``; RTC: ``model.0``, ``model.1.sub.*``, ``model.2``; RTE: ``block1..6.c1..c7``).

What differs from the reference forward (same parameters, same function, outputs equal to within float rounding,
~1e-6):

* activations are kept in ``channels_last`` memory (faster oneDNN / cuDNN convolutions);
* each 3x3 convolution followed by a channel split is evaluated as two convolutions, one per output group
  (``W[:d]`` and ``W[d:]``), so both halves are contiguous and no ``split`` copies are needed;
* the CCA re-weighting, the 1x1 fusion conv ``c5`` and the block residual are one batched GEMM: ``c5(x * y) + input =
  input + b5 + x · (W5 diag(y))ᵀ``;
* the 6-way concatenation before the 1x1 conv ``c`` is never materialised: ``c(cat(B1..B6)) = Σ_i B_i · W_c,iᵀ`` is
  accumulated block by block, so only two block outputs are alive at any time (lower peak memory).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LEAKY_SLOPE = 0.05
"""Negative slope of every LeakyReLU in IMDN (``activation('lrelu', neg_slope=0.05)`` in the reference)."""


def conv_layer(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, bias: bool = True) -> nn.Conv2d:
    """A convolution with "same" padding ``kernel_size // 2``."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2, bias=bias)


def to_rows(image: torch.Tensor) -> torch.Tensor:
    """``[B, C, H, W]`` → ``[B, H·W, C]`` (a view when ``image`` is channels_last)."""
    batch, channels, height, width = image.shape
    return image.permute(0, 2, 3, 1).reshape(batch, height * width, channels)


def to_image(rows: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``[B, H·W, C]`` → ``[B, C, H, W]`` in channels_last memory (a view)."""
    batch, _, channels = rows.shape
    return rows.reshape(batch, height, width, channels).permute(0, 3, 1, 2)


def _conv_part(x: torch.Tensor, conv: nn.Conv2d, start: int, stop: int) -> torch.Tensor:
    """Output channels ``start:stop`` of ``conv(x)``, computed by a convolution with only those filters."""
    bias = conv.bias[start:stop] if conv.bias is not None else None
    return F.conv2d(x, conv.weight[start:stop], bias, conv.stride, conv.padding)


class ContrastAwareChannelAttention(nn.Module):
    """CCA layer (paper Sec. 3.2, Fig. 3): channel weights from contrast = std + mean of each feature map.

    ``conv_du`` = 1x1 conv C→C/r, ReLU, 1x1 conv C/r→C, Sigmoid (keys ``conv_du.0`` and ``conv_du.2``).
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.conv_du = nn.Sequential(
            nn.Conv2d(channels, channels // reduction, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels // reduction, channels, 1),
            nn.Sigmoid(),
        )

    def channel_weights(self, rows: torch.Tensor) -> torch.Tensor:
        """Attention weights ``[B, 1, C]`` for features given as rows ``[B, N, C]`` (N = H·W)."""
        # 1. Contrast information (paper Eq. 5): population std over H×W plus the mean, per channel.
        mean = rows.mean(dim=1, keepdim=True)
        std = (rows - mean).square().mean(dim=1, keepdim=True).sqrt()
        contrast = std + mean
        # 2. Squeeze-excite style bottleneck (the 1x1 convs act on a 1x1 map, i.e. linear layers).
        down, up = self.conv_du[0], self.conv_du[2]
        hidden = F.relu(F.linear(contrast, down.weight.flatten(1), down.bias))
        return torch.sigmoid(F.linear(hidden, up.weight.flatten(1), up.bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.channel_weights(to_rows(x))  # [B, 1, C]
        return x * weights.transpose(1, 2).unsqueeze(-1)


class InformationMultiDistillationBlock(nn.Module):
    """IMDB (paper Sec. 3.1, Fig. 2), or IMDB_speed (no CCA) when ``use_attention=False`` (IMDN_RTC).

    With C channels and distilled ``d = C·rate``, remaining ``r = C − d``:
    ``c1`` C→C, ``c2``/``c3`` r→C (each followed by LeakyReLU and a [d | r] split), ``c4`` r→d (no activation);
    the four d-channel pieces are concatenated, re-weighted by CCA, fused by the 1x1 ``c5`` and added to the input.
    """

    def __init__(self, channels: int = 64, distillation_rate: float = 0.25, use_attention: bool = True,
                 reduction: int = 16) -> None:
        super().__init__()
        self.distilled_channels = int(channels * distillation_rate)
        self.remaining_channels = channels - self.distilled_channels
        d, r = self.distilled_channels, self.remaining_channels
        self.c1 = conv_layer(channels, channels, 3)
        self.c2 = conv_layer(r, channels, 3)
        self.c3 = conv_layer(r, channels, 3)
        self.c4 = conv_layer(r, d, 3)
        self.c5 = conv_layer(4 * d, channels, 1)
        self.cca = ContrastAwareChannelAttention(4 * d, reduction) if use_attention else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.distilled_channels
        height, width = x.shape[-2:]
        # 1. Progressive refinement (paper Eq. 1-4): each stage keeps d channels and refines the remaining r.
        pieces = []
        remaining = x
        for conv in (self.c1, self.c2, self.c3):
            pieces.append(F.leaky_relu_(_conv_part(remaining, conv, 0, d), LEAKY_SLOPE))
            remaining = F.leaky_relu_(_conv_part(remaining, conv, d, conv.out_channels), LEAKY_SLOPE)
        pieces.append(self.c4(remaining))
        # 2. Concatenate the distilled pieces (as rows [B, H·W, 4d]).
        distilled = torch.cat([to_rows(piece) for piece in pieces], dim=2)
        # 3. CCA (Eq. 5-6), 1x1 fusion conv and local residual as one GEMM: input + b5 + distilled · (W5 diag(y))ᵀ.
        fusion = self.c5.weight.flatten(1).t().unsqueeze(0)  # [1, 4d, C]
        if self.cca is not None:
            fusion = fusion * self.cca.channel_weights(distilled).transpose(1, 2)  # row k scaled by y_k
        residual = to_rows(x) + self.c5.bias
        out = torch.baddbmm(residual, distilled, fusion.expand(x.shape[0], -1, -1))
        return to_image(out, height, width)


class InformationMultiDistillationBlockLarge(nn.Module):
    """``IMDModule_Large`` of IMDN_RTE: six distillation stages, ReLU, no biases.

    With C channels, d = C/4 and r = C − d: ``c1`` C→C, ``c2``/``c3`` r→C, ``c4`` r→r, ``c5`` (r−d)→(r−d),
    ``c6`` d→d; each stage keeps d channels; ``c7`` (1x1, 6d→C) fuses them, plus the residual.
    """

    def __init__(self, channels: int = 20, distillation_rate: float = 0.25) -> None:
        super().__init__()
        self.distilled_channels = int(channels * distillation_rate)
        self.remaining_channels = channels - self.distilled_channels
        d, r = self.distilled_channels, self.remaining_channels
        self.c1 = conv_layer(channels, channels, 3, bias=False)
        self.c2 = conv_layer(r, channels, 3, bias=False)
        self.c3 = conv_layer(r, channels, 3, bias=False)
        self.c4 = conv_layer(r, r, 3, bias=False)
        self.c5 = conv_layer(r - d, r - d, 3, bias=False)
        self.c6 = conv_layer(d, d, 3, bias=False)
        self.c7 = conv_layer(6 * d, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.distilled_channels
        height, width = x.shape[-2:]
        # 1. Five split stages (keep d channels, refine the rest) and a last 3x3 conv on the final d channels.
        pieces = []
        remaining = x
        for conv in (self.c1, self.c2, self.c3, self.c4, self.c5):
            pieces.append(F.relu_(_conv_part(remaining, conv, 0, d)))
            remaining = F.relu_(_conv_part(remaining, conv, d, conv.out_channels))
        pieces.append(F.relu_(self.c6(remaining)))
        # 2. 1x1 fusion and residual as one GEMM.
        distilled = torch.cat([to_rows(piece) for piece in pieces], dim=2)
        fusion = self.c7.weight.flatten(1).t().unsqueeze(0).expand(x.shape[0], -1, -1)
        out = torch.baddbmm(to_rows(x), distilled, fusion)
        return to_image(out, height, width)


def pixelshuffle_block(in_channels: int, out_channels: int, upscale_factor: int) -> nn.Sequential:
    """3x3 conv to ``out·s²`` channels then ``PixelShuffle(s)`` (keys ``0.*``)."""
    return nn.Sequential(conv_layer(in_channels, out_channels * upscale_factor ** 2, 3), nn.PixelShuffle(upscale_factor))


class IMDN(nn.Module):
    """IMDN for a fixed integer scale (paper Fig. 1): 3x3 feature conv, N IMDBs, 1x1 fusion of all block outputs,
    3x3 conv plus global residual, pixel-shuffle upsampler. Input and output RGB in [0, 1].

    Attributes used by the sampler: ``scale`` (output size / input size), ``size_multiple`` (input sides must be
    multiples of it), ``feature_stride`` (input pixels per body feature pixel), ``input_range`` (1.0: pixels in
    [0, 1]).
    """

    variant = "IMDN"
    size_multiple = 1
    feature_stride = 1
    input_range = 1.0

    def __init__(self, in_channels: int = 3, num_features: int = 64, num_blocks: int = 6, out_channels: int = 3,
                 upscale: int = 4, distillation_rate: float = 0.25, reduction: int = 16) -> None:
        super().__init__()
        self.num_features = num_features
        self.num_blocks = num_blocks
        self.upscale = upscale
        self.fea_conv = self._feature_extractor(in_channels, num_features)
        for index in range(1, num_blocks + 1):
            self.add_module(f"IMDB{index}", InformationMultiDistillationBlock(num_features, distillation_rate,
                                                                              reduction=reduction))
        self.c = nn.Sequential(conv_layer(num_features * num_blocks, num_features, 1), nn.LeakyReLU(LEAKY_SLOPE, True))
        self.LR_conv = conv_layer(num_features, num_features, 3)
        self.upsampler = pixelshuffle_block(num_features, out_channels, upscale)

    def _feature_extractor(self, in_channels: int, num_features: int) -> nn.Module:
        return conv_layer(in_channels, num_features, 3)

    @property
    def scale(self) -> int:
        return self.upscale

    def blocks(self) -> list[InformationMultiDistillationBlock]:
        return [getattr(self, f"IMDB{index}") for index in range(1, self.num_blocks + 1)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        features = self.fea_conv(x)
        height, width = features.shape[-2:]
        nf = self.num_features
        # 1. IMDBs in series; 2. the 1x1 conv `c` over the concatenation of all block outputs, accumulated as
        #    Σ_i B_i · W_c,iᵀ so that the concatenation is never built.
        fusion_weight = self.c[0].weight.flatten(1).t()  # [N·nf, nf]
        fused = None
        hidden = features
        for index, block in enumerate(self.blocks()):
            hidden = block(hidden)
            part = fusion_weight[index * nf:(index + 1) * nf].unsqueeze(0).expand(x.shape[0], -1, -1)
            if fused is None:
                fused = torch.baddbmm(self.c[0].bias.expand(1, 1, -1), to_rows(hidden), part)
            else:
                fused = torch.baddbmm(fused, to_rows(hidden), part)
        fused = F.leaky_relu_(to_image(fused, height, width), LEAKY_SLOPE)
        # 3. LR_conv plus the global residual, then the pixel-shuffle upsampler.
        low_resolution = self.LR_conv(fused) + features
        return self.upsampler(low_resolution)


class IMDNAnyScale(IMDN):
    """IMDN_AS ("any scale", used for RealSR): the feature extractor downsamples by 4 with two stride-2 convs and
    the x4 upsampler restores the size, so output size = input size. The LR image is bicubic-upsampled to the target
    size first; input sides must be multiples of 4 (the sampler applies the adaptive cropping strategy otherwise).
    """

    variant = "IMDN_AS"
    size_multiple = 4
    feature_stride = 4

    def _feature_extractor(self, in_channels: int, num_features: int) -> nn.Module:
        return nn.Sequential(conv_layer(in_channels, num_features, 3, stride=2), nn.LeakyReLU(LEAKY_SLOPE, True),
                             conv_layer(num_features, num_features, 3, stride=2))

    @property
    def scale(self) -> int:
        return 1


class ShortcutBlock(nn.Module):
    """``x + sub(x)`` (key prefix ``sub.``)."""

    def __init__(self, submodule: nn.Module) -> None:
        super().__init__()
        self.sub = submodule

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.sub(x)


class IMDNRTC(nn.Module):
    """IMDN_RTC (winner of the AI-in-RTC 2019 challenge), x2, 20,190 parameters: conv 3→12, a shortcut around five
    IMDB_speed blocks and a 1x1 conv, then conv 12→3·s² and PixelShuffle (keys ``model.0..3``)."""

    variant = "IMDN_RTC"
    size_multiple = 1
    feature_stride = 1
    input_range = 1.0

    def __init__(self, in_channels: int = 3, num_features: int = 12, num_blocks: int = 5, out_channels: int = 3,
                 upscale: int = 2, distillation_rate: float = 0.25) -> None:
        super().__init__()
        self.upscale = upscale
        blocks = [InformationMultiDistillationBlock(num_features, distillation_rate, use_attention=False)
                  for _ in range(num_blocks)]
        self.model = nn.Sequential(
            conv_layer(in_channels, num_features, 3),
            ShortcutBlock(nn.Sequential(*blocks, conv_layer(num_features, num_features, 1))),
            conv_layer(num_features, out_channels * upscale ** 2, 3),
            nn.PixelShuffle(upscale),
        )

    @property
    def scale(self) -> int:
        return self.upscale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.contiguous(memory_format=torch.channels_last))


class IMDNRTE(nn.Module):
    """IMDN_RTE (2nd place, AI-in-RTE 2020; trained for down-sampling plus noise), x2, 89,748 parameters.

    Takes pixels in **[0, 255]** (``input_range``). A stride-2 feature extractor, six ``IMDModule_Large`` blocks, a 1x1
    conv plus residual and a x(2·scale) pixel-shuffle upsampler. Input sides must be even.
    """

    variant = "IMDN_RTE"
    size_multiple = 2
    feature_stride = 2
    input_range = 255.0

    def __init__(self, upscale: int = 2, in_channels: int = 3, num_features: int = 20, num_blocks: int = 6,
                 out_channels: int = 3) -> None:
        super().__init__()
        self.upscale = upscale
        self.num_blocks = num_blocks
        self.fea_conv = nn.Sequential(conv_layer(in_channels, num_features, 3), nn.ReLU(inplace=True),
                                      conv_layer(num_features, num_features, 3, stride=2, bias=False))
        for index in range(1, num_blocks + 1):
            self.add_module(f"block{index}", InformationMultiDistillationBlockLarge(num_features))
        self.LR_conv = conv_layer(num_features, num_features, 1, bias=False)
        self.upsampler = pixelshuffle_block(num_features, out_channels, upscale * 2)

    @property
    def scale(self) -> int:
        return self.upscale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.fea_conv(x.contiguous(memory_format=torch.channels_last))
        hidden = features
        for index in range(1, self.num_blocks + 1):
            hidden = getattr(self, f"block{index}")(hidden)
        return self.upsampler(self.LR_conv(hidden) + features)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def prepare_for_inference(model: nn.Module, device: str | torch.device = "cpu",
                          dtype: torch.dtype = torch.float32) -> nn.Module:
    """Eval mode, no gradients, weights on ``device`` in ``dtype`` and channels_last memory."""
    model = model.to(device=device, dtype=dtype).to(memory_format=torch.channels_last)
    model.eval()
    model.requires_grad_(False)
    return model
