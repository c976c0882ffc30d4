"""``zoo run``: generate images with any registered text-to-image method (or the embedded default model)."""

from __future__ import annotations

from pathlib import Path

import click

from zoo.cli.options import parse_key_values, tqdm_progress


@click.command("run")
@click.argument("name", required=False)
@click.option("-p", "--prompt", required=True, help="Text prompt.")
@click.option("-n", "--negative-prompt", default=None, help="Negative prompt (CFG branch, or NASA where supported).")
@click.option("--steps", type=int, default=None, help="Sampling steps (default: the model's recommended setting).")
@click.option("--guidance-scale", "-g", type=float, default=None, help="CFG scale (diffusers convention; <=1 = off).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--height", type=int, default=None)
@click.option("--width", type=int, default=None)
@click.option("--batch-size", "-b", type=int, default=1, show_default=True)
@click.option("--model", "-m", default=None, help="hf-hub:org/repo@rev, org/repo, a local folder or pkg:package/dir.")
@click.option("--preset", default=None, help="A named recipe of the method (see 'zoo info METHOD').")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--dtype", default="auto", show_default=True, help="auto (fp32 on CPU, fp16 on CUDA), fp32, fp16, bf16.")
@click.option("--attention", type=click.Choice(["auto", "sdpa", "xformers"]), default="auto", show_default=True)
@click.option("--set", "options", multiple=True, metavar="KEY=VALUE", help="Method option, e.g. --set eta=0.3.")
@click.option("--max-pixels", type=click.IntRange(min=1), default=None,
              help="Largest image (width x height) to accept (default 4,194,304 = 2048x2048; env ZOO_MAX_PIXELS).")
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Output PNG (default: outputs/<method>-<seed>.png); a batch writes <stem>-<i>.png.")
def run_command(name, prompt, negative_prompt, steps, guidance_scale, seed, height, width, batch_size, model, preset,
                device, dtype, attention, options, max_pixels, out):
    """Generate images. NAME is a method (see 'zoo list') or a model reference; both may be omitted."""
    from zoo.loading import load_sampler, looks_like_model_ref
    from zoo.registry import get_registry
    from zoo.errors import InputError
    from zoo.sampling import check_writable, save_image

    check_writable(out.parent if out is not None else Path("outputs"))  # before any model is loaded
    if max_pixels is not None:
        import os

        from zoo.limits import MAX_PIXELS_ENV

        os.environ[MAX_PIXELS_ENV] = str(max_pixels)
    method = name
    if name and name not in get_registry() and looks_like_model_ref(name):
        if model:
            raise InputError(f"Give the model once: either as NAME ({name}) or with --model ({model})")
        method, model = None, name
    extra = parse_key_values(options)
    spec, sampler = load_sampler(method, model, device=device, dtype=dtype, preset=preset, attention=attention,
                                 task="text-to-image")
    with tqdm_progress("sampling") as progress:
        result = sampler(prompt, negative_prompt=negative_prompt, steps=steps, guidance_scale=guidance_scale,
                         seed=seed, height=height, width=width, batch_size=batch_size, progress=progress, **extra)
    method_name = result.metadata.get("method", spec.name if spec else "base")
    out = out or Path("outputs") / f"{method_name}-{seed}.png"
    paths = [out] if len(result.images) == 1 else [out.with_name(f"{out.stem}-{i}{out.suffix or '.png'}")
                                                    for i in range(len(result.images))]
    for index, (image, path) in enumerate(zip(result.images, paths)):
        save_image(image, path, {**result.metadata, "batch_index": index})
        click.echo(str(path))
    click.echo(f"{method_name}: {result.nfe} network evaluations per image, "
               f"{result.metadata.get('seconds_per_image', 0) * 1000:.0f} ms per image", err=True)


COMMANDS = [run_command]
