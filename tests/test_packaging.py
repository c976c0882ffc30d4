"""Packaging: the distribution declares ranges (it is installed into environments users already have, ComfyUI's),
the development pins live in constraints-dev.txt, and a ComfyUI clone finds the node pack at the repository root."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def _declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = [req for group in project.get("optional-dependencies", {}).values() for req in group]
    return [Requirement(text) for text in project["dependencies"] + extras]


def test_declared_dependencies_are_ranges_not_exact_pins():
    pinned = [str(req) for req in _declared() if any(spec.operator in ("==", "===") for spec in req.specifier)]
    assert pinned == []
    names = {req.name for req in _declared()}
    assert {"torch", "transformers", "diffusers"} <= names
    assert not names & {"torchvision", "spandrel", "timm", "open-clip-torch"}


def test_development_pins_are_a_constraints_file_that_setup_uses():
    pins = [line.split("#")[0].strip() for line in (ROOT / "constraints-dev.txt").read_text().splitlines()]
    assert "transformers==5.23.0" in pins
    assert "-c constraints-dev.txt" in (ROOT / "scripts" / "setup.sh").read_text()


def test_comfyui_clone_install_files():
    assert (ROOT / "requirements.txt").read_text().split("\n")[-2:] == ["-e .", ""]
    text = (ROOT / "__init__.py").read_text()
    assert "from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS" in text
    comfy = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["comfy"]
    assert comfy["PublisherId"] and comfy["DisplayName"] and comfy["includes"] == ["nodes"]


def test_text_encoder_adapters_say_in_one_line_when_transformers_needs_a_newer_peft(monkeypatch):
    from transformers.integrations import peft as transformers_peft

    from zoo.diffusion.lora_io import check_text_encoder_adapters
    from zoo.errors import MissingExtraError

    check_text_encoder_adapters()  # the development pins are a working pair
    monkeypatch.setattr(transformers_peft, "MIN_PEFT_VERSION", "0.22.0")
    with pytest.raises(MissingExtraError) as info:
        check_text_encoder_adapters()
    message = str(info.value)
    assert "\n" not in message and "peft >= 0.22.0" in message and "fuse=True" in message
