"""Equivalence inside real ComfyUI code: every text-to-image method, run natively in ComfyUI (its own MODEL, the
pack's patch and schedule nodes, core ``SamplerCustom``), gives the latents ``zoo run`` gives for the same model,
seed and timesteps.

The pack is loaded with ComfyUI's own custom-node loader from the repository root (the ``git clone`` layout), the
models are found through ComfyUI's ``folder_paths``, and the base UNet is ComfyUI's own (``SD15`` model config,
``ModelPatcher``), filled with the diffusers weights through ComfyUI's ``unet_to_diffusers`` key map. One ComfyUI
process runs every case (tests/fixtures_comfy.py). Tolerance: 1e-4 on latents of magnitude ~1-5 (fp32, different
attention kernels); a wrong rule (e.g. a clean end instead of diffusers' t = 0 end) is off by ~1e-1.
"""

from __future__ import annotations

import json

import pytest
import torch
from fixtures_comfy import COMFY_UNET_CONFIG, build_students, run_in_comfy
from safetensors.torch import load_file, save_file

from zoo.loading import load_sampler

PROMPTS = ["a red circle", "a blue square"]
SEED = 5
CASES = {
    # name: (student folder, schedule, steps, zoo call options, native options)
    "swiftbrush": ("swiftbrush", "one-step x0 at t=999 (SwiftBrush, SNOOPI)", 1, {}, {}),
    "snoopi_nasa": ("snoopi", "one-step x0 at t=999 (SwiftBrush, SNOOPI)", 1,
                    {"negative_prompt": "red", "nasa_alpha": 0.5}, {"nasa": 0.5}),
    "snoopi_nasa_relative_up": ("snoopi", "one-step x0 at t=999 (SwiftBrush, SNOOPI)", 1,
                                {"negative_prompt": "red", "nasa_alpha": 2.0, "nasa_mode": "relative",
                                 "nasa_layers": "up"}, {"nasa": 2.0, "relative": True, "layers": "up"}),
    "phased_dmd": ("phased_dmd", "re-noise (DMD2, Phased DMD)", 4, {}, {}),
    "hyper_sd_tcd": ("hyper_sd_tcd", "tcd (Hyper-SD unified LoRA)", 4, {"eta": 0.3}, {"gamma": 0.3}),
    "hyper_sd_ddim": ("hyper_sd_ddim", "ddim trailing (Hyper-SD N-step, AGD, LoRA-distill)", 2, {}, {}),
    "lora_distill": ("lora_distill", "ddim trailing (Hyper-SD N-step, AGD, LoRA-distill)", 6, {}, {"guidance": 4.0}),
    "agd": ("agd", "ddim trailing (Hyper-SD N-step, AGD, LoRA-distill)", 6, {}, {"guidance": 4.0}),
    # once more after the object patches of lora_distill and agd, which ComfyUI leaves installed on the shared UNet
    "swiftbrush_again": ("swiftbrush", "one-step x0 at t=999 (SwiftBrush, SNOOPI)", 1, {}, {}),
}

COMFY_SCRIPT = r"""
import torch
from safetensors.torch import load_file
import comfy.model_management, comfy.model_patcher, comfy.supported_models, comfy.utils, folder_paths, nodes
from comfy_extras.nodes_custom_sampler import SamplerCustom

cpu = torch.device("cpu")
unet_config = dict(UNET_CONFIG, dtype=torch.float32)
model_config = comfy.supported_models.SD15(unet_config)
base = model_config.get_model({}, "", device=cpu)
mapping = comfy.utils.unet_to_diffusers(unet_config)
diffusers = load_file(BASE_UNET)
missing, unexpected = base.diffusion_model.load_state_dict({mapping[k]: v for k, v in diffusers.items()}, strict=True)
patcher = comfy.model_patcher.ModelPatcher(base, load_device=cpu, offload_device=cpu)

pack = load_pack()
for folder in ("unet", "diffusion_models"):
    if folder in folder_paths.folder_names_and_paths:
        folder_paths.add_model_folder_path(folder, STUDENTS)
choices = pack["DistillZooApplyModel"].INPUT_TYPES()["required"]["zoo_model"][0]
tensors = load_file(TENSORS)
cond = [[tensors["cond"], {}]]
results = {}
for name, case in CASES.items():
    choice = "students/" + case["folder"] + "/zoo.json"  # under this test's own folder, whatever ComfyUI holds
    with torch.inference_mode():
        model = pack["DistillZooApplyModel"]().apply(patcher, choice, 1.0, case.get("guidance", -1.0))[0]
        if "nasa" in case:
            empty = [[tensors["empty"], {}]] if case.get("relative") else None
            model = pack["DistillZooNASA"]().patch(model, [[tensors["negative"], {}]], case["nasa"], empty,
                                                   case.get("layers", "all"))[0]
        sampler, sigmas = pack["DistillZooFewStepSchedule"]().build(model, case["schedule"], case["steps"],
                                                                    case.get("gamma", 0.3))
    latent = {"samples": torch.zeros(len(PROMPTS), 4, 8, 8)}
    with torch.inference_mode():  # as ComfyUI's executor runs every node
        out, _ = SamplerCustom().sample(model, True, SEED, 1.0, cond, cond, sampler, sigmas, latent)
    got = out["samples"] * model.model.latent_format.scale_factor
    results[name] = {"latents": got.flatten().tolist(), "sigmas": sigmas.tolist()}
plain = sorted(base.state_dict())
model = pack["DistillZooApplyModel"]().apply(patcher, "students/agd/zoo.json", 1.0, -1.0)[0]
comfy.model_management.load_models_gpu([model])
state_dict_keys = {"plain": plain, "patched": sorted(base.state_dict())}
print(json.dumps({"results": results, "choices": choices, "state_dict_keys": state_dict_keys}))
"""


@pytest.fixture(scope="module")
def native_run(tmp_path_factory):
    """Every case through ``zoo run``'s sampler here and natively in one ComfyUI process."""
    root = tmp_path_factory.mktemp("comfy-native")
    folders = build_students(root)
    expected, tensors = {}, {}
    for name, (folder, _, steps, options, _) in CASES.items():
        _, sampler = load_sampler(model=str(folders[folder]))
        expected[name] = sampler(PROMPTS, steps=steps, seed=SEED, **options).latents
        tensors.setdefault("cond", sampler.components.encode_prompt(PROMPTS).contiguous())
        tensors.setdefault("negative", sampler.components.encode_prompt(["red"]).contiguous())
        tensors.setdefault("empty", sampler.components.encode_prompt([""]).contiguous())
    save_file(tensors, str(root / "tensors.safetensors"))
    cases = {name: {"folder": folder, "schedule": schedule, "steps": steps, **native}
             for name, (folder, schedule, steps, _, native) in CASES.items()}
    output = run_in_comfy(COMFY_SCRIPT, UNET_CONFIG=COMFY_UNET_CONFIG, CASES=cases, PROMPTS=PROMPTS, SEED=SEED,
                          BASE_UNET=str(folders["base"] / "unet" / "diffusion_pytorch_model.safetensors"),
                          STUDENTS=str(root), TENSORS=str(root / "tensors.safetensors"))
    return expected, output


@pytest.mark.parametrize("name", list(CASES))
def test_native_comfyui_graph_equals_zoo_run(native_run, name):
    expected, output = native_run
    got = torch.tensor(output["results"][name]["latents"]).reshape(expected[name].shape)
    assert expected[name].abs().max() > 0.5  # a real image latent, not a degenerate zero
    torch.testing.assert_close(got, expected[name].float(), rtol=1e-4, atol=1e-4)


def test_the_pack_lists_every_export_found_in_comfyuis_model_folders(native_run):
    _, output = native_run
    listed = sorted(choice for choice in output["choices"] if choice.startswith("students/"))
    assert listed == sorted(f"students/{folder}/zoo.json" for folder in {case[0] for case in CASES.values()})
    keys = output["state_dict_keys"]
    assert keys["patched"] == keys["plain"]  # installed object patches leave the model's state dict as it was


def test_installing_the_pack_changed_none_of_comfyuis_packages():
    """scripts/setup_comfy.sh installs distill-zoo into ComfyUI's environment as a user would and records the
    package versions before and after."""
    from fixtures_comfy import ROOT, comfy_root

    comfy_root()  # fails with the set-up command when the environment is missing
    record = json.loads((ROOT / ".venv-comfy" / "pack-install.json").read_text())
    assert record["changed"] == {}
    assert "distill-zoo" in record["added"] and "torch" in record["before"] and "transformers" in record["before"]


CANCEL_SCRIPT = r"""
import comfy.model_management as mm

pack = load_pack()
report = {}

# 1. Text to image: Cancel pressed inside the first UNet call (after its middle block).
loaded = pack["DistillZooLoadModel"]().load("auto", "", "cpu", "fp32", "auto")[0]
unet = loaded.sampler.components.unet
finished = []
unet.register_forward_hook(lambda *args: finished.append("unet"))
handle = unet.mid_block.register_forward_hook(lambda *args: mm.interrupt_current_processing(True))
try:
    pack["DistillZooSampler"]().sample(loaded, "a red circle", "", 4, -1.0, 0, 0, 0, 1, -1.0)
    report["t2i"] = "finished"
except mm.InterruptProcessingException:
    report["t2i"] = "interrupted"
report["t2i_unet_calls_finished"] = len(finished)
handle.remove()
images = pack["DistillZooSampler"]().sample(loaded, "a red circle", "", 2, -1.0, 0, 0, 0, 1, -1.0)[0]
report["t2i_after"] = list(images.shape)

# 2. Upscaling with YONOS-SR: Cancel pressed inside the VAE encoder of the first batch of tiles.
import torch
upscaler = pack["DistillZooLoadUpscaleModel"]().load("yonos_sr", "", "cpu", "fp32")[0]
encoder = upscaler.sampler.model.vae.encoder
handle = encoder.mid_block.register_forward_hook(lambda *args: mm.interrupt_current_processing(True))
try:
    pack["DistillZooUpscale"]().upscale(upscaler, torch.rand(1, 96, 96, 3), 0, 0, 1, 0)
    report["sr"] = "finished"
except mm.InterruptProcessingException:
    report["sr"] = "interrupted"
handle.remove()
print(json.dumps(report))
"""


def test_cancel_stops_inside_one_network_call_in_real_comfyui():
    """ComfyUI's Cancel (interrupt_current_processing) pressed while a UNet call or a VAE encode is running stops
    the node before that call finishes; the next run works."""
    report = run_in_comfy(CANCEL_SCRIPT)
    assert report["t2i"] == "interrupted" and report["t2i_unet_calls_finished"] == 0
    assert report["t2i_after"] == [1, 32, 32, 3]
    assert report["sr"] == "interrupted"


SPANDREL_SCRIPT = r"""
import numpy as np, torch
from PIL import Image
pack = load_pack()
import spandrel, comfy_extras.nodes_upscale_model as upscale_nodes
report = {"registered": "IMDN" in spandrel.MAIN_REGISTRY}
lr = torch.from_numpy(np.asarray(Image.open(LR).convert("RGB"), dtype=np.float32) / 255.0)[None]
uses_spandrel = "spandrel" in open(upscale_nodes.__file__).read()
if uses_spandrel:  # current ComfyUI: the core nodes, with the file in models/upscale_models
    import folder_paths
    folder_paths.add_model_folder_path("upscale_models", WEIGHTS_DIR)
    model = upscale_nodes.UpscaleModelLoader().load_model(WEIGHTS_NAME)[0]
    image = upscale_nodes.ImageUpscaleWithModel().upscale(model, lr)[0]
else:  # ComfyUI of early 2024 loads upscalers without spandrel: spandrel's own loader, as newer core nodes call it
    from comfy.utils import load_torch_file
    model = spandrel.ModelLoader().load_from_state_dict(load_torch_file(WEIGHTS_DIR + "/" + WEIGHTS_NAME,
                                                                        safe_load=True)).eval()
    image = model(lr.movedim(-1, 1)).movedim(1, -1).clamp(0, 1)
report.update(core_nodes=uses_spandrel, architecture=str(model.architecture.id), scale=model.scale,
              pixels=(image[0].numpy() * 255).round().astype(np.uint8).flatten().tolist(), shape=list(image.shape))
print(json.dumps(report))
"""


def test_core_upscale_nodes_run_the_official_imdn_weights(tmp_path):
    """The official IMDN_x4.pth in ComfyUI's models/upscale_models, loaded by spandrel (IMDN registered by the pack),
    gives the picture `zoo upscale imdn` gives on Set5 (baby, x4 bicubic LR), up to 8-bit rounding."""
    import shutil

    import numpy as np
    from conftest import SHARED_DATA
    from PIL import Image

    from zoo.loading import load_sampler

    weights = SHARED_DATA / "imdn" / "checkpoints" / "IMDN_x4.pth"
    shutil.copy(weights, tmp_path / weights.name)
    lr = SHARED_DATA / "imdn" / "Set5" / "LR_bicubic" / "X4" / "babyx4.bmp"
    report = run_in_comfy(SPANDREL_SCRIPT, LR=str(lr), WEIGHTS_DIR=str(tmp_path), WEIGHTS_NAME=weights.name)
    assert report["registered"] and report["architecture"] == "IMDN" and report["scale"] == 4
    _, sampler = load_sampler("imdn", str(weights))
    expected = np.asarray(sampler(Image.open(lr), tile=0).images[0], dtype=int)
    got = np.array(report["pixels"], dtype=int).reshape(report["shape"][1:])
    assert got.shape == expected.shape == (512, 512, 3)
    difference = np.abs(got - expected)
    assert difference.max() <= 1 and difference.mean() < 0.01


VALIDATE_SCRIPT = r"""
import asyncio, glob, os
import execution, folder_paths
pack = load_pack()
for folder, files in PLACEHOLDERS.items():  # the user's own files the workflows name (contents are not read)
    path = os.path.join(MODELS, folder)
    os.makedirs(path, exist_ok=True)
    for name in files:
        open(os.path.join(path, name), "wb").write(b"placeholder")
    folder_paths.add_model_folder_path(folder, path)
for folder in ("unet", "diffusion_models"):
    if folder in folder_paths.folder_names_and_paths:
        folder_paths.add_model_folder_path(folder, STUDENTS)
os.makedirs(folder_paths.get_input_directory(), exist_ok=True)
open(os.path.join(folder_paths.get_input_directory(), "example.png"), "wb").write(PNG.encode("latin-1"))
report = {}
for path in sorted(glob.glob(WORKFLOWS + "/*.json")):
    prompt = json.load(open(path))
    try:
        result = execution.validate_prompt(prompt)
    except TypeError:  # ComfyUI >= 0.3.4x: async, with a prompt id
        result = asyncio.run(execution.validate_prompt("check", prompt, None))
    report[os.path.basename(path)] = {"valid": bool(result[0]), "error": result[1], "node_errors": result[3]}
print(json.dumps(report, default=str))
"""


def test_every_shipped_api_workflow_validates_in_real_comfyui(tmp_path):
    """ComfyUI's own prompt validation (node types, links, widget values and model-file lists) accepts every shipped
    API-format workflow, the native ones (core loaders, SamplerCustom, the pack's patch and schedule nodes)
    included, with the files they name in place: the zoo exports are real, the user's checkpoint, LoRAs and IMDN
    weights are placeholders (their contents are read only when the workflow runs)."""
    import io

    from PIL import Image

    from fixtures_comfy import ROOT

    folders = build_students(tmp_path)
    workflows = sorted((ROOT / "nodes" / "workflows").glob("*.json"))
    png = io.BytesIO()
    Image.new("RGB", (8, 8)).save(png, format="PNG")
    report = run_in_comfy(VALIDATE_SCRIPT, WORKFLOWS=str(ROOT / "nodes" / "workflows"), MODELS=str(tmp_path / "models"),
                          STUDENTS=str(tmp_path / "students"), PNG=png.getvalue().decode("latin-1"),
                          PLACEHOLDERS={"checkpoints": ["v1-5-pruned-emaonly.safetensors"],
                                        "loras": ["Hyper-SD15-4steps-lora.safetensors",
                                                  "Hyper-SD15-1step-lora.safetensors"],
                                        "upscale_models": ["IMDN_x4.pth"]})
    assert sorted(report) == [p.name for p in workflows] and "native_swiftbrush.json" in report
    assert set(folders) > {"swiftbrush", "snoopi", "phased_dmd", "agd", "lora_distill"}
    invalid = {name: (r["error"], r["node_errors"]) for name, r in report.items() if not r["valid"] or r["node_errors"]}
    assert invalid == {}


def test_every_ui_workflow_gives_back_its_api_workflow(load_script):
    """nodes/workflows/ui/ holds the drag-and-drop twin of every API workflow; reading it the way ComfyUI's frontend
    does (widget values in schema order, seed controls skipped, links to [node, slot]) gives the API file back."""
    from fixtures_comfy import ROOT

    workflow_ui = load_script("workflow_ui")
    schemas = workflow_ui.load_schemas()
    api_files = sorted((ROOT / "nodes" / "workflows").glob("*.json"))
    ui_files = sorted((ROOT / "nodes" / "workflows" / "ui").glob("*.json"))
    assert [p.name for p in ui_files] == [p.name for p in api_files]
    for api_path, ui_path in zip(api_files, ui_files):
        api, ui = json.loads(api_path.read_text()), json.loads(ui_path.read_text())
        assert {"nodes", "links", "version"} <= set(ui)
        assert workflow_ui.to_api(ui, schemas) == api, ui_path.name
        assert workflow_ui.to_ui(api, schemas) == ui, f"{ui_path.name} is stale: run python scripts/workflow_ui.py"


CORE_UPSCALE_SCRIPT = r"""
import numpy as np, torch
from PIL import Image
pack = load_pack()
from comfy_extras.nodes_upscale_model import ImageUpscaleWithModel
loaded = pack["DistillZooLoadUpscaleModel"]().load("yonos_sr", "", "cpu", "fp32")[0]
image = torch.from_numpy(np.asarray(Image.open(IMAGE).convert("RGB"), dtype=np.float32) / 255.0)[None]
with torch.inference_mode():
    model = pack["DistillZooCoreUpscaleModel"]().convert(loaded, 1, 7)[0]
    out = ImageUpscaleWithModel().upscale(model, image)[0]
print(json.dumps({"scale": model.scale, "shape": list(out.shape),
                  "pixels": (out[0].numpy() * 255).round().astype(np.uint8).flatten().tolist()}))
"""


def test_yonos_sr_runs_in_core_upscale_node(tmp_path):
    """Any zoo upscaler becomes ComfyUI's UPSCALE_MODEL: YONOS-SR in core ImageUpscaleWithModel gives the picture
    `zoo upscale yonos_sr` gives (one ComfyUI tile; up to 8-bit rounding of ComfyUI's float path)."""
    import numpy as np
    from PIL import Image

    from zoo.loading import load_sampler

    picture = Image.fromarray((np.random.default_rng(0).random((40, 48, 3)) * 255).astype(np.uint8))
    picture.save(tmp_path / "lr.png")
    report = run_in_comfy(CORE_UPSCALE_SCRIPT, IMAGE=str(tmp_path / "lr.png"))
    _, sampler = load_sampler("yonos_sr")
    expected = np.asarray(sampler(picture, seed=7).images[0], dtype=int)
    got = np.array(report["pixels"], dtype=int).reshape(report["shape"][1:])
    assert report["scale"] == 4 and got.shape == expected.shape == (160, 192, 3)
    assert np.abs(got - expected).max() <= 1
