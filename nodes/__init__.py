"""distill-zoo ComfyUI node pack: few-step distilled text-to-image models and distilled super-resolution.

Install: ``git clone`` the repository into ``ComfyUI/custom_nodes/`` and ``pip install -r requirements.txt`` there
with ComfyUI's Python (the repository root's ``__init__.py`` imports this package). See ``docs/COMFYUI.md``.

Classic (V1) API: ComfyUI reads ``NODE_CLASS_MAPPINGS`` / ``NODE_DISPLAY_NAME_MAPPINGS`` from this module. The pack's
own modules are prefixed ``dz_`` and imported relatively, so none of them can shadow a ComfyUI module (ComfyUI has
top-level modules named ``nodes``, ``server``, ``folder_paths``, ``execution``, ``comfy``...). Every method the
distill-zoo registry knows (built-in or from a third-party plugin) appears in the nodes' method lists.
"""

from .dz_mappings import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
from .dz_spandrel import register_spandrel_architectures

register_spandrel_architectures()  # core UpscaleModelLoader then loads e.g. the official IMDN .pth files

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
