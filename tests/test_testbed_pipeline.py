"""The committed testbed teacher: a genuine diffusers Stable Diffusion folder that loads offline, is deterministic per
seed, follows its prompts, fits the size budget and is the embedded default of ``zoo run``."""

import json
import re
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch

from zoo.testbed import TEACHER_DIR, TEACHER_REF
from zoo.testbed.models import LATENT_SIZE, SCHEDULER_CONFIG, weights_size

ROOT = Path(__file__).resolve().parents[1]
MB = 1_000_000


@pytest.fixture(scope="module")
def pipeline():
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import logging

    logging.disable_progress_bar()
    pipe = StableDiffusionPipeline.from_pretrained(TEACHER_DIR, local_files_only=True)  # fp16 files load as fp32
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate(pipe, prompt, seed, steps=4, guidance_scale=5.0, batch=2):
    return pipe([prompt] * batch, num_inference_steps=steps, guidance_scale=guidance_scale, height=32, width=32,
                generator=torch.Generator().manual_seed(seed), output_type="np").images


def test_folder_is_a_standard_sd15_layout_with_the_sd15_schedule(pipeline):
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    assert isinstance(pipeline.unet, UNet2DConditionModel) and isinstance(pipeline.vae, AutoencoderKL)
    assert isinstance(pipeline.text_encoder, CLIPTextModel) and isinstance(pipeline.tokenizer, CLIPTokenizer)
    assert isinstance(pipeline.scheduler, DDIMScheduler)
    for key, value in SCHEDULER_CONFIG.items():
        assert pipeline.scheduler.config[key] == value, key
    assert pipeline.tokenizer.model_max_length == 77
    assert pipeline.unet.config.sample_size == LATENT_SIZE and pipeline.vae_scale_factor == 4
    assert pipeline.unet.config.cross_attention_dim == pipeline.text_encoder.config.hidden_size
    assert pipeline.vae.config.scaling_factor != 1.0
    for part in ("unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors",
                 "text_encoder/model.safetensors", "tokenizer/tokenizer.json", "model_index.json"):
        assert (TEACHER_DIR / part).is_file(), part
    assert not list(TEACHER_DIR.rglob("*.bin")) and not list(TEACHER_DIR.rglob("*.pt"))


def test_output_is_deterministic_per_seed(pipeline):
    first = generate(pipeline, "a red circle", seed=3)
    second = generate(pipeline, "a red circle", seed=3)
    other = generate(pipeline, "a red circle", seed=4)
    assert first.shape == (2, 32, 32, 3) and np.isfinite(first).all()
    assert np.array_equal(first, second)
    assert np.abs(first - other).mean() > 0.01


def test_teacher_follows_prompts():
    """A short check that the committed weights are trained (the full numbers come from scripts/bench_quality.py)."""
    from zoo.t2i import DDIMSampler
    from zoo.testbed.evaluator import Evaluator

    sampler = DDIMSampler.from_model(TEACHER_REF, device="cpu")
    prompts = ["a red circle", "a blue square", "a yellow triangle", "a green square"]
    images, labels = [], []
    for index, prompt in enumerate(prompts):
        result = sampler(prompt, steps=10, seed=index, batch_size=6)
        assert result.nfe == 20  # 10 steps x (conditional + unconditional)
        images += result.images
        labels += [prompt] * 6
    report = Evaluator().evaluate(images, labels)
    assert report.color_acc >= 0.8 and report.shape_acc >= 0.7, report


def test_manifest_names_the_base_sampler_and_recommended_settings():
    manifest = json.loads((TEACHER_DIR / "zoo.json").read_text())
    assert manifest["method"] == "base" and manifest["task"] == "text-to-image"
    assert manifest["sampler"]["steps"] == 25 and manifest["sampler"]["guidance_scale"] > 1
    assert "train_testbed.py" in manifest["testbed"]["command"]


def test_zoo_run_without_a_model_uses_the_testbed(tmp_path):
    from click.testing import CliRunner

    from zoo.cli import main
    from zoo.sampling import read_metadata

    out = tmp_path / "image.png"
    result = CliRunner().invoke(main, ["run", "-p", "a blue circle", "--steps", "4", "-o", str(out)])
    assert result.exit_code == 0, result.output
    from PIL import Image

    with Image.open(out) as image:
        assert image.size == (32, 32) and image.mode == "RGB"
    metadata = read_metadata(out)
    assert metadata["model"] == TEACHER_REF and metadata["method"] == "base" and metadata["nfe"] == 8


def test_weights_fit_the_size_budget():
    assert weights_size(TEACHER_DIR) < 8.5 * MB
    testbed_folders = [ROOT / "zoo" / "testbed"] + sorted((ROOT / "plugins").glob("*/testbed"))
    total = sum(weights_size(folder) for folder in testbed_folders)
    assert total < 30 * MB, {str(f.relative_to(ROOT)): weights_size(f) for f in testbed_folders}


def test_weights_are_declared_as_package_data():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    package_dir = ROOT / "zoo" / "testbed"
    covered = {p for pattern in config.get("zoo.testbed", []) for p in package_dir.glob(pattern) if p.is_file()}
    shipped = {p for p in (package_dir / "weights").rglob("*") if p.is_file()}
    assert shipped and shipped <= covered, sorted(str(p) for p in shipped - covered)


def test_bench_quality_writes_rows_and_compares_students_with_the_teacher_at_the_same_nfe(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "rows.json"
    command = [sys.executable, str(ROOT / "scripts" / "bench_quality.py"), "--only", "teacher", "swiftbrush",
               "--prompts", "1", "--teacher-steps", "1", "--teacher-nocfg-steps", "1", "--batch-size", "4",
               "--json", str(out)]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-2000:]
    report = json.loads(out.read_text())
    rows = {row["method"]: row for row in report["rows"]}
    assert list(rows) == ["teacher DDIM 1 step, CFG 3", "teacher DDIM 1 step, no CFG", "swiftbrush"]
    assert set(rows["swiftbrush"]) == {"method", "steps", "nfe", "color_acc", "shape_acc", "diversity", "fd",
                                       "ms_per_image", "misses", "scored"}
    for r in rows.values():  # the stored misses are the accuracies' complement, image by image
        assert r["scored"] == {"color": 4, "shape": 4}  # one prompt that names both, one batch of 4
        for attribute in ("color", "shape"):
            wrong = r["misses"][attribute]
            assert wrong == sorted(set(wrong)) and all(0 <= i < 4 for i in wrong)
            assert r[f"{attribute}_acc"] == pytest.approx(1 - len(wrong) / 4)
    assert [(r["steps"], r["nfe"]) for r in rows.values()] == [(1, 2), (1, 1), (1, 1)]
    assert all(0.0 <= r["color_acc"] <= 1.0 and r["ms_per_image"] > 0 for r in rows.values())
    # swiftbrush is compared with the CFG row on steps only and with the no-CFG row on steps and NFE
    same = {c["teacher row"]: c["same"] for c in report["comparisons"] if c["method"] == "swiftbrush"}
    assert same == {"teacher DDIM 1 step, CFG 3": "steps", "teacher DDIM 1 step, no CFG": "nfe+steps"}
    for c in report["comparisons"]:
        ref, row = rows[c["teacher row"]], rows[c["method"]]
        assert c["d_fd"] == pytest.approx(row["fd"] - ref["fd"])
        wins = row["color_acc"] >= ref["color_acc"] and row["shape_acc"] >= ref["shape_acc"] and row["fd"] < ref["fd"]
        assert c["beats"] == ("yes" if wins else "no")
        assert re.fullmatch(r"\+\d+/-\d+ p=[01]\.\d\d", c["shape pairs"]) and c["color pairs"].startswith("+")
    assert "against the teacher at the same NFE" in completed.stdout


def test_bench_conflict_starts_from_noise_carrying_an_image_of_another_colour(tmp_path):
    import subprocess
    import sys

    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from bench_conflict import conflicting_attributes, conflicting_latents
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    from zoo.t2i import DDIMSampler
    from zoo.testbed.data import COLORS, render

    attributes = conflicting_attributes("a red circle", 6, seed=0)
    assert [a.color for a in attributes] == [c for c in COLORS if c != "red"] * 2
    components = DDIMSampler.from_model(TEACHER_REF, device="cpu").components
    plain = conflicting_latents(components, attributes, 0.0, seed=5)
    strong = conflicting_latents(components, attributes, 4.0, seed=5)
    abar = float(components.alphas_cumprod[999])
    assert plain.std().item() == pytest.approx((1 - abar) ** 0.5, rel=0.15)  # scale 0: noise only
    signal = (strong - plain) / (4.0 * abar ** 0.5)  # the same noise: the difference is the other image's latent
    torch.manual_seed(5)  # the VAE posterior sample conflicting_latents draws
    expected = components.encode_images(torch.from_numpy(render(attributes)).permute(0, 3, 1, 2)).float()
    assert torch.allclose(signal, expected, atol=1e-3)

    out = tmp_path / "conflict.json"
    student = ROOT / "plugins" / "hyper_sd" / "testbed" / "4step"
    command = [sys.executable, str(ROOT / "scripts" / "bench_conflict.py"), "--prompts", "1", "--images", "3",
               "--scales", "0", "4", "--teacher-steps", "2", "--model", f"hyper_sd={student}", "--json", str(out)]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert [(r["scale"], r["steps"], r["guidance_scale"]) for r in rows] == \
        [(0.0, 2, 3.0), (0.0, 4, 0.0), (4.0, 2, 3.0), (4.0, 4, 0.0)]
    for r in rows:
        assert r["images"] == 3
        # an image cannot show both the prompt's colour and the conflicting one
        assert r["color_acc"] + r["follows_noise"] <= 1.0 and 0.0 <= r["shape_acc"] <= 1.0
    bad = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_conflict.py"), "--model", "hyper_sd"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "write METHOD=REF" in bad.stderr and "Traceback" not in bad.stderr
