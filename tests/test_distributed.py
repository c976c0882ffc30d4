"""Training on several processes with PyTorch's own engine (train.distributed=ddp|fsdp), on this CPU with gloo.

For swiftbrush (student + LoRA teacher on the shared teacher base), phased_dmd (experts + fake score, two groups at
different rates) and hyper_sd (LoRAs that live inside the teacher's UNet): 2 processes under ddp and under fsdp
follow the loss trajectory of 1 process with the same global batch (2 micro-batches per step). Under fsdp the
checkpoints are sharded through torch.distributed.checkpoint, a run stopped by SIGTERM resumes exactly, and a run
resumes on another number of processes (2 -> 1 and 1 -> 2) on the same trajectory.
"""

import json
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
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = Path(sys.executable).parent / "torchrun"
STEPS = 4
METHODS = {"swiftbrush": [], "phased_dmd": ["optim.generator.every=2"], "hyper_sd": []}
COMMON = ["train.batch_size=2", "train.log_every=1", "train.tensorboard=false", "train.checkpoint_every=2",
          "train.keep_last=0", "train.validate_every=0"]
LOSS_TOLERANCE = 1e-4
"""Relative: the same computation, with gradients averaged by an all-reduce instead of accumulated in one process."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def command(method: str, run_dir: Path, processes: int, mode: str, *extra: str, resume: bool = False) -> list[str]:
    """``zoo train`` on 1 process (2 micro-batches per step) or under torchrun on 2 (1 micro-batch each)."""
    launcher = ([sys.executable, "-m", "zoo"] if processes == 1 else
                [str(TORCHRUN), "--nproc_per_node", str(processes), "--master_addr", "127.0.0.1", "--master_port",
                 str(_free_port()), "-m", "zoo"])
    overrides = [*COMMON, *METHODS[method], f"train.distributed={mode}", f"train.steps={STEPS}",
                 f"train.gradient_accumulation_steps={2 // processes}", *extra]
    return [*launcher, "train", method, "--output-dir", str(run_dir), *(["--resume"] if resume else []), *overrides]


def train(method: str, run_dir: Path, processes: int, mode: str, *extra: str, resume: bool = False) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(command(method, run_dir, processes, mode, *extra, resume=resume), env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def losses(run_dir: Path) -> dict[int, dict[str, float]]:
    """Per step, every logged loss-like value (``group/key``; learning rates, validation and memory left out)."""
    out = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        values = {k: v for k, v in record.items() if "/" in k and not k.startswith(("lr/", "val/", "memory/"))}
        if values:
            out[record["step"]] = values
    return out


def assert_same_trajectory(run: dict, reference: dict, steps=range(1, STEPS + 1)) -> None:
    for step in steps:
        assert set(run[step]) == set(reference[step]), step
        for key, value in reference[step].items():
            assert run[step][key] == pytest.approx(value, rel=LOSS_TOLERANCE, abs=1e-7), (step, key)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Per method: the 1-process reference (fsdp mode: sharded-format checkpoints, nothing to shard) and the
    2-process ddp and fsdp runs, all of STEPS steps from the same seed."""
    root = tmp_path_factory.mktemp("distributed")
    out = {}
    for method in METHODS:
        for name, processes, mode in (("one", 1, "fsdp"), ("ddp", 2, "ddp"), ("fsdp", 2, "fsdp")):
            run_dir = root / method / name
            train(method, run_dir, processes, mode, *([] if name == "fsdp" else ["train.export_on_finish=false"]))
            out[method, name] = run_dir
    return out


@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
@pytest.mark.parametrize("method", list(METHODS))
def test_two_processes_follow_the_one_process_trajectory(runs, method, mode):
    reference = losses(runs[method, "one"])
    assert sorted(reference) == list(range(1, STEPS + 1))
    assert_same_trajectory(losses(runs[method, mode]), reference)


def memory_mib(run_dir: Path) -> float:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    reported = [r["memory/train_state_mib"] for r in records if "memory/train_state_mib" in r]
    assert len(reported) == 1, reported  # measured once, when every optimizer group has stepped
    return reported[0]


@pytest.mark.parametrize("method", list(METHODS))
def test_fsdp_on_two_processes_holds_half_the_training_state_per_process(runs, method):
    """Parameters, gradients and optimizer state are sharded: each of 2 processes holds half of what 1 process
    holds (to within the block boundaries' rounding); ddp keeps a full replica on each."""
    one = memory_mib(runs[method, "one"])
    assert memory_mib(runs[method, "fsdp"]) / one == pytest.approx(0.5, abs=0.01)
    assert memory_mib(runs[method, "ddp"]) / one == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize("method", list(METHODS))
def test_fsdp_checkpoints_are_sharded_and_the_export_is_a_normal_model(runs, method):
    run_dir = runs[method, "fsdp"]
    state = json.loads((run_dir / "checkpoints" / "step-000004" / "state.json").read_text())
    assert state["sharded"] is True and state["distributed"] == "fsdp" and state["num_processes"] == 2
    shards = sorted(p.name for p in (run_dir / "checkpoints" / "step-000004" / "dcp").iterdir())
    assert shards == [".metadata", "__0_0.distcp", "__1_0.distcp"]
    assert all(f"dcp/{name}" in state["files"] for name in shards)  # sizes and hashes recorded: verified on resume
    manifest = json.loads((run_dir / "export" / "zoo.json").read_text())
    assert manifest["method"] == method
    weights = [p for p in (run_dir / "export").rglob("*.safetensors")]
    assert weights and all("DTensor" not in str(type(t)) for p in weights for t in load_file(str(p)).values())


def test_the_fsdp_export_equals_the_one_process_weights(runs, tmp_path):
    """The sharded run's export, rebuilt from its final checkpoint, holds the weights the 1-process run reaches."""
    from zoo.train.export import export_run

    one = export_run(runs["swiftbrush", "one"], tmp_path / "one")
    for name in ("unet/diffusion_pytorch_model.safetensors",):
        mine, theirs = load_file(str(runs["swiftbrush", "fsdp"] / "export" / name)), load_file(str(one / name))
        assert mine.keys() == theirs.keys()
        worst = max((mine[k].float() - theirs[k].float()).abs().max().item() for k in mine)
        assert worst < 1e-3, worst  # fp16 export of fp32 weights that differ by float rounding


def test_fsdp_run_stopped_by_sigterm_resumes_on_the_same_trajectory(runs, tmp_path):
    run_dir = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    process = subprocess.Popen(command("swiftbrush", run_dir, 2, "fsdp", "train.checkpoint_every=0",
                                       "train.export_on_finish=false"),
                               env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    metrics = run_dir / "metrics.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if metrics.is_file() and metrics.read_text().count("\n") >= 1:
            os.killpg(process.pid, signal.SIGTERM)
            break
        time.sleep(0.05)
    out, err = process.communicate(timeout=300)
    assert process.returncode != 0, "the run finished before it was stopped"
    written = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert len(written) == 1 and written[0] < "step-000004", written + [err[-2000:]]
    stopped = int(written[0].split("-")[1])
    assert "Stopped by SIGTERM" in out + err

    train("swiftbrush", run_dir, 2, "fsdp", "train.export_on_finish=false", resume=True)
    assert_same_trajectory(losses(run_dir), losses(runs["swiftbrush", "one"]), range(stopped + 1, STEPS + 1))


@pytest.mark.parametrize("source,processes", [("fsdp", 1), ("one", 2)], ids=["2-to-1", "1-to-2"])
def test_fsdp_run_resumes_on_another_number_of_processes(runs, tmp_path, source, processes):
    run_dir = tmp_path / "moved"
    shutil.copytree(runs["swiftbrush", source], run_dir)
    shutil.rmtree(run_dir / "checkpoints" / "step-000004")
    (run_dir / "metrics.jsonl").write_text("".join(line + "\n" for line in
                                                   (run_dir / "metrics.jsonl").read_text().splitlines()[:2]))
    out = train("swiftbrush", run_dir, processes, "fsdp", "train.export_on_finish=false", resume=True)
    assert "resuming from" in out and "config differs" not in out  # 2 x 1 and 1 x 2 micro-batches: one trajectory
    assert_same_trajectory(losses(run_dir), losses(runs["swiftbrush", "one"]), range(3, STEPS + 1))


# -- without processes ------------------------------------------------------------------------------------------------
def test_a_parameter_holder_must_name_the_modules_that_run_it():
    from zoo.errors import TrainingError
    from zoo.train.parallel import expand_units

    holder = torch.nn.Module()
    holder.params = torch.nn.ParameterList([torch.nn.Parameter(torch.zeros(2))])
    experts = torch.nn.ModuleList([torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)])
    assert list(expand_units({"experts": experts})) == ["experts.0", "experts.1"]
    with pytest.raises(TrainingError, match="override parallel_modules"):
        expand_units({"lora": holder})


def test_retie_replaces_every_reference_to_a_sharded_parameter():
    from zoo.train.parallel import retie

    old, other = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.ones(2))
    new = torch.nn.Parameter(torch.full((2,), 5.0))

    class Holder:
        pass

    holder = Holder()
    holder.params = {"student": [old, other]}
    holder.pair = (old, [old])
    holder.container = torch.nn.ParameterList([old])
    holder.single = old
    assert retie(holder, {id(old): new}) == 4
    assert holder.params["student"][0] is new and holder.params["student"][1] is other
    assert holder.pair[1][0] is new and holder.pair[0] is old  # a tuple cannot change in place
    assert holder.container[0] is new and holder.single is new


def test_micro_batch_seeds_depend_on_the_step_group_and_stream_only():
    from zoo.train.parallel import micro_seed

    seeds = {micro_seed(0, s, g, v) for s in range(3) for g in range(2) for v in range(4)}
    assert len(seeds) == 24 and micro_seed(0, 1, 0, 1) == micro_seed(0, 1, 0, 1)
    assert all(0 <= seed < 2**63 for seed in seeds)


def test_unknown_distributed_mode_is_one_line():
    from zoo.errors import ConfigError
    from zoo.train.config import TrainingConfig, check_training_config

    with pytest.raises(ConfigError, match="train.distributed.*valid values: auto, ddp, fsdp"):
        check_training_config(TrainingConfig(distributed="deepspeed"))
