"""Pictures of ``scripts/bench_quality.py``'s results: the quality-versus-NFE chart and a grid of samples.

- ``quality_vs_nfe.png``: three panels (colour accuracy, shape accuracy, FD) against the UNet evaluations per image
  (NFE, log2 axis): the teacher with CFG as a line through its step counts, the teacher without CFG as a dashed line,
  and every method row as a marker of its own, named in the legend.
- ``samples_grid.png``: one row per benchmark row (the teacher's reference setting, the teacher at 2 and 4 NFE, every
  method row), the same ``--samples`` (prompt, seed) pairs in every row, so every row starts from the same initial
  noise; the images (32x32 on the testbed) are upscaled x3 with nearest-neighbour, the row's name and NFE on the left.

Drawn with PIL only (no plotting library). The chart needs only the rows of a ``bench_quality.py --json`` file; the
grid samples again, with each row's sampler rebuilt from its name (the teacher rows' steps and CFG, a method's
default model, its ``N steps`` rows and its variants), a few images per row, so it takes seconds, not a benchmark::

    python scripts/plot_quality.py --json runs/bench_quality.json --out docs/img            # both pictures
    python scripts/plot_quality.py --json runs/bench_quality.json --out docs/img --samples 0  # the chart only

``bench_quality.py --plot DIR [--samples N]`` draws both at the end of a benchmark run with the samplers it scored.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import re
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CHART_NAME = "quality_vs_nfe.png"
GRID_NAME = "samples_grid.png"
CHART_WIDTH = 1200
PANEL_HEIGHT = 250
LEGEND_COLUMNS = 4
PANELS = (("color_acc", "colour accuracy (higher is better)"), ("shape_acc", "shape accuracy (higher is better)"),
          ("fd", "FD to real images (lower is better)"))
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
MARKERS = ("o", "s", "^", "D", "v", "p", "h", "*")
TEACHER_COLOR = "#303030"
GRID_SCALE = 3
GRID_GAP = 4
GRID_PAD = 8
GRID_HEADER = 36
TEACHER_ROW = re.compile(r"teacher DDIM (\d+) steps?, (?:CFG (\S+)|no CFG)")


# --- rows ---------------------------------------------------------------------------------------------------------

def teacher_setting(name: str) -> tuple[int, float | None] | None:
    """``"teacher DDIM 4 steps, CFG 3"`` -> ``(4, 3.0)``, ``"... no CFG"`` -> ``(steps, None)``; None for other rows."""
    match = TEACHER_ROW.fullmatch(name)
    if not match:
        return None
    return int(match.group(1)), (float(match.group(2)) if match.group(2) is not None else None)


def usable(rows: Iterable[dict]) -> list[dict]:
    """The rows that were scored (no ``error``, an NFE and the three plotted metrics)."""
    return [r for r in rows if "error" not in r and r.get("nfe") and all(r.get(k) is not None for k, _ in PANELS)]


def load_rows(path: Path) -> list[dict]:
    """The rows of a ``bench_quality.py --json`` file (a dict with ``rows``, or a bare list of rows)."""
    data = json.loads(Path(path).read_text())
    return list(data["rows"] if isinstance(data, dict) else data)


def grid_row_names(rows: Sequence[dict], teacher_nfe: Sequence[int] = (2, 4)) -> list[str]:
    """The rows of the samples grid: the teacher's CFG row with the most steps (its reference setting), its CFG rows
    at ``teacher_nfe``, then every method row, in the benchmark's order."""
    rows = usable(rows)
    cfg = [r for r in rows if (teacher_setting(r["method"]) or (0, None))[1] is not None]
    names = []
    if cfg:
        names.append(max(cfg, key=lambda r: r["nfe"])["method"])
        names += [r["method"] for r in sorted(cfg, key=lambda r: r["nfe"]) if r["nfe"] in teacher_nfe
                  and r["method"] not in names]
    names += [r["method"] for r in rows if teacher_setting(r["method"]) is None]
    return names


# --- drawing helpers ----------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=64)
def font(size: float):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=max(1, round(size)))
    except (TypeError, OSError, ValueError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def text_width(draw, text: str, face) -> float:
    return draw.textlength(text, font=face)


class Canvas:
    """Drawing in final-image coordinates on a ``supersample`` times larger image (smooth lines and markers once
    scaled down)."""

    def __init__(self, width: int, height: int, supersample: int = 2) -> None:
        from PIL import Image, ImageDraw

        self.s = supersample
        self.size = (width, height)
        self.image = Image.new("RGB", (width * supersample, height * supersample), "white")
        self.draw = ImageDraw.Draw(self.image)

    def _p(self, *xy: float) -> list[float]:
        return [v * self.s for v in xy]

    def line(self, points: Sequence[tuple[float, float]], fill: str, width: float = 1.0, dash: float = 0.0) -> None:
        points = [(x * self.s, y * self.s) for x, y in points]
        if not dash:
            self.draw.line(points, fill=fill, width=max(1, round(width * self.s)), joint="curve")
            return
        for (x0, y0), (x1, y1) in zip(points, points[1:]):
            length = math.hypot(x1 - x0, y1 - y0)
            step = dash * self.s
            t = 0.0
            while t < length:
                a, b = t / length, min(t + step, length) / length
                self.draw.line([(x0 + a * (x1 - x0), y0 + a * (y1 - y0)), (x0 + b * (x1 - x0), y0 + b * (y1 - y0))],
                               fill=fill, width=max(1, round(width * self.s)))
                t += 2 * step

    def rect(self, box: tuple[float, float, float, float], outline: str | None = None, fill: str | None = None) -> None:
        self.draw.rectangle(self._p(*box), outline=outline, fill=fill, width=self.s)

    def text(self, xy: tuple[float, float], text: str, size: float, fill: str = "black", anchor: str = "la") -> None:
        self.draw.text(self._p(*xy), text, font=font(size * self.s), fill=fill, anchor=anchor)

    def marker(self, kind: str, x: float, y: float, r: float, fill: str | None, outline: str) -> None:
        x, y, r = x * self.s, y * self.s, r * self.s
        width = max(1, round(self.s * 1.2))
        if kind == "o":
            self.draw.ellipse([x - r, y - r, x + r, y + r], fill=fill, outline=outline, width=width)
            return
        if kind == "s":
            r *= 0.9
            self.draw.rectangle([x - r, y - r, x + r, y + r], fill=fill, outline=outline, width=width)
            return
        angles = {"^": (-90, 3, 1.15), "v": (90, 3, 1.15), "D": (0, 4, 1.2), "p": (-90, 5, 1.05),
                  "h": (0, 6, 1.05)}
        if kind in angles:
            start, n, k = angles[kind]
            points = [(x + k * r * math.cos(math.radians(start + 360 * i / n)),
                       y + k * r * math.sin(math.radians(start + 360 * i / n))) for i in range(n)]
        else:  # "*": a five-pointed star
            points = [(x + (1.3 * r if i % 2 == 0 else 0.55 * r) * math.cos(math.radians(-90 + 36 * i)),
                       y + (1.3 * r if i % 2 == 0 else 0.55 * r) * math.sin(math.radians(-90 + 36 * i)))
                      for i in range(10)]
        self.draw.polygon(points, fill=fill, outline=outline, width=width)

    def finish(self):
        from PIL import Image

        return self.image.resize(self.size, Image.LANCZOS)


def nice_ticks(low: float, high: float, most: int = 6) -> list[float]:
    """Round tick values covering [low, high], at most ``most`` of them."""
    span = max(high - low, 1e-9)
    for step in (0.01, 0.02, 0.025, 0.05, 0.1, 0.2, 0.25, 0.5, 1, 2, 2.5, 5, 10, 20, 50):
        if span / step <= most - 1:
            break
    first = math.ceil(low / step - 1e-9) * step
    return [round(first + i * step, 6) for i in range(int((high - first) / step + 1e-9) + 1)]


def value_range(key: str, values: Sequence[float]) -> tuple[float, float]:
    if key == "fd":
        return 0.0, max(1.0, max(values) * 1.08)
    low = min(values)
    low = max(0.0, math.floor((low - 0.02) * 20) / 20)
    return low, 1.0 + (1.0 - low) * 0.04


# --- the chart ----------------------------------------------------------------------------------------------------

def chart_size(legend_entries: int) -> tuple[int, int]:
    """The chart's (width, height) with ``legend_entries`` legend lines (teacher curves and one per method row)."""
    return CHART_WIDTH, 44 + 24 + PANEL_HEIGHT + 44 + 12 + 20 * math.ceil(legend_entries / LEGEND_COLUMNS) + 10


def draw_quality_vs_nfe(rows: Sequence[dict], path: Path | None = None, title: str | None = None):
    """The three-panel chart of ``rows`` (``bench_quality.py`` rows); saved to ``path`` when given. Returns the
    image."""
    rows = usable(rows)
    if not rows:
        raise ValueError("no scored rows to plot")
    cfg = sorted([r for r in rows if (teacher_setting(r["method"]) or (0, None))[1] is not None],
                 key=lambda r: r["nfe"])
    nocfg = sorted([r for r in rows if teacher_setting(r["method"]) and teacher_setting(r["method"])[1] is None],
                   key=lambda r: r["nfe"])
    methods = [r for r in rows if teacher_setting(r["method"]) is None]
    families = list(dict.fromkeys(r["method"].split(" ")[0] for r in methods))
    style = {}
    for row in methods:
        family = row["method"].split(" ")[0]
        index = sum(1 for name in style if name.split(" ")[0] == family)
        style[row["method"]] = (PALETTE[families.index(family) % len(PALETTE)], MARKERS[index % len(MARKERS)])

    legend = [("teacher DDIM, CFG " + f"{teacher_setting(cfg[0]['method'])[1]:g}" + " (steps at the points)", "cfg")
              ] if cfg else []
    legend += [("teacher DDIM, no CFG", "nocfg")] if nocfg else []
    legend += [(f"{r['method']} (NFE {r['nfe']})", r["method"]) for r in methods]
    legend_rows = math.ceil(len(legend) / LEGEND_COLUMNS)
    top, panel_h, bottom_axis = 44, PANEL_HEIGHT, 44
    canvas = Canvas(*chart_size(len(legend)))
    canvas.text((CHART_WIDTH / 2, 12), title or "Testbed benchmark: quality against UNet evaluations per image "
                "(NFE), every method against the teacher", 15, anchor="ma")

    nfes = [r["nfe"] for r in rows]
    x_low, x_high = math.log2(min(nfes)) - 0.35, math.log2(max(nfes)) + 0.35
    ticks_x = [2 ** k for k in range(int(math.floor(math.log2(min(nfes)))), int(math.log2(max(nfes))) + 1)]
    if max(nfes) not in ticks_x and math.log2(max(nfes)) - math.log2(ticks_x[-1]) > 0.4:
        ticks_x.append(max(nfes))
    left_margin, gap = 52, 22
    panel_w = (CHART_WIDTH - 16 - len(PANELS) * (left_margin + gap) + gap) / len(PANELS)
    same_nfe: dict[int, list[str]] = {}
    for row in methods:
        same_nfe.setdefault(row["nfe"], []).append(row["method"])

    for p, (key, label) in enumerate(PANELS):
        x0 = 8 + left_margin + p * (panel_w + left_margin + gap)
        y0 = top + 24
        x1, y1 = x0 + panel_w, y0 + panel_h
        low, high = value_range(key, [r[key] for r in rows])

        def px(nfe: float, shift: float = 0.0) -> float:
            return x0 + (math.log2(nfe) + shift - x_low) / (x_high - x_low) * panel_w

        def py(value: float) -> float:
            return y1 - (min(max(value, low), high) - low) / (high - low) * panel_h

        canvas.text(((x0 + x1) / 2, top), label, 13, anchor="ma")
        for tick in nice_ticks(low, min(high, 1.0) if key != "fd" else high):
            canvas.line([(x0, py(tick)), (x1, py(tick))], "#e6e6e6")
            canvas.text((x0 - 5, py(tick)), f"{tick:g}", 11, fill="#444444", anchor="rm")
        for tick in ticks_x:
            canvas.line([(px(tick), y0), (px(tick), y1)], "#eeeeee")
            canvas.text((px(tick), y1 + 5), str(tick), 11, fill="#444444", anchor="ma")
        canvas.text(((x0 + x1) / 2, y1 + 22), "NFE (log2 scale)", 11, fill="#444444", anchor="ma")
        canvas.rect((x0, y0, x1, y1), outline="#999999")

        if nocfg:
            points = [(px(r["nfe"]), py(r[key])) for r in nocfg]
            canvas.line(points, "#8a8a8a", 1.6, dash=5)
            for x, y in points:
                canvas.marker("o", x, y, 3.2, "white", "#6a6a6a")
        if cfg:
            points = [(px(r["nfe"]), py(r[key])) for r in cfg]
            canvas.line(points, TEACHER_COLOR, 2.0)
            for r, (x, y) in zip(cfg, points):
                canvas.marker("o", x, y, 3.2, TEACHER_COLOR, TEACHER_COLOR)
                canvas.text((x, y - 6), str(r["steps"]), 9, fill="#555555", anchor="md")
        for row in methods:
            group = same_nfe[row["nfe"]]
            shift = (group.index(row["method"]) - (len(group) - 1) / 2) * 0.07
            color, kind = style[row["method"]]
            canvas.marker(kind, px(row["nfe"], shift), py(row[key]), 4.2, color, "#202020")

    legend_top = top + 24 + panel_h + bottom_axis + 8
    column_w = (CHART_WIDTH - 40) / LEGEND_COLUMNS
    for i, (text, key) in enumerate(legend):
        x = 24 + (i // legend_rows) * column_w
        y = legend_top + (i % legend_rows) * 20 + 8
        if key == "cfg":
            canvas.line([(x - 10, y), (x + 10, y)], TEACHER_COLOR, 2.0)
            canvas.marker("o", x, y, 3.2, TEACHER_COLOR, TEACHER_COLOR)
        elif key == "nocfg":
            canvas.line([(x - 10, y), (x + 10, y)], "#8a8a8a", 1.6, dash=4)
            canvas.marker("o", x, y, 3.2, "white", "#6a6a6a")
        else:
            color, kind = style[key]
            canvas.marker(kind, x, y, 4.2, color, "#202020")
        canvas.text((x + 16, y), text, 11.5, anchor="lm")
    image = canvas.finish()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        image.save(path, optimize=True)
    return image


# --- the samples grid ---------------------------------------------------------------------------------------------

def grid_jobs(samples: int, validation: bool = False) -> list[tuple[str, int]]:
    """``samples`` (prompt, seed) pairs for the grid, from the benchmark's own jobs (each the first image of that
    prompt's benchmark batch): the colour-shape prompts in an order that shows every colour and shape within the
    first 8, then the others; beyond 19 the next noise set."""
    from zoo.testbed.prompts import BENCHMARK_PROMPTS, FULL_PROMPTS, NOISE_SET_STRIDE, benchmark_jobs

    jobs = benchmark_jobs(BENCHMARK_PROMPTS, validation=validation)
    full = len(FULL_PROMPTS)
    order = [(5 * i) % full for i in range(full)] + list(range(full, len(jobs)))
    out = []
    for i in range(samples):
        prompt, seed = jobs[order[i % len(order)]]
        out.append((prompt, seed + NOISE_SET_STRIDE * (i // len(order))))
    return out


def sample_images(sampler, jobs: Sequence[tuple[str, int]], **options: Any) -> list:
    """One image per (prompt, seed) job (``batch_size=1``: the first image of that seed's batch)."""
    return [sampler(prompt, seed=seed, batch_size=1, **options).images[0] for prompt, seed in jobs]


def grid_layout(samples: int, rows: int, cell: int = 32 * GRID_SCALE, label_width: int = 0) -> tuple[int, int]:
    """The grid image's (width, height) for ``rows`` rows of ``samples`` cells of ``cell`` pixels."""
    width = GRID_PAD * 2 + label_width + samples * (cell + GRID_GAP)
    height = GRID_PAD * 2 + GRID_HEADER + rows * (cell + GRID_GAP)
    return width, height


def grid_label_width(entries: Sequence[tuple[str, int, Sequence]]) -> int:
    from PIL import Image, ImageDraw

    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    return int(math.ceil(max(text_width(draw, label, font(13)) for label, _, _ in entries))) + 14


def draw_samples_grid(entries: Sequence[tuple[str, int, Sequence]], jobs: Sequence[tuple[str, int]],
                      path: Path | None = None, scale: int = GRID_SCALE, max_bytes: int | None = 300_000):
    """``entries``: ``(row name, NFE, images)``, the images in the order of ``jobs`` ((prompt, seed) pairs, written
    above the columns). Images are upscaled ``scale`` times, nearest-neighbour. Saved to ``path`` when given (as
    a 256-colour PNG when the full-colour one would exceed ``max_bytes``); returns the image."""
    from PIL import Image, ImageDraw

    if not entries:
        raise ValueError("no rows to draw")
    samples = len(jobs)
    cell = max(max(im.width, im.height) for _, _, images in entries for im in images) * scale
    label_w = grid_label_width(entries)
    width, height = grid_layout(samples, len(entries), cell, label_w)
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    x_first = GRID_PAD + label_w
    for j, (prompt, seed) in enumerate(jobs):
        x = x_first + j * (cell + GRID_GAP) + cell / 2
        short = prompt[2:] if prompt.startswith("a ") else prompt.replace("something ", "")
        draw.text((x, GRID_PAD + 2), short, font=font(11), fill="black", anchor="ma")
        draw.text((x, GRID_PAD + 17), f"seed {seed}", font=font(10), fill="#777777", anchor="ma")
    for i, (label, nfe, images) in enumerate(entries):
        y = GRID_PAD + GRID_HEADER + i * (cell + GRID_GAP)
        if len(images) != samples:
            raise ValueError(f"{label}: {len(images)} images for {samples} columns")
        draw.text((GRID_PAD, y + cell / 2 - 2), label, font=font(13), fill="black", anchor="ls")
        draw.text((GRID_PAD, y + cell / 2 + 3), f"NFE {nfe}", font=font(11), fill="#555555", anchor="lt")
        for j, picture in enumerate(images):
            picture = picture.convert("RGB")
            picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
            image.paste(picture, (x_first + j * (cell + GRID_GAP), y))
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        image.save(path, optimize=True)
        if max_bytes and Path(path).stat().st_size > max_bytes:  # many rows: 256 colours, about 40 % smaller
            image.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)
    return image


_TEACHERS: dict[str, Any] = {}  # row_sampler's teacher samplers by model ref: one per process


def row_sampler(name: str, teacher_ref: str | None = None, models: dict[str, str] | None = None
                ) -> tuple[Any, dict]:
    """The sampler and call options of a ``bench_quality.py`` row, rebuilt from its name: ``teacher DDIM N steps,
    CFG w`` / ``no CFG``; ``METHOD`` (its default model, or ``models[METHOD]``), ``METHOD N steps`` (the same
    model at N steps) and ``METHOD VARIANT`` (a sub-folder model listed under ``variants`` in its ``zoo.json``)."""
    from zoo.hub import resolve_model
    from zoo.registry import list_methods
    from zoo.t2i import DEFAULT_MODEL, DDIMSampler

    setting = teacher_setting(name)
    if setting is not None:
        ref = teacher_ref or DEFAULT_MODEL
        if ref not in _TEACHERS:
            _TEACHERS[ref] = DDIMSampler.from_model(resolve_model(ref), device="cpu")
        steps, guidance = setting
        return _TEACHERS[ref], {"steps": steps, "guidance_scale": guidance if guidance is not None else 1.0}
    method, _, rest = name.partition(" ")
    specs = {s.name: s for s in list_methods(task="text-to-image")}
    if method not in specs:
        raise KeyError(f"{name}: no installed text-to-image method {method!r}")
    spec = specs[method]
    ref = (models or {}).get(method, spec.default_model)
    factory = spec.load("sampler")
    steps = re.fullmatch(r"(\d+) steps?", rest)
    if not rest or steps:
        return (factory(resolve_model(ref) if ref else None, device="cpu"),
                {"steps": int(steps.group(1))} if steps else {})
    return factory(resolve_model(str(resolve_model(ref).path / rest)), device="cpu"), {}


def write_plots(rows: Sequence[dict], out: Path, images: dict[str, list] | None = None, samples: int = 8,
                validation: bool = False, teacher_ref: str | None = None, models: dict[str, str] | None = None,
                teacher_nfe: Sequence[int] = (2, 4), log=print) -> list[Path]:
    """Both pictures into ``out``. ``images`` (row name -> the grid images, sampled on :func:`grid_jobs`) where the
    caller has them; other grid rows are sampled here (:func:`row_sampler`). ``samples`` 0 draws the chart only."""
    out = Path(out)
    written = [out / CHART_NAME]
    draw_quality_vs_nfe(rows, written[0])
    if samples > 0:
        jobs = grid_jobs(samples, validation)
        by_name = {r["method"]: r for r in usable(rows)}
        entries = []
        for name in grid_row_names(rows, teacher_nfe):
            got = (images or {}).get(name)
            if got is None:
                try:
                    sampler, options = row_sampler(name, teacher_ref, models)
                    got = sample_images(sampler, jobs, **options)
                except Exception as exc:  # noqa: BLE001 - a row that cannot be rebuilt is left out, said once
                    first = str(exc).splitlines()[0] if str(exc) else ""
                    log(f"samples grid: {name} left out ({type(exc).__name__}: {first})")
                    continue
            entries.append((name, by_name[name]["nfe"], got[:samples]))
        written.append(out / GRID_NAME)
        draw_samples_grid(entries, jobs, written[1])
    for path in written:
        log(f"wrote {path} ({path.stat().st_size // 1024} KB)")
    return written


def parse_models(values: Sequence[str]) -> dict[str, str]:
    out = {}
    for value in values:
        name, sep, ref = value.partition("=")
        if not sep or not name.strip() or not ref.strip():
            raise SystemExit(f"--model {value!r}: write METHOD=REF")
        out[name.strip()] = ref.strip()
    return out


def main(argv: Sequence[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, required=True, help="Rows written by bench_quality.py --json.")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img", help="Folder for the PNGs.")
    parser.add_argument("--samples", type=int, default=8, help="Images per row of the samples grid (0: no grid).")
    parser.add_argument("--teacher-nfe", type=int, nargs="*", default=[2, 4],
                        help="NFE of the teacher's CFG rows shown in the grid besides its reference setting.")
    parser.add_argument("--teacher", default=None, help="Teacher model ref (default: the embedded testbed teacher).")
    parser.add_argument("--model", nargs="*", default=[], metavar="METHOD=REF",
                        help="The model a method's rows were scored with, where not its default.")
    parser.add_argument("--validation", action="store_true", help="Sample the grid on validation noise.")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if args.samples < 0:
        raise SystemExit("--samples: 0 or more")
    if args.samples:
        import torch

        torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    return write_plots(load_rows(args.json), args.out, samples=args.samples, validation=args.validation,
                       teacher_ref=args.teacher, models=parse_models(args.model), teacher_nfe=args.teacher_nfe)


if __name__ == "__main__":
    main()
