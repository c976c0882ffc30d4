"""Name clashes and broken plugins are decided, not discovered (issue #20 §2).

Built-in plugins win over third-party ones whatever the entry-point discovery order, in every front-end (``zoo``,
``python -m zoo``, the ComfyUI node pack); third-party clashes go to the first plugin by name; a rejected plugin is
rejected whole with one message naming both; lazy targets are checked for form at registration and resolve with one
line on first use; a broken plugin is one stderr line, once per process, and stays listed by ``zoo plugins``.
"""

import json
import os
import subprocess
import sys
import warnings
from importlib import metadata
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
from click.testing import CliRunner

import zoo.registry as registry_module
from zoo.cli import main
from zoo.errors import PluginError
from zoo.registry import load_registry, set_registry
from zoo.spec import MethodSpec, Paper, target_form_problem

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
BUILTIN = {e.name: e for e in metadata.entry_points(group="distill_zoo")
           if e.dist is not None and e.dist.metadata["Name"] == "distill-zoo"}

FAST_REJECTED = ("plugin 'fast' (zoo-fast 0.1) was rejected: it registers 'swiftbrush', which built-in plugin "
                 "'swiftbrush' (distill-zoo) already provides; rename the method or uninstall zoo-fast")
SHADOW_REJECTED = ("plugin 'swiftbrush' (zoo-fast 0.1) was rejected: built-in plugin 'swiftbrush' (distill-zoo) has "
                   "the same name and is loaded instead; rename the plugin's entry point or uninstall zoo-fast")
BROKEN_LINE = ("distill-zoo: plugin 'broken' (zoo-fast 0.1) not loaded: import failed: ModuleNotFoundError: No module "
               "named 'zoo_no_such_dependency' (see 'zoo plugins')")


@pytest.fixture(autouse=True)
def _fresh_reports(monkeypatch):
    """Each test is a new 'process' as far as the once-per-process load-failure lines are concerned."""
    monkeypatch.setattr(registry_module, "_REPORTED", set())
    monkeypatch.delenv("ZOO_LOAD_PLUGINS", raising=False)


def ep(name, module):
    return EntryPoint(name=name, value=f"fake_plugins.{module}", group="distill_zoo")


def install(site: Path, package: str, version: str, entry_points: dict[str, str]) -> list[EntryPoint]:
    """A distribution 'installed' into the folder ``site`` (a ``.dist-info`` with its entry points)."""
    info = site / f"{package.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(
        "[distill_zoo]\n" + "".join(f"{name} = fake_plugins.{module}\n" for name, module in entry_points.items()))
    return [e for dist in metadata.distributions(path=[str(site)]) if dist.metadata["Name"] == package
            for e in dist.entry_points if e.group == "distill_zoo"]


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("distill-zoo:")]


# -- built-ins win -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("builtin_first", [True, False])
def test_a_builtin_wins_and_the_third_party_plugin_is_rejected_whole(tmp_path, capsys, builtin_first):
    fast = install(tmp_path, "zoo-fast", "0.1", {"fast": "fast"})
    found = [BUILTIN["swiftbrush"], *fast] if builtin_first else [*fast, BUILTIN["swiftbrush"]]
    registry = load_registry(found)
    assert registry.get("swiftbrush").plugin == "swiftbrush"
    assert registry.plugins["swiftbrush"].builtin and registry.plugins["swiftbrush"].methods == ("swiftbrush",)
    assert "fast_extra" not in registry  # its other, non-clashing method is rejected too
    assert registry.plugins["fast"].error == FAST_REJECTED and registry.plugins["fast"].methods == ()
    assert error_lines(capsys.readouterr().err) == [f"distill-zoo: {FAST_REJECTED} (see 'zoo plugins')"]


@pytest.mark.parametrize("builtin_first", [True, False])
def test_a_third_party_entry_point_named_like_a_builtin_is_rejected_unimported(tmp_path, builtin_first):
    shadow = install(tmp_path, "zoo-fast", "0.1", {"swiftbrush": "shadow"})
    found = [BUILTIN["swiftbrush"], *shadow] if builtin_first else [*shadow, BUILTIN["swiftbrush"]]
    registry = load_registry(found)
    assert registry.get("swiftbrush").plugin == "swiftbrush" and registry.plugins["swiftbrush"].builtin
    assert "shadow" not in registry and "fake_plugins.shadow" not in sys.modules
    rejected = registry.plugins["swiftbrush (zoo-fast)"]
    assert (rejected.name, rejected.package, rejected.error) == ("swiftbrush", "zoo-fast", SHADOW_REJECTED)


def test_a_builtin_that_failed_to_load_still_keeps_its_name(tmp_path):
    """Built-ins win always: a broken built-in does not hand its method name to a third-party plugin."""
    builtin = install(tmp_path / "a", "distill-zoo", "9.9", {"swiftbrush": "broken_import"})
    registry = load_registry([*install(tmp_path / "b", "zoo-fast", "0.1", {"fast": "fast"}), *builtin])
    assert "swiftbrush" not in registry and "fast_extra" not in registry
    assert registry.failures["swiftbrush"].startswith("import failed: ImportError")
    assert registry.plugins["fast"].error == (
        "plugin 'fast' (zoo-fast 0.1) was rejected: it registers 'swiftbrush', which built-in plugin 'swiftbrush' "
        "(distill-zoo) already provides (it failed to load, see 'zoo plugins'); rename the method or uninstall "
        "zoo-fast")


@pytest.mark.parametrize("found", [[ep("alpha", "alpha"), ep("clash", "clash")],
                                   [ep("clash", "clash"), ep("alpha", "alpha")]], ids=["alpha-first", "clash-first"])
def test_third_party_clash_goes_to_the_first_plugin_by_name(found):
    registry = load_registry(found)
    assert [s.name for s in registry.list()] == ["alpha_one", "alpha_two"]
    assert "gamma" not in registry and registry.get("a1").plugin == "alpha"
    assert registry.plugins["clash"].error == (
        "plugin 'clash' was rejected: it registers 'a1', which plugin 'alpha' already provides as an alias of "
        "'alpha_one' (third-party plugins load in name order; the first one wins); rename the method or remove "
        "plugin 'clash'")


# -- lazy targets ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["a:b", "pkg.mod:attr", "_p.m2:Cls.factory", None, print])
def test_good_target_forms(value):
    assert target_form_problem(value) is None


@pytest.mark.parametrize("value", ["pkg.mod", "pkg.mod.attr", "a:b:c", ":b", "a:", "a..b:c", "a/b.py:c", "1a:b",
                                   "a b:c", "a:b\n", "pkg.mod:attr()", 42])
def test_bad_target_forms(value):
    assert target_form_problem(value)


def test_a_bad_target_form_rejects_the_plugin_whole_at_registration(capsys):
    registry = load_registry([ep("bad_target", "bad_target"), ep("beta", "beta")])
    assert [s.name for s in registry.list()] == ["beta"]  # not even its well-formed method
    error = registry.plugins["bad_target"].error
    assert error == ("register_methods failed: PluginError: Method 'bad_target' (plugin bad_target): trainer target "
                     "'fake_plugins/targets.py:trainer' must look like 'package.module:attr' (dotted Python names, "
                     "exactly one ':')")
    assert error_lines(capsys.readouterr().err) == [
        f"distill-zoo: plugin 'bad_target' not loaded: {error} (see 'zoo plugins')"]


def test_registry_add_checks_the_target_form_too():
    registry = load_registry([ep("beta", "beta")])
    spec = MethodSpec(name="delta", task="text-to-image", summary="x", paper=Paper("x"), sampler="a:b",
                      trainer="a:b", config="a.b")
    with pytest.raises(PluginError, match=r"^Method 'delta': config target 'a.b' must look like"):
        registry.add(spec)
    assert "delta" not in registry


def test_unresolved_targets_are_one_line_errors_on_first_use():
    registry = load_registry([ep("unresolved", "unresolved")])
    spec = registry.get("unresolved")  # well formed: registered, checked for importability only when used
    expected = {
        "sampler": "Method 'unresolved' (plugin unresolved): cannot import 'fake_plugins.no_such_module' for its "
                   "sampler (ModuleNotFoundError: No module named 'fake_plugins.no_such_module'); reinstall or fix "
                   "the plugin",
        "trainer": "Method 'unresolved' (plugin unresolved): trainer target 'fake_plugins.targets:no_such_trainer' "
                   "does not resolve: module 'fake_plugins.targets' has no attribute 'no_such_trainer' "
                   "(AttributeError); reinstall or fix the plugin",
        "config": "Method 'unresolved' (plugin unresolved): config target "
                  "'fake_plugins.targets:AlphaConfig.no_such_attr' does not resolve: "
                  "'fake_plugins.targets.AlphaConfig' has no attribute 'no_such_attr' (AttributeError); reinstall or "
                  "fix the plugin",
    }
    for what, message in expected.items():
        with pytest.raises(PluginError) as info:
            spec.load(what)
        assert str(info.value) == message
        assert info.value.__suppress_context__ and info.value.__cause__ is None


def test_a_dotted_attribute_resolves():
    spec = MethodSpec(name="dotted", task="text-to-image", summary="x", paper=Paper("x"),
                      sampler="fake_plugins.targets:Optim.lr", trainer="a:b", config="a:b")
    assert spec.load("sampler") == 1e-4


def test_the_cli_reports_an_unresolved_target_as_one_line(fresh_registry):
    set_registry(load_registry([ep("unresolved", "unresolved")]))
    result = CliRunner().invoke(main, ["info", "unresolved"])
    assert result.exit_code == 1
    assert result.output.splitlines()[-1].startswith("Error: Method 'unresolved' (plugin unresolved): config target")
    assert "Traceback" not in result.output


# -- broken plugins ----------------------------------------------------------------------------------------------------
def test_a_broken_plugin_is_one_stderr_line_once_per_process_and_listed_by_zoo_plugins(tmp_path, capsys,
                                                                                        fresh_registry):
    found = install(tmp_path, "zoo-fast", "0.1", {"broken": "broken_dependency"}) + [ep("beta", "beta")]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no Python warning (two lines with the source line) any more
        registry = load_registry(found)
        again = load_registry(found)
    assert capsys.readouterr().err.splitlines() == [BROKEN_LINE]
    for loaded in (registry, again):
        assert [s.name for s in loaded.list()] == ["beta"]
        assert loaded.failures["broken"] == ("import failed: ModuleNotFoundError: No module named "
                                             "'zoo_no_such_dependency'")
    set_registry(registry)
    listed = json.loads(CliRunner().invoke(main, ["plugins"]).output)
    assert {"name": "broken", "package": "zoo-fast", "version": "0.1", "builtin": False, "methods": [],
            "error": registry.failures["broken"]} in listed


# -- every front-end -------------------------------------------------------------------------------------------------
@pytest.fixture
def zoo_fast_site(tmp_path):
    """zoo-fast 0.1 'installed' on a folder: a method clash, an entry-point name clash and a broken plugin."""
    site = tmp_path / "site"
    install(site, "zoo-fast", "0.1", {"fast": "fast", "swiftbrush": "shadow", "broken": "broken_dependency"})
    return site


def test_the_comfyui_node_pack_sees_the_same_registry(zoo_fast_site, monkeypatch, fresh_registry, capsys):
    from zoo.comfy_harness import ComfyHarness
    from zoo.registry import get_registry

    monkeypatch.syspath_prepend(str(zoo_fast_site))
    with ComfyHarness(ROOT / "nodes") as comfy:
        methods = comfy.mappings["DistillZooLoadModel"].INPUT_TYPES()["required"]["method"][0]
    assert "swiftbrush" in methods and "fast_extra" not in methods and "shadow" not in methods
    assert get_registry().get("swiftbrush").plugin == "swiftbrush"
    assert sorted(error_lines(capsys.readouterr().err)) == sorted(
        [BROKEN_LINE, f"distill-zoo: {FAST_REJECTED} (see 'zoo plugins')",
         f"distill-zoo: {SHADOW_REJECTED} (see 'zoo plugins')"])


def test_zoo_and_python_m_zoo_and_the_harness_agree_under_a_clash(zoo_fast_site):
    env = {k: v for k, v in os.environ.items() if k != "ZOO_LOAD_PLUGINS"}
    env["PYTHONPATH"] = os.pathsep.join([str(zoo_fast_site), str(TESTS)])
    env["PYTHONWARNINGS"] = "default"
    fronts = {"zoo": [str(Path(sys.executable).parent / "zoo")], "python -m zoo": [sys.executable, "-m", "zoo"]}
    results = {}
    for front, command in fronts.items():
        for args in (["list"], ["plugins"]):
            done = subprocess.run([*command, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
            assert done.returncode == 0, (front, args, done.stderr)
            results[front, args[0]] = done
    harness = subprocess.run([sys.executable, "-m", "zoo.comfy_harness", "object-info", "nodes"], capture_output=True,
                             text=True, env=env, cwd=ROOT, timeout=120)
    assert harness.returncode == 0, harness.stderr

    listed = results["zoo", "list"].stdout
    assert listed == results["python -m zoo", "list"].stdout
    names = [line.split()[0] for line in listed.splitlines()]
    assert "swiftbrush" in names and "fast_extra" not in names and "shadow" not in names
    plugins = json.loads(results["zoo", "plugins"].stdout)
    assert plugins == json.loads(results["python -m zoo", "plugins"].stdout)
    by_package = {(p["name"], p["package"]): p for p in plugins}
    assert by_package["swiftbrush", "distill-zoo"]["methods"] == ["swiftbrush"]
    assert by_package["swiftbrush", "distill-zoo"]["builtin"] is True
    assert by_package["swiftbrush", "zoo-fast"]["error"] == SHADOW_REJECTED
    assert by_package["fast", "zoo-fast"]["error"] == FAST_REJECTED
    assert by_package["broken", "zoo-fast"]["error"].startswith("import failed: ModuleNotFoundError")
    methods = json.loads(harness.stdout)["DistillZooLoadModel"]["input"]["required"]["method"][0]
    assert "swiftbrush" in methods and "fast_extra" not in methods

    expected = sorted([BROKEN_LINE, f"distill-zoo: {FAST_REJECTED} (see 'zoo plugins')",
                       f"distill-zoo: {SHADOW_REJECTED} (see 'zoo plugins')"])
    for done in [*results.values(), harness]:
        assert sorted(done.stderr.splitlines()) == expected, done.stderr  # one line each, once, nothing else
