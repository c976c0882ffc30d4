"""Score any text-to-image sampler on the testbed, the way ``scripts/bench_quality.py`` scores the built-in methods.

``score_sampler(sampler)`` samples the fixed benchmark prompts (:mod:`zoo.testbed.prompts`: 19 prompts x 16 seeds,
the same initial noise for every sampler) and returns a :class:`QualityRow`: colour and shape accuracy, diversity
and Fréchet distance from :class:`zoo.testbed.evaluator.Evaluator`, the UNet calls per image (NFE), the time per
image, and the per-image verdicts. Two rows scored on the same prompts and noise compare image by image
(:meth:`QualityRow.compare`): wins, losses and the exact McNemar p-value of each accuracy difference.

A plugin author shows that a method works the way the built-ins do with::

    from zoo.sdk import score_sampler, DDIMSampler
    student = score_sampler(my_sampler, name="mine")
    teacher = score_sampler(DDIMSampler.from_model(), name="teacher 2 steps", steps=2)
    print(student.compare(teacher))
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

METRICS = ("color_acc", "shape_acc", "diversity", "fd")


@dataclass
class Comparison:
    """``row`` against ``reference`` on the same images: metric differences and the paired accuracy tests."""

    row: str
    reference: str
    d_color: float
    d_shape: float
    d_fd: float
    color_pairs: tuple[int, int, float]
    """``(wins, losses, p)``: images the row gets right and the reference wrong, the reverse, exact McNemar p."""
    shape_pairs: tuple[int, int, float]

    @property
    def beats(self) -> bool:
        """Colour and shape not lower (both at the ceiling counts as matched) and FD strictly lower."""
        return self.d_color >= 0 and self.d_shape >= 0 and self.d_fd < 0

    def __str__(self) -> str:
        def pairs(p):
            return f"+{p[0]}/-{p[1]} p={p[2]:.2f}"

        return (f"{self.row} vs {self.reference}: colour {self.d_color:+.3f} ({pairs(self.color_pairs)}), "
                f"shape {self.d_shape:+.3f} ({pairs(self.shape_pairs)}), FD {self.d_fd:+.2f}, "
                f"{'beats' if self.beats else 'does not beat'} it")


@dataclass
class QualityRow:
    """One sampler's scores on the testbed benchmark (see the module docstring)."""

    method: str
    steps: int | None
    nfe: int
    color_acc: float | None
    shape_acc: float | None
    diversity: float | None
    fd: float | None
    ms_per_image: float
    n_images: int
    color_hits: list[bool | None] = field(default_factory=list, repr=False)
    shape_hits: list[bool | None] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The row as ``bench_quality.py`` keeps it (per-image verdicts under ``hits``)."""
        return {"method": self.method, "steps": self.steps, "nfe": self.nfe, "color_acc": self.color_acc,
                "shape_acc": self.shape_acc, "diversity": self.diversity, "fd": self.fd,
                "ms_per_image": self.ms_per_image, "n_images": self.n_images,
                "hits": {"color": self.color_hits, "shape": self.shape_hits}}

    def compare(self, reference: "QualityRow") -> Comparison:
        """This row against ``reference``, scored on the same prompts and noise (same number of images)."""
        return compare_rows(self.to_dict(), reference.to_dict())

    def __str__(self) -> str:
        def cell(value, digits=3):
            return "-" if value is None else f"{value:.{digits}f}"

        return (f"{self.method}: NFE {self.nfe}, colour {cell(self.color_acc)}, shape {cell(self.shape_acc)}, "
                f"diversity {cell(self.diversity)}, FD {cell(self.fd, 2)}, {self.ms_per_image:.1f} ms/image "
                f"({self.n_images} images)")


def compare_rows(row: dict[str, Any], reference: dict[str, Any]) -> Comparison:
    """:class:`Comparison` of two row dicts (:meth:`QualityRow.to_dict`) holding per-image ``hits``."""
    from zoo.testbed.evaluator import paired_counts

    hits, ref_hits = row.get("hits") or {}, reference.get("hits") or {}
    pairs = {}
    for attribute in ("color", "shape"):
        a, b = hits.get(attribute), ref_hits.get(attribute)
        if not a or not b or len(a) != len(b):
            raise ValueError(f"{row['method']} and {reference['method']} were not scored on the same images; score "
                             f"both with the same prompts, noise sets and batch size")
        pairs[attribute] = paired_counts(a, b)
    return Comparison(row["method"], reference["method"], row["color_acc"] - reference["color_acc"],
                      row["shape_acc"] - reference["shape_acc"], row["fd"] - reference["fd"],
                      pairs["color"], pairs["shape"])


def score_sampler(sampler, name: str | None = None, *, prompts: Sequence[str] | None = None, noise_sets: int = 1,
                  validation: bool = False, batch_size: int = 16, evaluator=None, progress: bool = True,
                  **call_options: Any) -> QualityRow:
    """Sample the benchmark prompts with ``sampler`` and score the images (:class:`QualityRow`).

    ``sampler`` is any text-to-image sampler (``sampler(prompt, seed=, batch_size=, **call_options) ->
    SampleResult``), e.g. ``spec.load("sampler")(model)``. ``prompts``: a subset of
    :data:`~zoo.testbed.prompts.BENCHMARK_PROMPTS` for quick checks (default: all 19); ``noise_sets`` K repeats them
    with K disjoint noise sets; ``validation`` draws the validation noise (choose recipes on it, report on the
    benchmark's). ``call_options`` go to every call (``steps=2``, ``guidance_scale=3.0``, ...). The time per image is
    the median over batches of one call's wall time divided by ``batch_size``, after one warm-up call.
    """
    from tqdm import tqdm

    from zoo.testbed.evaluator import Evaluator
    from zoo.testbed.prompts import BENCHMARK_PROMPTS, benchmark_jobs

    jobs = benchmark_jobs(tuple(prompts) if prompts else BENCHMARK_PROMPTS, noise_sets, validation=validation)
    evaluator = evaluator or Evaluator()
    name = name or getattr(sampler, "method", None) or type(sampler).__name__
    sampler(jobs[0][0], seed=jobs[0][1], batch_size=batch_size, **call_options)  # warm-up
    images, labels, seconds, nfes, steps = [], [], [], set(), set()
    for prompt, seed in tqdm(jobs, desc=name, mininterval=5, file=sys.stderr, disable=not progress):
        started = time.perf_counter()
        result = sampler(prompt, seed=seed, batch_size=batch_size, **call_options)
        seconds.append(time.perf_counter() - started)
        images += list(result.images)
        labels += [prompt] * len(result.images)
        nfes.add(int(result.nfe))
        steps.add(result.metadata.get("steps"))
    report = evaluator.evaluate(images, labels)
    return QualityRow(method=name, steps=max(steps) if None not in steps else None, nfe=max(nfes),
                      color_acc=report.color_acc, shape_acc=report.shape_acc, diversity=report.diversity,
                      fd=report.fd, ms_per_image=1000.0 * statistics.median(seconds) / batch_size,
                      n_images=report.n_images, color_hits=report.color_hits, shape_hits=report.shape_hits)
