"""A frozen teacher and trainable fake scores that share ONE copy of the base UNet weights.

Score-distillation methods need the teacher's prediction ``eps_real`` and a "fake score" ``eps_fake`` fitted to the
student's samples. SwiftBrush (arXiv 2312.05239) makes the fake score a LoRA on the teacher ("LoRA teacher") and
switches between the two with PEFT's adapter toggles (``VinAIResearch/SwiftBrush`` ``train_swiftbrush.py``:
``disable_adapters()`` → teacher, ``enable_adapters()`` → LoRA teacher). :class:`SharedBaseTeacher` wraps that
pattern: the base weights exist once and are frozen; each fake score is a named PEFT adapter; at creation PEFT
initialises ``lora_B = 0``, so every fake score starts equal to the teacher (methods.md §0.3).

Several named adapters can live on the same base (Phased DMD keeps one fake score per phase).
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Iterator, Sequence

import torch

from zoo.diffusion.guidance import cfg
from zoo.diffusion.schedule import x0_eps_from_output

DEFAULT_FAKE_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2",
                        "conv1", "conv2")
"""LoRA targets of the fake score: attention, feed-forward and ResNet convolutions (the issue's pixel-space prototype
used "attention and conv layers"; SwiftBrush v1 uses only ``to_q``/``to_v`` on SD2.1)."""


class SharedBaseTeacher:
    """Teacher (adapters off) and fake scores (one PEFT LoRA adapter each) on one UNet.

    Args:
        unet: a diffusers ``UNet2DConditionModel``; its base weights are frozen in place (not copied).
        alphas_cumprod: the training schedule's ᾱ table.
        adapters: names of the fake-score adapters to create.
        rank, lora_alpha: LoRA rank and scaling numerator (scale = lora_alpha / rank).
        target_modules: module-name suffixes that receive LoRA layers.
        prediction_type: the UNet's output type (``epsilon``, ``v_prediction`` or ``sample``).
    """

    def __init__(self, unet: torch.nn.Module, alphas_cumprod: torch.Tensor, adapters: Sequence[str] = ("fake_score",),
                 rank: int = 16, lora_alpha: float | None = None,
                 target_modules: Sequence[str] = DEFAULT_FAKE_TARGETS, prediction_type: str | None = None) -> None:
        from peft import LoraConfig

        self.unet = unet
        self.alphas_cumprod = alphas_cumprod
        self.prediction_type = prediction_type or getattr(unet.config, "prediction_type", None) or "epsilon"
        self.adapters = tuple(adapters)
        if not self.adapters:
            raise ValueError("SharedBaseTeacher needs at least one fake-score adapter name")
        unet.requires_grad_(False)
        present = {name.rsplit(".", 1)[-1] for name, _ in unet.named_modules()}
        targets = [t for t in target_modules if t.rsplit(".", 1)[-1] in present or "." in t]
        self._lora_config = LoraConfig(r=int(rank), lora_alpha=float(lora_alpha or rank), init_lora_weights=True,
                                       target_modules=list(targets))
        with warnings.catch_warnings():  # PEFT warns about "multiple adapters", which is the point here
            warnings.filterwarnings("ignore", message=".*multiple adapters.*")
            for name in self.adapters:
                unet.add_adapter(self._lora_config, adapter_name=name)
        self._active: str | None = None
        self.use_fake(self.adapters[0])
        for name in self.adapters:
            for param in self.fake_parameters(name):
                param.requires_grad_(True)

    # -- parameters -----------------------------------------------------------------------------------------------
    def fake_parameters(self, adapter: str | None = None) -> list[torch.nn.Parameter]:
        """The LoRA parameters of fake score ``adapter`` (default: the first)."""
        adapter = adapter or self.adapters[0]
        marker = f".{adapter}."
        return [p for n, p in self.unet.named_parameters() if "lora_" in n and marker in n + "."]

    def base_parameters(self) -> list[torch.nn.Parameter]:
        return [p for n, p in self.unet.named_parameters() if "lora_" not in n]

    def reset_fake(self, adapter: str | None = None) -> None:
        """Re-initialise fake score ``adapter`` to the teacher (``lora_B = 0``; Phased DMD re-initialises per phase)."""
        adapter = adapter or self.adapters[0]
        from peft.tuners.lora import LoraLayer

        for module in self.unet.modules():
            if isinstance(module, LoraLayer) and adapter in module.lora_A:
                module.reset_lora_parameters(adapter, True)

    # -- switching ------------------------------------------------------------------------------------------------
    def use_fake(self, adapter: str) -> None:
        if adapter not in self.adapters:
            raise KeyError(f"Unknown fake-score adapter {adapter!r}; have {', '.join(self.adapters)}")
        if self._active != adapter:
            self.unet.set_adapter(adapter)
            self._active = adapter
            self._mark_trainable()

    def _mark_trainable(self) -> None:
        """PEFT marks only the active adapter trainable; keep every fake score trainable (optimizers and
        checkpoints see a fixed set of parameters)."""
        for name in self.adapters:
            for param in self.fake_parameters(name):
                param.requires_grad_(True)

    @contextlib.contextmanager
    def teacher_mode(self) -> Iterator[None]:
        """Inside the block the UNet is the frozen teacher (all adapters disabled)."""
        self.unet.disable_adapters()
        try:
            yield
        finally:
            self.unet.enable_adapters()
            self._mark_trainable()  # PEFT's enable re-activates only the active adapter's requires_grad

    # -- predictions ----------------------------------------------------------------------------------------------
    def _guided(self, x_t, t, cond, uncond, guidance_scale):
        t = torch.as_tensor(t, device=x_t.device)
        if not isinstance(guidance_scale, torch.Tensor) and float(guidance_scale) == 1.0:
            uncond = None  # w = 1 is the conditional prediction exactly; skip the unconditional half
        if uncond is None:
            return self.unet(x_t, t.expand(x_t.shape[0]) if t.ndim else t, encoder_hidden_states=cond).sample
        t2 = torch.cat([t, t]) if t.ndim else t
        both = self.unet(torch.cat([x_t, x_t]), t2, encoder_hidden_states=torch.cat([cond, uncond])).sample
        out_cond, out_uncond = both.chunk(2)
        if isinstance(guidance_scale, torch.Tensor) and guidance_scale.ndim == 1:
            guidance_scale = guidance_scale.view(-1, *([1] * (x_t.ndim - 1))).to(out_cond)
        return cfg(out_cond, out_uncond, guidance_scale)

    @torch.no_grad()
    def teacher_output(self, x_t, t, cond, uncond=None, guidance_scale=1.0) -> torch.Tensor:
        """The frozen teacher's raw output, with CFG ``uncond + w (cond - uncond)`` (one batched call) if ``uncond``."""
        with self.teacher_mode():
            return self._guided(x_t, t, cond, uncond, guidance_scale)

    def fake_output(self, x_t, t, cond, uncond=None, guidance_scale=1.0, adapter: str | None = None) -> torch.Tensor:
        """Fake score ``adapter``'s raw output (gradients flow to its LoRA weights unless under ``no_grad``)."""
        self.use_fake(adapter or self.adapters[0])
        return self._guided(x_t, t, cond, uncond, guidance_scale)

    def to_x0_eps(self, output, x_t, t) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x0_hat, eps_hat)`` from a raw output of this UNet."""
        return x0_eps_from_output(output, x_t, t, self.alphas_cumprod, self.prediction_type)

    def teacher_eps(self, x_t, t, cond, uncond=None, guidance_scale=1.0) -> torch.Tensor:
        return self.to_x0_eps(self.teacher_output(x_t, t, cond, uncond, guidance_scale), x_t, t)[1]

    def fake_eps(self, x_t, t, cond, uncond=None, guidance_scale=1.0, adapter: str | None = None) -> torch.Tensor:
        return self.to_x0_eps(self.fake_output(x_t, t, cond, uncond, guidance_scale, adapter), x_t, t)[1]

    # -- bookkeeping ----------------------------------------------------------------------------------------------
    def parameter_counts(self) -> dict[str, int]:
        """Numbers of base and LoRA parameters held (the base is counted once, whatever the number of adapters)."""
        base = sum(p.numel() for p in self.base_parameters())
        fake = {name: sum(p.numel() for p in self.fake_parameters(name)) for name in self.adapters}
        return {"base": base, **{f"lora:{k}": v for k, v in fake.items()}}

    def fake_state_dict(self, adapter: str | None = None) -> dict[str, torch.Tensor]:
        from peft.utils import get_peft_model_state_dict

        return get_peft_model_state_dict(self.unet, adapter_name=adapter or self.adapters[0])
