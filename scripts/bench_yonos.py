"""YONOS-SR comparison table on the testbed: PSNR / SSIM (Y channel, border = scale) on held-out images.

Measures, on ``--images`` held-out 32x32 testbed scenes (plugins/yonos_sr/testbed.py, a seed training never uses,
with the texture the work dir's models were trained on) downsampled x4 with bicubic: bicubic upsampling; the x4
model trained directly (from scratch, and from the x2 teacher's weights with the HR target); the scale-distilled x4
student; the student with the fine-tuned decoder; the direct baselines (from scratch, from the teacher) with the
same decoder fine-tuning; each at 1 step (and at 2 / 4 steps); the same-init pair (direct x4 from the teacher vs
distilled) again at its earlier checkpoints (a smaller student budget); the VAE's reconstruction (the ceiling of any
latent model here) and the x2 teacher at x2; and, where trained, the next round x4 -> x8 (distilled from the x4
student vs the HR target from the same initialisation). Every model sees the same LR images and the same noise
seeds; scores are averaged over ``--seeds`` noise seeds. Run after scripts/train_yonos_testbed.py:

    OMP_NUM_THREADS=1 .venv/bin/python scripts/bench_yonos.py --work-dir runs/yonos [--json out.json]

Models that are missing from the work dir are left out of the table. NFE per image is the number of UNet calls.

``--seed-dir DIR`` adds the same-init pair retrained at other training seeds (``DIR/<stage>_s<seed>/export``, e.g.
``zoo train yonos_sr --config runs/yonos2/distill_x4/config.yaml --output-dir DIR/distill_x4_s1 train.seed=1``):
one row per run at 1 step, and per budget (500 and 1,000 steps; 1,000 steps + decoder fine-tuning, runs
``decoder_x4_s<seed>`` / ``decoder_direct_x4_s<seed>``) the mean over training seeds (seed 0 = the work dir's run)
with the distilled-minus-direct difference of each seed, to tell a real difference from the spread between runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

ROWS = (
    # label, stage folder, scale, steps
    ("direct x4 from scratch", "direct_x4_scratch", 4, (1, 2, 4)),
    ("direct x4 from scratch + decoder fine-tuning", "decoder_direct_x4_scratch", 4, (1,)),
    ("direct x4 (init x2 teacher, HR target)", "direct_x4", 4, (1, 2, 4)),
    ("scale-distilled x4 (x2 -> x4)", "distill_x4", 4, (1, 2, 4)),
    ("scale-distilled x4 + decoder fine-tuning", "decoder_x4", 4, (1, 4)),
    ("direct x4 (init x2 teacher, HR target) + decoder fine-tuning", "decoder_direct_x4", 4, (1,)),
    ("direct x4 (init x2 teacher, HR target), x0 loss", "direct_x4_x0w", 4, (1,)),
    ("scale-distilled x4, x0 loss", "distill_x4_x0w", 4, (1,)),
    ("direct x4 (init x2 teacher, HR target), 500 steps", "direct_x4_500", 4, (1,)),
    ("scale-distilled x4, 500 steps", "distill_x4_500", 4, (1,)),
    ("direct x8 (init x4 student, HR target)", "direct_x8", 8, (1,)),
    ("scale-distilled x8 (x4 -> x8)", "distill_x8", 8, (1,)),
)


EARLY_ROWS = (
    # label, stage folder: the same-init pair scored again at each earlier checkpoint (the smaller student budget)
    ("direct x4 (init x2 teacher, HR target)", "direct_x4"),
    ("scale-distilled x4 (x2 -> x4)", "distill_x4"),
    ("direct x4 (init x2 teacher, HR target), x0 loss", "direct_x4_x0w"),
    ("scale-distilled x4, x0 loss", "distill_x4_x0w"),
)


def load_at_checkpoint(export: Path, checkpoint: Path):
    """The model of ``export`` with the trainable weights (UNet, context) of an earlier ``checkpoint`` of that run."""
    from zoo.train.checkpoint import load_tensors
    from zoo_plugins.yonos_sr.model import YonosSRModel

    model = YonosSRModel.load(export)
    result = model.load_state_dict(load_tensors(checkpoint / "models" / "model.safetensors"), strict=False)
    if result.unexpected_keys or any(key.startswith("unet.") for key in result.missing_keys):
        raise SystemExit(f"checkpoint {checkpoint} does not fit {export}")
    return model.eval()


def trained_texture(work_dir: Path) -> str:
    """The testbed texture recorded in the first exported model's zoo.json under ``work_dir`` ("none" if absent)."""
    for manifest in sorted(work_dir.glob("*/export/zoo.json")):
        texture = json.loads(manifest.read_text()).get("testbed_texture")
        if texture:
            return texture
    return "none"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, default=ROOT / "runs" / "yonos")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--seeds", type=int, default=2, help="noise seeds averaged per model")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--no-early", action="store_true", help="skip the rows of the same-init pair at earlier "
                        "checkpoints")
    parser.add_argument("--seed-dir", type=Path, default=None, help="runs of the same-init pair at other training "
                        "seeds, <stage>_s<seed>/export (see the module docstring)")
    parser.add_argument("--texture", default=None, help="testbed images to score (default: the 'testbed_texture' the "
                        "work dir's models were trained on, from their zoo.json; 'none' for older models)")
    args = parser.parse_args(argv)

    import torch

    from zoo_plugins.yonos_sr import testbed
    from zoo_plugins.yonos_sr.evaluate import bicubic_baseline, mean_scores, reconstruction_psnr, super_resolve
    from zoo_plugins.yonos_sr.model import YonosSRModel

    torch.set_num_threads(args.threads)
    texture = args.texture or trained_texture(args.work_dir)
    hr = testbed.test_crops(args.images, 32, texture=texture)
    rows = []

    def add(label: str, scale: int, steps, nfe, psnr: float, ssim: float | None, seconds: float | None = None):
        rows.append({"model": label, "scale": scale, "steps": steps, "nfe": nfe, "psnr_y": round(psnr, 3),
                     "ssim_y": None if ssim is None else round(ssim, 4),
                     "ms_per_image": None if seconds is None else round(1000 * seconds / len(hr), 2)})

    psnr, ssim = mean_scores(bicubic_baseline(hr, 4), hr, 4)
    add("bicubic", 4, "-", 0, psnr, ssim)
    vae_dir = args.work_dir / "vae" / "export"
    if vae_dir.is_dir():
        add("VAE reconstruction of HR (ceiling)", 1, "-", 0, reconstruction_psnr(YonosSRModel.load(vae_dir), hr),
            None)
    for label, stage, scale, step_list in ROWS:
        folder = args.work_dir / stage / "export"
        if scale != 4 and folder.is_dir() and not any(r["model"] == "bicubic" and r["scale"] == scale for r in rows):
            add("bicubic", scale, "-", 0, *mean_scores(bicubic_baseline(hr, scale), hr, scale))
        if not folder.is_dir():
            print(f"(missing {folder}: row '{label}' left out)", file=sys.stderr)
            continue
        model = YonosSRModel.load(folder).eval()
        for steps in step_list:
            scores, seconds, nfe = [], 0.0, 0
            for seed in range(args.seeds):
                started = time.perf_counter()
                sr, nfe = super_resolve(model, hr, scale, steps=steps, seed=seed)
                seconds += time.perf_counter() - started
                scores.append(mean_scores(sr, hr, scale))
            add(label, scale, steps, nfe, sum(s[0] for s in scores) / len(scores),
                sum(s[1] for s in scores) / len(scores), seconds / args.seeds)
    for label, stage in () if args.no_early else EARLY_ROWS:
        from zoo.train.checkpoint import list_checkpoints

        export = args.work_dir / stage / "export"
        if not export.is_dir():
            continue
        final = json.loads((export / "zoo.json").read_text())["training"]["steps"]
        for step, checkpoint in list_checkpoints(args.work_dir / stage):
            if step >= final:
                continue
            add(f"{label}, after {step} steps", 4, 1, 1,
                *one_step_x4_scores(load_at_checkpoint(export, checkpoint), hr, args.seeds))
    if args.seed_dir:
        seed_rows(args, hr, add)
    teacher = args.work_dir / "teacher_x2" / "export"
    if teacher.is_dir():
        psnr2, ssim2 = mean_scores(bicubic_baseline(hr, 2), hr, 2)
        add("(x2 reference) bicubic", 2, "-", 0, psnr2, ssim2)
        sr, nfe = super_resolve(YonosSRModel.load(teacher).eval(), hr, 2, steps=1)
        add("(x2 reference) x2 teacher", 2, 1, nfe, *mean_scores(sr, hr, 2))

    print(f"\nYONOS-SR testbed (texture={texture}), {len(hr)} held-out 32x32 images, Y-channel PSNR/SSIM "
          f"(border = scale), mean over {args.seeds} noise seed(s)\n")
    print("| model | scale | steps | NFE | PSNR (dB) | SSIM | ms/image |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        ssim_text = "-" if row["ssim_y"] is None else f"{row['ssim_y']:.4f}"
        ms = "-" if row["ms_per_image"] is None else f"{row['ms_per_image']:.2f}"
        print(f"| {row['model']} | x{row['scale']} | {row['steps']} | {row['nfe']} | {row['psnr_y']:.3f} | "
              f"{ssim_text} | {ms} |")
    if args.json:
        args.json.write_text(json.dumps({"images": len(hr), "seeds": args.seeds, "texture": texture, "rows": rows},
                                        indent=2))
    return 0


def one_step_x4_scores(model, hr, seeds: int) -> tuple[float, float]:
    """PSNR and SSIM of ``model`` at x4 and 1 step, averaged over noise seeds ``0..seeds-1``."""
    from zoo_plugins.yonos_sr.evaluate import mean_scores, super_resolve

    scores = [mean_scores(super_resolve(model, hr, 4, steps=1, seed=seed)[0], hr, 4) for seed in range(seeds)]
    return sum(s[0] for s in scores) / len(scores), sum(s[1] for s in scores) / len(scores)


SEED_PAIRS = (("500 steps", "direct_x4_500", "distill_x4_500"), ("1,000 steps", "direct_x4", "distill_x4"),
              ("1,000 steps + decoder fine-tuning", "decoder_direct_x4", "decoder_x4"))


def seed_rows(args, hr, add) -> None:
    """Rows of the same-init pair at every training seed found (see ``--seed-dir``), the means over seeds and the
    per-seed differences (printed)."""
    import statistics

    from zoo_plugins.yonos_sr.model import YonosSRModel

    def score(folder: Path):
        return one_step_x4_scores(YonosSRModel.load(folder).eval(), hr, args.seeds)

    for budget, direct, distill in SEED_PAIRS:
        results = {}
        for stage in (direct, distill):
            runs = {0: args.work_dir / stage / "export"}
            runs.update({int(path.parent.name.rsplit("_s", 1)[1]): path
                         for path in args.seed_dir.glob(f"{stage}_s*/export")})
            results[stage] = {seed: score(folder) for seed, folder in sorted(runs.items()) if folder.is_dir()}
            for seed, (psnr, ssim) in results[stage].items():
                add(f"{stage}, training seed {seed}", 4, 1, 1, psnr, ssim)
            if results[stage]:
                values = list(results[stage].values())
                add(f"{stage}, mean over {len(values)} training seeds", 4, 1, 1,
                    statistics.mean(v[0] for v in values), statistics.mean(v[1] for v in values))
        common = sorted(set(results[direct]) & set(results[distill]))
        differences = [(results[distill][s][0] - results[direct][s][0], results[distill][s][1] - results[direct][s][1])
                       for s in common]
        print(f"{budget}: distilled minus direct per training seed {common}: PSNR "
              f"{', '.join(f'{d[0]:+.3f}' for d in differences)} dB; SSIM "
              f"{', '.join(f'{d[1]:+.4f}' for d in differences)}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
