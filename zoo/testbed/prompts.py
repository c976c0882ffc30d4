"""The fixed benchmark prompt set of the testbed (used by ``scripts/bench_quality.py`` and the tests).

Every colour-shape pair (12 prompts), every shape alone (3) and every colour alone (4): 19 prompts. Each is sampled
with :data:`SEEDS_PER_PROMPT` seeds as one batch whose initial noise comes from the prompt's seed
``BASE_SEED + index``, so every method sees exactly the same noise for the same prompt.
"""

from __future__ import annotations

from zoo.testbed.data import COLORS, SHAPES, caption_for

SEEDS_PER_PROMPT = 16
BASE_SEED = 1000
VALIDATION_SEED = 5000
"""Validation noise starts here (``VALIDATION_SEED + 100 k + index``): pick recipes and checkpoints on it, report
on the benchmark's noise, so that a reported number was never used to choose the model."""

FULL_PROMPTS = tuple(caption_for(shape, color) for color in COLORS for shape in SHAPES)
SHAPE_PROMPTS = tuple(caption_for(shape, None) for shape in SHAPES)
COLOR_PROMPTS = tuple(caption_for(None, color) for color in COLORS)
BENCHMARK_PROMPTS = FULL_PROMPTS + SHAPE_PROMPTS + COLOR_PROMPTS


NOISE_SET_STRIDE = 100


def benchmark_jobs(prompts: tuple[str, ...] = BENCHMARK_PROMPTS, noise_sets: int = 1,
                   validation: bool = False) -> list[tuple[str, int]]:
    """``(prompt, seed)`` per batch: the seed of a prompt's batch is ``BASE_SEED + its index``. With ``noise_sets`` K
    > 1 the prompts are repeated K times with disjoint seeds ``BASE_SEED + 100 k + index`` (k = 0 is the standard
    set), K x 16 images per prompt: more images where a comparison is within a few images. ``validation`` uses
    :data:`VALIDATION_SEED` instead of ``BASE_SEED`` (noise the benchmark never sees)."""
    if len(prompts) > NOISE_SET_STRIDE:
        raise ValueError(f"at most {NOISE_SET_STRIDE} benchmark prompts")
    most = (VALIDATION_SEED - BASE_SEED) // NOISE_SET_STRIDE
    if not 1 <= noise_sets <= most:
        raise ValueError(f"noise_sets={noise_sets}: use 1..{most} (more would reach the validation seeds)")
    base = VALIDATION_SEED if validation else BASE_SEED
    return [(prompt, base + NOISE_SET_STRIDE * k + index)
            for k in range(noise_sets) for index, prompt in enumerate(prompts)]
