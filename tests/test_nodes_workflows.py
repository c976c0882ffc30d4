"""Every shipped example workflow (``nodes/workflows/*.json``) executed through the ComfyUI harness.

The workflows name the real defaults (testbed students, the Hyper-SD hub repository, official IMDN weights). Here the
model references are pointed at tiny random models so each run takes seconds: text-to-image loaders get a tiny SD
folder, the IMDN weights file the IMDN workflows name (IMDN_x4.pth in models/upscale_models) is a tiny IMDN checkpoint
of that name (YONOS-SR runs its small committed testbed student), and the Hyper-SD preset's base model and LoRA are
served by the olah hub fixture under their real repository ids. Everything else (methods, links, widget values and
the IMDN file name) runs as shipped.
"""

import json
from pathlib import Path

import pytest
import torch

from fixtures_hub import hub_server, olah_server  # noqa: F401  (pytest fixtures)
from zoo.comfy_harness import ComfyHarness

ROOT = Path(__file__).resolve().parents[1]
PACK = ROOT / "nodes"
WORKFLOWS = sorted(p for p in (PACK / "workflows").glob("*.json") if not p.name.startswith("native_"))
"""The workflows of the pack's own nodes (the native_* ones use core ComfyUI nodes: tests/test_comfy_native.py)."""



@pytest.fixture(autouse=True)
def _test_models_are_allowed(tmp_path_factory, monkeypatch):
    """The tests' tiny models live under pytest's temporary folder: the operator's model root here."""
    monkeypatch.setenv("ZOO_MODEL_ROOTS", str(tmp_path_factory.getbasetemp()))

@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    from zoo.tiny import build_tiny_sd

    return build_tiny_sd(tmp_path_factory.mktemp("tiny") / "sd")


@pytest.fixture(scope="module")
def tiny_imdn(tmp_path_factory):
    from safetensors.torch import save_file

    from zoo_plugins.imdn.arch import IMDN

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("imdn")
    network = IMDN(num_features=16, num_blocks=2, upscale=4)
    torch.save(network.state_dict(), folder / "IMDN_x4.pth")  # the official file's name and format
    return folder


@pytest.fixture(scope="module")
def tiny_phased(tiny_sd, tmp_path_factory):
    """A Phased DMD folder: two phase experts (copies of the tiny UNet) split at t=499, over the tiny SD base."""
    import shutil

    folder = tmp_path_factory.mktemp("phased")
    for phase in range(2):
        shutil.copytree(tiny_sd / "unet", folder / "experts" / f"phase_{phase}")
    (folder / "zoo.json").write_text(json.dumps({"method": "phased_dmd", "task": "text-to-image",
                                                 "base_model": str(tiny_sd),
                                                 "sampler": {"steps": 2, "phase_boundaries": [499]}}))
    return folder


TINY_LAYOUT = {"phased_dmd": "tiny_phased"}
"""Methods whose models have their own folder layout get a tiny model of that layout instead of the tiny SD."""


def _methods(workflow):
    used = set()
    for node in workflow.values():
        if node["class_type"] in ("DistillZooLoadModel", "DistillZooLoadUpscaleModel") and \
                node["inputs"]["method"] != "auto":
            used.add(node["inputs"]["method"])
        if node["class_type"] == "DistillZooLoadPreset":
            used.add(node["inputs"]["preset"].split(".")[0])
    return used


def _serve_hyper_sd(hub_server, tiny_sd, tmp_path, workflow):
    from safetensors.torch import save_file

    from fixtures_hyper_sd import kohya_lora_for
    from zoo.t2i import SDComponents
    from zoo_plugins.hyper_sd import presets

    for node in workflow.values():
        if node["class_type"] != "DistillZooLoadPreset":
            continue
        recipe = presets.recipe(node["inputs"]["preset"].split(".", 1)[1])
        unet = SDComponents.from_folder(tiny_sd).unet
        lora = tmp_path / recipe.file
        save_file(kohya_lora_for(unet, seed=3), str(lora))
        hub_server.add_repo(recipe.base_model, tiny_sd, replace=True)
        hub_server.add_repo(presets.REPO, {recipe.file: lora, "README.md": "tiny look-alike\n"}, replace=True)


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_example_workflow_runs(path, tiny_sd, tiny_imdn, tmp_path, request):
    from PIL import Image

    from zoo.registry import get_registry

    torch.set_num_threads(1)
    workflow = json.loads(path.read_text())
    missing = sorted(m for m in _methods(workflow) if m not in get_registry())
    if missing:
        pytest.skip(f"{path.name} needs method(s) {missing}, which this environment does not load "
                    f"(ZOO_LOAD_PLUGINS excludes them or their plugin failed to import; see zoo plugins)")
    for node in workflow.values():
        if node["class_type"] == "DistillZooLoadModel":
            fixture = TINY_LAYOUT.get(node["inputs"]["method"])
            node["inputs"]["model"] = str(request.getfixturevalue(fixture) if fixture else tiny_sd)
    if any(n["class_type"] == "DistillZooLoadPreset" for n in workflow.values()):
        _serve_hyper_sd(request.getfixturevalue("hub_server"), tiny_sd, tmp_path, workflow)

    with ComfyHarness(PACK, base_dir=tmp_path / "comfy") as comfy:
        Image.new("RGB", (12, 8), (200, 30, 30)).save(comfy.input_dir / "example.png")
        import folder_paths

        folder_paths.add_model_folder_path("upscale_models", str(tiny_imdn))
        outcome = comfy.run(workflow)
        assert outcome.ok, outcome.describe()
        saved = [node for node, ui in outcome.ui.items() if ui.get("images")]
        assert saved, "the workflow saved no image"
        for node_id, node in workflow.items():
            if node["class_type"] == "DistillZooSampler":
                image, latent, info = outcome.outputs[node_id]
                batch = node["inputs"]["batch_size"]
                assert list(image.shape) == [batch, 16, 16, 3] and list(latent["samples"].shape) == [batch, 4, 8, 8]
                assert json.loads(info)["nfe"] >= 1
            if node["class_type"] == "DistillZooUpscale":
                source = outcome.outputs[node["inputs"]["image"][0]][0]
                result = outcome.outputs[node_id][0]
                assert list(result.shape) == [source.shape[0], source.shape[1] * 4, source.shape[2] * 4, 3]
        assert outcome.progress, "no progress was reported through comfy.utils.ProgressBar"
