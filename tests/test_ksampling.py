"""The k-diffusion-convention rules of zoo.diffusion.ksampling (what the ComfyUI SAMPLER/SIGMAS nodes run) give the
same latents as ``zoo run`` for every committed few-step testbed student, through a model wrapper that does exactly
what ComfyUI's EPS model wrapper does (input scaled by 1/sqrt(1 + sigma²), timestep = nearest log-sigma, denoised =
x - sigma * eps) and ComfyUI's noise scaling of the start. tests/test_comfy_native.py repeats the check inside real
ComfyUI code."""

from __future__ import annotations

import math

import pytest
import torch

from zoo.diffusion import ksampling
from zoo.loading import load_sampler

PROMPTS = ["a red circle", "a blue square"]


def comfy_eps_model(unet, cond, table):
    """ComfyUI's ``BaseModel.apply_model`` + ``EPS`` for a diffusers UNet (k-diffusion convention)."""

    def model(x, sigma, **extra_args):
        s = float(sigma[0])
        t = ksampling.timestep_of(s, table)
        eps = unet(x / math.sqrt(1 + s * s), torch.tensor(t), encoder_hidden_states=cond).sample
        return x - eps * s

    return model


def native_latents(sampler, schedule, steps, seed, **options):
    c = sampler.components
    table = ksampling.sigma_table(c.alphas_cumprod)
    timesteps = ksampling.schedule_timesteps(schedule, steps)
    sigmas = ksampling.timestep_sigmas(table, timesteps)
    noise = c.initial_latents(len(PROMPTS), c.default_size, c.default_size, seed)  # = ComfyUI's prepare_noise
    s0 = float(sigmas[0])
    at_max = math.isclose(s0, float(table[-1]), rel_tol=1e-5)
    x = noise * (math.sqrt(1 + s0 * s0) if at_max else s0)  # ComfyUI's noise_scaling (max_denoise or not)
    rule = ksampling.SCHEDULES[schedule]
    return ksampling.sample_few_step(comfy_eps_model(c.unet, c.encode_prompt(PROMPTS), table), x, sigmas,
                                     {"seed": seed}, table=table, rule=rule["rule"], final=rule["final"],
                                     jump=rule.get("jump", "next"), unit_start=not at_max, **options)


CASES = [
    ("pkg:zoo_plugins.hyper_sd/testbed/2step", "ddim trailing (Hyper-SD N-step, AGD, LoRA-distill)", 2, {}),
    ("pkg:zoo_plugins.hyper_sd/testbed/8step", "ddim trailing (Hyper-SD N-step, AGD, LoRA-distill)", 8, {}),
    ("pkg:zoo_plugins.hyper_sd/testbed/4step", "ddim trailing (Hyper-SD N-step, AGD, LoRA-distill)", 6, {}),
    ("pkg:zoo_plugins.agd/testbed", "ddim trailing (Hyper-SD N-step, AGD, LoRA-distill)", 7, {}),
    ("pkg:zoo_plugins.hyper_sd/testbed", "tcd (Hyper-SD unified LoRA)", 4, {"gamma": 0.3}),
    ("pkg:zoo_plugins.hyper_sd/testbed", "tcd (Hyper-SD unified LoRA)", 1, {"gamma": 1.0}),
    ("pkg:zoo_plugins.swiftbrush/testbed", "one-step x0 at t=999 (SwiftBrush, SNOOPI)", 1, {}),
    ("pkg:zoo_plugins.snoopi/testbed", "one-step x0 at t=999 (SwiftBrush, SNOOPI)", 1, {}),
    ("pkg:zoo_plugins.phased_dmd/testbed", "re-noise (DMD2, Phased DMD)", 4, {}),
]


@pytest.mark.parametrize("model, schedule, steps, options", CASES, ids=[f"{c[0].split('/', 1)[1]}-{c[2]}" for c in CASES])
def test_native_rule_equals_zoo_run(model, schedule, steps, options):
    _, sampler = load_sampler(model=model)
    call = {"eta": options["gamma"]} if "gamma" in options else {}
    expected = sampler(PROMPTS, steps=steps, seed=11, **call).latents
    got = native_latents(sampler, schedule, steps, 11, **options)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_phased_dmd_ddim_and_an_lcm_start_at_800():
    """Deterministic Phased DMD, and a start below the largest sigma (Hyper-SDXL's t = 800 rule, here on the
    phased_dmd experts with the re-noise rule): unit-variance start as in diffusers."""
    _, sampler = load_sampler(model="pkg:zoo_plugins.phased_dmd/testbed")
    expected = sampler(PROMPTS, steps=2, seed=3, stochastic=False).latents
    torch.testing.assert_close(native_latents(sampler, "ddim to x0 (Phased DMD deterministic)", 2, 3), expected, rtol=1e-4, atol=1e-4)
    c = sampler.components
    noise = c.initial_latents(2, c.default_size, c.default_size, 5)
    table = ksampling.sigma_table(c.alphas_cumprod)
    eps = c.unet(noise, torch.tensor(800), encoder_hidden_states=c.encode_prompt(PROMPTS)).sample
    abar = c.alphas_cumprod[800].float()
    expected_x0 = (noise - (1 - abar).sqrt() * eps) / abar.sqrt()
    torch.testing.assert_close(native_latents(sampler, "lcm at t=800 (Hyper-SDXL 1-step UNet)", 1, 5), expected_x0,
                               rtol=1e-4, atol=1e-4)


def test_rules_refuse_bad_settings_and_differ_where_they_should():
    table = ksampling.sigma_table(torch.linspace(0.999, 0.005, 1000, dtype=torch.float64))
    sigmas = ksampling.timestep_sigmas(table, [999, 499])
    with pytest.raises(ValueError, match="gamma"):
        ksampling.sample_few_step(lambda x, s, **extra: x, torch.zeros(1, 4, 2, 2), sigmas, table=table, rule="tcd", gamma=2)
    with pytest.raises(ValueError, match="decreasing"):
        ksampling.timestep_sigmas(table, [499, 999])
    x = torch.randn(1, 4, 2, 2)
    shrink = lambda x, s, **extra: x * 0.5  # noqa: E731 - a stand-in denoiser
    outs = {rule: ksampling.sample_few_step(shrink, x, sigmas, {"seed": 1}, table=table, rule=rule)
            for rule in ksampling.RULES}
    assert not torch.equal(outs["ddim"], outs["renoise"]) and not torch.equal(outs["tcd"], outs["renoise"])
    again = ksampling.sample_few_step(shrink, x, sigmas, {"seed": 1}, table=table, rule="renoise")
    assert torch.equal(again, outs["renoise"])  # fresh noise comes from the seed, not the global RNG
