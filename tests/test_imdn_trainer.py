"""IMDN trainer: aligned bicubic patches, L1 training that learns, distillation towards a larger teacher, export."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fixtures_imdn import CHECKPOINTS, hr_folder, imdn_data, natural_image
from zoo.config import load_config
from zoo.errors import ConfigError
from zoo.spec import ResolvedModel
from zoo.train import train
from zoo_plugins.imdn.config import IMDNConfig
from zoo_plugins.imdn.data import PatchSource, bicubic_downscale
from zoo_plugins.imdn.sampler import build_sampler
from zoo_plugins.imdn.trainer import IMDNTrainer

TINY = ["model.scale=2", "model.num_features=16", "model.num_blocks=1", "data.patch_size=32",
        "train.batch_size=4", "train.log_every=5", "train.checkpoint_every=0", "train.tensorboard=false"]


def _config(tmp_path, *overrides):
    return load_config(IMDNConfig, overrides=[f"data.hr_dir={hr_folder(tmp_path)}", *TINY, *overrides])


def _held_out(config, seed=1234):
    """A fixed batch the run never sees (its own seed)."""
    source = PatchSource(config.data.hr_dir, int(config.model.scale), int(config.data.patch_size), augment=False)
    return next(source.batches(8, seed))


def _fresh_student(config):
    trainer = IMDNTrainer(config)
    trainer.build()
    return trainer


def test_patches_are_aligned_bicubic_pairs_and_deterministic(tmp_path):
    source = PatchSource(hr_folder(tmp_path), scale=2, patch_size=32, augment=False)
    lr, hr = next(source.batches(3, seed=7))
    assert lr.shape == (3, 3, 16, 16) and hr.shape == (3, 3, 32, 32)
    for index in range(3):
        hr_patch = (hr[index].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        expected = bicubic_downscale(hr_patch, 2)
        got = (lr[index].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        # away from the patch border the LR pixels only depend on HR pixels inside the patch
        np.testing.assert_array_equal(got[3:-3, 3:-3], expected[3:-3, 3:-3])
    again = next(source.batches(3, seed=7))
    other = next(source.batches(3, seed=8))
    assert torch.equal(again[0], lr) and not torch.equal(other[0], lr)
    augmented = PatchSource(source.files[0].parent, scale=2, patch_size=32, augment=True)
    assert next(augmented.batches(2, seed=7))[0].shape == (2, 3, 16, 16)


def test_l1_training_learns(tmp_path):
    config = _config(tmp_path, "train.steps=40", "optim.student.lr=2e-3", "optim.student.milestones=[]")
    lr, hr = _held_out(config)
    with torch.no_grad():
        before = F.l1_loss(_fresh_student(config).student(lr), hr).item()
    trainer = IMDNTrainer(config)
    result = train(trainer, config, output_dir=tmp_path / "run", progress=False)
    assert result.status == "finished" and result.step == 40
    with torch.no_grad():
        after = F.l1_loss(trainer.student(lr), hr).item()
    assert after < 0.5 * before, (before, after)
    # the exported folder runs through the sampler like the official weights
    sampler = build_sampler(ResolvedModel(path=result.export_dir, ref="export"))
    out, meta = sampler.upscale_array(natural_image(12, 10))
    assert out.shape == (24, 20, 3) and meta["weights"] == "student.safetensors"


def test_distillation_moves_the_student_towards_the_teacher(tmp_path):
    imdn_data()
    config = _config(tmp_path, "train.steps=25", "optim.student.lr=2e-3", "optim.student.milestones=[]",
                     f"distill.teacher={CHECKPOINTS / 'IMDN_x2.pth'}", "distill.hr_weight=0")
    lr, _ = _held_out(config)
    fresh = _fresh_student(config)
    with torch.no_grad():
        target = fresh.teacher_output(lr)
        before = F.l1_loss(fresh.student(lr), target).item()
    trainer = IMDNTrainer(config)
    result = train(trainer, config, output_dir=tmp_path / "run", progress=False)
    with torch.no_grad():
        after = F.l1_loss(trainer.student(lr), target).item()
    assert after < 0.5 * before, (before, after)
    assert "student/l1_teacher" in result.metrics and "student/l1_hr" in result.metrics
    assert all(not p.requires_grad for p in trainer.teacher.parameters())


def test_init_from_copies_matching_tensors(tmp_path):
    imdn_data()
    config = _config(tmp_path, "model.num_features=64", "model.num_blocks=6", "model.scale=4",
                     f"model.init_from={CHECKPOINTS / 'IMDN_x2.pth'}", "data.patch_size=32")
    trainer = _fresh_student(config)
    official = torch.load(CHECKPOINTS / "IMDN_x2.pth", map_location="cpu", weights_only=True)
    assert torch.equal(trainer.student.IMDB3.c2.weight, official["module.IMDB3.c2.weight"])
    assert trainer.student.upsampler[0].weight.shape[0] == 48  # x4 upsampler keeps its fresh initialisation


@pytest.mark.parametrize("overrides, message", [
    (['data.hr_dir=""'], "data.hr_dir is empty"),
    (["data.patch_size=33"], "not a multiple of model.scale"),
    (["model.variant=IMDN_AS"], "cannot be trained here"),
    (["distill.hr_weight=0"], "loss would be zero"),
])
def test_config_errors_are_one_line(tmp_path, overrides, message):
    config = _config(tmp_path, *overrides)
    with pytest.raises(ConfigError, match=message) as info:
        IMDNTrainer(config).build()
    assert "\n" not in str(info.value)


def test_teacher_of_another_scale_is_refused(tmp_path):
    imdn_data()
    config = _config(tmp_path, f"distill.teacher={CHECKPOINTS / 'IMDN_x3.pth'}")
    with pytest.raises(ConfigError, match="IMDN x3"):
        IMDNTrainer(config).build()
