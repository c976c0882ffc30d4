"""YONOS-SR trainer on the shared runtime: x0 regression, scale distillation, decoder fine-tuning (and the testbed VAE).

Paper: Noroozi et al., "You Only Need One Step: Fast Super-Resolution with Stable Diffusion via Scale Distillation",
arXiv 2401.17258. The objectives are in :mod:`zoo_plugins.yonos_sr.losses`; the stages are described in
:mod:`zoo_plugins.yonos_sr.config`. The recipe of the paper, as a sequence of runs::

    zoo train yonos_sr stage=autoencoder                       # testbed only: a VAE (SD has one)
    zoo train yonos_sr stage=regress scale=2 vae_from=<vae run>/export          # teacher x2
    zoo train yonos_sr stage=distill scale=4 teacher=<x2 run>/export            # student x4 (init: the teacher)
    zoo train yonos_sr stage=decoder scale=4 init_from=<x4 run>/export          # decoder fine-tuning

Every run exports a complete model folder (``vae/``, ``unet/``, ``scheduler/``, ``context.safetensors``, ``zoo.json``
with ``sampler.scale`` and ``sampler.steps = 1``) that ``zoo upscale yonos_sr --model <folder>`` runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from zoo.errors import ConfigError
from zoo.sdk import OptimizerGroup, Trainer
from zoo_plugins.yonos_sr import losses, testbed
from zoo_plugins.yonos_sr.config import LOSS_WEIGHTINGS, STAGES
from zoo_plugins.yonos_sr.model import YonosSRModel


def _resolve_folder(ref: str, key: str) -> Path:
    from zoo.hub import resolve_model

    if not ref:
        raise ConfigError(f"Config key '{key}' is empty; give the model folder (or hub ref) it needs")
    return Path(resolve_model(ref).path)


def check_config(config: Any) -> None:
    """One-line :class:`ConfigError` for an unusable stage / scale / path combination."""
    if config.stage not in STAGES:
        raise ConfigError(f"Bad value {config.stage!r} for 'stage'; valid values: {', '.join(STAGES)}")
    if config.loss_weighting not in LOSS_WEIGHTINGS:
        raise ConfigError(f"Bad value {config.loss_weighting!r} for 'loss_weighting'; valid values: "
                          f"{', '.join(LOSS_WEIGHTINGS)}")
    if int(config.scale) < 1:
        raise ConfigError(f"Bad value {config.scale!r} for 'scale'; use an integer >= 1")
    if config.stage == "distill" and (int(config.scale) < 2 or int(config.scale) % 2):
        raise ConfigError(f"stage=distill needs an even scale (the teacher works at scale/2); got {config.scale}")
    if config.stage == "distill" and not config.teacher:
        raise ConfigError("stage=distill needs teacher=<folder of the model trained at scale/2>")
    if config.stage == "decoder" and not config.init_from:
        raise ConfigError("stage=decoder needs init_from=<folder of the distilled model>")
    if config.stage == "regress" and not (config.init_from or config.vae_from):
        raise ConfigError("stage=regress needs vae_from=<folder with a vae/> (or init_from=<model folder>)")
    if config.data.source == "testbed" and config.data.texture not in testbed.TEXTURES:
        raise ConfigError(f"Bad value {config.data.texture!r} for 'data.texture'; valid values: "
                          f"{', '.join(testbed.TEXTURES)}")
    if len(config.vae_blocks) < 2 or int(config.vae_latent_channels) < 1:
        raise ConfigError("vae_blocks needs at least 2 entries and vae_latent_channels >= 1 "
                          "(e.g. vae_blocks=[16,32,64] vae_latent_channels=4)")
    crop, scale = int(config.data.crop_size), int(config.scale)
    if crop % scale or crop % 8:
        raise ConfigError(f"data.crop_size {crop} must be a multiple of the scale ({scale}) and of 8 so LR crops and "
                          "latents line up")


class YonosSRTrainer(Trainer):
    """One YONOS-SR stage (``config.stage``) as a :class:`zoo.sdk.Trainer`."""

    task = "super-resolution"

    def build(self) -> None:
        config = self.config
        check_config(config)
        stage, scale = config.stage, int(config.scale)
        self.scale = scale
        self.teacher = None
        if stage == "autoencoder":
            channels = int(config.vae_latent_channels)
            vae = testbed.build_testbed_vae([int(c) for c in config.vae_blocks], channels)
            self.model = YonosSRModel(vae, testbed.build_testbed_unet(channels))
        elif stage == "regress" and not config.init_from:
            vae_model = YonosSRModel.load(_resolve_folder(config.vae_from, "vae_from"))
            unet = testbed.build_testbed_unet(int(vae_model.vae.config.latent_channels))
            self.model = YonosSRModel(vae_model.vae, unet)
        else:
            start = config.init_from or config.teacher
            self.model = YonosSRModel.load(_resolve_folder(start, "init_from" if config.init_from else "teacher"))
        if stage == "distill":
            # Frozen teacher phi: no gradients, eval mode (Sec. 3.1: "the teacher is frozen").
            self.teacher = YonosSRModel.load(_resolve_folder(config.teacher, "teacher"), device=self.device)
            self.teacher.eval().requires_grad_(False)
        self.model.requires_grad_(False)
        for parameter in self.trainable_parameters():
            parameter.requires_grad_(True)
        self.model.vae.eval()  # no dropout anywhere; eval keeps the frozen parts in inference mode

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """What this stage trains: the VAE (autoencoder), the decoder (decoder), else the UNet and its context."""
        stage = self.config.stage
        if stage == "autoencoder":
            return list(self.model.vae.parameters())
        if stage == "decoder":
            return losses.decoder_parameters(self.model)
        return list(self.model.unet.parameters()) + [self.model.context]

    def trainable_modules(self) -> dict[str, torch.nn.Module]:
        return {"model": self.model}

    def optimizer_groups(self) -> list[OptimizerGroup]:
        return [OptimizerGroup("model", [p for p in self.model.parameters() if p.requires_grad],
                               self.config.optim.model)]

    def batches(self, seed: int) -> Iterable[torch.Tensor]:
        data = self.config.data
        batch_size, crop = int(self.config.train.batch_size), int(data.crop_size)
        if data.source == "testbed":
            return testbed.training_batches(batch_size, crop, seed, self.process_index, self.num_processes,
                                            texture=data.texture)
        return _folder_batches(Path(data.source), batch_size, crop, seed, self.process_index, self.num_processes)

    def loss(self, group: str, step: int, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        hr = testbed.to_model_range(batch.to(self.device))
        config = self.config
        if config.stage == "autoencoder":
            return losses.autoencoder_loss(self.model, hr, float(config.kl_weight))
        if config.stage == "regress":
            return losses.regression_loss(self.model, hr, self.scale, config.loss_weighting)
        if config.stage == "distill":
            return losses.scale_distillation_loss(self.model, self.teacher, hr, self.scale, config.loss_weighting)
        return losses.decoder_loss(self.model, hr, self.scale, float(config.decoder_l2_weight))

    def validate(self, step: int, out_dir: Path) -> dict[str, float]:
        """Y-PSNR on held-out testbed images: reconstruction (autoencoder) or one-step SR at this stage's scale."""
        from zoo_plugins.yonos_sr.evaluate import one_step_psnr, reconstruction_psnr

        data = self.config.data
        hr = testbed.test_crops(int(self.config.validation_images), int(data.crop_size), texture=data.texture)
        if self.config.stage == "autoencoder":
            return {"recon_psnr_y": reconstruction_psnr(self.model, hr)}
        return {"psnr_y_1step": one_step_psnr(self.model, hr, self.scale)}

    def export_manifest(self) -> dict[str, Any]:
        manifest = {"base_model": None, "scale": self.scale, "stage": self.config.stage,
                    "sampler": {"scale": self.scale, "steps": 1}}
        if self.config.data.source == "testbed":
            manifest["testbed_texture"] = self.config.data.texture  # which testbed images the model was trained on
            manifest["testbed_only"] = True  # synthetic shapes only: not for real photos (the sampler says so)
        return manifest

    def export(self, out_dir: Path, metrics: dict[str, Any]) -> Path:
        from zoo.train.checkpoint import unwrap
        from zoo.train.export import write_export_metadata

        out_dir = Path(out_dir)
        with self.ema_weights():
            model = unwrap(self.model)
            if self.config.stage == "autoencoder":
                data = self.config.data
                set_scaling_factor(model, testbed.test_crops(256, int(data.crop_size), seed=7, texture=data.texture))
            model.save(out_dir)
        write_export_metadata(self, out_dir, metrics, files=["vae/", "unet/", "scheduler/", "context.safetensors"])
        return out_dir


@torch.no_grad()
def set_scaling_factor(model: YonosSRModel, images: torch.Tensor) -> float:
    """SD's recipe: scaling_factor = 1 / std of the latents (posterior mode) over sample images in [0, 1]."""
    device = next(model.parameters()).device
    latents = model.vae.encode(testbed.to_model_range(images.to(device))).latent_dist.mode()
    factor = float(1.0 / latents.float().std())
    model.vae.register_to_config(scaling_factor=factor)
    return factor


def _folder_batches(folder: Path, batch_size: int, crop: int, seed: int, shard: int,
                    num_shards: int) -> Iterable[torch.Tensor]:
    """Random crops with flips from the images of ``folder`` (each at least ``crop`` pixels on both sides)."""
    from zoo.images import list_images, load_image

    if not folder.is_dir():
        raise ConfigError(f"data.source {str(folder)!r} is neither 'testbed' nor a folder of images")
    images = [torch.from_numpy(load_image(p)).permute(2, 0, 1)[None] for p in list_images(folder)]
    images = tuple(im for im in images if min(im.shape[-2:]) >= crop)
    if not images:
        raise ConfigError(f"No image of at least {crop}x{crop} pixels in {folder}; lower data.crop_size or add images")
    generator = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, shard, num_shards]).generate_state(1)[0]))
    while True:
        crops = []
        for _ in range(batch_size):
            image = images[int(torch.randint(len(images), (1,), generator=generator))]
            top = int(torch.randint(image.shape[-2] - crop + 1, (1,), generator=generator))
            left = int(torch.randint(image.shape[-1] - crop + 1, (1,), generator=generator))
            piece = image[0, :, top:top + crop, left:left + crop]
            if bool(torch.randint(2, (1,), generator=generator)):
                piece = piece.flip(-1)
            crops.append(piece)
        yield torch.stack(crops)
