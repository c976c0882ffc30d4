"""Set5 x4 on real photos: bicubic, IMDN and the default YONOS-SR model, with a colour (chroma) check.

Issue #21 §4: the default YONOS-SR model shifts colours on ordinary photos (blue sky to green, pink to orange). This
script measures it and isolates where it comes from (docs/SR.md, "YONOS-SR on real images"). For each Set5 image
(the shipped MATLAB-bicubic x4 LR, ``../shared/data/imdn/Set5``) and their mean it prints PSNR-Y / SSIM-Y
(:func:`zoo.sr_metrics.score_sr`: float Y, border 4) and the chroma error, the mean |Cb| and |Cr| difference to the
HR image in 8-bit BT.601 YCbCr (:func:`zoo_plugins.yonos_sr.evaluate.chroma_error`, same crop and border), for:

``bicubic``
    MATLAB-style bicubic x4 of the LR (``zoo_plugins.imdn.degradation.imresize``), rounded to uint8;
``imdn``
    IMDN with the official ``IMDN_x4.pth`` (skipped when the file is absent);
``yonos_sr``
    the default YONOS-SR model (``pkg:zoo_plugins.yonos_sr/testbed``, or ``--model``), 1 step, seed 0, exactly what
    ``zoo upscale yonos_sr`` writes;
``yonos_sr BGR``
    the same model fed BGR and its output flipped back: if the model had been trained on BGR this row would be the
    better one (channel-order check);
``vae round trip``
    the HR image itself through the model's VAE (encode, posterior mode, decode; the fine-tuned decoder), no UNet:
    the colour shift of the VAE alone and a ceiling for any latent model with this VAE.

Then two probes of the colour path: **solid colours** (16x16 LR of one colour, and a 16x16 patch of it on the testbed's
grey background) through the full sampler and through the VAE alone, and the **testbed check** (held-out 32x32
testbed images, where the model was trained: bicubic, RGB and BGR), which shows the sampler's RGB order and [0, 1] ->
[-1, 1] range are the ones the model was trained with.

Command (about a minute on one CPU thread)::

    OMP_NUM_THREADS=1 .venv/bin/python scripts/bench_sr_set5.py --json set5_x4.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "imdn"
NAMES = ("baby", "bird", "butterfly", "head", "woman")
SCALE = 4
COLOURS = {"sky blue": (135, 206, 235), "pink": (255, 192, 203), "orange": (255, 165, 0), "forest green": (34, 139, 34),
           "grey": (128, 128, 128), "testbed red": (230, 31, 26), "testbed blue": (31, 64, 235)}
"""Solid-colour probes: the complaint's colours, a neutral grey and two of the testbed palette's colours."""
METRICS = ("psnr", "ssim", "cb", "cr")


def load_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB")).copy()


def bicubic_x4(lr: np.ndarray) -> np.ndarray:
    from zoo_plugins.imdn.degradation import imresize

    up = imresize(torch.from_numpy(lr).permute(2, 0, 1).double(), scale=SCALE)
    return up.permute(1, 2, 0).clamp(0, 255).round().to(torch.uint8).numpy()


def scores(sr: np.ndarray, hr: np.ndarray) -> dict[str, float]:
    from zoo.sr_metrics import score_sr
    from zoo_plugins.yonos_sr.evaluate import chroma_error

    return {**score_sr(sr, hr, SCALE), **chroma_error(sr, hr, SCALE)}


def run_sampler(sampler, lr: np.ndarray, bgr: bool = False) -> np.ndarray:
    source = lr[..., ::-1].copy() if bgr else lr
    out = np.asarray(sampler(source, seed=0).images[0].convert("RGB"))
    return out[..., ::-1].copy() if bgr else out


def set5_rows(set5: Path, imdn_weights: Path | None, yonos, model) -> dict[str, dict[str, dict[str, float]]]:
    from zoo.sr_metrics import modcrop
    from zoo_plugins.yonos_sr.evaluate import vae_round_trip

    imdn = None
    if imdn_weights is not None:
        from zoo.loading import load_sampler

        _, imdn = load_sampler("imdn", str(imdn_weights), device="cpu", dtype="fp32")
    rows: dict[str, dict[str, dict[str, float]]] = {}
    for name in NAMES:
        hr = modcrop(load_rgb(set5 / "HR" / f"{name}.bmp"), SCALE)
        lr = load_rgb(set5 / "LR_bicubic" / f"X{SCALE}" / f"{name}x{SCALE}.bmp")
        outputs = {"bicubic": bicubic_x4(lr)}
        if imdn is not None:
            outputs["imdn"] = np.asarray(imdn(lr).images[0].convert("RGB"))
        outputs["yonos_sr"] = run_sampler(yonos, lr)
        outputs["yonos_sr BGR"] = run_sampler(yonos, lr, bgr=True)
        outputs["vae round trip"] = vae_round_trip(model, hr)
        for row, image in outputs.items():
            rows.setdefault(row, {})[name] = scores(image, hr)
        print(f"  {name} done", file=sys.stderr)
    for per_image in rows.values():
        per_image["mean"] = {k: float(np.mean([per_image[n][k] for n in NAMES])) for k in METRICS}
    return rows


def colour_probes(yonos, model) -> dict[str, dict[str, list[int]]]:
    """Mean output colour of each probe: the whole image one colour, and a patch of it on the testbed's grey."""
    from zoo_plugins.yonos_sr.evaluate import vae_round_trip

    probes = {}
    for name, rgb in COLOURS.items():
        colour = np.array(rgb, dtype=np.uint8)
        solid = np.broadcast_to(colour, (16, 16, 3)).copy()
        framed = np.full((32, 32, 3), 128, dtype=np.uint8)  # LR: a 16x16 patch on grey
        framed[8:24, 8:24] = colour
        framed_hr = framed.repeat(SCALE, 0).repeat(SCALE, 1)  # its HR: the patch is 32:96
        centre = (slice(44, 84), slice(44, 84))  # away from the patch's edges
        probes[name] = {
            "input": list(rgb),
            "sr_solid": _mean_colour(run_sampler(yonos, solid)),
            "vae_solid": _mean_colour(vae_round_trip(model, np.broadcast_to(colour, (64, 64, 3)).copy())),
            "sr_patch_on_grey": _mean_colour(run_sampler(yonos, framed)[centre]),
            "vae_patch_on_grey": _mean_colour(vae_round_trip(model, framed_hr)[centre]),
        }
    return probes


def _mean_colour(image: np.ndarray) -> list[int]:
    return [int(round(v)) for v in image.reshape(-1, 3).astype(np.float64).mean(0)]


def testbed_check(yonos, count: int = 16) -> dict[str, dict[str, float]]:
    """Held-out testbed images (the training domain) through the sampler's uint8 path: RGB against BGR."""
    from zoo_plugins.yonos_sr import testbed
    from zoo_plugins.yonos_sr.evaluate import to_uint8
    from zoo_plugins.yonos_sr.model import degrade, upsample_lr

    hr = testbed.test_crops(count, 32)
    lr = degrade(hr, SCALE).clamp(0, 1)
    hr_u8, lr_u8 = to_uint8(hr), to_uint8(lr)
    bicubic = to_uint8(upsample_lr(torch.from_numpy(lr_u8).permute(0, 3, 1, 2).float() / 255, SCALE).clamp(0, 1))
    rows = {"bicubic": [], "yonos_sr": [], "yonos_sr BGR": []}
    for index in range(count):
        rows["bicubic"].append(scores(bicubic[index], hr_u8[index]))
        rows["yonos_sr"].append(scores(run_sampler(yonos, lr_u8[index]), hr_u8[index]))
        rows["yonos_sr BGR"].append(scores(run_sampler(yonos, lr_u8[index], bgr=True), hr_u8[index]))
    return {row: {k: float(np.mean([s[k] for s in values])) for k in METRICS} for row, values in rows.items()}


def print_table(rows: dict[str, dict[str, dict[str, float]]]) -> None:
    print("Set5 x4 (shipped MATLAB-bicubic LR), Y channel float, border 4; chroma = mean |ΔCb| / |ΔCr| (8-bit levels)")
    print(f"{'row':16s} {'image':10s} {'PSNR-Y':>8s} {'SSIM-Y':>7s} {'|ΔCb|':>7s} {'|ΔCr|':>7s}")
    for row, per_image in rows.items():
        for name, s in per_image.items():
            print(f"{row:16s} {name:10s} {s['psnr']:8.3f} {s['ssim']:7.4f} {s['cb']:7.2f} {s['cr']:7.2f}")
    print("\nmeans:")
    for row, per_image in rows.items():
        s = per_image["mean"]
        print(f"| {row} | {s['psnr']:.3f} | {s['ssim']:.4f} | {s['cb']:.2f} | {s['cr']:.2f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set5", type=Path, default=DATA / "Set5", help="Set5 folder with HR/ and LR_bicubic/X4/")
    parser.add_argument("--imdn", type=Path, default=DATA / "checkpoints" / "IMDN_x4.pth",
                        help="official IMDN x4 checkpoint (row skipped when absent)")
    parser.add_argument("--model", default=None, help="YONOS-SR model (default: the method's default model)")
    parser.add_argument("--json", type=Path, default=None, help="write every number here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    from zoo.loading import load_sampler

    if not (args.set5 / "HR").is_dir():
        print(f"Error: no Set5 at {args.set5} (expected HR/ and LR_bicubic/X4/; see docs/SR.md)", file=sys.stderr)
        return 1
    imdn_weights = args.imdn if args.imdn.is_file() else None
    if imdn_weights is None:
        print(f"note: {args.imdn} not found; no IMDN row", file=sys.stderr)
    started = time.perf_counter()
    _, yonos = load_sampler("yonos_sr", args.model, device="cpu", dtype="fp32")
    model = yonos.model
    rows = set5_rows(args.set5, imdn_weights, yonos, model)
    probes = colour_probes(yonos, model)
    testbed = testbed_check(yonos)
    print_table(rows)
    print("\nsolid colours (mean RGB out): whole 16x16 LR one colour | a 16x16 patch on the testbed grey")
    print(f"{'colour':14s} {'input':>15s} {'SR':>15s} {'VAE':>15s} | {'SR patch':>15s} {'VAE patch':>15s}")
    for name, p in probes.items():
        print(f"{name:14s} {str(tuple(p['input'])):>15s} {str(tuple(p['sr_solid'])):>15s} "
              f"{str(tuple(p['vae_solid'])):>15s} | {str(tuple(p['sr_patch_on_grey'])):>15s} "
              f"{str(tuple(p['vae_patch_on_grey'])):>15s}")
    print("\ntestbed check (16 held-out 32x32 testbed images, LR 8x8, the training domain):")
    for row, s in testbed.items():
        print(f"| {row} | {s['psnr']:.3f} | {s['ssim']:.4f} | {s['cb']:.2f} | {s['cr']:.2f} |")
    seconds = time.perf_counter() - started
    print(f"\n{seconds:.0f} s", file=sys.stderr)
    if args.json:
        report = {"set5": rows, "colour_probes": probes, "testbed_check": testbed, "scale": SCALE,
                  "protocol": {"psnr_ssim": "Y (BT.601) float, border 4", "chroma": "mean |dCb|, |dCr|, 8-bit BT.601, "
                               "border 4"},
                  "yonos_model": getattr(yonos, "ref", args.model), "imdn_weights": str(imdn_weights or ""),
                  "seconds": round(seconds, 1), "torch": torch.__version__, "machine": platform.machine()}
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
