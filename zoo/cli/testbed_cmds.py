"""``zoo eval``: score testbed images (colour and shape accuracy, diversity, Fréchet distance) and write JSON."""

from __future__ import annotations

import json
from pathlib import Path

import click


def _image_files(paths: tuple[Path, ...]) -> list[Path]:
    from zoo.errors import InputError

    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix.lower() == ".png")
        elif path.is_file():
            files.append(path)
        else:
            raise InputError(f"No such file or folder: {path}")
    if not files:
        raise InputError(f"No PNG images found in {', '.join(map(str, paths))}; pass images written by 'zoo run'")
    return files


def _prompt_of(path: Path, image, fallback: str | None) -> str:
    from zoo.errors import InputError
    from zoo.sampling import PNG_METADATA_KEY

    raw = (getattr(image, "text", None) or {}).get(PNG_METADATA_KEY)
    prompt = json.loads(raw).get("prompt") if raw else None
    if isinstance(prompt, list):  # a batch with several prompts: pick this image's
        index = json.loads(raw).get("batch_index", 0)
        prompt = prompt[index] if index < len(prompt) else None
    prompt = prompt or fallback
    if not prompt:
        raise InputError(f"{path} carries no prompt in its metadata; pass one with --prompt")
    return prompt


@click.command("eval")
@click.argument("images", nargs=-1, type=click.Path(path_type=Path))
@click.option("-p", "--prompt", default=None, help="Prompt for images whose PNG metadata has none.")
@click.option("--real", type=int, default=0, help="Instead of IMAGES, score N real dataset images (a sanity check).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the report to this JSON file.")
def eval_command(images, prompt, real, json_path):
    """Score testbed images against their prompts (read from the PNG metadata 'zoo run' writes).

    Prints colour accuracy, shape accuracy, diversity and Fréchet distance (definitions: docs/TESTBED.md).
    """
    from PIL import Image

    from zoo.errors import InputError
    from zoo.testbed.evaluator import Evaluator

    if real:
        from zoo.testbed.data import ShapesDataset, caption_for

        batch = ShapesDataset(seed=0).batch(real)
        arrays = batch.images
        prompts = [caption_for(a.shape, a.color) for a in batch.attributes]
    else:
        if not images:
            raise InputError("Give image files or folders to score (or --real N)")
        arrays, prompts = [], []
        for path in _image_files(images):
            try:
                with Image.open(path) as image:
                    prompts.append(_prompt_of(path, image, prompt))
                    arrays.append(image.convert("RGB").copy())
            except OSError as exc:
                raise InputError(f"Cannot read image {path}: {exc}") from None
    report = Evaluator().evaluate(arrays, prompts).to_dict()

    def fmt(value):
        return "-" if value is None else f"{value:.3f}"

    click.echo(f"images {report['n_images']}  color_acc {fmt(report['color_acc'])}  "
               f"shape_acc {fmt(report['shape_acc'])}  diversity {fmt(report['diversity'])}  fd {fmt(report['fd'])}")
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, indent=2) + "\n")
        click.echo(str(json_path))


COMMANDS = [eval_command]
