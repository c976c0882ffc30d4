"""scripts/bench_nasa.py: NASA's table (share of the negated colour with NASA off, at the model's calibrated setting
and at swept strengths; the shape change with its paired p) and the calibration rule."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench_nasa():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import bench_nasa

        yield bench_nasa
    finally:
        sys.path.remove(str(ROOT / "scripts"))


def test_the_table_measures_the_shipped_calibration_against_nasa_off(tmp_path):
    out = tmp_path / "nasa.json"
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_nasa.py"), "--models", "snoopi",
                           "--images", "3", "--alpha", "0", "--json", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())["results"][0]
    manifest = json.loads((ROOT / "plugins" / "snoopi" / "testbed" / "zoo.json").read_text())["sampler"]
    default = result["rows"]["default"]
    assert (default["alpha"], default["mode"], default["layers"]) == (manifest["nasa_alpha"], manifest["nasa_mode"],
                                                                     manifest["nasa_layers"])
    off, zero = result["rows"]["off"], result["rows"]["alpha 0"]
    assert len(off["share_by_pair"]) == 12 and off["share"] == pytest.approx(sum(off["share_by_pair"]) / 12)
    # strength 0 is NASA off: the same images, so nothing removed, no shape change, p = 1
    assert zero["share_by_pair"] == off["share_by_pair"] and zero["removed"] == 0 and zero["shape_p"] == 1.0
    assert default["removed"] == pytest.approx(1 - default["share"] / off["share"])
    assert 0.0 <= default["shape_p"] <= 1.0
    assert "a=2 relative up" in done.stdout and "goal met by" in done.stdout


def test_calibration_picks_the_smallest_strength_that_meets_both_goals(bench_nasa):
    def row(alpha, removed, d_shape):
        return {"alpha": alpha, "removed": removed, "d_shape": d_shape}

    rows = {"off": row(None, 0.0, 0.0), "alpha 1": row(1, 0.70, 0.0), "alpha 1.5": row(1.5, 0.85, -0.01),
            "alpha 2": row(2, 0.90, -0.015), "alpha 3": row(3, 0.95, -0.05)}
    assert bench_nasa.recommend({"rows": rows}) == (1.5, "meets both goals")
    rows = {"off": row(None, 0.0, 0.0), "alpha 1": row(1, 0.50, -0.01), "alpha 2": row(2, 0.60, -0.019),
            "alpha 3": row(3, 0.95, -0.05)}
    assert bench_nasa.recommend({"rows": rows}) == (2, "best within the shape goal: removes 60%")
    assert bench_nasa.recommend({"rows": {"off": rows["off"], "alpha 3": rows["alpha 3"]}})[0] is None
