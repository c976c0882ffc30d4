"""Read, validate, fuse and write LoRA files in the key formats published few-step artifacts use.

Formats (see ``docs/`` artifact notes; ByteDance/Hyper-SD, tianweiy/DMD2, diffusers ``save_lora_weights``):

===================  ========================================================================  ==================
format               key example                                                               alpha
===================  ========================================================================  ==================
``kohya``            ``lora_unet_down_blocks_0_resnets_0_conv1.lora_down.weight`` / ``lora_up``  ``<module>.alpha``
``peft``             ``unet.down_blocks.0.resnets.0.conv1.lora_A.weight`` / ``lora_B``           none (scale 1)
                     ``transformer.transformer_blocks.0.attn.to_q.lora_A.weight`` (SD3, FLUX)
``diffusers-old``    ``unet.<module>.lora.down.weight``; ``unet.<...>.processor.to_q_lora.down.weight``  none
===================  ========================================================================  ==================

A LoRA module adds ``delta_W = scale * (alpha / r) * up @ down`` to the weight ``W`` of a ``Linear`` (``down [r, in]``,
``up [out, r]``) or ``Conv2d`` (``down [r, in, kh, kw]``, ``up [out, r, 1, 1]``; the product is taken on the flattened
matrices and reshaped to ``W``'s shape). Without an alpha the factor ``alpha / r`` is 1.

Unlike diffusers' loader, which silently loads nothing when a prefix is missing (artifact-formats §5.3), every function
here checks that each module exists in the target model and that its shapes fit, and raises a one-line
:class:`zoo.errors.WeightsError` naming the first offending key otherwise.

Kohya module names are the model's dotted module paths with ``.`` replaced by ``_``; they are resolved by building the
same mapping from the model itself, so names such as ``to_out_0`` or ``transformer_blocks`` need no rules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from zoo.errors import FileMissingError, WeightsError

KOHYA_PREFIXES = {"lora_unet_": "unet", "lora_te_": "text_encoder", "lora_te1_": "text_encoder",
                  "lora_te2_": "text_encoder_2"}
"""Kohya key prefix -> component name."""

PEFT_PREFIXES = ("unet", "transformer", "text_encoder", "text_encoder_2", "text_encoder_3")
"""Component names used as the first dotted part of PEFT / diffusers-old keys."""

_KOHYA_RE = re.compile(r"^(lora_unet_|lora_te[12]?_)(.+)\.(lora_down\.weight|lora_up\.weight|alpha)$")
_PEFT_RE = re.compile(r"^([a-z_0-9]+)\.(.+)\.(lora_A|lora_B)(?:\.default)?\.weight$")
_OLD_RE = re.compile(r"^([a-z_0-9]+)\.(.+)\.lora\.(down|up)\.weight$")
_PROCESSOR_RE = re.compile(r"^([a-z_0-9]+)\.(.+)\.processor\.(to_q|to_k|to_v|to_out)_lora\.(down|up)\.weight$")

LORA_TARGET_MODULES = ("to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2",
                       "conv1", "conv2", "conv_shortcut", "downsamplers.0.conv", "upsamplers.0.conv", "time_emb_proj")
"""The 14 module patterns of the Hyper-SD / DMD2 / LCM-LoRA UNet LoRAs (artifact-formats §1.1, §2.1)."""


@dataclass
class LoRAModule:
    """One low-rank update: ``component`` (``"unet"``...), ``name`` (dotted path, or the kohya name before binding)."""

    component: str
    name: str
    down: torch.Tensor
    up: torch.Tensor
    alpha: float | None = None
    key: str = ""
    """The file key of ``down``, for error messages."""

    @property
    def rank(self) -> int:
        return int(self.down.shape[0])

    @property
    def factor(self) -> float:
        """``alpha / r`` (1 without alpha)."""
        return 1.0 if self.alpha is None else float(self.alpha) / self.rank

    def delta(self, weight_shape: torch.Size, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """``(alpha / r) * up @ down`` reshaped to ``weight_shape`` (computed in float32)."""
        up = self.up.to(device=device, dtype=torch.float32).flatten(1)
        down = self.down.to(device=device, dtype=torch.float32).flatten(1)
        return (self.factor * (up @ down)).reshape(weight_shape).to(dtype)


@dataclass
class LoRAWeights:
    """A parsed LoRA file: its modules, format and where it came from."""

    modules: list[LoRAModule]
    format: str
    source: str = "<state dict>"
    metadata: dict = field(default_factory=dict)

    @property
    def components(self) -> set[str]:
        return {m.component for m in self.modules}

    @property
    def ranks(self) -> set[int]:
        return {m.rank for m in self.modules}


# -- reading ---------------------------------------------------------------------------------------------------------
def read_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors and ``__metadata__`` of a ``.safetensors`` file (or a ``.bin``/``.pt`` pickle read with
    ``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise FileMissingError(f"LoRA file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = dict(handle.metadata() or {})
                tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        except Exception as exc:  # noqa: BLE001 - truncated or not a safetensors file
            raise WeightsError(f"Cannot read LoRA file {path.name}: {str(exc).splitlines()[0]}; "
                               f"re-download it (it may be truncated)") from None
        return tensors, metadata
    try:
        tensors = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickled code is refused by weights_only
        raise WeightsError(f"Cannot read LoRA file {path.name} safely ({str(exc).splitlines()[0][:120]}); "
                           f"convert it to .safetensors") from None
    if not isinstance(tensors, Mapping):
        raise WeightsError(f"LoRA file {path.name} does not hold a state dict; expected a mapping of tensors")
    return dict(tensors), {}


def detect_format(state_dict: Mapping[str, torch.Tensor]) -> str:
    """``"kohya"``, ``"peft"`` or ``"diffusers-old"`` from the keys; :class:`WeightsError` when none fits all keys."""
    keys = list(state_dict)
    if not keys:
        raise WeightsError("The LoRA file holds no tensors")
    if all(_KOHYA_RE.match(k) for k in keys):
        return "kohya"
    if all(_PEFT_RE.match(k) for k in keys):
        return "peft"
    if all(_OLD_RE.match(k) or _PROCESSOR_RE.match(k) for k in keys):
        return "diffusers-old"
    odd = next(k for k in keys if not (_KOHYA_RE.match(k) or _PEFT_RE.match(k) or _OLD_RE.match(k)
                                         or _PROCESSOR_RE.match(k)))
    raise WeightsError(f"LoRA key {odd!r} is in no known format; expected kohya 'lora_unet_<module>.lora_down.weight' "
                       f"or PEFT '<unet|transformer>.<module>.lora_A.weight' keys")


def parse_lora(state_dict: Mapping[str, torch.Tensor], source: str = "<state dict>",
               metadata: dict | None = None) -> LoRAWeights:
    """Group the tensors of ``state_dict`` into :class:`LoRAModule` s (kohya names stay unresolved until binding)."""
    fmt = detect_format(state_dict)
    parts: dict[tuple[str, str], dict] = {}

    def slot(component: str, name: str) -> dict:
        return parts.setdefault((component, name), {})

    for key, tensor in state_dict.items():
        if fmt == "kohya":
            prefix, name, kind = _KOHYA_RE.match(key).groups()
            entry = slot(KOHYA_PREFIXES[prefix], name)
            if kind == "alpha":
                entry["alpha"] = float(tensor.float().reshape(-1)[0])
            else:
                entry["down" if kind.startswith("lora_down") else "up"] = (tensor, key)
        elif fmt == "peft":
            component, name, kind = _PEFT_RE.match(key).groups()
            slot(component, name)["down" if kind == "lora_A" else "up"] = (tensor, key)
        else:
            match = _OLD_RE.match(key)
            if match:
                component, name, kind = match.groups()
            else:
                component, parent, proj, kind = _PROCESSOR_RE.match(key).groups()
                name = f"{parent}.{'to_out.0' if proj == 'to_out' else proj}"
            slot(component, name)[kind] = (tensor, key)

    modules = []
    for (component, name), entry in parts.items():
        if "down" not in entry or "up" not in entry:
            have = entry.get("down", entry.get("up", (None, name)))[1]
            missing = "up" if "up" not in entry else "down"
            raise WeightsError(f"LoRA {source}: {have!r} has no matching {missing} weight; the file is incomplete")
        (down, down_key), (up, _) = entry["down"], entry["up"]
        if down.shape[0] != up.shape[1]:
            raise WeightsError(f"LoRA {source}: {down_key!r} has rank {down.shape[0]} but its up weight has rank "
                               f"{up.shape[1]}; the file is corrupt")
        modules.append(LoRAModule(component, name, down, up, entry.get("alpha"), down_key))
    return LoRAWeights(modules, fmt, source, dict(metadata or {}))


def load_lora(path: str | Path) -> LoRAWeights:
    """Read and parse a LoRA file."""
    tensors, metadata = read_state_dict(path)
    return parse_lora(tensors, source=Path(path).name, metadata=metadata)


# -- binding to a model ----------------------------------------------------------------------------------------------
def _base_layer(module: nn.Module) -> nn.Module:
    """The plain ``Linear``/``Conv2d`` inside a PEFT wrapper (or the module itself)."""
    get_base = getattr(module, "get_base_layer", None)
    return get_base() if callable(get_base) else module


def _weight_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Dotted name -> module for every ``Linear``/``Conv2d`` (PEFT wrappers count as their base layer)."""
    found = {}
    for name, module in model.named_modules():
        if ".lora_" in f".{name}" or name.endswith("base_layer") or ".base_layer." in name:
            continue
        if isinstance(_base_layer(module), (nn.Linear, nn.Conv2d)):
            found[name] = module
    return found


@dataclass
class BoundModule:
    lora: LoRAModule
    name: str
    layer: nn.Module
    """The plain ``Linear``/``Conv2d`` the update applies to."""


def bind_lora(lora: LoRAWeights, models: Mapping[str, nn.Module]) -> list[BoundModule]:
    """Resolve every module of ``lora`` in ``models`` (component name -> model) and check shapes.

    Raises :class:`WeightsError` when a component is absent, a module does not exist or a shape does not fit.
    """
    bound = []
    tables: dict[str, tuple[dict[str, nn.Module], dict[str, str]]] = {}
    for module in lora.modules:
        if module.component not in models:
            raise WeightsError(f"LoRA {lora.source} has weights for '{module.component}' (e.g. {module.key!r}) but "
                               f"this model has no such part; available: {', '.join(models)}")
        if module.component not in tables:
            layers = _weight_modules(models[module.component])
            tables[module.component] = (layers, {n.replace(".", "_"): n for n in layers})
        layers, kohya_names = tables[module.component]
        name = kohya_names.get(module.name) if lora.format == "kohya" else module.name
        if name is None or name not in layers:
            raise WeightsError(f"LoRA {lora.source} does not fit this base model: module {module.key!r} does not "
                               f"exist in its {module.component}; use the base model the LoRA was made for")
        layer = _base_layer(layers[name])
        weight = layer.weight
        expected_down = (module.rank, weight.shape[1], *weight.shape[2:])
        expected_up = (weight.shape[0], module.rank, *((1, 1) if weight.ndim == 4 else ()))
        if tuple(module.down.shape) != expected_down or tuple(module.up.shape) != expected_up:
            raise WeightsError(
                f"LoRA {lora.source} does not fit this base model: {module.key!r} has shapes "
                f"{list(module.down.shape)}/{list(module.up.shape)} but the layer {name} ({list(weight.shape)}) needs "
                f"{list(expected_down)}/{list(expected_up)}; use the base model the LoRA was made for")
        bound.append(BoundModule(module, name, layer))
    return bound


# -- fusing ----------------------------------------------------------------------------------------------------------
class FusedLoRA:
    """A LoRA added into the weights of a model; :meth:`unfuse` subtracts it again."""

    def __init__(self, bound: list[BoundModule], scale: float) -> None:
        self.bound = bound
        self.scale = scale
        self.fused = False

    @torch.no_grad()
    def fuse(self) -> "FusedLoRA":
        for item in self.bound:
            weight = item.layer.weight
            weight.add_(self.scale * item.lora.delta(weight.shape, weight.dtype, weight.device))
        self.fused = True
        return self

    @torch.no_grad()
    def unfuse(self) -> None:
        if not self.fused:
            return
        for item in self.bound:
            weight = item.layer.weight
            weight.sub_(self.scale * item.lora.delta(weight.shape, weight.dtype, weight.device))
        self.fused = False


def fuse_lora(lora: LoRAWeights, models: Mapping[str, nn.Module], scale: float = 1.0) -> FusedLoRA:
    """Add ``scale * (alpha / r) * up @ down`` into each target weight (validated first; nothing changes on error)."""
    return FusedLoRA(bind_lora(lora, models), float(scale)).fuse()


# -- live adapters (PEFT) ----------------------------------------------------------------------------------------------
def check_text_encoder_adapters() -> None:
    """Raise one line when the installed transformers refuses PEFT adapters on text encoders with the installed peft
    (transformers 5.24 asks for peft >= 0.22, which is not released): distill-zoo declares ranges, so this pairing
    can exist in an environment it was installed into, and only live text-encoder adapters need it."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        from packaging.version import Version
        from transformers.integrations.peft import MIN_PEFT_VERSION
    except ImportError:  # older transformers keep the constant elsewhere or have none: nothing to check
        return
    try:
        installed = version("peft")
    except PackageNotFoundError:
        installed = "0"
    if Version(installed) < Version(MIN_PEFT_VERSION):
        from zoo.errors import MissingExtraError

        raise MissingExtraError(f"Text-encoder LoRA adapters need peft >= {MIN_PEFT_VERSION} with the installed "
                                f"transformers {version('transformers')}, but peft {installed} is installed; fuse "
                                f"the LoRA instead (fuse=True), or pip install 'transformers<5.24' or a newer peft")


def add_lora_adapter(model: nn.Module, lora: LoRAWeights, component: str = "unet", adapter_name: str = "lora",
                     scale: float = 1.0) -> list[str]:
    """Inject ``lora``'s modules of ``component`` into ``model`` as a live PEFT adapter; returns the wrapped names.

    The adapter's per-module rank and alpha come from the file (``rank_pattern`` / ``alpha_pattern``); ``scale``
    multiplies the update (diffusers ``set_adapters`` weight).
    """
    from peft import LoraConfig, set_peft_model_state_dict

    if component.startswith("text_encoder"):
        check_text_encoder_adapters()
    bound = [b for b in bind_lora(lora, {component: model}) if b.lora.component == component]
    if not bound:
        raise WeightsError(f"LoRA {lora.source} has no weights for '{component}'")
    rank = max(b.lora.rank for b in bound)
    names = [b.name for b in bound]
    rank_pattern = {re.escape(b.name): b.lora.rank for b in bound if b.lora.rank != rank}
    alphas = {b.name: (b.lora.alpha if b.lora.alpha is not None else float(b.lora.rank)) for b in bound}
    alpha_pattern = {re.escape(n): a for n, a in alphas.items()}
    config = LoraConfig(r=rank, lora_alpha=rank, target_modules=names, rank_pattern=rank_pattern,
                        alpha_pattern=alpha_pattern, init_lora_weights=False)
    model.add_adapter(config, adapter_name=adapter_name)
    state = {}
    for b in bound:
        state[f"{b.name}.lora_A.weight"] = b.lora.down
        state[f"{b.name}.lora_B.weight"] = b.lora.up
    result = set_peft_model_state_dict(model, state, adapter_name=adapter_name)
    unexpected = [k for k in (getattr(result, "unexpected_keys", None) or []) if adapter_name in k or "lora" in k]
    if unexpected:
        raise WeightsError(f"LoRA {lora.source}: {len(unexpected)} tensors were not loaded (e.g. {unexpected[0]!r})")
    if scale != 1.0:
        model.set_adapters([adapter_name], weights=[float(scale)])
    return names


# -- writing ---------------------------------------------------------------------------------------------------------
def peft_to_kohya(peft_state: Mapping[str, torch.Tensor], alpha: float | Mapping[str, float] | None,
                  prefix: str = "lora_unet_", dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """``get_peft_model_state_dict`` keys (``<module>.lora_A.weight``) -> kohya keys with ``.alpha`` (the DMD2 /
    Hyper-SD writer recipe: ``lora_A -> lora_down``, dotted module path -> underscores, prefix ``lora_unet_``)."""
    out: dict[str, torch.Tensor] = {}
    for key, tensor in peft_state.items():
        match = re.match(r"^(.+)\.(lora_A|lora_B)(?:\.[A-Za-z0-9_]+)?\.weight$", key)
        if not match:
            raise WeightsError(f"Key {key!r} is not a PEFT LoRA key ('<module>.lora_A.weight')")
        module, kind = match.groups()
        name = prefix + module.replace(".", "_")
        tensor = tensor.detach().cpu().contiguous()
        out[f"{name}.{'lora_down' if kind == 'lora_A' else 'lora_up'}.weight"] = tensor.to(dtype or tensor.dtype)
        if alpha is not None:
            value = alpha[module] if isinstance(alpha, Mapping) else alpha
            out[f"{name}.alpha"] = torch.tensor(float(value), dtype=dtype or tensor.dtype)
    return out


def peft_adapter_to_kohya(model: nn.Module, adapter_name: str, prefix: str = "lora_unet_",
                          dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """The live PEFT adapter ``adapter_name`` of ``model`` as a kohya state dict with each module's alpha."""
    from peft.utils import get_peft_model_state_dict

    state = get_peft_model_state_dict(model, adapter_name=adapter_name)
    alphas = {}
    for name, module in model.named_modules():
        scaling = getattr(module, "lora_alpha", None)
        if isinstance(scaling, dict) and adapter_name in scaling:
            alphas[name] = float(scaling[adapter_name])
    return peft_to_kohya(state, alphas, prefix=prefix, dtype=dtype)


def save_lora(state: Mapping[str, torch.Tensor], path: str | Path, metadata: dict | None = None) -> Path:
    """Write a LoRA state dict as safetensors (atomically)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp), metadata=metadata)
    tmp.replace(path)
    return path
