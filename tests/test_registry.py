"""The plugin registry: entry points, isolation of broken plugins, duplicates, ZOO_LOAD_PLUGINS, lookups."""

from importlib.metadata import EntryPoint, entry_points

import pytest

import zoo.registry as registry_module
from zoo.errors import DuplicateMethodError, PluginError, UnknownMethodError
from zoo.registry import load_registry
from zoo.spec import MethodSpec, Paper


def ep(name, module):
    return EntryPoint(name=name, value=f"fake_plugins.{module}", group="distill_zoo")


GOOD = [ep("alpha", "alpha"), ep("beta", "beta")]


@pytest.fixture(autouse=True)
def _fresh_reports(monkeypatch):
    """Load failures are printed once per process: each test starts with none printed yet."""
    monkeypatch.setattr(registry_module, "_REPORTED", set())


def test_entry_points_register_methods_tagged_with_their_plugin():
    registry = load_registry(GOOD)
    assert [s.name for s in registry.list()] == ["alpha_one", "alpha_two", "beta"]
    assert registry.get("alpha_one").plugin == "alpha"
    assert registry.get("beta").plugin == "beta"
    assert registry.plugins["alpha"].methods == ("alpha_one", "alpha_two")


def test_lookup_by_alias_dash_and_case():
    registry = load_registry(GOOD)
    assert registry.get("a1").name == "alpha_one"
    assert registry.get("Alpha-One").name == "alpha_one"


def test_unknown_method_suggests_close_match():
    registry = load_registry(GOOD)
    with pytest.raises(UnknownMethodError) as info:
        registry.get("alpha_tow")
    message = str(info.value)
    assert "Did you mean 'alpha_two'?" in message and "\n" not in message


def test_wildcards_and_task_filter():
    registry = load_registry(GOOD)
    assert [s.name for s in registry.list("alpha*")] == ["alpha_one", "alpha_two"]
    assert [s.name for s in registry.list("a1")] == ["alpha_one"]
    assert [s.name for s in registry.list(task="super-resolution")] == ["alpha_two"]
    assert registry.list("zzz*") == []


def test_duplicate_names_reject_the_whole_later_plugin_and_name_both(capsys):
    registry = load_registry([ep("alpha", "alpha"), ep("clash", "clash")])
    assert "plugin 'clash' was rejected" in capsys.readouterr().err
    assert "gamma" not in registry  # all-or-nothing: nothing of the clashing plugin was added
    error = registry.plugins["clash"].error
    assert "'alpha'" in error and "'clash'" in error and "a1" in error


def test_duplicate_add_raises_and_leaves_registry_unchanged():
    registry = load_registry(GOOD)
    before = [s.name for s in registry.list()]
    spec = MethodSpec(name="beta", task="text-to-image", summary="x", paper=Paper("x"), sampler="a:b",
                      trainer="a:b", config="a:b", plugin="other")
    with pytest.raises(DuplicateMethodError, match="'beta'.*'other'"):
        registry.add(spec)
    assert [s.name for s in registry.list()] == before


@pytest.mark.parametrize("module,stage", [("broken_import", "import failed"),
                                          ("broken_register", "register_methods failed")])
def test_broken_plugin_is_reported_and_others_keep_working(module, stage, capsys):
    registry = load_registry([ep(module, module), *GOOD])
    assert f"distill-zoo: plugin {module!r} not loaded: {stage}" in capsys.readouterr().err
    assert [s.name for s in registry.list()] == ["alpha_one", "alpha_two", "beta"]
    assert registry.failures[module].startswith(stage)


def test_zoo_load_plugins_restricts_and_empty_loads_none(monkeypatch):
    monkeypatch.setenv("ZOO_LOAD_PLUGINS", "beta")
    assert [s.name for s in load_registry(GOOD).list()] == ["beta"]
    monkeypatch.setenv("ZOO_LOAD_PLUGINS", "")
    registry = load_registry(GOOD)
    assert registry.list() == [] and registry.plugins == {}


def test_copy_is_independent():
    registry = load_registry(GOOD)
    clone = registry.copy()
    clone.add(MethodSpec(name="delta", task="text-to-image", summary="x", paper=Paper("x"), sampler="a:b",
                         trainer="a:b", config="a:b"))
    assert "delta" in clone and "delta" not in registry


def test_lazy_targets_resolve_and_bad_targets_explain():
    spec = load_registry(GOOD).get("alpha_one")
    assert spec.load("sampler")() == "sampler"
    assert spec.load("config").__name__ == "AlphaConfig"
    bad = MethodSpec(name="bad", task="text-to-image", summary="x", paper=Paper("x"), sampler="fake_plugins.targets",
                     trainer="fake_plugins.targets:missing", config="a:b")
    with pytest.raises(PluginError, match="module:attr"):
        bad.load("sampler")
    with pytest.raises(PluginError, match="no attribute 'missing'"):
        bad.load("trainer")


@pytest.mark.parametrize("kwargs,match", [({"name": "Bad-Name"}, "Invalid method name"),
                                          ({"task": "video"}, "valid tasks"),
                                          ({"aliases": ("ok", "not ok")}, "Invalid method alias")])
def test_spec_validation(kwargs, match):
    base = dict(name="fine", task="text-to-image", summary="x", paper=Paper("x"), sampler="a:b", trainer="a:b",
                config="a:b")
    with pytest.raises(PluginError, match=match):
        MethodSpec(**{**base, **kwargs})


def test_builtin_methods_come_from_this_projects_entry_points(fresh_registry):
    """Every built-in plugin is declared in the distill_zoo group of the distill-zoo distribution."""
    from zoo.registry import get_registry

    ours = [e for e in entry_points(group="distill_zoo") if e.dist and e.dist.metadata["Name"] == "distill-zoo"]
    registry = get_registry()
    for entry in ours:
        assert entry.value.startswith("zoo_plugins."), entry
        assert registry.plugins[entry.name].error is None, registry.plugins[entry.name]
        assert registry.plugins[entry.name].package == "distill-zoo" and registry.plugins[entry.name].builtin
    assert not any(info.builtin for info in registry.plugins.values() if info.package != "distill-zoo")
    assert {s.plugin for s in registry.list()} >= {e.name for e in ours if registry.plugins[e.name].methods}
