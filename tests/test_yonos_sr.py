"""YONOS-SR (arXiv 2401.17258) on tiny random models: schedule, maths, losses, stages, sampler contract.

Checks follow docs/SR.md §11 (CPU tests for the SR plugins). Every model here is random and tiny (seconds on CPU);
the trained testbed is covered in tests/test_yonos_testbed.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from zoo.errors import ConfigError, InputError
from zoo_plugins.yonos_sr import losses
from zoo_plugins.yonos_sr.model import (YonosSRModel, build_unet, build_vae, degrade, new_scheduler, upsample_lr,
                                        widen_conv_in)

torch.set_num_threads(1)


def tiny_model(seed: int = 0, latent_channels: int = 4) -> YonosSRModel:
    """VAE f=4 (16/16/16 channels) and UNet 16/32 with one cross-attention level; ~100k parameters."""
    torch.manual_seed(seed)
    vae = build_vae((16, 16, 16), latent_channels=latent_channels)
    unet = build_unet(latent_channels, block_out_channels=(16, 32), cross_attention_dim=8, attention_head_dim=8)
    return YonosSRModel(vae, unet, context=torch.randn(1, 1, 8)).eval()


def hr_batch(count: int = 2, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Smooth random HR images in [-1, 1] (low-frequency noise upsampled)."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, 3, size // 4, size // 4, generator=generator)
    return (upsample_lr(coarse, 4).clamp(0, 1) * 2 - 1).contiguous()


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("yonos") / "tiny"
    manifest = {"method": "yonos_sr", "task": "super-resolution", "base_model": None,
                "sampler": {"scale": 4, "steps": 1}}
    tiny_model().save(folder, manifest=manifest)
    return folder


def make_sampler(folder, **kwargs):
    from zoo.hub import resolve_model
    from zoo_plugins.yonos_sr.sampler import build_sampler

    return build_sampler(resolve_model(str(folder)), device="cpu", **kwargs)


# -- schedule (docs/SR.md §10.1) --------------------------------------------------------------------------------------

def test_one_step_leading_schedule_is_a_no_op_and_trailing_is_999():
    leading = new_scheduler({"timestep_spacing": "leading"})
    leading.set_timesteps(1)
    trailing = new_scheduler()
    trailing.set_timesteps(1)
    assert leading.timesteps.tolist() == [0]
    assert trailing.timesteps.tolist() == [999]


@pytest.mark.parametrize("steps,expected", [(2, [999, 499]), (4, [999, 749, 499, 249])])
def test_trailing_timesteps_strictly_decrease(steps, expected):
    scheduler = new_scheduler()
    scheduler.set_timesteps(steps)
    assert scheduler.timesteps.tolist() == expected


def test_zero_terminal_snr_makes_t999_pure_noise():
    scheduler = new_scheduler()
    assert float(scheduler.alphas_cumprod[-1]) == 0.0
    assert torch.all(scheduler.alphas_cumprod[1:] < scheduler.alphas_cumprod[:-1])


def test_one_step_prev_sample_equals_x0_prediction():
    model = tiny_model()
    z_t = torch.randn(2, 4, 8, 8)
    z_l = torch.randn(2, 4, 8, 8)
    scheduler = new_scheduler()
    scheduler.set_timesteps(1)
    t = scheduler.timesteps[0]
    with torch.no_grad():
        v = model(z_t, z_l, t.reshape(1))
        x0 = model.predict_x0(z_t, z_l, t.reshape(1))
    out = scheduler.step(v, t, z_t)
    abar = scheduler.alphas_cumprod[999]
    manual = abar.sqrt() * z_t - (1 - abar).sqrt() * v  # x0 = alpha_t z_t - sigma_t v
    torch.testing.assert_close(out.prev_sample, out.pred_original_sample)
    torch.testing.assert_close(out.pred_original_sample, manual)
    torch.testing.assert_close(x0, manual)
    torch.testing.assert_close(x0, -v)  # zero terminal SNR: alpha_999 = 0, sigma_999 = 1


# -- architecture -----------------------------------------------------------------------------------------------------

def test_zero_initialised_extra_channels_reproduce_the_base_unet():
    torch.manual_seed(0)
    from diffusers import UNet2DConditionModel

    base = UNet2DConditionModel(in_channels=4, out_channels=4, block_out_channels=(16, 32), layers_per_block=1,
                                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=8,
                                attention_head_dim=8, norm_num_groups=8).eval()
    z_t, context = torch.randn(2, 4, 8, 8), torch.randn(2, 1, 8)
    with torch.no_grad():
        expected = base(z_t, 500, encoder_hidden_states=context).sample
        wide = widen_conv_in(base)
        got = wide(torch.cat([z_t, torch.randn(2, 4, 8, 8) * 5], 1), 500, encoder_hidden_states=context).sample
    assert wide.config.in_channels == 8 and wide.conv_in.weight.shape[1] == 8
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_model_rejects_a_unet_without_lr_channels():
    vae = build_vae((16, 16, 16))
    unet = build_unet(4, block_out_channels=(16, 32), cross_attention_dim=8)
    unet.register_to_config(in_channels=4)
    with pytest.raises(InputError, match="widen_conv_in"):
        YonosSRModel(vae, unet)


@pytest.mark.parametrize("scale", [2, 4])
def test_shape_contracts(scale):
    model = tiny_model()
    hr = hr_batch(2, 32)
    lr = degrade(hr, scale)
    assert lr.shape == (2, 3, 32 // scale, 32 // scale)
    with torch.no_grad():
        z_l = model.encode_lr(lr, scale)
        z_h = model.encode(hr)
        x0 = model.predict_x0(torch.randn_like(z_h), z_l, torch.tensor([999, 10]))
        image = model.decode(x0)
    assert z_l.shape == z_h.shape == x0.shape == (2, 4, 8, 8)
    assert image.shape == hr.shape
    assert model.vae_factor == 4 and model.size_multiple == 8


def test_save_load_round_trip_gives_identical_outputs(tmp_path):
    model = tiny_model(seed=3)
    model.save(tmp_path / "m")
    loaded = YonosSRModel.load(tmp_path / "m").eval()
    z_t, z_l = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded.predict_x0(z_t, z_l, torch.tensor([700])),
                                   model.predict_x0(z_t, z_l, torch.tensor([700])))
    assert loaded.scheduler_config["prediction_type"] == "v_prediction"


def test_load_of_a_wrong_folder_is_one_line_error(tmp_path):
    from zoo.errors import FileMissingError

    with pytest.raises(FileMissingError, match="not a YONOS-SR model folder"):
        YonosSRModel.load(tmp_path)


# -- losses -----------------------------------------------------------------------------------------------------------

def test_snr_plus_one_weighted_x0_loss_equals_the_v_loss():
    """(SNR_t + 1) ‖x̂0 − x0‖² = ‖v̂ − v‖² for a v-prediction model (x0 = α z_t − σ v ⇒ Δx0 = −σ Δv, SNR + 1 = 1/σ²)."""
    model = tiny_model()
    abar = model.alphas_cumprod
    z_h, noise = torch.randn(4, 4, 8, 8), torch.randn(4, 4, 8, 8)
    t = torch.tensor([0, 250, 600, 998])
    from zoo.diffusion.schedule import add_noise, alpha_sigma

    z_t = add_noise(z_h, noise, t, abar)
    v_hat = torch.randn_like(z_h)
    alpha, sigma = alpha_sigma(abar, t, z_h)
    x0_hat = alpha * z_t - sigma * v_hat
    v_true = alpha * noise - sigma * z_h
    weight = losses.loss_weight(abar, t, losses.SNR_PLUS_ONE, z_h)
    per_sample_x0 = (weight * (x0_hat - z_h) ** 2).mean(dim=(1, 2, 3))
    per_sample_v = ((v_hat - v_true) ** 2).mean(dim=(1, 2, 3))
    torch.testing.assert_close(per_sample_x0, per_sample_v, rtol=1e-4, atol=1e-5)


def test_truncated_snr_weight_is_max_of_snr_and_one():
    model = tiny_model()
    t = torch.arange(0, 1000, 37)
    like = torch.zeros(len(t), 1)
    weight = losses.loss_weight(model.alphas_cumprod, t, losses.TRUNCATED_SNR, like).flatten()
    abar = model.alphas_cumprod[t].double()
    snr = abar / (1 - abar)
    torch.testing.assert_close(weight.double(), snr.clamp(min=1), rtol=1e-5, atol=1e-6)
    assert float(losses.loss_weight(model.alphas_cumprod, torch.tensor([999]), losses.TRUNCATED_SNR, like[:1])) == 1.0
    with pytest.raises(ValueError, match="Unknown loss weighting"):
        losses.loss_weight(model.alphas_cumprod, t, "nope", like)


def test_lr_pair_comes_from_the_same_hr_at_1_over_n_and_2_over_n():
    hr = hr_batch(3, 32, seed=1)
    student_lr, teacher_lr = losses.lr_pair(hr, 4)
    torch.testing.assert_close(student_lr, degrade(hr, 4))
    torch.testing.assert_close(teacher_lr, degrade(hr, 2))
    # pairing is per image: permuting the HR batch permutes both LR batches the same way
    order = torch.tensor([2, 0, 1])
    permuted_student, permuted_teacher = losses.lr_pair(hr[order], 4)
    torch.testing.assert_close(permuted_student, student_lr[order])
    torch.testing.assert_close(permuted_teacher, teacher_lr[order])
    # the x2 view is consistent with the x4 view: downsampling it again by 2 lands near the x4 LR
    assert (degrade(teacher_lr, 2) - student_lr).abs().mean() < 0.05
    with pytest.raises(ValueError, match="even"):
        losses.lr_pair(hr, 3)


def test_distillation_targets_the_teacher_and_the_teacher_gets_no_gradient():
    student, teacher = tiny_model(seed=1).train(), tiny_model(seed=2)
    teacher.zero_grad(set_to_none=True)
    teacher.requires_grad_(False)
    out = losses.scale_distillation_loss(student, teacher, hr_batch(2), 4, generator=torch.Generator().manual_seed(0))
    out["loss"].backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert student.unet.conv_in.weight.grad is not None and student.unet.conv_in.weight.grad.abs().sum() > 0
    # the regression target is the teacher's x0 on the same z_t, t: recompute it by hand
    generator = torch.Generator().manual_seed(0)
    hr = hr_batch(2)
    with torch.no_grad():
        z_h = student.encode(hr)
        z_t, t, _ = losses.sample_training_inputs(student, z_h, generator)
        target = teacher.predict_x0(z_t, teacher.encode_lr(degrade(hr, 2), 2), t)
        prediction = student.predict_x0(z_t, student.encode_lr(degrade(hr, 4), 4), t)
        weight = losses.loss_weight(student.alphas_cumprod, t, losses.TRUNCATED_SNR, prediction)
    torch.testing.assert_close(out["loss"].detach(), (weight * (prediction - target) ** 2).mean(), rtol=1e-4,
                               atol=1e-6)


def test_distillation_loss_goes_down_when_overfitting_two_images():
    student, teacher = tiny_model(seed=1).train(), tiny_model(seed=2).requires_grad_(False)
    student.vae.requires_grad_(False)
    params = [p for p in student.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=2e-3)
    hr = hr_batch(2, seed=4)

    def evaluate() -> float:
        with torch.no_grad():
            return float(losses.scale_distillation_loss(student, teacher, hr, 4,
                                                        generator=torch.Generator().manual_seed(9))["loss"])

    before = evaluate()
    for step in range(30):
        loss = losses.scale_distillation_loss(student, teacher, hr, 4,
                                              generator=torch.Generator().manual_seed(step % 3))["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert evaluate() < 0.7 * before


def test_decoder_stage_changes_only_the_decoder():
    model = tiny_model(seed=5)
    model.requires_grad_(False)
    trainable = losses.decoder_parameters(model)
    for p in trainable:
        p.requires_grad_(True)
    frozen = {name: p.detach().clone() for name, p in model.named_parameters()}
    decoder_names = {name for name, p in model.named_parameters() if any(p is q for q in trainable)}
    assert decoder_names and all(n.startswith(("vae.decoder.", "vae.post_quant_conv.")) for n in decoder_names)
    optimizer = torch.optim.Adam(trainable, lr=1e-2)
    for _ in range(3):
        out = losses.decoder_loss(model, hr_batch(2), 4)
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
    for name, p in model.named_parameters():
        if name in decoder_names:
            continue
        assert torch.equal(p, frozen[name]), f"{name} changed in the decoder stage"
    assert any(not torch.equal(dict(model.named_parameters())[n], frozen[n]) for n in decoder_names)


# -- sampler ----------------------------------------------------------------------------------------------------------

def test_sampler_upscales_x4_with_one_nfe_by_default(model_folder):
    from PIL import Image

    sampler = make_sampler(model_folder)
    image = Image.fromarray((np.random.default_rng(0).random((16, 16, 3)) * 255).astype("uint8"))
    result = sampler(image)
    assert result.images[0].size == (64, 64)
    assert result.nfe == 1 and result.metadata["nfe"] == 1 and result.metadata["steps"] == 1
    assert result.metadata["scale"] == 4
    assert np.asarray(result.images[0]).shape == (64, 64, 3)


@pytest.mark.parametrize("steps", [2, 4])
def test_sampler_runs_any_number_of_steps_and_counts_nfe(model_folder, steps):
    sampler = make_sampler(model_folder)
    image = (np.random.default_rng(1).random((8, 8, 3))).astype(np.float32)
    calls = []
    result = sampler(image, steps=steps, progress=lambda done, total: calls.append((done, total)))
    assert result.nfe == steps == result.metadata["nfe"]
    assert calls == [(i + 1, steps) for i in range(steps)]


def test_sampler_is_deterministic_per_seed(model_folder):
    sampler = make_sampler(model_folder)
    image = (np.random.default_rng(2).random((8, 8, 3))).astype(np.float32)
    first = np.asarray(sampler(image, seed=3).images[0])
    again = np.asarray(sampler(image, seed=3).images[0])
    other = np.asarray(sampler(image, seed=4).images[0])
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_sampler_handles_sizes_that_are_not_multiples_of_the_latent_grid(model_folder):
    sampler = make_sampler(model_folder)
    image = (np.random.default_rng(3).random((12, 16, 3))).astype(np.float32)
    result = sampler(image, scale=4)
    assert result.images[0].size == (64, 48)


def test_sampler_tiling_matches_shape_and_whole_image_when_one_tile(model_folder):
    sampler = make_sampler(model_folder)
    image = (np.random.default_rng(4).random((16, 24, 3))).astype(np.float32)
    tiled = sampler(image, tile=12)
    assert tiled.images[0].size == (96, 64) and tiled.metadata["tile"] == 12 and tiled.nfe == 1
    whole = np.asarray(sampler(image, tile=0).images[0])
    big_tile = np.asarray(sampler(image, tile=64).images[0])
    assert np.array_equal(whole, big_tile)


def test_tiles_run_in_batches_with_progress_between_and_equal_one_batch(model_folder, monkeypatch):
    """Tiles are denoised TILE_BATCH at a time with a progress call (a front-end's Cancel check) after each batch's
    steps; the noise of all tiles is drawn up front, so the image equals the one-batch result (up to one 8-bit level
    where convolutions round differently for another batch size)."""
    from zoo_plugins.yonos_sr import sampler as yonos

    sampler = make_sampler(model_folder)
    image = (np.random.default_rng(5).random((24, 40, 3))).astype(np.float32)
    calls = []
    batched = sampler(image, tile=12, steps=2, progress=lambda done, total: calls.append((done, total)))
    tiles = len(calls) // 2
    assert tiles == -(-batched.metadata["tiles"] // yonos.TILE_BATCH) >= 2  # several batches
    assert calls == [(k, 2 * tiles) for k in range(1, 2 * tiles + 1)]
    monkeypatch.setattr(yonos, "TILE_BATCH", 1000)
    one_batch = sampler(image, tile=12, steps=2)
    difference = np.abs(np.asarray(batched.images[0], dtype=int) - np.asarray(one_batch.images[0], dtype=int))
    assert difference.max() <= 1 and difference.mean() < 0.01


def test_cancel_inside_a_tiled_upscale_stops_after_the_current_batch(model_folder):
    class Cancelled(Exception):
        pass

    sampler = make_sampler(model_folder)
    image = (np.random.default_rng(6).random((24, 40, 3))).astype(np.float32)
    seen = []

    def cancel(done, total):
        seen.append(done)
        raise Cancelled

    with pytest.raises(Cancelled):
        sampler(image, tile=12, progress=cancel)
    assert seen == [1]


def test_tile_none_means_automatic_tiling_of_large_images(model_folder):
    from zoo_plugins.yonos_sr.sampler import AUTO_TILE

    sampler = make_sampler(model_folder)
    small = sampler(np.zeros((16, 16, 3), dtype=np.float32), tile=None)
    large = sampler(np.zeros((16, AUTO_TILE + 8, 3), dtype=np.float32), tile=None)
    assert small.metadata["tile"] == 0 and large.metadata["tile"] == AUTO_TILE


@pytest.mark.parametrize("kwargs,match", [({"steps": 0}, "steps=0"), ({"scale": 3}, "trained for x4"),
                                          ({"tile": -1}, "tile=-1")])
def test_sampler_bad_input_is_one_line_input_error(model_folder, kwargs, match):
    sampler = make_sampler(model_folder)
    with pytest.raises(InputError, match=match) as info:
        sampler(np.zeros((8, 8, 3), dtype=np.float32), **kwargs)
    assert "\n" not in str(info.value)


def test_sampler_factory_rejects_unknown_options(model_folder):
    with pytest.raises(InputError, match="Unknown YONOS-SR sampler option"):
        make_sampler(model_folder, guidance_scale=3.0)


# -- config and trainer -----------------------------------------------------------------------------------------------

def test_config_yaml_round_trip_and_errors(tmp_path):
    from zoo.config import load_config, save_config
    from zoo_plugins.yonos_sr.config import YonosConfig
    from zoo_plugins.yonos_sr.trainer import check_config

    config = load_config(YonosConfig, overrides=["stage=distill", "scale=4", "teacher=somewhere"])
    path = save_config(config, tmp_path / "c.yaml")
    again = load_config(YonosConfig, file=path)
    assert again == config and again.scale == 4 and again.stage == "distill"
    check_config(config)
    with pytest.raises(ConfigError, match="even scale"):
        check_config(load_config(YonosConfig, overrides=["stage=distill", "scale=3", "teacher=x",
                                                         "data.crop_size=48"]))
    with pytest.raises(ConfigError, match="valid values"):
        check_config(load_config(YonosConfig, overrides=["stage=bogus"]))
    with pytest.raises(ConfigError, match="needs teacher"):
        check_config(load_config(YonosConfig, overrides=["stage=distill", "scale=4"]))


def test_trainer_stages_run_on_the_runtime_and_export_loadable_models(tmp_path, model_folder):
    """regress (x2 teacher) -> distill (x4) -> decoder, 2 steps each on the shared runtime; only the decoder stage
    changes the decoder, and the teacher stays unchanged on disk."""
    from zoo.config import load_config
    from zoo.train import train
    from zoo_plugins.yonos_sr.config import YonosConfig

    common = ["train.steps=2", "train.batch_size=2", "train.log_every=1", "train.tensorboard=false",
              "train.checkpoint_every=2", "data.crop_size=32"]
    teacher = train("yonos_sr", load_config(YonosConfig, overrides=[*common, "stage=regress", "scale=2",
                                                                    f"init_from={model_folder}"]),
                    output_dir=tmp_path / "teacher", progress=False)
    student = train("yonos_sr", load_config(YonosConfig, overrides=[*common, "stage=distill", "scale=4",
                                                                    f"teacher={teacher.export_dir}"]),
                    output_dir=tmp_path / "student", progress=False)
    decoder = train("yonos_sr", load_config(YonosConfig, overrides=[*common, "stage=decoder", "scale=4",
                                                                    f"init_from={student.export_dir}"]),
                    output_dir=tmp_path / "decoder", progress=False)
    for result in (teacher, student, decoder):
        assert result.step == 2 and np.isfinite(result.metrics["model/loss"])
    assert json.loads((student.export_dir / "zoo.json").read_text())["sampler"] == {"scale": 4, "steps": 1}
    t, s, d = (YonosSRModel.load(r.export_dir) for r in (teacher, student, decoder))
    state = {name: dict(m.named_parameters()) for name, m in (("t", t), ("s", s), ("d", d))}
    assert not torch.equal(state["t"]["unet.conv_in.weight"], state["s"]["unet.conv_in.weight"])
    for name, p in state["d"].items():
        same = torch.equal(p, state["s"][name])
        assert same != name.startswith(("vae.decoder.", "vae.post_quant_conv.")), name


def test_folder_data_source_gives_seeded_crops(tmp_path):
    from PIL import Image

    from zoo_plugins.yonos_sr.trainer import _folder_batches

    rng = np.random.default_rng(0)
    for index in range(2):
        Image.fromarray((rng.random((40, 48, 3)) * 255).astype(np.uint8)).save(tmp_path / f"im{index}.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "too_small.png")
    first = next(iter(_folder_batches(tmp_path, 3, 32, seed=5, shard=0, num_shards=1)))
    again = next(iter(_folder_batches(tmp_path, 3, 32, seed=5, shard=0, num_shards=1)))
    other = next(iter(_folder_batches(tmp_path, 3, 32, seed=6, shard=0, num_shards=1)))
    assert first.shape == (3, 3, 32, 32) and 0 <= float(first.min()) and float(first.max()) <= 1
    assert torch.equal(first, again) and not torch.equal(first, other)
    with pytest.raises(ConfigError, match="No image of at least 64x64"):
        next(iter(_folder_batches(tmp_path, 3, 64, seed=5, shard=0, num_shards=1)))


# -- testbed variants (data.texture, VAE shape) -----------------------------------------------------------------------

def test_stripes_texture_is_detail_the_x2_lr_cannot_show():
    """Stripes sit above the x2 LR's Nyquist frequency: bicubic x2 loses far more of a striped scene than of the same
    scene flat, and the flat stream is unchanged by the option (same draws when ``texture="none"``)."""
    from zoo_plugins.yonos_sr import testbed

    flat = testbed.test_crops(16, 32, seed=3)
    assert torch.equal(flat, testbed.test_crops(16, 32, seed=3, texture="none"))
    striped = testbed.test_crops(16, 32, seed=3, texture="stripes")
    assert striped.shape == flat.shape and 0 <= float(striped.min()) and float(striped.max()) <= 1

    def x2_loss(hr):
        return float(((upsample_lr(degrade(hr, 2), 2) - hr) ** 2).mean())

    assert x2_loss(striped) > 3 * x2_loss(flat)
    with pytest.raises(ValueError, match="Unknown testbed texture"):
        testbed.test_crops(2, 32, texture="dots")


def test_vae_shape_comes_from_the_config_and_the_unet_follows_it(tmp_path):
    """``vae_latent_channels`` / ``vae_blocks`` shape the autoencoder stage's VAE; a ``regress`` stage from scratch on
    that VAE builds a UNet with 2 x channels in; exports record the testbed texture and that they are testbed-only."""
    from zoo.config import load_config
    from zoo.train import train
    from zoo_plugins.yonos_sr.config import YonosConfig

    common = ["train.steps=1", "train.batch_size=2", "train.log_every=1", "train.tensorboard=false",
              "train.checkpoint_every=1", "data.texture=stripes", "validation_images=2"]
    vae_run = train("yonos_sr", load_config(YonosConfig, overrides=[*common, "stage=autoencoder",
                                                                    "vae_blocks=[8,16,16]", "vae_latent_channels=6"]),
                    output_dir=tmp_path / "vae", progress=False)
    teacher = train("yonos_sr", load_config(YonosConfig, overrides=[*common, "stage=regress", "scale=2",
                                                                    f"vae_from={vae_run.export_dir}"]),
                    output_dir=tmp_path / "teacher", progress=False)
    model = YonosSRModel.load(teacher.export_dir)
    assert model.vae.config.latent_channels == 6 and tuple(model.vae.config.block_out_channels) == (8, 16, 16)
    assert model.unet.config.in_channels == 12 and model.unet.config.out_channels == 6
    manifest = json.loads((teacher.export_dir / "zoo.json").read_text())
    assert manifest["testbed_texture"] == "stripes" and manifest["testbed_only"] is True  # the sampler's note


def test_bad_texture_or_vae_shape_is_a_config_error():
    from zoo.config import load_config
    from zoo_plugins.yonos_sr.config import YonosConfig
    from zoo_plugins.yonos_sr.trainer import check_config

    with pytest.raises(ConfigError, match="data.texture"):
        check_config(load_config(YonosConfig, overrides=["data.texture=dots"]))
    with pytest.raises(ConfigError, match="vae_blocks"):
        check_config(load_config(YonosConfig, overrides=["vae_blocks=[16]"]))
