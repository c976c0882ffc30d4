"""Per-step overhead of the training runtime (zoo.train) against a bare PyTorch loop doing the same work.

Both sides train the same toy student (``zoo/train/toy.py``, one optimizer group: an MLP distilling a frozen MLP
teacher) from the same initial weights on the same micro-batches, with the same loss function and AdamW settings, in
ONE run, step by step side by side:

* bare: ``batch = next(data); loss = loss_fn(batch); loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)``
  on a twin of the student, run right before each runtime step;
* runtime: ``zoo.train.train(...)`` with its defaults (fp32, no clipping, no EMA unless ``--ema``, metrics every 10
  steps to metrics.jsonl and a stdout line, checkpoint only at the end); a runtime step is the time from the end of
  one bare step to the start of the next (data fetch, loss, backward, step and all the runtime's bookkeeping).

Per-step medians over each run (after ``--warmup`` steps) give ratio = runtime / bare (goal <= 1.10); the run is
repeated ``--repeats`` times and the medians of those are printed. Run::

    .venv/bin/python scripts/bench_runtime.py [--steps 300] [--repeats 5] [--threads 1] [--ema] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from zoo.config import load_config  # noqa: E402
from zoo.train.optim import build_optimizer  # noqa: E402
from zoo.train.runtime import train  # noqa: E402
from zoo.train.toy import ToyConfig, ToyTrainer, mlp  # noqa: E402

SIZES = {  # name: (dim, hidden, depth, batch)
    "toy": (8, 32, 2, 16),
    "small": (64, 256, 3, 64),
    "medium": (256, 1024, 3, 128),
}


def make_config(size: str, steps: int, ema: bool):
    dim, hidden, depth, batch = SIZES[size]
    return load_config(ToyConfig, None, [
        f"model.dim={dim}", f"model.hidden={hidden}", f"model.depth={depth}", "model.two_time_scale=false",
        f"train.batch_size={batch}", f"train.steps={steps}", "train.checkpoint_every=0", "train.log_every=10",
        "train.export_on_finish=false", f"train.ema_decay={0.999 if ema else 0.0}",
        "optim.student.every=1", "optim.student.scheduler=constant", "optim.student.warmup_steps=0"])


class SideBySideToy(ToyTrainer):
    """Runs one bare PyTorch step on a twin student right before each of the runtime's steps, timing both.

    At each step ``s`` the bare step takes ``t1 - t0``; the runtime's step is the time from the end of the bare step
    to the start of the next one (``t0[s+1] - t1[s]``): its data fetch, loss, backward, optimizer step and all its
    bookkeeping. The two alternate step by step, so load changes on the machine hit both alike.
    """

    def build(self) -> None:
        super().build()
        self.twin = copy.deepcopy(self.student)  # same initial weights, before the runtime prepares the student
        self.twin_optimizer = build_optimizer(self.twin.parameters(), self.config.optim.student)
        self.twin_data = iter(self.batches(int(self.config.train.seed)))
        self.marks: list[tuple[float, float]] = []

    def bare_step(self, step: int) -> None:
        batch = next(self.twin_data)
        student, self.student = self.student, self.twin
        try:
            loss = ToyTrainer.loss(self, "student", step, batch)["loss"]
        finally:
            self.student = student
        loss.backward()
        self.twin_optimizer.step()
        self.twin_optimizer.zero_grad(set_to_none=True)

    def loss(self, group, step, batch):
        t0 = time.perf_counter()
        self.bare_step(step)
        self.marks.append((t0, time.perf_counter()))
        return super().loss(group, step, batch)


def side_by_side(config, warmup: int) -> tuple[float, float]:
    """Median per-step seconds of (bare, runtime) over one run, after ``warmup`` steps."""
    trainer = SideBySideToy(config)
    with tempfile.TemporaryDirectory() as run_dir, contextlib.redirect_stdout(io.StringIO()):
        train(trainer, output_dir=run_dir, progress=False)
    marks = trainer.marks[warmup:]
    bare = [t1 - t0 for t0, t1 in marks]
    runtime = [next_t0 - t1 for (_, t1), (next_t0, _) in zip(marks, marks[1:])]
    return statistics.median(bare), statistics.median(runtime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--ema", action="store_true", help="runtime keeps an EMA (the bare loop does not)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rows = []
    for size in args.sizes:
        config = make_config(size, args.steps, args.ema)
        bare, runtime, ratios = [], [], []
        for _ in range(args.repeats):
            b, r = side_by_side(config, args.warmup)
            bare.append(b)
            runtime.append(r)
            ratios.append(r / b)
        dim, hidden, depth, batch = SIZES[size]
        row = {"size": size, "dim": dim, "hidden": hidden, "depth": depth, "batch": batch,
               "params": sum(p.numel() for p in mlp(dim, hidden, depth).parameters()),
               "bare_ms": statistics.median(bare) * 1e3, "runtime_ms": statistics.median(runtime) * 1e3,
               "ratio": statistics.median(ratios), "ratios": ratios}
        row["overhead_ms"] = row["runtime_ms"] - row["bare_ms"]
        rows.append(row)

    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {args.threads} thread(s), "
          f"{args.steps} steps ({args.warmup} warm-up) x {args.repeats} interleaved repeats, medians"
          f"{', runtime with EMA' if args.ema else ''}")
    print(f"{'size':<8}{'params':>10}{'batch':>7}{'bare ms/step':>14}{'runtime ms/step':>17}{'overhead ms':>13}"
          f"{'ratio (median of pairs)':>25}")
    for row in rows:
        print(f"{row['size']:<8}{row['params']:>10,}{row['batch']:>7}{row['bare_ms']:>14.3f}{row['runtime_ms']:>17.3f}"
              f"{row['overhead_ms']:>13.3f}{row['ratio']:>25.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"threads": args.threads, "steps": args.steps, "repeats": args.repeats,
                                               "ema": args.ema, "torch": torch.__version__, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
