"""Property tests of zoo.diffusion.schedule (methods.md §8 G1) against diffusers' schedulers."""

import pytest
import torch

from zoo.diffusion import schedule as S

AC = S.sd_alphas_cumprod()


def _batch(seed=0, shape=(3, 4, 8, 8)):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g), torch.randn(shape, generator=g)


def test_sd_schedule_matches_diffusers_and_swiftbrush_constant():
    from diffusers import DDPMScheduler

    ref = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012).alphas_cumprod
    assert torch.allclose(AC.float(), ref, atol=1e-7)
    assert AC[999].item() == pytest.approx(0.00466, abs=5e-5)
    assert AC[999].item() == pytest.approx(0.0047, rel=0.01)  # SwiftBrush's hard-coded alpha_T^2
    assert AC[399].item() == pytest.approx(0.426, abs=1e-3)


@pytest.mark.parametrize("t", [0, 20, 499, 999, [0, 500, 999]])
def test_add_noise_matches_ddpm_scheduler(t):
    from diffusers import DDPMScheduler

    x0, noise = _batch()
    ts = torch.tensor(t if isinstance(t, list) else [t] * 3)
    ref = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012).add_noise(x0, noise, ts)
    assert torch.allclose(S.add_noise(x0, noise, ts, AC), ref, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("t", [0, 250, 999])
def test_x0_eps_v_round_trips(dtype, t):
    x0, eps = (x.to(dtype) for x in _batch(1))
    x_t = S.add_noise(x0, eps, t, AC)
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    scale = 1.0 / S.alpha_sigma(AC, t, x0)[0].flatten()[0].item()  # x0 recovery amplifies rounding by 1/alpha_t
    assert torch.allclose(S.x0_from_eps(x_t, eps, t, AC), x0, atol=tol * scale)
    if t > 0:
        assert torch.allclose(S.eps_from_x0(x_t, x0, t, AC), eps, atol=tol / S.alpha_sigma(AC, t, x0)[1].max().item())
    v = S.v_from_eps_x0(eps, x0, t, AC)
    x0_v, eps_v = S.x0_eps_from_v(x_t, v, t, AC)
    assert torch.allclose(x0_v, x0, atol=tol) and torch.allclose(eps_v, eps, atol=tol)
    for kind, out in [("epsilon", eps), ("v_prediction", v), ("sample", x0)]:
        got_x0, _ = S.x0_eps_from_output(out, x_t, t, AC, kind)
        assert torch.allclose(got_x0, x0, atol=tol * scale)


def test_add_noise_at_clean_is_identity_and_bad_prediction_type():
    x0, noise = _batch(2)
    assert torch.equal(S.add_noise(x0, noise, S.CLEAN, AC), x0)
    with pytest.raises(ValueError, match="prediction_type"):
        S.x0_eps_from_output(x0, x0, 10, AC, "flow")


def test_ddim_jump_identity_composition_and_matches_ddim_scheduler():
    from diffusers import DDIMScheduler

    x_t, eps = _batch(3)
    assert torch.allclose(S.ddim_jump(x_t, eps, 700, 700, AC), x_t, atol=1e-6)
    # With the same eps, jumping t -> s -> r equals jumping t -> r (the DDIM ODE path along a fixed eps).
    two = S.ddim_jump(S.ddim_jump(x_t, eps, 900, 500, AC), eps, 500, 100, AC)
    assert torch.allclose(two, S.ddim_jump(x_t, eps, 900, 100, AC), atol=1e-5)
    # To CLEAN gives x0_hat.
    assert torch.allclose(S.ddim_jump(x_t, eps, 600, S.CLEAN, AC), S.x0_from_eps(x_t, eps, 600, AC))
    # One step of diffusers' DDIM (eta 0, trailing, 4 steps) from 999 lands on 749 with the same formula.
    sched = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
                          set_alpha_to_one=False, timestep_spacing="trailing")
    sched.set_timesteps(4)
    assert sched.timesteps.tolist() == [999, 749, 499, 249]
    ref = sched.step(eps, 999, x_t).prev_sample
    assert torch.allclose(S.ddim_jump(x_t, eps, 999, 749, AC), ref, atol=1e-5)


def test_trailing_timesteps_lists():
    assert S.trailing_timesteps(1) == [999]
    assert S.trailing_timesteps(2) == [999, 499]
    assert S.trailing_timesteps(4) == [999, 749, 499, 249]
    assert S.trailing_timesteps(8) == [999, 874, 749, 624, 499, 374, 249, 124]
    assert S.trailing_timesteps(12) == [999, 916, 832, 749, 666, 582, 499, 416, 332, 249, 166, 82]
    assert S.next_timesteps([999, 499]) == [499, S.CLEAN]
    with pytest.raises(ValueError):
        S.trailing_timesteps(0)


def test_conditional_forward_moments_and_composition():
    # x_s ~ q(x_s | x0) then x_t ~ q(x_t | x_s) has the marginal of q(x_t | x0): mean alpha_t x0, var sigma_t^2.
    g = torch.Generator().manual_seed(4)
    n = 400_000
    x0 = torch.full((n, 1), 0.7, dtype=torch.float64)
    s, t = 300, 800
    x_s = S.add_noise(x0, torch.randn(n, 1, generator=g, dtype=torch.float64), s, AC)
    x_t = S.add_noise_from(x_s, torch.randn(n, 1, generator=g, dtype=torch.float64), s, t, AC)
    alpha_t, sigma_t = (c.item() for c in S.alpha_sigma(AC, t, x0[:1]))
    assert x_t.mean().item() == pytest.approx(alpha_t * 0.7, abs=4e-3)
    assert x_t.var().item() == pytest.approx(sigma_t ** 2, rel=1e-2)
    a, sg = S.conditional_alpha_sigma(AC, s, s, x0[:1])
    assert a.item() == pytest.approx(1.0) and sg.item() == pytest.approx(0.0, abs=1e-7)


def test_uniform_timesteps_range():
    g = torch.Generator().manual_seed(0)
    ts = S.uniform_timesteps(10_000, 20, 981, g)
    assert ts.min().item() >= 20 and ts.max().item() <= 980
    assert ts.min().item() == 20 and ts.max().item() == 980  # both ends are reachable
