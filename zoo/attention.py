"""One place that chooses the attention kernel of a diffusers model.

Backends:

``sdpa``
    ``torch.nn.functional.scaled_dot_product_attention`` — the default; runs everywhere (CPU included).
``xformers``
    ``xformers.ops.memory_efficient_attention`` — CUDA only (the PyPI wheels have no CPU kernels); an optional extra:
    ``pip install 'distill-zoo[xformers]'``.
``auto``
    xformers when it is importable and the model is on a CUDA device, otherwise SDPA.

Custom processors (e.g. SNOOPI's NASA) subclass :class:`ZooAttnProcessor` and call :meth:`ZooAttnProcessor.attend`,
so they get both kernels for free. :func:`set_attention_backend` switches every standard and zoo processor of a model;
:func:`replace_cross_attention` installs a processor on the cross-attention layers (``attn2``) only.

Tensor layout: :func:`attention` takes ``query``, ``key`` and ``value`` as ``[batch, heads, tokens, head_dim]`` (the
SDPA layout) whatever the backend.
"""

from __future__ import annotations

import functools
import importlib
from typing import Callable

import torch
import torch.nn.functional as F

from zoo.errors import InputError, MissingExtraError

BACKENDS = ("auto", "sdpa", "xformers")


@functools.cache
def xformers_available() -> bool:
    """True when ``xformers.ops`` imports (it may still lack kernels for the current device)."""
    try:
        importlib.import_module("xformers.ops")
    except Exception:  # noqa: BLE001 - a broken xformers build is "not available"
        return False
    return True


def resolve_backend(backend: str = "auto", device: torch.device | str | None = None) -> str:
    """Turn ``auto``/``sdpa``/``xformers`` into the concrete backend for ``device``, or raise a one-line error."""
    if backend not in BACKENDS:
        raise InputError(f"Unknown attention backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    device_type = torch.device(device).type if device is not None else "cpu"
    if backend == "sdpa":
        return "sdpa"
    if backend == "auto":
        return "xformers" if device_type == "cuda" and xformers_available() else "sdpa"
    if device_type != "cuda":
        raise InputError(f"xformers attention needs a CUDA device but the model is on {device_type}; "
                         f"use the 'sdpa' backend (the default) on this machine")
    if not xformers_available():
        raise MissingExtraError("xformers attention needs the 'xformers' package; install it with: "
                                "pip install 'distill-zoo[xformers]'")
    return "xformers"


def attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, backend: str = "sdpa",
              attn_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax attention on ``[B, H, N, D]`` tensors with the chosen concrete backend (``sdpa`` or ``xformers``)."""
    if backend == "sdpa":
        return F.scaled_dot_product_attention(query, key, value, attn_mask=attn_mask, dropout_p=0.0, is_causal=False)
    if backend == "xformers":
        import xformers.ops

        bias = attn_mask.expand(-1, query.shape[1], -1, -1) if attn_mask is not None else None
        # xformers uses the [B, N, H, D] layout.
        out = xformers.ops.memory_efficient_attention(query.transpose(1, 2).contiguous(),
                                                      key.transpose(1, 2).contiguous(),
                                                      value.transpose(1, 2).contiguous(), attn_bias=bias)
        return out.transpose(1, 2)
    raise InputError(f"attention() takes a concrete backend ('sdpa' or 'xformers'), got {backend!r}")


class ZooAttnProcessor:
    """A diffusers attention processor (same maths as ``AttnProcessor2_0``) whose kernel is chosen by ``backend``.

    Subclasses customise :meth:`__call__` and reuse the pieces: :meth:`prepare` (norms, query projection, reshapes),
    :meth:`project_kv` (key/value projection of a context), :meth:`attend` (the kernel) and :meth:`finish` (output
    projection, residual and rescale).
    """

    def __init__(self, backend: str = "sdpa") -> None:
        if backend not in ("sdpa", "xformers"):
            raise InputError(f"ZooAttnProcessor takes a concrete backend ('sdpa' or 'xformers'), got {backend!r}")
        self.backend = backend

    # -- pieces ---------------------------------------------------------------------------------------------------
    @staticmethod
    def prepare(attn, hidden_states: torch.Tensor, temb: torch.Tensor | None = None):
        """Return ``(hidden_states [B, N, C], query [B, H, N, D], restore)`` where ``restore`` undoes the reshapes."""
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        shape4d = hidden_states.shape if hidden_states.ndim == 4 else None
        if shape4d is not None:
            batch, channel, height, width = shape4d
            hidden_states = hidden_states.view(batch, channel, height * width).transpose(1, 2)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = ZooAttnProcessor.split_heads(attn, attn.to_q(hidden_states))
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        return hidden_states, query, (residual, shape4d)

    @staticmethod
    def split_heads(attn, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        head_dim = x.shape[-1] // attn.heads
        return x.view(batch, -1, attn.heads, head_dim).transpose(1, 2)

    @staticmethod
    def project_kv(attn, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Key and value ``[B, H, M, D]`` of ``context`` (the text embeddings, or the image tokens for self-attention)."""
        key = ZooAttnProcessor.split_heads(attn, attn.to_k(context))
        value = ZooAttnProcessor.split_heads(attn, attn.to_v(context))
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        return key, value

    def attend(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
               attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        return attention(query, key, value, self.backend, attn_mask)

    @staticmethod
    def finish(attn, out: torch.Tensor, restore, dtype: torch.dtype) -> torch.Tensor:
        """Merge heads, apply the output projection, undo reshapes, add the residual and rescale."""
        residual, shape4d = restore
        batch, heads, tokens, head_dim = out.shape
        out = out.transpose(1, 2).reshape(batch, tokens, heads * head_dim).to(dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        if shape4d is not None:
            out = out.transpose(-1, -2).reshape(shape4d)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor

    # -- the standard processor -----------------------------------------------------------------------------------
    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args,
                 **kwargs):
        tokens, query, restore = self.prepare(attn, hidden_states, temb)
        if encoder_hidden_states is None:
            context = tokens
        else:
            context = attn.norm_encoder_hidden_states(encoder_hidden_states) if attn.norm_cross else encoder_hidden_states
        key, value = self.project_kv(attn, context)
        mask = None
        if attention_mask is not None:
            batch = query.shape[0]
            mask = attn.prepare_attention_mask(attention_mask, context.shape[1], batch)
            mask = mask.view(batch, attn.heads, -1, mask.shape[-1])
        return self.finish(attn, self.attend(query, key, value, mask), restore, query.dtype)


def _model_device(model: torch.nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def _is_standard_processor(processor) -> bool:
    from diffusers.models import attention_processor as ap

    return isinstance(processor, (ap.AttnProcessor, ap.AttnProcessor2_0, ap.XFormersAttnProcessor))


def set_attention_backend(model: torch.nn.Module, backend: str = "auto") -> str:
    """Use ``backend`` for every attention layer of ``model``; returns the concrete backend chosen.

    Standard diffusers processors are replaced by :class:`ZooAttnProcessor`; zoo processors (NASA, ...) keep their
    behaviour and switch kernel; other custom processors are left untouched.
    """
    concrete = resolve_backend(backend, _model_device(model))
    processors = {}
    for name, processor in model.attn_processors.items():
        if isinstance(processor, ZooAttnProcessor):
            processor.backend = concrete
        elif _is_standard_processor(processor):
            processor = ZooAttnProcessor(concrete)
        processors[name] = processor
    model.set_attn_processor(processors)
    return concrete


def is_cross_attention(processor_name: str) -> bool:
    """True for the cross-attention layers of a diffusers UNet/transformer (``...attn2.processor``)."""
    return processor_name.endswith("attn2.processor")


def replace_cross_attention(model: torch.nn.Module, make: Callable[[str, object], object]) -> dict[str, object]:
    """Install ``make(name, old_processor)`` on every cross-attention layer of ``model``; other layers keep theirs.

    Returns the new cross-attention processors by name.
    """
    processors = dict(model.attn_processors)
    replaced = {name: make(name, old) for name, old in processors.items() if is_cross_attention(name)}
    if not replaced:
        raise InputError(f"{type(model).__name__} has no cross-attention layers (no '...attn2.processor' entries)")
    processors.update(replaced)
    model.set_attn_processor(processors)
    return replaced
