"""SNOOPI: NASA attention properties (methods.md §2(h) N1-N5), NASA on any sampler, PG-SB kappa, NASA-T trainer."""

import warnings

import pytest
import torch

from fixtures_score import CallCounter, embeddings, tiny_unet
from zoo.attention import ZooAttnProcessor, set_attention_backend
from zoo.negative_attention import NASAAttnProcessor, negative_attention
from zoo.tiny import build_tiny_sd


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    return build_tiny_sd(tmp_path_factory.mktemp("tiny") / "sd")


def _attention_layer(seed=0):
    from diffusers.models.attention_processor import Attention

    torch.manual_seed(seed)
    layer = Attention(query_dim=32, cross_attention_dim=16, heads=2, dim_head=8, bias=True, out_bias=True)
    with torch.no_grad():
        layer.to_out[0].bias.normal_()
    return layer.eval()


def _inputs(seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(2, 10, 32, generator=g), torch.randn(2, 7, 16, generator=g), torch.randn(2, 7, 16, generator=g))


@torch.no_grad()
def test_alpha_zero_equals_plain_attention_and_diffusers():
    from diffusers.models.attention_processor import AttnProcessor2_0

    layer = _attention_layer()
    hidden, pos, neg = _inputs()
    reference = AttnProcessor2_0()(layer, hidden, pos)
    nasa = NASAAttnProcessor("sdpa", negative=neg, alpha=0.0)(layer, hidden, pos)
    assert torch.allclose(nasa, reference, atol=1e-6)
    # Self-attention (no context) falls back to plain attention whatever alpha is.
    from diffusers.models.attention_processor import Attention

    self_layer = Attention(query_dim=32, heads=2, dim_head=8).eval()
    assert torch.allclose(NASAAttnProcessor("sdpa", neg, 1.0)(self_layer, hidden),
                          AttnProcessor2_0()(self_layer, hidden), atol=1e-6)


@torch.no_grad()
def test_same_prompt_alpha_one_leaves_only_the_output_bias():
    layer = _attention_layer()
    hidden, pos, _ = _inputs()
    out = NASAAttnProcessor("sdpa", negative=pos.clone(), alpha=1.0)(layer, hidden, pos)
    assert torch.allclose(out, layer.to_out[0].bias.expand_as(out), atol=1e-5)


@torch.no_grad()
def test_output_is_affine_in_alpha_with_the_paper_slope():
    layer = _attention_layer()
    hidden, pos, neg = _inputs()
    outs = {a: NASAAttnProcessor("sdpa", negative=neg, alpha=a)(layer, hidden, pos) for a in (0.0, 0.5, 1.0)}
    assert torch.allclose(outs[0.5], (outs[0.0] + outs[1.0]) / 2, atol=1e-5)
    # slope = -to_out[0].weight @ Z-  with Z- = softmax(Q K-^T) V- (Eq. 8)
    import torch.nn.functional as F

    proc = ZooAttnProcessor()
    _, q, _ = proc.prepare(layer, hidden)
    k, v = proc.project_kv(layer, neg)
    z_neg = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(2, 10, 16)
    assert torch.allclose(outs[1.0] - outs[0.0], -(z_neg @ layer.to_out[0].weight.T), atol=1e-5)
    # per-sample alpha tensor == per-sample scalars
    per_sample = NASAAttnProcessor("sdpa", negative=neg, alpha=torch.tensor([0.0, 1.0]))(layer, hidden, pos)
    assert torch.allclose(per_sample[0], outs[0.0][0], atol=1e-6) and torch.allclose(per_sample[1], outs[1.0][1],
                                                                                      atol=1e-6)


@torch.no_grad()
def test_the_relative_form_subtracts_only_what_the_negative_adds_to_the_empty_prompt():
    """nasa_mode="relative": Z = Z+ - alpha (Z- - Z0). An empty negative changes nothing at any strength, and the
    result is the paper's form plus alpha times the empty prompt's attention."""
    import torch.nn.functional as F

    layer = _attention_layer()
    hidden, pos, neg = _inputs()
    empty = torch.randn(1, 7, 16, generator=torch.Generator().manual_seed(9))
    plain = NASAAttnProcessor("sdpa", negative=neg, alpha=0.0)(layer, hidden, pos)
    same = NASAAttnProcessor("sdpa", negative=empty.expand(2, -1, -1), alpha=1.7, reference=empty)(layer, hidden, pos)
    assert torch.allclose(same, plain, atol=1e-5)
    paper = NASAAttnProcessor("sdpa", negative=neg, alpha=0.8)(layer, hidden, pos)
    relative = NASAAttnProcessor("sdpa", negative=neg, alpha=0.8, reference=empty)(layer, hidden, pos)
    proc = ZooAttnProcessor()
    _, q, _ = proc.prepare(layer, hidden)
    z_empty = F.scaled_dot_product_attention(q, *proc.project_kv(layer, empty.expand(2, -1, -1)))
    z_empty = z_empty.transpose(1, 2).reshape(2, 10, 16)
    assert torch.allclose(relative - paper, 0.8 * (z_empty @ layer.to_out[0].weight.T), atol=1e-5)


def test_a_model_calibrated_for_the_relative_form_samples_with_it(tiny_sd):
    """zoo.json's ``sampler.nasa_mode`` travels with its strength; an explicit ``nasa_mode`` wins; a wrong one is one
    line naming the choices."""
    from zoo.errors import InputError
    from zoo.t2i import DDIMSampler

    calibrated = DDIMSampler.from_model(tiny_sd, nasa_alpha=1.0, nasa_mode="relative")
    common = dict(negative_prompt="blue", steps=1, guidance_scale=0.0, seed=3, output_type="pt")
    default = calibrated("a red circle", **common)
    relative = calibrated("a red circle", nasa_mode="relative", **common)
    paper = calibrated("a red circle", nasa_mode="paper", **common)
    assert default.metadata["nasa_mode"] == "relative" and torch.equal(default.images, relative.images)
    assert not torch.equal(paper.images, relative.images)
    assert DDIMSampler.from_model(tiny_sd)("a red circle", nasa_alpha=1.0, **common).metadata["nasa_mode"] == "paper"
    with pytest.raises(InputError, match="nasa_mode='twice' is not a NASA form; use one of paper, relative"):
        calibrated("a red circle", nasa_mode="twice", **common)
    with pytest.raises(InputError, match="nasa_layers='down' is not a choice of layers; use one of all, up"):
        calibrated("a red circle", nasa_layers="down", **common)
    up = calibrated("a red circle", nasa_layers="up", **common)
    assert up.metadata["nasa_layers"] == "up" and default.metadata["nasa_layers"] == "all"
    assert not torch.equal(up.images, default.images)


@torch.no_grad()
def test_only_cross_attention_is_swapped_and_restored():
    unet = tiny_unet()
    before = dict(unet.attn_processors)
    cross = [n for n in before if n.endswith("attn2.processor")]
    cond, neg = embeddings(2)
    x = torch.randn(2, 4, 8, 8)
    with negative_attention(unet, neg, 0.0) as installed:
        assert sorted(installed) == sorted(cross) and len(cross) > 0
        current = unet.attn_processors
        for name, proc in current.items():
            if name.endswith("attn1.processor"):
                assert proc is before[name]
            else:
                assert isinstance(proc, NASAAttnProcessor)
        at_zero = unet(x, 500, encoder_hidden_states=cond).sample
    assert all(unet.attn_processors[n] is before[n] for n in before)
    plain = unet(x, 500, encoder_hidden_states=cond).sample
    assert torch.allclose(at_zero, plain, atol=1e-5)
    with negative_attention(unet, neg, 0.7):
        steered = unet(x, 500, encoder_hidden_states=cond).sample
    assert not torch.allclose(steered, plain, atol=1e-3)


@torch.no_grad()
def test_nasa_in_the_up_blocks_only_leaves_the_down_and_middle_blocks_plain():
    unet = tiny_unet()
    before = dict(unet.attn_processors)
    up = sorted(n for n in before if n.endswith("attn2.processor") and n.startswith("up_blocks."))
    assert 0 < len(up) < len([n for n in before if n.endswith("attn2.processor")])
    cond, neg = embeddings(2)
    with negative_attention(unet, neg, 0.7, layers="up") as installed:
        assert sorted(installed) == up
        assert all(unet.attn_processors[n] is before[n] for n in before if n not in up)
    assert all(unet.attn_processors[n] is before[n] for n in before)


def test_nasa_keeps_the_chosen_kernel(monkeypatch):
    import zoo.attention as attention_module

    unet = tiny_unet()
    set_attention_backend(unet, "sdpa")
    for proc in unet.attn_processors.values():
        proc.backend = "xformers"  # pretend the model was set up with xformers (no CUDA kernels here)
    seen = []

    def fake_attention(q, k, v, backend="sdpa", attn_mask=None):
        seen.append(backend)
        import torch.nn.functional as F

        return F.scaled_dot_product_attention(q, k, v)

    monkeypatch.setattr(attention_module, "attention", fake_attention)
    cond, neg = embeddings(1)
    with negative_attention(unet, neg, 0.5) as installed:
        assert all(p.backend == "xformers" for p in installed.values())
        with torch.no_grad():
            unet(torch.randn(1, 4, 8, 8), 10, encoder_hidden_states=cond)
    assert seen and set(seen) == {"xformers"}


def test_snoopi_sampler_nasa_costs_one_unet_call(tiny_sd):
    from zoo_plugins.snoopi.sampler import build_sampler

    sampler = build_sampler(str(tiny_sd))
    counter = CallCounter(sampler.components.unet)
    plain = sampler("a circle", seed=1, output_type="pt")
    steered = sampler("a circle", negative_prompt="red", nasa_alpha=0.8, seed=1, output_type="pt")
    counter.close()
    assert plain.nfe == 1 and steered.nfe == 1 and counter.calls == 2  # one UNet call each
    assert not torch.allclose(plain.latents, steered.latents)
    assert steered.metadata["nasa_alpha"] == 0.8
    # default strength comes from the settings when a negative prompt is given
    default = sampler("a circle", negative_prompt="red", seed=1, output_type="pt")
    assert default.metadata["nasa_alpha"] == sampler.default_nasa_alpha


def test_nasa_works_on_any_sampler_and_warns_without_negative_prompt(tiny_sd):
    from zoo.t2i import DDIMSampler

    sampler = DDIMSampler.from_model(str(tiny_sd))
    base = sampler("a circle", steps=2, guidance_scale=0.0, seed=2, output_type="pt")
    with pytest.warns(UserWarning, match="without a negative_prompt"):
        noop = sampler("a circle", steps=2, guidance_scale=0.0, seed=2, nasa_alpha=0.5, output_type="pt")
    assert torch.equal(base.latents, noop.latents)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        steered = sampler("a circle", negative_prompt="red", steps=2, guidance_scale=0.0, seed=2, nasa_alpha=0.5,
                          output_type="pt")
    assert steered.nfe == 2 and not torch.allclose(base.latents, steered.latents)


# -- PG-SB / NASA-T trainer ---------------------------------------------------------------------------------------

def _config(tiny_sd, tmp_path, **extra):
    from zoo.config import load_config
    from zoo_plugins.snoopi.config import SnoopiConfig

    overrides = [f"teacher={tiny_sd}", "train.steps=2", "train.batch_size=4", "train.checkpoint_every=0",
                 "train.tensorboard=false", "lora_rank=4", "lora_alpha=4", f"train.output_dir={tmp_path / 'run'}"]
    return load_config(SnoopiConfig, overrides=overrides + [f"{k}={v}" for k, v in extra.items()])


def test_kappa_is_per_sample_in_range_and_shared_by_both_teachers(tiny_sd, tmp_path):
    from zoo_plugins.snoopi.trainer import SnoopiTrainer, sample_kappa

    torch.manual_seed(0)
    draws = sample_kappa(20_000, 0.5, 4.0)
    assert draws.min() >= 0.5 and draws.max() <= 4.0 and draws.std() > 0.9
    trainer = SnoopiTrainer(_config(tiny_sd, tmp_path))
    trainer.build()
    seen = {}
    real_teacher, real_fake = trainer.scores.teacher_eps, trainer.scores.fake_eps
    trainer.scores.teacher_eps = lambda *a: seen.setdefault("teacher", a[4]) is not None and real_teacher(*a)
    trainer.scores.fake_eps = lambda *a, **k: seen.setdefault("fake", a[4]) is not None and real_fake(*a, **k)
    out = trainer.loss("student", 0, {"prompts": ["a red circle"] * 4})
    assert seen["teacher"] is seen["fake"] and seen["teacher"].shape == (4,)
    assert len(set(seen["teacher"].tolist())) == 4
    assert torch.isfinite(out["loss"])


def _build_with_seeded_lora(trainer) -> None:
    """Build ``trainer`` with the same non-zero LoRA teacher every time (so the VSD gradient is not trivially zero),
    then seed the RNG the student loss draws from."""
    torch.manual_seed(0)
    trainer.build()
    with torch.no_grad():
        g = torch.Generator().manual_seed(5)
        for p in trainer.scores.fake_parameters():
            p.copy_(0.05 * torch.randn(p.shape, generator=g))
    torch.manual_seed(1)


def test_fixed_kappa_equals_swiftbrush_bit_for_bit(tiny_sd, tmp_path):
    from zoo.config import load_config
    from zoo_plugins.snoopi.trainer import SnoopiTrainer
    from zoo_plugins.swiftbrush.config import SwiftBrushConfig
    from zoo_plugins.swiftbrush.trainer import SwiftBrushTrainer

    losses = []
    for make in ("snoopi", "swiftbrush"):
        if make == "snoopi":
            trainer = SnoopiTrainer(_config(tiny_sd, tmp_path, kappa_min=4.5, kappa_max=4.5))
        else:
            trainer = SwiftBrushTrainer(load_config(SwiftBrushConfig, overrides=[
                f"teacher={tiny_sd}", "lora_rank=4", "lora_alpha=4", "guidance_scale=4.5"]))
        _build_with_seeded_lora(trainer)
        losses.append(trainer.loss("student", 0, {"prompts": ["a red circle", "a blue square"]})["loss"])
    assert losses[0].item() > 0
    assert torch.equal(losses[0], losses[1])


def test_nasa_t_training_runs_with_negative_prompts(tiny_sd, tmp_path):
    from zoo.errors import ConfigError
    from zoo.train import train
    from zoo_plugins.snoopi.trainer import SnoopiTrainer

    with pytest.raises(ConfigError, match="negative prompts"):
        SnoopiTrainer(_config(tiny_sd, tmp_path, nasa_t=True)).build()
    trainer = SnoopiTrainer(_config(tiny_sd, tmp_path, nasa_t=True, negative_prompts="['red','low quality']"))
    trainer.method_name = "snoopi"
    result = train(trainer, output_dir=tmp_path / "run")
    assert result.status == "finished"
    assert trainer.loss_calls == {"student": 2, "lora_teacher": 2}
    import json

    manifest = json.loads((result.export_dir / "zoo.json").read_text())
    assert manifest["method"] == "snoopi" and manifest["sampler"]["nasa_alpha"] == 0.5


def test_pg_sb_with_dmd_regression_and_a_student_init_keeps_its_random_kappa(tiny_sd, tmp_path):
    """The shared one-step options (student_init, init_merge, regression_weight) leave PG-SB's VSD term as it is:
    the loss is the same VSD loss (same kappa draws, same noise) plus the regression term."""
    from zoo_plugins.snoopi.trainer import SnoopiTrainer

    losses = []
    for extra in ({}, {"regression_weight": 0.5, "regression_pairs": 4, "regression_steps": 2,
                       "student_init": str(tiny_sd), "init_merge": 0.5}):
        trainer = SnoopiTrainer(_config(tiny_sd, tmp_path, **extra))
        _build_with_seeded_lora(trainer)
        out = trainer.loss("student", 0, {"prompts": ["a red circle", "a blue square"]})
        losses.append((out, trainer.last_kappa.clone()))
    (plain, kappa_plain), (extended, kappa_extended) = losses
    assert torch.equal(kappa_plain, kappa_extended) and len(set(kappa_plain.tolist())) == 2
    assert "regression" not in plain and extended["regression"].item() > 0
    assert extended["loss"].item() == pytest.approx(plain["loss"].item() + extended["regression"].item(), rel=1e-5)
