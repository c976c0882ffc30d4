"""The shared training runtime (zoo.train) on the toy trainer: exact resume, crash safety, guards, export, CLI,
and a two-process run under ``accelerate launch``."""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from zoo.config import load_config, save_config
from zoo.errors import ConfigError, TrainingError
from zoo.train import checkpoint as ckpt
from zoo.train.optim import lr_factor
from zoo.train.runtime import train
from zoo.train.toy import ToyConfig, ToyTrainer

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


@pytest.fixture(autouse=True)
def _one_thread():
    """Bit-identical comparisons between runs (and subprocesses, which use one thread too) need the same threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def toy_config(*overrides: str):
    return load_config(ToyConfig, None, list(overrides))


def run_toy(run_dir: Path, *overrides: str, resume: bool = False, cls=ToyTrainer):
    return train(cls(toy_config(*overrides)), output_dir=run_dir, resume=resume, progress=False)


def tensors_of(checkpoint: Path) -> dict[str, torch.Tensor]:
    """Every tensor a checkpoint holds (weights, EMA, optimizer state), keyed by file and name."""
    out = {}
    for path in sorted(checkpoint.glob("models/*.safetensors")) + sorted(checkpoint.glob("optimizers/*.safetensors")):
        for key, value in load_file(str(path)).items():
            out[f"{path.parent.name}/{path.name}:{key}"] = value
    return out


def assert_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [key for key in a if not torch.equal(a[key], b[key])]
    assert different == [], f"{len(different)} tensors differ, e.g. {different[:3]}"


class FiniteToy(ToyTrainer):
    """Five micro-batches per epoch, so runs cross epoch boundaries (and resume lands mid-epoch)."""

    def batches(self, seed):
        generator = torch.Generator().manual_seed(seed)
        for _ in range(5):
            yield torch.randn(int(self.config.train.batch_size), int(self.config.model.dim), generator=generator)


# -- exact resume -------------------------------------------------------------------------------------------------
EXACT = ("train.steps=9", "train.checkpoint_every=3", "train.keep_last=0", "train.ema_decay=0.9",
         "train.gradient_accumulation_steps=2", "train.log_every=2")


def test_resume_from_a_periodic_checkpoint_is_bit_identical(tmp_path):
    # two groups (critic every step, student every 2 with warm-up + cosine), EMA, accumulation, epochs of 5 batches
    full = run_toy(tmp_path / "full", *EXACT, cls=FiniteToy)
    assert full.status == "finished" and full.step == 9
    reference = tensors_of(full.checkpoint)
    early = tensors_of(tmp_path / "full/checkpoints/step-000003")
    assert any(not torch.equal(early[k], reference[k]) for k in reference), "training did not change the weights"

    # a run that "crashed" after step 3: only its step-3 checkpoint survives
    crashed = tmp_path / "crashed"
    shutil.copytree(tmp_path / "full/checkpoints/step-000003", crashed / "checkpoints/step-000003")
    state = json.loads((crashed / "checkpoints/step-000003/state.json").read_text())
    assert (state["train_state"]["epoch"], state["train_state"]["batches_in_epoch"]) == (1, 1)  # 6 of 5 per epoch
    resumed = run_toy(crashed, *EXACT, resume=True, cls=FiniteToy)
    assert resumed.step == 9
    assert_identical(tensors_of(resumed.checkpoint), reference)
    assert resumed.metrics == {**full.metrics, "steps_per_s": resumed.metrics["steps_per_s"]}


class InterruptAt(ToyTrainer):
    """Sends itself SIGINT during the loss of step 4 (as Ctrl-C would)."""

    def loss(self, group, step, batch):
        if step == 4 and group == "critic":
            os.kill(os.getpid(), signal.SIGINT)
        return super().loss(group, step, batch)


def test_sigint_checkpoints_and_stops_then_resume_matches_uninterrupted(tmp_path):
    settings = ("train.steps=8", "train.checkpoint_every=100", "train.ema_decay=0.8")
    reference = run_toy(tmp_path / "ref", *settings)
    before = signal.getsignal(signal.SIGINT)  # default_int_handler, or SIG_IGN in a shell's background job
    stopped = run_toy(tmp_path / "run", *settings, cls=InterruptAt)
    assert stopped.status == "interrupted" and stopped.step == 5  # the step in flight completes first
    assert stopped.checkpoint == tmp_path / "run/checkpoints/step-000005" and stopped.checkpoint.is_dir()
    assert "SIGINT" in stopped.message and "--resume" in stopped.message
    assert signal.getsignal(signal.SIGINT) is before  # handlers restored
    resumed = run_toy(tmp_path / "run", *settings, resume=True)
    assert resumed.status == "finished" and resumed.step == 8
    assert_identical(tensors_of(resumed.checkpoint), tensors_of(reference.checkpoint))


def test_sigkill_while_writing_a_checkpoint_leaves_the_previous_one_loadable(tmp_path):
    run_dir = tmp_path / "run"
    args = ["train.steps=6", "train.checkpoint_every=2", "train.keep_last=0"]
    env = {**os.environ, ckpt.TEST_PAUSE_ENV: "4:120", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "zoo.train.toy", "--output-dir", str(run_dir), "--no-progress",
                                *args], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while not list(run_dir.glob("checkpoints/step-000004.tmp-*/.paused")):
            assert process.poll() is None, process.stdout.read().decode()
            assert time.monotonic() < deadline, "the checkpoint writer never paused"
            time.sleep(0.05)
        process.kill()  # SIGKILL in the middle of writing step 4
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        process.stdout.close()
    assert process.returncode == -signal.SIGKILL
    leftovers = list(run_dir.glob("checkpoints/step-000004.tmp-*"))
    assert len(leftovers) == 1 and (leftovers[0] / "models/student.safetensors").is_file()
    assert ckpt.latest_checkpoint(run_dir) == run_dir / "checkpoints/step-000002"

    resumed = run_toy(run_dir, *args, resume=True)
    assert resumed.status == "finished" and resumed.step == 6
    assert not list(run_dir.glob("checkpoints/*.tmp-*")), "the killed writer's folder was not cleaned up"
    reference = run_toy(tmp_path / "ref", *args)
    assert_identical(tensors_of(resumed.checkpoint), tensors_of(reference.checkpoint))


# -- guards -------------------------------------------------------------------------------------------------------
class NaNAt(ToyTrainer):
    nan_group, nan_step = "critic", 3

    def loss(self, group, step, batch):
        out = super().loss(group, step, batch)
        if group == self.nan_group and step == self.nan_step:
            out["loss"] = out["loss"] * float("nan")
        return out


def test_nan_loss_stops_with_a_checkpoint_of_the_last_good_step(tmp_path):
    reference = run_toy(tmp_path / "ref", "train.steps=3")
    with pytest.raises(TrainingError) as info:
        run_toy(tmp_path / "run", "train.steps=8", cls=NaNAt)
    message = str(info.value)
    assert "\n" not in message and "Non-finite loss" in message and "'critic' at step 3" in message
    assert "optim.critic.lr" in message
    saved = tmp_path / "run/checkpoints/step-000003"
    assert str(saved) in message
    assert_identical(tensors_of(saved), tensors_of(reference.checkpoint))  # exactly the state after 3 good steps


class NaNInSecondGroup(NaNAt):
    nan_group, nan_step = "student", 4


def test_nan_in_a_later_group_marks_the_partial_step(tmp_path):
    with pytest.raises(TrainingError, match="groups critic of that step had already been applied"):
        run_toy(tmp_path / "run", "train.steps=8", cls=NaNInSecondGroup)
    state = json.loads((tmp_path / "run/checkpoints/step-000004/state.json").read_text())
    assert state["partial_step"] == {"step": 4, "groups_applied": ["critic"]}


class OutOfMemory(ToyTrainer):
    def loss(self, group, step, batch):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")


def test_out_of_memory_says_what_to_change(tmp_path):
    with pytest.raises(TrainingError) as info:
        run_toy(tmp_path / "run", "train.batch_size=8", cls=OutOfMemory)
    message = str(info.value)
    assert "\n" not in message and "Out of memory at step 0" in message
    assert "train.batch_size=8" in message and "gradient_accumulation_steps" in message and "bf16" in message


def test_disk_full_names_the_folder_and_free_space(tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("zoo.train.runtime.save_checkpoint", full)
    with pytest.raises(TrainingError) as info:
        run_toy(tmp_path / "run", "train.steps=2")
    message = str(info.value)
    assert "\n" not in message and f"Disk full while writing to {tmp_path / 'run'}" in message
    assert "GiB free" in message and "train.keep_last" in message


# -- checkpoints, config, data ------------------------------------------------------------------------------------
def test_keep_last_k_and_stale_temporaries_are_removed(tmp_path):
    run_dir = tmp_path / "run"
    stale = run_dir / "checkpoints/step-000001.tmp-999999999"  # a writer pid that cannot be alive
    stale.mkdir(parents=True)
    run_toy(run_dir, "train.steps=10", "train.checkpoint_every=2", "train.keep_last=2")
    assert [step for step, _ in ckpt.list_checkpoints(run_dir)] == [8, 10]
    assert not stale.exists()


def test_config_yaml_is_the_resolved_config_and_saved_atomically(tmp_path, monkeypatch):
    run_toy(tmp_path / "run", "train.steps=2", "optim.student.lr=0.01")
    saved = load_config(ToyConfig, tmp_path / "run/config.yaml")
    assert saved.optim.student.lr == 0.01 and saved.train.output_dir == str(tmp_path / "run")
    assert [p.name for p in (tmp_path / "run").iterdir() if "tmp" in p.name] == []
    before = (tmp_path / "run/config.yaml").read_text()

    def crash(self, target):
        raise OSError("killed before rename")

    monkeypatch.setattr(Path, "replace", crash)
    with pytest.raises(OSError):
        save_config(toy_config("optim.student.lr=0.5"), tmp_path / "run/config.yaml")
    assert (tmp_path / "run/config.yaml").read_text() == before  # a failed write never leaves a half file


def test_a_run_folder_is_never_silently_reused_and_resume_needs_a_checkpoint(tmp_path):
    with pytest.raises(TrainingError, match="No complete checkpoint to resume from"):
        run_toy(tmp_path / "empty", resume=True)
    run_toy(tmp_path / "run", "train.steps=2")
    with pytest.raises(TrainingError, match="already holds checkpoints .latest step 2.; pass --resume"):
        run_toy(tmp_path / "run", "train.steps=2")


def test_two_time_scale_updates_follow_every(tmp_path):
    run_toy(tmp_path / "run", "train.steps=6", "optim.student.every=3")
    state = json.loads((tmp_path / "run/checkpoints/step-000006/state.json").read_text())
    steps = {name: meta["scalars"].get("0", {}).get("step") for name, meta in state["optimizers"].items()}
    adam_steps = {name: float(load_file(str(tmp_path / f"run/checkpoints/step-000006/optimizers/{name}.safetensors"))
                              ["0.step"]) for name in state["optimizers"]}
    assert steps == {"critic": None, "student": None}  # Adam's step counter is a tensor, stored in safetensors
    assert adam_steps == {"critic": 6.0, "student": 2.0}  # student at steps 0 and 3


class KeysAreNotAttributes(ToyTrainer):
    def trainable_modules(self):
        return {"net": self.student}

    def optimizer_groups(self):
        from zoo.train.trainer import OptimizerGroup

        return [OptimizerGroup("student", self.student.parameters(), self.config.optim.student)]

    def export_modules(self):
        return {"net": self.student}


def test_module_names_need_not_be_attributes_on_one_process(tmp_path):
    result = run_toy(tmp_path / "run", "train.steps=4", "train.validate_every=2", "model.two_time_scale=false",
                     cls=KeysAreNotAttributes)
    assert result.status == "finished"
    assert (result.checkpoint / "models/net.safetensors").is_file() and (result.export_dir / "net.safetensors").is_file()
    assert json.loads((tmp_path / "run/samples/step-000004/validation.json").read_text())["step"] == 4


def test_lr_schedules():
    cfg = ToyConfig().optim.student  # warm-up 2, cosine to 0.1
    assert lr_factor(cfg, 0, 10) == pytest.approx(0.5) and lr_factor(cfg, 1, 10) == pytest.approx(1.0)
    assert lr_factor(cfg, 2, 10) == pytest.approx(1.0) and lr_factor(cfg, 9, 10) == pytest.approx(0.1)
    assert lr_factor(cfg, 5, 10) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 3 / 7)))
    cfg.scheduler, cfg.warmup_steps, cfg.milestones, cfg.gamma = "multistep", 0, [3, 6], 0.5
    assert [lr_factor(cfg, s, 10) for s in (0, 2, 3, 5, 6, 9)] == [1, 1, 0.5, 0.5, 0.25, 0.25]
    cfg.scheduler, cfg.min_lr_ratio = "linear", 0.0
    assert [lr_factor(cfg, s, 5) for s in range(5)] == pytest.approx([1, 0.75, 0.5, 0.25, 0.0])


def test_bad_values_are_one_line_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="'train.mixed_precision'; valid values: no, fp16, bf16"):
        run_toy(tmp_path / "a", "train.mixed_precision=fp32")
    with pytest.raises(ConfigError, match="'optim.student.every'; use an integer >= 1"):
        run_toy(tmp_path / "b", "optim.student.every=0")


def test_bf16_mixed_precision_trains(tmp_path):
    result = run_toy(tmp_path / "run", "train.steps=4", "train.mixed_precision=bf16", "model.two_time_scale=false")
    assert result.status == "finished" and math.isfinite(result.metrics["student/loss"])


def test_training_config_module_does_not_import_torch():
    probe = ("import sys; from zoo.sdk import TrainingConfig, OptimizerConfig; import zoo.train, zoo.train.config; "
             "print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.stdout.strip() == "False", result.stderr


# -- export -------------------------------------------------------------------------------------------------------
def test_export_folder_is_complete_and_uses_the_ema_weights(tmp_path):
    result = run_toy(tmp_path / "run", "train.steps=4", "train.ema_decay=0.5")
    out = result.export_dir
    assert out == tmp_path / "run/export"
    manifest = json.loads((out / "zoo.json").read_text())
    assert manifest["method"] == "toy" and manifest["task"] == "text-to-image"
    assert manifest["base_model"] is None and manifest["sampler"] == {"steps": 1}
    assert manifest["files"] == ["student.safetensors"] and manifest["training"]["steps"] == 4
    card = (out / "README.md").read_text()
    assert card.startswith("---\n") and "library_name: distill-zoo" in card and "- toy" in card
    assert json.loads((out / "metrics.json").read_text())["step"] == 4
    assert load_config(ToyConfig, out / "config.yaml").train.ema_decay == 0.5
    exported = load_file(str(out / "student.safetensors"))
    ema = load_file(str(result.checkpoint / "models/student.ema.safetensors"))
    raw = load_file(str(result.checkpoint / "models/student.safetensors"))
    assert_identical(exported, ema)
    assert not all(torch.equal(exported[k], raw[k]) for k in raw)  # EMA differs from the raw weights

    # `zoo export` rebuilds the trainer from the run folder and writes the same folder
    from zoo.cli import main

    cli = CliRunner().invoke(main, ["export", str(tmp_path / "run"), str(tmp_path / "out")])
    assert cli.exit_code == 0, cli.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in out.iterdir())
    assert_identical(load_file(str(tmp_path / "out/student.safetensors")), exported)
    assert json.loads((tmp_path / "out/zoo.json").read_text()) == manifest


# -- CLI ----------------------------------------------------------------------------------------------------------
@pytest.fixture
def toy_registered():
    from zoo.registry import MethodRegistry, set_registry
    from zoo.spec import MethodSpec, Paper

    registry = MethodRegistry()
    registry.add(MethodSpec(name="toy", task="text-to-image", summary="Toy MLP distillation for runtime tests.",
                            paper=Paper("A toy"), sampler="zoo.train.toy:ToyTrainer",
                            trainer="zoo.train.toy:ToyTrainer", config="zoo.train.toy:ToyConfig", plugin="tests"))
    set_registry(registry)
    yield
    set_registry(None)


def test_train_takes_an_unregistered_method_spec(tmp_path):
    from zoo.spec import MethodSpec, Paper

    spec = MethodSpec(name="toy_spec", task="text-to-image", summary="Toy.", paper=Paper("A toy"),
                      sampler="zoo.train.toy:ToyTrainer", trainer="zoo.train.toy:ToyTrainer",
                      config="zoo.train.toy:ToyConfig")
    result = train(spec, toy_config("train.steps=2"), output_dir=tmp_path / "run", progress=False)
    assert result.status == "finished"
    assert json.loads((tmp_path / "run/run.json").read_text())["method"] == "toy_spec"
    assert json.loads((result.export_dir / "zoo.json").read_text())["method"] == "toy_spec"


def _cli(*args):
    from zoo.cli import main

    return CliRunner().invoke(main, list(args))


def _one_line_error(result, expected):
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1, result.output
    assert len(lines) == 1 and lines[0].startswith("Error: ") and expected in lines[0], result.output


def test_cli_train_errors_are_one_line(tmp_path, toy_registered):
    _one_line_error(_cli("train", "nosuch"), "Unknown method 'nosuch'")
    _one_line_error(_cli("train", "toy", "train.nosuch=1"), "Unknown config key 'train.nosuch'")
    _one_line_error(_cli("train", "toy", "--output-dir", str(tmp_path / "none"), "--resume", "--no-progress"),
                    "No complete checkpoint to resume from")
    _one_line_error(_cli("export", str(tmp_path), str(tmp_path / "out")), "is not a training run folder")


def test_cli_train_then_resume_longer(tmp_path, toy_registered):
    run_dir = tmp_path / "run"
    first = _cli("train", "toy", "--output-dir", str(run_dir), "--no-progress", "train.steps=3",
                 "optim.critic.lr=0.002")
    assert first.exit_code == 0, first.output
    assert "Finished 3 steps" in first.output
    again = _cli("train", "toy", "--output-dir", str(run_dir), "--no-progress")
    _one_line_error(again, "already holds checkpoints")
    # --resume starts from the run's own config.yaml (critic lr kept) and extends it
    more = _cli("train", "toy", "--output-dir", str(run_dir), "--no-progress", "--resume", "train.steps=5")
    assert more.exit_code == 0, more.output
    assert "resuming from" in more.output and "Finished 5 steps" in more.output
    assert load_config(ToyConfig, run_dir / "config.yaml").optim.critic.lr == 0.002
    assert json.loads((run_dir / "run.json").read_text())["trainer"] == "zoo.train.toy:ToyTrainer"


# -- several processes --------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_processes_under_accelerate_launch(tmp_path):
    run_dir, dump = tmp_path / "run", tmp_path / "dump"
    # accelerate's --cpu launcher starts several processes only through mpirun; --multi_gpu starts them with torchrun
    # and the runtime selects gloo on the CPU when there is no GPU
    command = [str(VENV_BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
               "-m", "zoo.train.toy", "--output-dir", str(run_dir), "--dump-weights", str(dump), "--no-progress",
               "train.steps=6", "train.checkpoint_every=3", "train.keep_last=0", "train.ema_decay=0.5"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    result = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    ranks = [json.loads((dump / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [(r["rank"], r["num_processes"], r["status"], r["step"]) for r in ranks] == [
        (0, 2, "finished", 6), (1, 2, "finished", 6)]
    assert_identical(load_file(str(dump / "rank0.safetensors")), load_file(str(dump / "rank1.safetensors")))
    # only rank 0 writes checkpoints; they hold both ranks' (different) RNG streams
    assert [Path(p).name for p in ranks[0]["checkpoints_written"]] == ["step-000003", "step-000006"]
    assert ranks[1]["checkpoints_written"] == []
    assert [step for step, _ in ckpt.list_checkpoints(run_dir)] == [3, 6]
    state = json.loads((run_dir / "checkpoints/step-000006/state.json").read_text())
    assert state["num_processes"] == 2 and state["writer_process_index"] == 0
    rng = load_file(str(run_dir / "checkpoints/step-000006/rng.safetensors"))
    assert not torch.equal(rng["torch.0"], rng["torch.1"])
    # the final weights in the checkpoint are the ones both ranks hold
    final = load_file(str(run_dir / "checkpoints/step-000006/models/student.safetensors"))
    rank0 = load_file(str(dump / "rank0.safetensors"))
    assert all(torch.equal(final[k], rank0[f"student.{k}"]) for k in final)
