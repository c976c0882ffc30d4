"""Hyper-SD: presets, TSCD segment maths (methods.md §3(h) H1-H6), samplers, and the olah end-to-end run."""

import json

import pytest
import torch

from fixtures_hub import hub_server, olah_server  # noqa: F401  (pytest fixtures)
from fixtures_hyper_sd import kohya_lora_for
from zoo.diffusion.schedule import CLEAN, ddim_jump, sd_alphas_cumprod, trailing_timesteps
from zoo.errors import InputError, WeightsError
from zoo.spec import ResolvedModel
from zoo.t2i import SDComponents
from zoo.tiny import build_tiny_sd
from zoo_plugins.hyper_sd import presets
from zoo_plugins.hyper_sd.sampler import HyperSDSampler, build_sampler
from zoo_plugins.hyper_sd.tscd import (conflicting_images, consistency_function, previous_timestep, segment_boundaries,
                                       segment_edges, segment_grid, segment_lower_edge, teacher_grid, tscd_loss,
                                       tscd_targets)

ABAR = sd_alphas_cumprod()


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_sd(tmp_path_factory.mktemp("hyper_sd_tiny"))


# -- presets ---------------------------------------------------------------------------------------------------------
def test_every_published_file_is_a_preset_with_the_card_settings():
    files = {r.file for r in presets.RECIPES}
    for label in ("SD15", "SDXL"):
        for name in ("1step", "2steps", "4steps", "8steps", "8steps-CFG", "12steps-CFG"):
            assert f"Hyper-{label}-{name}-lora.safetensors" in files
    for n in (4, 8, 16):
        assert f"Hyper-SD3-{n}steps-CFG-lora.safetensors" in files
    assert {"Hyper-FLUX.1-dev-8steps-lora.safetensors", "Hyper-FLUX.1-dev-16steps-lora.safetensors",
            "Hyper-SDXL-1step-Unet.safetensors"} <= files
    r = presets.recipe
    assert r("sd15-4step").scheduler == "ddim_trailing" and r("sd15-4step").guidance_scale == 0
    assert r("sdxl-1step").scheduler == "tcd" and r("sdxl-1step").eta == 1.0 and r("sdxl-1step").max_steps == 8
    assert r("sdxl-1step-unet").scheduler == "lcm" and r("sdxl-1step-unet").timesteps == (800,)
    assert r("sd15-8step-cfg").guidance_range == (5.0, 8.0) and r("sd15-8step-cfg").negative_prompt
    assert r("sd3-8step-cfg").lora_scale == 0.125 and r("flux-16step").lora_scale == 0.125
    assert r("sd3-8step-cfg").min_steps == 6 and r("sd3-16step-cfg").min_steps == 12
    assert r("sd15-1step").base_model == presets.SD15_BASE and r("sdxl-4step").base_model == presets.SDXL_BASE


def test_registered_spec_lists_presets_without_importing_torch():
    import subprocess
    import sys

    code = ("import sys; from zoo.registry import get_method; s = get_method('hyper-sd'); "
            "print(len(s.presets), s.preset('sd15-1step').settings['scheduler'], 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == [str(len(presets.RECIPES)), "tcd", "False"]


def test_unknown_preset_is_one_line():
    from zoo.registry import get_method

    with pytest.raises(InputError, match="Unknown preset 'sd15-3step'.*valid presets: sd15-1step"):
        get_method("hyper_sd").preset("sd15-3step")
    with pytest.raises(InputError, match="Unknown Hyper-SD preset"):
        presets.recipe("nope")


# -- TSCD maths (H1-H4) ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [8, 4, 2, 1])
def test_segment_lower_edge_maps_each_segment_to_its_lower_edge(k):
    edges = segment_edges(k)
    assert edges[0] == 0 and edges[-1] == 1000 and len(edges) == k + 1
    if k == 8:
        assert all(e % 125 == 0 for e in edges)
    t = torch.arange(1000)
    lower = segment_lower_edge(t, k)
    for m in range(1, k + 1):
        inside = (t + 1 > edges[m - 1]) & (t + 1 <= edges[m])
        assert torch.all(lower[inside] == edges[m - 1] - 1)
    assert torch.all(lower < t) and torch.all(lower >= -1)
    if k == 1:
        assert torch.all(lower == CLEAN)


@pytest.mark.parametrize("n", [1, 2, 4, 8])
def test_trailing_timesteps_are_the_segment_edges(n):
    from diffusers import DDIMScheduler

    boundaries = segment_boundaries(n)
    scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                              timestep_spacing="trailing")
    scheduler.set_timesteps(n)
    assert scheduler.timesteps.tolist() == trailing_timesteps(n) == boundaries[1:][::-1]
    # each sampling step jumps from one segment edge to the next lower one
    for t in scheduler.timesteps.tolist():
        assert segment_lower_edge(t, n).item() == boundaries[boundaries.index(t) - 1]


@pytest.mark.parametrize("k,n", [(8, 50), (4, 50), (4, 25), (2, 50), (1, 50)])
def test_segment_grid_holds_every_sampling_timestep_and_steps_by_the_skip_inside_segments(k, n):
    grid = segment_grid(k, n).tolist()
    tops = segment_boundaries(k)[1:]
    assert set(trailing_timesteps(k)) == set(tops) <= set(grid)  # the k-step sampler's timesteps are trained on
    assert grid == sorted(set(grid)) and grid[0] >= 0 and grid[-1] == 999
    skip = 1000 // n
    for t in grid:  # one teacher step back lands on the grid or on the segment's lower edge
        back = previous_timestep(torch.tensor([t]), k, skip).item()
        assert back in grid or back == segment_lower_edge(t, k).item()
        assert t - back <= skip
    per_segment = [sum(lower < t <= top for t in grid) for lower, top in zip(segment_boundaries(k), tops)]
    assert per_segment == [-(-(1000 // k) // skip)] * k  # ceil(segment length / skip) points in every segment


def test_segment_grid_differs_from_the_lcm_grid_only_where_the_skip_does_not_divide_the_segments():
    assert torch.equal(segment_grid(1, 50), teacher_grid(50))
    assert torch.equal(segment_grid(2, 50), teacher_grid(50))  # 500 = 25 x 20
    assert 749 not in teacher_grid(50).tolist() and 749 in segment_grid(4, 50).tolist()


def test_conflicting_images_replace_only_high_noise_rows_and_never_a_row_with_itself():
    x0 = torch.arange(6, dtype=torch.float32).view(6, 1, 1, 1).expand(6, 4, 2, 2).clone()
    t = torch.tensor([999, 800, 700, 499, 100, 500])
    torch.manual_seed(0)
    always = conflicting_images(x0, t, 1.0, 500)
    # rows at t >= 500 take the next row's image (cyclically); the others keep their own
    assert always[:, 0, 0, 0].tolist() == [1.0, 2.0, 3.0, 3.0, 4.0, 0.0]
    assert torch.equal(conflicting_images(x0, t, 0.0, 500), x0)
    assert torch.equal(conflicting_images(x0[:1], t[:1], 1.0, 500), x0[:1])
    torch.manual_seed(0)
    many = torch.zeros(4000, 1, 1, 1)
    many[:, 0, 0, 0] = torch.arange(4000, dtype=torch.float32)
    half = conflicting_images(many, torch.full((4000,), 999), 0.3, 500)
    swapped = (half != many).flatten()
    assert 0.27 < swapped.float().mean().item() < 0.33  # the probability is per row
    assert torch.equal(half[swapped], many.roll(-1, dims=0)[swapped])
    pure = conflicting_images(x0, t, 1.0, 500, source="noise")
    assert pure[:, 0, 0, 0].tolist() == [0.0, 0.0, 0.0, 3.0, 4.0, 0.0]
    assert torch.equal(conflicting_images(x0[:1], t[:1], 1.0, 500, source="noise"), torch.zeros_like(x0[:1]))
    with pytest.raises(ValueError, match="use 'other' or 'noise'"):
        conflicting_images(x0, t, 1.0, 500, source="blank")


def test_ddim_jump_identity_and_composition_across_segment_edges():
    g = torch.Generator().manual_seed(0)
    x, eps = torch.randn(3, 4, 8, 8, generator=g), torch.randn(3, 4, 8, 8, generator=g)
    torch.testing.assert_close(ddim_jump(x, eps, 874, 874, ABAR), x)
    edges = segment_boundaries(8)[::-1]  # 999, 874, ..., 124, -1
    direct = ddim_jump(x, eps, 999, CLEAN, ABAR)
    hopped = x
    for t, s in zip(edges[:-1], edges[1:]):
        hopped = ddim_jump(hopped, eps, t, s, ABAR)
    torch.testing.assert_close(hopped, direct, rtol=1e-4, atol=1e-4)


def test_consistency_loss_is_zero_when_student_target_and_teacher_agree():
    """H3: student == EMA target == teacher (w = 1) and t' on the lower edge: both sides are the teacher's jump."""
    g = torch.Generator().manual_seed(1)
    x_t = torch.randn(4, 4, 8, 8, generator=g)
    t = torch.tensor([999, 880, 700, 130])
    k = 8
    weights = torch.randn(4, 4, 1, 1, generator=g)

    def net(x, tt, rows=None):  # any deterministic "UNet"
        return torch.tanh(torch.nn.functional.conv2d(x, weights)) + 1e-3 * tt.float().view(-1, 1, 1, 1)

    skip = 1000  # one teacher step reaches the lower edge for every t
    target, lower = tscd_targets(x_t, t, k, skip, net, net, ABAR)
    assert torch.equal(previous_timestep(t, k, skip), lower)
    loss = tscd_loss(net(x_t, t), x_t, t, target, lower, ABAR)
    assert loss.item() < 1e-10
    # a student that differs gives a positive loss
    assert tscd_loss(net(x_t, t) + 0.1, x_t, t, target, lower, ABAR).item() > 1e-4


def test_consistency_target_inside_a_segment_uses_the_target_network():
    g = torch.Generator().manual_seed(2)
    x_t = torch.randn(2, 4, 8, 8, generator=g)
    t = torch.tensor([999, 979])
    teacher = lambda x, tt, rows: torch.zeros_like(x)  # noqa: E731
    target_net = lambda x, tt, rows: torch.ones_like(x)  # noqa: E731
    target, lower = tscd_targets(x_t, t, 2, 20, teacher, target_net, ABAR)
    assert lower.tolist() == [499, 499]
    x_prev = ddim_jump(x_t, torch.zeros_like(x_t), t, t - 20, ABAR)
    torch.testing.assert_close(target, ddim_jump(x_prev, torch.ones_like(x_t), t - 20, lower, ABAR))
    torch.testing.assert_close(consistency_function(x_t, torch.zeros_like(x_t), t, 2, ABAR),
                               ddim_jump(x_t, torch.zeros_like(x_t), t, lower, ABAR))


# -- samplers (H5, H6) -----------------------------------------------------------------------------------------------
def _sampler(tiny_dir, **settings):
    return HyperSDSampler(SDComponents.from_folder(tiny_dir), ResolvedModel(tiny_dir, str(tiny_dir)), **settings)


@pytest.mark.parametrize("n", [1, 2, 4, 8])
def test_tcd_with_eta_zero_equals_ddim_on_the_trailing_grid(tiny_dir, n):
    ddim = _sampler(tiny_dir, scheduler="ddim_trailing")
    tcd = _sampler(tiny_dir, scheduler="tcd", timesteps=trailing_timesteps(n))
    a = ddim("a red circle", steps=n, seed=5, output_type="pt")
    b = tcd("a red circle", steps=n, seed=5, eta=0.0, output_type="pt")
    assert a.nfe == b.nfe == n
    torch.testing.assert_close(a.latents, b.latents, rtol=1e-5, atol=1e-5)


def test_tcd_one_step_with_eta_one_returns_the_predicted_x0(tiny_dir):
    sampler = _sampler(tiny_dir, scheduler="tcd")
    c = sampler.components
    result = sampler("a blue square", steps=1, seed=7, eta=1.0, output_type="pt")
    latents = c.initial_latents(1, 16, 16, seed=7)
    with torch.no_grad():
        eps = c.unet(latents, 999, encoder_hidden_states=c.encode_prompt(["a blue square"])).sample
    # TCD lands on timestep 0 (ᾱ_0 = 0.99915), i.e. x0_hat re-noised by sigma_0 ≈ 0.03 along eps
    torch.testing.assert_close(result.latents, ddim_jump(latents, eps, 999, 0, c.alphas_cumprod), rtol=1e-5,
                               atol=1e-5)


def test_lcm_at_timestep_800_is_one_unet_call(tiny_dir):
    sampler = _sampler(tiny_dir, scheduler="lcm", timesteps=[800], min_steps=1, max_steps=1)
    seen = []
    handle = sampler.components.unet.register_forward_pre_hook(lambda m, a: seen.append(int(a[1])))
    try:
        result = sampler("a circle", steps=1, seed=0)
    finally:
        handle.remove()
    assert result.nfe == 1 and seen == [800] and result.metadata["timesteps"] == [800]


def test_steps_outside_the_preset_range_is_one_line(tiny_dir):
    sampler = _sampler(tiny_dir, scheduler="ddim_trailing", min_steps=4, max_steps=8)
    sampler.preset = "sd15-4step"
    with pytest.raises(InputError, match=r"steps=2 is out of range for preset 'sd15-4step': use 4\.\.8"):
        sampler("a circle", steps=2)


# -- loading: student folders, LoRA files, the hub -------------------------------------------------------------------
def _write_lora(tiny_dir, path, seed=0):
    from diffusers import UNet2DConditionModel

    from zoo.diffusion.lora_io import save_lora

    unet = UNet2DConditionModel.from_pretrained(tiny_dir / "unet")
    return save_lora(kohya_lora_for(unet, rank=4, alpha=4.0, seed=seed, std=0.05), path)


def test_student_folder_loads_base_plus_lora_and_fused_equals_live(tiny_dir, tmp_path):
    import json

    student = tmp_path / "student"
    _write_lora(tiny_dir, student / "lora.safetensors")
    (student / "zoo.json").write_text(json.dumps({
        "method": "hyper_sd", "task": "text-to-image", "base_model": str(tiny_dir), "lora": "lora.safetensors",
        "sampler": {"scheduler": "tcd", "steps": 2, "eta": 0.5, "min_steps": 1, "max_steps": 8}}))
    fused = build_sampler(str(student))
    live = build_sampler(str(student), fuse=False)
    base = build_sampler(str(tiny_dir), scheduler="tcd", min_steps=1, max_steps=8)
    a = fused("a red circle", seed=3, output_type="pt")
    b = live("a red circle", seed=3, output_type="pt")
    c = base("a red circle", steps=2, seed=3, eta=0.5, output_type="pt")
    assert a.nfe == 2 and a.metadata["eta"] == 0.5 and a.metadata["method"] == "hyper_sd"
    torch.testing.assert_close(a.latents, b.latents, rtol=1e-4, atol=1e-4)
    assert (a.latents - c.latents).abs().max() > 1e-3


def test_lora_for_another_base_model_fails_with_one_line(tiny_dir, tmp_path):
    wide = build_tiny_sd(tmp_path / "wide", cross_attention_dim=48)
    path = _write_lora(wide, tmp_path / "other.safetensors")
    with pytest.raises(WeightsError, match="does not fit this base model") as info:
        build_sampler(str(tiny_dir), lora=str(path))
    assert "\n" not in str(info.value)


def test_end_to_end_preset_through_the_hub(hub_server, tiny_dir, tmp_path):
    """``zoo run hyper-sd --preset sd15-1step``: base model and kohya LoRA served by olah, fused, TCD one step."""
    from click.testing import CliRunner

    from zoo.cli import main
    from zoo.sampling import read_metadata

    lora_file = _write_lora(tiny_dir, tmp_path / "Hyper-SD15-1step-lora.safetensors", seed=9)
    hub_server.add_repo(presets.SD15_BASE, tiny_dir, replace=True)
    hub_server.add_repo(presets.REPO, {"Hyper-SD15-1step-lora.safetensors": lora_file,
                                       "README.md": "tiny look-alike\n"}, replace=True)
    out = tmp_path / "image.png"
    result = CliRunner().invoke(main, ["run", "hyper-sd", "--preset", "sd15-1step", "-p", "a red circle",
                                       "--seed", "4", "-o", str(out)])
    assert result.exit_code == 0, result.output
    meta = read_metadata(out)
    assert meta["nfe"] == 1 and meta["preset"] == "sd15-1step" and meta["scheduler"] == "tcd" and meta["eta"] == 1.0

    sampler = build_sampler(None, preset="sd15-1step")
    ours = sampler("a red circle", seed=4, output_type="pt")
    # the same thing by hand: base + fused LoRA + one TCD step with eta = 1
    from zoo.diffusion.lora_io import fuse_lora, load_lora

    manual = _sampler(tiny_dir, scheduler="tcd")
    fuse_lora(load_lora(lora_file), {"unet": manual.components.unet})
    expected = manual("a red circle", steps=1, seed=4, eta=1.0, output_type="pt")
    torch.testing.assert_close(ours.latents, expected.latents, rtol=1e-5, atol=1e-5)
    plain = _sampler(tiny_dir, scheduler="tcd")("a red circle", steps=1, seed=4, eta=1.0, output_type="pt")
    assert (ours.latents - plain.latents).abs().max() > 1e-3  # the LoRA was applied

    bad = CliRunner().invoke(main, ["run", "hyper-sd", "--preset", "sd15-1step", "--steps", "9", "-p", "x",
                                    "-o", str(tmp_path / "b.png")])
    assert bad.exit_code == 1 and "steps=9 is out of range for preset 'sd15-1step': use 1..8" in bad.output
    assert bad.output.count("\n") == 1


# -- the TSCD trainer on the runtime ---------------------------------------------------------------------------------
def _trainer_config(tiny_dir, *overrides):
    from zoo.config import load_config
    from zoo_plugins.hyper_sd.config import HyperSDConfig

    return load_config(HyperSDConfig, overrides=[
        f"teacher={tiny_dir}", "lora_rank=4", "lora_alpha=4", "train.batch_size=2", "train.checkpoint_every=0",
        "train.tensorboard=false", "fake_score_rank=4", *overrides])


def test_trainer_at_init_has_zero_loss_when_the_teacher_step_reaches_the_edge(tiny_dir):
    """H3 on the real trainer: fresh LoRA (student = target = teacher), w = 1, one teacher step to the edge."""
    from zoo_plugins.hyper_sd.trainer import HyperSDTrainer

    config = _trainer_config(tiny_dir, "num_ddim_steps=1", "guidance_scale=1.0", "uncond_prob=0.0", "huber_c=0.0",
                             "segments=[1]", "train.steps=1")
    trainer = HyperSDTrainer(config)
    trainer.build()
    batch = next(iter(trainer.batches(0)))
    out = trainer.loss("student", 0, batch)
    assert out["loss"].item() < 1e-10 and out["segments"].item() == 1.0
    assert out["loss"].requires_grad  # gradients reach the student LoRA


def test_conflict_states_change_the_training_loss_only_at_or_above_their_timestep(tiny_dir):
    from zoo_plugins.hyper_sd.trainer import HyperSDTrainer

    def first_loss(*overrides):
        trainer = HyperSDTrainer(_trainer_config(tiny_dir, "segments=[2]", "train.steps=1", "uncond_prob=0.0",
                                                 *overrides))
        trainer.build()
        batch = next(iter(trainer.batches(0)))
        torch.manual_seed(3)
        return trainer.loss("student", 0, batch)["loss"].item()

    plain = first_loss()
    assert first_loss("conflict_prob=1.0", "conflict_min_timestep=1000") == plain
    assert first_loss("conflict_prob=1.0", "conflict_min_timestep=0", "conflict_source=noise") != plain
    assert first_loss("conflict_prob=1.0", "conflict_min_timestep=0") != plain


def test_stage_guidance_gives_each_stage_its_own_teacher_scale(tiny_dir):
    from zoo_plugins.hyper_sd.trainer import HyperSDTrainer

    trainer = HyperSDTrainer(_trainer_config(tiny_dir, "segments=[2,1]", "stage_steps=[3,2]", "train.steps=5",
                                             "stage_guidance=[6.0,2.5]", "guidance_scale=4.0"))
    trainer.build()
    assert [trainer._guidance(3, trainer._stage(step)).tolist() for step in (0, 2, 3, 4)] == \
        [[6.0] * 3, [6.0] * 3, [2.5] * 3, [2.5] * 3]
    plain = HyperSDTrainer(_trainer_config(tiny_dir, "segments=[2,1]", "guidance_scale=4.0"))
    plain.build()
    assert plain._guidance(2, 1).tolist() == [4.0, 4.0]


def test_stage_ddim_steps_gives_each_stage_its_own_teacher_grid(tiny_dir):
    from zoo_plugins.hyper_sd.trainer import HyperSDTrainer

    trainer = HyperSDTrainer(_trainer_config(tiny_dir, "segments=[2,1]", "stage_ddim_steps=[25,50]",
                                             "num_ddim_steps=10"))
    trainer.build()
    assert trainer.skips == [40, 20]
    assert trainer.grids[0].tolist() == list(range(39, 1000, 40))
    assert trainer.grids[1].tolist() == list(range(19, 1000, 20))
    plain = HyperSDTrainer(_trainer_config(tiny_dir, "segments=[2,1]", "num_ddim_steps=10"))
    plain.build()
    assert plain.skips == [100, 100]
    anchored = HyperSDTrainer(_trainer_config(tiny_dir, "segments=[4,1]", "stage_ddim_steps=[25,50]",
                                              "grid_at_segment_tops=true"))
    anchored.build()
    assert anchored.grids[0].tolist() == segment_grid(4, 25).tolist() and anchored.skips == [40, 20]
    assert anchored.grids[1].tolist() == teacher_grid(50).tolist()


@pytest.mark.parametrize("overrides,fragment", [
    (["segments=[2,1]", "stage_guidance=[5.0]"], "stage_guidance has 1 entries for 2 segments stages"),
    (["segments=[2,1]", "stage_ddim_steps=[25]"], "stage_ddim_steps has 1 entries for 2 segments stages"),
    (["segments=[2,1]", "stage_guidance=[5.0,4.0]", "guidance_range=[3.0,6.0]"], "keep one"),
    (["conflict_prob=1.5"], "conflict_prob=1.5 is not a probability"),
    (["conflict_source=mixed"], "conflict_source='mixed' is not one of: other, noise"),
])
def test_bad_stage_guidance_is_one_line(tiny_dir, overrides, fragment):
    from zoo.errors import ConfigError
    from zoo_plugins.hyper_sd.trainer import HyperSDTrainer

    with pytest.raises(ConfigError, match=fragment) as info:
        HyperSDTrainer(_trainer_config(tiny_dir, *overrides)).build()
    assert "\n" not in str(info.value)


def test_progressive_training_with_score_distillation_exports_a_hyper_sd_lora(tiny_dir, tmp_path):
    from zoo.diffusion.lora_io import load_lora
    from zoo.train.runtime import train

    config = _trainer_config(tiny_dir, "segments=[2,1]", "stage_steps=[2,2]", "train.steps=4",
                             "score_distill_weight=0.5", "num_ddim_steps=10", "export_steps=2")
    result = train("hyper_sd", config, output_dir=tmp_path / "run", progress=False)
    assert result.status == "finished" and result.export_dir is not None
    lora = load_lora(result.export_dir / "lora.safetensors")
    assert lora.format == "kohya" and lora.ranks == {4}
    sampler = build_sampler(str(result.export_dir))
    image = sampler("a red circle", seed=0, output_type="pt")
    assert image.nfe == 2 and image.metadata["scheduler"] == "tcd" and torch.isfinite(image.latents).all()


def test_earlier_stages_are_exported_as_n_step_models_that_survive_a_resume(tiny_dir, tmp_path):
    """The k = 2 stage's LoRA is exported as ``2step/`` (DDIM trailing, 2 steps, guidance 0); it is the student as it
    stood after that stage (equal to a run stopped there) and is kept across an interruption."""
    from safetensors.torch import load_file

    from zoo.train.runtime import train

    def run(name, steps, resume=False):
        config = _trainer_config(tiny_dir, "segments=[2,1]", "stage_steps=[2,2]", f"train.steps={steps}",
                                 "num_ddim_steps=10", "train.checkpoint_every=1")
        return train("hyper_sd", config, output_dir=tmp_path / name, progress=False, resume=resume)

    full = run("full", 4)
    variant = full.export_dir / "2step"
    manifest = json.loads((full.export_dir / "zoo.json").read_text())
    assert manifest["variants"] == ["2step"]
    stage = json.loads((variant / "zoo.json").read_text())
    assert stage["training"]["steps"] == 2  # the end of its stage, not of the run
    assert stage["sampler"] == {"scheduler": "ddim_trailing", "steps": 2, "guidance_scale": 0.0, "min_steps": 2,
                                "max_steps": 4} and stage["segments"] == [2]
    stopped_after_stage = run("stage0", 2)  # the same run stopped at the end of the k = 2 stage
    expected = load_file(str(stopped_after_stage.export_dir / "lora.safetensors"))
    got = load_file(str(variant / "lora.safetensors"))
    assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected)
    final = load_file(str(full.export_dir / "lora.safetensors"))
    assert any(not torch.equal(final[k], got[k]) for k in got)  # the last stage moved on from it

    run("resumed", 3)
    resumed = run("resumed", 4, resume=True)
    again = load_file(str(resumed.export_dir / "2step" / "lora.safetensors"))
    assert all(torch.equal(again[k], got[k]) for k in got)
    sampler = build_sampler(str(variant))
    image = sampler("a red circle", seed=0, output_type="pt")
    assert image.nfe == 2 and image.metadata["scheduler"] == "ddim_trailing"


@pytest.mark.parametrize("method", ["hyper_sd", "agd", "lora_distill"])
def test_testbed_configs_load_and_round_trip(method, tmp_path):
    from pathlib import Path

    from zoo.config import load_config, save_config
    from zoo.registry import get_method

    config_class = get_method(method).load("config")
    yaml_file = Path(__file__).resolve().parents[1] / "plugins" / method / "testbed.yaml"
    config = load_config(config_class, yaml_file)
    again = load_config(config_class, save_config(config, tmp_path / "c.yaml"))
    assert again == config and config.teacher == "pkg:zoo.testbed/weights/teacher"


@pytest.mark.parametrize("variant, trained", [("4step", [8, 4]), ("8step", [8])])
def test_the_shipped_n_step_loras_were_trained_with_their_config_files(variant, trained):
    """plugins/hyper_sd/testbed/4step and 8step come from testbed_4step.yaml and testbed_8step.yaml (runs of their own),
    the other variants from testbed.yaml."""
    from pathlib import Path

    from zoo.config import load_config
    from zoo_plugins.hyper_sd.config import HyperSDConfig

    folder = Path(__file__).resolve().parents[1] / "plugins" / "hyper_sd"
    recipe = load_config(HyperSDConfig, folder / f"testbed_{variant}.yaml")
    shipped = load_config(HyperSDConfig, folder / "testbed" / variant / "config.yaml")
    recipe.train.output_dir = shipped.train.output_dir = ""
    assert recipe == shipped and recipe != load_config(HyperSDConfig, folder / "testbed.yaml")
    # the stages it was trained through, then a one-step stage that only makes the trainer export the last of them
    assert recipe.segments[:len(trained)] == trained and recipe.stage_steps[len(trained)] == 1
    manifest = json.loads((folder / "testbed" / variant / "zoo.json").read_text())
    assert manifest["segments"] == [trained[-1]] and manifest["training"]["seed"] == recipe.train.seed
    assert manifest["training"]["steps"] == sum(recipe.stage_steps[:len(trained)])


def test_sdxl_presets_through_the_hub_match_diffusers_own_recipe(hub_server, tmp_path):
    """SDXL N-step LoRA (kohya, {"format": "pt"} metadata) and the 1-step UNet (LCM at 800) through the pipeline path,
    checked against the model card's diffusers code on the same files."""
    from diffusers import DDIMScheduler, LCMScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from safetensors.torch import save_file

    from fixtures_hyper_sd import build_tiny_sdxl
    from zoo.diffusion.lora_io import save_lora

    base = build_tiny_sdxl(tmp_path / "sdxl")
    unet = UNet2DConditionModel.from_pretrained(base / "unet")
    lora_file = save_lora(kohya_lora_for(unet, rank=4, alpha=4.0, seed=5, std=0.05),
                          tmp_path / "Hyper-SDXL-4steps-lora.safetensors", metadata={"format": "pt"})
    torch.manual_seed(1)
    fresh = UNet2DConditionModel.from_pretrained(base / "unet")  # kohya_lora_for left PEFT wrappers in `unet`
    one_step = {k: v + 0.01 * torch.randn_like(v) for k, v in fresh.state_dict().items()}
    unet_file = tmp_path / "Hyper-SDXL-1step-Unet.safetensors"
    save_file(one_step, str(unet_file))
    hub_server.add_repo(presets.SDXL_BASE, base, replace=True)
    hub_server.add_repo(presets.REPO, {lora_file.name: lora_file, unet_file.name: unet_file}, replace=True)

    ours = build_sampler(None, preset="sdxl-4step")("a red circle", seed=2, output_type="pt")
    assert ours.nfe == 4 and ours.metadata["scheduler"] == "ddim_trailing"
    pipe = StableDiffusionXLPipeline.from_pretrained(base)
    pipe.load_lora_weights(str(lora_file))
    pipe.fuse_lora()
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config, timestep_spacing="trailing")
    expected = pipe("a red circle", num_inference_steps=4, guidance_scale=0,
                    generator=torch.Generator("cpu").manual_seed(2), output_type="pt").images
    torch.testing.assert_close(ours.images, expected, rtol=1e-4, atol=1e-4)

    one = build_sampler(None, preset="sdxl-1step-unet")("a red circle", seed=2, output_type="pt")
    assert one.nfe == 1 and one.metadata["timesteps"] == [800]
    pipe = StableDiffusionXLPipeline.from_pretrained(base)
    pipe.unet.load_state_dict(one_step)
    pipe.scheduler = LCMScheduler.from_config(pipe.scheduler.config)
    expected = pipe("a red circle", timesteps=[800], guidance_scale=0,
                    generator=torch.Generator("cpu").manual_seed(2), output_type="pt").images
    torch.testing.assert_close(one.images, expected, rtol=1e-4, atol=1e-4)
    with pytest.raises(InputError, match="steps=2 is out of range for preset 'sdxl-1step-unet': use 1..1"):
        build_sampler(None, preset="sdxl-1step-unet")("x", steps=2)


def test_cli_bad_preset_and_bad_lora_are_one_line_errors(tiny_dir, tmp_path):
    from click.testing import CliRunner

    from zoo.cli import main

    unknown = CliRunner().invoke(main, ["run", "hyper-sd", "--preset", "sd15-3step", "-p", "x",
                                        "-o", str(tmp_path / "a.png")])
    assert unknown.exit_code == 1 and unknown.output.startswith("Error: Unknown preset 'sd15-3step'")
    assert unknown.output.count("\n") == 1
    import json

    wide = build_tiny_sd(tmp_path / "wide", cross_attention_dim=48)
    student = tmp_path / "student"
    _write_lora(wide, student / "lora.safetensors")
    (student / "zoo.json").write_text(json.dumps({"method": "hyper_sd", "base_model": str(tiny_dir),
                                                  "lora": "lora.safetensors", "sampler": {"scheduler": "tcd"}}))
    bad = CliRunner().invoke(main, ["run", "--model", str(student), "-p", "x", "-o", str(tmp_path / "b.png")])
    assert bad.exit_code == 1 and "does not fit this base model" in bad.output and bad.output.count("\n") == 1
    ignored = CliRunner().invoke(main, ["run", "--model", str(tiny_dir), "hyper-sd", "--set", "lora=x.safetensors",
                                        "-p", "x", "-o", str(tmp_path / "c.png")])
    assert ignored.exit_code == 1 and "Unknown option 'lora' for hyper_sd" in ignored.output
    assert "a LoRA is chosen when the sampler is built" in ignored.output and ignored.output.count("\n") == 1
    typo = CliRunner().invoke(main, ["run", "--model", str(tiny_dir), "hyper-sd", "--set", "etta=0.3", "-p", "x",
                                     "-o", str(tmp_path / "d.png")])
    assert ("Unknown option 'etta' for hyper_sd: the options it accepts are eta, nasa_alpha, nasa_layers, nasa_mode, "
            "timesteps") in typo.output


def test_the_committed_testbed_student_ships_its_n_step_loras():
    """The default model carries the unified LoRA (TCD) and the 8/4/2-step LoRAs of its stages (DDIM trailing)."""
    from zoo.hub import resolve_model
    from zoo_plugins.hyper_sd.sampler import TESTBED_REF

    model = resolve_model(TESTBED_REF)
    assert model.manifest["variants"] == ["8step", "4step", "2step"]
    for variant in model.manifest["variants"]:
        sampler = build_sampler(str(model.path / variant))
        steps = int(variant.removesuffix("step"))
        image = sampler("a red circle", seed=0, output_type="pt")
        assert image.nfe == steps and image.metadata["scheduler"] == "ddim_trailing"
        with pytest.raises(InputError, match=f"use {steps}..{2 * steps}"):
            sampler("a red circle", steps=steps - 1)
