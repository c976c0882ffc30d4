"""Prompt adherence from conflicting noise: how often a sampler follows the prompt when its initial noise carries a
faint image of another colour.

A rare colour error of a distilled student (a "red circle" prompt giving a blue circle) happens when the initial noise
by chance resembles the latent of another image. This makes that case common, so that samplers can be compared on it
with a few hundred images instead of tens of thousands: every prompt of the benchmark that names a colour and a shape
gets ``--images`` initial latents

    x_T = SCALE * sqrt(abar_999) * z_other + sqrt(1 - abar_999) * eps

where ``z_other`` is the VAE latent of a rendered testbed image of another colour (the three others in turn, random
shape and place) and ``eps`` Gaussian noise. SCALE 1 is the signal a training state at t = 999 carries; the default
scales 3 and 4 make the conflict strong enough to show differences. Reported per row and scale: colour and shape
accuracy against the prompt, and the share of images that take the conflicting image's colour (``follows noise``).

    python scripts/bench_conflict.py                                  # teacher at 4 and 8 steps, Hyper-SD N-step LoRAs
    python scripts/bench_conflict.py --model hyper_sd=runs/x/export/4step hyper_sd=runs/x/export/8step --json out.json

Rows: the teacher (DDIM trailing with its recommended CFG) at each ``--teacher-steps``, then each ``--model
METHOD=REF`` at its own recommended steps and guidance. Only samplers built on the shared text-to-image sampler
(``zoo.t2i``) take given initial latents; others are refused with one line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

TOP_TIMESTEP = 999


def conflicting_attributes(prompt: str, n: int, seed: int):
    """``n`` testbed attribute sets whose colours are the prompt's three other colours in turn (random shape, size
    and place)."""
    import numpy as np

    from zoo.testbed.data import COLORS, Attributes, parse_caption, sample_attributes

    _, color = parse_caption(prompt)
    others = [c for c in COLORS if c != color]
    drawn = sample_attributes(np.random.default_rng(seed), n)
    return [Attributes(a.shape, others[i % len(others)], a.cx, a.cy, a.size) for i, a in enumerate(drawn)]


def conflicting_latents(components, attributes, scale: float, seed: int):
    """Initial latents ``scale * sqrt(abar_T) * z_other + sqrt(1 - abar_T) * eps`` for the rendered ``attributes``."""
    import torch

    from zoo.testbed.data import render

    images = torch.from_numpy(render(attributes)).permute(0, 3, 1, 2)
    torch.manual_seed(seed)  # the VAE posterior sample
    z_other = components.encode_images(images).float()
    eps = torch.randn(z_other.shape, generator=torch.Generator("cpu").manual_seed(seed))
    abar = float(components.alphas_cumprod[TOP_TIMESTEP])
    return scale * abar ** 0.5 * z_other + (1 - abar) ** 0.5 * eps


def score(evaluator, images, prompt: str, attributes) -> dict:
    """Counts for one prompt's images: right colour, right shape, the conflicting image's colour, and images."""
    report = evaluator.evaluate(images, prompt)
    colors = [a["color"] for a in evaluator.analyze(images)]
    return {"color_hits": sum(h is True for h in report.color_hits),
            "shape_hits": sum(h is True for h in report.shape_hits),
            "follows_noise": sum(c == o.color for c, o in zip(colors, attributes)), "images": len(colors)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs="*", default=None, metavar="METHOD=REF",
                        help="student rows (default: the Hyper-SD testbed student's 4- and 8-step LoRAs)")
    parser.add_argument("--teacher-steps", type=int, nargs="*", default=[4, 8])
    parser.add_argument("--scales", type=float, nargs="*", default=[3.0, 4.0])
    parser.add_argument("--images", type=int, default=48, help="images per prompt and scale (12 prompts)")
    parser.add_argument("--prompts", type=int, default=None, help="only the first N prompts (a quick look)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.images < 1 or any(s < 0 for s in args.scales):
        raise SystemExit("--images must be >= 1 and --scales >= 0")

    import torch

    torch.set_num_threads(args.threads)
    from zoo.errors import InputError
    from zoo.hub import resolve_model
    from zoo.registry import get_method
    from zoo.t2i import DEFAULT_MODEL, DDIMSampler, TextToImageSampler
    from zoo.testbed.evaluator import Evaluator
    from zoo.testbed.prompts import FULL_PROMPTS

    teacher = DDIMSampler.from_model(resolve_model(DEFAULT_MODEL), device="cpu")
    rows = [(f"teacher DDIM {s} steps, CFG {teacher.default_guidance_scale:g}", teacher, {"steps": s})
            for s in args.teacher_steps]
    specs = args.model
    if specs is None:
        student = resolve_model(get_method("hyper_sd").default_model)
        specs = [f"hyper_sd={student.path / v}" for v in ("4step", "8step")]
    for item in specs:
        method, sep, ref = item.partition("=")
        if not sep or not ref:
            raise SystemExit(f"--model {item!r}: write METHOD=REF (e.g. hyper_sd=runs/x/export/4step)")
        try:
            sampler = get_method(method).load("sampler")(resolve_model(ref), device="cpu")
        except InputError as exc:
            raise SystemExit(f"--model {item!r}: {exc}") from None
        if not isinstance(sampler, TextToImageSampler):
            raise SystemExit(f"--model {item!r}: {method}'s sampler does not take initial latents; "
                             f"use a method built on zoo.t2i")
        rows.append((f"{method} {ref}", sampler, {}))  # its own recommended steps and guidance

    evaluator = Evaluator()
    prompts = FULL_PROMPTS[: args.prompts] if args.prompts else FULL_PROMPTS
    results = []
    for scale in args.scales:
        totals = {name: {"color_hits": 0, "shape_hits": 0, "follows_noise": 0, "images": 0} for name, *_ in rows}
        settings = {}
        for index, prompt in enumerate(prompts):
            attributes = conflicting_attributes(prompt, args.images, seed=100 + index)
            latents = conflicting_latents(teacher.components, attributes, scale, seed=7000 + index)
            for name, sampler, options in rows:
                result = sampler(prompt, batch_size=args.images, latents=latents, output_type="pt", **options)
                settings[name] = (result.metadata["steps"], result.metadata["guidance_scale"])
                images = result.images.permute(0, 2, 3, 1).numpy()
                for key, value in score(evaluator, images, prompt, attributes).items():
                    totals[name][key] += value
        for name, *_ in rows:
            t, (steps, guidance) = totals[name], settings[name]
            results.append({"row": name, "scale": scale, "steps": steps, "guidance_scale": guidance,
                            "images": t["images"], "color_acc": t["color_hits"] / t["images"],
                            "shape_acc": t["shape_hits"] / t["images"],
                            "follows_noise": t["follows_noise"] / t["images"]})
            r = results[-1]
            print(f"scale {scale:g}  {name:60s} steps {steps}  colour {r['color_acc']:.4f}  "
                  f"shape {r['shape_acc']:.4f}  follows noise {r['follows_noise']:.4f}  ({t['images']} images)",
                  flush=True)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"prompts": list(prompts), "images_per_prompt": args.images,
                                         "rows": results}, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
