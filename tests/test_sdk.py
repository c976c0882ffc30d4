"""zoo.sdk is the whole public surface a method needs: every name resolves, importing it stays torch-free, the
teacher solve and the shared evaluator behave as documented, and the scaffold imports nothing else from zoo."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import zoo.sdk as sdk
from zoo.diffusion import schedule as S

ROOT = Path(__file__).resolve().parents[1]
AC = S.sd_alphas_cumprod()


def zoo_imports_outside_sdk(folder: Path) -> list[str]:
    """``file:line module`` for every import of a ``zoo`` module other than ``zoo.sdk`` under ``folder``."""
    found = []
    for path in sorted(folder.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0
                     else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            for name in names:
                if (name == "zoo" or name.startswith("zoo.")) and name != "zoo.sdk":
                    found.append(f"{path.relative_to(folder)}:{node.lineno} {name}")
    return found


def test_every_documented_name_resolves_and_is_listed_in_all():
    for name in sdk.__all__:
        assert getattr(sdk, name) is not None, name
    documented = (ROOT / "docs" / "PLUGINS.md").read_text()
    missing = [name for name in sdk.__all__ if f"`{name}" not in documented]
    assert not missing, f"not documented in docs/PLUGINS.md: {missing}"
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        sdk.nothing_here  # noqa: B018


def test_importing_the_sdk_and_registering_imports_no_torch():
    code = ("import sys, zoo.sdk as s; s.MethodSpec; s.hookimpl; s.TEACHER_REF; "
            "assert 'torch' not in sys.modules, 'torch imported'; s.ddim_jump; assert 'torch' in sys.modules")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_the_scaffold_uses_only_the_sdk(tmp_path):
    from zoo.scaffold import scaffold_plugin

    project = scaffold_plugin("my_method", tmp_path)
    assert len(list(project.rglob("*.py"))) == 5
    assert zoo_imports_outside_sdk(project) == []


def test_the_example_plugin_uses_only_the_sdk():
    assert zoo_imports_outside_sdk(ROOT / "examples" / "zoo-progressive") == []


def test_the_import_scan_finds_internal_imports(tmp_path):
    (tmp_path / "a.py").write_text("import zoo.t2i\nfrom zoo.sdk import cfg\nfrom zoo import hub\n")
    assert zoo_imports_outside_sdk(tmp_path) == ["a.py:1 zoo.t2i", "a.py:3 zoo"]


# -- the teacher solve ------------------------------------------------------------------------------------------------
def toy_eps(x, t, c):
    """A smooth stand-in for a UNet: depends on x, the per-sample timestep and the condition."""
    return 0.3 * torch.tanh(x + c.mean(dim=(1, 2)).view(-1, 1, 1, 1)) + 1e-3 * t.view(-1, 1, 1, 1).float() * x


def test_teacher_solve_matches_ddim_steps_run_sample_by_sample():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 4, 4, generator=g)
    cond, uncond = torch.randn(3, 2, 5, generator=g), torch.randn(3, 2, 5, generator=g)
    t, s = torch.tensor([999, 499, 600]), torch.tensor([499, S.CLEAN, 100])
    solved = sdk.teacher_ddim_solve(toy_eps, x, t, s, cond, uncond, 3.0, AC, substeps=2)
    for i, mid in enumerate([749, 249, 350]):
        xi, ci, ui = x[i:i + 1], cond[i:i + 1], uncond[i:i + 1]
        here = xi
        for a, b in ((int(t[i]), mid), (mid, int(s[i]))):
            ta = torch.tensor([a])
            eps = sdk.cfg(toy_eps(here, ta, ci), toy_eps(here, ta, ui), 3.0)
            here = S.ddim_jump(here, eps, a, b, AC)
        assert torch.allclose(solved[i:i + 1], here, atol=1e-5), i


def test_teacher_solve_without_guidance_uses_one_conditional_call_per_substep():
    calls = []

    def eps(x, t, c):
        calls.append(x.shape[0])
        return toy_eps(x, t, c)

    x, cond = torch.randn(2, 4, 4, 4), torch.randn(2, 2, 5)
    sdk.teacher_ddim_solve(eps, x, 999, 499, cond, None, 3.0, AC, substeps=4)
    assert calls == [2, 2, 2, 2]
    calls.clear()
    sdk.teacher_ddim_solve(eps, x, 999, 499, cond, torch.randn(2, 2, 5), 3.0, AC, substeps=2)
    assert calls == [4, 4]  # CFG: one call on the doubled batch


def test_eps_target_makes_one_ddim_step_land_on_the_target():
    g = torch.Generator().manual_seed(1)
    x_t, x_s = torch.randn(3, 4, 4, 4, generator=g), torch.randn(3, 4, 4, 4, generator=g)
    t, s = torch.tensor([999, 499, 300]), torch.tensor([499, S.CLEAN, 299])
    eps = sdk.ddim_eps_target(x_t, x_s, t, s, AC)
    assert torch.allclose(S.ddim_jump(x_t, eps, t, s, AC), x_s, atol=1e-4)


def test_substeps_must_split_a_descending_interval():
    with pytest.raises(ValueError, match="substeps"):
        sdk.teacher_ddim_solve(toy_eps, torch.zeros(1, 4, 2, 2), 999, 499, torch.zeros(1, 2, 5), None, 1.0, AC, 0)
    with pytest.raises(ValueError, match="at or below"):
        sdk.teacher_ddim_solve(toy_eps, torch.zeros(1, 4, 2, 2), 100, 499, torch.zeros(1, 2, 5), None, 1.0, AC)


# -- the shared evaluator ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def teacher_rows():
    """The testbed teacher at 2 and 8 DDIM steps with CFG, scored on 3 benchmark prompts (48 images each)."""
    teacher = sdk.DDIMSampler.from_model()
    prompts = sdk.BENCHMARK_PROMPTS[:3]
    return {steps: sdk.score_sampler(teacher, f"teacher {steps}", prompts=prompts, steps=steps, progress=False)
            for steps in (2, 8)}


def test_score_sampler_reports_the_benchmark_numbers(teacher_rows):
    row = teacher_rows[8]
    assert row.n_images == 48 and row.nfe == 16 and row.steps == 8
    assert len(row.color_hits) == len(row.shape_hits) == 48
    assert row.color_acc == sum(h for h in row.color_hits if h is not None) / 48
    assert 0.8 <= row.shape_acc <= 1.0 and row.fd > 0 and row.diversity > 0
    assert "teacher 8: NFE 16" in str(row)


def test_rows_on_the_same_noise_compare_image_by_image(teacher_rows):
    few, many = teacher_rows[2], teacher_rows[8]
    compared = many.compare(few)
    wins, losses, p = compared.shape_pairs
    assert compared.d_shape == pytest.approx((wins - losses) / 48)
    assert 0 < p <= 1
    assert many.compare(many).color_pairs == (0, 0, 1.0)
    assert compared.beats == (compared.d_color >= 0 and compared.d_shape >= 0 and compared.d_fd < 0)


def test_rows_on_different_images_are_not_compared(teacher_rows):
    teacher = sdk.DDIMSampler.from_model()
    other = sdk.score_sampler(teacher, "other", prompts=sdk.BENCHMARK_PROMPTS[:1], steps=2, progress=False)
    with pytest.raises(ValueError, match="not scored on the same images"):
        other.compare(teacher_rows[2])
