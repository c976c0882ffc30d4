"""Import a custom node pack by path the way ComfyUI's ``nodes.py::load_custom_node`` does.

1. A folder is imported from its ``__init__.py`` with ``importlib.util.spec_from_file_location`` under the module
   name ``<path with '.' replaced by '_x_'>`` (so relative imports inside the pack work and the pack's folder name
   never becomes a top-level module); a single ``.py`` file is imported under its path without the suffix.
2. The V1 API wins: a module exporting ``NODE_CLASS_MAPPINGS`` is registered from it (ids in ``ignore`` — ComfyUI's
   built-in node ids — are skipped, so a pack cannot override a built-in), ``RELATIVE_PYTHON_MODULE`` is set on every
   class, ``NODE_DISPLAY_NAME_MAPPINGS`` is merged.
3. Otherwise a V3 ``comfy_entrypoint`` is noted; running it needs ComfyUI's ``comfy_api``, which the harness does not
   stub, so such a pack reports a load error here.
4. Any exception is caught and reported (ComfyUI logs "Cannot import ... module for custom nodes" and keeps going);
   :class:`LoadedPack` carries the message.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import traceback
import types
from dataclasses import dataclass, field
from pathlib import Path


class PackLoadError(RuntimeError):
    """Raised by the harness when a pack fails to import (ComfyUI would log it as IMPORT FAILED)."""


@dataclass
class LoadedPack:
    path: Path
    sys_module_name: str
    module: types.ModuleType | None = None
    node_class_mappings: dict[str, type] = field(default_factory=dict)
    display_name_mappings: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    """Node ids the pack exported but that were ignored because a built-in node has the same id."""
    api: str | None = None
    """``"v1"`` or ``"v3"``."""
    web_directory: str | None = None
    error: str | None = None
    traceback: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def unload(self) -> None:
        """Remove the pack's module and its sub-modules from ``sys.modules``."""
        for name in [n for n in sys.modules if n == self.sys_module_name or n.startswith(self.sys_module_name + ".")]:
            del sys.modules[name]


def module_name_of(module_path: Path) -> str:
    """ComfyUI's ``get_module_name``: the folder name, or the file name without ``.py``."""
    return module_path.stem if module_path.is_file() else module_path.name


def load_custom_node(module_path: str | os.PathLike, ignore: set[str] | frozenset[str] = frozenset(),
                     module_parent: str = "custom_nodes") -> LoadedPack:
    path = Path(module_path).resolve()
    if path.is_file():
        sys_module_name = str(path.with_suffix(""))
        init_file = path
    else:
        sys_module_name = str(path).replace(".", "_x_")
        init_file = path / "__init__.py"
    pack = LoadedPack(path=path, sys_module_name=sys_module_name)
    try:
        spec = importlib.util.spec_from_file_location(sys_module_name, init_file)
        if spec is None or spec.loader is None:
            raise ImportError(f"{init_file} is not an importable Python module")
        module = importlib.util.module_from_spec(spec)
        sys.modules[sys_module_name] = module
        spec.loader.exec_module(module)
        pack.module = module
        web = getattr(module, "WEB_DIRECTORY", None)
        if web is not None:
            pack.web_directory = str((path if path.is_dir() else path.parent) / web)
        mappings = getattr(module, "NODE_CLASS_MAPPINGS", None)
        if mappings is not None:
            pack.api = "v1"
            for name, node_cls in mappings.items():
                if name in ignore:
                    pack.skipped.append(name)
                    continue
                pack.node_class_mappings[name] = node_cls
                node_cls.RELATIVE_PYTHON_MODULE = f"{module_parent}.{module_name_of(path)}"
            pack.display_name_mappings.update(getattr(module, "NODE_DISPLAY_NAME_MAPPINGS", None) or {})
        elif hasattr(module, "comfy_entrypoint"):
            pack.api = "v3"
            raise ImportError("V3-only packs (comfy_entrypoint without NODE_CLASS_MAPPINGS) need ComfyUI's comfy_api, "
                              "which the harness does not provide")
        else:
            raise ImportError(f"Skip {path} module for custom nodes due to the lack of NODE_CLASS_MAPPINGS or "
                              f"NODES_LIST (need one).")
    except Exception as exc:  # noqa: BLE001 - ComfyUI catches everything here
        pack.error = f"Cannot import {path} module for custom nodes: {type(exc).__name__}: {exc}"
        pack.traceback = traceback.format_exc()
    return pack
