"""Where a run is: the counters saved in every checkpoint's ``state.json`` (torch-free)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class TrainState:
    """Progress of a run.

    Attributes:
        step: optimizer steps completed (the next step computed has 0-based index ``step``).
        epoch: how many times the trainer's finite :meth:`~zoo.train.Trainer.batches` iterable was restarted.
        batches_in_epoch: micro-batches consumed from the current epoch's iterable (skipped on resume).
        metrics: the last logged metrics.
    """

    step: int = 0
    epoch: int = 0
    batches_in_epoch: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainState":
        return cls(step=int(data["step"]), epoch=int(data.get("epoch", 0)),
                   batches_in_epoch=int(data.get("batches_in_epoch", 0)), metrics=dict(data.get("metrics", {})))
