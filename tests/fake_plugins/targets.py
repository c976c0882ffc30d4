from dataclasses import dataclass, field


@dataclass
class Optim:
    lr: float = 1e-4


@dataclass
class AlphaConfig:
    steps: int = 10
    optim: Optim = field(default_factory=Optim)


def sampler(*args, **kwargs):
    return "sampler"


def trainer(*args, **kwargs):
    return "trainer"
