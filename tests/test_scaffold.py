"""``zoo new-plugin`` end to end: scaffold, install into the test environment, list, pass the contract check."""

import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from click.testing import CliRunner

from zoo.cli import main
from zoo.registry import load_registry
from zoo.testing import check_method
from zoo.tiny import build_tiny_sd


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory):
    """Scaffold zoo-toy-distill and pip-install it (no deps) into a target folder put on the path."""
    root = tmp_path_factory.mktemp("scaffold")
    result = CliRunner().invoke(main, ["new-plugin", "toy_distill", "--dir", str(root), "--title", "Toy Distill"])
    assert result.exit_code == 0, result.output
    project = Path(result.stdout.strip().splitlines()[0])
    files = sorted(str(p.relative_to(project)) for p in project.rglob("*") if p.is_file())
    site = root / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q",
                          "--target", str(site), str(project)], capture_output=True, text=True, timeout=300)
    assert pip.returncode == 0, pip.stderr[-2000:]
    sys.path.insert(0, str(site))
    try:
        yield project, site, files
    finally:
        sys.path.remove(str(site))
        for name in [m for m in sys.modules if m.startswith("zoo_toy_distill")]:
            del sys.modules[name]


def test_scaffold_layout(installed_plugin):
    project, _, files = installed_plugin
    assert files == ["README.md", "pyproject.toml", "tests/test_toy_distill.py", "zoo_toy_distill/__init__.py",
                     "zoo_toy_distill/config.py", "zoo_toy_distill/sampler.py", "zoo_toy_distill/trainer.py"]
    assert 'toy_distill = "zoo_toy_distill"' in (project / "pyproject.toml").read_text()


def test_installed_plugin_is_listed_by_the_cli(installed_plugin):
    _, site, _ = installed_plugin
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    listed = subprocess.run([sys.executable, "-m", "zoo", "list", "toy*"], capture_output=True, text=True, env=env,
                            timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith("toy_distill") and "text-to-image" in listed.stdout
    plugins = subprocess.run([sys.executable, "-m", "zoo", "plugins"], capture_output=True, text=True, env=env,
                             timeout=120)
    assert '"package": "zoo-toy-distill"' in plugins.stdout


def test_installed_plugin_passes_the_contract_check(installed_plugin, tmp_path):
    _, site, _ = installed_plugin
    entry_points = [ep for dist in metadata.distributions(path=[str(site)]) for ep in dist.entry_points
                    if ep.group == "distill_zoo"]
    spec = load_registry(entry_points).get("toy_distill")
    tiny = build_tiny_sd(tmp_path / "teacher")
    report = check_method(spec, workdir=tmp_path / "check", model=tiny,
                          config_overrides=[f"model={tiny}", "train.batch_size=2"])
    assert report.ok, report.problems
    assert report.checked == ["spec", "config", "sampler", "trainer"]
    assert report.sample_nfe == 4  # the template's default: 4 DDIM steps, no CFG


def test_bad_names_and_existing_folders(tmp_path):
    runner = CliRunner()
    bad = runner.invoke(main, ["new-plugin", "9lives", "--dir", str(tmp_path)])
    assert bad.exit_code == 1 and "Invalid plugin name '9lives'" in bad.output
    assert runner.invoke(main, ["new-plugin", "twice", "--dir", str(tmp_path)]).exit_code == 0
    again = runner.invoke(main, ["new-plugin", "twice", "--dir", str(tmp_path)])
    assert again.exit_code == 1 and "already exists" in again.output
