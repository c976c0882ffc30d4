"""Shared pytest set-up: every test runs with its own user, cache and hub directories, offline from the public hub.

Area-specific fixtures live next to their tests (``tests/fixtures_<area>.py``) and are imported by the test modules
that need them, so that this file stays small.
"""

import os
import sys
from pathlib import Path

import pytest

# Before anything imports huggingface_hub / gradio: no telemetry, no progress-bar noise, no public hub.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["NO_PROXY"] = "localhost,127.0.0.1,::1"

TESTS_DIR = Path(__file__).parent
sys.path.insert(0, str(TESTS_DIR))  # lets test modules import tests/fixtures_*.py helpers

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
"""Reference data laid beside the checkout (``../shared/data``); never copied into the repository."""


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Point HF caches and the zoo's own cache at a per-test temporary directory."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HF_HOME", str(home / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(home / "hf" / "hub"))
    monkeypatch.setenv("ZOO_HOME", str(home / "zoo"))
    # huggingface_hub reads these at import time; patch the constants too so direct callers use the temp cache.
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HOME", str(home / "hf"))
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(home / "hf" / "hub"))
    yield


@pytest.fixture
def fresh_registry():
    """Reload the process-wide registry from entry points before and after the test."""
    from zoo.registry import set_registry

    set_registry(None)
    yield
    set_registry(None)


@pytest.fixture
def load_script():
    """``load_script("bench_sr")``: a file of ``scripts/`` imported as a module (scripts are not a package)."""
    import importlib.util

    def load(name: str):
        path = TESTS_DIR.parent / "scripts" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
