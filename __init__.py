"""ComfyUI entry point when this repository is cloned into ``ComfyUI/custom_nodes/`` (docs/COMFYUI.md).

ComfyUI imports ``custom_nodes/<folder>/__init__.py`` and reads ``NODE_CLASS_MAPPINGS``; the node pack itself lives in
``nodes/`` and imports the ``zoo`` package, which ``pip install -r requirements.txt`` installs (editable) into
ComfyUI's Python environment. Nothing else in the project imports this file.
"""

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
