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
