"""A toy trainer that exercises every part of the runtime in a fraction of a second: the runtime's tests, the
multi-process test and ``scripts/bench_runtime.py`` run it.

The problem is distillation in miniature: a frozen random MLP ``teacher`` maps noise ``z`` to ``teacher(z)``, a
``student`` MLP learns to match it, and (``model.two_time_scale``) a ``critic`` MLP learns to predict the student's
residual ``teacher(z) - student(z)`` at every step while the student is updated every ``optim.student.every`` steps
and is pushed to make the critic's prediction small (a stand-in for DMD2's fake-score / generator alternation,
arXiv 2405.14867). Its losses draw from the torch, numpy and python global RNGs so that exact resume is tested.

Run it (one process, or several with ``accelerate launch --num_processes 2 --cpu -m zoo.train.toy ...``)::

    python -m zoo.train.toy --output-dir runs/toy train.steps=50 [--resume] [--dump-weights DIR]
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from zoo.train.config import OptimizerConfig, TrainingConfig
from zoo.train.trainer import OptimizerGroup, Trainer


@dataclass
class ToyModelConfig:
    dim: int = 8
    """Size of the noise and of the output."""
    hidden: int = 32
    depth: int = 2
    """Hidden layers of each MLP."""
    two_time_scale: bool = True
    """Train the critic too (two optimizer groups); False trains the student alone (one group)."""
    noise: float = 0.05
    """Scale of the noise the losses add (drawn from the global torch RNG)."""


@dataclass
class ToyOptim:
    critic: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(lr=1e-3, max_grad_norm=1.0))
    student: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(
        lr=3e-3, every=2, scheduler="cosine", warmup_steps=2, min_lr_ratio=0.1))


@dataclass
class ToyConfig:
    train: TrainingConfig = field(default_factory=lambda: TrainingConfig(
        steps=20, batch_size=16, checkpoint_every=10, log_every=5, keep_last=3))
    optim: ToyOptim = field(default_factory=ToyOptim)
    model: ToyModelConfig = field(default_factory=ToyModelConfig)


def mlp(dim: int, hidden: int, depth: int) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Linear(dim, hidden), nn.SiLU()]
    for _ in range(depth - 1):
        layers += [nn.Linear(hidden, hidden), nn.SiLU()]
    layers.append(nn.Linear(hidden, dim))
    return nn.Sequential(*layers)


def make_teacher(dim: int, hidden: int, depth: int) -> nn.Sequential:
    """A fixed random MLP (seeded independently of the run's seed), frozen."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1234)
        teacher = mlp(dim, hidden, depth)
    return teacher.eval().requires_grad_(False)


class ToyTrainer(Trainer):
    """Student (and critic) distilling a random MLP teacher; see the module docstring."""

    method = "toy"

    def build(self) -> None:
        m = self.config.model
        self.noise = float(m.noise)
        self.teacher = make_teacher(m.dim, m.hidden, m.depth).to(self.device)
        self.student = mlp(m.dim, m.hidden, m.depth)
        self.critic = mlp(m.dim, m.hidden, m.depth) if m.two_time_scale else None

    def trainable_modules(self) -> dict[str, nn.Module]:
        modules = {"student": self.student}
        if self.critic is not None:
            modules["critic"] = self.critic
        return modules

    def optimizer_groups(self) -> list[OptimizerGroup]:
        groups = []
        if self.critic is not None:
            groups.append(OptimizerGroup("critic", self.critic.parameters(), self.config.optim.critic))
        groups.append(OptimizerGroup("student", self.student.parameters(), self.config.optim.student))
        return groups

    def batches(self, seed: int) -> Iterator[torch.Tensor]:
        generator = torch.Generator().manual_seed(seed)
        shape = (int(self.config.train.batch_size), int(self.config.model.dim))
        while True:
            yield torch.randn(shape, generator=generator)

    def loss(self, group: str, step: int, batch: Any) -> dict[str, torch.Tensor]:
        z = batch.to(self.device)
        noise = self.noise
        target = self.teacher(z)
        if group == "critic":
            # the critic regresses the student's residual (the student is fixed for this group)
            with torch.no_grad():
                x = self.student(z)
            residual = target - x + noise * torch.randn_like(x)
            return {"loss": nn.functional.mse_loss(self.critic(x), residual)}
        # the student: match the teacher on jittered inputs; python/numpy RNGs weight the terms
        x = self.student(z + noise * torch.randn_like(z))
        distill = nn.functional.mse_loss(x, target) * (1.0 + 0.1 * random.random())
        if self.critic is None:
            return {"loss": distill, "distill": distill.detach()}
        critic_term = self.critic(x).pow(2).mean() * float(0.1 * np.random.rand())
        return {"loss": distill + critic_term, "distill": distill.detach()}

    def validate(self, step: int, out_dir: Path) -> dict[str, float]:
        generator = torch.Generator().manual_seed(999)
        z = torch.randn(256, int(self.config.model.dim), generator=generator).to(self.device)
        with self.ema_weights():
            mse = float(nn.functional.mse_loss(self.student(z), self.teacher(z)))
        (Path(out_dir) / "validation.json").write_text(json.dumps({"step": step, "mse": mse}))
        return {"mse": mse}

    def export_modules(self) -> dict[str, nn.Module]:
        from zoo.train.checkpoint import unwrap

        return {"student": unwrap(self.student)}

    def export_manifest(self) -> dict[str, Any]:
        m = self.config.model
        return {"base_model": None, "sampler": {"steps": 1},
                "architecture": {"dim": int(m.dim), "hidden": int(m.hidden), "depth": int(m.depth)}}


def main(argv: list[str] | None = None) -> int:
    """``python -m zoo.train.toy``: train the toy (for tests, the multi-process check and the benchmark)."""
    from safetensors.torch import save_file

    from zoo.config import load_config
    from zoo.errors import ZooError
    from zoo.train.checkpoint import unwrap
    from zoo.train.runtime import train
    from zoo.train.toy import ToyConfig, ToyTrainer  # the importable classes, not this __main__'s copies

    parser = argparse.ArgumentParser(prog="python -m zoo.train.toy", description=main.__doc__)
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads per process")
    parser.add_argument("--dump-weights", help="folder where every process writes its final weights and the "
                                               "checkpoints it wrote (rank<i>.safetensors, rank<i>.json)")
    parser.add_argument("overrides", nargs="*", help="config overrides such as train.steps=50")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        config = load_config(ToyConfig, None, args.overrides)
        trainer = ToyTrainer(config)
        result = train(trainer, output_dir=args.output_dir, resume=args.resume, progress=not args.no_progress)
    except ZooError as exc:
        print(f"Error: {exc}")
        return 1
    if args.dump_weights:
        out = Path(args.dump_weights)
        out.mkdir(parents=True, exist_ok=True)
        rank = trainer.process_index
        tensors = {f"{name}.{key}": value.detach().cpu().contiguous()
                   for name, module in trainer.trainable_modules().items()
                   for key, value in unwrap(module).state_dict().items()}
        save_file(tensors, str(out / f"rank{rank}.safetensors"))
        (out / f"rank{rank}.json").write_text(json.dumps(
            {"rank": rank, "num_processes": trainer.num_processes, "status": result.status, "step": result.step,
             "checkpoints_written": [str(p) for p in result.checkpoints_written]}))
    print(json.dumps({"status": result.status, "step": result.step, "run_dir": str(result.run_dir),
                      "checkpoint": str(result.checkpoint), "message": result.message}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
