"""Native ComfyUI nodes: the methods' sampling rules as SAMPLER + SIGMAS, and NASA as a MODEL patch.

These work on ComfyUI's own MODEL (a checkpoint, UNet or LoRA loader's output) inside an ordinary graph:

* ``DistillZooFewStepSchedule``: MODEL + a method's schedule + steps -> (SAMPLER, SIGMAS) for core ``SamplerCustom``
  (or ``SamplerCustomAdvanced``). The SAMPLER runs :func:`zoo.diffusion.ksampling.sample_few_step`, the same rule as
  ``zoo run`` (DDIM on trailing timesteps, TCD, LCM / DMD2 re-noising, the one-step x0 rule), wrapped in
  ``comfy.samplers.KSAMPLER``; the SIGMAS are the model's own sigmas at the method's timesteps.
* ``DistillZooNASA``: MODEL + negative CONDITIONING + alpha -> MODEL with SNOOPI's negative-away steer attention in
  every cross-attention (``set_model_attn2_replace``): a negative prompt at no extra UNet call, for any sampler.

The ComfyUI modules are imported inside the functions, so the pack still imports outside ComfyUI.
"""

from __future__ import annotations

import math

from zoo.errors import InputError

from .dz_common import CATEGORY

TIMESTEPS_TOOLTIP = "optional: comma-separated integer timesteps (descending) instead of the schedule's own"


def _model_sampling(model_patcher):
    return model_patcher.model.model_sampling


def _find_model_sampling(model):
    """``model_sampling`` of the BaseModel behind the k-diffusion wrapper a KSAMPLER function receives."""
    inner = model
    for _ in range(6):
        if hasattr(inner, "model_sampling"):
            return inner.model_sampling
        inner = getattr(inner, "inner_model", None)
        if inner is None:
            break
    raise InputError("distill-zoo: cannot find the model's sigma schedule (model_sampling) in this ComfyUI")


def _parse_timesteps(text: str) -> list[int] | None:
    text = (text or "").strip()
    if not text:
        return None
    try:
        return [int(part) for part in text.replace(";", ",").split(",") if part.strip()]
    except ValueError:
        raise InputError(f"timesteps {text!r} must be comma-separated integers, e.g. 999, 759, 499, 259") from None


def few_step_sampler(rule: str, final: str, gamma: float, jump: str = "next"):
    """A ``comfy.samplers.KSAMPLER`` that runs :func:`zoo.diffusion.ksampling.sample_few_step`."""
    import comfy.model_management as model_management
    import comfy.samplers
    import torch

    from zoo.diffusion.ksampling import sample_few_step

    def sample(model, x, sigmas, extra_args=None, callback=None, disable=None):
        table = _find_model_sampling(model).sigmas.detach().float().cpu()
        latent = getattr(model, "latent_image", None)
        s0 = float(sigmas[0]) if len(sigmas) else 0.0
        txt2img = latent is None or not bool(torch.count_nonzero(latent))
        below_max = s0 < float(table[-1]) and not math.isclose(s0, float(table[-1]), rel_tol=1e-5)
        return sample_few_step(model, x, sigmas, extra_args, callback, disable, table=table, rule=rule,
                               gamma=gamma, final=final, jump=jump, unit_start=txt2img and below_max,
                               interrupt=model_management.throw_exception_if_processing_interrupted)

    return comfy.samplers.KSAMPLER(sample)


class DistillZooFewStepSchedule:
    """A distilled method's sampling rule and timesteps for core SamplerCustom, on any ComfyUI MODEL."""

    @classmethod
    def INPUT_TYPES(cls):
        from zoo.diffusion.ksampling import SCHEDULES

        return {"required": {
            "model": ("MODEL", {"tooltip": "the model whose sigma schedule the timesteps are taken from"}),
            "schedule": (list(SCHEDULES), {"default": next(iter(SCHEDULES)),
                                           "tooltip": "the method's rule, as zoo run samples it"}),
            "steps": ("INT", {"default": 4, "min": 1, "max": 50,
                              "tooltip": "number of model calls (one-step and t=800 schedules always use 1)"}),
            "gamma": ("FLOAT", {"default": 0.3, "min": 0.0, "max": 1.0, "step": 0.05,
                                "tooltip": "TCD gamma (diffusers eta): 1.0 for one step, lower keeps more detail"}),
        }, "optional": {
            "timesteps": ("STRING", {"default": "", "multiline": False, "tooltip": TIMESTEPS_TOOLTIP}),
        }}

    RETURN_TYPES = ("SAMPLER", "SIGMAS")
    RETURN_NAMES = ("sampler", "sigmas")
    FUNCTION = "build"
    CATEGORY = f"{CATEGORY}/sampling"
    DESCRIPTION = ("Hyper-SD, TCD, LCM, DMD2 / Phased DMD and one-step (SwiftBrush, SNOOPI) sampling rules as a SAMPLER "
                   "and SIGMAS for SamplerCustom; use cfg 1.0 there for guidance-free few-step models.")

    @classmethod
    def VALIDATE_INPUTS(cls, timesteps=""):
        try:
            _parse_timesteps(timesteps)
        except ValueError as exc:
            return str(exc)
        return True

    def build(self, model, schedule, steps, gamma, timesteps=""):
        from zoo.diffusion.ksampling import SCHEDULES, schedule_timesteps, timestep_sigmas

        table = _model_sampling(model).sigmas.detach().float().cpu()
        chosen = schedule_timesteps(schedule, steps, len(table), _parse_timesteps(timesteps))
        if any(not 0 <= t < len(table) for t in chosen):
            raise InputError(f"timesteps {chosen} must lie in 0..{len(table) - 1} for this model")
        rule = SCHEDULES[schedule]
        sampler = few_step_sampler(rule["rule"], rule["final"], float(gamma), rule.get("jump", "next"))
        return sampler, timestep_sigmas(table, chosen)


def nasa_patches(diffusion_model):
    """``{(block_name, number, transformer_index): cross-attention module}`` of an LDM UNet (ComfyUI's keys of
    ``set_model_attn2_replace``)."""
    found = {}
    blocks = [("input", list(diffusion_model.input_blocks)), ("middle", [diffusion_model.middle_block]),
              ("output", list(diffusion_model.output_blocks))]
    for block_name, modules in blocks:
        for number, block in enumerate(modules):
            for layer in block.modules():
                if type(layer).__name__ == "SpatialTransformer":
                    for index, transformer in enumerate(layer.transformer_blocks):
                        found[(block_name, number, index)] = transformer.attn2
    return found


def nasa_attention(attn2, negative, alpha: float, reference=None):
    """The attn2 replacement of NASA for one cross-attention module (SNOOPI Eq. 7-9, as zoo.negative_attention):
    ``softmax(Q K+) V+ - alpha softmax(Q K-) V-`` with the module's own key/value projections of the negative; with a
    ``reference`` (the empty prompt's embedding) the relative form ``Z+ - alpha (Z- - Z0)``."""
    from comfy.ldm.modules.attention import optimized_attention

    def attend_to(q, embedding, heads):
        embedding = embedding.to(device=q.device, dtype=q.dtype)
        if embedding.shape[0] != q.shape[0]:
            embedding = embedding[:1].expand(q.shape[0], -1, -1)
        return optimized_attention(q, attn2.to_k(embedding), attn2.to_v(embedding), heads)

    def replace(q, k, v, extra_options):
        heads = extra_options["n_heads"]
        z_neg = attend_to(q, negative, heads)
        if reference is not None:
            z_neg = z_neg - attend_to(q, reference, heads)
        return optimized_attention(q, k, v, heads) - alpha * z_neg

    return replace


class DistillZooNASA:
    """SNOOPI's Negative-Away Steer Attention on any SD1.x/SDXL MODEL: a negative prompt without CFG."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL",),
            "negative": ("CONDITIONING", {"tooltip": "what to steer away from (CLIP Text Encode of the negative "
                                                     "prompt)"}),
            "alpha": ("FLOAT", {"default": 0.3, "min": 0.0, "max": 4.0, "step": 0.05,
                                "tooltip": "NASA strength; 0 = off"}),
        }, "optional": {
            "empty": ("CONDITIONING", {"tooltip": "CLIP Text Encode of the empty prompt: when connected, the relative "
                                                  "form Z+ - alpha (Z- - Z0), which subtracts only what the negative "
                                                  "prompt adds (distill-zoo models are calibrated for it)"}),
            "layers": (["all", "up"], {"default": "all",
                                       "tooltip": "where NASA acts: every cross-attention, or only the up (output) "
                                                  "blocks', which keeps the layout of one-step models"}),
        }}

    RETURN_TYPES = ("MODEL",)
    RETURN_NAMES = ("model",)
    FUNCTION = "patch"
    CATEGORY = f"{CATEGORY}/patches"
    DESCRIPTION = ("Negative prompts for one- and few-step models at no extra UNet call (SNOOPI's NASA): in every "
                   "cross-attention the negative text's attention is subtracted.")

    def patch(self, model, negative, alpha, empty=None, layers="all"):
        patched = model.clone()
        if float(alpha) == 0.0:
            return (patched,)
        embedding = negative[0][0]
        reference = empty[0][0] if empty else None
        for (block_name, number, index), attn2 in nasa_patches(patched.model.diffusion_model).items():
            if layers == "up" and block_name != "output":
                continue
            patched.set_model_attn2_replace(nasa_attention(attn2, embedding, float(alpha), reference), block_name,
                                            number, index)
        return (patched,)


MODEL_FOLDERS = ("diffusion_models", "unet", "loras", "checkpoints")
"""ComfyUI model folders searched for distill-zoo exports (a folder holding ``zoo.json``), in this order."""
NO_ZOO_MODELS = "(no distill-zoo export in ComfyUI's model folders)"


def _model_roots():
    """``(folder name, base path)`` of ComfyUI's model folders searched for distill-zoo exports."""
    import os

    import folder_paths

    for folder in MODEL_FOLDERS:
        if folder in getattr(folder_paths, "folder_names_and_paths", {}):
            for base in folder_paths.get_folder_paths(folder):
                if os.path.isdir(base):
                    yield folder, base


def zoo_model_choices(max_depth: int = 3) -> list[str]:
    """``"<path>/zoo.json"`` (relative to its model folder) of every distill-zoo export under ComfyUI's model folders
    (a few levels deep), found without leaving them."""
    import os

    from zoo.spec import MANIFEST_NAME

    found = set()
    for _, base in _model_roots():
        for root, dirs, files in os.walk(base):
            if os.path.relpath(root, base).count(os.sep) + (root != base) >= max_depth:
                dirs[:] = []
            if MANIFEST_NAME in files:
                found.add(os.path.relpath(os.path.join(root, MANIFEST_NAME), base).replace(os.sep, "/"))
    return sorted(found) or [NO_ZOO_MODELS]


def resolve_zoo_model(choice: str):
    """The :class:`zoo.spec.ResolvedModel` of a ``zoo_model_choices`` entry, confined to ComfyUI's model folders."""
    import os

    from zoo.hub import resolve_model
    from zoo.paths import confine

    for folder, base in _model_roots():
        manifest = confine(base, choice, what="model", source=f"ComfyUI's models/{folder}")
        if manifest.name == "zoo.json" and manifest.is_file():
            return resolve_model(os.fspath(manifest.parent))
    raise InputError(f"{choice!r} is not a distill-zoo export in ComfyUI's model folders; put the folder that zoo "
                     f"train exported (with its zoo.json) into models/diffusion_models and refresh")


class DistillZooApplyModel:
    """Apply any distill-zoo export (a folder with zoo.json) to a ComfyUI MODEL, with the method's own patch."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "the base model the export was distilled from (e.g. an SD1.5 checkpoint)"}),
            "zoo_model": (zoo_model_choices(), {
                "tooltip": "a folder exported by zoo train (it holds zoo.json), placed in models/diffusion_models, "
                           "models/loras or models/checkpoints"}),
            "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 2.0, "step": 0.05,
                                   "tooltip": "LoRA strength, or the share of a student's weights"}),
            "guidance": ("FLOAT", {"default": -1.0, "min": -1.0, "max": 30.0, "step": 0.1,
                                   "tooltip": "guidance scale w of guidance-distilled models (AGD, LoRA-distill); "
                                              "-1 = the model's recommended"}),
        }}

    RETURN_TYPES = ("MODEL",)
    RETURN_NAMES = ("model",)
    FUNCTION = "apply"
    CATEGORY = f"{CATEGORY}/patches"
    DESCRIPTION = ("Turn a base MODEL into a distill-zoo student: SwiftBrush / SNOOPI UNets, Phased DMD experts, "
                   "Hyper-SD LoRAs, AGD adapters, LoRA-distill (each method's own patch).")

    def apply(self, model, zoo_model, strength, guidance):
        from zoo.registry import get_registry

        resolved = resolve_zoo_model(zoo_model)
        method = (resolved.manifest or {}).get("method")
        spec = get_registry().get(method) if method else None
        if spec is None or spec.comfy_patch is None:
            name = method or "(no method in zoo.json)"
            raise InputError(f"{resolved.ref}: method {name} has no native ComfyUI patch; load it with "
                             f"'Load Distilled Model (distill-zoo)' instead")
        patch = spec.load("comfy_patch")
        return (patch(model, resolved, strength=float(strength),
                      guidance=None if float(guidance) < 0 else float(guidance)),)


class DistillZooPhasedExperts:
    """Phased DMD with experts loaded by ComfyUI's own loaders: ``model_high`` above the boundary timestep,
    ``model_low`` at and below it (Phased DMD's phase rule), switched inside one sampling run."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model_high": ("MODEL", {"tooltip": "expert of the high-noise phase (phase_0)"}),
            "model_low": ("MODEL", {"tooltip": "expert of the low-noise phase (phase_1)"}),
            "boundary": ("INT", {"default": 499, "min": 1, "max": 999,
                                 "tooltip": "first timestep of the low-noise phase (zoo.json "
                                            "sampler.phase_boundaries)"}),
        }}

    RETURN_TYPES = ("MODEL",)
    RETURN_NAMES = ("model",)
    FUNCTION = "combine"
    CATEGORY = f"{CATEGORY}/patches"
    DESCRIPTION = "Phased DMD's two experts as one MODEL: each model call goes to the expert of its timestep."

    def combine(self, model_high, model_low, boundary):
        from zoo.comfy_native import switch_experts

        return (switch_experts([model_high, model_low], [int(boundary)]),)
