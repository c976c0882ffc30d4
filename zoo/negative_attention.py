"""Negative-Away Steer Attention (NASA): negative prompts for one- and few-step samplers at no extra UNet call.

Paper: "SNOOPI: Supercharged One-step Diffusion Distillation with Proper Guidance" / v3 "Supercharged One-step
Text-to-Image Diffusion Models with Negative Prompts", Nguyen et al., arXiv 2412.02687 (v3 §5.1, Eq. 7-9,
Algorithm 1). Official code: https://github.com/VinAIResearch/SNOOPI (not copied; written from the paper).

In every cross-attention layer the image queries attend to the positive and to the negative text with the *same*
projections, and the negative result is subtracted before the output projection::

    Z+ = softmax(Q K+^T / sqrt(d)) V+          K+, V+ from the prompt embedding        (Eq. 7)
    Z- = softmax(Q K-^T / sqrt(d)) V-          K-, V- from the negative embedding      (Eq. 8)
    Z  = Z+ - alpha * Z-                       then to_out, residual, rescale          (Eq. 9)

``nasa_mode="relative"`` (the zoo's variant, used by the models it trains): subtract only what the negative prompt
adds to the empty prompt's attention, ``Z = Z+ - alpha (Z- - Z0)`` with ``Z0`` the attention to the empty prompt
``""``. Eq. 9 also subtracts the part every prompt shares (start and padding tokens), which on one-step students costs
shape; the relative form removes the negated colour at a strength that keeps it (docs/METHODS.md, "NASA").

``nasa_layers="up"``: NASA only in the cross-attention of the UNet's up (decoder) blocks; the down and middle blocks,
which lay out the image, attend as usual. On the one-step students this keeps the shape at strengths that remove the
colour (docs/METHODS.md, "NASA").

Self-attention layers are untouched. The cost is one extra attention per cross-attention layer (≈ +2 % FLOPs),
not a second UNet evaluation as with CFG. It lives in the core so that *every* text-to-image sampler supports
``sampler(prompt, negative_prompt=..., nasa_alpha=...)`` (see :class:`zoo.t2i.TextToImageSampler`); the SNOOPI
plugin re-exports it and uses it for NASA-T training.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Iterator

import torch

from zoo.attention import ZooAttnProcessor, replace_cross_attention, resolve_backend

NASA_OPTION = "nasa_alpha"
"""Sampler keyword that turns NASA on."""
NASA_MODE_OPTION = "nasa_mode"
"""Sampler keyword choosing the form: ``"paper"`` (Eq. 9, the default) or ``"relative"`` (subtract Z- - Z0)."""
NASA_MODES = ("paper", "relative")
NASA_LAYERS_OPTION = "nasa_layers"
"""Sampler keyword choosing where NASA acts: ``"all"`` cross-attention layers (the default) or the ``"up"`` blocks'."""
NASA_LAYERS = ("all", "up")
NASA_OPTIONS = frozenset({NASA_OPTION, NASA_MODE_OPTION, NASA_LAYERS_OPTION})
"""The NASA keywords every text-to-image sampler accepts (NASA runs in the shared sampler call)."""


class NASAAttnProcessor(ZooAttnProcessor):
    """Cross-attention processor of NASA (SNOOPI Algorithm 1) on the zoo's SDPA / xformers kernels.

    Attributes:
        negative: negative-prompt embeddings ``[B, M, D]`` (None: behave as plain attention).
        alpha: NASA strength, a float or a per-sample tensor ``[B]`` (NASA-T draws one per sample).
        reference: empty-prompt embeddings ``[1 or B, M, D]`` for the relative form (None: Eq. 9).
    """

    def __init__(self, backend: str = "sdpa", negative: torch.Tensor | None = None,
                 alpha: float | torch.Tensor = 0.0, reference: torch.Tensor | None = None) -> None:
        super().__init__(backend)
        self.negative = negative
        self.alpha = alpha
        self.reference = reference

    @staticmethod
    def _repeat_for(embeddings: torch.Tensor, batch: int) -> torch.Tensor:
        if embeddings.shape[0] != batch:
            if batch % embeddings.shape[0]:
                raise ValueError(f"NASA: {embeddings.shape[0]} negative embeddings cannot cover a batch of {batch}")
            embeddings = embeddings.repeat(batch // embeddings.shape[0], 1, 1)
        return embeddings

    def _negative_for(self, batch: int) -> torch.Tensor:
        return self._repeat_for(self.negative, batch)

    def _alpha_for(self, batch: int, like: torch.Tensor):
        alpha = self.alpha
        if isinstance(alpha, torch.Tensor) and alpha.ndim == 1:
            if alpha.shape[0] != batch:
                alpha = alpha.repeat(batch // alpha.shape[0])
            return alpha.view(batch, 1, 1, 1).to(like)
        return float(alpha)

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args,
                 **kwargs):
        if encoder_hidden_states is None or self.negative is None:
            return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        # 1. Queries from the image tokens (norms, reshapes as the standard processor).
        _, query, restore = self.prepare(attn, hidden_states, temb)
        batch = query.shape[0]
        positive = encoder_hidden_states
        negative = self._negative_for(batch).to(positive)
        if attn.norm_cross:
            positive = attn.norm_encoder_hidden_states(positive)
            negative = attn.norm_encoder_hidden_states(negative)
        # 2. Eq. 7: positive branch.  3. Eq. 8: negative branch, same W_k, W_v.
        key_pos, value_pos = self.project_kv(attn, positive)
        key_neg, value_neg = self.project_kv(attn, negative)
        z_pos = self.attend(query, key_pos, value_pos)
        z_neg = self.attend(query, key_neg, value_neg)
        if self.reference is not None:  # relative form: only what the negative adds to the empty prompt
            reference = self._repeat_for(self.reference, batch).to(positive)
            if attn.norm_cross:
                reference = attn.norm_encoder_hidden_states(reference)
            z_neg = z_neg - self.attend(query, *self.project_kv(attn, reference))
        # 4. Eq. 9: steer away from the negative features before the output projection.
        z = z_pos - self._alpha_for(batch, z_pos) * z_neg
        return self.finish(attn, z, restore, query.dtype)


def _backend_of(model: torch.nn.Module) -> str:
    for processor in model.attn_processors.values():
        if isinstance(processor, ZooAttnProcessor):
            return processor.backend
    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = None
    return resolve_backend("auto", device)


def in_up_blocks(name: str) -> bool:
    """Whether the attention processor ``name`` (diffusers naming, any prefix) lies in the UNet's up blocks."""
    return name.startswith("up_blocks.") or ".up_blocks." in name


@contextlib.contextmanager
def negative_attention(unet: torch.nn.Module, negative: torch.Tensor, alpha: float | torch.Tensor,
                       reference: torch.Tensor | None = None,
                       layers: str = "all") -> Iterator[dict[str, NASAAttnProcessor]]:
    """Within the block the cross-attention layers of ``unet`` (all, or those of the ``"up"`` blocks) run NASA with
    ``negative`` embeddings and strength ``alpha`` (relative to the ``reference`` empty-prompt embeddings when given);
    the previous processors are restored on exit. Yields the installed processors by name."""
    previous = dict(unet.attn_processors)
    backend = _backend_of(unet)

    def make(name, old):
        if layers == "up" and not in_up_blocks(name):
            return old
        return NASAAttnProcessor(backend, negative, alpha, reference)

    installed = {name: processor for name, processor in replace_cross_attention(unet, make).items()
                 if isinstance(processor, NASAAttnProcessor)}
    try:
        yield installed
    finally:
        unet.set_attn_processor(previous)


def nasa_for_call(unet: torch.nn.Module, encode, negatives: list[str] | None, alpha, mode: str | None = None,
                  layers: str | None = None) -> contextlib.AbstractContextManager:
    """The context a sampler call runs in: NASA when ``alpha`` is given with negative prompts, else nothing.

    ``encode`` turns prompts into embeddings; ``mode`` is one of :data:`NASA_MODES` (None: ``"paper"``), ``layers``
    one of :data:`NASA_LAYERS` (None: ``"all"``). A ``nasa_alpha`` without a negative prompt is a no-op with a
    warning.
    """
    from zoo.errors import InputError

    mode = "paper" if mode is None else mode
    layers = "all" if layers is None else layers
    if mode not in NASA_MODES:
        raise InputError(f"{NASA_MODE_OPTION}={mode!r} is not a NASA form; use one of {', '.join(NASA_MODES)}")
    if layers not in NASA_LAYERS:
        raise InputError(f"{NASA_LAYERS_OPTION}={layers!r} is not a choice of layers; use one of "
                         f"{', '.join(NASA_LAYERS)}")
    if alpha is not None and not isinstance(alpha, torch.Tensor):
        try:
            alpha = float(alpha)
        except (TypeError, ValueError):
            raise InputError(f"{NASA_OPTION}={alpha!r} is not a number; use e.g. {NASA_OPTION}=0.3 (0 = off)") from None
    if alpha is None or (not isinstance(alpha, torch.Tensor) and alpha == 0.0):
        return contextlib.nullcontext()
    if not negatives:
        warnings.warn("nasa_alpha was given without a negative_prompt: NASA has nothing to steer away from and is "
                      "off; pass negative_prompt='...'", UserWarning, stacklevel=3)
        return contextlib.nullcontext()
    reference = encode([""]) if mode == "relative" else None
    return negative_attention(unet, encode(negatives), alpha, reference, layers)
