"""scripts/check_gpu.py (issue #22): its dry run on this CPU covers every row group with the same table and JSON as a
GPU run, and without CUDA (no --dry-run) it prints one line and exits 2. The GPU run itself: docs/HARDWARE.md."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "check_gpu.py"
GROUPS = ("unet", "nasa", "agd", "testbed", "train", "fsdp")
COLUMNS = ["check", "backend", "dtype", "max_abs_diff", "images_per_s", "peak_mem_GiB", "status"]
NO_CUDA_LINE = "no CUDA device: nothing to check; run this on a GPU machine"


def _distributed_key_in_config() -> bool:
    """Whether zoo/train/config.py's TrainingConfig declares ``distributed`` (the runtime's fsdp mode) - read from
    the source, as the condition under which the FSDP rows must pass."""
    tree = ast.parse((REPO / "zoo" / "train" / "config.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "TrainingConfig":
            return any(isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)
                       and item.target.id == "distributed" for item in node.body)
    return False


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env["OMP_NUM_THREADS"] = "1"
    return env


def test_dry_run_covers_every_row_group(tmp_path):
    out = tmp_path / "check.json"
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--json", str(out)], cwd=tmp_path, env=_env(),
                          capture_output=True, text=True, timeout=300)
    elapsed = time.perf_counter() - started
    fsdp_may_fail = not _distributed_key_in_config()
    document = json.loads(out.read_text())
    rows = document["rows"]

    # the JSON: complete, a dry run, the columns, every row group
    assert document["complete"] is True and document["mode"] == "dry-run"
    assert document["columns"] == COLUMNS
    assert {row["group"] for row in rows} == set(GROUPS), proc.stdout
    for row in rows:
        status = row["status"]
        if row["group"] == "fsdp" and fsdp_may_fail and status.startswith("FAILED"):
            assert "train.distributed" in status or "parallel" in status, status
            continue
        assert status == "ok" or (status.startswith("skipped: ") and len(status) > len("skipped: ") + 5), \
            f"{row['check']} {row['backend']} {row['dtype']}: {status}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    # every group really ran something here (not only skipped rows), and the references are there
    for group in GROUPS:
        assert any(r["group"] == group and r["status"] == "ok" for r in rows) or (group == "fsdp" and fsdp_may_fail)
    for group in ("unet", "nasa", "agd", "testbed"):
        reference = [r for r in rows if r["group"] == group and r["dtype"] == "fp32"]
        assert len(reference) == 1 and reference[0]["backend"] == "sdpa" and reference[0]["status"] == "ok"
        bf16 = [r for r in rows if r["group"] == group and r["dtype"] == "bf16" and r["backend"] == "sdpa"]
        assert bf16[0]["status"] == "ok" and 0 < bf16[0]["max_abs_diff"] <= bf16[0]["detail"]["tolerance"]
        xformers = [r for r in rows if r["group"] == group and r["backend"] == "xformers"]
        assert xformers and all(r["status"].startswith("skipped: ") for r in xformers)  # CPU: no xformers kernels

    # the printed table: the same columns and one line per row, in the JSON's order
    lines = proc.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split() == COLUMNS)
    table = lines[header + 2: header + 2 + len(rows)]
    for line, row in zip(table, rows):
        assert line.startswith(row["check"]) and line.rstrip().endswith(row["status"]), (line, row["status"])
    assert "estimated run time" in proc.stdout
    expected_rc = 1 if any(r["status"].startswith("FAILED") for r in rows) else 0
    assert proc.returncode == expected_rc, proc.stderr[-3000:]
    assert fsdp_may_fail or proc.returncode == 0
    print(f"dry run took {elapsed:.0f} s")  # meant to stay under 90 s on a 2-core CPU


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")
def test_without_cuda_it_prints_one_line_and_exits_2(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--json", str(tmp_path / "x.json")], cwd=tmp_path,
                          env=_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stdout.strip().splitlines() == [NO_CUDA_LINE]
    assert not (tmp_path / "x.json").exists()
