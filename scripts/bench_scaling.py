"""Scale-out benchmark on this machine (CPU, gloo): what sharding saves and what overlapped gradient reduction costs.

Two ratios, each measured side by side in one run of this script:

1. **memory**: the training state one process holds (parameters of the trainable modules and of the networks the
   losses run, the frozen teacher base included; their gradients; the optimizer state), as the runtime reports it
   (``memory/train_state_mib``, measured once every group has stepped), with ``train.distributed=fsdp`` on 2 processes
   against 1 process. Goal: <= 0.6.
2. **step time**: ``train.distributed=ddp`` on 2 processes (DDP's reducer: bucketed asynchronous all-reduce during the
   backward pass) against the path the runtime had before (every group's gradients averaged by a loop of bucketed
   blocking all-reduces after the backward pass; reproduced here, in this script only, by patching the runtime).
   Goal: not slower. Median wall time per step over the steps after ``--warmup``, from ``metrics.jsonl``.

Usage::

    python scripts/bench_scaling.py --json runs/bench_scaling.json
    python scripts/bench_scaling.py --methods swiftbrush phased_dmd hyper_sd --steps 10 --batch-size 4

On 2 cores with 2 processes of 1 thread each the step time is dominated by computation; compare the two ddp rows
only with each other, within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = Path(sys.executable).parent / "torchrun"
METHOD_OVERRIDES = {"phased_dmd": ["optim.generator.every=2"]}


# -- the previous path, for comparison only (runs inside the worker processes) ---------------------------------------
def average_after_backward(params, world_size: int, bucket_bytes: int = 25 * 2**20) -> None:
    """The old runtime's post-backward averaging: blocking all-reduces of flat ~25 MiB buckets (zeros for a parameter
    without a gradient), one group at a time, after all its micro-batches."""
    import torch
    import torch.distributed as dist
    from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

    def flush(bucket):
        flat = _flatten_dense_tensors(bucket)
        dist.all_reduce(flat)
        flat.div_(world_size)
        for grad, synced in zip(bucket, _unflatten_dense_tensors(flat, bucket)):
            grad.copy_(synced)

    bucket, size = [], 0
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        bucket.append(p.grad)
        size += p.grad.numel() * p.grad.element_size()
        if size >= bucket_bytes:
            flush(bucket)
            bucket, size = [], 0
    if bucket:
        flush(bucket)


def run_worker(mode: str, argv: list[str]) -> None:
    """Inside torchrun: ``zoo train`` with the runtime as it is (``ddp``) or patched to the old path (``hand``)."""
    sys.path.insert(0, str(ROOT))
    if mode == "hand":
        import contextlib

        from zoo.train import parallel, runtime

        class NoReducer:  # DDP's reducer off ...
            def __init__(self, params, *args, **kwargs) -> None:
                self.params = list(params)

            def prepare(self, loss):
                return loss

            def no_sync(self):
                return contextlib.nullcontext()

        original_step = runtime._Runtime._optimizer_step

        def step_after_averaging(self, group):  # ... and the loop after the backward pass instead
            average_after_backward(group.params, self.num_processes)
            original_step(self, group)

        parallel.GroupReducer = NoReducer
        runtime._Runtime._optimizer_step = step_after_averaging
    from zoo.cli import main

    main(args=argv)


# -- the driver -----------------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def train(method: str, run_dir: Path, processes: int, mode: str, steps: int, batch_size: int,
          worker: str | None = None) -> list[dict]:
    overrides = [f"train.steps={steps}", f"train.batch_size={batch_size}", "train.log_every=1",
                 "train.tensorboard=false", "train.checkpoint_every=0", "train.export_on_finish=false",
                 "train.validate_every=0", f"train.distributed={'ddp' if mode == 'hand' else mode}",
                 *METHOD_OVERRIDES.get(method, [])]
    zoo_args = ["train", method, "--output-dir", str(run_dir), "--no-progress", *overrides]
    if processes == 1:
        command = [sys.executable, "-m", "zoo", *zoo_args]
    else:
        command = [str(TORCHRUN), "--nproc_per_node", str(processes), "--master_addr", "127.0.0.1", "--master_port",
                   str(_free_port()), str(Path(__file__).resolve()), "--worker", worker or mode, "--", *zoo_args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"{method} ({mode}, {processes} process(es)) failed:\n{done.stderr[-3000:]}")
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def seconds_per_step(records: list[dict], warmup: int) -> float:
    rates = [r["steps_per_s"] for r in records if "steps_per_s" in r and r["step"] > warmup]
    return statistics.median(1.0 / r for r in rates)


def state_mib(records: list[dict]) -> float:
    return next(r["memory/train_state_mib"] for r in records if "memory/train_state_mib" in r)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="*", default=["swiftbrush", "phased_dmd", "hyper_sd"])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3, help="Steps left out of the step time (start-up, buckets).")
    parser.add_argument("--batch-size", type=int, default=4, help="Micro-batch per process.")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--worker", choices=["ddp", "fsdp", "hand"], help=argparse.SUPPRESS)
    parser.add_argument("zoo_args", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return run_worker(args.worker, args.zoo_args)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.methods:
            folder = Path(tmp) / method
            one = train(method, folder / "fsdp1", 1, "fsdp", args.steps, args.batch_size)
            two = train(method, folder / "fsdp2", 2, "fsdp", args.steps, args.batch_size)
            ddp = train(method, folder / "ddp", 2, "ddp", args.steps, args.batch_size)
            hand = train(method, folder / "hand", 2, "hand", args.steps, args.batch_size)
            row = {"method": method, "state_mib_1": state_mib(one), "state_mib_fsdp2": state_mib(two),
                   "s_per_step_ddp2": seconds_per_step(ddp, args.warmup),
                   "s_per_step_hand2": seconds_per_step(hand, args.warmup)}
            row["memory_ratio"] = row["state_mib_fsdp2"] / row["state_mib_1"]
            row["time_ratio"] = row["s_per_step_ddp2"] / row["s_per_step_hand2"]
            rows.append(row)
            print(f"{method}: memory {row['memory_ratio']:.3f}, step time {row['time_ratio']:.3f}", file=sys.stderr)

    head = ("method", "state MiB 1 proc", "state MiB/rank fsdp x2", "memory ratio (<= 0.6)", "s/step ddp x2",
            "s/step old path x2", "time ratio (<= 1)")
    keys = ("method", "state_mib_1", "state_mib_fsdp2", "memory_ratio", "s_per_step_ddp2", "s_per_step_hand2",
            "time_ratio")
    table = [list(head)] + [[r[k] if isinstance(r[k], str) else f"{r[k]:.3f}" for k in keys] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(head))]
    for index, line in enumerate(table):
        print("  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(line, widths))))
        if index == 0:
            print("  ".join("-" * w for w in widths))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": rows, "steps": args.steps, "warmup": args.warmup,
                                         "batch_size": args.batch_size}, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
