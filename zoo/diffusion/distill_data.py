"""Data-free distillation helpers shared by the score-distillation trainers (SwiftBrush, SNOOPI, Phased DMD):
prompt streams, the teacher's components, and small fp16 UNet exports.

Score distillation needs prompts only (SwiftBrush, arXiv 2312.05239 §3: "image-free"). Prompts come from the testbed's
caption distribution (``"testbed"``) or a text file with one prompt per line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from zoo.errors import ConfigError


class PromptSource:
    """Draws prompts: ``"testbed"`` captions (shapes and colours world) or the lines of a text file."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.lines: list[str] | None = None
        if spec != "testbed":
            path = Path(spec)
            if not path.is_file():
                raise ConfigError(f"prompts={spec!r} is neither 'testbed' nor a text file; give a file with one "
                                  f"prompt per line")
            self.lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
            if not self.lines:
                raise ConfigError(f"The prompt file {path} is empty; put one prompt per line")

    def sample(self, rng: np.random.Generator, n: int) -> list[str]:
        if self.lines is not None:
            return [self.lines[int(i)] for i in rng.integers(len(self.lines), size=n)]
        from zoo.testbed.data import sample_attributes, sample_captions

        return sample_captions(rng, sample_attributes(rng, n))


def prompt_batches(source: PromptSource, batch_size: int, seed: int) -> Iterator[dict]:
    """An endless stream of ``{"prompts": [...]}`` micro-batches that depends only on ``seed``."""
    rng = np.random.default_rng(seed)
    while True:
        yield {"prompts": source.sample(rng, batch_size)}


def testbed_image_batches(seed: int, data_seed: int, batch_size: int) -> Iterator[dict]:
    """Endless ``{"images": [B, 3, 32, 32] in [0, 1], "captions": [...]}`` micro-batches of the testbed's shapes data,
    deterministic in ``(seed, data_seed)`` (for trainers that learn from forward-noised data)."""
    from zoo.testbed.data import ShapesDataset

    data = ShapesDataset(int(seed) + int(data_seed) * 7919)
    while True:
        batch = data.batch(batch_size)
        yield {"images": torch.from_numpy(batch.images).permute(0, 3, 1, 2).contiguous(),
               "captions": list(batch.captions)}


def load_components(ref: str, device) -> "SDComponents":  # noqa: F821
    """The teacher's :class:`zoo.t2i.SDComponents` (fp32, frozen) from a model reference."""
    from zoo.hub import resolve_model
    from zoo.t2i import SDComponents

    return SDComponents.from_folder(resolve_model(str(ref)).path, device=device, dtype=torch.float32)


class PromptEncoder:
    """Encodes prompts with the frozen text encoder; caches the empty prompt (the CFG null condition)."""

    def __init__(self, components) -> None:
        self.components = components
        self._null = components.encode_prompt([""])

    def __call__(self, prompts: list[str]) -> torch.Tensor:
        return self.components.encode_prompt(prompts)

    def null(self, batch: int) -> torch.Tensor:
        return self._null.expand(batch, -1, -1)


def drop_captions(cond: torch.Tensor, null: torch.Tensor, probability: float) -> torch.Tensor:
    """Replace each row of ``cond`` by ``null`` with ``probability`` (CFG caption dropout; global torch RNG)."""
    if probability <= 0:
        return cond
    drop = torch.rand(cond.shape[0]) < probability
    mask = drop.view(-1, 1, 1).to(cond.device)
    return torch.where(mask, null.to(cond), cond)


def save_unet(unet: torch.nn.Module, folder: Path, dtype: torch.dtype = torch.float16) -> str:
    """Save a copy of ``unet`` in ``dtype`` (fp16 by default: testbed students stay ~1-3 MB) as a diffusers folder."""
    import copy

    from zoo.train.checkpoint import unwrap

    clone = copy.deepcopy(unwrap(unet)).to(dtype)
    clone.save_pretrained(str(folder), safe_serialization=True)
    return f"{Path(folder).name}/"


def testbed_validation(generate, components, encoder, per_prompt: int = 8, seed: int = 0,
                       evaluator=None) -> dict[str, float]:
    """Colour / shape accuracy, diversity (with ``per_prompt >= 2``) and Fréchet distance of ``generate(cond) ->
    latents`` on the 12 colour-shape prompts (``per_prompt`` images each), scored by :class:`zoo.testbed.evaluator.Evaluator`. Uses the global torch
    RNG seeded with ``seed`` (the runtime saves and restores it around validation)."""
    from zoo.testbed.evaluator import Evaluator
    from zoo.testbed.prompts import FULL_PROMPTS

    evaluator = evaluator or Evaluator()
    torch.manual_seed(seed)
    images, prompts = [], []
    with torch.no_grad():
        for prompt in FULL_PROMPTS:
            latents = generate(encoder([prompt] * per_prompt))
            pixels = components.decode(latents).permute(0, 2, 3, 1).numpy()
            images.append(pixels)
            prompts += [prompt] * per_prompt
    report = evaluator.evaluate(np.concatenate(images), prompts)
    metrics = {"color_acc": float(report.color_acc), "shape_acc": float(report.shape_acc), "fd": float(report.fd)}
    if report.diversity is not None:  # needs at least 2 images of a prompt (per_prompt >= 2)
        metrics["diversity"] = float(report.diversity)
    return metrics
