"""Reproduce the YONOS-SR testbed models and the comparison table (CPU, tens of minutes on one thread).

Stages (plugins/yonos_sr/testbed.yaml): a tiny VAE, the x2 teacher, the scale-distilled x4 student, the direct x4
ablation (same init and steps, HR target), the direct x4 baseline from scratch, and decoder fine-tuning of the
student. Each stage is a `zoo train yonos_sr` run under ``--work-dir``; a stage with an export is skipped and an
interrupted one resumes from its newest checkpoint, so the script can be re-run at any time.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/train_yonos_testbed.py --work-dir runs/yonos
    # stages that only need finished earlier stages can run in parallel processes:
    .venv/bin/python scripts/train_yonos_testbed.py --stages distill_x4 --no-table &
    .venv/bin/python scripts/train_yonos_testbed.py --stages direct_x4 --no-table
    # copy the fine-tuned student into the package (fp16) as pkg:zoo_plugins.yonos_sr/testbed:
    .venv/bin/python scripts/train_yonos_testbed.py --install
    # the striped testbed (docs/SR.md), in its own work dir:
    OMP_NUM_THREADS=1 .venv/bin/python scripts/train_yonos_testbed.py --recipe plugins/yonos_sr/testbed_stripes.yaml \
        --work-dir runs/yonos6

The table is printed by scripts/bench_yonos.py (called at the end unless ``--no-table``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "plugins" / "yonos_sr" / "testbed.yaml"
INSTALL_DIR = ROOT / "plugins" / "yonos_sr" / "testbed"
INSTALL_STAGE = "decoder_x4"


def load_recipe(path: Path = RECIPE) -> tuple[list[str], dict[str, list[str]]]:
    from omegaconf import OmegaConf

    recipe = OmegaConf.to_container(OmegaConf.load(path))
    return list(recipe["common"]), {name: list(items) for name, items in recipe["stages"].items()}


def stage_overrides(name: str, common: list[str], stages: dict[str, list[str]], work_dir: Path) -> list[str]:
    exports = {stage: str(work_dir / stage / "export") for stage in stages}
    return [item.format(**exports) for item in [*common, *stages[name]]]


def run_stage(name: str, overrides: list[str], work_dir: Path) -> dict:
    from zoo.config import load_config
    from zoo.train import train
    from zoo_plugins.yonos_sr.config import YonosConfig

    run_dir = work_dir / name
    export = run_dir / "export"
    if (export / "zoo.json").is_file():
        print(f"[{name}] already exported at {export}; skipped", flush=True)
        return {"stage": name, "skipped": True}
    resume = (run_dir / "checkpoints").is_dir() and any((run_dir / "checkpoints").iterdir())
    print(f"[{name}] {'resuming' if resume else 'training'}: {' '.join(overrides)}", flush=True)
    started = time.time()
    result = train("yonos_sr", load_config(YonosConfig, overrides=overrides), output_dir=run_dir, resume=resume)
    seconds = time.time() - started
    print(f"[{name}] {result.message} ({seconds / 60:.1f} min)", flush=True)
    timing = {"stage": name, "seconds": round(seconds, 1), "steps": result.step, "resumed": resume}
    (run_dir / "timing.json").write_text(json.dumps(timing, indent=2))
    return timing


def install(work_dir: Path, stage: str = INSTALL_STAGE) -> Path:
    """Copy ``stage``'s export into the package in fp16 (with its zoo.json, model card and metrics)."""
    from zoo_plugins.yonos_sr.model import YonosSRModel

    source = work_dir / stage / "export"
    model = YonosSRModel.load(source)
    if INSTALL_DIR.exists():
        shutil.rmtree(INSTALL_DIR)
    model.save(INSTALL_DIR, half=True)
    manifest = json.loads((source / "zoo.json").read_text())
    manifest["weights_dtype"] = "float16"
    (INSTALL_DIR / "zoo.json").write_text(json.dumps(manifest, indent=2) + "\n")
    for extra in ("README.md", "metrics.json"):
        if (source / extra).is_file():
            shutil.copy(source / extra, INSTALL_DIR / extra)
    size = sum(p.stat().st_size for p in INSTALL_DIR.rglob("*") if p.is_file())
    print(f"installed {source} -> {INSTALL_DIR} ({size / 1e6:.2f} MB)")
    return INSTALL_DIR


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, default=ROOT / "runs" / "yonos")
    parser.add_argument("--stages", default="", help="comma list of stages to run (default: all, in recipe order)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the machine is shared)")
    parser.add_argument("--no-table", action="store_true", help="do not print the comparison table at the end")
    parser.add_argument("--recipe", type=Path, default=RECIPE, help="stage recipe (default: the committed testbed's; "
                        "plugins/yonos_sr/testbed_stripes.yaml is the striped testbed, docs/SR.md)")
    parser.add_argument("--install", action="store_true", help="only copy --install-stage into " + str(INSTALL_DIR))
    parser.add_argument("--install-stage", default=INSTALL_STAGE,
                        help=f"stage --install copies (default {INSTALL_STAGE})")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    if args.install:
        install(args.work_dir, args.install_stage)
        return 0
    common, stages = load_recipe(args.recipe)
    wanted = [s for s in args.stages.split(",") if s] or list(stages)
    unknown = sorted(set(wanted) - set(stages))
    if unknown:
        parser.error(f"unknown stage(s) {', '.join(unknown)}; stages: {', '.join(stages)}")
    for name in stages:
        if name in wanted:
            run_stage(name, stage_overrides(name, common, stages, args.work_dir), args.work_dir)
    if not args.no_table:
        return subprocess.call([sys.executable, str(ROOT / "scripts" / "bench_yonos.py"), "--work-dir",
                                str(args.work_dir), "--threads", str(args.threads)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
