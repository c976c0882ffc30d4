"""Attention backend selection and the base processor custom processors build on."""

import pytest
import torch

from zoo.attention import (ZooAttnProcessor, attention, replace_cross_attention, resolve_backend,
                           set_attention_backend, xformers_available)
from zoo.errors import InputError, MissingExtraError


@pytest.fixture(scope="module")
def unet():
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel(sample_size=8, block_out_channels=(32, 64), layers_per_block=1,
                                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
                                attention_head_dim=8, norm_num_groups=8).eval()


def _forward(unet):
    generator = torch.Generator().manual_seed(1)
    sample = torch.randn(2, 4, 8, 8, generator=generator)
    context = torch.randn(2, 77, 32, generator=generator)
    with torch.no_grad():
        return unet(sample, 500, encoder_hidden_states=context).sample


def test_auto_picks_sdpa_on_cpu():
    assert resolve_backend("auto", "cpu") == "sdpa"
    assert resolve_backend("sdpa", "cpu") == "sdpa"


def test_xformers_on_cpu_is_a_one_line_error():
    with pytest.raises(InputError, match="needs a CUDA device.*'sdpa'"):
        resolve_backend("xformers", "cpu")


def test_unknown_backend():
    with pytest.raises(InputError, match="choose one of: auto, sdpa, xformers"):
        resolve_backend("flash9", "cpu")


@pytest.mark.skipif(xformers_available(), reason="checks the message shown when the xformers extra is not installed")
def test_xformers_missing_names_the_extra(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(MissingExtraError, match=r"pip install 'distill-zoo\[xformers\]'"):
        resolve_backend("xformers", "cuda")


def test_zoo_processor_matches_diffusers_default(unet):
    from diffusers.models.attention_processor import AttnProcessor2_0

    unet.set_attn_processor(AttnProcessor2_0())
    reference = _forward(unet)
    assert set_attention_backend(unet, "auto") == "sdpa"
    assert all(isinstance(p, ZooAttnProcessor) for p in unet.attn_processors.values())
    torch.testing.assert_close(_forward(unet), reference, rtol=0, atol=1e-6)


def test_replace_cross_attention_touches_attn2_only(unet):
    set_attention_backend(unet, "sdpa")
    before = dict(unet.attn_processors)

    class Marker(ZooAttnProcessor):
        pass

    replaced = replace_cross_attention(unet, lambda name, old: Marker("sdpa"))
    after = unet.attn_processors
    assert set(replaced) == {k for k in after if k.endswith("attn2.processor")} and len(replaced) == 4
    for name, processor in after.items():
        if name.endswith("attn1.processor"):
            assert processor is before[name]
        else:
            assert isinstance(processor, Marker)
    # switching the backend keeps the custom processors
    set_attention_backend(unet, "sdpa")
    assert all(isinstance(unet.attn_processors[k], Marker) for k in replaced)


def test_attention_function_equals_manual_softmax():
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 5, 8, generator=generator) for _ in range(3))
    manual = torch.softmax(q @ k.transpose(-1, -2) / 8 ** 0.5, dim=-1) @ v
    torch.testing.assert_close(attention(q, k, v, "sdpa"), manual, rtol=1e-5, atol=1e-6)
