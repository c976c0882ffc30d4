"""The CLI end to end: zoo run (local folder, model ref as NAME, hub ref through a real olah server), zoo list/info,
and the one-line errors."""

import json

import pytest
from click.testing import CliRunner
from fixtures_hub import hub_server, olah_server  # noqa: F401  (pytest fixtures)

from zoo.cli import main
from zoo.registry import list_methods
from zoo.sampling import read_metadata
from zoo.tiny import build_tiny_sd


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_sd(tmp_path_factory.mktemp("cli_tiny"))


def invoke(*args):
    return CliRunner().invoke(main, list(map(str, args)))


def assert_one_line_error(result, fragment):
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and fragment in lines[0], result.output


def test_run_local_folder_writes_png_with_parameters(tiny_dir, tmp_path):
    out = tmp_path / "img.png"
    result = invoke("run", "--model", tiny_dir, "-p", "a red circle", "--seed", 7, "-o", out)
    assert result.exit_code == 0, result.output
    meta = read_metadata(out)
    assert meta["method"] == "base" and meta["seed"] == 7 and meta["model"] == str(tiny_dir)
    assert meta["steps"] == 4 and meta["guidance_scale"] == 3.0 and meta["nfe"] == 8  # from the folder's zoo.json
    assert meta["commit"] is None


def test_model_ref_as_name_and_batches(tiny_dir, tmp_path):
    out = tmp_path / "b.png"
    result = invoke("run", tiny_dir, "-p", "a circle", "-b", 2, "--steps", 2, "-o", out)
    assert result.exit_code == 0, result.output
    first, second = tmp_path / "b-0.png", tmp_path / "b-1.png"
    assert read_metadata(first)["batch_index"] == 0 and read_metadata(second)["steps"] == 2


def test_run_from_hub_records_the_resolved_commit(hub_server, tiny_dir, tmp_path):
    sha = hub_server.add_repo("cli-test/tiny-sd", tiny_dir, tags=["v1"])
    out = tmp_path / "hub.png"
    result = invoke("run", "--model", "hf-hub:cli-test/tiny-sd@v1", "-p", "a red circle", "-o", out)
    assert result.exit_code == 0, result.output
    meta = read_metadata(out)
    assert meta["commit"] == sha and meta["model"] == "hf-hub:cli-test/tiny-sd@v1"


@pytest.mark.parametrize("args,fragment", [
    (["run", "nosuchmethod", "-p", "x"], "Unknown method 'nosuchmethod'"),
    (["run", "--model", "/no/such/folder", "-p", "x"], "/no/such/folder"),
    (["info", "nosuchmethod"], "Unknown method"),
])
def test_bad_input_is_one_line(args, fragment):
    assert_one_line_error(invoke(*args), fragment)


@pytest.mark.parametrize("extra,fragment", [(["--steps", 0], "steps=0 is out of range"),
                                            (["--height", 18], "not a positive multiple of 4"),
                                            (["--set", "eta"], "not of the form key=value"),
                                            (["--set", "etta=0.3"], "Unknown option 'etta' for base: the options"),
                                            (["--device", "cuda"], "CUDA is not available")])
def test_bad_sampling_arguments_are_one_line(tiny_dir, tmp_path, extra, fragment):
    assert_one_line_error(invoke("run", "--model", tiny_dir, "-p", "x", "-o", tmp_path / "x.png", *extra), fragment)


def test_unmanifested_non_pipeline_folder_asks_for_the_method(tmp_path):
    (tmp_path / "weights.safetensors").write_bytes(b"")
    assert_one_line_error(invoke("run", "--model", tmp_path, "-p", "x"), "name the method")


def test_list_info_and_plugins_agree_with_the_registry():
    specs = list_methods()
    listed = invoke("list")
    assert listed.exit_code == 0
    assert [line.split()[0] for line in listed.output.splitlines()] == [s.name for s in specs]
    as_json = json.loads(invoke("list", "--json").output)
    assert [item["name"] for item in as_json] == [s.name for s in specs]
    plugins = json.loads(invoke("plugins").output)
    assert {m for p in plugins for m in p["methods"]} == {s.name for s in specs}
    for spec in specs:
        info = invoke("info", spec.name)
        assert info.exit_code == 0, info.output
        assert spec.paper.title in info.output and "default config:" in info.output and "train:" in info.output


def test_list_pattern_without_match():
    result = invoke("list", "zzz*")
    assert result.exit_code == 0 and result.output.strip() == "No methods match."
