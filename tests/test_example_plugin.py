"""The example third-party plugin ``examples/zoo-progressive`` (guided progressive distillation, built on zoo.sdk
alone; docs/PLUGINS.md's tutorial): installed as a user installs a plugin (scripts/test.sh does it), it is listed,
samples its committed student, trains and resumes on the runtime, scores with the shared evaluator, and appears in
the CLI, the app and the nodes, real ComfyUI included."""

import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from click.testing import CliRunner

from zoo.cli import main
from zoo.registry import get_method, list_methods

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "zoo-progressive"


@pytest.fixture(scope="module")
def spec():
    try:
        metadata.version("zoo-progressive")
    except metadata.PackageNotFoundError:
        pytest.fail("the example plugin is not installed: run scripts/test.sh (or pip install --no-deps -e "
                    "examples/zoo-progressive)")
    return get_method("progressive")


@pytest.fixture(scope="module")
def sampler(spec):
    from zoo.sdk import load_sampler

    return load_sampler("progressive", device="cpu")[1]


def test_it_is_a_third_party_plugin_found_through_its_entry_point(spec):
    assert spec.plugin == "progressive"
    assert get_method("guided-progressive") is spec
    (entry,) = [ep for ep in metadata.entry_points(group="distill_zoo") if ep.name == "progressive"]
    assert entry.dist.metadata["Name"] == "zoo-progressive" and entry.value == "zoo_progressive"


def test_the_committed_student_samples_in_two_calls(sampler):
    result = sampler(["a red circle", "a blue square"], seed=3)
    assert result.nfe == 2 and result.metadata["steps"] == 2 and result.metadata["guidance_scale"] == 0.0
    assert result.metadata["method"] == "progressive" and len(result.images) == 2
    assert result.metadata["model"] == "pkg:zoo_progressive/testbed"


def test_it_scores_with_the_shared_evaluator_against_the_teacher(sampler):
    """Scored with the shared evaluator on the same prompts and noise as the teacher rows: at the same 2 calls per
    image the teacher without CFG misses colours and shapes the student gets right (image by image), and against
    the teacher's 2 DDIM steps with CFG (twice the calls) the student is not worse and has the lower FD."""
    from zoo.sdk import DDIMSampler, FULL_PROMPTS, score_sampler

    prompts, teacher = FULL_PROMPTS[:4], DDIMSampler.from_model()
    student = score_sampler(sampler, "progressive", prompts=prompts, progress=False)
    plain = score_sampler(teacher, "teacher 2 steps no CFG", prompts=prompts, steps=2, guidance_scale=1.0,
                          progress=False)
    guided = score_sampler(teacher, "teacher 2 steps CFG", prompts=prompts, steps=2, progress=False)
    assert student.n_images == 64 and student.nfe == plain.nfe == 2 and guided.nfe == 4
    against_plain = student.compare(plain)
    assert against_plain.color_pairs[0] > against_plain.color_pairs[1]
    assert against_plain.shape_pairs[0] > against_plain.shape_pairs[1]
    assert student.compare(guided).beats


def test_it_trains_exports_and_the_export_runs(spec, tmp_path):
    run = tmp_path / "run"
    args = ["train", "progressive", "--config", str(EXAMPLE / "zoo_progressive" / "testbed.yaml"),
            "--output-dir", str(run), "train.steps=3", "train.batch_size=2", "train.checkpoint_every=2",
            "train.validate_every=3", "train.log_every=1", "validate_per_prompt=1"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    losses = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in losses if "student/loss" in m] == [1, 2, 3]
    assert any("val/shape_acc" in m for m in losses)
    manifest = json.loads((run / "export" / "zoo.json").read_text())
    assert manifest["method"] == "progressive" and manifest["sampler"] == {"steps": 2, "guidance_scale": 0.0}
    image = tmp_path / "out.png"
    ran = CliRunner().invoke(main, ["run", "--model", str(run / "export"), "--prompt", "a green triangle",
                                    "--out", str(image)])
    assert ran.exit_code == 0, ran.output
    assert image.is_file()


def test_it_appears_in_the_cli_and_the_app(spec):
    listed = CliRunner().invoke(main, ["list", "prog*"])
    assert listed.exit_code == 0 and listed.output.startswith("progressive")
    plugins = CliRunner().invoke(main, ["plugins"])
    assert '"package": "zoo-progressive"' in plugins.output

    from zoo.app import build_demo

    demo = build_demo()
    dropdown = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "t2i-method")
    assert "progressive" in [choice[0] for choice in dropdown.choices]
    assert "progressive" in [s.name for s in list_methods(task="text-to-image")]


COMFY_SCRIPT = """
sys.path.insert(0, SITE)
mappings = load_pack()
choices = mappings["DistillZooLoadModel"].INPUT_TYPES()["required"]["method"][0]
(model,) = mappings["DistillZooLoadModel"]().load("progressive", "", "cpu", "auto", "auto")
images, latent, info = mappings["DistillZooSampler"]().sample(model, "a red circle", "", 2, -1.0, 7, 0, 0, 1, -1.0)
print(json.dumps({"choices": choices, "info": json.loads(info), "shape": list(images.shape)}))
"""


def test_it_appears_in_the_nodes_of_real_comfyui(spec, tmp_path):
    """Installed into ComfyUI's own environment (here: a target folder on its path), the pack lists the method and
    its sampler node runs the committed student."""
    from fixtures_comfy import run_in_comfy

    site = tmp_path / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q",
                          "--disable-pip-version-check", "--target", str(site), str(EXAMPLE)],
                         capture_output=True, text=True, timeout=300)
    assert pip.returncode == 0, pip.stderr[-2000:]
    report = run_in_comfy(COMFY_SCRIPT, SITE=str(site))
    assert "progressive" in report["choices"]
    assert report["info"]["method"] == "progressive" and report["info"]["nfe"] == 2
    assert report["shape"] == [1, 32, 32, 3]
