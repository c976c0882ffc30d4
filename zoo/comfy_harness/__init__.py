"""An in-repo stand-in for ComfyUI's custom-node loader and prompt executor, for testing ``nodes/`` without ComfyUI.

ComfyUI is not installable here (it is not on PyPI and needs torchvision), so this package reproduces the parts of it
that a node pack meets, following upstream ``nodes.py::load_custom_node`` and ``execution.py::validate_inputs``
(see ``docs/COMFYUI.md``):

* :mod:`~zoo.comfy_harness.stubs` — stub ``comfy.utils`` (``ProgressBar``), ``comfy.model_management``,
  ``folder_paths``, ``server`` and ``nodes`` modules, installed in ``sys.modules`` only while a harness is open;
* :mod:`~zoo.comfy_harness.loader` — imports a pack by path the way ComfyUI does (V1 ``NODE_CLASS_MAPPINGS`` first);
* :mod:`~zoo.comfy_harness.schema` — checks node class definitions and builds ``/object_info``-shaped schemas;
* :mod:`~zoo.comfy_harness.validation` — ComfyUI's prompt validation (required inputs, links and their types, widget
  coercion, min/max, combo membership, ``VALIDATE_INPUTS``) with ComfyUI's error types;
* :mod:`~zoo.comfy_harness.executor` — runs an API-format workflow in-process (topological order from the output
  nodes, output cache, hidden inputs), checks tensor layout contracts, and reports node exceptions as ComfyUI's
  ``execution_error`` instead of raising.

Typical use::

    with ComfyHarness("nodes", base_dir=tmp_path) as comfy:
        outcome = comfy.run(json.load(open("nodes/workflows/txt2img.json")))
        assert outcome.ok, outcome.describe()
        image = outcome.outputs["3"][0]        # IMAGE tensor [B, H, W, 3]
"""

from zoo.comfy_harness.executor import ExecutionOutcome, Executor
from zoo.comfy_harness.harness import ComfyHarness
from zoo.comfy_harness.loader import LoadedPack, PackLoadError, load_custom_node
from zoo.comfy_harness.schema import check_node_class, node_info, object_info
from zoo.comfy_harness.validation import ValidationResult, validate_node_input, validate_prompt

__all__ = ["ComfyHarness", "Executor", "ExecutionOutcome", "LoadedPack", "PackLoadError", "load_custom_node",
           "check_node_class", "node_info", "object_info", "ValidationResult", "validate_node_input",
           "validate_prompt"]
