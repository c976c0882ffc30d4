"""Phased DMD: subinterval targets (P1-P3), expert routing (P4, P7), TTUR counts (D3), trainer and export."""

import json

import pytest
import torch

from zoo.diffusion import schedule as S
from zoo.tiny import build_tiny_sd
from zoo_plugins.phased_dmd.experts import ExpertRouter, check_boundaries, phase_of, phase_steps
from zoo_plugins.phased_dmd.subinterval import (flow_forward_from, flow_velocity_target, subinterval_eps_target,
                                                subinterval_loss)

AC = S.sd_alphas_cumprod()


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    return build_tiny_sd(tmp_path_factory.mktemp("tiny") / "sd")


def _mixture(n, g):
    """1-D data: a two-component Gaussian mixture (-1.5 / +1, std 0.3)."""
    pick = torch.rand(n, generator=g, dtype=torch.float64) < 0.3
    return torch.where(pick, torch.tensor(-1.5, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64)) + \
        0.3 * torch.randn(n, generator=g, dtype=torch.float64)


def _binned_gap(x_t, estimate, truth, bins=24):
    """Largest gap between binned conditional means E[estimate | x_t] and E[truth | x_t] over well-filled bins."""
    edges = torch.quantile(x_t[:: max(1, len(x_t) // 100_000)], torch.linspace(0.02, 0.98, bins + 1,
                                                                                dtype=torch.float64))
    index = torch.bucketize(x_t, edges)
    gaps = []
    for b in range(1, bins + 1):
        mask = index == b
        if mask.sum() > 5000:
            gaps.append((estimate[mask].mean() - truth[mask].mean()).abs().item())
    return max(gaps)


def test_targets_reduce_to_the_plain_ones_at_the_clean_end():
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    assert torch.allclose(flow_velocity_target(x0, eps, 0.0, 0.6), eps - x0, atol=1e-6)
    assert torch.allclose(subinterval_eps_target(eps, S.CLEAN, 600, AC), eps, atol=1e-6)
    pred = torch.randn(4, 3, generator=g)
    assert subinterval_loss(pred, eps, S.CLEAN, 600, AC).item() == pytest.approx((pred - eps).pow(2).mean().item(),
                                                                                    rel=1e-5)


def test_flow_matching_subinterval_target_is_unbiased_and_the_naive_one_is_not():
    g = torch.Generator().manual_seed(1)
    n = 1_000_000
    s, t = 0.5, 0.8
    x0 = _mixture(n, g)
    x_s = (1 - s) * x0 + s * torch.randn(n, generator=g, dtype=torch.float64)
    eps = torch.randn(n, generator=g, dtype=torch.float64)
    x_t = flow_forward_from(x_s, eps, s, t)
    eps_total = (x_t - (1 - t) * x0) / t  # x_t = (1-t) x0 + t eps_total
    truth = eps_total - x0                # the marginal velocity target
    assert _binned_gap(x_t, flow_velocity_target(x_s, eps, s, t), truth) < 0.02
    assert _binned_gap(x_t, eps - x_s, truth) > 0.1  # negative control: the naive target is biased


def test_ddpm_subinterval_eps_target_is_unbiased_and_the_naive_one_is_not():
    g = torch.Generator().manual_seed(2)
    n = 1_000_000
    s, t = 500, 650
    x0 = _mixture(n, g)
    x_s = S.add_noise(x0, torch.randn(n, generator=g, dtype=torch.float64), s, AC)
    eps = torch.randn(n, generator=g, dtype=torch.float64)
    x_t = S.add_noise_from(x_s, eps, s, t, AC)
    alpha_t, sigma_t = (c.item() for c in S.alpha_sigma(AC, t, x0[:1]))
    truth = (x_t - alpha_t * x0) / sigma_t
    assert _binned_gap(x_t, subinterval_eps_target(eps, s, t, AC), truth) < 0.02
    assert _binned_gap(x_t, eps, truth) > 0.1


def test_phase_routing_rules():
    steps = S.trailing_timesteps(4)
    assert steps == [999, 749, 499, 249]
    assert [phase_of(t, [499]) for t in steps] == [0, 0, 1, 1]
    assert phase_steps(steps, [499]) == [[999, 749], [499, 249]]
    assert phase_steps(steps, [749, 249]) == [[999], [749, 499], [249]]
    for bad in ([500], [999], [249, 499]):
        with pytest.raises(ValueError):
            check_boundaries(steps, bad)


def test_router_calls_each_expert_exactly_in_its_phase(tiny_sd):
    from zoo_plugins.phased_dmd.sampler import PhasedDMDSampler
    from zoo.t2i import SDComponents

    from fixtures_score import tiny_unet

    experts = [tiny_unet(seed=0), tiny_unet(seed=1)]
    seen = {0: [], 1: []}
    for k, e in enumerate(experts):
        e.register_forward_pre_hook(lambda m, a, kw, k=k: seen[k].append(int(torch.as_tensor(a[1]).reshape(-1)[0])),
                                    with_kwargs=True)
    router = ExpertRouter(experts, [499])
    components = SDComponents.from_folder(tiny_sd, unet=router)
    sampler = PhasedDMDSampler(components, None, phase_boundaries=[499])
    result = sampler("a circle", steps=4, output_type="pt")
    assert result.nfe == 4
    assert seen == {0: [999, 749], 1: [499, 249]}
    with pytest.raises(Exception, match="does not fit this model's phases"):
        sampler("a circle", steps=3)


def test_with_teacher_experts_the_sampler_is_the_teachers_ddim(tiny_sd):
    import copy

    from zoo.t2i import DDIMSampler, SDComponents
    from zoo_plugins.phased_dmd.sampler import PhasedDMDSampler

    teacher = DDIMSampler.from_model(str(tiny_sd))
    teacher.components.scheduler_config["set_alpha_to_one"] = True  # DDIM's last step then lands on x0, like ours
    unet = teacher.components.unet
    router = ExpertRouter([copy.deepcopy(unet), copy.deepcopy(unet)], [499])
    moe = PhasedDMDSampler(SDComponents.from_folder(tiny_sd, unet=router), None, phase_boundaries=[499])
    a = moe("a red circle", steps=4, seed=4, output_type="pt").latents
    b = teacher("a red circle", steps=4, guidance_scale=0.0, seed=4, output_type="pt").latents
    assert torch.allclose(a, b, atol=1e-4)


def _config(tiny_sd, tmp_path, **extra):
    from zoo.config import load_config
    from zoo_plugins.phased_dmd.config import PhasedDMDConfig

    overrides = [f"teacher={tiny_sd}", "train.steps=10", "train.batch_size=2", "train.checkpoint_every=0",
                 "train.tensorboard=false", "lora_rank=4", "lora_alpha=4", "optim.generator.every=5",
                 f"train.output_dir={tmp_path / 'run'}"]
    return load_config(PhasedDMDConfig, overrides=overrides + [f"{k}={v}" for k, v in extra.items()])


def test_zero_generator_gradient_at_init_and_only_the_phase_expert_learns(tiny_sd, tmp_path):
    from zoo_plugins.phased_dmd.trainer import PhasedDMDTrainer

    trainer = PhasedDMDTrainer(_config(tiny_sd, tmp_path, guidance_scale=1.0))
    trainer.build()
    torch.manual_seed(0)
    out = trainer.loss("generator", 7, {"prompts": ["a red circle", "a square"]})  # step 7 of 10: phase 1
    out["loss"].backward()
    assert out["phase"].item() == 1
    assert all(p.grad is None for p in trainer.experts[0].parameters())  # earlier expert frozen in phase 1
    grads = [p.grad for p in trainer.experts[1].parameters() if p.grad is not None]
    assert grads and all(torch.count_nonzero(g) == 0 for g in grads)  # fake == teacher, w = 1: zero DM gradient
    fake = trainer.loss("fake_score", 7, {"prompts": ["a red circle", "a square"]})
    fake["loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainer.scores.fake_parameters("fake_1"))
    assert all(p.grad is None for p in trainer.scores.fake_parameters("fake_0"))


def test_ttur_counts_phases_and_export(tiny_sd, tmp_path):
    from zoo.train import train
    from zoo_plugins.phased_dmd.sampler import build_sampler
    from zoo_plugins.phased_dmd.trainer import PhasedDMDTrainer

    trainer = PhasedDMDTrainer(_config(tiny_sd, tmp_path))
    trainer.method_name = "phased_dmd"
    result = train(trainer, output_dir=tmp_path / "run")
    assert result.status == "finished"
    assert trainer.loss_calls == {"generator": 2, "fake_score": 10}  # ratio 5 over 10 steps
    assert [trainer.phase_at(s) for s in range(10)] == [0] * 5 + [1] * 5
    from safetensors import safe_open

    with safe_open(str(result.checkpoint / "models" / "fake_score.safetensors"), "pt") as handle:
        keys = list(handle.keys())
    assert any(".fake_0." in k for k in keys) and any(".fake_1." in k for k in keys)  # every phase's fake score
    manifest = json.loads((result.export_dir / "zoo.json").read_text())
    assert manifest["sampler"]["phase_boundaries"] == [499] and manifest["method"] == "phased_dmd"
    sampler = build_sampler(str(result.export_dir))
    out = sampler("a red circle", output_type="pt")
    assert out.nfe == 4 and torch.isfinite(out.latents).all()
    assert sampler.components.unet.calls == [2, 2]
