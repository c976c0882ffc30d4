"""LoRA-enhanced guidance distillation (methods.md §6, §8 L1-L4) on tiny random SD models."""

import pytest
import torch

from zoo.diffusion.guidance import cfg
from zoo.t2i import SDComponents
from zoo.tiny import build_tiny_sd
from zoo_plugins.lora_distill.distill import SharedBaseStudent
from zoo_plugins.lora_distill.guidance_embedding import GuidanceEmbedding

TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "conv1", "conv2"]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_sd(tmp_path_factory.mktemp("lora_distill_tiny"))


def _student(tiny_dir):
    comps = SDComponents.from_folder(tiny_dir)
    return comps, SharedBaseStudent(comps.unet, 4, 4.0, TARGETS, GuidanceEmbedding.for_unet(comps.unet, 32))


def _batch(seed=0, b=3):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, 4, 8, 8, generator=g), torch.randint(0, 1000, (b,), generator=g),
            torch.randn(b, 77, 32, generator=g), torch.randn(b, 77, 32, generator=g))


def test_init_loss_is_w_minus_one_squared_times_the_guidance_gap(tiny_dir):
    """L1 and L2: at init the student is the conditional teacher, so loss = mean((w-1)^2 (eps_c - eps_u)^2)."""
    comps, student = _student(tiny_dir)
    x, t, c, u = _batch()
    with torch.no_grad():
        with student.teacher_mode():
            eps_c = comps.unet(x, t, encoder_hidden_states=c).sample
            eps_u = comps.unet(x, t, encoder_hidden_states=u).sample
        w = torch.tensor([1.0, 3.0, 7.5])
        loss = student.loss(x, t, c, u, w)
        expected = (((w - 1) ** 2).view(-1, 1, 1, 1) * (eps_c - eps_u) ** 2).mean()
        torch.testing.assert_close(loss, expected, rtol=1e-4, atol=1e-9)
        assert loss > 0
        assert student.loss(x, t, c, u, torch.ones(3)).item() < 1e-10
        torch.testing.assert_close(student.teacher_cfg(x, t, c, u, w), cfg(eps_c, eps_u, w.view(-1, 1, 1, 1)))


def test_one_base_in_memory_and_the_teacher_pass_stays_the_base_after_training(tiny_dir):
    """L3: the training graph holds base + LoRA + w-embedding; training moves only those; teacher mode is the base."""
    from diffusers import UNet2DConditionModel

    comps, student = _student(tiny_dir)
    reference = UNet2DConditionModel.from_pretrained(tiny_dir / "unet").eval()
    base_count = sum(p.numel() for p in reference.parameters())
    lora_count = sum(p.numel() for p in student.lora_parameters())
    emb_count = sum(p.numel() for p in student.guidance_embedding.parameters())
    held = {id(p): p.numel() for p in [*comps.unet.parameters(), *student.guidance_embedding.parameters()]}
    assert sum(held.values()) == base_count + lora_count + emb_count and lora_count > 0
    params = [*student.lora_parameters(), *student.guidance_embedding.parameters()]
    assert all(p.requires_grad for p in params)
    trainable = {id(p) for p in params}
    assert all(not p.requires_grad for p in comps.unet.parameters() if id(p) not in trainable)
    optimizer = torch.optim.Adam(params, lr=1e-2)
    x, t, c, u = _batch(1)
    w = torch.tensor([4.0, 5.0, 6.0])
    losses = []
    for _ in range(20):
        loss = student.loss(x, t, c, u, w)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 3  # L4 in miniature: the student moves towards the CFG output
    with torch.no_grad(), student.teacher_mode():
        torch.testing.assert_close(comps.unet(x, t, encoder_hidden_states=c).sample,
                                   reference(x, t, encoder_hidden_states=c).sample, rtol=0, atol=0)
    with torch.no_grad():  # the guidance input matters once trained
        a = student.student_eps(x, t, c, 2.0)
        b = student.student_eps(x, t, c, 7.0)
    assert (a - b).abs().max() > 1e-5


def test_trainer_exports_a_model_whose_sampler_uses_one_call_per_step(tiny_dir, tmp_path):
    from zoo.config import load_config
    from zoo.train.runtime import train
    from zoo_plugins.lora_distill.config import LoRADistillConfig
    from zoo_plugins.lora_distill.sampler import build_sampler

    config = load_config(LoRADistillConfig, overrides=[
        f"teacher={tiny_dir}", "lora_rank=4", "lora_alpha=4", "guidance_features=32", "train.steps=3",
        "train.batch_size=2", "train.checkpoint_every=0", "train.tensorboard=false", "sample_steps=4",
        "optim.student.lr=1e-2"])
    result = train("lora_distill", config, output_dir=tmp_path / "run", progress=False)
    assert result.status == "finished" and result.export_dir is not None
    fused = build_sampler(str(result.export_dir))
    live = build_sampler(str(result.export_dir), fuse=False)
    a = fused("a red circle", seed=1, output_type="pt")
    b = live("a red circle", seed=1, output_type="pt")
    assert a.nfe == 4 and a.metadata["guidance_scale"] == 5.0 and a.metadata["method"] == "lora_distill"
    torch.testing.assert_close(a.latents, b.latents, rtol=1e-3, atol=1e-3)
