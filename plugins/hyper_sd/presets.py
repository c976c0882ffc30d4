"""Every published ByteDance/Hyper-SD recipe as data (no torch).

Source: the ``ByteDance/Hyper-SD`` model card (README) and file listing, as summarised in methods.md §3(c)-(d) and
artifact-formats.md §1. Each :class:`HyperRecipe` names the file, its base model, its key format and the sampler
settings of the card:

* N-step LoRAs (SD1.5 / SDXL 2, 4, 8 steps): DDIM with ``timestep_spacing="trailing"``, guidance 0, LoRA fused at 1.0.
* unified 1-step LoRAs: TCD, 1-8 steps, ``eta=1.0`` for one step (lower eta for more detail with more steps).
* the SDXL 1-step UNet: the whole UNet replaced, ``LCMScheduler`` with ``timesteps=[800]``.
* CFG-preserving LoRAs (SD1.5 / SDXL 8 and 12 steps): DDIM trailing, guidance 5-8, negative prompts work.
* SD3 CFG LoRAs (4/8/16 steps, guidance 3/5/7) and FLUX.1-dev LoRAs (8/16 steps, embedded guidance 3.5): fused with
  ``lora_scale=0.125`` and run with the pipeline's default flow-matching Euler scheduler.

Step ranges (``min_steps``..``max_steps``) are what the card allows: an N-step LoRA is made for N steps (trailing
timesteps then coincide with its N segment edges, methods.md §3(c)); we accept N..2N because extra steps stay inside
segments. The card allows 6 steps for the SD3 8-step LoRA and 12 for the 16-step one, hence ``3N/4``..N there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

REPO = "ByteDance/Hyper-SD"
SD15_BASE = "runwayml/stable-diffusion-v1-5"
SDXL_BASE = "stabilityai/stable-diffusion-xl-base-1.0"
SD3_BASE = "stabilityai/stable-diffusion-3-medium-diffusers"
FLUX_BASE = "black-forest-labs/FLUX.1-dev"

FAMILIES = ("sd15", "sdxl", "sd3", "flux")
SCHEDULERS = ("ddim_trailing", "tcd", "lcm", "flow_euler")


@dataclass(frozen=True)
class HyperRecipe:
    """One published Hyper-SD file and how the model card runs it.

    Attributes:
        name: preset name (``sd15-4step``).
        file: file name in :data:`REPO`.
        family: ``sd15``, ``sdxl``, ``sd3`` or ``flux`` (which pipeline runs it).
        base_model: hub id of the base model.
        kind: ``lora`` (applied to the base UNet/transformer) or ``unet`` (replaces the UNet).
        key_format: ``kohya`` or ``peft`` (artifact-formats.md §1).
        scheduler: ``ddim_trailing``, ``tcd``, ``lcm`` or ``flow_euler``.
        steps / min_steps / max_steps: default and allowed step counts.
        guidance_scale: default CFG scale (diffusers convention; 0 = off); ``guidance_range`` the card's range.
        lora_scale: scale the LoRA is fused with.
        eta: TCD's eta (unified LoRA only).
        timesteps: explicit timesteps (the 1-step UNet starts at 800).
    """

    name: str
    file: str
    family: str
    base_model: str
    kind: str = "lora"
    key_format: str = "kohya"
    scheduler: str = "ddim_trailing"
    steps: int = 4
    min_steps: int = 4
    max_steps: int = 8
    guidance_scale: float = 0.0
    guidance_range: tuple[float, float] | None = None
    lora_scale: float = 1.0
    eta: float | None = None
    timesteps: tuple[int, ...] | None = None
    negative_prompt: bool = False
    description: str = ""
    card: dict[str, Any] = field(default_factory=dict)

    def settings(self) -> dict[str, Any]:
        """The sampler settings, as stored in :class:`zoo.sdk.Preset` ``settings`` and shown by ``zoo info``."""
        out: dict[str, Any] = {"file": self.file, "base_model": self.base_model, "family": self.family,
                               "kind": self.kind, "key_format": self.key_format, "scheduler": self.scheduler,
                               "steps": self.steps, "min_steps": self.min_steps, "max_steps": self.max_steps,
                               "guidance_scale": self.guidance_scale, "lora_scale": self.lora_scale}
        if self.guidance_range is not None:
            out["guidance_range"] = list(self.guidance_range)
        if self.eta is not None:
            out["eta"] = self.eta
        if self.timesteps is not None:
            out["timesteps"] = list(self.timesteps)
        return out


def _n_step(family: str, base: str, n: int) -> HyperRecipe:
    label = "SD15" if family == "sd15" else "SDXL"
    return HyperRecipe(
        name=f"{family}-{n}step", file=f"Hyper-{label}-{n}steps-lora.safetensors", family=family, base_model=base,
        scheduler="ddim_trailing", steps=n, min_steps=n, max_steps=2 * n, guidance_scale=0.0,
        description=f"Hyper-{label} {n}-step LoRA: DDIM trailing, {n} steps, guidance 0, fused at 1.0")


def _unified(family: str, base: str) -> HyperRecipe:
    label = "SD15" if family == "sd15" else "SDXL"
    return HyperRecipe(
        name=f"{family}-1step", file=f"Hyper-{label}-1step-lora.safetensors", family=family, base_model=base,
        scheduler="tcd", steps=1, min_steps=1, max_steps=8, guidance_scale=0.0, eta=1.0,
        description=f"Hyper-{label} unified LoRA: TCD, 1-8 steps, eta 1.0 for one step (lower eta for more detail)")


def _cfg(family: str, base: str, n: int) -> HyperRecipe:
    label = "SD15" if family == "sd15" else "SDXL"
    return HyperRecipe(
        name=f"{family}-{n}step-cfg", file=f"Hyper-{label}-{n}steps-CFG-lora.safetensors", family=family,
        base_model=base, scheduler="ddim_trailing", steps=n, min_steps=n, max_steps=2 * n, guidance_scale=5.0,
        guidance_range=(5.0, 8.0), negative_prompt=True,
        description=f"Hyper-{label} {n}-step CFG LoRA: DDIM trailing, guidance 5-8, negative prompts work")


def _sd3(n: int, guidance: float) -> HyperRecipe:
    return HyperRecipe(
        name=f"sd3-{n}step-cfg", file=f"Hyper-SD3-{n}steps-CFG-lora.safetensors", family="sd3", base_model=SD3_BASE,
        key_format="peft", scheduler="flow_euler", steps=n, min_steps=max(1, 3 * n // 4), max_steps=n,
        guidance_scale=guidance, lora_scale=0.125, negative_prompt=True,
        description=f"Hyper-SD3 {n}-step CFG LoRA: fused at 0.125, flow-match Euler, guidance {guidance:g}")


def _flux(n: int) -> HyperRecipe:
    return HyperRecipe(
        name=f"flux-{n}step", file=f"Hyper-FLUX.1-dev-{n}steps-lora.safetensors", family="flux", base_model=FLUX_BASE,
        key_format="peft", scheduler="flow_euler", steps=n, min_steps=n, max_steps=n, guidance_scale=3.5,
        lora_scale=0.125,
        description=f"Hyper-FLUX.1-dev {n}-step LoRA: fused at 0.125, embedded guidance 3.5")


RECIPES: tuple[HyperRecipe, ...] = (
    _unified("sd15", SD15_BASE),
    _n_step("sd15", SD15_BASE, 2), _n_step("sd15", SD15_BASE, 4), _n_step("sd15", SD15_BASE, 8),
    _cfg("sd15", SD15_BASE, 8), _cfg("sd15", SD15_BASE, 12),
    _unified("sdxl", SDXL_BASE),
    _n_step("sdxl", SDXL_BASE, 2), _n_step("sdxl", SDXL_BASE, 4), _n_step("sdxl", SDXL_BASE, 8),
    _cfg("sdxl", SDXL_BASE, 8), _cfg("sdxl", SDXL_BASE, 12),
    HyperRecipe(name="sdxl-1step-unet", file="Hyper-SDXL-1step-Unet.safetensors", family="sdxl", base_model=SDXL_BASE,
                kind="unet", key_format="unet", scheduler="lcm", steps=1, min_steps=1, max_steps=1,
                guidance_scale=0.0, timesteps=(800,),
                description="Hyper-SDXL 1-step UNet (replaces the base UNet): LCM scheduler, timesteps=[800]"),
    _sd3(4, 3.0), _sd3(8, 5.0), _sd3(16, 7.0),
    _flux(8), _flux(16),
)
"""Every published recipe, in the model card's order (SD1.5, SDXL, SD3, FLUX)."""

BY_NAME = {recipe.name: recipe for recipe in RECIPES}


def recipe(name: str) -> HyperRecipe:
    """The recipe called ``name``; a one-line :class:`zoo.errors.InputError` listing the valid names otherwise."""
    from zoo.errors import InputError

    if name not in BY_NAME:
        raise InputError(f"Unknown Hyper-SD preset {name!r}; valid presets: {', '.join(BY_NAME)}")
    return BY_NAME[name]
