"""Train the testbed's miniature Stable Diffusion from scratch and export it as a diffusers pipeline folder.

Stages (each checkpoints under ``--work-dir`` and resumes where it stopped; raising a step count extends a run):

1. ``vae``  - ``AutoencoderKL`` 32x32x3 <-> 4x8x8 on the procedural shapes (L1 + MSE reconstruction, tiny KL), then
   ``scaling_factor = 1 / std(latents)`` as in Stable Diffusion.
2. ``unet`` - ``UNet2DConditionModel`` + ``CLIPTextModel`` trained jointly with the epsilon-prediction objective of
   "Denoising Diffusion Probabilistic Models" (Ho et al., arXiv 2006.11239) on the SD1.5 beta schedule, with 10%
   caption dropout (for classifier-free guidance, Ho & Salimans, arXiv 2207.12598), Min-SNR-5 loss weighting
   ("Efficient Diffusion Training via Min-SNR Weighting Strategy", Hang et al., arXiv 2303.09556) and an EMA of the
   weights, which is what gets exported.
3. ``export`` - ``StableDiffusionPipeline.save_pretrained`` (safetensors; UNet and VAE in fp16) plus a ``zoo.json``.

The exact command that produced the committed weights (``zoo/testbed/weights/teacher``)::

    OMP_NUM_THREADS=1 python scripts/train_testbed.py --threads 1 --work-dir runs/testbed \
        --vae-steps 1500 --unet-steps 4000 --export-guidance 3 --export zoo/testbed/weights/teacher

(the defaults; the command is also recorded in the exported ``zoo.json``). The evaluator's classifier
(``zoo/testbed/classifier.safetensors``) is trained separately::

    OMP_NUM_THREADS=1 python scripts/train_testbed.py --stage classifier --threads 1 --classifier-steps 2400
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from zoo.testbed import models  # noqa: E402
from zoo.testbed.data import CAPTION_KINDS, CAPTION_PROBS, ShapesDataset, caption_for, render, sample_attributes  # noqa: E402
from zoo.testbed.tokenizer import build_tokenizer  # noqa: E402

CAPTION_DROPOUT = 0.10
"""Probability that a training caption is replaced by the empty prompt (the unconditional input of CFG)."""
MIN_SNR_GAMMA = 5.0


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def to_model_range(images: np.ndarray) -> torch.Tensor:
    """``[N, H, W, 3]`` in ``[0, 1]`` -> ``[N, 3, H, W]`` in ``[-1, 1]`` (the VAE's pixel range)."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous() * 2.0 - 1.0


def save_checkpoint(path: Path, state: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path) -> dict | None:
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


class EMA:
    """Exponential moving average of a module's parameters, with the usual warm-up ``min(decay, (1+n)/(10+n))``."""

    def __init__(self, module: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow = {k: v.detach().clone().float() for k, v in module.state_dict().items()}

    @torch.no_grad()
    def update(self, module: torch.nn.Module, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
        for name, value in module.state_dict().items():
            if value.dtype.is_floating_point:
                self.shadow[name].mul_(decay).add_(value.float(), alpha=1 - decay)
            else:
                self.shadow[name].copy_(value)

    def copy_to(self, module: torch.nn.Module) -> None:
        module.load_state_dict(self.shadow)


# --------------------------------------------------------------------------------------------------------------------
# Stage 1: VAE
# --------------------------------------------------------------------------------------------------------------------
def train_vae(args) -> Path:
    out = args.work_dir / "vae"
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.pt"
    vae = models.build_vae()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=args.vae_lr, weight_decay=0.0)
    step = 0
    state = load_checkpoint(ckpt_path)
    if state is not None:
        vae.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step = state["step"]
        log(f"vae: resumed at step {step}")
    if step >= args.vae_steps:
        log(f"vae: already trained for {step} steps")
    vae.train()
    bar = tqdm(total=args.vae_steps, initial=step, desc="vae", mininterval=10, file=sys.stdout)
    started = time.time()
    while step < args.vae_steps:
        # Data and noise depend only on (seed, step), so a resumed run sees the same stream.
        batch = ShapesDataset(seed=[args.seed, 1, step]).batch(args.vae_batch)
        x = to_model_range(batch.images)
        generator = torch.Generator().manual_seed(args.seed * 1_000_003 + step)
        posterior = vae.encode(x).latent_dist
        z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=generator)
        reconstruction = vae.decode(z).sample
        # Loss per image: summed reconstruction error (L1 + MSE) + kl_weight * summed KL, averaged over the batch.
        per_pixel = (reconstruction - x).abs() + (reconstruction - x).pow(2)
        reconstruction_loss = per_pixel.flatten(1).sum(1).mean()
        kl = posterior.kl().mean()
        loss = reconstruction_loss + args.vae_kl_weight * kl
        lr = args.vae_lr * min(1.0, (step + 1) / 100) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / args.vae_steps)))
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        step += 1
        bar.update(1)
        if step % 100 == 0 or step == args.vae_steps:
            mae = (reconstruction - x).abs().mean().item() / 2  # in [0, 1] pixel units
            log(f"vae step {step}: loss {loss.item():.2f} mae {mae:.4f} kl {kl.item():.1f} lr {lr:.2e} "
                f"({(time.time() - started) / max(1, bar.n - bar.initial + 0):.3f} s/step)")
        if step % args.checkpoint_every == 0 or step == args.vae_steps:
            save_checkpoint(ckpt_path, {"model": vae.state_dict(), "optimizer": optimizer.state_dict(), "step": step})
    bar.close()

    # Scaling factor: 1 / std of posterior samples over a fixed set of images (Rombach et al. 2022, Sec. 4.3.2).
    vae.eval()
    with torch.no_grad():
        images = ShapesDataset(seed=[args.seed, 2]).batch(2048).images
        latents = torch.cat([vae.encode(to_model_range(images[i:i + 256])).latent_dist.sample()
                             for i in range(0, len(images), 256)])
    scaling_factor = float(1.0 / latents.std())
    vae.register_to_config(scaling_factor=scaling_factor)
    vae.save_pretrained(out / "final")
    log(f"vae: latent std {latents.std():.4f} mean {latents.mean():.4f} -> scaling_factor {scaling_factor:.5f}")
    return out / "final"


# --------------------------------------------------------------------------------------------------------------------
# Stage 2: UNet + text encoder
# --------------------------------------------------------------------------------------------------------------------
def encode_latent_pool(vae, n: int, seed: int) -> dict:
    """Posterior mean and std of ``n`` procedural images, with their attributes (re-captioned every step)."""
    rng = np.random.default_rng([seed, 3])
    attributes = sample_attributes(rng, n)
    means, stds = [], []
    with torch.no_grad():
        for i in tqdm(range(0, n, 512), desc="encode latents", mininterval=10, file=sys.stdout):
            posterior = vae.encode(to_model_range(render(attributes[i:i + 512]))).latent_dist
            means.append(posterior.mean)
            stds.append(posterior.std)
    return {"mean": torch.cat(means), "std": torch.cat(stds), "attributes": attributes}


def sample_training_captions(rng: np.random.Generator, attributes) -> list[str]:
    kinds = rng.choice(len(CAPTION_KINDS), size=len(attributes), p=CAPTION_PROBS)
    drop = rng.random(len(attributes)) < CAPTION_DROPOUT
    captions = []
    for attr, kind, dropped in zip(attributes, kinds, drop):
        name = CAPTION_KINDS[int(kind)]
        if dropped:
            captions.append("")
        else:
            captions.append(caption_for(attr.shape if name in ("both", "shape") else None,
                                        attr.color if name in ("both", "color") else None))
    return captions


def train_unet(args, vae_dir: Path) -> None:
    from diffusers import AutoencoderKL

    out = args.work_dir / "unet"
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.pt"
    vae = AutoencoderKL.from_pretrained(vae_dir).eval()
    scaling_factor = vae.config.scaling_factor
    pool_path = out / "latent_pool.pt"
    if pool_path.is_file():
        pool = torch.load(pool_path, weights_only=False)  # our own file, written below (holds dataclasses)
    else:
        pool = encode_latent_pool(vae, args.pool_size, args.seed)
        torch.save(pool, pool_path)
    n_pool = pool["mean"].shape[0]

    tokenizer = build_tokenizer()
    torch.manual_seed(args.seed)
    text_encoder = models.build_text_encoder(tokenizer)
    unet = models.build_unet()
    noise_scheduler = models.build_training_scheduler()
    alphas_cumprod = noise_scheduler.alphas_cumprod
    params = list(unet.parameters()) + list(text_encoder.parameters())
    optimizer = torch.optim.AdamW(params, lr=args.unet_lr, weight_decay=0.0)
    ema_unet = EMA(unet, args.ema_decay)
    ema_text = EMA(text_encoder, args.ema_decay)
    step = 0
    state = load_checkpoint(ckpt_path)
    if state is not None:
        unet.load_state_dict(state["unet"])
        text_encoder.load_state_dict(state["text_encoder"])
        optimizer.load_state_dict(state["optimizer"])
        ema_unet.shadow = state["ema_unet"]
        ema_text.shadow = state["ema_text"]
        step = state["step"]
        log(f"unet: resumed at step {step}")
    log(f"unet: {models.count_parameters(unet):,} params, text encoder {models.count_parameters(text_encoder):,}, "
        f"pool {n_pool}, scaling_factor {scaling_factor:.4f}")
    unet.train()
    text_encoder.train()
    bar = tqdm(total=args.unet_steps, initial=step, desc="unet", mininterval=10, file=sys.stdout)
    started, first = time.time(), step
    while step < args.unet_steps:
        rng = np.random.default_rng([args.seed, 4, step])
        generator = torch.Generator().manual_seed(args.seed * 7_000_003 + step)
        index = torch.from_numpy(rng.integers(0, n_pool, size=args.unet_batch))
        # 1. x0 ~ q(z | x): a posterior sample of the VAE, scaled to unit variance.
        latents = pool["mean"][index] + pool["std"][index] * torch.randn(pool["mean"][index].shape, generator=generator)
        latents = latents * scaling_factor
        captions = sample_training_captions(rng, [pool["attributes"][int(i)] for i in index])
        ids = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                        return_tensors="pt").input_ids
        # 2. x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps  (DDPM Eq. 4), t uniform in {0..999}.
        noise = torch.randn(latents.shape, generator=generator)
        timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (args.unet_batch,), generator=generator)
        noisy = noise_scheduler.add_noise(latents, noise, timesteps)
        # 3. eps-prediction loss (DDPM Eq. 14) weighted by min(SNR, gamma) / SNR (Min-SNR, Eq. 7 for eps-prediction).
        encoder_hidden_states = text_encoder(ids)[0]
        prediction = unet(noisy, timesteps, encoder_hidden_states).sample
        snr = alphas_cumprod[timesteps] / (1 - alphas_cumprod[timesteps])
        weight = torch.clamp(snr, max=MIN_SNR_GAMMA) / snr
        loss = (weight * (prediction - noise).pow(2).mean(dim=(1, 2, 3))).mean()
        lr = args.unet_lr * min(1.0, (step + 1) / 200)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        ema_unet.update(unet, step)
        ema_text.update(text_encoder, step)
        step += 1
        bar.update(1)
        if step % 100 == 0 or step == args.unet_steps:
            log(f"unet step {step}: loss {loss.item():.4f} lr {lr:.2e} "
                f"({(time.time() - started) / max(1, step - first):.3f} s/step)")
        if step % args.checkpoint_every == 0 or step == args.unet_steps:
            save_checkpoint(ckpt_path, {"unet": unet.state_dict(), "text_encoder": text_encoder.state_dict(),
                                        "optimizer": optimizer.state_dict(), "ema_unet": ema_unet.shadow,
                                        "ema_text": ema_text.shadow, "step": step})
            log(f"unet: checkpoint at step {step}")
    bar.close()


# --------------------------------------------------------------------------------------------------------------------
# Stage 3: export
# --------------------------------------------------------------------------------------------------------------------
def export(args, vae_dir: Path) -> None:
    from diffusers import AutoencoderKL

    state = load_checkpoint(args.work_dir / "unet" / "checkpoint.pt")
    if state is None:
        raise SystemExit("No UNet checkpoint to export; run the unet stage first")
    tokenizer = build_tokenizer()
    text_encoder = models.build_text_encoder(tokenizer)
    text_encoder.load_state_dict(state["ema_text"])
    unet = models.build_unet()
    unet.load_state_dict(state["ema_unet"])
    vae = AutoencoderKL.from_pretrained(vae_dir)
    pipeline = models.build_pipeline(tokenizer, text_encoder.eval(), vae.eval(), unet.eval())
    target = Path(args.export)
    target.mkdir(parents=True, exist_ok=True)
    # UNet and VAE in fp16 (halves the size; checked against fp32 by the evaluator), text encoder in fp32 (tiny).
    pipeline.unet.to(torch.float16)
    pipeline.vae.to(torch.float16)
    pipeline.save_pretrained(target, safe_serialization=True)
    from zoo import __version__

    manifest = {
        "method": "base",  # an undistilled diffusion model: `zoo run` samples it with zoo.t2i.DDIMSampler
        "task": "text-to-image",
        "base_model": None,
        "sampler": {"steps": args.export_steps, "guidance_scale": args.export_guidance},
        "zoo_version": __version__,
        "testbed": {"unet_steps": state["step"], "command": "python scripts/train_testbed.py " + " ".join(sys.argv[1:])},
        "description": "distill-zoo testbed teacher: a miniature Stable Diffusion (32x32 shapes and colours).",
    }
    (target / "zoo.json").write_text(json.dumps(manifest, indent=2) + "\n")
    log(f"exported step {state['step']} to {target} ({models.weights_size(target) / 1e6:.2f} MB)")


def train_classifier(args) -> None:
    from zoo.testbed.evaluator import train_classifier as train

    train(steps=args.classifier_steps, seed=args.seed, log=log)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", choices=["all", "vae", "unet", "export", "classifier"], default="all")
    parser.add_argument("--work-dir", type=Path, default=ROOT / "runs" / "testbed")
    parser.add_argument("--export", default=str(ROOT / "zoo" / "testbed" / "weights" / "teacher"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads; on a shared machine 1 is much faster than 2 (no spin-waiting)")
    parser.add_argument("--checkpoint-every", type=int, default=250)
    parser.add_argument("--vae-steps", type=int, default=1500)
    parser.add_argument("--vae-batch", type=int, default=32)
    parser.add_argument("--vae-lr", type=float, default=1e-3)
    parser.add_argument("--vae-kl-weight", type=float, default=1e-5)
    parser.add_argument("--pool-size", type=int, default=40_000)
    parser.add_argument("--unet-steps", type=int, default=4000)
    parser.add_argument("--unet-batch", type=int, default=64)
    parser.add_argument("--unet-lr", type=float, default=6e-4)
    parser.add_argument("--ema-decay", type=float, default=0.999)
    parser.add_argument("--export-steps", type=int, default=25)
    parser.add_argument("--export-guidance", type=float, default=3.0,
                        help="CFG scale recommended in zoo.json (3: accuracy 1.0 at 25 steps, better FD than 5 or 7.5)")
    parser.add_argument("--classifier-steps", type=int, default=2400)  # the shipped classifier
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    args.work_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    vae_dir = args.work_dir / "vae" / "final"
    if args.stage == "classifier":
        train_classifier(args)
        return
    if args.stage in ("all", "vae"):
        vae_dir = train_vae(args)
    if args.stage in ("all", "unet"):
        train_unet(args, vae_dir)
    if args.stage in ("all", "export"):
        export(args, vae_dir)
    log(f"done in {(time.time() - started) / 60:.1f} min")


if __name__ == "__main__":
    main()
