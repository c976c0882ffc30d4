"""Contract checks for plugin authors: call :func:`check_method` in your own tests.

    from zoo.registry import get_method
    from zoo.testing import check_method

    def test_contract(tmp_path):
        report = check_method(get_method("my_method"), workdir=tmp_path)
        assert report.ok, report.problems

It checks, collecting every problem instead of stopping at the first:

1. the spec is well formed (name, task, summary, paper) and its lazy targets import;
2. the config class is a dataclass that loads as a structured config, embeds ``train`` and round-trips through YAML;
3. the sampler built from ``model`` (default: the spec's ``default_model``, else a tiny random SD pipeline for
   text-to-image) returns the requested number of finite images of the right size, with ``nfe`` equal to the
   metadata's and to ``steps`` when CFG is off; a super-resolution sampler returns an image ``scale`` times larger;
4. the trainer runs ``trainer_steps`` steps on the shared runtime with finite losses and writes a checkpoint.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from zoo.spec import TASKS, MethodSpec


@dataclass
class ContractReport:
    """What :func:`check_method` found. ``ok`` is True when ``problems`` is empty."""

    method: str
    problems: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)
    sample_nfe: int | None = None
    train_metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_spec(spec: MethodSpec, report: ContractReport) -> None:
    if spec.task not in TASKS:
        report.problems.append(f"task {spec.task!r} is not one of {TASKS}")
    if not spec.summary.strip():
        report.problems.append("summary is empty")
    if not spec.paper.title.strip():
        report.problems.append("paper title is empty")
    for what in ("sampler", "trainer", "config"):
        try:
            spec.load(what)
        except Exception as exc:  # noqa: BLE001
            report.problems.append(f"{what} target does not load: {type(exc).__name__}: {exc}")
    report.checked.append("spec")


def check_config(spec: MethodSpec, report: ContractReport, workdir: Path) -> None:
    from omegaconf import OmegaConf

    from zoo.config import load_config, save_config, structured

    config_class = spec.load("config")
    if not dataclasses.is_dataclass(config_class):
        report.problems.append("config is not a dataclass")
        return
    defaults = structured(config_class)
    if "train" not in defaults:
        report.problems.append("config has no 'train' section (embed zoo.sdk.TrainingConfig)")
    path = save_config(defaults, workdir / "config_roundtrip.yaml")
    again = load_config(config_class, path)
    if OmegaConf.to_container(again) != OmegaConf.to_container(defaults):
        report.problems.append("config does not round-trip through YAML")
    report.checked.append("config")


def _finite(images) -> bool:
    import numpy as np

    return all(np.isfinite(np.asarray(image, dtype=np.float32)).all() for image in images)


def check_sampler(spec: MethodSpec, report: ContractReport, workdir: Path, model: Any = None,
                  sampler_kwargs: dict[str, Any] | None = None) -> None:
    from zoo.hub import resolve_model

    kwargs = dict(sampler_kwargs or {})
    if model is None and spec.default_model:
        model = spec.default_model
    if model is None and spec.task == "text-to-image":
        from zoo.tiny import build_tiny_sd

        model = build_tiny_sd(workdir / "tiny_sd")
    resolved = resolve_model(str(model)) if model is not None else None
    sampler = spec.load("sampler")(resolved, device="cpu")
    if spec.task == "text-to-image":
        result = sampler("a red circle", seed=0, batch_size=2, **kwargs)
        steps, guidance = result.metadata.get("steps"), result.metadata.get("guidance_scale")
        if len(result.images) != 2:
            report.problems.append(f"sampler returned {len(result.images)} images for batch_size=2")
        if result.nfe != result.metadata.get("nfe"):
            report.problems.append("SampleResult.nfe differs from metadata['nfe']")
        if not (guidance is not None and guidance > 1) and steps and result.nfe > steps:
            report.problems.append(f"nfe={result.nfe} exceeds steps={steps} without CFG")
    else:
        from PIL import Image
        import numpy as np

        scale = kwargs.pop("scale", None)
        image = Image.fromarray((np.random.default_rng(0).random((12, 16, 3)) * 255).astype("uint8"))
        result = sampler(image, scale=scale, **kwargs)
        out = result.images[0]
        used = result.metadata.get("scale", scale)
        if used and out.size != (16 * used, 12 * used):
            report.problems.append(f"upscaled size {out.size} is not {used}x of (16, 12)")
    if not _finite(result.images):
        report.problems.append("sampler produced non-finite pixels")
    if result.nfe < 1:
        report.problems.append(f"nfe={result.nfe} < 1")
    report.sample_nfe = result.nfe
    report.checked.append("sampler")


def check_trainer(spec: MethodSpec, report: ContractReport, workdir: Path, steps: int = 2,
                  config_overrides: Sequence[str] = ()) -> None:
    from zoo.config import load_config
    from zoo.train import train

    overrides = [f"train.steps={steps}", f"train.checkpoint_every={steps}", "train.log_every=1",
                 "train.validate_every=0", "train.tensorboard=false", *config_overrides]
    config = load_config(spec.load("config"), overrides=overrides)
    result = train(spec, config, output_dir=workdir / "run", progress=False)
    losses = {k: v for k, v in result.metrics.items() if "loss" in k and isinstance(v, (int, float))}
    if result.step != steps:
        report.problems.append(f"trainer stopped at step {result.step}, expected {steps}")
    if not losses:
        report.problems.append("trainer logged no loss")
    elif not all(math.isfinite(v) for v in losses.values()):
        report.problems.append(f"non-finite losses: {losses}")
    if result.checkpoint is None:
        report.problems.append("no checkpoint was written")
    report.train_metrics = losses
    report.checked.append("trainer")


def check_method(spec: MethodSpec, *, workdir: str | Path | None = None, model: Any = None,
                 sampler_kwargs: dict[str, Any] | None = None, trainer_steps: int = 2,
                 config_overrides: Sequence[str] = (), check_training: bool = True) -> ContractReport:
    """Run all contract checks for ``spec``; returns a :class:`ContractReport` (never raises for a failed check)."""
    report = ContractReport(spec.name)
    workdir = Path(workdir or tempfile.mkdtemp(prefix=f"zoo-check-{spec.name}-"))
    workdir.mkdir(parents=True, exist_ok=True)
    stages = [("spec", lambda: check_spec(spec, report)),
              ("config", lambda: check_config(spec, report, workdir)),
              ("sampler", lambda: check_sampler(spec, report, workdir, model, sampler_kwargs))]
    if check_training:
        stages.append(("trainer", lambda: check_trainer(spec, report, workdir, trainer_steps, config_overrides)))
    for name, stage in stages:
        try:
            stage()
        except Exception as exc:  # noqa: BLE001 - report every failing stage
            report.problems.append(f"{name} check raised {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    return report
