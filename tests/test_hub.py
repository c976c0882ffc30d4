"""zoo.hub and ``zoo download`` against a real HF-compatible server (olah on 127.0.0.1), no mocks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner
from fixtures_hub import hub_server, olah_server  # noqa: F401  (pytest fixtures)

from zoo import hub
from zoo.cli import main
from zoo.errors import (FileMissingError, HubConnectionError, HubError, InputError, OfflineNotCachedError,
                        RepoNotFoundError, RevisionNotFoundError, WeightsError, ZooError)
from zoo.spec import MANIFEST_NAME

REPO = "hub-test/tiny"
V1_FILES = {
    "config.json": json.dumps({"version": 1}),
    "model.safetensors": b"\x00safetensors-v1" * 64,
    "unet/diffusion_pytorch_model.safetensors": os.urandom(4096),
    "weights.bin": b"pickled-weights",
    "README.md": "# tiny\n",
    MANIFEST_NAME: json.dumps({"method": "lcm", "task": "text-to-image", "sampler": {"steps": 4}}),
}
V2_FILES = {"config.json": json.dumps({"version": 2}), "model.safetensors": b"\x00safetensors-v2" * 64}


@pytest.fixture(scope="module")
def tiny(olah_server):
    """``hub-test/tiny``: commit v1 (tagged ``v1``), then commit v2 on main."""
    v1 = olah_server.add_repo(REPO, V1_FILES, tags=["v1"], message="v1")
    v2 = olah_server.add_repo(REPO, V2_FILES, message="v2")
    return SimpleNamespace(v1=v1, main=v2)


def _dead_endpoint() -> str:
    import socket

    with socket.socket() as sock:  # a port nobody listens on once closed
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def _files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def _one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert message and "\n" not in message
    return message


# -- parsing --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ref, repo_id, revision", [
    ("hf-hub:org/repo@v1.0", "org/repo", "v1.0"),
    ("hf-hub:org/repo", "org/repo", None),
    ("org/repo", "org/repo", None),
    ("Org-1/my.repo_2@refs/pr/3", "Org-1/my.repo_2", "refs/pr/3"),
    ("org/repo@0123456789abcdef0123456789abcdef01234567", "org/repo", "0123456789abcdef0123456789abcdef01234567"),
    ("hf-hub:gpt2", "gpt2", None),
])
def test_parse_hub_refs(ref, repo_id, revision):
    parsed = hub.parse_ref(ref)
    assert (parsed.kind, parsed.repo_id, parsed.revision, parsed.text) == ("hub", repo_id, revision, ref)


def test_parse_local_and_package_refs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "org" / "repo").mkdir(parents=True)
    assert hub.parse_ref("org/repo").path == tmp_path / "org" / "repo"  # an existing folder wins over a hub id
    assert hub.parse_ref("./missing").path == tmp_path / "missing"
    assert hub.parse_ref("/abs/model").path == Path("/abs/model")
    assert hub.parse_ref("~/model").path == Path.home() / "model"
    assert hub.parse_ref("local-dir:/abs/model").kind == "local"
    package = hub.parse_ref("pkg:zoo.testbed/weights/teacher/")
    assert (package.kind, package.package, package.subdir) == ("package", "zoo.testbed", "weights/teacher")
    assert str(package) == "pkg:zoo.testbed/weights/teacher"


@pytest.mark.parametrize("ref", ["", "  ", "hf-hub:", "hf-hub:org/repo@", "org/repo/extra", "org//repo", "a--b/c",
                                 "org/re po", "gpt2", "hf-hub:org/repo@a b", "hf-hub:org/repo.git", "pkg:",
                                 "pkg:1bad/x", "pkg:zoo/../etc", "local-dir:"])
def test_parse_malformed_refs(ref):
    with pytest.raises(InputError) as exc:
        hub.parse_ref(ref)
    _one_line(exc)


# -- local folders and package folders ------------------------------------------------------------------------------
def test_resolve_local_folder_reads_manifest(tmp_path):
    hub.write_manifest(tmp_path / "model", {"method": "sdxl_lightning", "sampler": {"steps": 2}})
    (tmp_path / "model" / "unet.safetensors").write_bytes(b"x")
    resolved = hub.resolve_model(str(tmp_path / "model"), files=["unet.safetensors"])
    assert resolved.path == tmp_path / "model"
    assert resolved.commit is None
    assert resolved.manifest["method"] == "sdxl_lightning" and resolved.manifest["sampler"] == {"steps": 2}


def test_resolve_local_errors(tmp_path):
    (tmp_path / "unet.safetensors").write_bytes(b"x")
    with pytest.raises(FileMissingError) as exc:
        hub.resolve_model(str(tmp_path / "nope"))
    assert "does not exist" in _one_line(exc)
    with pytest.raises(FileMissingError) as exc:
        hub.resolve_model(str(tmp_path), files=["unet.safetensor"])
    assert "'unet.safetensor'" in _one_line(exc) and "did you mean 'unet.safetensors'" in str(exc.value)
    with pytest.raises(InputError):
        hub.resolve_model(str(tmp_path), revision="v1")


@pytest.fixture
def data_package(tmp_path, monkeypatch):
    """An importable package ``zoo_hub_datapkg`` shipping ``weights/student/`` with a manifest."""
    import importlib

    root = tmp_path / "site"
    folder = root / "zoo_hub_datapkg" / "weights" / "student"
    folder.mkdir(parents=True)
    (root / "zoo_hub_datapkg" / "__init__.py").write_text("")
    hub.write_manifest(folder, {"method": "swiftbrush", "task": "text-to-image"})
    monkeypatch.syspath_prepend(str(root))
    importlib.invalidate_caches()
    yield folder
    sys.modules.pop("zoo_hub_datapkg", None)


def test_resolve_package_folder(data_package):
    resolved = hub.resolve_model("pkg:zoo_hub_datapkg/weights/student")
    assert resolved.path == data_package
    assert resolved.commit is None
    assert resolved.manifest["method"] == "swiftbrush"
    assert hub.resolve_model("pkg:zoo_hub_datapkg").path == data_package.parents[1]


def test_resolve_package_errors(data_package):
    with pytest.raises(InputError) as exc:
        hub.resolve_model("pkg:zoo_hub_no_such_package/weights")
    assert "not installed" in _one_line(exc)
    with pytest.raises(FileMissingError) as exc:
        hub.resolve_model("pkg:zoo_hub_datapkg/weights/teacher")
    assert "'weights/teacher'" in _one_line(exc)


# -- manifest -------------------------------------------------------------------------------------------------------
def test_manifest_round_trip(tmp_path):
    import zoo

    data = {"method": "lcm", "task": "text-to-image", "base_model": "org/base", "sampler": {"steps": 4,
            "guidance_scale": 1.0}, "metrics": {"fd": 1.5}}
    file = hub.write_manifest(tmp_path, data)
    assert file == tmp_path / MANIFEST_NAME
    assert hub.read_manifest(tmp_path) == {**data, "zoo_version": zoo.__version__}
    assert hub.read_manifest(file) == hub.read_manifest(tmp_path)
    assert hub.read_manifest(tmp_path / "empty") == {}


@pytest.mark.parametrize("text, fragment", [
    ('{"method": "lcm",}', "not valid JSON (line 1"),
    ('["lcm"]', "must be a JSON object"),
    ('{"method": 3}', "'method' must be a string"),
    ('{"method": "lcm", "sampler": [4]}', "'sampler' must be an object"),
    ('{"method": "lcm", "task": "video"}', "task 'video' is not one of"),
])
def test_read_manifest_rejects_bad_files(tmp_path, text, fragment):
    (tmp_path / MANIFEST_NAME).write_text(text)
    with pytest.raises(InputError) as exc:
        hub.read_manifest(tmp_path)
    assert fragment in _one_line(exc)


def test_write_manifest_rejects_bad_data(tmp_path):
    with pytest.raises(InputError, match="no 'method'"):
        hub.write_manifest(tmp_path, {"task": "text-to-image"})
    with pytest.raises(InputError, match="not JSON"):
        hub.write_manifest(tmp_path, {"method": "lcm", "extra": object()})
    assert not (tmp_path / MANIFEST_NAME).exists()


# -- hub downloads --------------------------------------------------------------------------------------------------
def test_download_default_patterns_skip_pickles(hub_server, tiny):
    resolved = hub.resolve_model(REPO)
    assert resolved.commit == tiny.main
    assert resolved.path == Path(os.environ["HF_HUB_CACHE"]) / "models--hub-test--tiny" / "snapshots" / tiny.main
    assert _files(resolved.path) == {"config.json", "model.safetensors", "unet/diffusion_pytorch_model.safetensors",
                                     "README.md", MANIFEST_NAME}
    assert json.loads((resolved.path / "config.json").read_text()) == {"version": 2}
    assert (resolved.path / "unet/diffusion_pytorch_model.safetensors").read_bytes() == \
        V1_FILES["unet/diffusion_pytorch_model.safetensors"]
    assert resolved.manifest == json.loads(V1_FILES[MANIFEST_NAME])
    assert resolved.ref == REPO


def test_allow_pickle_fetches_pickles(hub_server, tiny):
    resolved = hub.resolve_model(REPO, allow_pickle=True)
    assert (resolved.path / "weights.bin").read_bytes() == V1_FILES["weights.bin"]


def test_explicit_pickle_file_needs_allow_pickle(hub_server, tiny):
    with pytest.raises(WeightsError) as exc:
        hub.resolve_model(REPO, files=["weights.bin"])
    assert "allow_pickle" in _one_line(exc)
    assert not (Path(os.environ["HF_HUB_CACHE"]) / "models--hub-test--tiny").exists()


@pytest.mark.parametrize("ref_template, revision", [
    ("hf-hub:hub-test/tiny@v1", None),
    ("hub-test/tiny@{v1}", None),
    ("hf-hub:hub-test/tiny", "v1"),
    ("hub-test/tiny", "{v1}"),
])
def test_revision_pinning(hub_server, tiny, ref_template, revision):
    ref = ref_template.format(v1=tiny.v1)
    resolved = hub.resolve_model(ref, revision=revision.format(v1=tiny.v1) if revision else None)
    assert resolved.commit == tiny.v1
    assert resolved.path.name == tiny.v1
    assert json.loads((resolved.path / "config.json").read_text()) == {"version": 1}
    assert (resolved.path / "model.safetensors").read_bytes() == V1_FILES["model.safetensors"]


def test_conflicting_revisions(hub_server, tiny):
    with pytest.raises(InputError) as exc:
        hub.resolve_model("hub-test/tiny@v1", revision="main")
    assert "give only one" in _one_line(exc)


def test_offline_uses_the_cache(hub_server, tiny, monkeypatch):
    online = hub.resolve_model(REPO)
    pinned = hub.resolve_model("hf-hub:hub-test/tiny@v1")
    hub_server.set_offline(True)
    monkeypatch.setenv("HF_ENDPOINT", _dead_endpoint())  # proves nothing is fetched
    assert hub.resolve_model(REPO) == online
    assert hub.resolve_model("hf-hub:hub-test/tiny@v1").commit == tiny.v1 == pinned.commit
    assert hub.hf_hub_file(REPO, "config.json") == online.path / "config.json"


def test_offline_without_cache(hub_server, tiny):
    hub_server.set_offline(True)
    with pytest.raises(OfflineNotCachedError) as exc:
        hub.resolve_model(REPO)
    message = _one_line(exc)
    assert "zoo download hub-test/tiny" in message and "HF_HUB_OFFLINE" in message


def test_offline_with_incomplete_cache(hub_server, tiny):
    hub.resolve_model(REPO)  # default patterns: no weights.bin
    hub_server.set_offline(True)
    with pytest.raises(OfflineNotCachedError) as exc:
        hub.resolve_model(REPO, allow_pickle=True)
    assert "not completely in the local cache" in _one_line(exc)
    assert "`zoo download hub-test/tiny --allow-pickle`" in str(exc.value)
    with pytest.raises(OfflineNotCachedError) as exc:
        hub.hf_hub_file(REPO, "weights.bin", allow_pickle=True)
    assert "`zoo download hub-test/tiny --include 'weights.bin' --allow-pickle`" in str(exc.value)


def test_offline_mode_of_huggingface_hub_is_honoured(hub_server, tiny, monkeypatch):
    """Offline set before huggingface_hub was imported shows only in its constant: zoo.hub must see it too."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert "HF_HUB_OFFLINE" not in os.environ
    assert hub.is_offline()
    with pytest.raises(OfflineNotCachedError):
        hub.resolve_model(REPO)


def test_repo_not_found(hub_server, tiny):
    with pytest.raises(RepoNotFoundError) as exc:
        hub.resolve_model("hub-test/no-such-repo")
    assert "'hub-test/no-such-repo' not found" in _one_line(exc)


@pytest.mark.parametrize("revision", ["no-such-branch", "0123456789abcdef0123456789abcdef01234567"])
def test_revision_not_found(hub_server, tiny, revision):
    with pytest.raises(RevisionNotFoundError) as exc:
        hub.resolve_model(f"hub-test/tiny@{revision}")
    message = _one_line(exc)
    assert f"Revision '{revision}' not found" in message
    assert "branches: main; tags: v1" in message


def test_file_missing(hub_server, tiny):
    with pytest.raises(FileMissingError) as exc:
        hub.resolve_model(REPO, files=["unet/nope.safetensors"])
    assert "'unet/nope.safetensors'" in _one_line(exc)


def test_hf_hub_file_fetches_one_file(hub_server, tiny):
    path = hub.hf_hub_file("hf-hub:hub-test/tiny@v1", "unet/diffusion_pytorch_model.safetensors")
    assert path.read_bytes() == V1_FILES["unet/diffusion_pytorch_model.safetensors"]
    assert _files(path.parents[1]) == {"unet/diffusion_pytorch_model.safetensors"}  # not even zoo.json
    with pytest.raises(FileMissingError):
        hub.hf_hub_file(REPO, "lora-8steps.safetensors")


def test_no_matching_files(hub_server, tiny):
    with pytest.raises(FileMissingError) as exc:
        hub.resolve_model(REPO, allow_patterns=["*.onnx"])
    assert "--include" in _one_line(exc)


def test_unreachable_endpoint(hub_server, tiny, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", _dead_endpoint())
    with pytest.raises(HubError) as exc:
        hub.resolve_model(REPO)
    assert type(exc.value) is HubConnectionError  # a HubError subclass
    assert "Cannot reach the hub" in _one_line(exc) and "HF_ENDPOINT" in str(exc.value)


# -- the fixture itself (other areas rely on it) --------------------------------------------------------------------
def test_fixture_serves_direct_huggingface_hub_calls(hub_server, tiny):
    from huggingface_hub import hf_hub_download

    path = Path(hf_hub_download(REPO, "config.json", revision="v1"))
    assert json.loads(path.read_text()) == {"version": 1}
    assert Path(os.environ["HF_HUB_CACHE"]) in path.parents


def test_fixture_moves_branches_and_takes_folders(hub_server, tmp_path):
    (tmp_path / "pipe" / "unet").mkdir(parents=True)
    (tmp_path / "pipe" / "model_index.json").write_text("{}")
    (tmp_path / "pipe" / "unet" / "config.json").write_text('{"a": 1}')
    first = hub_server.add_repo("hub-test/moving", tmp_path / "pipe")
    assert hub.resolve_model("hub-test/moving").commit == first
    second = hub_server.add_repo("hub-test/moving", {"unet/config.json": '{"a": 2}'}, replace=True)
    dev = hub_server.add_repo("hub-test/moving", {"tokenizer/merges.txt": "dev"}, branch="dev")
    moved = hub.resolve_model("hub-test/moving")
    assert moved.commit == second != first
    assert _files(moved.path) == {"unet/config.json"}
    assert hub.resolve_model("hub-test/moving@dev").commit == dev
    assert _files(hub.resolve_model("hub-test/moving@dev").path) == {"unet/config.json", "tokenizer/merges.txt"}


# -- zoo download ---------------------------------------------------------------------------------------------------
def test_cli_download(hub_server, tiny):
    result = CliRunner().invoke(main, ["download", "hf-hub:hub-test/tiny@v1"])
    assert result.exit_code == 0, result.output
    lines = dict(line.split(": ", 1) for line in result.stdout.splitlines())
    assert lines["commit"] == tiny.v1
    assert lines["method"] == "lcm"
    assert (Path(lines["path"]) / "config.json").is_file()


def test_cli_download_include_and_allow_pickle(hub_server, tiny):
    result = CliRunner().invoke(main, ["download", REPO, "--revision", "v1", "--include", "*.bin", "--allow-pickle"])
    assert result.exit_code == 0, result.output
    path = Path(result.stdout.splitlines()[0].split(": ", 1)[1])
    assert _files(path) == {"weights.bin", MANIFEST_NAME}


@pytest.mark.parametrize("args, fragment", [
    (["download", "hub-test/no-such-repo"], "not found"),
    (["download", "hub-test/tiny@no-such-branch"], "Revision 'no-such-branch' not found"),
    (["download", "hub-test/tiny", "--include", "weights.bin"], "No file of hub-test/tiny"),
    (["download", "not a ref"], "neither an existing folder nor a hub id"),
])
def test_cli_download_errors(hub_server, tiny, args, fragment):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1
    assert fragment in result.stderr


def test_cli_download_offline_not_cached(hub_server, tiny):
    hub_server.set_offline(True)
    result = CliRunner().invoke(main, ["download", REPO])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1
    assert "zoo download hub-test/tiny" in result.stderr


def test_hub_module_imports_neither_torch_nor_huggingface_hub():
    code = "import sys, zoo.hub; print('torch' in sys.modules, 'huggingface_hub' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_every_hub_error_is_a_zoo_error():
    assert all(issubclass(cls, ZooError) for cls in (HubError, OfflineNotCachedError, RepoNotFoundError,
                                                    RevisionNotFoundError, FileMissingError))
