"""NASA negative prompts on every few-step text-to-image model: how much of the negated colour they remove.

For each model (``--models``; default: snoopi, swiftbrush, phased_dmd and hyper_sd at 1, 2, 4 and 8 steps, each on
its default model without CFG) and each of the testbed's 12 shape x colour pairs, the prompt names only the shape
("a circle") and the negative prompt only the colour ("red"). ``--images`` images per pair (batches of 16, the
same noise in every cell) are sampled with NASA off, at the model's default strength (``sampler.nasa_alpha`` of its
zoo.json; ``-`` when it has none) and at each ``--alpha``, and scored by the testbed evaluator:

- ``share``: the share of images whose dominant colour is the negated one (pooled over the 12 pairs);
- ``removed``: 1 - share / share with NASA off (goal: >= 0.80 at the model's default);
- ``d_shape``: shape accuracy minus its value with NASA off, in points (goal: >= -2), with the exact McNemar p of the
  change image by image (``p=``; the same noise with NASA off and on).

``--calibrate`` sweeps ``--alpha`` (in the form ``--nasa-mode`` and the layers ``--nasa-layers``) on the validation
noise (never the benchmark's) and prints, per model, the smallest strength that meets both goals (or, when none does,
the one that removes most within the shape goal). ``--write`` stores it, with the form and layers, as
``sampler.nasa_alpha`` / ``nasa_mode`` / ``nasa_layers`` in the zoo.json of the method's default model (for a
model run at several step counts, the largest strength its step counts need).

Usage::

    python scripts/bench_nasa.py --json runs/bench_nasa.json                 # the table, benchmark noise
    python scripts/bench_nasa.py --calibrate --alpha 0.3 0.5 0.8 1.2 1.6 2.0 --images 32
    python scripts/bench_nasa.py --calibrate --write --models phased_dmd --nasa-mode relative --alpha 1 1.25 --images 64
    python scripts/bench_nasa.py --models snoopi hyper_sd@4 --images 64
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

DEFAULT_MODELS = ("snoopi", "swiftbrush", "phased_dmd", "hyper_sd@1", "hyper_sd@2", "hyper_sd@4", "hyper_sd@8")
REMOVE_GOAL = 0.80
SHAPE_GOAL = -0.02
BENCH_SEED, VALIDATION_SEED = 1000, 5000


def parse_model(text: str) -> tuple[str, int | None]:
    name, _, steps = text.partition("@")
    return name, int(steps) if steps else None


def pairs() -> list[tuple[str, str, str, str]]:
    """``(prompt, negative, shape, colour)`` for the 12 shape x colour pairs."""
    from zoo.testbed.data import COLORS, SHAPES, caption_for

    return [(caption_for(shape, None), color, shape, color) for shape in SHAPES for color in COLORS]


class Cell:
    """Images of one model at one NASA setting over all pairs, scored."""

    def __init__(self, sampler, evaluator, images: int, base_seed: int, steps: int | None,
                 mode: str | None = None, layers: str | None = None) -> None:
        self.sampler, self.evaluator, self.images, self.base_seed, self.steps = sampler, evaluator, images, base_seed, steps
        self.mode, self.layers = mode, layers

    def measure(self, alpha: float | None, use_default: bool = False) -> dict:
        import numpy as np

        negated, shapes, hits, nfe = [], [], [], set()
        for index, (prompt, negative, shape, colour) in enumerate(pairs()):
            options = {} if self.steps is None else {"steps": self.steps}
            if alpha is not None or use_default:
                options["negative_prompt"] = negative
                if alpha is not None:
                    options["nasa_alpha"] = alpha
                if self.mode is not None:
                    options["nasa_mode"] = self.mode
                if self.layers is not None:
                    options["nasa_layers"] = self.layers
            images = []
            for batch in range((self.images + 15) // 16):
                size = min(16, self.images - 16 * batch)
                result = self.sampler(prompt, seed=self.base_seed + 100 * index + batch, batch_size=size,
                                      guidance_scale=0.0, **options)
                images += list(result.images)
                nfe.add(result.nfe)
            analysis = self.evaluator.analyze(images)
            report = self.evaluator.evaluate(images, prompt)
            negated.append(float(np.mean([a["color"] == colour for a in analysis])))
            shapes.append(report.shape_acc)
            hits += report.shape_hits
        return {"share": float(np.mean(negated)), "shape_acc": float(np.mean(shapes)), "nfe": max(nfe),
                "share_by_pair": negated, "shape_hits": hits}


def run_model(label: str, images: int, alphas: list[float], base_seed: int, evaluator,
              mode: str | None = None, layers: str | None = None) -> dict:
    from zoo.loading import load_sampler

    name, steps = parse_model(label)
    spec, sampler = load_sampler(name, device="cpu")
    settings = getattr(sampler, "settings", {})
    default = getattr(sampler, "default_nasa_alpha", settings.get("nasa_alpha"))
    default_mode = settings.get("nasa_mode") or "paper"
    default_layers = settings.get("nasa_layers") or "all"
    off = Cell(sampler, evaluator, images, base_seed, steps).measure(None)
    rows = {"off": off}
    if default is not None:
        rows["default"] = {**Cell(sampler, evaluator, images, base_seed, steps).measure(None, use_default=True),
                           "alpha": float(default), "mode": default_mode, "layers": default_layers}
    sweep = Cell(sampler, evaluator, images, base_seed, steps, mode or default_mode, layers or default_layers)
    for alpha in alphas:
        rows[f"alpha {alpha:g}"] = {**sweep.measure(alpha), "alpha": alpha, "mode": sweep.mode, "layers": sweep.layers}
    from zoo.testbed.evaluator import paired_counts

    for row in rows.values():
        row["removed"] = 1 - row["share"] / off["share"] if off["share"] else None
        row["d_shape"] = row["shape_acc"] - off["shape_acc"]
        # the shape change image by image (same noise with NASA off and on): exact McNemar p
        row["shape_p"] = paired_counts(row["shape_hits"], off["shape_hits"])[2]
    for row in rows.values():
        del row["shape_hits"]
    return {"model": label, "default_alpha": default, "default_mode": default_mode, "default_layers": default_layers,
            "rows": rows}


def meets(row: dict) -> bool:
    return row["removed"] is not None and row["removed"] >= REMOVE_GOAL and row["d_shape"] >= SHAPE_GOAL


def recommend(result: dict) -> tuple[float | None, str]:
    candidates = [r for key, r in result["rows"].items() if key.startswith("alpha")]
    good = [r for r in candidates if meets(r)]
    if good:
        best = min(good, key=lambda r: r["alpha"])
        return best["alpha"], "meets both goals"
    within = [r for r in candidates if r["d_shape"] >= SHAPE_GOAL and r["removed"] is not None]
    if within:
        best = max(within, key=lambda r: r["removed"])
        return best["alpha"], f"best within the shape goal: removes {best['removed']:.0%}"
    return None, "no strength keeps shape accuracy within 2 points"


def setting(row: dict) -> str:
    """``a=1.5 relative up``: a row's NASA strength, form and layers (the defaults, paper and all, left out)."""
    extra = [v for v in (row.get("mode"), row.get("layers")) if v not in (None, "paper", "all")]
    return " ".join([f"a={row['alpha']:g}", *extra])


def write_calibration(results: list[dict]) -> list[str]:
    """Store each method's recommended NASA setting in its default model's zoo.json; returns what was written."""
    from zoo.loading import load_sampler

    chosen: dict[str, dict] = {}
    for result in results:
        name, _ = parse_model(result["model"])
        rows = [r for r in result["rows"].values() if r.get("alpha") == result["recommended"] and "mode" in r]
        if result["recommended"] is None or not rows:
            continue
        row = rows[0]
        previous = chosen.get(name)
        if previous is None or row["alpha"] > previous["nasa_alpha"]:
            chosen[name] = {"nasa_alpha": row["alpha"], "nasa_mode": row["mode"], "nasa_layers": row["layers"]}
    written = []
    for name, setting in chosen.items():
        _, sampler = load_sampler(name, device="cpu")
        path = Path(sampler.model.path) / "zoo.json"
        manifest = json.loads(path.read_text())
        manifest.setdefault("sampler", {}).update(setting)
        path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        written.append(f"{path}: {setting}")
    return written


def format_table(results: list[dict], columns: list[str]) -> str:
    head = ["model", *columns]
    lines = [head]
    for result in results:
        cells = [result["model"]]
        for column in columns:
            row = result["rows"].get(column)
            if row is None:
                cells.append("-")
                continue
            removed = "" if column == "off" or row["removed"] is None else f" ({row['removed']:.0%}"
            shape = "" if column == "off" else f", shape {100 * row['d_shape']:+.1f} p={row['shape_p']:.2f}"
            alpha = f" {setting(row)}" if column == "default" else ""
            cells.append(f"{row['share']:.3f}{removed}{shape}{')' if removed else ''}{alpha}")
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = ["  ".join(v.ljust(w) for v, w in zip(line, widths)) for line in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=list(DEFAULT_MODELS), metavar="METHOD[@STEPS]")
    parser.add_argument("--alpha", type=float, nargs="*", default=[0.5, 1.0])
    parser.add_argument("--images", type=int, default=192, help="images per shape x colour pair")
    parser.add_argument("--calibrate", action="store_true", help="sweep on validation noise and recommend")
    parser.add_argument("--nasa-mode", choices=["paper", "relative"],
                        help="the NASA form of the --alpha sweep (default: each model's sampler.nasa_mode, else paper)")
    parser.add_argument("--nasa-layers", choices=["all", "up"],
                        help="where NASA acts in the --alpha sweep (default: each model's sampler.nasa_layers, else all)")
    parser.add_argument("--write", action="store_true",
                        help="with --calibrate: store the recommendation in each default model's zoo.json")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from zoo.testbed.evaluator import Evaluator

    evaluator = Evaluator()
    seed = VALIDATION_SEED if args.calibrate else BENCH_SEED
    results = []
    for label in args.models:
        results.append(run_model(label, args.images, list(args.alpha), seed, evaluator, args.nasa_mode,
                                 args.nasa_layers))
        print(format_table(results[-1:], list(results[-1]["rows"])).splitlines()[-1], file=sys.stderr, flush=True)

    columns = ["off", "default", *[f"alpha {a:g}" for a in args.alpha]]
    print(f"share of images in the negated colour (removed, shape accuracy change in points); {args.images} images "
          f"per pair x 12 pairs; {'validation' if args.calibrate else 'benchmark'} noise")
    print(format_table(results, columns))
    if args.calibrate:
        print("\nrecommended sampler.nasa_alpha (smallest strength removing >= 80 % at <= 2 points of shape):")
        for result in results:
            alpha, why = recommend(result)
            result["recommended"] = alpha
            print(f"  {result['model']}: {alpha if alpha is not None else '-'} ({why})")
        if args.write:
            for line in write_calibration(results):
                print(f"wrote {line}")
    else:
        misses = [r["model"] for r in results if "default" not in r["rows"] or not meets(r["rows"]["default"])]
        print(f"\nat the default strength, goal met by {len(results) - len(misses)} of {len(results)} models"
              + (f"; not by: {', '.join(misses)}" if misses else ""))
    if args.json_path:
        Path(args.json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_path).write_text(json.dumps({"images_per_pair": args.images, "calibrate": args.calibrate,
                                                    "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
