"""Acceptance: ``zoo eval-sr imdn`` with the official checkpoints reproduces the paper's Set5 table.

Paper (arXiv 1909.11856, Table 4; the repository's images/psnr_ssim.png), Y channel, bicubic, border = scale:
x2 38.00 / 0.9605, x3 34.36 / 0.9270, x4 32.21 / 0.8948. Tolerance: 0.01 dB and 0.0005 SSIM (the table's precision).
With Y rounded to uint8 (the official Python script) the published reproductions are lower (GitHub issue #29:
37.911 / 34.323 / 32.186), which the last test checks for x4.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from fixtures_imdn import CHECKPOINTS, SET5, imdn_data
from zoo.cli import main
from zoo.sr_metrics import modcrop
from zoo_plugins.imdn.data import bicubic_downscale

PAPER_SET5 = {2: (38.00, 0.9605), 3: (34.36, 0.9270), 4: (32.21, 0.8948)}
ISSUE_29_ROUNDED_Y_X4 = 32.186


def _eval_sr(tmp_path, scale, *extra):
    out = tmp_path / f"set5_x{scale}.json"
    result = CliRunner().invoke(main, [
        "eval-sr", "imdn", "--model", str(CHECKPOINTS / f"IMDN_x{scale}.pth"), "--device", "cpu",
        "--lr-dir", str(SET5 / "LR_bicubic" / f"X{scale}"), "--hr-dir", str(SET5 / "HR"), "--scale", str(scale),
        "--json", str(out), *extra])
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text()), result.output


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_eval_sr_reproduces_the_paper_set5_table(tmp_path, scale):
    imdn_data()
    report, output = _eval_sr(tmp_path, scale)
    paper_psnr, paper_ssim = PAPER_SET5[scale]
    assert report["count"] == 5 and [r["name"] for r in report["images"]] == ["baby", "bird", "butterfly", "head",
                                                                             "woman"]
    assert report["protocol"] == {"channel": "y", "y": "float", "border": scale, "tile": 0,
                                  "ssim": "gaussian 11x11 sigma 1.5, K1 0.01, K2 0.03, L 255"}
    assert abs(report["mean"]["psnr"] - paper_psnr) <= 0.01, report["mean"]
    assert abs(report["mean"]["ssim"] - paper_ssim) <= 0.0005, report["mean"]
    assert f"{report['mean']['psnr']:8.4f} dB" in output


def test_rounded_y_reproduces_the_official_python_script(tmp_path):
    imdn_data()
    report, _ = _eval_sr(tmp_path, 4, "--round-y")
    assert report["protocol"]["y"] == "rounded"
    assert abs(report["mean"]["psnr"] - ISSUE_29_ROUNDED_Y_X4) <= 0.005
    assert report["mean"]["psnr"] < PAPER_SET5[4][0] - 0.01  # the rounding alone costs about 0.02 dB here


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_matlab_bicubic_regenerates_the_shipped_lr_images(scale):
    imdn_data()
    for name in ("baby", "bird", "butterfly", "head", "woman"):
        hr = modcrop(np.asarray(Image.open(SET5 / "HR" / f"{name}.bmp").convert("RGB")), scale)
        shipped = np.asarray(Image.open(SET5 / "LR_bicubic" / f"X{scale}" / f"{name}x{scale}.bmp").convert("RGB"))
        regenerated = bicubic_downscale(hr, scale)
        assert regenerated.shape == shipped.shape
        differing = np.mean(regenerated != shipped)
        assert differing <= 0.001, (name, differing)  # MATLAB's own rounding; in practice 0 for all three scales
