"""AGD adapters: small cross-attention modules added to every ``attn2`` of a frozen UNet, conditioned on the
guidance scale ω, the timestep and the prompt, so that ONE forward pass reproduces the CFG output.

Paper: "Efficient Distillation of Classifier-Free Guidance using Adapters", Jensen & Sadat, arXiv 2503.07274 (TMLR).
Official code: github.com/cristianpjensen/agd (MIT; ``agd/models/attention.py``, ``agd/adapters/inject_adapters.py``).
Written from the description in methods.md §4(a); nothing is copied.

Differences from the reference: the adapter is attached with forward hooks on the ``attn2`` modules (the UNet's module
tree and attention processors stay untouched, so zoo attention backends and other processors keep working) instead of
replacing the modules with wrappers; separate key and value projections of the condition tokens.

Adapter (the paper's "cross-attention adapter")::

    tokens = [ScalarEncoder(ω), Linear(t_emb), Linear(prompt tokens)] + sinusoidal positions     # [B, 2 + L, d]
    a      = softmax(q_proj(h) k(tokens)^T / sqrt(d)) v(tokens)                                # single head
    attn2'(h) = attn2(h) + out_proj(a)            # out_proj zero-initialised: identity at init (methods.md §4(h) 1)

Inference (no grad) computes the same function faster: ``q_proj`` is folded into the keys and ``out_proj`` into the
values (:meth:`AttentionAdapter._folded_attention`), the prompt's folded rows are cached, ω and t rows are computed
once for a batch that shares them, and :meth:`AGDAdapters.sampling_loop` folds the (ω, t) rows of every step of a
sampling loop up front, so a UNet call runs only the attention itself (tests check each against the training path).
"""

from __future__ import annotations

import contextlib
import functools
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class ScalarEncoder(nn.Module):
    """Random Fourier features ``cos(2π (f s + φ))`` of a scalar (fixed buffers), then MLP (×4, ReLU), LayerNorm."""

    def __init__(self, dim: int, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("freqs", torch.randn(dim, generator=generator))
        self.register_buffer("phases", torch.rand(dim, generator=generator))
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.ReLU(), nn.Linear(4 * dim, dim))
        self.norm = nn.LayerNorm(dim)

    def forward(self, scalar: torch.Tensor) -> torch.Tensor:
        features = torch.cos(2 * math.pi * (scalar.float()[:, None] * self.freqs + self.phases))
        return self.norm(self.mlp(features.to(self.freqs.dtype)))


@functools.lru_cache(maxsize=32)
def _positions(length: int, dim: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return sinusoidal_positions(length, dim, device, dtype)


def sinusoidal_positions(length: int, dim: int, device=None, dtype=None) -> torch.Tensor:
    """Transformer sinusoidal position encodings ``[length, dim]``."""
    position = torch.arange(length, dtype=torch.float32, device=device)[:, None]
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim, device=device)
    table[:, 0::2] = torch.sin(position * div)
    table[:, 1::2] = torch.cos(position * div[: dim // 2])
    return table.to(dtype or torch.float32)


class AttentionAdapter(nn.Module):
    """One AGD cross-attention adapter (see the module docstring)."""

    def __init__(self, input_dim: int, output_dim: int, hidden_dim: int, temb_dim: int, prompt_dim: int,
                 use_timestep: bool = True, use_prompt: bool = True) -> None:
        super().__init__()
        self.hidden_dim = hidden_dim
        self.q_proj = nn.Linear(input_dim, hidden_dim)
        self.guidance_encoder = ScalarEncoder(hidden_dim)
        self.t_proj = nn.Linear(temb_dim, hidden_dim) if use_timestep else None
        self.prompt_proj = nn.Linear(prompt_dim, hidden_dim) if use_prompt else None
        self.k_proj = nn.Linear(hidden_dim, hidden_dim)
        self.v_proj = nn.Linear(hidden_dim, hidden_dim)
        self.out_proj = nn.Linear(hidden_dim, output_dim)
        nn.init.zeros_(self.out_proj.weight)  # identity at init
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, hidden_states: torch.Tensor, guidance: torch.Tensor, temb: torch.Tensor | None,
                prompt: torch.Tensor | None, base: torch.Tensor | None = None,
                folded: tuple[torch.Tensor, ...] | None = None) -> torch.Tensor:
        """The adapter's output for ``hidden_states`` ``[B, N, input_dim]``, added to ``base`` (``attn2``'s output)
        when given. ``guidance`` (``[B]``) and ``temb`` (``[B, temb_dim]``) may have a batch of 1 when every image
        shares ω and t (a sampling loop): the condition rows are then computed once and broadcast. At inference,
        ``folded`` may hold this call's folded condition tokens, prepared ahead (see :meth:`folded_tokens`)."""
        if not torch.is_grad_enabled():
            if folded is None:
                folded = self.folded_tokens(self._fold(*self._condition_rows(guidance, temb)), prompt)
            return self._folded_attention(hidden_states, folded, base)
        key, value = self._condition_rows(guidance, temb)
        batch = hidden_states.shape[0]
        key, value = key.expand(batch, -1, -1), value.expand(batch, -1, -1)
        if self.prompt_proj is not None:
            prompt_key, prompt_value = self._prompt_kv(prompt, key.shape[1])
            key, value = torch.cat([key, prompt_key], dim=1), torch.cat([value, prompt_value], dim=1)
        # 2. single-head attention of the image tokens over the condition tokens (scale 1/sqrt(d))
        query = self.q_proj(hidden_states)[:, None]
        out = self.out_proj(F.scaled_dot_product_attention(query, key[:, None], value[:, None])[:, 0])
        # 3. back to the block's width; added to attn2's output
        return out if base is None else base + out.to(base.dtype)

    def _condition_rows(self, guidance: torch.Tensor, temb: torch.Tensor | None):
        """Step 1: keys and values ``[rows, P, hidden]`` of the P condition tokens [ω, t] (their positions 0..P-1
        added); ``rows`` is 1 when ω and t are shared by the batch. The prompt tokens follow them at P.."""
        tokens = [self._guidance_token(guidance)]
        if self.t_proj is not None:
            tokens.append(self.t_proj(temb))
        rows = max(token.shape[0] for token in tokens)
        prefix = torch.stack([token.expand(rows, -1) for token in tokens], dim=1)
        prefix = prefix + _positions(prefix.shape[1], self.hidden_dim, prefix.device, prefix.dtype)
        return self.k_proj(prefix), self.v_proj(prefix)

    def folded_condition_rows(self, guidance: torch.Tensor, temb: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The folded (ω, t) rows for one ω and the ``S`` timestep embeddings ``temb`` ``[S, temb_dim]`` of a
        sampling loop, computed in one go: a tuple of ``[S, P, ...]`` tensors whose row ``i`` (kept 3-D, ``[i:i+1]``)
        is what a call at the ``i``-th timestep folds."""
        key, value = self._condition_rows(guidance.expand(temb.shape[0]), temb)
        return self._fold(key, value)

    def folded_tokens(self, condition_rows: tuple[torch.Tensor, ...], prompt: torch.Tensor | None,
                      buffers: tuple[torch.Tensor, ...] | None = None):
        """All ``P + L`` folded condition tokens of a call, ``(keys, key biases, values)``: the (ω, t) rows
        ``[1 or B, P, ...]`` written in front of the prompt's folded rows (``buffers`` from :meth:`prompt_buffers`,
        else the cached ones), or the rows alone without prompt tokens."""
        if self.prompt_proj is None:
            return condition_rows
        rows = condition_rows[0].shape[1]
        buffers = buffers or self.prompt_buffers(prompt, rows)
        for buffer, part in zip(buffers, condition_rows):
            buffer[:, :rows] = part
        return buffers

    def _folded_attention(self, hidden_states, folded, base) -> torch.Tensor:
        """The same function as steps 2-3 of :meth:`forward`, with ``q_proj`` folded into the keys and ``out_proj``
        into the values (inference only). With ``q = h Wq^T + bq`` and softmax rows summing to one::

            softmax(q k^T / sqrt(d)) v Wo^T + bo  =  softmax((h (k Wq)^T + k bq) / sqrt(d)) (v Wo^T + bo)

        so the image tokens meet the ``P + L`` condition tokens directly at the block's width: no per-token
        projection to and from the adapter width, and the addition to ``base`` is part of the last product (in
        place: ``base`` is the fresh output tensor of ``attn2``, and no graph is recorded on this path). The
        prompt's ``L`` folded rows are computed once per sampling loop into cached buffers; each call writes only the
        ``P`` (ω, t) rows in front."""
        batch = hidden_states.shape[0]
        folded_key, key_bias, folded_value = (part.expand(batch, *part.shape[1:]) for part in folded)
        scale = self.hidden_dim ** -0.5  # the adapter width's, as in forward
        scores = torch.baddbmm(key_bias[:, None, :], hidden_states, folded_key.transpose(1, 2), beta=scale,
                               alpha=scale)  # (k bq + h (k Wq)^T) / sqrt(d); plain bmm beats SDPA at these sizes
        probs = scores.softmax(dim=-1)
        if base is None:
            return torch.bmm(probs, folded_value)
        if base.dtype != folded_value.dtype:
            return base + torch.bmm(probs, folded_value).to(base.dtype)
        return base.baddbmm_(probs, folded_value)  # attn2's fresh output tensor, updated in place (no grad here)

    def _fold(self, key: torch.Tensor, value: torch.Tensor):
        return key @ self.q_proj.weight, key @ self.q_proj.bias, torch.addmm(
            self.out_proj.bias, value.flatten(0, 1), self.out_proj.weight.T).unflatten(0, value.shape[:2])

    def prompt_buffers(self, prompt: torch.Tensor, rows: int) -> tuple[torch.Tensor, ...] | None:
        """``[B, rows + L, ...]`` buffers of folded keys, key biases and values whose last ``L`` rows hold the
        prompt tokens'. They do not change along a sampling loop, so they are cached for the very same prompt tensor
        object (held by the cache, unmodified since) and the same adapter weights. None without prompt tokens."""
        if self.prompt_proj is None:
            return None
        cache = getattr(self, "_folded_cache", None)
        stamp = (prompt._version, rows, self._weights_version(self.prompt_proj, self.k_proj, self.v_proj,
                                                              self.q_proj, self.out_proj))
        if cache is not None and cache[0] is prompt and cache[1] == stamp:
            return cache[2]
        buffers = []
        for part in self._fold(*self._prompt_kv(prompt, rows)):
            buffer = part.new_empty((part.shape[0], rows + part.shape[1], *part.shape[2:]))
            buffer[:, rows:] = part
            buffers.append(buffer)
        self._folded_cache = (prompt, stamp, tuple(buffers))
        return self._folded_cache[2]

    def _guidance_token(self, guidance: torch.Tensor) -> torch.Tensor:
        """ScalarEncoder(ω); constant along a sampling loop, so cached for the same ω values when there is no grad."""
        if torch.is_grad_enabled():
            return self.guidance_encoder(guidance)
        key = (tuple(guidance.tolist()), guidance.device, self._weights_version(self.guidance_encoder))
        cache = getattr(self, "_guidance_cache", None)
        if cache is None or cache[0] != key:
            cache = (key, self.guidance_encoder(guidance))
            self._guidance_cache = cache
        return cache[1]

    def _prompt_kv(self, prompt: torch.Tensor, first: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of the prompt tokens, at positions ``first..`` (at inference :meth:`prompt_buffers`
        caches them, folded)."""
        tokens = self.prompt_proj(prompt)
        tokens = tokens + _positions(first + tokens.shape[1], self.hidden_dim, tokens.device, tokens.dtype)[first:]
        return self.k_proj(tokens), self.v_proj(tokens)

    @staticmethod
    def _weights_version(*modules: nn.Module) -> tuple:
        """In-place update counters and identities of the modules' parameters (an optimizer step or a load changes
        them), so that cached values are recomputed after the weights change."""
        return tuple((id(p), p._version, p.dtype, p.device) for m in modules for p in m.parameters())


def cross_attention_modules(unet: nn.Module) -> dict[str, nn.Module]:
    """Every cross-attention module (``...attn2``) of a diffusers UNet, by name."""
    found = {name: module for name, module in unet.named_modules() if name.endswith("attn2")}
    if not found:
        from zoo.errors import InputError

        raise InputError(f"{type(unet).__name__} has no cross-attention ('attn2') modules for AGD adapters")
    return found


class AGDAdapters(nn.Module):
    """All adapters of one UNet plus the hooks that feed them.

    Usage::

        adapters = AGDAdapters.for_unet(unet, hidden_dim=64)
        adapters.attach(unet)
        adapters.set_guidance(5.0)            # ω per image (float or [B] tensor)
        eps = unet(x_t, t, encoder_hidden_states=cond).sample     # ≈ CFG output at ω, one pass
        with adapters.disabled(): ...          # the frozen base model

    Hooks record the UNet's own timestep embedding (output of its frozen ``time_embedding``) and the prompt embeddings
    of each call; the ``attn2`` hooks add the adapter outputs.
    """

    def __init__(self, layer_dims: dict[str, tuple[int, int]], hidden_dim: int, temb_dim: int, prompt_dim: int,
                 use_timestep: bool = True, use_prompt: bool = True) -> None:
        super().__init__()
        self.config = {"hidden_dim": hidden_dim, "temb_dim": temb_dim, "prompt_dim": prompt_dim,
                       "use_timestep": use_timestep, "use_prompt": use_prompt,
                       "layers": {k: list(v) for k, v in layer_dims.items()}}
        self.layers = nn.ModuleDict({
            name.replace(".", "__"): AttentionAdapter(dims[0], dims[1], hidden_dim, temb_dim, prompt_dim,
                                                      use_timestep, use_prompt)
            for name, dims in layer_dims.items()})
        self.enabled = True
        self._guidance: torch.Tensor | float = 1.0
        self._guidance_now: torch.Tensor | None = None  # ω of the current UNet call, [B] or [1]
        self._shared_timestep = False
        self._loop: tuple | None = None  # (prompt, {layer: (adapter, folded (ω, t) rows, prompt buffers)})
        self._step_tokens: dict[str, tuple[torch.Tensor, ...]] | None = None  # folded tokens of its current step
        self._temb: torch.Tensor | None = None
        self._prompt: torch.Tensor | None = None
        self._handles: list[Any] = []

    @classmethod
    def for_unet(cls, unet: nn.Module, hidden_dim: int = 320, use_timestep: bool = True,
                 use_prompt: bool = True) -> "AGDAdapters":
        dims = {name: (module.to_q.in_features, module.to_out[0].out_features)
                for name, module in cross_attention_modules(unet).items()}
        temb_dim = unet.time_embedding.linear_2.out_features
        return cls(dims, hidden_dim, temb_dim, unet.config.cross_attention_dim, use_timestep, use_prompt)

    @classmethod
    def from_config(cls, config: dict) -> "AGDAdapters":
        return cls({k: tuple(v) for k, v in config["layers"].items()}, config["hidden_dim"], config["temb_dim"],
                   config["prompt_dim"], config.get("use_timestep", True), config.get("use_prompt", True))

    # -- conditioning ---------------------------------------------------------------------------------------------
    def set_guidance(self, guidance: torch.Tensor | float) -> None:
        """ω for the next UNet calls: a float or a ``[B]`` tensor (per image)."""
        self._guidance = guidance

    def _guidance_for(self, batch: int, device) -> torch.Tensor:
        """ω as a ``[B]`` tensor, or ``[1]`` when it is one value for the whole batch."""
        value = torch.as_tensor(self._guidance, dtype=torch.float32, device=device).reshape(-1)
        if value.numel() not in (1, batch):
            raise ValueError(f"AGD guidance has {value.numel()} values for a UNet batch of {batch}")
        return value

    # -- sampling loops ---------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def sampling_loop(self, unet: nn.Module, timesteps: torch.Tensor, prompt: torch.Tensor):
        """Inference over a known list of timesteps with one ω and one prompt tensor for the batch: every adapter
        folds its (ω, t) rows for all the timesteps and its prompt rows once, up front, so that a UNet call only runs
        the attention itself. Call :meth:`at_step` with the index into ``timesteps`` before each call inside."""
        guidance = torch.as_tensor(self._guidance, dtype=torch.float32).reshape(-1)
        if (torch.is_grad_enabled() or guidance.numel() != 1 or not self.config["use_timestep"]
                or getattr(unet.time_embedding, "cond_proj", None) is not None):
            yield self  # nothing to prepare (or a timestep embedding that needs more than t): each call folds its own
            return
        device = next(unet.parameters()).device
        dtype = unet.time_embedding.linear_1.weight.dtype
        with torch.no_grad():  # the UNet's own embedding of each timestep, as its time_embedding hook records it
            temb = unet.time_embedding(unet.time_proj(timesteps.to(device)).to(dtype))
            tables = {}
            for name, adapter in self.layers.items():
                rows = adapter.folded_condition_rows(guidance.to(device), temb)
                tables[name] = (adapter, rows, adapter.prompt_buffers(prompt, rows[0].shape[1]))
            self._loop = (prompt, tables)
        try:
            yield self
        finally:
            self._loop = self._step_tokens = None

    def at_step(self, index: int) -> None:
        """Inside :meth:`sampling_loop`: the next UNet call is at ``timesteps[index]``."""
        if self._loop is not None:
            prompt, tables = self._loop
            with torch.no_grad():
                self._step_tokens = {
                    name: adapter.folded_tokens(tuple(part[index:index + 1] for part in rows), prompt, buffers)
                    for name, (adapter, rows, buffers) in tables.items()}

    # -- hooks ----------------------------------------------------------------------------------------------------
    def attach(self, unet: nn.Module) -> "AGDAdapters":
        """Install the hooks on ``unet`` (idempotent)."""
        self.detach()
        modules = cross_attention_modules(unet)
        missing = [n for n in self.config["layers"] if n not in modules]
        if missing:
            from zoo.errors import WeightsError

            raise WeightsError(f"AGD adapters do not fit this UNet: it has no module {missing[0]!r}; use the base "
                               f"model the adapters were trained on")

        def unet_pre_hook(module, args, kwargs):
            sample = args[0] if args else kwargs["sample"]
            timestep = args[1] if len(args) > 1 else kwargs.get("timestep")
            self._prompt = args[2] if len(args) > 2 else kwargs.get("encoder_hidden_states")
            self._guidance_now = self._guidance_for(sample.shape[0], sample.device)
            self._shared_timestep = not torch.is_tensor(timestep) or timestep.numel() == 1

        def time_embedding_hook(module, args, output):
            # the UNet's own (frozen) timestep embedding of this call, reused instead of being recomputed; one row
            # when every image has the same timestep (the adapters then compute their (ω, t) rows once)
            self._temb = output[:1].detach() if self._shared_timestep else output.detach()

        self._handles.append(unet.register_forward_pre_hook(unet_pre_hook, with_kwargs=True))
        if self.config["use_timestep"]:
            self._handles.append(unet.time_embedding.register_forward_hook(time_embedding_hook))
        for name in self.config["layers"]:
            key = name.replace(".", "__")
            self._handles.append(modules[name].register_forward_hook(self._make_hook(key), with_kwargs=True))
        return self

    def _make_hook(self, key: str):
        adapter = self.layers[key]

        def hook(module, args, kwargs, output):
            if not self.enabled:
                return output
            hidden = args[0] if args else kwargs["hidden_states"]
            folded = None
            if self._step_tokens is not None and self._prompt is self._loop[0]:
                folded = self._step_tokens[key]  # prepared by at_step
            return adapter(hidden, self._guidance_now, self._temb, self._prompt, base=output, folded=folded)
        return hook

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    class _Disabled:
        def __init__(self, owner: "AGDAdapters") -> None:
            self.owner = owner

        def __enter__(self):
            self.previous, self.owner.enabled = self.owner.enabled, False

        def __exit__(self, *exc):
            self.owner.enabled = self.previous

    def disabled(self) -> "_Disabled":
        """Context manager: inside it the UNet is the frozen base model."""
        return AGDAdapters._Disabled(self)

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())
