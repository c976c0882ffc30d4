"""Run every shipped example workflow (API and UI format) in a real, running ComfyUI, as shipped.

The workflows name the user's own files (an SD 1.5 checkpoint, the Hyper-SD LoRAs, the official IMDN weights, zoo
exports in models/diffusion_models). Without network access this script lays random-weight stand-ins of those
files under the shipped names into the ComfyUI folder, in the layouts ComfyUI detects (an SD1.5-layout checkpoint
with a small UNet, full-size CLIP-L and VAE; kohya LoRAs; zoo exports of every method for that UNet), copies the
official IMDN_x4.pth when given, posts each workflow to ``/prompt`` and waits for its result. Images are noise (the
weights are random); what is checked is that every graph runs as shipped. Run it with ComfyUI's Python:

    cd ComfyUI && python main.py --cpu --listen 127.0.0.1 --port 8199 &     # the pack in custom_nodes/
    python /path/to/distill-zoo/scripts/comfy_smoke.py --comfyui . --port 8199 --imdn /path/to/IMDN_x4.pth

Prints one line per workflow and exits non-zero when any fails (docs/COMFYUI.md records a run).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UNET = dict(sample_size=64, in_channels=4, out_channels=4, block_out_channels=(320, 640), layers_per_block=1,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32)
"""A small UNet that ComfyUI's model detection takes for SD 1.5 (320 channels, 768-wide text)."""
LDM_UNET_CONFIG = {"use_checkpoint": False, "image_size": 32, "out_channels": 4, "use_spatial_transformer": True,
                   "legacy": False, "adm_in_channels": None, "in_channels": 4, "model_channels": 320,
                   "num_res_blocks": [1, 1], "transformer_depth": [0, 1], "transformer_depth_output": [0, 0, 1, 1],
                   "channel_mult": [1, 2], "transformer_depth_middle": 1, "use_linear_in_transformer": False,
                   "context_dim": 768, "num_heads": 8, "num_head_channels": -1}


def build_files(comfy_root: Path, imdn: Path | None) -> None:
    import shutil

    import torch
    from diffusers import UNet2DConditionModel
    from PIL import Image
    from safetensors.torch import save_file

    import comfy.ldm.models.autoencoder
    import comfy.sd1_clip
    import comfy.utils

    models = comfy_root / "models"
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**UNET)
    mapping = comfy.utils.unet_to_diffusers(LDM_UNET_CONFIG)
    checkpoint = {f"model.diffusion_model.{mapping[k]}": v for k, v in unet.state_dict().items()}
    clip = comfy.sd1_clip.SDClipModel(device="cpu")
    checkpoint.update({f"cond_stage_model.{k}": v for k, v in clip.state_dict().items()})
    ddconfig = {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
                "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}
    vae = comfy.ldm.models.autoencoder.AutoencoderKL(ddconfig=ddconfig, embed_dim=4)
    checkpoint.update({f"first_stage_model.{k}": v for k, v in vae.state_dict().items()})
    (models / "checkpoints").mkdir(parents=True, exist_ok=True)
    save_file({k: v.half().contiguous() for k, v in checkpoint.items()},
              str(models / "checkpoints" / "v1-5-pruned-emaonly.safetensors"))

    sys.path.insert(0, str(ROOT / "tests"))
    from fixtures_comfy import _kohya_lora, _manifest, _perturbed, _save_unet

    (models / "loras").mkdir(parents=True, exist_ok=True)
    for seed, name in enumerate(("Hyper-SD15-4steps-lora.safetensors", "Hyper-SD15-1step-lora.safetensors")):
        save_file(_kohya_lora(unet, seed), str(models / "loras" / name))
    state = {k: v.clone() for k, v in unet.state_dict().items()}
    exports = models / "diffusion_models"
    for method, seed in (("swiftbrush", 1), ("snoopi", 2)):
        _save_unet(unet, _perturbed(state, seed), exports / method / "unet")
        _manifest(exports / method, method=method, base_model="runwayml/stable-diffusion-v1-5")
    for phase in (0, 1):
        _save_unet(unet, _perturbed(state, 3 + phase), exports / "phased_dmd" / "experts" / f"phase_{phase}")
    _manifest(exports / "phased_dmd", method="phased_dmd", base_model="runwayml/stable-diffusion-v1-5",
              sampler={"phase_boundaries": [499], "stochastic": True})
    unet.load_state_dict(state)

    from zoo_plugins.agd.adapters import AGDAdapters
    from zoo_plugins.lora_distill.guidance_embedding import GuidanceEmbedding

    (exports / "lora_distill").mkdir(parents=True, exist_ok=True)
    save_file(_kohya_lora(unet, 6), str(exports / "lora_distill" / "lora.safetensors"))
    embedding = GuidanceEmbedding.for_unet(unet)
    save_file({k: v.contiguous() for k, v in embedding.state_dict().items()},
              str(exports / "lora_distill" / "guidance_embedding.safetensors"))
    _manifest(exports / "lora_distill", method="lora_distill", base_model="runwayml/stable-diffusion-v1-5",
              lora="lora.safetensors", guidance_embedding="guidance_embedding.safetensors",
              guidance_embedding_config=embedding.config, sampler={"guidance_scale": 5.0})
    adapters = AGDAdapters.for_unet(unet, hidden_dim=32)
    (exports / "agd").mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in adapters.state_dict().items()},
              str(exports / "agd" / "agd_adapters.safetensors"))
    _manifest(exports / "agd", method="agd", base_model="runwayml/stable-diffusion-v1-5", adapters=adapters.config,
              adapter_file="agd_adapters.safetensors", sampler={"guidance_scale": 5.0})

    (models / "upscale_models").mkdir(parents=True, exist_ok=True)
    if imdn is not None:
        shutil.copy(imdn, models / "upscale_models" / "IMDN_x4.pth")
    (comfy_root / "input").mkdir(exist_ok=True)
    Image.new("RGB", (64, 48), (180, 60, 40)).save(comfy_root / "input" / "example.png")


def run(port: int, name: str, prompt: dict, timeout: float = 1800) -> tuple[str, float, str]:
    base = f"http://127.0.0.1:{port}"
    started = time.time()
    request = urllib.request.Request(f"{base}/prompt", data=json.dumps({"prompt": prompt}).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        prompt_id = json.loads(urllib.request.urlopen(request).read())["prompt_id"]
    except urllib.error.HTTPError as exc:
        return "refused", 0.0, exc.read().decode()[:300]
    while time.time() - started < timeout:
        history = json.loads(urllib.request.urlopen(f"{base}/history/{prompt_id}").read())
        status = history.get(prompt_id, {}).get("status", {})
        if status.get("completed") or status.get("status_str") == "error":
            errors = [m[1].get("exception_message", "").strip() for m in status.get("messages", [])
                      if m[0] == "execution_error"]
            images = sum(len(v.get("images", [])) for v in history[prompt_id]["outputs"].values())
            return status.get("status_str", "?"), time.time() - started, "; ".join(errors) or f"{images} image(s)"
        time.sleep(0.5)
    return "timeout", time.time() - started, ""


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfyui", type=Path, required=True, help="the ComfyUI folder the server runs from")
    parser.add_argument("--port", type=int, default=8188)
    parser.add_argument("--imdn", type=Path, help="the official IMDN_x4.pth (else the IMDN workflows fail)")
    parser.add_argument("--skip-files", action="store_true", help="the stand-in files are already in place")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(args.comfyui.resolve()))
    sys.argv = [sys.argv[0], "--cpu"]  # ComfyUI's modules read the command line (CPU mode) when imported
    import comfy.options

    comfy.options.enable_args_parsing()
    if not args.skip_files:
        build_files(args.comfyui.resolve(), args.imdn)
    sys.path.insert(0, str(ROOT / "scripts"))
    from workflow_ui import load_schemas, to_api

    schemas, failed = load_schemas(), 0
    workflows = ROOT / "nodes" / "workflows"
    for path in sorted(workflows.glob("*.json")) + sorted((workflows / "ui").glob("*.json")):
        data = json.loads(path.read_text())
        prompt = to_api(data, schemas) if "nodes" in data else data
        status, seconds, detail = run(args.port, path.name, prompt)
        failed += status != "success"
        print(f"{path.relative_to(workflows)}: {status} in {seconds:.1f} s ({detail})", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
