"""The committed YONOS-SR testbed student (``pkg:zoo_plugins.yonos_sr/testbed``): contract, CLI and quality.

The quality check compares the one-step student with bicubic upsampling, both computed here on held-out testbed
images (plugins/yonos_sr/testbed.py); the full table is scripts/bench_yonos.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from zoo_plugins.yonos_sr import testbed
from zoo_plugins.yonos_sr.sampler import default_model_path

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def student():
    from zoo_plugins.yonos_sr.model import YonosSRModel

    return YonosSRModel.load(default_model_path()).eval()


def test_testbed_folder_is_small_and_describes_itself():
    folder = default_model_path()
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert size < 4_000_000, f"testbed weights are {size / 1e6:.2f} MB"  # the whole project budget is 30 MB
    manifest = json.loads((folder / "zoo.json").read_text())
    assert manifest["method"] == "yonos_sr" and manifest["task"] == "super-resolution"
    assert manifest["sampler"] == {"scale": 4, "steps": 1}


def test_one_step_student_beats_bicubic_on_held_out_images(student):
    from zoo_plugins.yonos_sr.evaluate import bicubic_baseline, mean_scores, super_resolve

    texture = json.loads((default_model_path() / "zoo.json").read_text()).get("testbed_texture", "none")
    hr = testbed.test_crops(32, 32, seed=4321, texture=texture)  # the kind of images the student was trained on
    sr, nfe = super_resolve(student, hr, 4, steps=1)
    psnr, ssim = mean_scores(sr, hr, 4)
    bicubic_psnr, bicubic_ssim = mean_scores(bicubic_baseline(hr, 4), hr, 4)
    assert nfe == 1
    assert psnr > bicubic_psnr + 0.5 and ssim > bicubic_ssim


def test_contract(tmp_path, fresh_registry):
    from zoo.registry import get_method
    from zoo.testing import check_method

    report = check_method(get_method("yonos_sr"), workdir=tmp_path,
                          config_overrides=["stage=autoencoder", "train.batch_size=2"])
    assert report.ok, report.problems
    assert report.sample_nfe == 1


def test_zoo_upscale_cli_writes_a_x4_png_with_nfe(tmp_path, fresh_registry):
    from click.testing import CliRunner
    from PIL import Image

    from zoo.cli import main
    from zoo.sampling import read_metadata

    lr = testbed.render_batch(1, 16, np.random.default_rng(5))[0].permute(1, 2, 0).numpy()
    Image.fromarray((lr * 255).round().astype(np.uint8)).save(tmp_path / "lr.png")
    result = CliRunner().invoke(main, ["upscale", "yonos_sr", str(tmp_path / "lr.png"), "-o", str(tmp_path / "sr.png"),
                                       "--device", "cpu", "--set", "steps=2"])
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "sr.png").size == (64, 64)
    metadata = read_metadata(tmp_path / "sr.png")
    assert metadata["nfe"] == 2 and metadata["steps"] == 2 and metadata["method"] == "yonos_sr"


def test_zoo_upscale_cli_wrong_scale_is_one_error_line(tmp_path, fresh_registry):
    from click.testing import CliRunner
    from PIL import Image

    from zoo.cli import main

    Image.new("RGB", (8, 8), (128, 128, 128)).save(tmp_path / "lr.png")
    result = CliRunner().invoke(main, ["upscale", "yonos_sr", str(tmp_path / "lr.png"), "-o", str(tmp_path / "o.png"),
                                       "--scale", "3", "--device", "cpu"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and "trained for x4" in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize("recipe", ["testbed.yaml", "testbed_stripes.yaml"])
def test_every_stage_of_the_training_recipes_is_a_valid_config(recipe, tmp_path, load_script):
    """scripts/train_yonos_testbed.py runs the stages in file order: each stage's overrides must load, and every
    ``{stage}`` reference must name an earlier stage (its export exists by then)."""
    from pathlib import Path

    from zoo.config import load_config
    from zoo_plugins.yonos_sr.config import STAGES, YonosConfig

    script = load_script("train_yonos_testbed")
    common, stages = script.load_recipe(script.RECIPE.parent / recipe)
    done = []
    for name in stages:
        overrides = script.stage_overrides(name, common, stages, tmp_path)
        config = load_config(YonosConfig, overrides=overrides)
        assert config.stage in STAGES
        for path in (config.init_from, config.teacher, config.vae_from):
            if path.startswith(str(tmp_path)):
                assert Path(path).parent.name in done, f"{name} uses {path} before it is trained"
        done.append(name)
    assert {"teacher_x2", "distill_x4", "direct_x4", "decoder_x4"} <= set(done)


# -- real images (issue #21 §4; docs/SR.md, "YONOS-SR on real images") -------------------------------------------------
def test_zoo_info_says_the_default_model_is_a_testbed_model(fresh_registry):
    from click.testing import CliRunner

    from zoo.cli import main

    result = CliRunner().invoke(main, ["info", "yonos_sr"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "testbed model" in line]
    assert len(lines) == 1 and "testbed model: trained on synthetic shapes, not for real photos; use imdn for real " \
                               "images" in lines[0]
    assert json.loads((default_model_path() / "zoo.json").read_text())["testbed_only"] is True


def test_testbed_model_notes_once_that_it_is_not_for_real_photos(capsys, monkeypatch):
    """One stderr line, once per process and model, for an input larger than 128 pixels; nothing for small inputs."""
    from zoo_plugins.yonos_sr import sampler as sampler_module

    monkeypatch.setattr(sampler_module, "_NOTED", set())
    sampler = sampler_module.build_sampler(None)
    assert sampler.testbed_only
    sampler(np.full((16, 16, 3), 0.5, dtype=np.float32))
    assert capsys.readouterr().err == ""
    wide = np.full((8, 132, 3), 0.5, dtype=np.float32)  # wider than 128: a real photo, not a 32x32 testbed scene
    sampler(wide)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "(132x8 input) is a testbed model: trained on synthetic shapes" in err
    assert "use imdn for real images" in err
    sampler(wide)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("colour", [(230, 31, 26), (31, 64, 235), (25, 204, 217)], ids=["red", "blue", "cyan"])
def test_training_colours_survive_the_whole_sampler_path(colour):
    """Guard of the colour path (channel order, [0, 1] <-> [-1, 1] at load, encode, decode and save): a patch of a
    testbed palette colour on the testbed's grey comes back as that colour from the uint8 image the CLI and the nodes
    hand the sampler. A red/blue swap or a range error anywhere moves it by 100+ levels; today it is within 10."""
    from zoo_plugins.yonos_sr.sampler import build_sampler

    lr = np.full((32, 32, 3), 128, dtype=np.uint8)
    lr[8:24, 8:24] = colour
    sr = np.asarray(build_sampler(None)(lr).images[0], dtype=np.float64)
    assert sr.shape == (128, 128, 3)
    got = sr[44:84, 44:84].reshape(-1, 3).mean(0)
    assert np.abs(got - np.array(colour)).max() <= 20, got


def test_chroma_error_on_a_set5_image():
    """The chroma measurement of scripts/bench_sr_set5.py on one Set5 image: zero for an image against itself, small
    for bicubic, large when the channels are swapped; Cb/Cr are skimage's BT.601 ``rgb2ycbcr`` channels."""
    from fixtures_imdn import SET5, imdn_data
    from PIL import Image

    from zoo.sr_metrics import modcrop
    from zoo_plugins.imdn.degradation import imresize
    from zoo_plugins.yonos_sr.evaluate import chroma_error, rgb_to_cbcr

    imdn_data()
    hr = modcrop(np.asarray(Image.open(SET5 / "HR" / "butterfly.bmp").convert("RGB")), 4)
    lr = np.asarray(Image.open(SET5 / "LR_bicubic" / "X4" / "butterflyx4.bmp").convert("RGB"))
    bicubic = imresize(torch.from_numpy(lr.copy()).permute(2, 0, 1).double(), scale=4)
    bicubic = bicubic.permute(1, 2, 0).clamp(0, 255).round().to(torch.uint8).numpy()
    assert chroma_error(bicubic, bicubic, 4) == {"cb": 0.0, "cr": 0.0}
    plain, swapped = chroma_error(bicubic, hr, 4), chroma_error(bicubic[..., ::-1], hr, 4)
    assert plain["cb"] < 2 and plain["cr"] < 2  # bicubic keeps colours (1.49 / 1.40)
    assert swapped["cb"] > 10 and swapped["cr"] > 10, swapped  # RGB <-> BGR: 20+ levels
    skimage_color = pytest.importorskip("skimage.color")
    reference = skimage_color.rgb2ycbcr(hr)
    cb, cr = rgb_to_cbcr(hr)
    assert np.allclose(cb, reference[..., 1], atol=1e-9) and np.allclose(cr, reference[..., 2], atol=1e-9)
