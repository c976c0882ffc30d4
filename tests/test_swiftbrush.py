"""SwiftBrush: one-step sampler, student folders, base-model mismatch, public layout via the hub, VSD trainer."""

import json
import shutil

import pytest
import torch

from fixtures_hub import hub_server, olah_server  # noqa: F401
from fixtures_score import CallCounter
from zoo.errors import WeightsError
from zoo.tiny import build_tiny_sd


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    return build_tiny_sd(tmp_path_factory.mktemp("tiny") / "sd")


def _student_folder(tmp_path, base, unet_source=None):
    folder = tmp_path / "student"
    shutil.copytree((unet_source or base) / "unet", folder / "unet")
    (folder / "zoo.json").write_text(json.dumps({"method": "swiftbrush", "task": "text-to-image",
                                                 "base_model": str(base), "sampler": {"steps": 1}}))
    return folder


def test_sampler_is_one_unet_call_and_the_x0_formula(tiny_sd):
    from zoo_plugins.swiftbrush.sampler import build_sampler

    sampler = build_sampler(str(tiny_sd))
    counter = CallCounter(sampler.components.unet)
    result = sampler("a red circle", seed=3, batch_size=2, output_type="pt")
    counter.close()
    assert result.nfe == 1 and counter.calls == 1
    c = sampler.components
    z = c.initial_latents(2, 16, 16, 3)
    cond = c.encode_prompt(["a red circle"] * 2)
    with torch.no_grad():
        eps = c.unet(z, torch.tensor(999), encoder_hidden_states=cond).sample
    abar = c.alphas_cumprod[999].item()
    expected = (z - (1 - abar) ** 0.5 * eps) / abar ** 0.5
    assert torch.allclose(result.latents, expected, atol=1e-5)
    assert result.metadata["method"] == "swiftbrush" and result.metadata["timestep"] == 999
    with pytest.raises(Exception, match="steps=2 is out of range"):
        sampler("a red circle", steps=2)


def test_student_folder_borrows_base_and_rejects_other_bases(tiny_sd, tmp_path):
    from zoo_plugins.swiftbrush.sampler import build_sampler

    folder = _student_folder(tmp_path, tiny_sd)
    sampler = build_sampler(str(folder))
    assert sampler("a circle", output_type="pt").nfe == 1
    other = build_tiny_sd(tmp_path / "other", cross_attention_dim=48)
    bad = tmp_path / "bad"
    shutil.copytree(other / "unet", bad / "unet")
    (bad / "zoo.json").write_text(json.dumps({"method": "swiftbrush", "task": "text-to-image",
                                              "base_model": str(tiny_sd), "sampler": {}}))
    with pytest.raises(WeightsError, match="cross_attention_dim=48 but .* has cross_attention_dim=32") as info:
        build_sampler(str(bad))
    assert "\n" not in str(info.value)


def test_public_full_pipeline_layout_through_the_hub(hub_server, tiny_sd, tmp_path):
    """thuanz123/swiftbrush look-alike: a StableDiffusionPipeline folder (no zoo.json) served by the test hub."""
    from zoo.loading import resolve_method_and_model
    from zoo_plugins.swiftbrush.sampler import build_sampler

    layout = tmp_path / "public"
    shutil.copytree(tiny_sd, layout)
    (layout / "zoo.json").unlink()
    hub_server.add_repo("score-test/swiftbrush", layout)
    spec, resolved = resolve_method_and_model("swiftbrush", "hf-hub:score-test/swiftbrush")
    assert spec.name == "swiftbrush" and resolved.commit
    sampler = build_sampler(resolved)
    result = sampler("a blue square", output_type="pt")
    assert result.nfe == 1 and torch.isfinite(result.latents).all()
    assert result.metadata["commit"] == resolved.commit


def _config(tiny_sd, tmp_path, **extra):
    from zoo.config import load_config
    from zoo_plugins.swiftbrush.config import SwiftBrushConfig

    overrides = [f"teacher={tiny_sd}", "train.steps=3", "train.batch_size=2", "train.checkpoint_every=0",
                 "train.log_every=1", "train.tensorboard=false", "lora_rank=4", "lora_alpha=4",
                 "optim.student.lr=1e-4", f"train.output_dir={tmp_path / 'run'}"]
    overrides += [f"{k}={v}" for k, v in extra.items()]
    return load_config(SwiftBrushConfig, overrides=overrides)


def test_lora_loss_uses_detached_pre_update_x0_and_leaves_student_grads_alone(tiny_sd, tmp_path):
    from zoo_plugins.swiftbrush.trainer import SwiftBrushTrainer

    trainer = SwiftBrushTrainer(_config(tiny_sd, tmp_path))
    trainer.build()
    torch.manual_seed(0)
    batch = {"prompts": ["a red circle", "a blue square"]}
    out = trainer.loss("student", 0, batch)
    out["loss"].backward()
    # Fresh LoRA teacher == teacher: VSD gradient is exactly zero everywhere (S1 on the real trainer).
    assert all(torch.count_nonzero(p.grad) == 0 for p in trainer.student.parameters() if p.grad is not None)
    trainer.student.zero_grad(set_to_none=True)
    cached = trainer._cached[1]
    lora = trainer.loss("lora_teacher", 0, batch)
    lora["loss"].backward()
    assert all(p.grad is None for p in trainer.student.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainer.scores.fake_parameters())
    assert not cached.requires_grad


def test_training_runs_exports_and_the_export_samples(tiny_sd, tmp_path):
    from zoo.train import train
    from zoo_plugins.swiftbrush.sampler import build_sampler
    from zoo_plugins.swiftbrush.trainer import SwiftBrushTrainer

    trainer = SwiftBrushTrainer(_config(tiny_sd, tmp_path, **{"optim.student.every": 2}))
    trainer.method_name = "swiftbrush"
    result = train(trainer, output_dir=tmp_path / "run")
    assert result.status == "finished" and result.step == 3
    # student.every=2: student updated at steps 0 and 2, the LoRA teacher at every step (2 LoRA updates per student)
    assert trainer.loss_calls == {"student": 2, "lora_teacher": 3}
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert lines and all(torch.isfinite(torch.tensor(m["lora_teacher/loss"])) for m in lines)
    manifest = json.loads((result.export_dir / "zoo.json").read_text())
    assert manifest["method"] == "swiftbrush" and manifest["base_model"] == str(tiny_sd)
    assert not (result.export_dir / "vae").exists()
    sampler = build_sampler(str(result.export_dir))
    assert sampler.components.unet.dtype == torch.float32
    out = sampler("a red circle", output_type="pt")
    assert out.nfe == 1 and torch.isfinite(out.latents).all()


def test_bench_sampling_script_reports_ratios(tiny_sd, tmp_path, load_script):
    module = load_script("bench_sampling")
    out = tmp_path / "figures.json"
    assert module.main(["--model", str(tiny_sd), "--batch", "4", "--repeats", "1", "--warmup", "1", "--threads", "1",
                        "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert figures["nfe"] == 1 and set(figures["seconds_per_image"]) == {"zoo", "diffusers", "bare"}
    assert figures["ratio_zoo_to_bare"] > 0 and figures["ratio_zoo_to_diffusers"] > 0


def test_cli_reports_a_student_for_another_base_in_one_line(tiny_sd, tmp_path):
    from click.testing import CliRunner

    from zoo.cli import main

    other = build_tiny_sd(tmp_path / "other", cross_attention_dim=48)
    bad = tmp_path / "bad"
    shutil.copytree(other / "unet", bad / "unet")
    (bad / "zoo.json").write_text(json.dumps({"method": "swiftbrush", "task": "text-to-image",
                                              "base_model": str(tiny_sd), "sampler": {}}))
    result = CliRunner().invoke(main, ["run", "swiftbrush", "-p", "a circle", "--model", str(bad), "--device", "cpu",
                                       "-o", str(tmp_path / "x.png")])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[-1].startswith("Error: ") and "cross_attention_dim=48" in lines[-1]
    assert "Traceback" not in result.output


def _perturbed_student(tmp_path, base, seed=1):
    """A student folder whose UNet is the base's plus seeded noise (stands in for another few-step model)."""
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(str(base / "unet"))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=generator))
    folder = tmp_path / "init"
    unet.save_pretrained(str(folder / "unet"))
    (folder / "zoo.json").write_text(json.dumps({"method": "swiftbrush", "task": "text-to-image",
                                                 "base_model": str(base), "sampler": {"steps": 1}}))
    return folder, {k: v.clone() for k, v in unet.state_dict().items()}


def test_student_init_starts_from_another_model_and_the_teacher_stays_the_teacher(tiny_sd, tmp_path):
    from diffusers import UNet2DConditionModel
    from zoo.errors import ConfigError
    from zoo_plugins.swiftbrush.trainer import SwiftBrushTrainer

    folder, init = _perturbed_student(tmp_path, tiny_sd)
    default = SwiftBrushTrainer(_config(tiny_sd, tmp_path))
    default.build()
    trainer = SwiftBrushTrainer(_config(tiny_sd, tmp_path, student_init=str(folder)))
    trainer.build()
    teacher = UNet2DConditionModel.from_pretrained(str(tiny_sd / "unet")).state_dict()
    for name, value in trainer.student.state_dict().items():
        assert torch.equal(value, init[name])                                # the student starts at the init ...
        assert torch.equal(default.student.state_dict()[name], teacher[name])  # ... the default at the teacher
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    cond = default.encoder(["a red circle", "a circle"])
    t = torch.tensor([500, 900])
    with torch.no_grad():  # the teacher (and the fresh LoRA teacher) is the teacher, whatever the student's start
        assert torch.equal(trainer.scores.teacher_eps(x, t, cond), default.scores.teacher_eps(x, t, cond))
        assert torch.equal(trainer.scores.fake_eps(x, t, cond), default.scores.teacher_eps(x, t, cond))
    other = build_tiny_sd(tmp_path / "other", cross_attention_dim=48)
    bad = tmp_path / "bad"
    shutil.copytree(other / "unet", bad / "unet")
    (bad / "zoo.json").write_text(json.dumps({"method": "swiftbrush", "task": "text-to-image",
                                              "base_model": str(other), "sampler": {}}))
    with pytest.raises(ConfigError, match="teacher's layout"):
        SwiftBrushTrainer(_config(tiny_sd, tmp_path, student_init=str(bad))).build()
    with pytest.raises(ConfigError, match="init_merge=1.5"):
        SwiftBrushTrainer(_config(tiny_sd, tmp_path, init_merge=1.5)).build()


def test_init_merge_exports_the_weighted_average_with_the_init(tiny_sd, tmp_path):
    from diffusers import UNet2DConditionModel
    from zoo.train import train
    from zoo_plugins.swiftbrush.trainer import SwiftBrushTrainer

    folder, init = _perturbed_student(tmp_path, tiny_sd)
    trainer = SwiftBrushTrainer(_config(tiny_sd, tmp_path, student_init=str(folder), init_merge=0.25,
                                        **{"optim.student.lr": 1e-2}))
    trainer.method_name = "swiftbrush"
    result = train(trainer, output_dir=tmp_path / "run")
    trained = {k: v.detach().clone() for k, v in trainer.student.state_dict().items()}
    exported = UNet2DConditionModel.from_pretrained(str(result.export_dir / "unet")).state_dict()
    moved = max((trained[k] - init[k]).abs().max().item() for k in init)
    assert moved > 1e-3  # training moved the student, so the merge is not trivially the init
    for name in init:
        expected = (0.25 * trained[name] + 0.75 * init[name]).half().float()
        assert torch.allclose(exported[name].float(), expected, atol=1e-3), name
    # the merge is applied only around validation/export: the training weights are back in place
    assert all(torch.equal(trainer.student.state_dict()[k], trained[k]) for k in trained)


def test_regression_pairs_are_the_teachers_ddim_solve_and_the_loss_adds_dmds_regression(tiny_sd, tmp_path):
    from zoo.diffusion import schedule
    from zoo.diffusion.teacher_solve import teacher_ddim_solve
    from zoo_plugins.swiftbrush.trainer import SwiftBrushTrainer

    torch.manual_seed(0)
    plain = SwiftBrushTrainer(_config(tiny_sd, tmp_path))
    plain.build()
    state_plain = torch.get_rng_state()
    assert plain.regression_data is None
    torch.manual_seed(0)
    trainer = SwiftBrushTrainer(_config(tiny_sd, tmp_path, regression_weight=0.5, regression_pairs=6,
                                        regression_steps=3, regression_guidance_scale=2.0, regression_batch_size=4))
    trainer.build()
    assert torch.equal(torch.get_rng_state(), state_plain)  # the pairs have their own noise: training RNG untouched
    data = trainer.regression_data
    assert data["noise"].shape == (6, 4, 8, 8) and data["x0"].shape == (6, 4, 8, 8)
    unet = trainer.components.unet
    with torch.no_grad(), trainer.scores.teacher_mode():
        expected = teacher_ddim_solve(lambda x, t, c: unet(x, t, encoder_hidden_states=c).sample, data["noise"][:2],
                                      999, schedule.CLEAN, data["cond"][:2], trainer.encoder.null(2), 2.0,
                                      trainer.alphas_cumprod, substeps=3)
    assert torch.allclose(data["x0"][:2], expected, atol=1e-5)
    # step 0: the fresh LoRA teacher makes VSD's gradient zero, so the student's gradient is the regression's alone
    torch.manual_seed(1)
    out = trainer.loss("student", 0, {"prompts": ["a red circle", "a blue square"]})
    assert out["loss"].item() == pytest.approx(out["regression"].item(), rel=1e-6) and out["regression"].item() > 0
    out["loss"].backward()
    grads = [p.grad.clone() for p in trainer.student.parameters()]
    trainer.student.zero_grad(set_to_none=True)
    manual = trainer.regression_loss(0)
    generator = torch.Generator().manual_seed(0 * 1_000_003 + 0)
    index = torch.randint(0, 6, (4,), generator=generator)
    with torch.no_grad():
        eps = trainer.student(data["noise"][index], torch.full((4,), 999),
                              encoder_hidden_states=data["cond"][index]).sample
        x0 = schedule.x0_from_eps(data["noise"][index], eps, 999, trainer.alphas_cumprod)
    assert manual.item() == pytest.approx(0.5 * float(((x0 - data["x0"][index]) ** 2).mean()), rel=1e-5)
    manual.backward()
    assert all(torch.allclose(g, p.grad, atol=1e-7) for g, p in zip(grads, trainer.student.parameters()))
