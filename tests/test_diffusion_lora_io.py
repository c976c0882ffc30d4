"""zoo.diffusion.lora_io: LoRA key formats, validation, fuse/unfuse and live adapters, on tiny random UNets."""

import pytest
import torch

from fixtures_hyper_sd import kohya_lora_for, peft_lora_for
from zoo.diffusion.lora_io import (LORA_TARGET_MODULES, add_lora_adapter, detect_format, fuse_lora, load_lora,
                                   parse_lora, peft_adapter_to_kohya, save_lora)
from zoo.errors import WeightsError
from zoo.tiny import build_tiny_sd


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_sd(tmp_path_factory.mktemp("lora_io_sd"))


def _unet(tiny_dir):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_pretrained(tiny_dir / "unet").eval()


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 77, 32, generator=g)


@torch.no_grad()
def _out(unet, x, c, t=500):
    return unet(x, t, encoder_hidden_states=c).sample


def test_kohya_file_fused_equals_diffusers_loader(tiny_dir, tmp_path):
    from diffusers import StableDiffusionPipeline

    unet = _unet(tiny_dir)
    state = kohya_lora_for(unet, rank=4, alpha=2.0)
    path = save_lora(state, tmp_path / "Hyper-SD15-4steps-lora.safetensors")
    lora = load_lora(path)
    assert lora.format == "kohya" and lora.ranks == {4}
    n_modules = sum(1 for k in state if k.endswith(".lora_down.weight"))
    assert len(lora.modules) == n_modules > 50
    x, c = _inputs()
    base = _out(unet, x, c)
    fuse_lora(lora, {"unet": unet}, scale=0.8)
    ours = _out(unet, x, c)
    pipe = StableDiffusionPipeline.from_pretrained(tiny_dir, safety_checker=None, local_files_only=True)
    pipe.load_lora_weights(str(path))
    pipe.fuse_lora(lora_scale=0.8)
    theirs = _out(pipe.unet, x, c)
    assert (ours - base).abs().max() > 1e-3  # the LoRA does something
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)


@pytest.mark.parametrize("scale", [0.125, 0.7, 1.0, 2.0])
def test_fused_equals_live_adapter_at_any_scale_and_unfuse_restores(tiny_dir, scale):
    fused_unet, live_unet = _unet(tiny_dir), _unet(tiny_dir)
    lora = parse_lora(kohya_lora_for(fused_unet, rank=4, alpha=3.0, seed=1))
    x, c = _inputs(1)
    base = _out(fused_unet, x, c)
    handle = fuse_lora(lora, {"unet": fused_unet}, scale=scale)
    names = add_lora_adapter(live_unet, lora, adapter_name="hyper", scale=scale)
    assert len(names) == len(lora.modules)
    torch.testing.assert_close(_out(fused_unet, x, c), _out(live_unet, x, c), rtol=0, atol=2e-5)
    handle.unfuse()
    torch.testing.assert_close(_out(fused_unet, x, c), base, rtol=0, atol=2e-5)


def test_fused_weight_is_w_plus_alpha_over_r_up_down(tiny_dir):
    unet = _unet(tiny_dir)
    state = kohya_lora_for(unet, rank=4, alpha=2.0, seed=2)
    name = "down_blocks.0.resnets.0.conv1"
    key = "lora_unet_" + name.replace(".", "_")
    layer = unet.get_submodule(name)
    before = layer.weight.detach().clone()
    fuse_lora(parse_lora(state), {"unet": unet}, scale=1.5)
    down, up = state[f"{key}.lora_down.weight"], state[f"{key}.lora_up.weight"]
    expected = before + 1.5 * (2.0 / 4) * (up.flatten(1) @ down.flatten(1)).reshape(before.shape)
    torch.testing.assert_close(layer.weight.detach(), expected)


def test_peft_and_old_diffusers_keys_fuse_like_kohya(tiny_dir):
    a, b, c_unet = _unet(tiny_dir), _unet(tiny_dir), _unet(tiny_dir)
    peft = peft_lora_for(a, rank=4, seed=3)
    kohya = {}
    old = {}
    for key, tensor in peft.items():
        module, kind = key[len("unet."):].rsplit(".lora_", 1)
        kohya_name = "lora_unet_" + module.replace(".", "_")
        kohya[f"{kohya_name}.{'lora_down' if kind.startswith('A') else 'lora_up'}.weight"] = tensor
        kohya[f"{kohya_name}.alpha"] = torch.tensor(4.0)  # alpha = r: factor 1, like PEFT without alpha
        old[f"unet.{module}.lora.{'down' if kind.startswith('A') else 'up'}.weight"] = tensor
    assert detect_format(peft) == "peft" and detect_format(kohya) == "kohya" and detect_format(old) == "diffusers-old"
    x, c = _inputs(2)
    fuse_lora(parse_lora(peft), {"unet": a})
    fuse_lora(parse_lora(kohya), {"unet": b})
    fuse_lora(parse_lora(old), {"unet": c_unet})
    torch.testing.assert_close(_out(a, x, c), _out(b, x, c), rtol=0, atol=1e-6)
    torch.testing.assert_close(_out(a, x, c), _out(c_unet, x, c), rtol=0, atol=1e-6)


def test_live_adapter_round_trips_to_kohya(tiny_dir):
    unet = _unet(tiny_dir)
    state = kohya_lora_for(unet, rank=4, alpha=2.0, seed=4)
    add_lora_adapter(unet, parse_lora(state), adapter_name="student")
    back = peft_adapter_to_kohya(unet, "student")
    assert set(back) == set(state)
    for key in state:
        torch.testing.assert_close(back[key], state[key])


def test_lora_for_another_base_model_is_one_clear_line(tiny_dir, tmp_path):
    wide = build_tiny_sd(tmp_path / "wide", cross_attention_dim=48)
    from diffusers import UNet2DConditionModel

    other = UNet2DConditionModel.from_pretrained(wide / "unet")
    lora = parse_lora(kohya_lora_for(other), source="other.safetensors")
    unet = _unet(tiny_dir)
    x, c = _inputs()
    before = _out(unet, x, c)
    with pytest.raises(WeightsError, match=r"does not fit this base model: .* has shapes") as info:
        fuse_lora(lora, {"unet": unet})
    assert "\n" not in str(info.value)
    torch.testing.assert_close(_out(unet, x, c), before, rtol=0, atol=0)  # nothing was changed


@pytest.mark.parametrize("mutate,match", [
    (lambda s: {**s, "lora_unet_not_a_layer.lora_down.weight": torch.zeros(4, 8),
                "lora_unet_not_a_layer.lora_up.weight": torch.zeros(8, 4)}, "does not exist"),
    (lambda s: {**s, "model.diffusion_model.foo": torch.zeros(1)}, "no known format"),
    (lambda s: {k: v for k, v in s.items() if "conv1.lora_up" not in k}, "no matching up weight"),
    (lambda s: {"lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": torch.zeros(4, 32),
                "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_up.weight": torch.zeros(37, 4)},
     "has weights for 'text_encoder'"),
])
def test_bad_lora_files_raise_one_line(tiny_dir, mutate, match):
    unet = _unet(tiny_dir)
    state = mutate(kohya_lora_for(unet))
    with pytest.raises(WeightsError, match=match) as info:
        fuse_lora(parse_lora(state), {"unet": unet})
    assert "\n" not in str(info.value)


def test_target_list_is_the_published_fourteen_patterns():
    assert len(LORA_TARGET_MODULES) == 14 and "time_emb_proj" in LORA_TARGET_MODULES


@pytest.mark.parametrize("family", ["sd3", "flux"])
def test_transformer_loras_fuse_at_one_eighth_like_a_live_adapter(family):
    """Hyper-SD3 / Hyper-FLUX files: PEFT keys with the 'transformer.' prefix, fused with lora_scale 0.125."""
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    torch.manual_seed(0)
    if family == "sd3":
        from diffusers import SD3Transformer2DModel

        make = lambda: SD3Transformer2DModel(sample_size=8, patch_size=1, in_channels=4, num_layers=2,  # noqa: E731
                                             attention_head_dim=8, num_attention_heads=4, caption_projection_dim=32,
                                             joint_attention_dim=32, pooled_projection_dim=64, out_channels=4)
        kwargs = dict(hidden_states=torch.randn(1, 4, 8, 8), encoder_hidden_states=torch.randn(1, 5, 32),
                      pooled_projections=torch.randn(1, 64), timestep=torch.tensor([500.0]))
    else:
        from diffusers import FluxTransformer2DModel

        make = lambda: FluxTransformer2DModel(patch_size=1, in_channels=4, num_layers=1, num_single_layers=1,  # noqa: E731
                                              attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                              pooled_projection_dim=32, axes_dims_rope=[4, 4, 8], guidance_embeds=True)
        kwargs = dict(hidden_states=torch.randn(1, 16, 4), encoder_hidden_states=torch.randn(1, 5, 32),
                      pooled_projections=torch.randn(1, 32), timestep=torch.tensor([0.5]),
                      img_ids=torch.zeros(16, 3), txt_ids=torch.zeros(5, 3), guidance=torch.tensor([3.5]))
    fused, live = make().eval(), make().eval()
    live.load_state_dict(fused.state_dict())
    targets = [name for name, m in fused.named_modules() if isinstance(m, torch.nn.Linear)]
    donor = make()
    donor.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=targets, init_lora_weights=False),
                      adapter_name="x")
    state = {f"transformer.{k}": v * 5 for k, v in get_peft_model_state_dict(donor, adapter_name="x").items()}
    lora = parse_lora(state)
    assert lora.format == "peft" and lora.components == {"transformer"}
    with torch.no_grad():
        base = fused(**kwargs).sample
        fuse_lora(lora, {"transformer": fused}, scale=0.125)
        add_lora_adapter(live, lora, component="transformer", adapter_name="hyper", scale=0.125)
        a, b = fused(**kwargs).sample, live(**kwargs).sample
    assert (a - base).abs().max() > 1e-4
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
