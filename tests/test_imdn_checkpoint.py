"""Loading IMDN weights: official checkpoints, detection from shapes, conversion, and every kind of bad file."""

from __future__ import annotations

import os
import pickle

import pytest
import torch
from click.testing import CliRunner

from fixtures_imdn import CHECKPOINTS, imdn_data, save_tiny_imdn
from zoo.errors import WeightsError
from zoo_plugins.imdn.arch import IMDN, IMDNRTC, count_parameters
from zoo_plugins.imdn.checkpoint import (canonicalize_state_dict, convert_to_safetensors, load_model,
                                         load_state_dict, read_state_dict)
from zoo_plugins.imdn.detect import detect_architecture


OFFICIAL = {  # file: (variant, network scale, parameters) from the repository and the paper
    "IMDN_x2.pth": ("IMDN", 2, 694_404), "IMDN_x3.pth": ("IMDN", 3, 703_059), "IMDN_x4.pth": ("IMDN", 4, 715_176),
    "IMDN_AS.pth": ("IMDN_AS", 1, 752_104), "model_RTC.pth": ("IMDN_RTC", 2, 20_190),
    "model_RTE.pth": ("IMDN_RTE", 2, 89_748),
}


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_official_checkpoints_load_strictly_with_detected_architecture(name):
    imdn_data()
    model, info = load_model(CHECKPOINTS / name)
    variant, scale, params = OFFICIAL[name]
    assert (info.variant, info.scale) == (variant, scale)
    assert count_parameters(model) == params
    raw = torch.load(CHECKPOINTS / name, map_location="cpu", weights_only=True)
    for key, value in model.state_dict().items():  # every tensor came from the file, under its canonical name
        original = raw.get(f"module.{key}", raw.get(key))
        assert original is not None, key
        assert torch.equal(value, original.float())


def test_rtc_keeps_its_model_prefix_and_dataparallel_prefix_is_removed():
    imdn_data()
    rtc = canonicalize_state_dict(read_state_dict(CHECKPOINTS / "model_RTC.pth"))
    assert all(k.startswith("model.") for k in rtc)
    x4 = canonicalize_state_dict(read_state_dict(CHECKPOINTS / "IMDN_x4.pth"))
    assert "fea_conv.weight" in x4 and not any(k.startswith("module.") for k in x4)


@pytest.mark.parametrize("scale", [2, 3, 4, 8])
@pytest.mark.parametrize("wrap", ["plain", "module", "params_ema", "state_dict+module"])
def test_scale_and_shape_detection_on_synthetic_state_dicts(scale, wrap):
    torch.manual_seed(scale)
    state = IMDN(num_features=32, num_blocks=3, upscale=scale).state_dict()
    if wrap == "module":
        state = {f"module.{k}": v for k, v in state.items()}
    elif wrap == "params_ema":
        state = {"params_ema": state}
    elif wrap == "state_dict+module":
        state = {"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}
    info = detect_architecture(canonicalize_state_dict(state))
    assert (info.variant, info.scale, info.num_features, info.num_blocks, info.distilled_channels) == \
        ("IMDN", scale, 32, 3, 8)


def test_rtc_detection_with_other_block_count():
    state = IMDNRTC(num_features=16, num_blocks=3, upscale=3).state_dict()
    info = detect_architecture(state)
    assert (info.variant, info.scale, info.num_features, info.num_blocks) == ("IMDN_RTC", 3, 16, 3)


def test_safetensors_conversion_round_trip(tmp_path):
    imdn_data()
    target = convert_to_safetensors(CHECKPOINTS / "IMDN_x3.pth", tmp_path / "x3.safetensors")
    original, info = load_model(CHECKPOINTS / "IMDN_x3.pth")
    converted, info2 = load_model(target)
    assert info == info2
    for (k, a), (k2, b) in zip(original.state_dict().items(), converted.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    from safetensors import safe_open

    with safe_open(str(target), "pt") as handle:
        metadata = handle.metadata()
    assert metadata["source_file"] == "IMDN_x3.pth" and '"scale": 3' in metadata["imdn_arch"]
    half = convert_to_safetensors(CHECKPOINTS / "IMDN_x3.pth", tmp_path / "x3_fp16.safetensors", half=True)
    assert half.stat().st_size < 0.6 * target.stat().st_size
    state, _ = load_state_dict(half)
    assert all(v.dtype == torch.float16 for v in state.values())


def test_conversion_command_line(tmp_path, capsys):
    from zoo_plugins.imdn.checkpoint import main

    source = save_tiny_imdn(tmp_path / "tiny.pth", scale=3, prefix="module.")
    assert main([str(source), str(tmp_path / "tiny.safetensors")]) == 0
    assert "IMDN x3" in capsys.readouterr().out
    assert load_state_dict(tmp_path / "tiny.safetensors")[1].scale == 3


# --- bad files: one clear line each ------------------------------------------------------------------------------
def _error_of(path) -> str:
    with pytest.raises(WeightsError) as info:
        load_model(path)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("fraction", [0.01, 0.5, 0.999])
def test_truncated_pth(tmp_path, fraction):
    source = save_tiny_imdn(tmp_path / "ok.pth")
    data = source.read_bytes()
    broken = tmp_path / "broken.pth"
    broken.write_bytes(data[:int(len(data) * fraction)])
    assert "truncated" in _error_of(broken)


def test_truncated_official_legacy_checkpoint(tmp_path):
    imdn_data()
    data = (CHECKPOINTS / "IMDN_x2.pth").read_bytes()
    broken = tmp_path / "IMDN_x2.pth"
    broken.write_bytes(data[:len(data) // 2])
    assert "truncated" in _error_of(broken)


def test_truncated_safetensors(tmp_path):
    source = save_tiny_imdn(tmp_path / "ok.safetensors")
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(source.read_bytes()[:-100])
    assert "truncated" in _error_of(broken)


def test_empty_file(tmp_path):
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    assert "empty" in _error_of(empty)


class _RunsCode:
    """Unpickling this calls os.system: a weights file must never be loaded that way."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("container", ["torch", "raw_pickle"])
def test_pickle_with_code_is_refused_and_not_executed(tmp_path, container):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    payload = {"fea_conv.weight": torch.zeros(1), "hook": _RunsCode(marker)}
    if container == "torch":
        torch.save(payload, evil)
    else:
        evil.write_bytes(pickle.dumps(payload, protocol=2))
    assert "Refusing to load evil.pth" in _error_of(evil)
    assert not marker.exists()


def test_not_an_imdn_checkpoint(tmp_path):
    other = tmp_path / "esrgan.pth"
    torch.save({"conv_first.weight": torch.zeros(64, 3, 3, 3), "body.0.rdb1.conv1.weight": torch.zeros(32, 64, 3, 3)},
               other)
    message = _error_of(other)
    assert "not an IMDN checkpoint" in message and "conv_first.weight" in message


def test_missing_and_misshapen_tensors(tmp_path):
    state = IMDN(num_features=16, num_blocks=2, upscale=2).state_dict()
    missing = dict(state)
    del missing["IMDB2.c5.weight"]
    torch.save(missing, tmp_path / "missing.pth")
    assert "1 missing (e.g. 'IMDB2.c5.weight')" in _error_of(tmp_path / "missing.pth")
    wrong = dict(state)
    wrong["LR_conv.weight"] = torch.zeros(16, 16, 1, 1)
    torch.save(wrong, tmp_path / "wrong.pth")
    assert "another shape" in _error_of(tmp_path / "wrong.pth")


def test_non_tensor_entries(tmp_path):
    torch.save({"fea_conv.weight": [1, 2, 3]}, tmp_path / "list.pth")
    assert "not a state dict of tensors" in _error_of(tmp_path / "list.pth")


def test_cli_prints_one_error_line_for_bad_weights(tmp_path):
    from PIL import Image

    from zoo.cli import main

    other = tmp_path / "other.pth"
    torch.save({"conv_first.weight": torch.zeros(4, 3, 3, 3)}, other)
    image = tmp_path / "in.png"
    Image.new("RGB", (8, 8)).save(image)
    result = CliRunner().invoke(main, ["upscale", "imdn", "--model", str(other), str(image), "-o",
                                       str(tmp_path / "out.png")])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "not an IMDN checkpoint" in lines[0]
