"""The hardening matrix: bad, careless or hostile input gets one line, touches nothing outside its place.

Each case is one row of the hardening issue, as a user or an attacker would give it, through the same entry point
they would use (the CLI, the loader, the hub). Section 1: every file a manifest names stays inside its model folder.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from fixtures_hub import hub_server, olah_server  # noqa: F401  (pytest fixtures)

from zoo import hub
from zoo.cli import main
from zoo.errors import FileMissingError, UnsafePathError
from zoo.loading import load_sampler
from zoo.paths import confine, relative_name

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"
OUTSIDE_NAMES = ["../../../../../../etc/passwd", "/etc/shadow", "..\\..\\secret", "~/.ssh/id_rsa", "C:/x",
                 "lora/../../zoo.json"]


def _one_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


def _student(tmp_path: Path, plugin: str, **manifest_changes) -> Path:
    """A copy of a committed testbed student with its manifest changed."""
    folder = tmp_path / plugin
    shutil.copytree(PLUGINS / plugin / "testbed", folder)
    manifest = json.loads((folder / "zoo.json").read_text())
    manifest.update(manifest_changes)
    (folder / "zoo.json").write_text(json.dumps(manifest))
    return folder


# -- the one confinement function ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", OUTSIDE_NAMES)
def test_names_that_leave_the_folder_are_refused_as_text(tmp_path, name):
    with pytest.raises(UnsafePathError, match="outside the model folder"):
        confine(tmp_path, name, what="LoRA file", source="zoo.json")


def test_a_link_that_leads_out_is_refused_and_one_inside_is_kept(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "secret.txt").write_text("x")
    (tmp_path / "model" / "weights.safetensors").write_text("w")
    os.symlink(tmp_path / "secret.txt", tmp_path / "model" / "out.safetensors")
    os.symlink("weights.safetensors", tmp_path / "model" / "alias.safetensors")
    with pytest.raises(UnsafePathError, match="through a link"):
        confine(tmp_path / "model", "out.safetensors", what="LoRA file", source="zoo.json")
    assert confine(tmp_path / "model", "alias.safetensors", what="f", source="s") == \
        tmp_path / "model" / "alias.safetensors"
    assert relative_name("./sub/./a.safetensors", what="f", source="s") == "sub/a.safetensors"


def test_the_refusal_does_not_tell_whether_the_file_exists(tmp_path):
    messages = []
    for name in ("/etc/passwd", "/etc/no-such-file-here"):
        with pytest.raises(UnsafePathError) as info:
            confine(tmp_path, name, what="LoRA file", source="zoo.json")
        messages.append(str(info.value).replace(name, "NAME"))
    assert messages[0] == messages[1]


# -- manifests of local folders -------------------------------------------------------------------------------------
@pytest.mark.parametrize("lora", ["../../../../../../etc/passwd", "/etc/shadow"])
def test_hyper_sd_manifest_lora_outside_the_folder_is_refused_by_the_cli(tmp_path, lora):
    folder = _student(tmp_path, "hyper_sd", lora=lora)
    result = CliRunner().invoke(main, ["run", str(folder), "-p", "a circle", "-o", str(tmp_path / "x.png")])
    assert result.exit_code == 1
    line = _one_line(result.output)
    assert line.startswith("Error: The LoRA file") and "outside the model folder" in line
    assert "passwd" not in line.split("outside")[1]
    assert not (tmp_path / "x.png").exists()


def test_hyper_sd_manifest_lora_linked_out_of_the_folder_is_refused(tmp_path):
    folder = _student(tmp_path, "hyper_sd")
    (tmp_path / "elsewhere.safetensors").write_bytes((folder / "lora.safetensors").read_bytes())
    (folder / "lora.safetensors").unlink()
    os.symlink(tmp_path / "elsewhere.safetensors", folder / "lora.safetensors")
    with pytest.raises(UnsafePathError, match="through a link"):
        load_sampler(model=str(folder))


def test_hyper_sd_manifest_lora_may_name_a_hub_file_but_not_a_local_folder(tmp_path):
    folder = _student(tmp_path, "hyper_sd", lora="/etc::passwd")
    with pytest.raises(UnsafePathError, match="path on this machine"):
        load_sampler(model=str(folder))


@pytest.mark.parametrize("method, key", [("agd", "adapter_file"), ("lora_distill", "lora"),
                                         ("lora_distill", "guidance_embedding")])
def test_every_file_a_manifest_names_is_confined(tmp_path, method, key):
    folder = _student(tmp_path, method, **{key: "/etc/passwd"})
    with pytest.raises(UnsafePathError, match="outside the model folder"):
        load_sampler(model=str(folder))


def test_local_base_model_that_is_no_pipeline_is_one_line(tmp_path):
    folder = _student(tmp_path, "swiftbrush", base_model="/etc")
    result = CliRunner().invoke(main, ["run", str(folder), "-p", "a circle", "-o", str(tmp_path / "x.png")])
    assert result.exit_code == 1
    assert "is not a diffusers Stable Diffusion folder" in _one_line(result.output)
    with pytest.raises(FileMissingError, match="no unet/config.json"):
        load_sampler(model=str(_student(tmp_path / "b", "hyper_sd", base_model=str(tmp_path))))


def test_requested_hub_files_cannot_be_absolute(tmp_path):
    (tmp_path / "m").mkdir()
    with pytest.raises(UnsafePathError):
        hub.hf_hub_file(str(tmp_path / "m"), "/etc/passwd")


# -- manifests of hub repositories ------------------------------------------------------------------------------------
def _hub_student(hub_server, repo_id: str, method: str, **manifest_changes) -> str:
    manifest = json.loads((PLUGINS / method / "testbed" / "zoo.json").read_text())
    manifest.update(manifest_changes)
    hub_server.add_repo(repo_id, {"": PLUGINS / method / "testbed"})
    hub_server.add_repo(repo_id, {"zoo.json": json.dumps(manifest)})
    return f"hf-hub:{repo_id}"


@pytest.mark.parametrize("lora", ["../../../../../../etc/passwd", "/etc/shadow", "../../blobs/../../x"])
def test_hub_manifest_lora_outside_the_snapshot_is_one_line(hub_server, tmp_path, lora):
    ref = _hub_student(hub_server, "evil/lora", "hyper_sd", lora=lora)
    result = CliRunner().invoke(main, ["run", ref, "-p", "a circle", "-o", str(tmp_path / "x.png")])
    assert result.exit_code == 1
    line = _one_line(result.output)
    assert "outside the model folder" in line and "zoo.json of hf-hub:evil/lora" in line


def test_hub_manifest_lora_inside_the_snapshot_runs(hub_server, tmp_path):
    """The confinement root of a hub snapshot is its repository folder: snapshot files are links into blobs/."""
    ref = _hub_student(hub_server, "good/lora", "hyper_sd")
    resolved = hub.resolve_model(ref)
    assert resolved.file("lora.safetensors").resolve().is_file()
    spec, sampler = load_sampler(model=ref)
    _, local = load_sampler(model=str(PLUGINS / "hyper_sd" / "testbed"))
    assert spec.name == "hyper_sd"
    assert sampler("a red circle", seed=0).latents.equal(local("a red circle", seed=0).latents)


@pytest.mark.parametrize("base_model", ["/etc", "~/models/sd15", "./teacher", "local-dir:/etc"])
def test_hub_manifest_may_not_name_a_local_base_model(hub_server, base_model):
    ref = _hub_student(hub_server, "evil/base", "swiftbrush", base_model=base_model)
    with pytest.raises(UnsafePathError, match="path on this machine"):
        load_sampler(model=ref)


def test_hub_manifest_base_model_is_a_hub_id_even_when_a_folder_has_its_name(hub_server, tmp_path, monkeypatch):
    """``base_model: "org/name"`` in a downloaded manifest means the hub repository, never ./org/name."""
    ref = _hub_student(hub_server, "evil/shadow", "swiftbrush", base_model="shadow/teacher")
    (tmp_path / "shadow" / "teacher" / "unet").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    resolved = hub.resolve_model(ref)
    assert hub.manifest_model_ref(resolved) == "hf-hub:shadow/teacher"
    assert hub.manifest_model_ref(hub.resolve_model(str(PLUGINS / "swiftbrush" / "testbed"))) == \
        "pkg:zoo.testbed/weights/teacher"


# -- 5. one line instead of a traceback -------------------------------------------------------------------------------
def _cli(*args) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, _one_line(result.output)


def test_a_seed_out_of_range_is_one_line(tmp_path):
    code, line = _cli("run", "--prompt", "x", "--seed", "99999999999999999999999", "-o", tmp_path / "a.png")
    assert code == 1 and line.startswith("Error: seed=99999999999999999999999 is out of range")
    assert not (tmp_path / "a.png").exists()


def test_a_nasa_alpha_that_is_no_number_is_one_line(tmp_path):
    code, line = _cli("run", "snoopi", "--prompt", "x", "--negative-prompt", "red", "--set", "nasa_alpha=abc",
                      "-o", tmp_path / "a.png")
    assert code == 1 and line == "Error: nasa_alpha='abc' is not a number; use e.g. nasa_alpha=0.3 (0 = off)"


def test_a_config_file_whose_top_level_is_a_list_is_one_line(tmp_path):
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    code, line = _cli("train", "swiftbrush", "--config", tmp_path / "list.yaml", "--output-dir", tmp_path / "run")
    assert code == 1 and "holds a list at the top level; it must map keys to values" in line


@pytest.mark.parametrize("content", [b"root:x:0:0:root:/root:/bin/bash\n", bytes(range(7, 256)) * 9])
def test_a_weights_file_that_is_no_checkpoint_is_called_corrupt_not_code(tmp_path, content):
    from PIL import Image

    weights = tmp_path / "model.pth"
    weights.write_bytes(content)
    Image.new("RGB", (8, 8)).save(tmp_path / "in.png")
    code, line = _cli("upscale", "imdn", "--model", weights, tmp_path / "in.png", "-o", tmp_path / "out.png")
    assert code == 1 and "model.pth is not a PyTorch checkpoint (it is corrupt or another kind of file)" in line
    assert "pickled" not in line


def test_an_output_path_that_cannot_be_written_is_refused_before_any_work(tmp_path, monkeypatch):
    import zoo.loading

    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded before the output path was checked")

    monkeypatch.setattr(zoo.loading, "load_sampler", no_loading)
    (tmp_path / "file.txt").write_text("not a folder")
    code, line = _cli("run", "--prompt", "x", "-o", tmp_path / "file.txt" / "a.png")
    assert code == 1 and line.startswith(f"Error: Cannot write into {tmp_path / 'file.txt'}")
    code, line = _cli("upscale", "imdn", "--model", tmp_path, tmp_path / "file.txt", "-o", tmp_path / "file.txt" / "b.png")
    assert code == 1 and "Cannot write into" in line


def test_a_model_folder_missing_weights_is_one_line(tmp_path):
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "teacher"
    shutil.copytree(Path(__file__).resolve().parents[1] / "zoo" / "testbed" / "weights" / "teacher", folder)
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    state = load_file(str(weights))
    del state["conv_out.weight"]
    save_file(state, str(weights))
    code, line = _cli("run", folder, "--prompt", "x", "-o", tmp_path / "a.png")
    assert code == 1 and "incomplete: 1 tensor(s) missing (e.g. 'conv_out.weight')" in line


def test_manifest_sampler_settings_of_the_wrong_type_are_one_line(tmp_path):
    folder = _student(tmp_path, "swiftbrush", sampler={"steps": "many", "timestep": 999})
    code, line = _cli("run", folder, "--prompt", "x", "-o", tmp_path / "a.png")
    assert code == 1 and line == (f"Error: steps='many' in the zoo.json of {folder} is not a whole number of steps "
                                  f">= 1; fix it (e.g. 4)")


def test_a_plugin_target_whose_module_is_missing_is_one_line():
    from zoo.errors import PluginError
    from zoo.spec import MethodSpec, Paper

    spec = MethodSpec(name="ghost", task="text-to-image", summary="s", paper=Paper("p"),
                      sampler="zoo_no_such_plugin_module.sampler:build", trainer="x:y", config="x:y", plugin="ghosts")
    with pytest.raises(PluginError) as info:
        spec.load("sampler")
    assert str(info.value) == ("Method 'ghost' (plugin ghosts): cannot import 'zoo_no_such_plugin_module.sampler' "
                               "for its sampler (ModuleNotFoundError: No module named 'zoo_no_such_plugin_module'); "
                               "reinstall or fix the plugin")


# -- 6. no silent wrong result ---------------------------------------------------------------------------------------
def test_all_nan_weights_are_one_line_instead_of_a_garbage_image(tmp_path):
    from safetensors.torch import load_file, save_file

    folder = _student(tmp_path, "swiftbrush")
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    save_file({k: v.clone().fill_(float("nan")) for k, v in load_file(str(weights)).items()}, str(weights))
    code, line = _cli("run", folder, "--prompt", "x", "-o", tmp_path / "a.png")
    assert code == 1 and "produced NaN or infinite values" in line
    assert not (tmp_path / "a.png").exists()


def test_a_folder_upscale_skips_unreadable_images_and_fails_at_the_end(tmp_path):
    import torch
    from PIL import Image

    from zoo_plugins.imdn.arch import IMDN

    torch.manual_seed(0)
    torch.save(IMDN(num_features=16, num_blocks=2, upscale=2).state_dict(), tmp_path / "IMDN_x2.pth")
    (tmp_path / "in").mkdir()
    Image.new("RGB", (8, 8), (10, 200, 30)).save(tmp_path / "in" / "a.png")
    (tmp_path / "in" / "b.png").write_bytes(b"not an image")
    Image.new("RGB", (8, 8), (200, 10, 30)).save(tmp_path / "in" / "c.png")
    result = CliRunner().invoke(main, ["upscale", "imdn", "--model", str(tmp_path / "IMDN_x2.pth"),
                                       str(tmp_path / "in"), "-o", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "c.png"]
    assert "Error: 1 of 3 images could not be read and were skipped (b.png)" in result.output


def test_a_manifests_task_is_checked_before_anything_loads(tmp_path):
    folder = _student(tmp_path, "swiftbrush", task="super-resolution")
    code, line = _cli("run", folder, "--prompt", "x", "-o", tmp_path / "a.png")
    assert code == 1 and line == (f"Error: {folder} is a super-resolution model (its zoo.json says so) but swiftbrush "
                                  f"is a text-to-image method; run it with a super-resolution method")
    imdn = _student(tmp_path / "i", "swiftbrush", method="imdn")
    code, line = _cli("run", imdn, "--prompt", "x", "-o", tmp_path / "b.png")
    assert code == 1 and "imdn is a super-resolution method" in line and "text-to-image" in line
    assert "Unknown IMDN sampler option" not in line


def test_only_the_text_files_a_model_needs_are_downloaded_by_default(hub_server):
    hub_server.add_repo("big/notes", {"unet/config.json": "{}", "tokenizer/merges.txt": "a b\n",
                                      "tokenizer/vocab.txt": "a\n", "training_log.txt": "x" * 200_000})
    files = {p.relative_to(hub.resolve_model("big/notes").path).as_posix()
             for p in hub.resolve_model("big/notes").path.rglob("*") if p.is_file()}
    assert files == {"unet/config.json", "tokenizer/merges.txt", "tokenizer/vocab.txt"}
    assert (hub.resolve_model("big/notes", allow_patterns=["*.txt"]).path / "training_log.txt").is_file()


def test_stale_partial_downloads_are_removed_and_fresh_ones_kept(hub_server):
    import time

    hub_server.add_repo("killed/download", {"unet/config.json": "{}"})
    root = hub.resolve_model("hf-hub:killed/download").root
    stale, fresh = root / "blobs" / "aaaa.incomplete", root / "blobs" / "bbbb.incomplete"
    stale.write_bytes(b"x" * 1000)
    fresh.write_bytes(b"y" * 1000)
    old = time.time() - hub.STALE_PARTIAL_SECONDS - 60
    os.utime(stale, (old, old))
    hub.resolve_model("hf-hub:killed/download")
    assert not stale.exists() and fresh.exists()


def test_the_harness_refuses_to_save_outside_the_output_folder(tmp_path):
    from zoo.comfy_harness import ComfyHarness

    with ComfyHarness(PLUGINS.parent / "nodes", base_dir=tmp_path / "comfy") as comfy:
        from PIL import Image

        Image.new("RGB", (8, 8)).save(comfy.input_dir / "x.png")
        outcome = comfy.run({"1": {"class_type": "LoadImage", "inputs": {"image": "x.png"}},
                             "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0],
                                                                         "filename_prefix": "../../escaped"}}})
    assert not outcome.ok and "outside the output folder" in outcome.describe()
    assert not list(tmp_path.rglob("escaped*"))


# -- 4. training never leaves a run it cannot resume from --------------------------------------------------------------
def _toy(run_dir: Path, *overrides: str, resume: bool = False):
    import torch

    from zoo.config import load_config
    from zoo.train.runtime import train
    from zoo.train.toy import ToyConfig, ToyTrainer

    torch.set_num_threads(1)
    return train(ToyTrainer(load_config(ToyConfig, None, list(overrides))), output_dir=run_dir, resume=resume,
                 progress=False)


TOY = ("train.steps=4", "train.checkpoint_every=2", "train.keep_last=0", "train.export_on_finish=false")


def test_a_checkpoint_write_that_fails_is_one_line_and_keeps_the_previous_one(tmp_path, monkeypatch):
    from safetensors import SafetensorError

    from zoo.errors import TrainingError
    from zoo.train import checkpoint

    real = checkpoint.save_tensors

    def disk_full_at_step_4(tensors, path, metadata=None):
        if path.parent.name.startswith("step-000004.tmp") or path.parent.parent.name.startswith("step-000004.tmp"):
            raise SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "
                                  "\"No space left on device\" })")
        return real(tensors, path, metadata)

    monkeypatch.setattr(checkpoint, "save_tensors", disk_full_at_step_4)
    with pytest.raises(TrainingError) as info:
        _toy(tmp_path / "run", *TOY)
    message = str(info.value)
    assert "\n" not in message and "Could not write checkpoint step-000004" in message and "No space left" in message
    assert "step-000002 is intact and the partial one was removed" in message
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["step-000002"]
    monkeypatch.setattr(checkpoint, "save_tensors", real)
    assert _toy(tmp_path / "run", *TOY, resume=True).status == "finished"


@pytest.mark.parametrize("damage", ["truncate", "state"])
def test_resume_skips_a_damaged_newest_checkpoint_and_says_why(tmp_path, capsys, damage):
    from safetensors.torch import load_file

    reference = _toy(tmp_path / "ref", *TOY)
    _toy(tmp_path / "run", *TOY)
    newest = tmp_path / "run" / "checkpoints" / "step-000004"
    if damage == "truncate":
        weights = next((newest / "models").glob("*.safetensors"))
        weights.write_bytes(weights.read_bytes()[:-64])
        why = f"models/{weights.name} is truncated or changed"
    else:
        (newest / "state.json").write_text("{not json")
        why = "its state.json is unreadable"
    capsys.readouterr()
    resumed = _toy(tmp_path / "run", *TOY, resume=True)  # from step 2: steps 3 and 4 again, step 4 rewritten
    assert f"Skipping checkpoint step-000004: {why}" in capsys.readouterr().err
    assert resumed.status == "finished" and resumed.step == 4

    def weights(run: Path) -> dict:
        return load_file(str(next((run / "checkpoints" / "step-000004" / "models").glob("*.safetensors"))))

    expected, got = weights(reference.run_dir), weights(tmp_path / "run")
    assert expected.keys() == got.keys() and all(got[k].equal(v) for k, v in expected.items())


def test_a_second_run_into_the_same_folder_is_refused_naming_the_first(tmp_path):
    import subprocess
    import sys

    from zoo.errors import TrainingError

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, sys, time\n"
        f"f = open({str(run_dir / '.zoo-train.lock')!r}, 'a+')\n"
        "fcntl.flock(f, fcntl.LOCK_EX)\n"
        "f.write('process 4242 on elsewhere'); f.flush(); print('locked', flush=True); time.sleep(60)\n")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(TrainingError) as info:
            _toy(run_dir, *TOY)
        assert str(info.value) == (f"{run_dir} is in use by another zoo train (process 4242 on elsewhere); wait for "
                                   f"it to finish or choose another --output-dir")
    finally:
        holder.kill()
        holder.wait()
    assert _toy(run_dir, *TOY).status == "finished"  # the lock goes with its process


def test_a_run_folder_that_cannot_be_written_is_one_line(tmp_path):
    from zoo.errors import TrainingError

    (tmp_path / "file").write_text("x")
    with pytest.raises(TrainingError, match=r"^Cannot write the run folder .*file/run \(Not a directory\); choose a "
                                            r"writable --output-dir$"):
        _toy(tmp_path / "file" / "run", *TOY)


def test_an_interrupted_training_exits_non_zero(tmp_path, monkeypatch):
    import zoo.train.runtime
    from zoo.train.runtime import RunResult

    def interrupted(*args, **kwargs):
        return RunResult(tmp_path, 3, "interrupted", tmp_path, None, {}, [], "Stopped by SIGTERM")

    monkeypatch.setattr(zoo.train.runtime, "train", interrupted)
    result = CliRunner().invoke(main, ["train", "swiftbrush", "--output-dir", str(tmp_path / "run")])
    assert result.exit_code == 3 and "Interrupted at step 3" in result.output


def test_fp16_on_cpu_says_it_trains_in_fp32(tmp_path, capsys):
    _toy(tmp_path / "run", "train.steps=1", "train.mixed_precision=fp16", "train.export_on_finish=false")
    assert "train.mixed_precision=fp16 has no effect on CPU" in capsys.readouterr().err


def test_resuming_another_methods_run_names_the_method(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.json").write_text(json.dumps({"method": "swiftbrush"}))
    (run_dir / "config.yaml").write_text("guidance_scale: 4.5\n")
    code, line = _cli("train", "snoopi", "--output-dir", run_dir, "--resume")
    assert code == 1 and line == (f"Error: {run_dir} holds a swiftbrush run, not snoopi; resume it with: zoo train "
                                  f"swiftbrush --output-dir {run_dir} --resume")


# -- 2. servers do not expose the machine ------------------------------------------------------------------------------
def test_server_model_roots_refuse_the_same_way_whether_or_not_a_path_exists(tmp_path):
    from zoo.paths import ModelRoots

    (tmp_path / "models" / "mine").mkdir(parents=True)
    roots = ModelRoots([tmp_path / "models"])
    assert roots.check(str(tmp_path / "models" / "mine")) == str(tmp_path / "models" / "mine")
    assert roots.check("org/name") == "org/name" and roots.check("pkg:zoo.testbed/weights/teacher")
    assert roots.check("") == ""
    messages = set()
    for outside in ("/etc", "/etc/passwd", "/no/such/folder", "~/.ssh", str(tmp_path / "models" / ".." / "x"),
                    "../../etc"):
        with pytest.raises(UnsafePathError) as info:
            roots.check(outside)
        messages.add(str(info.value).replace(repr(outside.strip()), "REF"))
    assert len(messages) == 1 and "is not available on this server" in messages.pop()
    os.symlink("/etc", tmp_path / "models" / "link")
    with pytest.raises(UnsafePathError):
        roots.check(str(tmp_path / "models" / "link"))  # a link inside a root that leads out of it


def test_the_nodes_refuse_paths_outside_comfyuis_model_folders_alike(tmp_path, monkeypatch):
    from zoo.comfy_harness import ComfyHarness

    monkeypatch.delenv("ZOO_MODEL_ROOTS", raising=False)
    with ComfyHarness(PLUGINS.parent / "nodes", base_dir=tmp_path / "comfy") as comfy:
        loader, upscaler = comfy.mappings["DistillZooLoadModel"], comfy.mappings["DistillZooLoadUpscaleModel"]
        answers = {path: (loader.VALIDATE_INPUTS(model=path), upscaler.VALIDATE_INPUTS(model=path))
                   for path in ("/etc", "/etc/passwd", str(tmp_path / "nothing-here"))}
    texts = {a.replace(repr(p), "REF") for p, pair in answers.items() for a in pair}
    assert len(texts) == 1 and "is not available on this server" in texts.pop()


def test_the_app_shows_only_zoo_errors_to_clients(caplog):
    import gradio as gr

    from zoo.app import GENERIC_FAILURE, _guarded

    def leaky():
        raise RuntimeError("secret: /home/operator/.cache/token")

    with pytest.raises(gr.Error) as info:
        _guarded(leaky)()
    assert str(info.value.message) == GENERIC_FAILURE and "secret" in caplog.text


# -- 3. work is bounded before it starts --------------------------------------------------------------------------------
def test_an_image_over_the_pixel_limit_is_refused_before_any_work(tmp_path, monkeypatch):
    code, line = _cli("run", "--prompt", "x", "--width", "100000", "--height", "100000", "-o", tmp_path / "a.png")
    assert code == 1 and line == ("Error: 100000x100000 is 10,000,000,000 pixels per image, over the limit of "
                                  "4,194,304; make the image smaller, or raise the limit with --max-pixels or "
                                  "ZOO_MAX_PIXELS")
    monkeypatch.setenv("ZOO_MAX_PIXELS", "256")
    code, line = _cli("run", "--prompt", "x", "-o", tmp_path / "b.png")  # 32x32 = 1,024 pixels
    assert code == 1 and "over the limit of 256" in line
    result = CliRunner().invoke(main, ["run", "--prompt", "x", "--steps", "1", "--max-pixels", "1024", "-o",
                                       str(tmp_path / "c.png")])
    assert result.exit_code == 0 and (tmp_path / "c.png").is_file()


def test_a_batch_that_does_not_fit_in_memory_is_refused_with_both_numbers(tmp_path, monkeypatch):
    import zoo.limits

    monkeypatch.setattr(zoo.limits, "available_bytes", lambda device: 64 * 2**20)  # a 64 MiB machine
    code, line = _cli("run", "--prompt", "x", "-b", "100000", "-o", tmp_path / "a.png")
    assert code == 1 and line == ("Error: 100000 image(s) of 32x32 need about 0.4 GiB but 0.1 GiB are available on "
                                  "cpu; lower the batch size or the image size")


def test_large_batches_run_in_chunks_with_the_same_images(monkeypatch):
    import torch

    import zoo.limits

    _, sampler = load_sampler(model=str(PLUGINS / "swiftbrush" / "testbed"))
    whole = sampler("a red circle", batch_size=5, seed=3, output_type="pt")
    monkeypatch.setattr(zoo.limits, "MAX_CHUNK", 2)
    calls = []
    chunked = sampler("a red circle", batch_size=5, seed=3, output_type="pt",
                      progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 3), (2, 3), (3, 3)]  # three chunks of one step each
    assert chunked.nfe == whole.nfe == 1 and chunked.images.shape == whole.images.shape
    torch.testing.assert_close(chunked.latents, whole.latents, rtol=1e-4, atol=1e-4)  # batch-size rounding only


def test_the_sampler_node_refuses_an_image_over_the_pixel_limit_at_validation(tmp_path):
    from zoo.comfy_harness import ComfyHarness

    with ComfyHarness(PLUGINS.parent / "nodes", base_dir=tmp_path / "comfy") as comfy:
        node = comfy.mappings["DistillZooSampler"]
        assert node.VALIDATE_INPUTS(width=2048, height=2048) is True
        assert "over the limit of 4,194,304 pixels" in node.VALIDATE_INPUTS(width=8192, height=8192)


def test_a_pickle_only_repo_says_the_weights_were_skipped_and_how_to_get_them(hub_server, tmp_path):
    import torch

    teacher = Path(__file__).resolve().parents[1] / "zoo" / "testbed" / "weights" / "teacher"
    files = {p.relative_to(teacher).as_posix(): p for p in teacher.rglob("*") if p.is_file()
             and not p.name.endswith(".safetensors")}
    from safetensors.torch import load_file

    for part in ("unet", "vae", "text_encoder"):  # the same model with pickled (.bin) weights only
        weights = next((teacher / part).glob("*.safetensors"))
        torch.save(load_file(str(weights)), tmp_path / f"{part}.bin")
        name = "pytorch_model.bin" if part == "text_encoder" else "diffusion_pytorch_model.bin"
        files[f"{part}/{name}"] = tmp_path / f"{part}.bin"
    hub_server.add_repo("pickles/only", files)
    result = CliRunner().invoke(main, ["download", "pickles/only"])
    assert result.exit_code == 0
    assert "Note: 3 pickle weight file(s) were not downloaded" in result.output and "--allow-pickle" in result.output
    code, line = _cli("run", "pickles/only", "--prompt", "x", "-o", tmp_path / "a.png")
    assert code == 1 and "has no safetensors weights (pickle weights .bin/.ckpt are skipped unless --allow-pickle)" in line
    assert CliRunner().invoke(main, ["download", "pickles/only", "--allow-pickle"]).exit_code == 0
    result = CliRunner().invoke(main, ["run", "pickles/only", "--prompt", "x", "--steps", "1", "-o",
                                       str(tmp_path / "b.png")])
    assert result.exit_code == 0 and (tmp_path / "b.png").is_file()  # the trusted pickles, loaded weights-only


def test_a_hub_repo_holding_the_official_imdn_pth_is_fetched_and_runs(hub_server, tmp_path):
    import torch
    from PIL import Image

    from zoo_plugins.imdn.arch import IMDN

    torch.manual_seed(0)
    torch.save(IMDN(num_features=16, num_blocks=2, upscale=2).state_dict(), tmp_path / "IMDN_x2.pth")
    hub_server.add_repo("official/imdn", {"IMDN_x2.pth": tmp_path / "IMDN_x2.pth", "other.bin": b"x" * 100})
    Image.new("RGB", (8, 8), (10, 200, 30)).save(tmp_path / "in.png")
    result = CliRunner().invoke(main, ["upscale", "imdn", "--model", "hf-hub:official/imdn", str(tmp_path / "in.png"),
                                       "-o", str(tmp_path / "out.png")])
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "out.png").size == (16, 16)
    snapshots = list((hub.hub_cache_dir() / "models--official--imdn" / "snapshots").iterdir())
    assert [sorted(p.name for p in snapshot.iterdir()) for snapshot in snapshots] == [["IMDN_x2.pth"]]


def test_the_nodes_show_clients_only_one_line_errors(tmp_path, caplog):
    from zoo.comfy_harness import ComfyHarness

    class Secret:
        def __getattr__(self, name):
            raise AttributeError("/home/operator/secret-path")

    with ComfyHarness(PLUGINS.parent / "nodes", base_dir=tmp_path / "comfy") as comfy:
        node = comfy.mappings["DistillZooFewStepSchedule"]()
        with pytest.raises(RuntimeError) as info:
            node.build(Secret(), "re-noise (DMD2, Phased DMD)", 4, 0.3)
        import folder_paths

        (tmp_path / "models").mkdir()
        folder_paths.add_model_folder_path("diffusion_models", str(tmp_path / "models"))
        with pytest.raises(UnsafePathError, match="points outside the model folder"):  # zoo errors pass as they are
            comfy.mappings["DistillZooApplyModel"]().apply(None, "../../etc/zoo.json", 1.0, -1.0)
    assert str(info.value) == ("DistillZooFewStepSchedule failed (AttributeError); the details are in the ComfyUI "
                               "server's log")
    assert info.value.__cause__ is None and "secret-path" in caplog.text
