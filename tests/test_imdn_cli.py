"""``zoo upscale`` / ``zoo eval-sr`` with IMDN: files, folders, odd image modes, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from fixtures_imdn import natural_image, save_tiny_imdn
from zoo.cli import main
from zoo.sampling import read_metadata


@pytest.fixture
def tiny_weights(tmp_path):
    return save_tiny_imdn(tmp_path / "weights" / "tiny_x2.pth", scale=2)


def _invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _one_error_line(result) -> str:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


def _save(array, path):
    Image.fromarray(array).save(path)
    return path


def test_upscale_file_writes_png_with_settings(tmp_path, tiny_weights):
    source = _save((natural_image(10, 12) * 255).astype(np.uint8), tmp_path / "in.png")
    result = _invoke("upscale", "imdn", "--model", tiny_weights, "--tile", "6", "--overlap", "2", source, "-o",
                     tmp_path / "out.png")
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "out.png") as image:
        assert image.size == (24, 20)
    metadata = read_metadata(tmp_path / "out.png")
    assert metadata["method"] == "imdn" and metadata["tiles"] == 4 and metadata["overlap"] == 2
    assert metadata["source"] == "in.png" and metadata["weights"] == "tiny_x2.pth"


def test_upscale_folder_with_mixed_modes(tmp_path, tiny_weights):
    folder = tmp_path / "inputs"
    folder.mkdir()
    rgb = (natural_image(8, 8) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(folder / "rgb.png")
    Image.fromarray(rgb).quantize(colors=8).save(folder / "palette.png")
    Image.fromarray(np.dstack([rgb, np.full((8, 8), 128, np.uint8)]), "RGBA").save(folder / "alpha.png")
    Image.fromarray((rgb[..., 0].astype(np.uint16) * 257)).save(folder / "grey16.png")
    result = _invoke("upscale", "imdn", "--model", tiny_weights.parent, folder, "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["alpha.png", "grey16.png", "palette.png", "rgb.png"]
    for name in written:
        with Image.open(tmp_path / "out" / name) as image:
            assert image.size == (16, 16) and image.mode == "RGB"


def test_upscale_errors_are_one_line(tmp_path, tiny_weights):
    source = _save(np.zeros((8, 8, 3), np.uint8), tmp_path / "in.png")
    assert "github.com/Zheng222/IMDN" in _one_error_line(_invoke("upscale", "imdn", source, "-o", tmp_path / "o.png"))
    assert ".png" in _one_error_line(_invoke("upscale", "imdn", "--model", tiny_weights, source, "-o",
                                             tmp_path / "o.jpg"))
    Image.new("F", (4, 4)).save(tmp_path / "float.tif")
    assert "mode 'F'" in _one_error_line(_invoke("upscale", "imdn", "--model", tiny_weights, tmp_path / "float.tif",
                                                 "-o", tmp_path / "o.png"))
    assert "No IMDN weights for scale 3" in _one_error_line(
        _invoke("upscale", "imdn", "--model", tiny_weights, "--scale", "3", source, "-o", tmp_path / "o.png"))
    assert "fp32 on CPU" in _one_error_line(
        _invoke("upscale", "imdn", "--model", tiny_weights, "--dtype", "fp16", "--device", "cpu", source, "-o",
                tmp_path / "o.png"))
    assert "zoo run swiftbrush" in _one_error_line(_invoke("upscale", "swiftbrush", source, "-o", tmp_path / "o.png"))


def test_eval_sr_json_and_size_mismatch(tmp_path, tiny_weights):
    lr_dir, hr_dir = tmp_path / "lr", tmp_path / "hr"
    lr_dir.mkdir()
    hr_dir.mkdir()
    hr = (natural_image(40, 44) * 255).astype(np.uint8)
    Image.fromarray(hr).save(hr_dir / "a.png")
    Image.fromarray(hr[::2, ::2]).save(lr_dir / "ax2.png")
    out = tmp_path / "scores.json"
    result = _invoke("eval-sr", "imdn", "--model", tiny_weights, "--lr-dir", lr_dir, "--hr-dir", hr_dir, "--scale",
                     "2", "--json", out, "--save-dir", tmp_path / "sr")
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["count"] == 1 and report["images"][0]["name"] == "a"
    assert np.isfinite(report["mean"]["psnr"]) and 0 < report["mean"]["ssim"] <= 1
    assert (tmp_path / "sr" / "a.png").is_file()
    Image.fromarray(hr[:-4]).save(hr_dir / "a.png")  # HR no longer twice the LR
    assert "check the scale" in _one_error_line(
        _invoke("eval-sr", "imdn", "--model", tiny_weights, "--lr-dir", lr_dir, "--hr-dir", hr_dir, "--scale", "2"))


def test_registration_does_not_import_torch():
    code = ("import sys, zoo_plugins.imdn, zoo_plugins.imdn.config, zoo_plugins.imdn.detect; "
            "from zoo.config import structured; structured(zoo_plugins.imdn.config.IMDNConfig); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_bench_script_runs_small(tmp_path):
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "bench_sr.py"
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, str(script), "--weights", str(tmp_path / "none.pth"), "--size", "16",
                           "--repeats", "1", "--memory-size", "40", "--tile", "16", "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["weights"] == "random (seed 0)" and report["speed"]["outputs_match"]
    assert report["speed"]["output"] == [1, 3, 64, 64] and report["speed"]["speed_ratio"] > 0
    assert report["memory"]["output"] == [160, 160] and report["memory"]["tiles"] == 9
    assert report["memory"]["peak_rss_mb"] >= report["memory"]["rss_before_upscale_mb"] > 0
