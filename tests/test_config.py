"""Structured configs: defaults, YAML files, dotlist overrides, one-line errors, round trip."""

from dataclasses import dataclass, field

import pytest
from omegaconf import OmegaConf

from zoo.config import load_config, save_config, to_object
from zoo.errors import ConfigError


@dataclass
class Optim:
    lr: float = 1e-4
    every: int = 1


@dataclass
class ToyConfig:
    steps: int = 10
    model: str = "pkg:zoo.testbed/weights/teacher"
    use_ema: bool = True
    optim: Optim = field(default_factory=Optim)


def test_defaults_file_then_overrides(tmp_path):
    file = tmp_path / "c.yaml"
    file.write_text("steps: 20\noptim:\n  lr: 0.001\n")
    config = load_config(ToyConfig, file, ["optim.every=5", "use_ema=false"])
    assert (config.steps, config.optim.lr, config.optim.every, config.use_ema) == (20, 0.001, 5, False)
    assert config.model == "pkg:zoo.testbed/weights/teacher"


@pytest.mark.parametrize("override,fragment", [
    ("stepz=3", "Unknown config key 'stepz' (override 'stepz=3'); valid keys: steps, model, use_ema, optim"),
    ("optim.lx=1", "Unknown config key 'optim.lx' (override 'optim.lx=1'); valid keys under 'optim': lr, every"),
    ("steps=many", "Bad value for config key 'steps'"),
    ("steps", "is not of the form key=value"),
])
def test_override_errors_are_one_line_and_name_the_key(override, fragment):
    with pytest.raises(ConfigError) as info:
        load_config(ToyConfig, overrides=[override])
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="Config file not found"):
        load_config(ToyConfig, tmp_path / "missing.yaml")
    bad_key = tmp_path / "bad.yaml"
    bad_key.write_text("optim:\n  beta: 3\n")
    with pytest.raises(ConfigError, match=r"Unknown config key 'optim.beta' \(in bad.yaml\)"):
        load_config(ToyConfig, bad_key)
    broken = tmp_path / "broken.yaml"
    broken.write_text("steps: [1, 2\n")
    with pytest.raises(ConfigError, match="Cannot read config file"):
        load_config(ToyConfig, broken)


def test_saved_config_round_trips(tmp_path):
    config = load_config(ToyConfig, overrides=["steps=7", "optim.lr=0.5"])
    path = save_config(config, tmp_path / "run" / "config.yaml")
    again = load_config(ToyConfig, path)
    assert OmegaConf.to_container(again) == OmegaConf.to_container(config)
    assert isinstance(to_object(again), ToyConfig) and to_object(again).optim.lr == 0.5
    assert not list(path.parent.glob(".*.tmp"))
