"""NASA negative prompts on the testbed: share of red images for "a circle" with and without ``negative_prompt="red"``.

Samples ``--images`` images of "a circle" (batches of 16, the same seeds) with the chosen method's sampler, once plain
and once with ``negative_prompt="red", nasa_alpha=ALPHA`` for each ``--alpha``, and scores them with the testbed
evaluator: the share of images whose dominant colour is red, the shape accuracy, and the UNet calls per image (NFE).
Goal (issue #5): red share drops by >= 80 % relative to no negative prompt, shape accuracy within 5 points, NFE
unchanged.

    python scripts/bench_nasa.py --method snoopi [--model REF] [--alpha 0.3 0.5 1.0] [--images 256] [--json out.json]
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="snoopi")
    parser.add_argument("--model", default=None, help="model ref (default: the method's default model)")
    parser.add_argument("--prompt", default="a circle")
    parser.add_argument("--negative", default="red")
    parser.add_argument("--alpha", type=float, nargs="*", default=[0.3, 0.5, 1.0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--steps", type=int, default=None, help="sampler steps (default: the model's)")
    parser.add_argument("--guidance-scale", type=float, default=None, help="CFG scale (default: the model's)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from zoo.loading import resolve_method_and_model
    from zoo.testbed.evaluator import Evaluator

    spec, resolved = resolve_method_and_model(args.method, args.model)
    if spec is None:  # an undistilled model ("base"): NASA on the core DDIM sampler
        from zoo.t2i import DDIMSampler

        sampler, name = DDIMSampler.from_model(resolved, device="cpu"), "base"
    else:
        sampler, name = spec.load("sampler")(resolved, device="cpu"), spec.name
    fixed = {k: v for k, v in (("steps", args.steps), ("guidance_scale", args.guidance_scale)) if v is not None}
    evaluator = Evaluator()
    batches = [(seed, min(16, args.images - 16 * i)) for i, seed in enumerate(range(0, (args.images + 15) // 16))]

    def measure(**options):
        images, nfe = [], set()
        for seed, size in batches:
            result = sampler(args.prompt, seed=1000 + seed, batch_size=size, **fixed, **options)
            images += result.images
            nfe.add(result.nfe)
        analysis = evaluator.analyze(images)
        report = evaluator.evaluate(images, args.prompt)
        return {"red_share": float(np.mean([a["color"] == args.negative for a in analysis])),
                "shape_acc": report.shape_acc, "nfe": max(nfe)}

    rows = [{"alpha": None, **measure()}]
    for alpha in args.alpha:
        rows.append({"alpha": alpha, **measure(negative_prompt=args.negative, nasa_alpha=alpha)})
    base = rows[0]
    print(f"{name} on {resolved.ref if resolved else 'default'}: '{args.prompt}', negative '{args.negative}', "
          f"{args.images} images")
    print(f"{'alpha':>6} {'red share':>10} {'drop':>7} {'shape acc':>10} {'d shape':>8} {'NFE':>4}")
    for row in rows:
        drop = 1 - row["red_share"] / base["red_share"] if base["red_share"] else None
        row["red_drop"] = drop
        row["shape_delta"] = row["shape_acc"] - base["shape_acc"]
        print(f"{'-' if row['alpha'] is None else row['alpha']:>6} {row['red_share']:>10.3f} "
              f"{'-' if drop is None else f'{drop:.1%}':>7} {row['shape_acc']:>10.3f} {row['shape_delta']:>+8.3f} "
              f"{row['nfe']:>4}")
    if args.json_path:
        Path(args.json_path).write_text(json.dumps({"method": name, "settings": fixed, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
