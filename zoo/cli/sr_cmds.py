"""``zoo upscale`` and ``zoo eval-sr``: run and evaluate any super-resolution method through its sampler.

No method logic here: the method's sampler (``sampler(image, scale=None, tile=None, progress=None)``) does the work;
metrics come from :mod:`zoo.sr_metrics`, image files from :mod:`zoo.images`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import click

from zoo.cli.options import parse_key_values, tqdm_progress

_MODEL_HELP = "Weights: a file or folder (e.g. the official IMDN checkpoints/), hf-hub:org/repo@rev or org/repo."
_TILE_HELP = "Tile side in input pixels (0 = never tile)."


def _sr_sampler(method: str, model: str | None, preset: str | None, device: str, dtype: str,
                options: dict):
    """(spec, sampler) for a super-resolution method; local weight files are accepted as --model."""
    from zoo.errors import InputError
    from zoo.loading import load_sampler
    from zoo.registry import get_method
    from zoo.spec import ResolvedModel

    spec = get_method(method)
    if spec.task != "super-resolution":
        raise InputError(f"{spec.name} is a {spec.task} method; use: zoo run {spec.name} --prompt ...")
    resolved = None
    if model is not None:
        path = Path(model).expanduser()
        resolved = ResolvedModel(path=path.absolute(), ref=model) if path.exists() else model
    return load_sampler(spec.name, resolved, device=device, dtype=dtype, preset=preset, task="super-resolution",
                        **options)


def _sampler_options(options: tuple[str, ...], **named) -> dict:
    extra = parse_key_values(options)
    extra.update({k: v for k, v in named.items() if v is not None})
    return extra


def _common_options(function):
    function = click.option("--set", "options", multiple=True, metavar="KEY=VALUE",
                            help="Method option, e.g. --set variant=imdn_as.")(function)
    function = click.option("--dtype", default="auto", show_default=True,
                            help="auto (fp32 on CPU, fp16 on CUDA), fp32, fp16, bf16.")(function)
    function = click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")(function)
    function = click.option("--preset", default=None, help="A named checkpoint of the method (see 'zoo info').")(function)
    function = click.option("--model", "-m", default=None, help=_MODEL_HELP)(function)
    return function


@click.command("upscale")
@click.argument("method")
@click.argument("input_path", metavar="INPUT", type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--out", required=True, type=click.Path(path_type=Path),
              help="Output .png (a folder when INPUT is a folder).")
@click.option("--scale", type=float, default=None, help="Upscaling factor (default: the weights' own scale).")
@click.option("--tile", type=int, default=None, help=f"{_TILE_HELP} Default: automatic for large images.")
@click.option("--overlap", type=int, default=None, help="Context pixels around each tile (method default if unset).")
@_common_options
def upscale_command(method, input_path, out, scale, tile, overlap, model, preset, device, dtype, options):
    """Upscale INPUT (an image file, or every image in a folder) with super-resolution METHOD."""
    from tqdm.auto import tqdm

    from zoo.errors import InputError, ZooError
    from zoo.images import list_images, load_image
    from zoo.sampling import check_writable, save_image

    check_writable(out if input_path.is_dir() else out.parent)  # before any model is loaded
    spec, sampler = _sr_sampler(method, model, preset, device, dtype, _sampler_options(options, overlap=overlap))
    if input_path.is_dir():
        files = list_images(input_path)
        if not files:
            raise InputError(f"No images in {input_path}")
        if out.suffix.lower() == ".png" or out.is_file():
            raise InputError(f"INPUT is a folder, so -o must be a folder too (got {out})")
        targets = [(file, out / f"{file.stem}.png") for file in files]
    else:
        if out.suffix.lower() != ".png":
            raise InputError(f"Output must be a .png file (the settings are stored in its text chunks), got {out}")
        targets = [(input_path, out)]
    bar = tqdm(targets, desc=f"{spec.name} upscale", unit="image", disable=len(targets) == 1 or None)
    failed = []
    for source, target in bar:
        try:
            rgb = load_image(source)
        except ZooError as exc:
            if len(targets) == 1:
                raise
            failed.append(source.name)  # a folder run goes on with the other images and fails at the end
            bar.write(f"skipped {source.name}: {exc}")
            continue
        with tqdm_progress("tiles") as progress:
            result = sampler(rgb, scale=scale, tile=tile, progress=progress)
        save_image(result.images[0], target, {**result.metadata, "source": source.name})
        width, height = result.images[0].size
        bar.write(f"{target} ({width}x{height})") if len(targets) > 1 else click.echo(f"{target} ({width}x{height})")
    if failed:
        raise InputError(f"{len(failed)} of {len(targets)} images could not be read and were skipped "
                         f"({', '.join(failed[:5])}{', ...' if len(failed) > 5 else ''}); the others are in {out}")


@click.command("eval-sr")
@click.argument("method")
@click.option("--lr-dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder of LR inputs (e.g. Set5/LR_bicubic/X4).")
@click.option("--hr-dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder of ground-truth HR images, paired by name (babyx4.bmp ↔ baby.bmp).")
@click.option("--scale", required=True, type=float, help="Upscaling factor.")
@click.option("--tile", type=int, default=0, show_default=True, help=f"{_TILE_HELP} 0 matches published tables.")
@click.option("--border", type=int, default=None, help="Pixels shaved on each side (default: the scale).")
@click.option("--rgb", "rgb_channels", is_flag=True, help="Compare RGB instead of the Y channel.")
@click.option("--round-y", is_flag=True, help="Round Y to uint8 like the official IMDN Python script "
                                              "(default: float Y, as MATLAB and the papers' tables).")
@click.option("--save-dir", type=click.Path(file_okay=False, path_type=Path), help="Also save the SR images here.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the per-image and mean scores as JSON to this file ('-' for stdout).")
@_common_options
def eval_sr_command(method, lr_dir, hr_dir, scale, tile, border, rgb_channels, round_y, save_dir, json_path, model,
                    preset, device, dtype, options):
    """PSNR / SSIM of super-resolution METHOD on an LR/HR folder pair (Y channel, border = scale by default)."""
    import numpy as np
    from tqdm.auto import tqdm

    from zoo.images import load_image, paired_images, to_uint8
    from zoo.sampling import save_image
    from zoo.sr_metrics import score_sr

    spec, sampler = _sr_sampler(method, model, preset, device, dtype, _sampler_options(options))
    pairs = paired_images(lr_dir, hr_dir, scale)
    rows, metadata = [], {}
    for lr_path, hr_path in tqdm(pairs, desc=f"eval {spec.name} x{scale:g}", unit="image", disable=None):
        result = sampler(load_image(lr_path), scale=scale, tile=tile)
        metadata = result.metadata
        sr = np.asarray(result.images[0].convert("RGB"))
        hr = to_uint8(load_image(hr_path))  # exact for 8-bit files
        scores = score_sr(sr, hr, scale, border=border, y_channel=not rgb_channels, round_y=round_y)
        rows.append({"name": hr_path.stem, "lr": lr_path.name, "hr": hr_path.name, **scores})
        if save_dir is not None:
            save_image(result.images[0], save_dir / f"{hr_path.stem}.png", {**metadata, "source": lr_path.name})
    mean = {key: sum(r[key] for r in rows) / len(rows) for key in ("psnr", "ssim")}
    report = {
        "method": spec.name, "model": model, "preset": preset, "scale": scale,
        "weights": metadata.get("weights"), "variant": metadata.get("variant"),
        "lr_dir": str(lr_dir), "hr_dir": str(hr_dir), "count": len(rows),
        "protocol": {"channel": "rgb" if rgb_channels else "y", "y": "rounded" if round_y else "float",
                     "border": math.ceil(scale) if border is None else border, "tile": tile,
                     "ssim": "gaussian 11x11 sigma 1.5, K1 0.01, K2 0.03, L 255"},
        "mean": mean, "images": rows,
    }
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        click.echo(f"{r['name']:<{width}}  {r['psnr']:8.4f} dB  {r['ssim']:.4f}")
    click.echo(f"{'mean':<{width}}  {mean['psnr']:8.4f} dB  {mean['ssim']:.4f}  ({len(rows)} images, "
               f"x{scale:g}, {report['protocol']['channel'].upper()}, border {report['protocol']['border']})")
    if json_path is not None:
        text = json.dumps(report, indent=2)
        if str(json_path) == "-":
            click.echo(text)
        else:
            json_path.parent.mkdir(parents=True, exist_ok=True)
            json_path.write_text(text + "\n")


COMMANDS = [upscale_command, eval_sr_command]
