"""The ComfyUI node pack (``nodes/``) loaded and run through the in-repo harness (``zoo.comfy_harness``).

Checks: clean, prefixed node definitions; no module that could shadow ComfyUI's; every registered method reachable;
node outputs identical to ``zoo run`` for the same seed; tensor layouts; bad input reported as validation errors;
ComfyUI progress inside the harness and tqdm outside; the example workflows validate and run; object_info is current.
"""

import json
import os
import sys
from pathlib import Path

import pytest
import torch

from zoo.comfy_harness import ComfyHarness

ROOT = Path(__file__).resolve().parents[1]
PACK = ROOT / "nodes"
WORKFLOWS = sorted(p for p in (PACK / "workflows").glob("*.json") if not p.name.startswith("native_"))
"""The workflows of the pack's own nodes (the native_* ones use core ComfyUI nodes: tests/test_comfy_native.py)."""
COMFY_TOP_LEVEL = {"nodes", "server", "folder_paths", "execution", "main", "comfy", "comfy_extras", "comfy_api",
                   "comfy_execution", "latent_preview", "node_helpers", "cuda_malloc", "utils", "app", "api_server",
                   "protocol", "hook_breaker_ac10a0", "new_updater", "comfyui_version", "model_management"}



@pytest.fixture(autouse=True)
def _test_models_are_allowed(tmp_path_factory, monkeypatch):
    """The tests' tiny models live under pytest's temporary folder: the operator's model root here."""
    monkeypatch.setenv("ZOO_MODEL_ROOTS", str(tmp_path_factory.getbasetemp()))

@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from zoo.tiny import build_tiny_sd

    return build_tiny_sd(tmp_path_factory.mktemp("tiny") / "sd")


@pytest.fixture
def comfy(tmp_path):
    torch.set_num_threads(1)
    with ComfyHarness(PACK, base_dir=tmp_path / "comfy") as harness:
        yield harness


def t2i_prompt(model, **overrides):
    inputs = {"model": ["1", 0], "prompt": "a red circle", "negative_prompt": "", "steps": 2, "guidance_scale": 2.5,
              "seed": 3, "width": 0, "height": 0, "batch_size": 1, "nasa_alpha": -1.0, **overrides}
    return {"1": {"class_type": "DistillZooLoadModel",
                  "inputs": {"method": "auto", "model": str(model), "device": "cpu", "dtype": "fp32",
                             "attention": "auto"}},
            "3": {"class_type": "DistillZooSampler", "inputs": inputs},
            "4": {"class_type": "PreviewImage", "inputs": {"images": ["3", 0]}}}


# -- the pack as ComfyUI sees it -------------------------------------------------------------------------------------
def test_pack_definitions_are_clean_prefixed_and_categorised(comfy):
    assert comfy.pack.api == "v1" and comfy.pack.skipped == []
    assert comfy.check(prefix="DistillZoo") == []
    for node_id, cls in comfy.pack.node_class_mappings.items():
        assert cls.CATEGORY.startswith("distill-zoo/")
        assert node_id in comfy.pack.display_name_mappings


def test_pack_cannot_shadow_comfyui_modules(tmp_path):
    names = {p.stem for p in PACK.glob("*.py")} | {p.name for p in PACK.iterdir() if p.is_dir()}
    assert not names & COMFY_TOP_LEVEL
    assert all(n.startswith("dz_") or n in ("__init__", "workflows", "__pycache__") for n in names), names
    path_before = list(sys.path)
    with ComfyHarness(PACK, base_dir=tmp_path) as harness:
        assert sys.path == path_before
        own = [n for n in sys.modules if n.startswith(harness.pack.sys_module_name)]
        assert own and all(n == harness.pack.sys_module_name or n.startswith(harness.pack.sys_module_name + ".dz_")
                           for n in own)


def test_every_registered_method_is_reachable_from_the_nodes(comfy, sr_registry):
    from zoo.registry import list_methods

    info = comfy.object_info()
    t2i = [s.name for s in list_methods(task="text-to-image")]
    sr = [s.name for s in list_methods(task="super-resolution")]
    assert "fake_sr" in sr
    assert info["DistillZooLoadModel"]["input"]["required"]["method"][0] == ["auto", *t2i]
    assert info["DistillZooLoadUpscaleModel"]["input"]["required"]["method"][0] == ["auto", *sr]
    presets = info["DistillZooLoadPreset"]["input"]["required"]["preset"][0]
    for spec in list_methods(task="text-to-image"):
        for preset in spec.presets:
            assert f"{spec.name}.{preset.name}" in presets


# -- text to image ---------------------------------------------------------------------------------------------------
def test_sampler_node_equals_zoo_run_for_the_same_seed(comfy, tiny_model, tmp_path):
    import numpy as np
    from click.testing import CliRunner
    from PIL import Image

    from zoo.cli import main
    from zoo.sampling import read_metadata

    outcome = comfy.run(t2i_prompt(tiny_model))
    assert outcome.ok, outcome.describe()
    image, latent, info = outcome.outputs["3"]
    out = tmp_path / "cli.png"
    result = CliRunner().invoke(main, ["run", str(tiny_model), "-p", "a red circle", "--steps", "2", "-g", "2.5",
                                       "--seed", "3", "--device", "cpu", "--dtype", "fp32", "-o", str(out)])
    assert result.exit_code == 0, result.output
    cli_pixels = np.asarray(Image.open(out).convert("RGB"))
    node_pixels = (image[0].numpy() * 255).round().astype(np.uint8)
    assert np.array_equal(node_pixels, cli_pixels)
    meta = read_metadata(out)
    assert json.loads(info)["seed"] == meta["seed"] == 3 and json.loads(info)["nfe"] == meta["nfe"] == 4

    # layouts: IMAGE [B, H, W, 3] float32 in 0..1; LATENT = the sampler's latents in the VAE's raw space
    from zoo.loading import load_sampler

    _, sampler = load_sampler(None, str(tiny_model), device="cpu", dtype="fp32")
    direct = sampler("a red circle", steps=2, guidance_scale=2.5, seed=3, output_type="pt")
    assert image.dtype == torch.float32 and list(image.shape) == [1, 16, 16, 3]
    assert torch.equal(image, direct.images.permute(0, 2, 3, 1))
    scaling = sampler.components.vae.config.scaling_factor
    assert list(latent["samples"].shape) == [1, 4, 8, 8]
    torch.testing.assert_close(latent["samples"], direct.latents / scaling, rtol=0, atol=0)


def test_batch_size_and_sizes_reach_the_sampler(comfy, tiny_model):
    outcome = comfy.run(t2i_prompt(tiny_model, batch_size=3, width=24, height=8, seed=5))
    assert outcome.ok, outcome.describe()
    image, latent, _ = outcome.outputs["3"]
    assert list(image.shape) == [3, 8, 24, 3] and list(latent["samples"].shape) == [3, 4, 4, 12]
    assert not torch.equal(image[0], image[1])  # one seed, different noise per batch item


def test_recommended_settings_node_feeds_the_sampler(comfy, tiny_model):
    prompt = t2i_prompt(tiny_model, steps=["2", 0], guidance_scale=["2", 1])
    prompt["2"] = {"class_type": "DistillZooRecommendedSettings", "inputs": {"model": ["1", 0]}}
    outcome = comfy.run(prompt)
    assert outcome.ok, outcome.describe()
    manifest = json.loads((tiny_model / "zoo.json").read_text())["sampler"]
    assert outcome.outputs["2"] == (manifest["steps"], manifest["guidance_scale"])
    info = json.loads(outcome.outputs["3"][2])
    assert (info["steps"], info["guidance_scale"]) == (manifest["steps"], manifest["guidance_scale"])


def test_nasa_alpha_is_passed_to_the_sampler(comfy, tiny_model):
    from zoo.loading import load_sampler

    off = comfy.run(t2i_prompt(tiny_model, negative_prompt="blue", guidance_scale=0.0))
    on = comfy.run(t2i_prompt(tiny_model, negative_prompt="blue", guidance_scale=0.0, nasa_alpha=0.8))
    assert off.ok and on.ok, on.describe()
    _, sampler = load_sampler(None, str(tiny_model), device="cpu", dtype="fp32")
    direct = sampler("a red circle", negative_prompt="blue", steps=2, guidance_scale=0.0, seed=3, nasa_alpha=0.8,
                     output_type="pt")
    assert torch.equal(on.outputs["3"][0], direct.images.permute(0, 2, 3, 1))
    assert (on.outputs["3"][0] - off.outputs["3"][0]).abs().max() > 1e-4
    assert json.loads(on.outputs["3"][2])["nfe"] == 2  # NASA costs no extra UNet call


def test_progress_uses_comfyui_bar_inside_and_tqdm_outside(comfy, tiny_model, monkeypatch):
    outcome = comfy.run(t2i_prompt(tiny_model, steps=3))
    assert [p for p in outcome.progress if p[0] == "3"] == [("3", 1, 3), ("3", 2, 3), ("3", 3, 3)]

    loaded = outcome.outputs["1"][0]
    sampler_cls = comfy.mappings["DistillZooSampler"]
    updates = []

    class RecordingTqdm:
        def __init__(self, total, **kwargs):
            self.n, self.total = 0, total

        def update(self, n):
            self.n += n
            updates.append((self.n, self.total))

        def close(self):
            pass

    import tqdm.auto

    monkeypatch.setattr(tqdm.auto, "tqdm", RecordingTqdm)
    saved = {name: sys.modules.pop(name) for name in ("comfy", "comfy.utils", "comfy.model_management")}
    try:
        sampler_cls().sample(loaded, "a red circle", "", 2, 0.0, 1, 0, 0, 1, -1.0)
    finally:
        sys.modules.update(saved)
    assert updates == [(1, 2), (2, 2)]


# -- bad input: validation errors, never an executor crash -----------------------------------------------------------
@pytest.mark.parametrize("overrides, node, kind, text", [
    ({"steps": 0}, "3", "value_smaller_than_min", "Value 0 smaller than min of 1"),
    ({"width": 20}, "3", "custom_validation_failed", "width=20 is not a multiple of 8"),
    ({"height": 33}, "3", "custom_validation_failed", "height=33 is not a multiple of 8"),
])
def test_bad_sampler_input_is_a_validation_error(comfy, tiny_model, overrides, node, kind, text):
    outcome = comfy.run(t2i_prompt(tiny_model, **overrides))
    assert outcome.status == "validation_failed" and outcome.executed == []
    errors = outcome.validation.node_errors[node]["errors"]
    assert errors[0]["type"] == kind and text in f"{errors[0]['message']} {errors[0]['details']}"


def test_unknown_model_or_method_is_a_validation_error(comfy, tmp_path):
    prompt = t2i_prompt(tmp_path / "no-such-model")
    outcome = comfy.run(prompt)
    assert outcome.status == "validation_failed"
    error = outcome.validation.node_errors["1"]["errors"][0]
    assert error["type"] == "custom_validation_failed" and "does not exist" in error["details"]
    prompt["1"]["inputs"].update(model="", method="no_such_method")
    error = comfy.run(prompt).validation.node_errors["1"]["errors"][0]
    assert error["type"] == "value_not_in_list" and "no_such_method" in error["details"]
    prompt["1"]["inputs"].update(model="not a//ref", method="auto")
    error = comfy.run(prompt).validation.node_errors["1"]["errors"][0]
    assert error["type"] == "custom_validation_failed" and "\n" not in error["details"]


def test_errors_while_running_are_one_line_messages(comfy, tiny_model):
    # an SR-only method in the text-to-image loader, and a step count the model rejects: ZooErrors, reported
    outcome = comfy.run(t2i_prompt(tiny_model, steps=1001))
    assert outcome.status == "validation_failed"
    too_many = t2i_prompt(tiny_model, steps=1000)
    too_many["1"]["inputs"]["model"] = str(tiny_model)
    from zoo.errors import ZooError

    class Refusing:
        default_steps = 1

        def __call__(self, *args, **kwargs):
            raise ZooError("steps=1000 is out of range for refusing: use 1..1")

    loaded = comfy.run(t2i_prompt(tiny_model)).outputs["1"][0]
    loaded.sampler = Refusing()
    failed = comfy.run(too_many)
    assert failed.status == "execution_error" and failed.error["node_id"] == "3"
    assert failed.error["exception_message"] == "steps=1000 is out of range for refusing: use 1..1"


# -- super-resolution ------------------------------------------------------------------------------------------------
class NearestSR:
    """A stand-in SR sampler with IMDN's call signature (no steps/seed): nearest-neighbour x2, records its calls."""

    def __init__(self):
        self.calls = []

    def __call__(self, image, scale=None, tile=None, progress=None):
        from PIL import Image

        from zoo.sampling import SampleResult

        self.calls.append((image.size, scale, tile))
        factor = scale or 2
        if progress is not None:
            progress(1, 1)
        return SampleResult(images=[image.resize((image.width * factor, image.height * factor), Image.NEAREST)],
                            nfe=1, metadata={"method": "fake_sr"})


def make_nearest_sr(model, *, device="cpu", dtype=None, **options):
    return NearestSR()


@pytest.fixture
def sr_registry():
    from zoo.registry import get_registry, set_registry
    from zoo.spec import MethodSpec, Paper

    registry = get_registry().copy()
    registry.add(MethodSpec(name="fake_sr", task="super-resolution", summary="Nearest-neighbour stand-in.",
                            paper=Paper("none"), sampler=make_nearest_sr, trainer=make_nearest_sr,
                            config="fake_plugins.targets:AlphaConfig", plugin="tests"))
    set_registry(registry)
    yield registry
    set_registry(None)


def test_upscale_node_layout_tiles_and_batch(comfy, sr_registry):
    image = torch.rand(2, 6, 10, 3)
    load_cls, upscale_cls = comfy.mappings["DistillZooLoadUpscaleModel"], comfy.mappings["DistillZooUpscale"]
    (model,) = load_cls().load("fake_sr", "", "cpu", "fp32")
    (out,) = upscale_cls().upscale(model, image, 0, 64, 1, 0)
    assert out.dtype == torch.float32 and list(out.shape) == [2, 12, 20, 3]
    assert model.sampler.calls == [((10, 6), None, 64), ((10, 6), None, 64)]
    expected = (image * 255).round() / 255  # the 8-bit picture the CLI would read, upscaled by repetition
    assert torch.allclose(out[:, ::2, ::2], expected, atol=1e-6)
    from zoo.errors import InputError

    with pytest.raises(InputError, match="does not take steps=4"):
        upscale_cls().upscale(model, image, 0, 0, 4, 0)


def test_upscale_workflow_from_loaded_image(comfy, sr_registry):
    from PIL import Image

    Image.new("RGB", (7, 5), (0, 128, 255)).save(comfy.input_dir / "small.png")
    prompt = {"1": {"class_type": "LoadImage", "inputs": {"image": "small.png"}},
              "2": {"class_type": "DistillZooLoadUpscaleModel",
                    "inputs": {"method": "fake_sr", "model": "", "device": "cpu", "dtype": "auto"}},
              "3": {"class_type": "DistillZooUpscale", "inputs": {"upscale_model": ["2", 0], "image": ["1", 0],
                                                                  "scale": 3, "tile": 0, "steps": 1, "seed": 0}},
              "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "up"}}}
    outcome = comfy.run(prompt)
    assert outcome.ok, outcome.describe()
    assert list(outcome.outputs["3"][0].shape) == [1, 15, 21, 3]
    saved = Image.open(comfy.output_dir / outcome.ui["4"]["images"][0]["filename"])
    assert saved.size == (21, 15) and saved.getpixel((20, 14)) == (0, 128, 255)
    wrong = dict(prompt)
    wrong["3"] = {**prompt["3"], "inputs": {**prompt["3"]["inputs"], "upscale_model": ["1", 0]}}
    assert comfy.run(wrong).validation.node_errors["3"]["errors"][0]["type"] == "return_type_mismatch"


# -- shipped workflows and schema ------------------------------------------------------------------------------------
def test_object_info_json_is_current():
    """``nodes/object_info.json`` equals a fresh export (regenerate: python -m zoo.comfy_harness object-info nodes
    -o nodes/object_info.json). Option lists filled from the registry (methods, presets) change whenever a plugin is
    installed, so they are compared separately: the committed file must list the same nodes, inputs and types."""
    from zoo.comfy_harness.__main__ import main

    committed = json.loads((PACK / "object_info.json").read_text())
    with ComfyHarness(PACK) as harness:
        fresh = json.loads(json.dumps(harness.object_info()))
    dynamic = {("DistillZooLoadModel", "method"), ("DistillZooLoadUpscaleModel", "method"),
               ("DistillZooLoadPreset", "preset")}
    for info in (committed, fresh):
        for node, name in dynamic:
            info[node]["input"]["required"][name][0] = "<from the registry>"
    assert committed == fresh, "nodes/object_info.json is stale: python -m zoo.comfy_harness object-info nodes " \
                               "-o nodes/object_info.json"
    assert main(["check", str(PACK), "--prefix", "DistillZoo"]) == 0


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_shipped_workflow_validates(comfy, path):
    workflow = json.loads(path.read_text())
    methods = _methods_used(workflow)
    missing = _unregistered(methods)
    if missing:
        pytest.skip(f"{path.name} needs method(s) {missing}, which this environment does not load "
                    f"(ZOO_LOAD_PLUGINS excludes them or their plugin failed to import; see zoo plugins)")
    result = comfy.validate(workflow)
    files = [node["inputs"]["model"] for node in workflow.values()
             if node["class_type"] == "DistillZooLoadUpscaleModel" and node["inputs"]["model"].endswith(".pth")]
    if files:  # a weights file the user puts into models/upscale_models: refused while missing, fine when there
        assert result.node_errors and "is not in ComfyUI's models/upscale_models" in "\n".join(result.messages())
        import folder_paths

        folder = comfy.base_dir / "models" / "upscale_models"
        folder.mkdir(parents=True, exist_ok=True)
        for name in files:
            (folder / name).write_bytes(b"weights")
        folder_paths.add_model_folder_path("upscale_models", str(folder))
        result = comfy.validate(workflow)
    assert result.valid and not result.node_errors, "\n".join(result.messages())


def _methods_used(workflow):
    used = set()
    for node in workflow.values():
        inputs = node["inputs"]
        if node["class_type"] in ("DistillZooLoadModel", "DistillZooLoadUpscaleModel") and inputs["method"] != "auto":
            used.add(inputs["method"])
        if node["class_type"] == "DistillZooLoadPreset":
            used.add(inputs["preset"].split(".")[0])
    return used


def _unregistered(methods):
    from zoo.registry import get_registry

    return sorted(m for m in methods if m not in get_registry())


def test_pyproject_has_comfy_registry_fields():
    import tomllib

    comfy = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["comfy"]
    assert comfy["PublisherId"] and comfy["DisplayName"] and "Icon" in comfy and "nodes" in comfy["includes"]
