"""Stub versions of the ComfyUI modules a custom node pack imports, installed in ``sys.modules`` only inside a harness.

The stubs keep ComfyUI's names and signatures (upstream ``comfy/utils.py``, ``comfy/model_management.py``,
``folder_paths.py``, ``server.py``, ``nodes.py``) but hold no model code:

``comfy.utils``
    ``ProgressBar(total, node_id=None)`` with ``update``/``update_absolute`` reporting to the global hook set by
    ``set_progress_bar_global_hook`` (the harness records every update).
``comfy.model_management``
    ``get_torch_device``, ``intermediate_device``, ``InterruptProcessingException``, ``interrupt_current_processing``,
    ``processing_interrupted``, ``throw_exception_if_processing_interrupted``, ``soft_empty_cache``.
``folder_paths``
    model/input/output/temp folders under the harness's base directory and the lookup functions packs call.
``server``
    ``PromptServer.instance`` with a route table and ``send_sync`` (messages are recorded).
``nodes``
    ComfyUI's own node module: ``NODE_CLASS_MAPPINGS`` holding the built-in nodes of :mod:`.builtin_nodes`, so a
    pack that shadowed it would be caught.
"""

from __future__ import annotations

import importlib.machinery
import os
import sys
import types
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

STUB_MODULES = ("comfy", "comfy.utils", "comfy.model_management", "folder_paths", "server", "nodes")
"""Top-level and sub-module names the harness provides; a pack must not define modules with these names."""

SUPPORTED_PT_EXTENSIONS = {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"}


def _module(name: str, doc: str, package: bool = False) -> types.ModuleType:
    module = types.ModuleType(name, doc)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=package)
    if package:
        module.__path__ = []
    return module


# -- comfy.utils --------------------------------------------------------------------------------------------------
def _make_comfy_utils() -> types.ModuleType:
    utils = _module("comfy.utils", "Stub of comfy.utils: the progress bar of ComfyUI.")
    state: dict[str, Any] = {"hook": None}

    def set_progress_bar_global_hook(function: Callable | None) -> None:
        state["hook"] = function

    class ProgressBar:
        """``ProgressBar(total)``; ``update(n)`` advances by n, ``update_absolute(value, total, preview)`` sets it."""

        def __init__(self, total: int, node_id: str | None = None) -> None:
            self.total = total
            self.current = 0
            self.hook = state["hook"]
            self.node_id = node_id

        def update_absolute(self, value: int, total: int | None = None, preview: Any = None) -> None:
            if total is not None:
                self.total = total
            value = min(value, self.total)
            self.current = value
            if self.hook is not None:
                self.hook(self.current, self.total, preview, node_id=self.node_id)

        def update(self, value: int) -> None:
            self.update_absolute(self.current + value)

    utils.ProgressBar = ProgressBar
    utils.set_progress_bar_global_hook = set_progress_bar_global_hook
    utils.PROGRESS_BAR_ENABLED = True
    return utils


# -- comfy.model_management ---------------------------------------------------------------------------------------
def _make_model_management() -> types.ModuleType:
    mm = _module("comfy.model_management", "Stub of comfy.model_management: devices and interruption.")
    state = {"interrupted": False}

    class InterruptProcessingException(Exception):
        """Raised inside a node when the user pressed Cancel."""

    def get_torch_device():
        import torch

        return torch.device("cuda" if torch.cuda.is_available() else "cpu")

    def intermediate_device():
        import torch

        return torch.device("cpu")

    def interrupt_current_processing(value: bool = True) -> None:
        state["interrupted"] = value

    def processing_interrupted() -> bool:
        return state["interrupted"]

    def throw_exception_if_processing_interrupted() -> None:
        if state["interrupted"]:
            state["interrupted"] = False
            raise InterruptProcessingException()

    mm.InterruptProcessingException = InterruptProcessingException
    mm.get_torch_device = get_torch_device
    mm.intermediate_device = intermediate_device
    mm.interrupt_current_processing = interrupt_current_processing
    mm.processing_interrupted = processing_interrupted
    mm.throw_exception_if_processing_interrupted = throw_exception_if_processing_interrupted
    mm.soft_empty_cache = lambda force=False: None
    return mm


# -- folder_paths -------------------------------------------------------------------------------------------------
def _make_folder_paths(base_dir: Path) -> types.ModuleType:
    fp = _module("folder_paths", "Stub of ComfyUI's folder_paths: model, input, output and temp folders.")
    models_dir = base_dir / "models"
    fp.base_path = str(base_dir)
    fp.models_dir = str(models_dir)
    fp.supported_pt_extensions = set(SUPPORTED_PT_EXTENSIONS)
    fp.folder_names_and_paths = {
        name: ([str(models_dir / name)], set(SUPPORTED_PT_EXTENSIONS))
        for name in ("checkpoints", "loras", "vae", "upscale_models", "diffusers", "unet", "diffusion_models")
    }
    fp.folder_names_and_paths["custom_nodes"] = ([str(base_dir / "custom_nodes")], set())
    dirs = {"output": base_dir / "output", "input": base_dir / "input", "temp": base_dir / "temp"}
    for folder in dirs.values():
        folder.mkdir(parents=True, exist_ok=True)

    def add_model_folder_path(folder_name: str, full_folder_path: str, is_default: bool = False) -> None:
        paths, extensions = fp.folder_names_and_paths.setdefault(folder_name, ([], set(SUPPORTED_PT_EXTENSIONS)))
        if full_folder_path not in paths:
            paths.insert(0, full_folder_path) if is_default else paths.append(full_folder_path)

    def get_folder_paths(folder_name: str) -> list[str]:
        return list(fp.folder_names_and_paths[folder_name][0])

    def get_filename_list(folder_name: str) -> list[str]:
        paths, extensions = fp.folder_names_and_paths.get(folder_name, ([], set()))
        found = set()
        for folder in paths:
            root = Path(folder)
            if root.is_dir():
                for path in root.rglob("*"):
                    if path.is_file() and (not extensions or path.suffix in extensions):
                        found.add(path.relative_to(root).as_posix())
        return sorted(found)

    def get_full_path(folder_name: str, filename: str) -> str | None:
        for folder in fp.folder_names_and_paths.get(folder_name, ([], set()))[0]:
            candidate = Path(folder) / filename
            if candidate.is_file():
                return str(candidate)
        return None

    def get_full_path_or_raise(folder_name: str, filename: str) -> str:
        path = get_full_path(folder_name, filename)
        if path is None:
            raise FileNotFoundError(f"Model in folder '{folder_name}' with filename '{filename}' not found.")
        return path

    def get_annotated_filepath(name: str, default_dir: str | None = None) -> str:
        for suffix, key in ((" [output]", "output"), (" [input]", "input"), (" [temp]", "temp")):
            if name.endswith(suffix):
                return str(dirs[key] / name[: -len(suffix)])
        return str(Path(default_dir or dirs["input"]) / name)

    def get_save_image_path(filename_prefix: str, output_dir: str, image_width: int = 0, image_height: int = 0):
        subfolder, prefix = os.path.split(os.path.normpath(filename_prefix))
        full_output_folder = os.path.join(output_dir, subfolder)
        if os.path.commonpath((os.path.abspath(output_dir), os.path.abspath(full_output_folder))) != \
                os.path.abspath(output_dir):  # ComfyUI refuses the same way (folder_paths.get_save_image_path)
            raise Exception(f"Saving image outside the output folder is not allowed (filename_prefix "
                            f"{filename_prefix!r})")
        os.makedirs(full_output_folder, exist_ok=True)
        taken = [int(p.stem.rsplit("_", 2)[-2]) for p in Path(full_output_folder).glob(f"{prefix}_*_.png")
                 if p.stem.rsplit("_", 2)[-2].isdigit()]
        counter = max(taken, default=0) + 1
        return full_output_folder, prefix, counter, subfolder, filename_prefix

    fp.add_model_folder_path = add_model_folder_path
    fp.get_folder_paths = get_folder_paths
    fp.get_filename_list = get_filename_list
    fp.get_full_path = get_full_path
    fp.get_full_path_or_raise = get_full_path_or_raise
    fp.get_annotated_filepath = get_annotated_filepath
    fp.get_save_image_path = get_save_image_path
    fp.get_output_directory = lambda: str(dirs["output"])
    fp.get_input_directory = lambda: str(dirs["input"])
    fp.get_temp_directory = lambda: str(dirs["temp"])
    return fp


# -- server -------------------------------------------------------------------------------------------------------
def _make_server() -> types.ModuleType:
    server = _module("server", "Stub of ComfyUI's server module: PromptServer.instance with routes and messages.")

    class RouteTable:
        """Records ``@routes.get(path)`` / ``@routes.post(path)`` registrations like aiohttp's RouteTableDef."""

        def __init__(self) -> None:
            self.registered: list[tuple[str, str, Callable]] = []

        def _add(self, method: str, path: str):
            def decorator(handler):
                self.registered.append((method, path, handler))
                return handler
            return decorator

        def get(self, path: str, **_: Any):
            return self._add("GET", path)

        def post(self, path: str, **_: Any):
            return self._add("POST", path)

    class PromptServer:
        instance: "PromptServer"

        def __init__(self) -> None:
            self.routes = RouteTable()
            self.messages: list[tuple[str, Any, str | None]] = []
            self.last_node_id: str | None = None
            self.client_id: str | None = None

        def send_sync(self, event: str, data: Any, sid: str | None = None) -> None:
            self.messages.append((event, data, sid))

    PromptServer.instance = PromptServer()
    server.PromptServer = PromptServer
    return server


# -- nodes --------------------------------------------------------------------------------------------------------
def _make_nodes() -> types.ModuleType:
    from zoo.comfy_harness import builtin_nodes

    nodes = _module("nodes", "Stub of ComfyUI's nodes module holding the harness's built-in nodes.")
    nodes.NODE_CLASS_MAPPINGS = dict(builtin_nodes.NODE_CLASS_MAPPINGS)
    nodes.NODE_DISPLAY_NAME_MAPPINGS = dict(builtin_nodes.NODE_DISPLAY_NAME_MAPPINGS)
    nodes.MAX_RESOLUTION = 16384
    return nodes


def build_stubs(base_dir: Path) -> dict[str, types.ModuleType]:
    """Fresh stub modules whose folders live under ``base_dir``."""
    comfy = _module("comfy", "Stub of the comfy package.", package=True)
    utils = _make_comfy_utils()
    model_management = _make_model_management()
    comfy.utils = utils
    comfy.model_management = model_management
    return {"comfy": comfy, "comfy.utils": utils, "comfy.model_management": model_management,
            "folder_paths": _make_folder_paths(base_dir), "server": _make_server(), "nodes": _make_nodes()}


@contextmanager
def installed(stubs: dict[str, types.ModuleType]) -> Iterator[dict[str, types.ModuleType]]:
    """Put ``stubs`` into ``sys.modules`` and restore whatever was there before on exit."""
    saved = {name: sys.modules.get(name) for name in stubs}
    sys.modules.update(stubs)
    try:
        yield stubs
    finally:
        for name, previous in saved.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous
