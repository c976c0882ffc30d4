"""The few ComfyUI built-in nodes the example workflows use: ``LoadImage``, ``SaveImage`` and ``PreviewImage``.

Same ids, inputs, outputs and tensor layouts as upstream ``nodes.py`` (IMAGE ``[B, H, W, 3]`` float32 in 0..1, MASK
``[B, H, W]``); saved PNGs carry the workflow in a ``prompt`` text chunk as ComfyUI's do. Written for the harness,
not copied.
"""

from __future__ import annotations

import json
from pathlib import Path


def _image_files() -> list[str]:
    import folder_paths

    root = Path(folder_paths.get_input_directory())
    files = sorted(p.name for p in root.iterdir() if p.is_file() and p.suffix.lower() in {".png", ".jpg", ".jpeg",
                                                                                            ".webp"})
    return files or ["example.png"]


class LoadImage:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": (_image_files(), {"image_upload": True})}}

    CATEGORY = "image"
    RETURN_TYPES = ("IMAGE", "MASK")
    FUNCTION = "load_image"

    def load_image(self, image: str):
        import folder_paths
        import numpy as np
        import torch
        from PIL import Image

        path = folder_paths.get_annotated_filepath(image)
        with Image.open(path) as opened:
            rgba = opened.convert("RGBA")
        array = np.asarray(rgba).astype(np.float32) / 255.0
        pixels = torch.from_numpy(array[..., :3].copy())[None]
        mask = 1.0 - torch.from_numpy(array[..., 3].copy())[None]
        return (pixels, mask)

    @classmethod
    def IS_CHANGED(cls, image: str):
        import hashlib

        import folder_paths

        return hashlib.sha256(Path(folder_paths.get_annotated_filepath(image)).read_bytes()).hexdigest()


class SaveImage:
    def __init__(self) -> None:
        import folder_paths

        self.output_dir = folder_paths.get_output_directory()
        self.type = "output"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",), "filename_prefix": ("STRING", {"default": "ComfyUI"})},
                "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

    RETURN_TYPES = ()
    FUNCTION = "save_images"
    OUTPUT_NODE = True
    CATEGORY = "image"

    def save_images(self, images, filename_prefix: str = "ComfyUI", prompt=None, extra_pnginfo=None):
        import folder_paths
        import numpy as np
        from PIL import Image
        from PIL.PngImagePlugin import PngInfo

        folder, prefix, counter, subfolder, _ = folder_paths.get_save_image_path(
            filename_prefix, self.output_dir, images.shape[2], images.shape[1])
        results = []
        for index, image in enumerate(images):
            array = np.clip(255.0 * image.cpu().numpy(), 0, 255).astype(np.uint8)
            info = PngInfo()
            if prompt is not None:
                info.add_text("prompt", json.dumps(prompt))
            for key, value in (extra_pnginfo or {}).items():
                info.add_text(key, json.dumps(value))
            name = f"{prefix}_{counter + index:05}_.png"
            Image.fromarray(array).save(Path(folder) / name, pnginfo=info, compress_level=4)
            results.append({"filename": name, "subfolder": subfolder, "type": self.type})
        return {"ui": {"images": results}}


class PreviewImage(SaveImage):
    def __init__(self) -> None:
        import folder_paths

        self.output_dir = folder_paths.get_temp_directory()
        self.type = "temp"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",)}, "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

    def save_images(self, images, filename_prefix: str = "ComfyUI_temp", prompt=None, extra_pnginfo=None):
        return super().save_images(images, filename_prefix, prompt, extra_pnginfo)


NODE_CLASS_MAPPINGS = {"LoadImage": LoadImage, "SaveImage": SaveImage, "PreviewImage": PreviewImage}
NODE_DISPLAY_NAME_MAPPINGS = {"LoadImage": "Load Image", "SaveImage": "Save Image", "PreviewImage": "Preview Image"}
