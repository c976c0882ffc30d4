"""Quality benchmark on the testbed: the teacher and every registered text-to-image method's testbed student.

Each row samples the fixed prompt set of :mod:`zoo.testbed.prompts` (19 prompts x 16 seeds = 304 images, one batch of
16 per prompt, the same initial noise for every row; ``--noise-sets K`` repeats it with K disjoint noise sets) and
scores the images with :class:`zoo.testbed.evaluator.Evaluator`:

- ``color_acc`` / ``shape_acc``: fraction of images showing the colour / shape their prompt names;
- ``diversity``: spread of position and size per prompt relative to real data (1.0 = like the data);
- ``fd``: Fréchet distance to real images in the evaluator classifier's feature space (lower is better);
- ``ms_per_image``: median over prompts of the wall time of one batch-16 call divided by 16 (after one warm-up call).

Rows: the teacher with DDIM at 25 steps with CFG (its recommended setting), at 1, 2, 4 and 8 steps with the same
CFG scale (2 NFE per step) and at 1 and 4 steps without CFG (1 NFE per step): the baselines a distilled student must
beat. Then every method from ``zoo.registry.list_methods(task="text-to-image")`` whose ``MethodSpec.default_model`` is
set (or that ``--model METHOD=REF`` names), run with ``spec.load("sampler")(model)`` and the recommended settings of
the model's ``zoo.json``; a method named in ``--method-steps`` (default ``hyper_sd=1,2,4,8``) gets one row per step count, and a model whose ``zoo.json``
lists ``variants`` (sub-folders that are models of their own, such as Hyper-SD's N-step LoRAs) one more row per
variant at its recommended settings.

A second table compares every method row with the teacher rows at the same NFE and at the same number of steps:
the differences in colour, shape and FD, whether the student beats that row (colour and shape not lower, where
1.000 against 1.000 counts as matched, and FD lower), and, since every row samples the same prompts and noise, the
image-by-image comparison behind each accuracy difference: ``+wins/-losses`` (images the student gets right and the
teacher row wrong, and the reverse) with the exact McNemar p-value. Near 1.000 a difference of a few tenths of a
point rests on a handful of such images; a large p says it cannot be told from chance.

Usage::

    OMP_NUM_THREADS=1 python scripts/bench_quality.py --threads 1 --json runs/bench_quality.json
    python scripts/bench_quality.py --only teacher      # just the teacher rows
    python scripts/bench_quality.py --only swiftbrush   # just one method
    python scripts/bench_quality.py --method progressive --prompts 4   # a third-party method and the teacher rows
    python scripts/bench_quality.py --only teacher hyper_sd --method-steps hyper_sd=1,2,4,8
    # choosing between training runs: validation noise, never the benchmark's
    python scripts/bench_quality.py --validation --noise-sets 10 --only teacher hyper_sd --model hyper_sd=runs/x/export
    # also draw docs/img/quality_vs_nfe.png and docs/img/samples_grid.png (scripts/plot_quality.py)
    OMP_NUM_THREADS=1 python scripts/bench_quality.py --threads 1 --json runs/bench_quality.json --plot docs/img

Timing on a shared CPU is noisy; compare ``ms_per_image`` only between rows of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

COLUMNS = ("method", "steps", "nfe", "color_acc", "shape_acc", "diversity", "fd", "ms_per_image")


def run_rows(name: str, sampler, evaluator, sampling: dict, **call_options) -> dict:
    """Score ``sampler`` with :func:`zoo.testbed.quality.score_sampler` (the same call a plugin author uses). The
    row's ``steps`` is the sampler's own record of the steps it ran (its metadata), ``nfe`` the UNet evaluations per
    image."""
    from zoo.testbed.quality import score_sampler

    return score_sampler(sampler, name, evaluator=evaluator, **sampling, **call_options).to_dict()


def misses(row: dict) -> dict:
    """What the JSON keeps of a row's per-image hits: the indices of the images it gets wrong, and how many images each
    attribute scored. Images are numbered in sampling order: the jobs of ``benchmark_jobs`` (noise set by noise set,
    one batch per prompt), then the images within each batch."""
    hits = row.get("hits", {})
    return {"misses": {a: [i for i, h in enumerate(hits[a]) if h is False] for a in hits},
            "scored": {a: sum(h is not None for h in hits[a]) for a in hits}} if hits else {}


def format_table(rows: list[dict]) -> str:
    def cell(value):
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"
        return str(value)

    table = [list(COLUMNS)] + [[cell(row.get(c)) for c in COLUMNS] for row in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(COLUMNS))]
    lines = ["  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths))) for r in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def teacher_name(steps: int, guidance: float | None) -> str:
    plural = "s" if steps > 1 else ""
    return f"teacher DDIM {steps} step{plural}, " + (f"CFG {guidance:g}" if guidance is not None else "no CFG")


def comparisons(rows: list[dict]) -> list[dict]:
    """Every method row against each teacher row with the same NFE or the same number of steps (25-step row
    excluded: it is the quality reference, not a baseline)."""
    from zoo.testbed.quality import compare_rows

    teachers = [r for r in rows if r.get("teacher") and r.get("steps") != 25]
    out = []
    for row in rows:
        if row.get("teacher") or "error" in row:
            continue
        for ref in teachers:
            same = [k for k in ("nfe", "steps") if row.get(k) is not None and row.get(k) == ref.get(k)]
            if not same:
                continue
            compared = compare_rows(row, ref)
            out.append({"method": row["method"], "teacher row": ref["method"], "same": "+".join(same),
                        "d_color": compared.d_color, "d_shape": compared.d_shape, "d_fd": compared.d_fd,
                        "beats": "yes" if compared.beats else "no",
                        "color pairs": pairs_cell(compared.color_pairs),
                        "shape pairs": pairs_cell(compared.shape_pairs)})
    return out


def pairs_cell(pairs: tuple[int, int, float]) -> str:
    """``+wins/-losses p=...``: images the student gets right and the teacher row wrong and the reverse, on the same
    prompts and noise, with the exact McNemar p-value."""
    wins, losses, p = pairs
    return f"+{wins}/-{losses} p={p:.2f}"


def format_comparisons(items: list[dict]) -> str:
    head = ("method", "teacher row", "same", "d_color", "d_shape", "d_fd", "beats", "color pairs", "shape pairs")
    table = [list(head)] + [[f"{i[c]:+.3f}" if isinstance(i[c], float) else str(i[c]) for c in head] for i in items]
    widths = [max(len(r[k]) for r in table) for k in range(len(head))]
    lines = ["  ".join(v.ljust(w) if k < 3 else v.rjust(w) for k, (v, w) in enumerate(zip(r, widths))) for r in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def parse_method_steps(values: list[str]) -> dict[str, list[int]]:
    """``["hyper_sd=1,2,4,8"]`` -> ``{"hyper_sd": [1, 2, 4, 8]}``."""
    out = {}
    for value in values:
        name, sep, steps = value.partition("=")
        try:
            out[name.strip()] = [int(s) for s in steps.split(",") if s.strip()] if sep else []
        except ValueError:
            raise SystemExit(f"--method-steps {value!r}: write METHOD=N,N,... (e.g. hyper_sd=1,2,4,8)") from None
        if not out[name.strip()]:
            raise SystemExit(f"--method-steps {value!r}: write METHOD=N,N,... (e.g. hyper_sd=1,2,4,8)")
    return out


def parse_models(values: list[str]) -> dict[str, str]:
    """``["hyper_sd=runs/x/export"]`` -> ``{"hyper_sd": "runs/x/export"}``."""
    out = {}
    for value in values:
        name, sep, ref = value.partition("=")
        if not sep or not name.strip() or not ref.strip():
            raise SystemExit(f"--model {value!r}: write METHOD=REF (e.g. hyper_sd=runs/hyper_sd/export)")
        out[name.strip()] = ref.strip()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, default=None,
                        help="Also write the rows (with the indices of the images each gets wrong) to this JSON file.")
    parser.add_argument("--only", nargs="*", default=None,
                        help="Row groups to run: 'teacher' and/or method names (default: all).")
    parser.add_argument("--method", nargs="*", default=None, metavar="NAME",
                        help="Score these methods (built-in or from any installed plugin, with or without a "
                             "default model) and the teacher rows to compare them with; same as --only teacher NAME.")
    parser.add_argument("--teacher", default=None, help="Teacher model ref (default: the embedded testbed teacher).")
    parser.add_argument("--teacher-steps", type=int, nargs="*", default=[25, 1, 2, 4, 8],
                        help="Step counts of the teacher rows with CFG.")
    parser.add_argument("--teacher-nocfg-steps", type=int, nargs="*", default=[1, 4],
                        help="Step counts of the teacher rows without CFG (1 NFE per step).")
    parser.add_argument("--method-steps", nargs="*", default=["hyper_sd=1,2,4,8"], metavar="METHOD=N,N",
                        help="Methods sampled at several step counts (one row each) instead of their default.")
    parser.add_argument("--guidance-scale", type=float, default=None,
                        help="CFG scale of the teacher rows (default: the teacher's zoo.json).")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--prompts", type=int, default=None, help="Use only the first N benchmark prompts (quick runs).")
    parser.add_argument("--noise-sets", type=int, default=1,
                        help="Repeat the prompts with K disjoint noise sets (K x 304 images per row; 1 = the standard "
                             "benchmark).")
    parser.add_argument("--model", nargs="*", default=[], metavar="METHOD=REF",
                        help="Score another model of a method instead of its default (a training run's export, to "
                             "compare candidates on --validation noise).")
    parser.add_argument("--validation", action="store_true",
                        help="Sample the validation noise (seeds 5000 + 100 k + index) instead of the benchmark's: "
                             "choose recipes and checkpoints on it, report on the benchmark.")
    parser.add_argument("--plot", type=Path, default=None, metavar="DIR",
                        help="Also draw the quality-versus-NFE chart and the samples grid into DIR "
                             "(scripts/plot_quality.py: quality_vs_nfe.png, samples_grid.png).")
    parser.add_argument("--samples", type=int, default=8,
                        help="With --plot: images per row of the samples grid, the same (prompt, seed) pairs in "
                             "every row (0: the chart only).")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if args.samples < 0:
        raise SystemExit("--samples: 0 or more")

    import torch

    torch.set_num_threads(args.threads)
    from zoo.registry import list_methods
    from zoo.t2i import DEFAULT_MODEL, DDIMSampler
    from zoo.hub import resolve_model
    from zoo.errors import ZooError
    from zoo.registry import get_method
    from zoo.testbed.evaluator import Evaluator
    from zoo.testbed.prompts import BENCHMARK_PROMPTS, benchmark_jobs

    prompts = BENCHMARK_PROMPTS[: args.prompts] if args.prompts else BENCHMARK_PROMPTS
    try:
        benchmark_jobs(prompts, args.noise_sets, validation=args.validation)
    except ValueError as exc:
        raise SystemExit(f"--noise-sets: {exc}") from None
    sampling = {"prompts": prompts, "noise_sets": args.noise_sets, "validation": args.validation,
                "batch_size": args.batch_size}
    evaluator = Evaluator()
    wanted = set(args.only) if args.only else None
    named = set(args.method or ())
    if named:
        try:
            named = {get_method(name).name for name in named}
        except ZooError as exc:
            raise SystemExit(f"--method: {exc}") from None
        wanted = (wanted or set()) | named | {"teacher"}
    method_steps = parse_method_steps(args.method_steps)
    models = parse_models(args.model)
    rows: list[dict] = []
    grid: dict[str, list] = {}  # with --plot: each row's samples-grid images, sampled after its scoring
    if args.plot is not None:
        sys.path.insert(0, str(ROOT / "scripts"))
        import plot_quality

        grid_jobs = plot_quality.grid_jobs(args.samples, args.validation)

    if wanted is None or "teacher" in wanted:
        teacher = DDIMSampler.from_model(resolve_model(args.teacher or DEFAULT_MODEL), device="cpu")
        guidance = args.guidance_scale if args.guidance_scale is not None else teacher.default_guidance_scale
        settings = [(s, guidance) for s in args.teacher_steps] + [(s, None) for s in args.teacher_nocfg_steps]
        for steps, scale in settings:
            rows.append(run_rows(teacher_name(steps, scale), teacher, evaluator, sampling, steps=steps,
                                 guidance_scale=scale if scale is not None else 1.0) | {"teacher": True})
            if args.plot is not None and args.samples:
                grid[rows[-1]["method"]] = plot_quality.sample_images(
                    teacher, grid_jobs, steps=steps, guidance_scale=scale if scale is not None else 1.0)
            print(format_table(rows[-1:]).splitlines()[-1], file=sys.stderr)

    for spec in list_methods(task="text-to-image"):
        reference = models.get(spec.name, spec.default_model)
        if wanted is not None and spec.name not in wanted:
            continue
        if not reference and spec.name not in named:
            continue  # a method without a default model is scored only when named (--method / --model)
        try:
            model = resolve_model(reference) if reference else None
            variants = [(f"{spec.name} {v}", str(model.path / v))
                        for v in ((model.manifest or {}) if model else {}).get("variants", [])]
        except Exception:  # noqa: BLE001 - the default model's own row below reports the error
            variants = []
        runs = [(spec.name if s is None else f"{spec.name} {s} step{'s' if s > 1 else ''}", reference,
                 {} if s is None else {"steps": s}) for s in method_steps.get(spec.name, [None])]
        runs += [(name, ref, {}) for name, ref in variants]  # e.g. Hyper-SD's N-step LoRAs, at their own steps
        for name, ref, options in runs:
            try:
                sampler = spec.load("sampler")(resolve_model(ref) if ref else None, device="cpu")
                row = run_rows(name, sampler, evaluator, sampling, **options)
            except Exception as exc:  # noqa: BLE001 - one broken method must not hide the others' rows
                traceback.print_exc()
                row = {"method": name, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
            rows.append(row)
            if args.plot is not None and args.samples and "error" not in row:
                try:  # after the scoring, so the row's numbers and timings are the same with or without --plot
                    grid[name] = plot_quality.sample_images(sampler, grid_jobs, **options)
                except Exception as exc:  # noqa: BLE001 - the grid then rebuilds the row's sampler, or leaves it out
                    print(f"{name}: samples grid: {type(exc).__name__}: {exc}", file=sys.stderr)
            if "error" not in row:
                print(format_table([row]).splitlines()[-1], file=sys.stderr)
            else:
                print(f"{name}: {row['error']}", file=sys.stderr)

    print(format_table([r for r in rows if "error" not in r]))
    compared = comparisons(rows)
    if compared:
        print("\nagainst the teacher at the same NFE / steps (beats = colour and shape not lower, FD lower):")
        print(format_comparisons(compared))
    for row in rows:
        if "error" in row:
            print(f"{row['method']}: FAILED ({row['error']})")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        clean = [{c: row.get(c) for c in COLUMNS} | misses(row) | ({"error": row["error"]} if "error" in row else {})
                 for row in rows]
        args.json.write_text(json.dumps({"rows": clean, "comparisons": compared}, indent=2) + "\n")
        print(f"wrote {args.json}")
    if args.plot is not None and any("error" not in r for r in rows):
        plot_quality.write_plots(rows, args.plot, images=grid, samples=args.samples, validation=args.validation,
                                 teacher_ref=args.teacher, models=models)


if __name__ == "__main__":
    main()
