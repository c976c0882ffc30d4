"""scripts/plot_quality.py: the quality-versus-NFE chart and the samples grid from a bench_quality.py rows JSON, and
bench_quality.py --plot drawing both at the end of a run."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def _row(method, steps, nfe, color, shape, fd):
    return {"method": method, "steps": steps, "nfe": nfe, "color_acc": color, "shape_acc": shape, "diversity": 0.5,
            "fd": fd, "ms_per_image": 10.0, "misses": {"color": [], "shape": []}, "scored": {"color": 4, "shape": 4}}


FAKE_ROWS = [
    _row("teacher DDIM 25 steps, CFG 3", 25, 50, 1.0, 1.0, 0.7),
    _row("teacher DDIM 1 step, CFG 3", 1, 2, 0.94, 0.52, 4.1),
    _row("teacher DDIM 2 steps, CFG 3", 2, 4, 0.99, 0.98, 3.2),
    _row("teacher DDIM 1 step, no CFG", 1, 1, 0.96, 0.52, 5.0),
    _row("teacher DDIM 4 steps, no CFG", 4, 4, 0.95, 0.90, 0.5),
    _row("swiftbrush", 1, 1, 0.98, 0.88, 1.5),
    _row("made_up_method 2 steps", 2, 2, 1.0, 0.98, 0.8),
    {"method": "broken", "error": "RuntimeError: boom"},
]


def _colours(image):
    return {rgb for _, rgb in image.convert("RGB").getcolors(maxcolors=1 << 20)}


def test_chart_and_grid_from_a_rows_json(tmp_path, load_script):
    plot = load_script("plot_quality")
    rows_json = tmp_path / "rows.json"
    rows_json.write_text(json.dumps({"rows": FAKE_ROWS, "comparisons": []}))
    torch.set_num_threads(1)

    # the chart alone (--samples 0): three panels, a legend line per teacher curve and per method row
    written = plot.main(["--json", str(rows_json), "--out", str(tmp_path / "a"), "--samples", "0"])
    assert [p.name for p in written] == ["quality_vs_nfe.png"]
    chart = Image.open(written[0])
    assert chart.size == plot.chart_size(2 + 2) == (1200, 44 + 24 + 250 + 44 + 12 + 20 + 10)
    colours = _colours(chart)
    for hex_colour in plot.PALETTE[:2]:  # swiftbrush and made_up_method each drawn in their own colour
        assert tuple(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)) in colours
    assert (0x30, 0x30, 0x30) in colours  # the teacher's CFG curve

    # both pictures: grid rows = the teacher's reference setting, its CFG rows at NFE 2 and 4, every method row;
    # given images are used as they are, the others sampled again (the real teacher at 1 step, swiftbrush), and a
    # row whose method is not installed is left out, said once
    fake = [Image.new("RGB", (32, 32), (200, 10 * k, 30)) for k in range(3)]
    messages = []
    written = plot.write_plots(FAKE_ROWS, tmp_path / "b", samples=3, log=messages.append,
                               images={"teacher DDIM 25 steps, CFG 3": fake, "teacher DDIM 2 steps, CFG 3": fake})
    assert [p.name for p in written] == ["quality_vs_nfe.png", "samples_grid.png"]
    assert any("made_up_method 2 steps left out" in m for m in messages)
    grid = Image.open(written[1]).convert("RGB")
    entries = [("teacher DDIM 25 steps, CFG 3", 50, fake), ("teacher DDIM 1 step, CFG 3", 2, fake),
               ("teacher DDIM 2 steps, CFG 3", 4, fake), ("swiftbrush", 1, fake)]
    label_width = plot.grid_label_width(entries)
    assert grid.size == plot.grid_layout(3, 4, 96, label_width)
    assert all(p.stat().st_size < 300_000 for p in written)
    # cells: 32x32 images upscaled x3 nearest-neighbour, the rows in order
    x0 = plot.GRID_PAD + label_width
    y0 = plot.GRID_PAD + plot.GRID_HEADER
    cell = grid.crop((x0 + 96 + plot.GRID_GAP, y0, x0 + 2 * 96 + plot.GRID_GAP, y0 + 96))
    assert cell.tobytes() == fake[1].resize((96, 96), Image.NEAREST).tobytes()
    # a sampled row starts from the noise of the benchmark's batch for that prompt (its first image)
    from zoo.t2i import DDIMSampler

    prompt, seed = plot.grid_jobs(3)[2]
    batch = DDIMSampler.from_model(device="cpu")(prompt, seed=seed, batch_size=16, steps=1, guidance_scale=3.0)
    y1 = y0 + 96 + plot.GRID_GAP
    cell = grid.crop((x0 + 2 * (96 + plot.GRID_GAP), y1, x0 + 2 * (96 + plot.GRID_GAP) + 96, y1 + 96))
    import numpy as np

    first = np.asarray(batch.images[0].convert("RGB").resize((96, 96), Image.NEAREST), dtype=np.int16)
    assert np.abs(np.asarray(cell, dtype=np.int16) - first).max() <= 2  # batch 1 vs 16: rounding only


def test_grid_jobs_show_every_colour_and_shape_in_eight():
    from zoo.testbed.data import COLORS, SHAPES, parse_caption
    from zoo.testbed.prompts import BASE_SEED, BENCHMARK_PROMPTS

    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from plot_quality import grid_jobs
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    jobs = grid_jobs(8)
    parsed = [parse_caption(prompt) for prompt, _ in jobs]
    assert {s for s, _ in parsed} == set(SHAPES) and {c for _, c in parsed} == set(COLORS)
    assert all(seed == BASE_SEED + BENCHMARK_PROMPTS.index(prompt) for prompt, seed in jobs)
    assert len(set(grid_jobs(40))) == 40  # beyond the 19 prompts: the next noise set


def test_bench_quality_plot_draws_both_pictures(tmp_path):
    out = tmp_path / "img"
    command = [sys.executable, str(ROOT / "scripts" / "bench_quality.py"), "--only", "teacher", "swiftbrush",
               "--prompts", "1", "--teacher-steps", "2", "1", "--teacher-nocfg-steps", "1", "--batch-size", "2",
               "--plot", str(out), "--samples", "2"]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300,
                               env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert f"wrote {out / 'quality_vs_nfe.png'}" in completed.stdout
    grid = Image.open(out / "samples_grid.png")
    # rows: the teacher's CFG row with the most steps (2), its 1-step CFG row (NFE 2), swiftbrush; 2 samples each
    assert grid.height == 2 * 8 + 36 + 3 * (96 + 4) and Image.open(out / "quality_vs_nfe.png").width == 1200


@pytest.mark.parametrize("name, expected", [("teacher DDIM 25 steps, CFG 3", (25, 3.0)),
                                            ("teacher DDIM 1 step, no CFG", (1, None)), ("hyper_sd 4 steps", None)])
def test_teacher_rows_are_read_from_their_names(name, expected, load_script):
    assert load_script("plot_quality").teacher_setting(name) == expected
