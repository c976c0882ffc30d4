"""Sampling speed of the SwiftBrush 1-step sampler against diffusers and against the bare network calls.

Measures, in one run on the same weights and batch (default: the committed SwiftBrush testbed student, batch 16):

* ``zoo``: ``zoo_plugins.swiftbrush`` sampler, 1 step, no CFG, PIL output;
* ``diffusers``: ``diffusers.StableDiffusionPipeline`` built from the same modules, ``num_inference_steps=1``,
  ``guidance_scale=0``, PIL output (what a user would otherwise run);
* ``bare``: the calls a one-step sampler cannot avoid: tokenizer + text encoder, one UNet call, the x0 formula and
  the VAE decode (tensor output, no PIL).

Each variant is warmed up, then the three are timed round-robin (``--repeats`` rounds) and the median per image is
reported with the ratios zoo/diffusers (goal <= 1.0) and zoo/bare (goal <= 1.10).

    python scripts/bench_sampling.py [--model REF] [--batch 16] [--repeats 15] [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="pkg:zoo_plugins.swiftbrush/testbed",
                        help="SwiftBrush model reference (student folder or full pipeline)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the machine is shared: keep it small)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", dest="json_path", help="write the figures to this file")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from diffusers import DDPMScheduler, StableDiffusionPipeline

    from zoo.diffusion.schedule import x0_from_eps
    from zoo_plugins.swiftbrush.sampler import build_sampler

    sampler = build_sampler(args.model, device=args.device)
    c = sampler.components
    prompts = ["a red circle", "a blue square", "a green triangle", "something yellow"] * (args.batch // 4 + 1)
    prompts = prompts[: args.batch]
    size = c.default_size

    pipe = StableDiffusionPipeline(vae=c.vae, text_encoder=c.text_encoder, tokenizer=c.tokenizer, unet=c.unet,
                                   scheduler=DDPMScheduler.from_config(c.scheduler_config), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    timestep = sampler.timestep
    table = sampler._alphas_cumprod

    def run_zoo():
        return sampler(prompts, seed=0, height=size, width=size).images

    def run_diffusers():
        generator = torch.Generator("cpu").manual_seed(0)
        return pipe(prompts, num_inference_steps=1, guidance_scale=0.0, height=size, width=size,
                    generator=generator).images

    @torch.no_grad()
    def run_bare():
        tokens = c.tokenizer(prompts, padding="max_length", max_length=c.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt")
        cond = c.text_encoder(tokens.input_ids.to(c.device))[0]
        z = c.initial_latents(len(prompts), size, size, 0)
        eps = c.unet(z, torch.tensor(timestep), encoder_hidden_states=cond).sample
        x0 = x0_from_eps(z, eps, timestep, table)
        return c.vae.decode(x0 / c.vae.config.scaling_factor).sample

    variants = {"zoo": run_zoo, "diffusers": run_diffusers, "bare": run_bare}
    for fn in variants.values():
        for _ in range(args.warmup):
            fn()
    times = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, fn in variants.items():
            started = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - started)
    per_image = {name: statistics.median(values) / args.batch for name, values in times.items()}
    figures = {
        "model": args.model, "device": args.device, "batch": args.batch, "repeats": args.repeats,
        "threads": args.threads, "nfe": 1,
        "seconds_per_image": {k: round(v, 6) for k, v in per_image.items()},
        "ratio_zoo_to_diffusers": round(per_image["zoo"] / per_image["diffusers"], 4),
        "ratio_zoo_to_bare": round(per_image["zoo"] / per_image["bare"], 4),
        "goals": {"ratio_zoo_to_diffusers": "<= 1.0", "ratio_zoo_to_bare": "<= 1.10"},
    }
    print(f"SwiftBrush 1-step sampling, batch {args.batch}, {args.repeats} rounds, {args.threads} threads, "
          f"{args.device}")
    for name, value in per_image.items():
        print(f"  {name:<10} {value * 1000:8.3f} ms/image")
    print(f"  zoo / diffusers = {figures['ratio_zoo_to_diffusers']:.3f}   (goal <= 1.0)")
    print(f"  zoo / bare      = {figures['ratio_zoo_to_bare']:.3f}   (goal <= 1.10)")
    if args.json_path:
        with open(args.json_path, "w") as handle:
            json.dump(figures, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
