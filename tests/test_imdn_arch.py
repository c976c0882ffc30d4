"""IMDN architectures: parameter counts, shapes, and the fused forward against straightforward formulas."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from zoo_plugins.imdn.arch import (IMDN, IMDNAnyScale, IMDNRTC, IMDNRTE, count_parameters,
                                   prepare_for_inference)



@pytest.mark.parametrize("model, expected", [
    (lambda: IMDN(upscale=2), 694_404), (lambda: IMDN(upscale=3), 703_059), (lambda: IMDN(upscale=4), 715_176),
    (IMDNAnyScale, 752_104), (IMDNRTC, 20_190), (IMDNRTE, 89_748),
])
def test_parameter_counts_match_the_paper_and_repository(model, expected):
    # 694K / 703K / 715K in the paper's Table; AS, RTC and RTE counts of the official checkpoints.
    assert count_parameters(model()) == expected


@pytest.mark.parametrize("model, size, out_size", [
    (lambda: IMDN(num_features=16, num_blocks=1, upscale=2), (10, 13), (20, 26)),
    (lambda: IMDN(num_features=16, num_blocks=1, upscale=3), (10, 13), (30, 39)),
    (lambda: IMDNAnyScale(num_features=16, num_blocks=1), (12, 16), (12, 16)),
    (lambda: IMDNRTC(num_blocks=1), (9, 7), (18, 14)),
    (lambda: IMDNRTE(num_blocks=1), (10, 14), (20, 28)),
])
def test_output_shapes(model, size, out_size):
    with torch.no_grad():
        out = model()(torch.rand(2, 3, *size))
    assert tuple(out.shape) == (2, 3, *out_size)


# --- straightforward references, written from the description in super-resolution.md §3 -------------------------
def _conv(x, conv, stride=1):
    return F.conv2d(x, conv.weight, conv.bias, stride=stride, padding=conv.kernel_size[0] // 2)


def _imdb(x, block, attention=True):
    d = block.distilled_channels
    r = x.shape[1] - d
    lrelu = lambda t: F.leaky_relu(t, 0.05)  # noqa: E731
    d1, r1 = torch.split(lrelu(_conv(x, block.c1)), (d, r), dim=1)
    d2, r2 = torch.split(lrelu(_conv(r1, block.c2)), (d, r), dim=1)
    d3, r3 = torch.split(lrelu(_conv(r2, block.c3)), (d, r), dim=1)
    out = torch.cat([d1, d2, d3, _conv(r3, block.c4)], dim=1)
    if attention:
        mean = out.mean(dim=(2, 3), keepdim=True)
        std = ((out - mean) ** 2).mean(dim=(2, 3), keepdim=True).sqrt()
        y = torch.sigmoid(_conv(torch.relu(_conv(std + mean, block.cca.conv_du[0])), block.cca.conv_du[2]))
        out = out * y
    return _conv(out, block.c5) + x


def _imdn(x, model):
    features = _conv(x, model.fea_conv) if not isinstance(model, IMDNAnyScale) else \
        _conv(F.leaky_relu(_conv(x, model.fea_conv[0], 2), 0.05), model.fea_conv[2], 2)
    outs, h = [], features
    for block in model.blocks():
        h = _imdb(h, block)
        outs.append(h)
    fused = F.leaky_relu(_conv(torch.cat(outs, 1), model.c[0]), 0.05)
    return F.pixel_shuffle(_conv(_conv(fused, model.LR_conv) + features, model.upsampler[0]), model.upscale)


def _rtc(x, model):
    seq = model.model
    h = _conv(x, seq[0])
    body = h
    for block in list(seq[1].sub)[:-1]:
        body = _imdb(body, block, attention=False)
    h = h + _conv(body, seq[1].sub[-1])
    return F.pixel_shuffle(_conv(h, seq[2]), model.upscale)


def _rte(x, model):
    features = _conv(torch.relu(_conv(x, model.fea_conv[0])), model.fea_conv[2], 2)
    h = features
    for index in range(1, model.num_blocks + 1):
        block = getattr(model, f"block{index}")
        d = block.distilled_channels
        pieces, rest = [], h
        for conv in (block.c1, block.c2, block.c3, block.c4, block.c5):
            out = torch.relu(_conv(rest, conv))
            pieces.append(out[:, :d])
            rest = out[:, d:]
        pieces.append(torch.relu(_conv(rest, block.c6)))
        h = _conv(torch.cat(pieces, 1), block.c7) + h
    return F.pixel_shuffle(_conv(_conv(h, model.LR_conv) + features, model.upsampler[0]), 2 * model.upscale)


@pytest.mark.parametrize("build, reference, size", [
    (lambda: IMDN(num_features=32, num_blocks=3, upscale=3), _imdn, (1, 3, 17, 20)),
    (lambda: IMDN(num_features=32, num_blocks=2, upscale=2), _imdn, (2, 3, 12, 9)),
    (lambda: IMDNAnyScale(num_features=32, num_blocks=2), _imdn, (1, 3, 16, 24)),
    (IMDNRTC, _rtc, (2, 3, 11, 13)),
    (IMDNRTE, _rte, (1, 3, 12, 10)),
])
def test_fused_forward_equals_straightforward_formulas(build, reference, size):
    torch.manual_seed(0)
    model = build()
    for p in model.parameters():  # bigger weights than the default init make the comparison meaningful
        p.data.normal_(0, 0.15)
    x = torch.rand(*size)
    with torch.no_grad():
        expected = reference(x, model)
        got = model(x)
        got_inference = prepare_for_inference(model)(x)
    scale = expected.abs().max().item()
    assert scale > 0.05  # the network does not collapse to zeros, so the comparison has content
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5 * scale)
    torch.testing.assert_close(got_inference, expected, rtol=1e-4, atol=1e-5 * scale)


def test_training_backward_reaches_every_parameter():
    torch.manual_seed(0)
    model = IMDN(num_features=64, num_blocks=2, upscale=2)  # CCA bottleneck of 4 units (16 channels: 1 unit)
    out = model(torch.rand(2, 3, 8, 8))
    out.square().mean().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_gradient_matches_the_reference_formula():
    torch.manual_seed(1)
    model = IMDN(num_features=16, num_blocks=1, upscale=2)
    x = torch.rand(1, 3, 6, 7)
    model(x).sum().backward()
    fused = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    _imdn(x, model).sum().backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(fused[name], p.grad, rtol=1e-4, atol=1e-5, msg=name)
