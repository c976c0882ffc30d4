"""VSD / DMD loss properties (methods.md §1(h), §5.4, §8 S1, S2, S4, D1, D2, G3)."""

import math

import pytest
import torch

from fixtures_score import embeddings, tiny_unet
from zoo.diffusion import schedule as S
from zoo.diffusion.losses import (alpha_weighted_eps_loss, dmd_gradient, dmd_loss, target_trick_loss, vsd_gradient,
                                  vsd_loss)
from zoo.diffusion.teacher import SharedBaseTeacher

AC = S.sd_alphas_cumprod()


def test_target_trick_gradient_equals_closed_form():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 8, 8, generator=g, requires_grad=True)
    grad = torch.randn(3, 4, 8, 8, generator=g)
    loss = target_trick_loss(x, grad)
    loss.backward()
    assert torch.allclose(x.grad, grad / x.numel(), atol=1e-9)
    assert loss.item() == pytest.approx(0.5 * grad.pow(2).mean().item(), rel=1e-6)


def test_vsd_gradient_identity_with_sigma_squared_weight():
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(2, 4, 8, 8, generator=g, requires_grad=True)
    e_t, e_f = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    t = torch.tensor([20, 900])
    loss, grad = vsd_loss(x0, e_t, e_f, t, AC)
    loss.backward()
    sigma2 = (1 - AC[t]).float().view(2, 1, 1, 1)
    expected = sigma2 * (e_t - e_f)
    assert torch.allclose(grad, expected, atol=1e-6)
    assert torch.allclose(x0.grad, expected / x0.numel(), atol=1e-9)


def test_vsd_gradient_is_nan_safe():
    e = torch.tensor([[float("nan"), 1.0]])
    assert torch.isfinite(vsd_gradient(e, torch.zeros_like(e), 500, AC)).all()


def test_dmd_gradient_normalisation_and_scale_invariance():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 4, 8, 8, generator=g)
    x0_real, x0_fake = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    grad = dmd_gradient(x, x0_real, x0_fake)
    per_sample = grad.abs().mean(dim=(1, 2, 3))
    expected = (x0_fake - x0_real).abs().mean(dim=(1, 2, 3)) / (x - x0_real).abs().mean(dim=(1, 2, 3))
    assert torch.allclose(per_sample, expected, atol=1e-6)
    # Scaling every error about x by c > 0 leaves the normalised gradient unchanged.
    c = 3.7
    grad_scaled = dmd_gradient(x, x + c * (x0_real - x), x + c * (x0_fake - x))
    assert torch.allclose(grad, grad_scaled, atol=1e-5)
    # grad direction: x0_fake - x0_real
    xg = x.clone().requires_grad_(True)
    loss, grad2 = dmd_loss(xg, x0_real, x0_fake)
    loss.backward()
    assert torch.allclose(xg.grad * xg.numel(), grad2, atol=1e-5)


def test_alpha_weighted_eps_loss_value():
    g = torch.Generator().manual_seed(3)
    pred, noise = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    t = torch.tensor([0, 999])
    a2 = AC[t].float().view(2, 1, 1, 1)
    assert alpha_weighted_eps_loss(pred, noise, t, AC).item() == pytest.approx(
        torch.mean((a2.sqrt() * pred - a2.sqrt() * noise) ** 2).item(), rel=1e-5)


# -- shared-base teacher (G3, S1, D1) -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def teacher():
    return SharedBaseTeacher(tiny_unet(), AC, adapters=("fake_score", "phase_2"), rank=4)


def test_fresh_fake_score_equals_teacher_and_base_exists_once(teacher):
    cond, uncond = embeddings(2)
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(5))
    t = torch.tensor([100, 800])
    real = teacher.teacher_output(x, t, cond, uncond, 4.5)
    with torch.no_grad():
        fake = teacher.fake_output(x, t, cond, uncond, 4.5)
        fake2 = teacher.fake_output(x, t, cond, uncond, 4.5, adapter="phase_2")
    assert torch.equal(real, fake) and torch.equal(real, fake2)
    counts = teacher.parameter_counts()
    unet_base = sum(p.numel() for n, p in teacher.unet.named_parameters() if "lora_" not in n)
    assert counts["base"] == unet_base
    assert 0 < counts["lora:fake_score"] < counts["base"] / 5
    assert all(not p.requires_grad for p in teacher.base_parameters())
    # Every fake score stays trainable across teacher/fake switches (PEFT's toggles would freeze inactive ones).
    teacher.teacher_output(x, t, cond)
    for name in teacher.adapters:
        assert all(p.requires_grad for p in teacher.fake_parameters(name))


def test_lora_step_leaves_base_bit_identical_and_changes_fake_only(teacher):
    base_before = {n: p.detach().clone() for n, p in teacher.unet.named_parameters() if "lora_" not in n}
    other_before = [p.detach().clone() for p in teacher.fake_parameters("phase_2")]
    opt = torch.optim.SGD(teacher.fake_parameters("fake_score"), lr=0.5)
    cond, _ = embeddings(2)
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(6))
    for _ in range(2):  # lora_B = 0 at init: the first step only moves B, the second moves both
        opt.zero_grad()
        loss = teacher.fake_output(x, 500, cond).pow(2).mean()
        loss.backward()
        opt.step()
    for n, p in teacher.unet.named_parameters():
        if "lora_" not in n:
            assert torch.equal(p, base_before[n]), n
    assert all(torch.equal(a, b) for a, b in zip(other_before, teacher.fake_parameters("phase_2")))
    real = teacher.teacher_output(x, 500, cond)
    with torch.no_grad():
        fake = teacher.fake_output(x, 500, cond)
        untouched = teacher.fake_output(x, 500, cond, adapter="phase_2")
    assert not torch.allclose(real, fake)
    assert torch.equal(real, untouched)
    teacher.reset_fake("fake_score")
    with torch.no_grad():
        assert torch.equal(teacher.fake_output(x, 500, cond), real)


@pytest.mark.parametrize("w", [1.0, 4.5, torch.tensor([0.5, 3.0])])
def test_zero_vsd_and_dmd_generator_grads_when_fake_equals_teacher(w):
    """S1 / D1: with a fresh LoRA fake score, every student parameter gets exactly zero gradient (any w, per-sample w)."""
    teacher = SharedBaseTeacher(tiny_unet(), AC, rank=4)
    student = tiny_unet(seed=3)
    cond, uncond = embeddings(2)
    z = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(7))
    x0 = S.x0_from_eps(z, student(z, 999, encoder_hidden_states=cond).sample, 999, AC)
    t = torch.tensor([50, 700])
    x_t = S.add_noise(x0.detach(), torch.randn_like(x0), t, AC)
    with torch.no_grad():
        eps_real = teacher.teacher_eps(x_t, t, cond, uncond, w)
        eps_fake = teacher.fake_eps(x_t, t, cond, uncond, w)
    loss_vsd, _ = vsd_loss(x0, eps_real, eps_fake, t, AC)
    x0_real, x0_fake = S.x0_from_eps(x_t, eps_real, t, AC), S.x0_from_eps(x_t, eps_fake, t, AC)
    loss_dmd, _ = dmd_loss(x0, x0_real, x0_fake)
    (loss_vsd + loss_dmd).backward()
    grads = [p.grad for p in student.parameters() if p.grad is not None]
    assert grads and all(torch.count_nonzero(g) == 0 for g in grads)


# -- analytic 1-D toy (S4) ----------------------------------------------------------------------------------------

def _gaussian_eps(x_t, t, mean, std):
    """Exact epsilon prediction of data N(mean, std^2) diffused to timestep t: eps = sigma_t (x_t - a m) / var."""
    alpha, sigma = S.alpha_sigma(AC, t, x_t)
    var = alpha ** 2 * std ** 2 + sigma ** 2
    return sigma * (x_t - alpha * mean) / var


def test_vsd_gaussian_toy_converges_to_teacher():
    """Generator x0 = a + b z, fake score = exact score of its own distribution; VSD drives (a, b) to (mu*, s*)."""
    torch.manual_seed(0)
    mu_star, s_star = 1.5, 0.5
    a = torch.tensor(-1.0, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([a, b], lr=0.03)
    for _ in range(600):
        z = torch.randn(2048, 1, dtype=torch.float64)
        x0 = a + b * z
        t = S.uniform_timesteps(2048, 20, 981)
        x_t = S.add_noise(x0.detach(), torch.randn_like(x0), t, AC)
        eps_teacher = _gaussian_eps(x_t, t, mu_star, s_star)
        eps_fake = _gaussian_eps(x_t, t, a.detach(), b.detach().abs())
        loss, _ = vsd_loss(x0, eps_teacher, eps_fake, t, AC)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert a.item() == pytest.approx(mu_star, abs=0.05)
    assert abs(b.item()) == pytest.approx(s_star, abs=0.05)
    assert not math.isnan(a.item())
