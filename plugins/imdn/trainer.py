"""IMDN trainer on the shared runtime: L1 on bicubic LR/HR patches, optionally distilled from a larger SR teacher.

Paper: "Lightweight Image Super-Resolution with Information Multi-distillation Network" (arXiv 1909.11856, Sec. 4.1):
L1 loss, Adam 2e-4 halved every 200 epochs, HR patches of 192, batch 16 (defaults in
:mod:`zoo_plugins.imdn.config`).

Loss for one batch of LR patches x and HR patches y (S = student, T = frozen teacher):

1. ``l1_hr = ‖S(x) − y‖₁`` (mean absolute error, the paper's objective);
2. with a teacher: ``l1_teacher = ‖S(x) − T(x)‖₁`` — the student also matches the larger network's output;
3. ``loss = hr_weight · l1_hr + teacher_weight · l1_teacher``.

Run: ``zoo train imdn data.hr_dir=/data/DIV2K_train_HR model.scale=4 [distill.teacher=IMDN_x4.pth
model.num_features=32 model.num_blocks=4] [train.steps=...]``. The export folder holds ``student.safetensors`` with
the official key names, so ``zoo upscale imdn --model <export folder>`` runs it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from zoo.errors import ConfigError
from zoo.sdk import OptimizerGroup, Trainer
from zoo_plugins.imdn.checkpoint import load_model, load_state_dict
from zoo_plugins.imdn.data import PatchSource
from zoo_plugins.imdn.detect import ArchInfo

logger = logging.getLogger(__name__)

TRAINABLE_VARIANTS = ("IMDN", "IMDN_RTC")


def student_architecture(model_config: Any) -> ArchInfo:
    """The :class:`ArchInfo` of the student described by the ``model`` config section."""
    variant = str(model_config.variant).upper()
    if variant not in TRAINABLE_VARIANTS:
        raise ConfigError(f"model.variant {model_config.variant!r} cannot be trained here; use one of "
                          f"{', '.join(TRAINABLE_VARIANTS)}")
    scale, features, blocks = int(model_config.scale), int(model_config.num_features), int(model_config.num_blocks)
    if scale < 1 or blocks < 1 or features < 4 or features % 4:
        raise ConfigError(f"Bad model shape (scale {scale}, num_features {features}, num_blocks {blocks}); use "
                          "scale >= 1, num_blocks >= 1 and num_features a multiple of 4")
    if variant == "IMDN" and features < 16:
        raise ConfigError(f"model.num_features {features} is too small for CCA (reduction 16 of 4·d channels); "
                          "use >= 16 or model.variant=IMDN_RTC")
    return ArchInfo(variant=variant, scale=scale, upscale=scale, in_channels=3, out_channels=3,
                    num_features=features, num_blocks=blocks, distilled_channels=features // 4,
                    reduction=16 if variant == "IMDN" else None)


def load_matching_weights(model: nn.Module, path: str | Path) -> tuple[int, int]:
    """Copy the tensors of ``path`` whose name and shape match ``model``; returns (copied, skipped)."""
    state, _ = load_state_dict(path)
    own = model.state_dict()
    matching = {k: v for k, v in state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    if not matching:
        raise ConfigError(f"model.init_from {path}: no tensor matches the student's names and shapes")
    model.load_state_dict(matching, strict=False)
    return len(matching), len(own) - len(matching)


class IMDNTrainer(Trainer):
    """Trains an IMDN (or IMDN_RTC) student; see the module docstring."""

    method = "imdn"
    task = "super-resolution"

    def build(self) -> None:
        cfg = self.config
        self.arch = student_architecture(cfg.model)
        self.student = self.arch.build()
        if cfg.model.init_from:
            copied, skipped = load_matching_weights(self.student, cfg.model.init_from)
            logger.info("initialised %d tensors from %s (%d kept fresh)", copied, cfg.model.init_from, skipped)
        self.teacher = None
        if cfg.distill.teacher:
            teacher, info = load_model(cfg.distill.teacher)
            if info.variant == "IMDN_AS" or info.scale != self.arch.scale:
                raise ConfigError(f"distill.teacher {Path(cfg.distill.teacher).name} is {info.label}; the teacher "
                                  f"must be a fixed-scale x{self.arch.scale} network like the student")
            self.teacher = teacher.to(self.device).eval().requires_grad_(False)
        if float(cfg.distill.hr_weight) == 0 and self.teacher is None:
            raise ConfigError("distill.hr_weight is 0 and no distill.teacher is set: the loss would be zero")
        data = cfg.data
        self.patches = PatchSource(data.hr_dir, self.arch.scale, int(data.patch_size), bool(data.augment),
                                   int(data.cache_images))

    def trainable_modules(self) -> dict[str, nn.Module]:
        return {"student": self.student}

    def optimizer_groups(self) -> list[OptimizerGroup]:
        return [OptimizerGroup("student", self.student.parameters(), self.config.optim.student)]

    def batches(self, seed: int) -> Iterable[Any]:
        return self.patches.batches(int(self.config.train.batch_size), seed)

    def teacher_output(self, lr: torch.Tensor) -> torch.Tensor:
        """The frozen teacher's SR of ``lr`` (in [0, 1] whatever range the teacher takes)."""
        scale_in = float(getattr(self.teacher, "input_range", 1.0))
        with torch.no_grad():
            return self.teacher(lr * scale_in) / scale_in

    def loss(self, group: str, step: int, batch: Any) -> dict[str, torch.Tensor]:
        lr, hr = (t.to(self.device) for t in batch)
        distill = self.config.distill
        sr = self.student(lr)
        # 1. L1 to the ground truth (paper Sec. 4.1).
        l1_hr = F.l1_loss(sr, hr)
        total = float(distill.hr_weight) * l1_hr
        terms = {"l1_hr": l1_hr.detach()}
        # 2. L1 to the teacher's output (distillation from a larger SR network).
        if self.teacher is not None:
            l1_teacher = F.l1_loss(sr, self.teacher_output(lr))
            total = total + float(distill.teacher_weight) * l1_teacher
            terms["l1_teacher"] = l1_teacher.detach()
        return {"loss": total, **terms}

    def validate(self, step: int, out_dir: Path) -> dict[str, float]:
        """Mean Y-PSNR / SSIM (float Y, border = scale) on ``validation.lr_dir`` / ``hr_dir`` when set."""
        val = self.config.validation
        if not val.lr_dir or not val.hr_dir:
            return {}
        from zoo.images import load_image, paired_images, to_uint8
        from zoo.sr_metrics import score_sr
        from zoo.train.checkpoint import unwrap
        from zoo_plugins.imdn.tiling import upscale_tiled

        student = unwrap(self.student)
        scores = []
        with self.ema_weights():
            for lr_path, hr_path in paired_images(val.lr_dir, val.hr_dir, self.arch.scale):
                rgb = load_image(lr_path)
                x = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None].to(self.device)
                sr = upscale_tiled(student, x, scale=self.arch.scale, multiple=1, tile=0, overlap=0)
                scores.append(score_sr(sr, to_uint8(load_image(hr_path)), self.arch.scale))
        return {"psnr": float(np.mean([s["psnr"] for s in scores])),
                "ssim": float(np.mean([s["ssim"] for s in scores]))}

    def export_manifest(self) -> dict[str, Any]:
        return {"base_model": None, "sampler": {"scale": self.arch.scale},
                "architecture": self.arch.to_dict()}
