"""The gradio demo behind ``zoo serve``: every registered text-to-image method and every super-resolution method.

Tabs:

* **Text to image** — method (``auto`` = the method named in the model's ``zoo.json``), model reference, preset,
  prompt, negative prompt (CFG branch, or NASA with ``nasa_alpha``), steps, guidance, seed, batch, size. Shows the
  images, NFE and time per image; the downloadable PNGs carry every generation parameter in their text chunks
  (:func:`zoo.sampling.save_image`, read back with :func:`zoo.sampling.read_metadata`). API name ``generate``.
* **Super-resolution** — IMDN, YONOS-SR and any other registered SR method; scale, tile size, steps, seed.
  API name ``upscale``.
* **Compare** — one prompt and seed through the base teacher and every installed text-to-image method that has a
  default model, side by side, each captioned with its NFE and time per image (:class:`CompareHandler`). API name
  ``compare``.

Handlers call :func:`zoo.frontend.load` (= :func:`zoo.loading.load_sampler`, what ``zoo run`` uses) and the sampler
itself; loaded samplers are kept in a one-entry cache so repeated clicks reuse the weights. Method lists come from the
registry when the demo is built, so a newly installed plugin needs no change here. Nothing binds to anything but
127.0.0.1 unless ``zoo serve --host`` says so.
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import Any

from zoo.errors import InputError, ZooError, require_extra
from zoo.frontend import AUTO, SUPER_RESOLUTION, TEXT_TO_IMAGE, load, method_choices, upscale

NO_PRESET = "(none)"


class SamplerCache:
    """Keeps the most recently used sampler (weights are the expensive part; one model at a time fits any GPU).
    Models come only from ``roots`` (:class:`zoo.paths.ModelRoots`; None: anywhere)."""

    def __init__(self, roots: Any = None) -> None:
        self._key: tuple | None = None
        self._value: tuple | None = None
        self._lock = threading.Lock()
        self.roots = roots

    def get(self, task: str, method: str, model: str, preset: str | None, device: str) -> tuple[Any, Any]:
        key = (task, method or AUTO, (model or "").strip(), preset, device)
        with self._lock:
            if key != self._key:
                self._key, self._value = None, None  # free the old weights before loading new ones
                self._value = load(task, method, model, device=device, dtype="auto", preset=preset, roots=self.roots)
                self._key = key
            return self._value


def _output_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="distill-zoo-app-"))


def _progress_callback(progress: Any, description: str):
    def report(done: int, total: int) -> None:
        if progress is not None:
            progress((done, total), desc=description)
    return report


class DemoHandlers:
    """The functions behind the buttons (plain Python: unit-testable without launching gradio)."""

    def __init__(self, registry: Any = None, roots: Any = None) -> None:
        self.registry = registry
        self.cache = SamplerCache(roots)

    def presets_for(self, method: str) -> list[str]:
        from zoo.registry import get_registry

        registry = self.registry or get_registry()
        if not method or method == AUTO or method not in registry:
            return [NO_PRESET]
        return [NO_PRESET, *(p.name for p in registry.get(method).presets)]

    def generate(self, method: str, model: str, preset: str, prompt: str, negative_prompt: str, steps: float,
                 guidance_scale: float, seed: float, batch_size: float, width: float, height: float,
                 nasa_alpha: float, device: str = "auto", progress: Any = None) -> tuple[list, str, list[str]]:
        """Returns (gallery items, info markdown, PNG paths with metadata)."""
        from zoo.sampling import save_image

        if not (prompt or "").strip():
            raise InputError("Enter a prompt")
        preset_name = None if preset in (None, "", NO_PRESET) else preset
        spec, sampler = self.cache.get(TEXT_TO_IMAGE, method, model, preset_name, device)
        options = {"nasa_alpha": float(nasa_alpha)} if nasa_alpha is not None and nasa_alpha >= 0 else {}
        result = sampler(prompt, negative_prompt=negative_prompt or None, steps=int(steps) or None,
                         guidance_scale=None if guidance_scale is None or guidance_scale < 0 else float(guidance_scale),
                         seed=int(seed), height=int(height) or None, width=int(width) or None,
                         batch_size=int(batch_size), progress=_progress_callback(progress, "sampling"), **options)
        folder = _output_dir()
        name = result.metadata.get("method", spec.name if spec else "base")
        paths = []
        for index, image in enumerate(result.images):
            path = folder / f"{name}-seed{int(seed)}-{index}.png"
            save_image(image, path, {**result.metadata, "batch_index": index})
            paths.append(str(path))
        seconds = float(result.metadata.get("seconds_per_image", 0.0))
        info = (f"**{name}** · {result.nfe} network evaluations (NFE) per image · {seconds * 1000:.0f} ms per image · "
                f"steps {result.metadata.get('steps')} · guidance {result.metadata.get('guidance_scale')} · "
                f"seed {int(seed)}")
        return [(p, f"{name} #{i}") for i, p in enumerate(paths)], info, paths

    def upscale(self, method: str, model: str, image: Any, scale: float, tile: float, steps: float, seed: float,
                device: str = "auto", progress: Any = None) -> tuple[str, str, str]:
        """Returns (upscaled PNG path, info markdown, the same path for download)."""
        from zoo.sampling import save_image

        if image is None:
            raise InputError("Upload an image to upscale")
        spec, sampler = self.cache.get(SUPER_RESOLUTION, method, model, None, device)
        result = upscale(sampler, image.convert("RGB"), scale=int(scale) or None, tile=int(tile) or None,
                         steps=int(steps), seed=int(seed), progress=_progress_callback(progress, "upscaling"))
        output = result.images[0]
        if not hasattr(output, "save"):
            from zoo.sampling import SampleResult  # noqa: F401 - contract: SR samplers return PIL images
            raise InputError("The SR sampler returned no PIL image; it does not follow the sampler contract")
        name = result.metadata.get("method", spec.name if spec else "sr")
        path = _output_dir() / f"{name}-x{output.width // image.width}.png"
        save_image(output, path, {**result.metadata, "input_size": list(image.size)})
        info = (f"**{name}** · {image.width}x{image.height} → {output.width}x{output.height} · "
                f"{result.nfe} network evaluations")
        return str(path), info, str(path)


COMPARE_TEACHER = "teacher"
"""The Compare tab's label for the base sampler on the default model (``zoo run`` without a method)."""


def compare_methods(registry: Any = None) -> list[str]:
    """What the Compare tab runs: the base teacher, then every text-to-image method with a default model."""
    from zoo.registry import get_registry

    registry = registry or get_registry()
    return [COMPARE_TEACHER, *(s.name for s in registry.list(task=TEXT_TO_IMAGE) if s.default_model)]


class CompareCache:
    """The Compare tab's samplers, one per method's default model: loaded on first use and kept, the least recently
    used dropped beyond ``capacity`` (the default models are small; a large one only costs a reload)."""

    def __init__(self, roots: Any = None, capacity: int = 16) -> None:
        from collections import OrderedDict

        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self.roots = roots
        self.capacity = capacity

    def get(self, method: str, device: str) -> tuple[Any, Any]:
        key = (method, device)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            while len(self._items) >= self.capacity:
                self._items.popitem(last=False)
            name = "base" if method == COMPARE_TEACHER else method
            value = load(TEXT_TO_IMAGE, name, "", device=device, dtype="auto", roots=self.roots)
            self._items[key] = value
            return value


def _placeholder(size: int = 64) -> Any:
    from PIL import Image

    return Image.new("RGB", (size, size), (236, 236, 236))


class CompareHandler:
    """The Compare tab: the same prompt and seed through every method of :func:`compare_methods`, each at its
    model's recommended settings, one image each. A method that fails shows its one-line error as the caption."""

    def __init__(self, registry: Any = None, roots: Any = None) -> None:
        self.registry = registry
        self.cache = CompareCache(roots)

    def __call__(self, prompt: str, seed: float, device: str = "auto", progress: Any = None) -> tuple[list, str]:
        """Returns (gallery items ``(PNG path, "method · N NFE · T ms/image")``, info markdown)."""
        import logging
        import time

        from zoo.sampling import check_seed, save_image

        if not (prompt or "").strip():
            raise InputError("Enter a prompt")
        seed = check_seed(int(seed) if isinstance(seed, float) and seed.is_integer() else seed)
        methods = compare_methods(self.registry)
        folder = _output_dir()
        items, rows = [], []
        for index, method in enumerate(methods):
            if progress is not None:
                progress((index, len(methods)), desc=method)
            path = folder / f"{index:02d}-{method}-seed{seed}.png"
            try:
                _, sampler = self.cache.get(method, device)
                started = time.perf_counter()
                result = sampler(prompt, seed=seed, batch_size=1)
                seconds = float(result.metadata.get("seconds_per_image") or time.perf_counter() - started)
                save_image(result.images[0], path, dict(result.metadata))
                caption = f"{method} · {result.nfe} NFE · {seconds * 1000:.0f} ms/image"
                rows.append(f"| {method} | {result.nfe} | {result.metadata.get('steps')} | {seconds * 1000:.0f} |")
            except ZooError as exc:
                caption = f"{method} · failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
            except Exception:  # noqa: BLE001 - one broken method must not hide the others; details stay on the server
                logging.getLogger("zoo.app").exception("compare: %s failed", method)
                caption = f"{method} · failed (the details are in the server's log)"
            if not path.exists():
                _placeholder().save(path)
                rows.append(f"| {method} | - | - | failed |")
            items.append((str(path), caption))
        if progress is not None:
            progress((len(methods), len(methods)), desc="done")
        info = (f"**{prompt.strip()}** · seed {seed} · each method at its model's recommended settings\n\n"
                "| method | NFE | steps | ms/image |\n|---|---|---|---|\n" + "\n".join(rows))
        return items, info


GENERIC_FAILURE = "The request failed on the server (the details are in the server's log)"


def _guarded(function):
    """Only zoo errors reach the client, as their one line; anything else is logged on the server and the client
    sees a generic failure (no paths, no exception text from the server)."""
    import functools
    import logging

    import gradio as gr

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except ZooError as exc:
            raise gr.Error(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
        except Exception:  # noqa: BLE001 - everything else stays on the server
            logging.getLogger("zoo.app").exception("request failed")
            raise gr.Error(GENERIC_FAILURE) from None
    return wrapper


SR_METHOD_INFO = ("imdn: real photos (official IMDN_x4.pth from github.com/Zheng222/IMDN as Model); yonos_sr "
                  "(testbed): trained on synthetic shapes, not for real photos")
"""The Super-resolution tab's method note: YONOS-SR's default model is a testbed model (docs/SR.md)."""


def build_demo(registry: Any = None, roots: Any = None) -> "gr.Blocks":  # noqa: F821
    """The gradio Blocks app. ``registry`` lists the methods (default: the process-wide registry); ``roots`` (a
    :class:`zoo.paths.ModelRoots`, default :meth:`~zoo.paths.ModelRoots.for_server`) is where clients' models may
    come from."""
    from zoo.paths import ModelRoots

    gr = require_extra("gradio", "ui", "The distill-zoo web demo")
    handlers = DemoHandlers(registry, roots if roots is not None else ModelRoots.for_server())
    t2i_methods = method_choices(TEXT_TO_IMAGE, registry=registry)
    sr_methods = method_choices(SUPER_RESOLUTION, registry=registry)
    devices = ["auto", "cpu", "cuda"]

    def generate(method, model, preset, prompt, negative_prompt, steps, guidance_scale, seed, batch_size, width,
                 height, nasa_alpha, device, progress=gr.Progress(track_tqdm=True)):
        return _guarded(handlers.generate)(method, model, preset, prompt, negative_prompt, steps, guidance_scale,
                                           seed, batch_size, width, height, nasa_alpha, device, progress)

    def upscale_image(method, model, image, scale, tile, steps, seed, device, progress=gr.Progress(track_tqdm=True)):
        return _guarded(handlers.upscale)(method, model, image, scale, tile, steps, seed, device, progress)

    compare_handler = CompareHandler(registry, handlers.cache.roots)

    def compare(prompt, seed, device, progress=gr.Progress(track_tqdm=True)):
        return _guarded(compare_handler)(prompt, seed, device, progress)

    def update_presets(method):
        choices = handlers.presets_for(method)
        return gr.Dropdown(choices=choices, value=NO_PRESET)

    with gr.Blocks(title="distill-zoo") as demo:
        gr.Markdown("# distill-zoo\nFew-step distilled text-to-image models and distilled super-resolution, "
                    "from one registry.")
        with gr.Tab("Text to image"):
            with gr.Row():
                with gr.Column():
                    method = gr.Dropdown(t2i_methods, value=AUTO, label="Method", elem_id="t2i-method",
                                         info="auto: the method named in the model's zoo.json")
                    model = gr.Textbox(label="Model", placeholder="empty: the method's default model; or org/repo, "
                                       "hf-hub:org/repo@rev, a folder, pkg:package/dir", elem_id="t2i-model")
                    preset = gr.Dropdown([NO_PRESET], value=NO_PRESET, label="Preset", elem_id="t2i-preset",
                                         allow_custom_value=True)
                    prompt = gr.Textbox(label="Prompt", lines=2, value="a red circle")
                    negative = gr.Textbox(label="Negative prompt", lines=1,
                                          info="CFG branch when guidance > 1; NASA when NASA alpha > 0")
                    nasa_alpha = gr.Slider(-1, 2, value=-1, step=0.05, label="NASA alpha",
                                           info="-1: the method's default (SNOOPI: on, others: off); 0: off")
                    with gr.Row():
                        steps = gr.Slider(0, 50, value=0, step=1, label="Steps (0: recommended)")
                        guidance = gr.Slider(-1, 20, value=-1, step=0.5, label="Guidance (-1: recommended)")
                    with gr.Row():
                        seed = gr.Number(0, precision=0, label="Seed")
                        batch = gr.Slider(1, 8, value=1, step=1, label="Batch")
                    with gr.Row():
                        width = gr.Number(0, precision=0, label="Width (0: native)")
                        height = gr.Number(0, precision=0, label="Height (0: native)")
                        device = gr.Dropdown(devices, value="auto", label="Device")
                    run = gr.Button("Generate", variant="primary")
                with gr.Column():
                    gallery = gr.Gallery(label="Images", format="png")
                    info = gr.Markdown()
                    files = gr.File(label="PNG files with generation parameters", file_count="multiple")
            method.change(update_presets, inputs=method, outputs=preset, api_visibility="private")
            run.click(generate, inputs=[method, model, preset, prompt, negative, steps, guidance, seed, batch, width,
                                        height, nasa_alpha, device],
                      outputs=[gallery, info, files], api_name="generate")
        with gr.Tab("Super-resolution"):
            with gr.Row():
                with gr.Column():
                    sr_method = gr.Dropdown(sr_methods, value="imdn" if "imdn" in sr_methods else
                                            sr_methods[1] if len(sr_methods) > 1 else AUTO, label="Method",
                                            elem_id="sr-method", info=SR_METHOD_INFO if "yonos_sr" in sr_methods
                                            else None)
                    sr_model = gr.Textbox(label="Model", placeholder="empty: the method's default model (imdn has "
                                          "none: give the official IMDN_x4.pth)")
                    image = gr.Image(type="pil", label="Input image", image_mode="RGB")
                    with gr.Row():
                        scale = gr.Number(0, precision=0, label="Scale (0: the model's)")
                        tile = gr.Number(0, precision=0, label="Tile size (0: automatic, only large images are tiled)")
                    with gr.Row():
                        sr_steps = gr.Slider(1, 50, value=1, step=1, label="Steps (diffusion SR only)")
                        sr_seed = gr.Number(0, precision=0, label="Seed")
                        sr_device = gr.Dropdown(devices, value="auto", label="Device")
                    sr_run = gr.Button("Upscale", variant="primary")
                with gr.Column():
                    upscaled = gr.Image(type="filepath", label="Upscaled", format="png")
                    sr_info = gr.Markdown()
                    sr_file = gr.File(label="PNG with parameters")
            sr_run.click(upscale_image, inputs=[sr_method, sr_model, image, scale, tile, sr_steps, sr_seed, sr_device],
                         outputs=[upscaled, sr_info, sr_file], api_name="upscale")
        with gr.Tab("Compare"):
            gr.Markdown("One prompt and seed through the teacher and every installed text-to-image method's default "
                        "model, each at its recommended settings: number of network evaluations (NFE) and time per "
                        "image under each image.")
            with gr.Row():
                cmp_prompt = gr.Textbox(label="Prompt", lines=1, value="a red circle", elem_id="compare-prompt",
                                        scale=3)
                cmp_seed = gr.Number(0, precision=0, label="Seed", elem_id="compare-seed", scale=1)
                cmp_device = gr.Dropdown(devices, value="auto", label="Device", elem_id="compare-device", scale=1)
            cmp_run = gr.Button("Compare", variant="primary", elem_id="compare-run")
            cmp_gallery = gr.Gallery(label="Every method", format="png", columns=4, elem_id="compare-gallery")
            cmp_info = gr.Markdown(elem_id="compare-info")
            cmp_run.click(compare, inputs=[cmp_prompt, cmp_seed, cmp_device], outputs=[cmp_gallery, cmp_info],
                          api_name="compare")
    demo.queue(default_concurrency_limit=1)
    return demo
