"""Publishing (issue #20 §3): ``zoo push``, ``zoo train/export --push-to-hub``, ``zoo.publish.push_folder``, the model
card's hub metadata and usage line, and the one-line errors of uploads and of presets that need downloads.

Uploads go through huggingface_hub's real client to ``fixtures_upload_hub`` -- a test-only imitation of the hub's
upload API (no PyPI package implements one; see that module) that commits into the git repositories the olah server
of ``fixtures_hub`` serves -- so a pushed model is downloaded and run through olah, end to end.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from fixtures_hub import hub_server, olah_server  # noqa: F401  (pytest fixtures)
from fixtures_upload_hub import READ_TOKEN, WRITE_TOKEN, upload_hub, upload_server  # noqa: F401

from zoo.cli import main

ROOT = Path(__file__).resolve().parents[1]
TRAIN_ARGS = ["train", "lora_distill", "--config", str(ROOT / "plugins/lora_distill/testbed.yaml"), "train.steps=1",
              "train.batch_size=2", "train.checkpoint_every=1", "train.log_every=1", "--no-progress"]
PUSHED = "zoo-org/lora-tiny"


def _dead_endpoint() -> str:
    import socket

    with socket.socket() as sock:  # a port nobody listens on once closed
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def _error_line(result) -> str:
    """The CLI failed with exactly one line, ``Error: ...``, and no traceback."""
    assert result.exit_code != 0, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    print(lines[0])  # shown with pytest -s
    return lines[0]


def _usage_line(card_text: str) -> str:
    lines = [line for line in card_text.splitlines() if line.startswith("zoo run --model ")]
    assert len(lines) == 1, card_text
    return lines[0]


@pytest.fixture(scope="module")
def pushed(upload_server, tmp_path_factory):  # noqa: F811
    """``zoo train lora_distill ... --push-to-hub zoo-org/lora-tiny``: one short run, its export pushed on finish."""
    run = tmp_path_factory.mktemp("publish") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_ENDPOINT", upload_server.endpoint)
        mp.setenv("HF_TOKEN", WRITE_TOKEN)
        mp.delenv("HF_HUB_OFFLINE", raising=False)
        result = CliRunner().invoke(main, [*TRAIN_ARGS, "--output-dir", str(run), "--push-to-hub", PUSHED])
    assert result.exit_code == 0, result.output
    return run, result.output


@pytest.fixture
def export_copy(pushed, tmp_path):
    """A private copy of the pushed run's export folder (pushing rewrites its card's usage line)."""
    run, _ = pushed
    folder = tmp_path / "export"
    shutil.copytree(run / "export", folder)
    return folder


# -- end to end: train --push-to-hub, then download and run through olah ------------------------------------------
def test_train_pushes_the_final_export_and_it_runs_from_the_hub(pushed, upload_hub, hub_server, tmp_path,
                                                                monkeypatch):
    run, output = pushed
    assert f"Uploaded {run / 'export'} to {PUSHED}: {upload_hub.endpoint}/{PUSHED}/commit/" in output
    remote = upload_hub.files(PUSHED)
    local = {p.relative_to(run / "export").as_posix(): p.read_bytes()
             for p in (run / "export").rglob("*") if p.is_file()}
    assert set(remote) == set(local) | {".gitattributes"}
    assert all(remote[name] == data for name, data in local.items())  # byte for byte
    line = _usage_line(remote["README.md"].decode())
    assert line == f'zoo run --model hf-hub:{PUSHED} --prompt "a red circle" --out out.png'

    # hub_server made olah (serving the same git repositories) the hub: run the card's own command from there
    monkeypatch.chdir(tmp_path)
    ran = CliRunner().invoke(main, shlex.split(line)[1:])
    assert ran.exit_code == 0, ran.output
    assert (tmp_path / "out.png").is_file()
    snapshots = list((Path(hub_server.env()["HF_HUB_CACHE"]) / "models--zoo-org--lora-tiny").glob("snapshots/*"))
    assert snapshots and (snapshots[0] / "lora.safetensors").read_bytes() == local["lora.safetensors"]


def test_zoo_push_to_a_new_branch_and_again_without_changes(export_copy, upload_hub):
    repo = "zoo-user/pushed-branch"
    args = ["push", str(export_copy), repo, "--revision", "dev", "--commit-message", "first upload", "--private"]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    assert f"Run it with: zoo run --model hf-hub:{repo}@dev --prompt" in first.output
    git = upload_hub.repo_path(repo)
    log = subprocess.run(["git", "log", "--format=%s", "dev"], cwd=git, capture_output=True, text=True).stdout
    assert log.splitlines() == ["first upload", "initial commit"]
    assert set(upload_hub.files(repo, "main")) == {".gitattributes"}  # main untouched
    remote = upload_hub.files(repo, "dev")
    assert remote["README.md"] == (export_copy / "README.md").read_bytes()
    assert f"--model hf-hub:{repo}@dev " in remote["README.md"].decode()
    # unchanged files are skipped (preupload returns their blob ids): no empty commit
    again = CliRunner().invoke(main, args[:-3])
    assert again.exit_code == 0, again.output
    log2 = subprocess.run(["git", "log", "--format=%s", "dev"], cwd=git, capture_output=True, text=True).stdout
    assert log2 == log


def test_export_push_to_hub_and_the_sdk_function_use_the_same_upload(pushed, upload_hub, tmp_path, monkeypatch):
    from zoo.publish import push_folder
    from zoo.train.export import push_to_hub

    run, _ = pushed
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["export", str(run), str(out), "--push-to-hub", "zoo-user/exported"])
    assert result.exit_code == 0, result.output
    assert f"Uploaded {out} to zoo-user/exported" in result.output
    assert upload_hub.files("zoo-user/exported")["zoo.json"] == (out / "zoo.json").read_bytes()
    # zoo.publish.push_folder (zoo.sdk.push_folder) with explicit endpoint and token, no environment
    monkeypatch.delenv("HF_ENDPOINT")
    monkeypatch.delenv("HF_TOKEN")
    url = push_folder(out, "zoo-user/sdk-push", endpoint=upload_hub.endpoint, token=WRITE_TOKEN,
                      commit_message="from the sdk")
    assert url.startswith(f"{upload_hub.endpoint}/zoo-user/sdk-push/commit/")
    assert url.rsplit("/", 1)[1] == subprocess.run(["git", "rev-parse", "main"], cwd=upload_hub.repo_path(
        "zoo-user/sdk-push"), capture_output=True, text=True).stdout.strip()
    assert push_to_hub is not None and "push_folder" in push_to_hub.__code__.co_names  # the old name is a thin call


# -- one-line errors ------------------------------------------------------------------------------------------------
def test_no_token_is_one_line_before_any_request(export_copy, upload_hub, monkeypatch):
    monkeypatch.delenv("HF_TOKEN")
    before = len(upload_hub.server.requests)
    line = _error_line(CliRunner().invoke(main, ["push", str(export_copy), "zoo-user/no-token"]))
    assert "No Hugging Face token" in line and "hf auth login" in line and "HF_TOKEN" in line
    assert len(upload_hub.server.requests) == before
    # zoo train --push-to-hub says it before training
    trained = CliRunner().invoke(main, [*TRAIN_ARGS, "--output-dir", str(export_copy.parent / "run"),
                                        "--push-to-hub", "zoo-user/never"])
    assert "hf auth login" in _error_line(trained) and not (export_copy.parent / "run").exists()


@pytest.mark.parametrize("case, words", [
    ("bad-token", ["refused the token", "HTTP 401", "POST /api/repos/create", "hf auth login", "HF_TOKEN"]),
    ("read-only-token", ["No write access to zoo-user/read-only", "HTTP 403", "write access"]),
    ("name-taken", ["No write access to other-org/taken", "HTTP 403", "belongs to another user or organization"]),
    ("commit-conflict", ["conflicts with", "HTTP 409", "/commit/main", "retry"]),
    ("old-card", ["refused the metadata of README.md", "base_model", "pkg:zoo.testbed", "front matter"]),
])
def test_server_refusals_are_one_line_naming_the_fix(case, words, export_copy, upload_hub, hub_server, monkeypatch):
    repo = {"read-only-token": "zoo-user/read-only", "name-taken": "other-org/taken"}.get(case, f"zoo-user/{case}")
    monkeypatch.setenv("HF_ENDPOINT", upload_hub.endpoint)  # hub_server pointed it at olah
    if case == "bad-token":
        monkeypatch.setenv("HF_TOKEN", "hf_not_a_token")
    elif case == "read-only-token":
        monkeypatch.setenv("HF_TOKEN", READ_TOKEN)
    elif case == "name-taken":  # someone else's repository, served by the same hub
        hub_server.add_repo(repo, {"README.md": "theirs\n"})
    elif case == "old-card":  # the card exports wrote before: base_model was not a hub id
        card = export_copy / "README.md"
        card.write_text(card.read_text().replace("library_name:", "base_model: pkg:zoo.testbed/weights/teacher\n"
                                                                   "library_name:", 1))
    else:
        upload_hub.server.fail_next("/commit/", 409, "A commit is already in progress on this branch")
    line = _error_line(CliRunner().invoke(main, ["push", str(export_copy), repo]))
    assert all(word in line for word in words), line
    if case == "name-taken":
        assert upload_hub.files(repo) == {"README.md": b"theirs\n"}  # untouched


def test_a_server_without_upload_api_is_one_line(export_copy, hub_server, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", WRITE_TOKEN)  # olah (read-only mirror) is the hub now
    line = _error_line(CliRunner().invoke(main, ["push", str(export_copy), "zoo-user/mirror"]))
    assert "has no upload API" in line and hub_server.endpoint in line and "HF_ENDPOINT" in line
    assert "/api/repos/create" in line and ("HTTP 405" in line or "HTTP 404" in line)


def test_no_network_and_offline_mode_are_one_line(export_copy, upload_hub, monkeypatch):
    dead = _dead_endpoint()
    monkeypatch.setenv("HF_ENDPOINT", dead)
    line = _error_line(CliRunner().invoke(main, ["push", str(export_copy), "zoo-user/x"]))
    assert "Cannot reach the hub" in line and dead in line and "HF_ENDPOINT" in line
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    line = _error_line(CliRunner().invoke(main, ["push", str(export_copy), "zoo-user/x"]))
    assert "Offline mode is on" in line and "HF_HUB_OFFLINE" in line


@pytest.mark.parametrize("folder, repo, extra, words", [
    ("missing", "zoo-user/x", [], ["does not exist", "zoo export"]),
    ("empty", "zoo-user/x", [], ["is empty"]),
    ("file", "zoo-user/x", [], ["is a file, not a folder"]),
    ("export", "zoo-user/x/y", [], ["must look like org/name"]),
    ("export", "zoo-user/bad name", [], ["not a valid hub id"]),
    ("export", "zoo-user/x@v1", [], ["--revision"]),
    ("export", "zoo-user/x", ["--revision", "a b"], ["not a branch name"]),
])
def test_bad_arguments_fail_in_one_line_without_a_request(folder, repo, extra, words, export_copy, upload_hub,
                                                         tmp_path):
    path = {"missing": tmp_path / "nope", "export": export_copy, "file": export_copy / "zoo.json"}.get(
        folder, tmp_path / "empty")
    if folder == "empty":
        path.mkdir()
    before = len(upload_hub.server.requests)
    line = _error_line(CliRunner().invoke(main, ["push", str(path), repo, *extra]))
    assert all(word in line for word in words), line
    assert len(upload_hub.server.requests) == before


# -- the model card -------------------------------------------------------------------------------------------------
def test_the_card_is_valid_hub_metadata_and_its_usage_line_runs(pushed, tmp_path, monkeypatch):
    from huggingface_hub import ModelCard

    run, _ = pushed
    monkeypatch.chdir(tmp_path)
    exported = CliRunner().invoke(main, ["export", str(run), "out/sb"])  # relative, as in docs/TRAINING.md
    assert exported.exit_code == 0, exported.output
    card = ModelCard.load(tmp_path / "out/sb/README.md")
    data = card.data.to_dict()
    assert data["license"] == "apache-2.0"  # the testbed base ships with distill-zoo (Apache-2.0)
    assert "base_model" not in data  # pkg:zoo.testbed/... is no hub id
    assert data["library_name"] == "distill-zoo" and data["pipeline_tag"] == "text-to-image"
    assert "lora_distill" in data["tags"]
    line = _usage_line(card.text)
    assert line == 'zoo run --model out/sb --prompt "a red circle" --out out.png'
    ran = CliRunner().invoke(main, shlex.split(line)[1:])
    assert ran.exit_code == 0, ran.output
    assert (tmp_path / "out.png").is_file()


@pytest.mark.parametrize("base, license_fields, hub_id", [
    ("hf-hub:runwayml/stable-diffusion-v1-5@main", {"license": "creativeml-openrail-m"},
     "runwayml/stable-diffusion-v1-5"),
    ("some-org/custom-sd", {"license": "other", "license_name": "base-model-license",
                            "license_link": "https://huggingface.co/some-org/custom-sd"}, "some-org/custom-sd"),
    ("/data/my-sd", {"license": "other", "license_name": "base-model-license"}, None),
    ("pkg:zoo.testbed/weights/teacher", {"license": "apache-2.0"}, None),
    (None, {"license": "apache-2.0"}, None),
])
def test_card_base_model_and_license_per_base(base, license_fields, hub_id, tmp_path):
    from huggingface_hub import ModelCard
    from huggingface_hub.utils import validate_repo_id

    from zoo.train.export import model_card

    manifest = {"method": "swiftbrush", "task": "text-to-image", "base_model": base, "sampler": {"steps": 1},
                "files": ["unet/"], "training": {"steps": 3}}
    (tmp_path / "README.md").write_text(model_card(manifest, "train: {}\n", {"step": 3}, model_ref="out dir"))
    data = ModelCard.load(tmp_path / "README.md").data.to_dict()
    assert {k: data[k] for k in ("license", "license_name", "license_link") if k in data} == license_fields
    assert data.get("base_model") == hub_id
    if hub_id:
        validate_repo_id(data["base_model"])
    assert "zoo run --model 'out dir' --prompt \"a red circle\" --out out.png" in (tmp_path / "README.md").read_text()


def test_docs_show_runnable_usage_lines():
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for line in doc.read_text().splitlines():
            command = line.strip().lstrip("$ ")
            if command.startswith("zoo run ") and "--model" in command:
                args = shlex.split(command.split("#")[0])
                assert "--prompt" in args or "-p" in args, f"{doc.name}: {line}"


# -- presets name everything they would download --------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["offline", "closed-port"])
def test_preset_errors_name_the_base_model_and_the_lora_file(mode, monkeypatch):
    if mode == "offline":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setenv("HF_ENDPOINT", _dead_endpoint())
    line = _error_line(CliRunner().invoke(main, ["run", "hyper_sd", "--preset", "sd15-4step", "--prompt", "x",
                                                 "--device", "cpu"]))
    for word in ("runwayml/stable-diffusion-v1-5", "Hyper-SD15-4steps-lora.safetensors", "ByteDance/Hyper-SD",
                 "zoo download runwayml/stable-diffusion-v1-5",
                 "zoo download ByteDance/Hyper-SD --include 'Hyper-SD15-4steps-lora.safetensors'"):
        assert word in line, line
    assert ("HF_HUB_OFFLINE" if mode == "offline" else "Cannot reach the hub") in line


def test_every_shipped_model_card_is_current_and_valid_hub_metadata(load_script):
    """The cards of the models shipped with the methods (plugins/*/testbed, the example plugin's) are what the
    current card format writes (scripts/refresh_model_cards.py --check) and parse as hub metadata."""
    from huggingface_hub import ModelCard
    from huggingface_hub.utils import validate_repo_id

    refresh = load_script("refresh_model_cards")
    shipped = refresh.shipped_models()
    assert len(shipped) >= 6
    for ref, folder in shipped.items():
        assert (folder / "README.md").read_text() == refresh.card_for(folder, ref), ref
        card = ModelCard.load(folder / "README.md")
        assert card.data.license, ref
        if card.data.base_model is not None:
            validate_repo_id(card.data.base_model)
        assert f"zoo run --model {ref} --prompt" in card.text or "zoo upscale" in card.text, ref
