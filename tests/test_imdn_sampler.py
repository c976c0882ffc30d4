"""The IMDN sampler: weight selection, adaptive cropping, tiling, precision rules and the sampler contract."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from fixtures_imdn import CHECKPOINTS, hr_folder, imdn_data, natural_image, save_tiny_imdn
from zoo.errors import FileMissingError, InputError
from zoo.spec import ResolvedModel
from zoo.sr_metrics import psnr
from zoo_plugins.imdn.arch import IMDNAnyScale
from zoo_plugins.imdn.sampler import build_sampler
from zoo_plugins.imdn.tiling import adaptive_crop_forward, forward_any_size, tile_spans



def _sampler(path: Path, **options):
    return build_sampler(ResolvedModel(path=path, ref=str(path)), device="cpu", **options)


# --- tiling geometry ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("length, tile, overlap, multiple", [
    (100, 32, 8, 1), (101, 40, 5, 4), (64, 64, 16, 1), (10, 3, 2, 2), (257, 100, 32, 4), (7, 0, 3, 1)])
def test_tile_spans_cover_the_axis_once_with_context(length, tile, overlap, multiple):
    spans = tile_spans(length, tile, overlap, multiple)
    covered = np.zeros(length, int)
    for span in spans:
        covered[span.core_start:span.core_stop] += 1
        assert 0 <= span.window_start <= span.core_start < span.core_stop <= span.window_stop <= length
        assert span.core_start - span.window_start >= min(overlap, span.core_start)
        assert span.window_stop - span.core_stop >= min(overlap, length - span.core_stop)
        if span.window_stop - span.window_start < length:  # a window shorter than the axis can be made a multiple
            assert (span.window_stop - span.window_start) % multiple == 0
    assert covered.tolist() == [1] * length
    if 0 < tile < length:
        assert max(s.core_stop - s.core_start for s in spans) <= tile


def _official_crop_forward(x, model, shave=32):
    """The adaptive cropping strategy exactly as written in the official test_IMDN_AS.py (scale 1)."""
    _, _, h, w = x.shape
    h_half, w_half = h // 2, w // 2
    h_size, w_size = h_half + shave - (h_half + shave) % 4, w_half + shave - (w_half + shave) % 4
    crops = [x[:, :, 0:h_size, 0:w_size], x[:, :, 0:h_size, (w - w_size):w],
             x[:, :, (h - h_size):h, 0:w_size], x[:, :, (h - h_size):h, (w - w_size):w]]
    outs = model(torch.cat(crops, 0)).chunk(4, 0)
    out = torch.zeros_like(x)
    out[:, :, 0:h_half, 0:w_half] = outs[0][:, :, 0:h_half, 0:w_half]
    out[:, :, 0:h_half, w_half:w] = outs[1][:, :, 0:h_half, (w_size - w + w_half):w_size]
    out[:, :, h_half:h, 0:w_half] = outs[2][:, :, (h_size - h + h_half):h_size, 0:w_half]
    out[:, :, h_half:h, w_half:w] = outs[3][:, :, (h_size - h + h_half):h_size, (w_size - w + w_half):w_size]
    return out


def test_adaptive_cropping_equals_the_official_strategy():
    torch.manual_seed(0)
    model = IMDNAnyScale(num_features=16, num_blocks=1).eval()
    x = torch.rand(1, 3, 70, 93)
    with torch.no_grad():
        expected = _official_crop_forward(x, model)
        got = adaptive_crop_forward(model, x, multiple=4, scale=1)
        assert torch.equal(forward_any_size(model, x, 4, 1), got)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


def test_adaptive_cropping_with_an_upscaling_network_matches_a_whole_forward_where_crops_agree():
    # A toy x2 "network" without global statistics: nearest upsampling. ACS must place every quadrant correctly.
    def nearest_x2(t):
        return F.interpolate(t, scale_factor=2, mode="nearest")

    x = torch.rand(1, 3, 66, 71)
    torch.testing.assert_close(adaptive_crop_forward(nearest_x2, x, multiple=2, scale=2), nearest_x2(x))


def test_tiny_inputs_fall_back_to_replicate_padding():
    torch.manual_seed(0)
    model = IMDNAnyScale(num_features=16, num_blocks=1).eval()
    with torch.no_grad():
        out = forward_any_size(model, torch.rand(1, 3, 9, 6), 4, 1)
    assert out.shape == (1, 3, 9, 6)


def test_tiling_with_one_tile_is_exact_and_small_tiles_stay_close():
    imdn_data()
    sampler = _sampler(CHECKPOINTS / "IMDN_x2.pth")
    rgb = natural_image(72, 88)
    whole, meta = sampler.upscale_array(rgb, tile=0)
    assert meta["tiles"] == 1 and whole.shape == (144, 176, 3)
    one_tile, meta = sampler.upscale_array(rgb, tile=200)
    assert meta["tiles"] == 1 and np.array_equal(one_tile, whole)
    tiled, meta = sampler.upscale_array(rgb, tile=40)
    assert meta["tiles"] == 6 and tiled.shape == whole.shape
    # per-tile CCA statistics make tiles differ slightly, far below visible (and far above a broken stitch)
    assert psnr(tiled, whole) > 45
    sampler.overlap = 0
    seams, _ = sampler.upscale_array(rgb, tile=40)
    assert psnr(seams, whole) < psnr(tiled, whole)


def test_progress_reports_every_tile():
    imdn_data()
    sampler = _sampler(CHECKPOINTS / "IMDN_x2.pth")
    calls = []
    sampler(natural_image(40, 40), tile=16, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(i, 9) for i in range(1, 10)]


# --- weight selection ------------------------------------------------------------------------------------------
def test_folder_selection_by_scale_variant_and_preset():
    imdn_data()
    sampler = _sampler(CHECKPOINTS)
    rgb = natural_image(24, 20)
    for scale, weights in [(2, "IMDN_x2.pth"), (3, "IMDN_x3.pth"), (4, "IMDN_x4.pth"), (2.5, "IMDN_AS.pth")]:
        out, meta = sampler.upscale_array(rgb, scale=scale)
        assert meta["weights"] == weights
        assert out.shape == (round(24 * scale), round(20 * scale), 3)
    with pytest.raises(InputError, match="pass --scale"):
        sampler.upscale_array(rgb)
    rte = _sampler(CHECKPOINTS, preset="rte")
    out, meta = rte.upscale_array(rgb)
    assert meta["weights"] == "model_RTE.pth" and out.shape == (48, 40, 3)
    rtc = _sampler(CHECKPOINTS, variant="imdn_rtc")
    assert rtc.upscale_array(rgb, scale=2)[1]["weights"] == "model_RTC.pth"


def test_single_file_scale_checks(tmp_path):
    path = save_tiny_imdn(tmp_path / "tiny_x3.pth", scale=3)
    sampler = _sampler(path)
    assert sampler.upscale_array(natural_image(10, 12))[0].shape == (30, 36, 3)
    with pytest.raises(InputError, match="No IMDN weights for scale 2"):
        sampler.upscale_array(natural_image(10, 12), scale=2)


def test_missing_model_and_empty_folder_say_where_to_get_weights(tmp_path):
    with pytest.raises(InputError, match="github.com/Zheng222/IMDN") as info:
        build_sampler(None)
    assert "\n" not in str(info.value)
    (tmp_path / "notes.txt").write_text("no weights here")
    with pytest.raises(FileMissingError, match="No IMDN weights"):
        _sampler(tmp_path)


def test_precision_rules(tmp_path):
    path = save_tiny_imdn(tmp_path / "tiny.pth")
    assert _sampler(path).dtype == torch.float32
    with pytest.raises(InputError, match="fp32 on CPU"):
        _sampler(path, dtype=torch.float16)
    with pytest.raises(InputError, match="fp32 on CPU"):
        build_sampler(ResolvedModel(path=path, ref="x"), device="cpu", dtype="bf16")
    with pytest.raises(InputError, match="Unknown IMDN sampler option"):
        _sampler(path, steps=4)


def test_result_contract_and_input_types(tmp_path):
    path = save_tiny_imdn(tmp_path / "tiny.pth", scale=2)
    sampler = _sampler(path)
    rgb = natural_image(10, 14)
    result = sampler(Image.fromarray((rgb * 255).round().astype(np.uint8)))
    assert result.nfe == 1 and result.images[0].size == (28, 20) and result.images[0].mode == "RGB"
    assert result.metadata["method"] == "imdn" and result.metadata["scale"] == 2
    from_tensor = sampler(torch.from_numpy(rgb.transpose(2, 0, 1)))
    from_array = sampler(rgb)
    assert np.array_equal(np.asarray(from_tensor.images[0]), np.asarray(from_array.images[0]))
    assert np.array_equal(np.asarray(result.images[0]), np.asarray(from_array.images[0]))


def test_rte_takes_0_255_input():
    imdn_data()
    sampler = _sampler(CHECKPOINTS / "model_RTE.pth")
    rgb = natural_image(32, 32)
    out, _ = sampler.upscale_array(rgb)
    # the network restores a smooth crop well only when fed [0, 255] (super-resolution.md §3.6): compare with a
    # bicubic upscale, and with what the same network gives on [0, 1] input
    reference = np.asarray(Image.fromarray((rgb * 255).round().astype(np.uint8)).resize((64, 64), Image.BICUBIC),
                           dtype=np.float64)
    network = sampler.network(sampler.entries[0])
    with torch.no_grad():
        wrong_range = network(torch.from_numpy(rgb.transpose(2, 0, 1))[None]).clamp(0, 1)[0] * 255
    assert psnr(out, reference) > 28
    assert psnr(wrong_range.permute(1, 2, 0).numpy(), reference) < psnr(out, reference) - 5


def test_contract_check_with_a_tiny_checkpoint_and_trainer(tmp_path):
    from zoo.registry import get_method
    from zoo.testing import check_method

    path = save_tiny_imdn(tmp_path / "weights" / "tiny.safetensors", scale=2)
    folder = hr_folder(tmp_path)
    report = check_method(get_method("imdn"), workdir=tmp_path / "check", model=str(path.parent),
                          config_overrides=[f"data.hr_dir={folder}", "model.scale=2", "model.num_features=16",
                                            "model.num_blocks=1", "data.patch_size=32", "train.batch_size=2"])
    assert report.ok, report.problems
    assert report.checked == ["spec", "config", "sampler", "trainer"]
