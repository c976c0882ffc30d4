"""The method registry: plugins found through entry points, isolated from each other.

``get_registry()`` loads the plugins once per process; the CLI (``zoo`` and ``python -m zoo``), the gradio app and the
ComfyUI node pack all get their methods from it, so every front-end sees the same methods:

1. every entry point in the ``distill_zoo`` group is a plugin. Built-in methods are declared in this project's
   ``pyproject.toml`` exactly as a third-party package would declare its own; the entry points of the
   ``distill-zoo`` distribution are the *built-in* plugins;
2. ``ZOO_LOAD_PLUGINS=a,b`` restricts loading to the named plugins; an empty value loads none;
3. the built-in plugins are loaded first, then the third-party ones sorted by name, whatever order the entry points
   are discovered in. Built-ins win: a plugin that registers a method name or alias (or uses a plugin name) that a
   built-in or an earlier third-party plugin already has is rejected whole, with one message naming both;
4. each plugin's ``register_methods(register)`` hook is called; the specs it registers are tagged with its name and
   their lazy targets must have the form ``package.module:attr`` (checked here; importability is checked by
   :meth:`MethodSpec.load` on first use);
5. a plugin that fails to import, to register or is rejected is recorded in :attr:`MethodRegistry.plugins` (with its
   error, listed by ``zoo plugins``), reported with one line on stderr once per process, and the others keep working.

Tests replace the global registry with :func:`set_registry` (or use :meth:`MethodRegistry.copy`).
"""

from __future__ import annotations

import difflib
import fnmatch
import os
import re
import sys
from dataclasses import dataclass, replace
from importlib import metadata
from typing import Any, Callable, Iterable

import pluggy

from zoo import hookspecs
from zoo.errors import DuplicateMethodError, PluginError, UnknownMethodError
from zoo.spec import MethodSpec

LOAD_PLUGINS_ENV = "ZOO_LOAD_PLUGINS"


BUILTIN_PACKAGE = "distill-zoo"
"""The distribution whose ``distill_zoo`` entry points are the built-in plugins."""

_REPORTED: set[tuple[str, str | None]] = set()
"""(plugin, package) pairs whose load failure was already printed in this process: one line each, once."""


@dataclass(frozen=True)
class PluginInfo:
    """What ``zoo plugins`` reports about one plugin."""

    name: str
    package: str | None
    version: str | None
    methods: tuple[str, ...] = ()
    error: str | None = None
    builtin: bool = False

    @property
    def label(self) -> str:
        """``built-in plugin 'swiftbrush' (distill-zoo)`` or ``plugin 'fast' (zoo-fast 0.1)``: for messages."""
        if self.builtin:
            return f"built-in plugin {self.name!r} ({self.package})"
        if self.package:
            return f"plugin {self.name!r} ({self.package}{' ' + self.version if self.version else ''})"
        return f"plugin {self.name!r}"

    @property
    def fix(self) -> str:
        """How the user gets rid of this plugin."""
        return f"uninstall {self.package}" if self.package else f"remove plugin {self.name!r}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "package": self.package, "version": self.version, "builtin": self.builtin,
                "methods": list(self.methods), "error": self.error}


class MethodRegistry:
    """Methods by name and alias. :meth:`add` is all-or-nothing."""

    def __init__(self) -> None:
        self._specs: dict[str, MethodSpec] = {}
        self._names: dict[str, str] = {}  # name or alias -> canonical name
        self.plugins: dict[str, PluginInfo] = {}

    # -- building -------------------------------------------------------------------------------------------------
    def add(self, spec: MethodSpec) -> None:
        """Add ``spec``; raise :class:`DuplicateMethodError` on a name clash, :class:`PluginError` on a lazy target
        that is not of the form ``package.module:attr`` (leaving the registry unchanged)."""
        if not isinstance(spec, MethodSpec):
            raise PluginError(f"register() takes a zoo.sdk.MethodSpec, got {type(spec).__name__}")
        spec.check_targets()
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


def _normalized(package: str | None) -> str:
    return re.sub(r"[-_.]+", "-", package).lower() if package else ""


def is_builtin_package(package: str | None) -> bool:
    """Whether ``package`` is this project's own distribution (its entry points are the built-in plugins)."""
    return _normalized(package) == BUILTIN_PACKAGE


@dataclass
class _Candidate:
    info: PluginInfo
    load: Callable[[], Any]

    @property
    def order(self) -> tuple[bool, str, str]:
        """Built-ins first, then by plugin name (then package): the same order whatever the discovery order."""
        return (not self.info.builtin, self.info.name, _normalized(self.info.package))


def _candidates(entry_points: Iterable[metadata.EntryPoint], extra_plugins: Iterable[tuple[str, Any]],
                requested: set[str] | None) -> list[_Candidate]:
    candidates: list[_Candidate] = []
    seen: set[tuple[str, str]] = set()
    for entry_point in entry_points:
        package, version = _package_of(entry_point)
        key = (entry_point.name, _normalized(package))
        if key in seen:  # the same distribution seen twice on sys.path
            continue
        seen.add(key)
        if requested is not None and entry_point.name not in requested:
            continue
        info = PluginInfo(entry_point.name, package, version, builtin=is_builtin_package(package))
        candidates.append(_Candidate(info, entry_point.load))
    for name, obj in extra_plugins:
        if requested is None or name in requested:
            candidates.append(_Candidate(PluginInfo(name, None, None), lambda obj=obj: obj))
    return sorted(candidates, key=lambda c: c.order)


def load_registry(entry_points: Iterable[metadata.EntryPoint] | None = None,
                  extra_plugins: Iterable[tuple[str, Any]] = ()) -> MethodRegistry:
    """Build a fresh registry from the ``distill_zoo`` entry points (and ``extra_plugins`` objects, for tests; they
    count as third-party plugins without a package)."""
    if entry_points is None:
        entry_points = metadata.entry_points(group=hookspecs.ENTRY_POINT_GROUP)
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    registry = MethodRegistry()
    holders: dict[str, PluginInfo] = {}  # plugin name -> the plugin that has it
    reserved: dict[str, PluginInfo] = {}  # method name of a built-in that failed to load -> that built-in

    for candidate in _candidates(entry_points, extra_plugins, _requested_plugins()):
        info = candidate.info
        holder = holders.get(info.name)
        if holder is not None:
            key = f"{info.name} ({info.package or 'no package'})"
            _report(registry, key, replace(info, error=(
                f"{info.label} was rejected: {holder.label} has the same name and is loaded instead; rename the "
                f"plugin's entry point or {info.fix}")))
            continue
        holders[info.name] = info
        registry.plugins[info.name] = info
        staged: list[MethodSpec] = []
        stage = "import"
        try:
            plugin = candidate.load()
            stage = "register"
            manager.register(plugin, name=info.name)
            stage = "register_methods"

            def register(spec: MethodSpec, _plugin: str = info.name, _staged: list = staged) -> None:
                if not isinstance(spec, MethodSpec):
                    raise PluginError(f"register() takes a zoo.sdk.MethodSpec, got {type(spec).__name__}")
                spec = replace(spec, plugin=_plugin)
                spec.check_targets()
                _staged.append(spec)

            for impl in manager.hook.register_methods.get_hookimpls():
                if impl.plugin_name == info.name:
                    impl.function(register=register)
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the others
            if manager.has_plugin(info.name):
                manager.unregister(name=info.name)
            message = f"{type(exc).__name__}: {exc}".splitlines()[0]
            _report(registry, info.name, replace(info, error=f"{stage} failed: {message}"))
            if info.builtin:
                reserved[info.name] = info
            continue
        clash = _clash(registry, info, staged, reserved)
        if clash:
            manager.unregister(name=info.name)
            _report(registry, info.name, replace(info, error=clash))
            continue
        for spec in staged:
            registry.add(spec)
        registry.plugins[info.name] = replace(info, methods=tuple(s.name for s in staged))
    return registry


def _clash(registry: MethodRegistry, info: PluginInfo, staged: list[MethodSpec],
           reserved: dict[str, PluginInfo]) -> str | None:
    """The one-line rejection of a plugin whose specs reuse a name or alias already taken, or None."""
    rejected = f"{info.label} was rejected: it registers"
    own: dict[str, str] = {}
    for spec in staged:
        for name in spec.names:
            if name in own:
                return f"{rejected} {name!r} twice (methods {own[name]!r} and {spec.name!r}); rename one of them"
            own[name] = spec.name
            if name in registry:
                other = registry.get(name)
                owner = registry.plugins.get(other.plugin or "") or PluginInfo(other.plugin or "?", None, None)
                role = "" if other.name == name else f" as an alias of {other.name!r}"
            elif name in reserved:
                owner, role = reserved[name], " (it failed to load, see 'zoo plugins')"
            else:
                continue
            why = "" if owner.builtin else " (third-party plugins load in name order; the first one wins)"
            return (f"{rejected} {name!r}, which {owner.label} already provides{role}{why}; rename the method or "
                    f"{info.fix}")
    return None


def _report(registry: MethodRegistry, key: str, info: PluginInfo) -> None:
    """Record a plugin that was not loaded and say so with one line on stderr, once per process and plugin."""
    registry.plugins[key] = info
    if (info.name, info.package) in _REPORTED:
        return
    _REPORTED.add((info.name, info.package))
    error = info.error or ""
    line = error if error.startswith(info.label) else f"{info.label} not loaded: {error}"
    stream = sys.stderr
    if stream is not None:  # pythonw and some embedders have no stderr
        try:
            stream.write(f"distill-zoo: {line} (see 'zoo plugins')\n")
            stream.flush()
        except (OSError, ValueError):
            pass


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
