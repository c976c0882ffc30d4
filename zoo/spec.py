"""Plain data describing a distillation method: what a plugin registers.

Nothing here imports torch. Trainers, samplers and configs are named as lazy ``"module:attr"`` strings (or given as
objects) and are imported only by :meth:`MethodSpec.load`.

Contracts of the lazy targets (see ``docs/PLUGINS.md`` for the full description):

``sampler``
    ``factory(model: ResolvedModel | None, *, device="cpu", dtype=None, **options) -> sampler``. A text-to-image
    sampler is called as ``sampler(prompt, negative_prompt=None, steps=None, guidance_scale=None, seed=0,
    height=None, width=None, batch_size=1, progress=None, **method_options) -> zoo.sampling.SampleResult``.
    A super-resolution sampler is called as ``sampler(image, scale=None, tile=None, progress=None) ->
    zoo.sampling.SampleResult``.
``trainer``
    ``factory(config) -> zoo.train.Trainer`` where ``config`` is the resolved omegaconf config of the method.
``config``
    a dataclass whose field defaults are the method's defaults; loaded as an omegaconf structured config.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from zoo.errors import PluginError

TASKS = ("text-to-image", "super-resolution")
MANIFEST_NAME = "zoo.json"
"""File name of the manifest that a model folder exported by distill-zoo carries (method, task, base model,
recommended sampler settings), so that ``zoo run <folder or hub ref>`` needs no method name."""

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
_TARGET_RE = re.compile(rf"{_DOTTED}:{_DOTTED}")

TARGET_FIELDS = ("sampler", "trainer", "config", "comfy_patch", "spandrel_arch")
"""The fields of :class:`MethodSpec` that hold a lazy ``"package.module:attr"`` target (or the object itself)."""


def target_form_problem(value: Any) -> str | None:
    """Why ``value`` is not a usable lazy target (None when it is one, an object, or None).

    A string target is ``package.module:attribute``: dotted Python identifiers, exactly one ``:``; the attribute may
    be dotted (``module:Class.factory``)."""
    if value is None:
        return None
    if not isinstance(value, str):
        if callable(value):
            return None
        return f"must be a 'package.module:attr' string or a callable, not a {type(value).__name__}"
    if not _TARGET_RE.fullmatch(value):
        return "must look like 'package.module:attr' (dotted Python names, exactly one ':')"
    return None


@dataclass(frozen=True)
class Paper:
    """The paper a method implements."""

    title: str
    arxiv: str | None = None
    """arXiv identifier such as ``"2312.05239"``."""
    code: str | None = None
    """URL of the official implementation."""

    @property
    def arxiv_url(self) -> str | None:
        return f"https://arxiv.org/abs/{self.arxiv}" if self.arxiv else None


@dataclass(frozen=True)
class Artifact:
    """A published set of files on the Hugging Face hub that a method's sampler can run."""

    repo_id: str
    files: tuple[str, ...] = ()
    """File names inside the repository; empty means the whole (diffusers-layout) repository."""
    base_model: str | None = None
    """Hub id of the base model the files apply to (for LoRAs and bare UNets)."""
    license: str | None = None
    description: str = ""
    settings: Mapping[str, Any] = field(default_factory=dict)
    """Recommended sampler settings: steps, guidance_scale, scheduler, eta, timesteps, lora_scale, ..."""


@dataclass(frozen=True)
class Preset:
    """A named recipe: an artifact plus the sampler settings it is meant to be run with."""

    name: str
    description: str
    artifact: Artifact | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ResolvedModel:
    """A model reference resolved to a local folder (see :mod:`zoo.hub`)."""

    path: Path
    ref: str
    """The reference as the user gave it (``hf-hub:org/repo@rev``, ``org/repo`` or a folder)."""
    commit: str | None = None
    """The resolved commit hash for hub models; None for local folders."""
    manifest: Mapping[str, Any] = field(default_factory=dict)
    """Contents of the folder's ``zoo.json`` (empty when it has none)."""
    root: Path | None = None
    """The folder every file the model names must stay inside (None: ``path`` itself). For hub snapshots it is the
    repository's cache folder, because snapshot files are links into its ``blobs/``."""
    source: str = "local"
    """Where the files come from: ``"hub"``, ``"local"`` or ``"package"``. Manifests of hub and package models may
    name other models only by hub id or ``pkg:`` reference (:func:`zoo.hub.manifest_model_ref`)."""

    def file(self, name: str, what: str = "file") -> Path:
        """The path of ``name`` inside the model, refused with one line when it would leave the model's folder
        (absolute, ``..``, or a link pointing out); see :mod:`zoo.paths`."""
        from zoo.paths import confine

        return confine(self.root or self.path, name, what=what, source=f"the zoo.json of {self.ref}",
                       folder=self.path)


@dataclass(frozen=True)
class MethodSpec:
    """Everything the registry knows about one method.

    Attributes:
        name: lowercase id ``[a-z][a-z0-9_]*``; also the entry-point name for built-ins.
        task: one of :data:`TASKS`.
        summary: one-sentence description shown by ``zoo list``.
        paper: the paper implemented.
        sampler: lazy ``"module:attr"`` (or object) of the sampler factory.
        trainer: lazy ``"module:attr"`` (or object) of the trainer factory.
        config: lazy ``"module:attr"`` (or class) of the structured config dataclass.
        aliases: other names that resolve to this method.
        artifacts: known published artifacts.
        presets: named recipes (e.g. Hyper-SD's per-step LoRAs).
        default_model: model reference used when the user names none (e.g. the embedded testbed student).
        comfy_patch: lazy ``"module:attr"`` (or function) that applies a model folder of this method to a ComfyUI
            MODEL: ``patch(model, resolved, *, strength, guidance) -> MODEL`` (see :mod:`zoo.comfy_native`); None
            when the method has no native ComfyUI form.
        hub_files: file patterns this method's sampler needs from a hub repository beyond the safe defaults, and
            loads safely itself (e.g. IMDN's official ``*.pth``, read with ``weights_only=True``); fetched whenever a
            model of this method comes from the hub.
        spandrel_arch: lazy ``"module:attr"`` (or function) returning a ``spandrel.ArchSupport`` for this method's
            weights files, so that ComfyUI's core upscale-model loader runs them (registered by the node pack where
            spandrel is installed); None otherwise.
        plugin: name of the plugin that registered the spec; filled in by the registry.
    """

    name: str
    task: str
    summary: str
    paper: Paper
    sampler: str | Callable[..., Any]
    trainer: str | Callable[..., Any]
    config: str | type
    aliases: tuple[str, ...] = ()
    artifacts: tuple[Artifact, ...] = ()
    presets: tuple[Preset, ...] = ()
    default_model: str | None = None
    comfy_patch: str | Callable[..., Any] | None = None
    spandrel_arch: str | Callable[..., Any] | None = None
    hub_files: tuple[str, ...] = ()
    plugin: str | None = None

    def __post_init__(self) -> None:
        for label, value in [("name", self.name), *[("alias", a) for a in self.aliases]]:
            if not isinstance(value, str) or not _NAME_RE.match(value):
                raise PluginError(
                    f"Invalid method {label} {value!r}: use lowercase letters, digits and underscores, starting with a letter"
                )
        if self.task not in TASKS:
            raise PluginError(f"Method {self.name!r} has task {self.task!r}; valid tasks: {', '.join(TASKS)}")
        if not isinstance(self.paper, Paper):
            raise PluginError(f"Method {self.name!r}: paper must be a zoo.sdk.Paper, got {type(self.paper).__name__}")
        names = [p.name for p in self.presets]
        if len(set(names)) != len(names):
            raise PluginError(f"Method {self.name!r} has duplicate preset names: {names}")

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)

    def check_targets(self) -> None:
        """Raise a one-line :class:`PluginError` naming the first lazy target field whose string is not of the form
        ``package.module:attr`` (called by the registry when a plugin registers the spec)."""
        for what in TARGET_FIELDS:
            value = getattr(self, what)
            problem = target_form_problem(value)
            if problem:
                raise PluginError(f"Method {self.name!r}{self._where()}: {what} target {value!r} {problem}")

    def _where(self) -> str:
        return f" (plugin {self.plugin})" if self.plugin else ""

    def load(self, what: str) -> Any:
        """Import and return the lazy target ``what`` (``"sampler"``, ``"trainer"``, ``"config"`` or
        ``"comfy_patch"``, ``"spandrel_arch"``).

        Every failure is one :class:`PluginError` line naming the method, its plugin, the target and the cause (the
        module that could not be imported, the attribute that is missing), never a traceback."""
        target = getattr(self, what)
        if not isinstance(target, str):
            return target
        where = self._where()
        problem = target_form_problem(target)
        if problem:
            raise PluginError(f"Method {self.name!r}{where}: {what} target {target!r} {problem}")
        module_name, _, attr = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # noqa: BLE001 - a plugin's import error of any kind, as one line
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise PluginError(f"Method {self.name!r}{where}: cannot import {module_name!r} for its {what} "
                              f"({type(exc).__name__}: {detail}); reinstall or fix the plugin") from None
        value: Any = module
        owner, path = f"module {module_name!r}", module_name
        for part in attr.split("."):
            try:
                value = getattr(value, part)
            except AttributeError:
                raise PluginError(f"Method {self.name!r}{where}: {what} target {target!r} does not resolve: "
                                  f"{owner} has no attribute {part!r} (AttributeError); reinstall or fix the "
                                  f"plugin") from None
            except Exception as exc:  # noqa: BLE001 - e.g. a lazy module __getattr__ that fails to import
                detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                raise PluginError(f"Method {self.name!r}{where}: {what} target {target!r} does not resolve: "
                                  f"{path}.{part} raised {type(exc).__name__}: {detail}; reinstall or fix the "
                                  f"plugin") from None
            path = f"{path}.{part}"
            owner = repr(path)
        return value

    def preset(self, name: str) -> Preset:
        """Return the preset called ``name`` or raise an error that lists the valid ones."""
        from zoo.errors import InputError

        for preset in self.presets:
            if preset.name == name:
                return preset
        valid = ", ".join(p.name for p in self.presets) or "(this method has no presets)"
        raise InputError(f"Unknown preset {name!r} for method {self.name!r}; valid presets: {valid}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (lazy targets stay strings)."""

        def plain(value: Any) -> Any:
            if is_dataclass(value) and not isinstance(value, type):
                return {k: plain(v) for k, v in asdict(value).items()}
            if isinstance(value, Mapping):
                return {k: plain(v) for k, v in value.items()}
            if isinstance(value, (list, tuple)):
                return [plain(v) for v in value]
            if isinstance(value, (str, int, float, bool)) or value is None:
                return value
            if isinstance(value, type):
                return f"{value.__module__}:{value.__qualname__}"
            return f"{getattr(value, '__module__', '?')}:{getattr(value, '__qualname__', repr(value))}"

        return {
            "name": self.name,
            "aliases": list(self.aliases),
            "task": self.task,
            "summary": self.summary,
            "paper": {**plain(self.paper), "arxiv_url": self.paper.arxiv_url},
            "sampler": plain(self.sampler),
            "trainer": plain(self.trainer),
            "config": plain(self.config),
            "artifacts": plain(self.artifacts),
            "presets": plain(self.presets),
            "default_model": self.default_model,
            "comfy_patch": plain(self.comfy_patch),
            "spandrel_arch": plain(self.spandrel_arch),
            "hub_files": list(self.hub_files),
            "plugin": self.plugin,
        }
