"""``ComfyHarness``: stubs + loader + validator + executor behind one context manager."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from zoo.comfy_harness.executor import ExecutionOutcome, Executor
from zoo.comfy_harness.loader import LoadedPack, PackLoadError, load_custom_node
from zoo.comfy_harness.schema import check_node_class, object_info
from zoo.comfy_harness.stubs import build_stubs, installed
from zoo.comfy_harness.validation import ValidationResult, validate_prompt


class ComfyHarness:
    """Load the pack at ``pack_dir`` into a stubbed ComfyUI environment rooted at ``base_dir``.

    Inside the ``with`` block ``comfy.utils``, ``folder_paths``, ``server`` and ``nodes`` are the stubs of
    :mod:`zoo.comfy_harness.stubs`; on exit they and the pack's modules are removed from ``sys.modules`` again.
    Raises :class:`PackLoadError` when the pack fails to import or replaces one of ComfyUI's modules.
    """

    def __init__(self, pack_dir: str | Path, base_dir: str | Path | None = None, check_contracts: bool = True):
        self.pack_dir = Path(pack_dir)
        self.base_dir = Path(base_dir) if base_dir is not None else None
        self.check_contracts = check_contracts
        self._owns_base = base_dir is None
        self.pack: LoadedPack | None = None

    def __enter__(self) -> "ComfyHarness":
        if self.base_dir is None:
            self.base_dir = Path(tempfile.mkdtemp(prefix="comfy-harness-"))
        self.stubs = build_stubs(self.base_dir)
        self._installed = installed(self.stubs)
        self._installed.__enter__()
        try:
            nodes_module = self.stubs["nodes"]
            self.builtin_ids = frozenset(nodes_module.NODE_CLASS_MAPPINGS)
            self.pack = load_custom_node(self.pack_dir, ignore=self.builtin_ids)
            if not self.pack.ok:
                raise PackLoadError(self.pack.error)
            replaced = [name for name, module in self.stubs.items() if sys.modules.get(name) is not module]
            if replaced:
                raise PackLoadError(f"the pack replaced ComfyUI's own module(s) {replaced} in sys.modules")
            nodes_module.NODE_CLASS_MAPPINGS.update(self.pack.node_class_mappings)
            nodes_module.NODE_DISPLAY_NAME_MAPPINGS.update(self.pack.display_name_mappings)
            self.mappings: dict[str, type] = nodes_module.NODE_CLASS_MAPPINGS
            self.display_names: dict[str, str] = nodes_module.NODE_DISPLAY_NAME_MAPPINGS
            self.executor = Executor(self.mappings, check_contracts=self.check_contracts)
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self.pack is not None:
            self.pack.unload()
        self._installed.__exit__(*exc_info)
        if self._owns_base and self.base_dir is not None:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    # -- conveniences -------------------------------------------------------------------------------------------
    @property
    def input_dir(self) -> Path:
        return Path(self.stubs["folder_paths"].get_input_directory())

    @property
    def output_dir(self) -> Path:
        return Path(self.stubs["folder_paths"].get_output_directory())

    def check(self, prefix: str | None = None) -> list[str]:
        """Definition problems of every node of the pack (see :func:`check_node_class`)."""
        problems = []
        for node_id, cls in sorted(self.pack.node_class_mappings.items()):
            problems += check_node_class(node_id, cls, prefix)
        return problems

    def object_info(self) -> dict[str, Any]:
        """The ``/object_info`` entries of the pack's nodes."""
        return object_info(self.pack.node_class_mappings, self.pack.display_name_mappings)

    def validate(self, prompt: dict) -> ValidationResult:
        import copy

        return validate_prompt({str(k): v for k, v in copy.deepcopy(prompt).items()}, self.mappings)

    def run(self, prompt: dict, extra_data: dict | None = None) -> ExecutionOutcome:
        return self.executor.execute(prompt, extra_data)
