"""The method registry: plugins found through entry points, isolated from each other.

``get_registry()`` loads the plugins once per process:

1. every entry point in the ``distill_zoo`` group is imported (built-in methods too: they are declared in this
   project's ``pyproject.toml`` exactly as a third-party package would declare its own);
2. ``ZOO_LOAD_PLUGINS=a,b`` restricts loading to the named plugins; an empty value loads none;
3. a plugin that fails to import or to register is recorded in :attr:`MethodRegistry.failures`, reported with one
   warning, and the others keep working;
4. each plugin's ``register_methods(register)`` hook is called; the specs it registers are tagged with its name.

Tests replace the global registry with :func:`set_registry` (or use :meth:`MethodRegistry.copy`).
"""

from __future__ import annotations

import difflib
import fnmatch
import os
import warnings
from dataclasses import dataclass, replace
from importlib import metadata
from typing import Any, Iterable

import pluggy

from zoo import hookspecs
from zoo.errors import DuplicateMethodError, PluginError, UnknownMethodError
from zoo.spec import MethodSpec

LOAD_PLUGINS_ENV = "ZOO_LOAD_PLUGINS"


@dataclass(frozen=True)
class PluginInfo:
    """What ``zoo plugins`` reports about one plugin."""

    name: str
    package: str | None
    version: str | None
    methods: tuple[str, ...] = ()
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "package": self.package, "version": self.version,
                "methods": list(self.methods), "error": self.error}


class MethodRegistry:
    """Methods by name and alias. :meth:`add` is all-or-nothing."""

    def __init__(self) -> None:
        self._specs: dict[str, MethodSpec] = {}
        self._names: dict[str, str] = {}  # name or alias -> canonical name
        self.plugins: dict[str, PluginInfo] = {}

    # -- building -------------------------------------------------------------------------------------------------
    def add(self, spec: MethodSpec) -> None:
        """Add ``spec``; raise :class:`DuplicateMethodError` (leaving the registry unchanged) on a name clash."""
        if not isinstance(spec, MethodSpec):
            raise PluginError(f"register() takes a zoo.sdk.MethodSpec, got {type(spec).__name__}")
        for name in spec.names:
            if name in self._names:
                other = self._specs[self._names[name]]
                raise DuplicateMethodError(
                    f"Method name {name!r} is registered by both plugin {other.plugin or '?'!r} "
                    f"(method {other.name!r}) and plugin {spec.plugin or '?'!r}; uninstall one of them "
                    f"or restrict loading with {LOAD_PLUGINS_ENV}"
                )
        self._specs[spec.name] = spec
        for name in spec.names:
            self._names[name] = spec.name

    def copy(self) -> "MethodRegistry":
        clone = MethodRegistry()
        clone._specs = dict(self._specs)
        clone._names = dict(self._names)
        clone.plugins = dict(self.plugins)
        return clone

    # -- querying -------------------------------------------------------------------------------------------------
    def __contains__(self, name: str) -> bool:
        return name in self._names

    def get(self, name: str) -> MethodSpec:
        """The spec registered under ``name`` (or an alias); a close-match suggestion otherwise."""
        key = name.strip().lower().replace("-", "_")
        if key in self._names:
            return self._specs[self._names[key]]
        close = difflib.get_close_matches(key, list(self._names), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        known = ", ".join(sorted(self._specs)) or "(none: no plugin is loaded)"
        raise UnknownMethodError(f"Unknown method {name!r}.{hint} Known methods: {known} (see 'zoo list')")

    def list(self, pattern: str | None = None, task: str | None = None) -> list[MethodSpec]:
        """Specs whose name or an alias matches the shell-style ``pattern``, sorted by name."""
        specs = sorted(self._specs.values(), key=lambda s: s.name)
        if pattern:
            pat = pattern.lower()
            specs = [s for s in specs if any(fnmatch.fnmatchcase(n, pat) for n in s.names)]
        if task:
            specs = [s for s in specs if s.task == task]
        return specs

    @property
    def failures(self) -> dict[str, str]:
        return {name: info.error for name, info in self.plugins.items() if info.error}


def _requested_plugins() -> set[str] | None:
    value = os.environ.get(LOAD_PLUGINS_ENV)
    if value is None:
        return None
    return {part.strip() for part in value.split(",") if part.strip()}


def _package_of(entry_point: metadata.EntryPoint) -> tuple[str | None, str | None]:
    dist = getattr(entry_point, "dist", None)
    if dist is None:
        return None, None
    return dist.metadata["Name"], dist.version


def load_registry(entry_points: Iterable[metadata.EntryPoint] | None = None,
                  extra_plugins: Iterable[tuple[str, Any]] = ()) -> MethodRegistry:
    """Build a fresh registry from the ``distill_zoo`` entry points (and ``extra_plugins`` objects, for tests)."""
    if entry_points is None:
        entry_points = metadata.entry_points(group=hookspecs.ENTRY_POINT_GROUP)
    requested = _requested_plugins()
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    registry = MethodRegistry()
    packages: dict[str, tuple[str | None, str | None]] = {}

    candidates: list[tuple[str, Any]] = []
    seen: set[str] = set()
    for entry_point in entry_points:
        if entry_point.name in seen:  # the same distribution seen twice on sys.path
            continue
        seen.add(entry_point.name)
        if requested is not None and entry_point.name not in requested:
            continue
        packages[entry_point.name] = _package_of(entry_point)
        try:
            candidates.append((entry_point.name, entry_point.load()))
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the others
            _record_failure(registry, entry_point.name, packages[entry_point.name], "import", exc)
    candidates.extend((name, obj) for name, obj in extra_plugins if requested is None or name in requested)

    for name, plugin in candidates:
        package, version = packages.get(name, (None, None))
        try:
            manager.register(plugin, name=name)
        except Exception as exc:  # noqa: BLE001
            _record_failure(registry, name, (package, version), "register", exc)
            continue
        registry.plugins[name] = PluginInfo(name, package, version)

    for impl in manager.hook.register_methods.get_hookimpls():
        name = impl.plugin_name
        staged: list[MethodSpec] = []

        def register(spec: MethodSpec, _plugin: str = name, _staged: list = staged) -> None:
            if not isinstance(spec, MethodSpec):
                raise PluginError(f"register() takes a zoo.sdk.MethodSpec, got {type(spec).__name__}")
            _staged.append(replace(spec, plugin=_plugin))

        try:
            impl.function(register=register)
            trial = registry.copy()
            for spec in staged:
                trial.add(spec)
        except Exception as exc:  # noqa: BLE001
            info = registry.plugins[name]
            _record_failure(registry, name, (info.package, info.version), "register_methods", exc)
            continue
        for spec in staged:
            registry.add(spec)
        info = registry.plugins[name]
        registry.plugins[name] = replace(info, methods=tuple(s.name for s in staged))
    return registry


def _record_failure(registry: MethodRegistry, name: str, package: tuple[str | None, str | None], stage: str,
                    exc: Exception) -> None:
    message = f"{type(exc).__name__}: {exc}".splitlines()[0]
    registry.plugins[name] = PluginInfo(name, package[0], package[1], error=f"{stage} failed: {message}")
    warnings.warn(f"distill-zoo plugin {name!r} ({package[0] or 'unknown package'}) was not loaded: {stage} failed: "
                  f"{message}", RuntimeWarning, stacklevel=3)


_registry: MethodRegistry | None = None


def get_registry() -> MethodRegistry:
    """The process-wide registry, loaded on first use."""
    global _registry
    if _registry is None:
        _registry = load_registry()
    return _registry


def set_registry(registry: MethodRegistry | None) -> None:
    """Replace the process-wide registry (None: reload from entry points on next use). For tests and embedders."""
    global _registry
    _registry = registry


def get_method(name: str) -> MethodSpec:
    return get_registry().get(name)


def list_methods(pattern: str | None = None, task: str | None = None) -> list[MethodSpec]:
    return get_registry().list(pattern, task)
