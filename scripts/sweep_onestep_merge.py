"""Weight merging of one-step students (SwiftBrush v2, arXiv 2408.14176 §4.4: theta = lam theta_A + (1 - lam) theta_B),
scored at sample time on VALIDATION noise (no training).

Each ``--pair NAME=A,B`` interpolates two UNets with the SwiftBrush one-step sampler (one call at t = 999, x0 formula)
at every ``--lam`` (lam = weight of A). A and B are: ``teacher`` (the testbed teacher's UNet), ``hyper_sd`` (the
committed Hyper-SD unified LoRA fused into the teacher's UNet), or a student folder (``.../unet`` inside it).

    OMP_NUM_THREADS=1 python scripts/sweep_onestep_merge.py --threads 1 \
        --pair sb_hyper=plugins/swiftbrush/testbed,hyper_sd --lam 0 0.25 0.5 0.75 1
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def load_unet_state(ref: str) -> dict[str, torch.Tensor]:
    from zoo.hub import resolve_model
    from zoo.t2i import DEFAULT_MODEL, SDComponents

    if ref == "teacher":
        comps = SDComponents.from_folder(resolve_model(DEFAULT_MODEL).path, device="cpu", dtype=torch.float32)
        return {k: v.clone() for k, v in comps.unet.state_dict().items()}
    if ref == "hyper_sd":
        from zoo.registry import get_method

        sampler = get_method("hyper_sd").load("sampler")(resolve_model("plugins/hyper_sd/testbed"), device="cpu")
        return {k: v.clone().float() for k, v in sampler.components.unet.state_dict().items()}
    from plugins.swiftbrush.sampler import SwiftBrushSampler

    sampler = SwiftBrushSampler.from_model(resolve_model(ref), device="cpu")
    return {k: v.clone().float() for k, v in sampler.components.unet.state_dict().items()}


def merge(a: dict, b: dict, lam: float) -> dict:
    return {k: (lam * a[k].float() + (1 - lam) * b[k].float()) if a[k].is_floating_point() else a[k] for k in a}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pair", nargs="+", required=True, metavar="NAME=A,B")
    parser.add_argument("--lam", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0])
    parser.add_argument("--noise-sets", type=int, default=1)
    parser.add_argument("--benchmark", action="store_true", help="benchmark noise instead of validation noise")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(ROOT))
    from plugins.swiftbrush.sampler import SwiftBrushSampler
    from zoo.hub import resolve_model
    from zoo.testbed.evaluator import Evaluator
    from zoo.testbed.quality import score_sampler

    evaluator = Evaluator()
    sampler = SwiftBrushSampler.from_model(resolve_model("plugins/swiftbrush/testbed"), device="cpu")
    cache: dict[str, dict] = {}
    rows = []
    for pair in args.pair:
        name, _, refs = pair.partition("=")
        ref_a, ref_b = refs.split(",")
        for ref in (ref_a, ref_b):
            if ref not in cache:
                cache[ref] = load_unet_state(ref)
        for lam in args.lam:
            sampler.components.unet.load_state_dict(merge(cache[ref_a], cache[ref_b], lam))
            row = score_sampler(sampler, f"{name} lam={lam:g}", noise_sets=args.noise_sets,
                                validation=not args.benchmark, evaluator=evaluator, progress=False).to_dict()
            row.pop("hits", None)
            rows.append(row)
            print(f"{row['method']:<28} colour {row['color_acc']:.3f} shape {row['shape_acc']:.3f} "
                  f"diversity {row['diversity']:.3f} fd {row['fd']:.3f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
