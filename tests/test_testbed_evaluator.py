"""The testbed evaluator: real images score (nearly) perfectly, noise at chance; the metrics mean what they say."""

import json
import math

import numpy as np
import pytest

from zoo.testbed.data import (BACKGROUND, COLORS, SHAPES, Attributes, ShapesDataset, caption_for, parse_caption, render,
                              sample_attributes)
from zoo.testbed.evaluator import (CLASSIFIER_WEIGHTS, Evaluator, dominant_colors, frechet_distance, geometry,
                                   paired_counts)
from zoo.testbed.prompts import BENCHMARK_PROMPTS, FULL_PROMPTS


@pytest.fixture(scope="module")
def evaluator():
    return Evaluator()


def real_batch(n, seed):
    batch = ShapesDataset(seed).batch(n)
    return batch.images, [caption_for(a.shape, a.color) for a in batch.attributes], batch.attributes


def test_real_images_score_at_least_098_on_both_accuracies(evaluator):
    images, prompts, _ = real_batch(400, seed=101)
    report = evaluator.evaluate(images, prompts)
    assert report.color_acc >= 0.98
    assert report.shape_acc >= 0.98
    assert report.no_shape == 0.0


def test_real_images_rendered_for_the_benchmark_prompts_score_high_with_data_like_diversity(evaluator):
    rng = np.random.default_rng(5)
    images, prompts = [], []
    for prompt in BENCHMARK_PROMPTS:
        shape, color = parse_caption(prompt)
        images.append(render(sample_attributes(rng, 16, shape=shape, color=color)))
        prompts += [prompt] * 16
    images = np.concatenate(images)
    report = evaluator.evaluate(images, prompts)
    assert report.color_acc >= 0.98 and report.shape_acc >= 0.98
    # 16 real images per prompt spread like the data: the ratio of standard deviations is near 1.
    assert 0.75 <= report.diversity <= 1.25
    # Fréchet distance: real images are closer to the real reference than mildly blurred or noisy copies of them.
    blurred = images.copy()
    blurred[:, 1:-1, 1:-1] = sum(images[:, 1 + dy:31 + dy, 1 + dx:31 + dx]
                                 for dy in (-1, 0, 1) for dx in (-1, 0, 1)) / 9
    noisy = np.clip(images + np.random.default_rng(6).normal(0, 0.1, images.shape), 0, 1).astype(np.float32)
    assert report.fd < 0.5 * evaluator.evaluate(blurred, prompts).fd
    assert report.fd < 0.5 * evaluator.evaluate(noisy, prompts).fd


def test_pure_noise_scores_near_chance(evaluator):
    rng = np.random.default_rng(0)
    prompts = [p for p in FULL_PROMPTS for _ in range(20)]  # balanced: chance is 1/4 colour, 1/3 shape
    noise = rng.random((len(prompts), 32, 32, 3), dtype=np.float32)
    report = evaluator.evaluate(noise, prompts)
    assert abs(report.color_acc - 0.25) < 0.1
    assert abs(report.shape_acc - 1 / 3) < 0.12


def test_plain_background_has_no_shape_and_scores_zero(evaluator):
    blank = np.broadcast_to(np.asarray(BACKGROUND, dtype=np.float32), (12, 32, 32, 3)).copy()
    report = evaluator.evaluate(blank, list(FULL_PROMPTS))
    assert report.color_acc == 0.0 and report.shape_acc == 0.0 and report.no_shape == 1.0
    assert dominant_colors(blank) == [None] * 12
    assert np.isnan(geometry(blank)).all()


def test_wrong_attributes_score_zero(evaluator):
    images, _, attributes = real_batch(120, seed=7)
    wrong = [caption_for(SHAPES[(SHAPES.index(a.shape) + 1) % 3], COLORS[(COLORS.index(a.color) + 1) % 4])
             for a in attributes]
    report = evaluator.evaluate(images, wrong)
    assert report.color_acc <= 0.02 and report.shape_acc <= 0.02


def test_geometry_measures_centroid_and_size():
    attr = Attributes("square", "blue", cx=12.0, cy=20.0, size=6.0)
    cx, cy, size = geometry(render([attr]))[0]
    assert cx == pytest.approx(12.0, abs=0.3) and cy == pytest.approx(20.0, abs=0.3)
    assert size == pytest.approx(12.0, abs=0.6)  # sqrt of the 12x12 area


def test_mode_collapse_gives_zero_diversity_and_a_larger_fd_than_real_images(evaluator):
    prompt = "a green triangle"
    real = render(sample_attributes(np.random.default_rng(3), 32, shape="triangle", color="green"))
    collapsed = np.repeat(real[:1], 32, axis=0)
    collapsed_report = evaluator.evaluate(collapsed, prompt)
    real_report = evaluator.evaluate(real, prompt)
    assert collapsed_report.color_acc == 1.0 and collapsed_report.shape_acc == 1.0
    assert collapsed_report.diversity == pytest.approx(0.0, abs=1e-9)
    assert 0.7 <= real_report.diversity <= 1.3
    assert collapsed_report.fd > 2 * real_report.fd


def test_per_image_hits_add_up_to_the_accuracies_and_mark_unnamed_attributes(evaluator):
    images, prompts, _ = real_batch(48, seed=4)
    wrong = render([Attributes(shape="square", color="red", cx=16.0, cy=16.0, size=14.0)] * 4)
    images = np.concatenate([images, wrong])
    prompts = list(prompts) + ["a blue circle", "a circle", "something blue", "a red square"]
    report = evaluator.evaluate(images, prompts)
    assert len(report.color_hits) == len(report.shape_hits) == len(images)
    named_colors = [h for h in report.color_hits if h is not None]
    named_shapes = [h for h in report.shape_hits if h is not None]
    assert np.mean(named_colors) == pytest.approx(report.color_acc)
    assert np.mean(named_shapes) == pytest.approx(report.shape_acc)
    assert [report.color_hits[-4:], report.shape_hits[-4:]] == [[False, None, False, True], [False, False, None, True]]
    assert "color_hits" not in report.to_dict() and "shape_hits" not in report.to_dict()


@pytest.mark.parametrize("a,b,expected", [
    ([True, True, False, None], [True, False, True, True], (1, 1, 1.0)),   # one each way; the None image is skipped
    ([True] * 10, [False] * 10, (10, 0, 2 / 2 ** 10)),                    # all ten discordant images one way
    ([True] * 6 + [False] * 2, [False] * 6 + [True] * 2, (6, 2, 0.2890625)),  # 2 * (1 + 8 + 28) / 256
    ([True, False], [True, False], (0, 0, 1.0)),                           # no discordant image: nothing to test
    # n = 2900 discordant images (past a float's 2 ** 1023): the normal approximation with continuity correction,
    # erfc((|w - l| - 1) / sqrt(2 n)), agrees with the exact test to 4 digits here
    ([True] * 1500 + [False] * 1400, [False] * 1500 + [True] * 1400, (1500, 1400, math.erfc(99 / math.sqrt(5800)))),
])
def test_paired_counts_are_exact_mcnemar(a, b, expected):
    wins, losses, p = paired_counts(a, b)
    assert (wins, losses) == expected[:2] and p == pytest.approx(expected[2], rel=1e-3)
    assert paired_counts(b, a)[:2] == (losses, wins) and paired_counts(b, a)[2] == pytest.approx(p)


def test_paired_counts_need_the_same_images():
    with pytest.raises(ValueError, match="same images"):
        paired_counts([True], [True, False])


def test_evaluation_is_deterministic(evaluator):
    images, prompts, _ = real_batch(64, seed=9)
    noisy = np.clip(images + np.random.default_rng(1).normal(0, 0.05, images.shape), 0, 1).astype(np.float32)
    first = evaluator.evaluate(noisy, prompts).to_dict()
    second = Evaluator().evaluate(noisy.copy(), list(prompts)).to_dict()
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)


def test_frechet_distance_properties():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 4))
    b = rng.normal(size=(4000, 4))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(a, b) < 0.05
    # Shifting the mean by d adds |d|^2; scaling a unit Gaussian by s gives dim * (s - 1)^2.
    assert frechet_distance(a, a + np.array([3.0, 0, 0, 4.0])) == pytest.approx(25.0, rel=1e-6)
    assert frechet_distance(a, 2.0 * a) == pytest.approx(4 * 1.0, rel=0.05)
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-6)


def test_images_may_be_pil_uint8_or_other_sizes(evaluator):
    from PIL import Image

    images, prompts, _ = real_batch(8, seed=11)
    uint8 = (images * 255).round().astype(np.uint8)
    pil = [Image.fromarray(x).resize((64, 64), Image.NEAREST) for x in uint8]
    a = evaluator.analyze(images)
    b = evaluator.analyze(pil)
    assert [x["shape"] for x in a] == [x["shape"] for x in b]
    assert [x["color"] for x in a] == [x["color"] for x in b]
    with pytest.raises(ValueError, match="one prompt per image"):
        evaluator.evaluate(images, prompts[:3])


def test_classifier_weights_are_small():
    assert CLASSIFIER_WEIGHTS.stat().st_size < 300_000


def test_zoo_eval_reads_prompts_from_png_metadata_and_writes_json(tmp_path):
    from click.testing import CliRunner
    from PIL import Image

    from zoo.cli import main
    from zoo.sampling import save_image

    images, prompts, _ = real_batch(12, seed=21)
    for index, (image, prompt) in enumerate(zip(images, prompts)):
        save_image(Image.fromarray((image * 255).round().astype(np.uint8)), tmp_path / "png" / f"{index}.png",
                   {"prompt": prompt, "seed": index})
    out = tmp_path / "report.json"
    result = CliRunner().invoke(main, ["eval", str(tmp_path / "png"), "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["n_images"] == 12 and report["color_acc"] == 1.0 and report["shape_acc"] == 1.0
    assert set(report) >= {"color_acc", "shape_acc", "diversity", "fd", "per_prompt"}

    Image.fromarray((images[0] * 255).astype(np.uint8)).save(tmp_path / "bare.png")
    result = CliRunner().invoke(main, ["eval", str(tmp_path / "bare.png")])
    assert result.exit_code == 1 and "carries no prompt" in result.output and "--prompt" in result.output
    result = CliRunner().invoke(main, ["eval", str(tmp_path / "bare.png"), "--prompt", prompts[0]])
    assert result.exit_code == 0, result.output


def test_benchmark_noise_sets_repeat_the_prompts_with_disjoint_seeds_and_keep_the_standard_set_first():
    from zoo.testbed.prompts import BASE_SEED, benchmark_jobs

    standard = benchmark_jobs()
    three = benchmark_jobs(noise_sets=3)
    assert standard == [(prompt, BASE_SEED + i) for i, prompt in enumerate(BENCHMARK_PROMPTS)]
    assert three[: len(standard)] == standard and len(three) == 3 * len(standard)
    assert [p for p, _ in three] == list(BENCHMARK_PROMPTS) * 3
    assert len({seed for _, seed in three}) == len(three)  # every batch has its own noise


def test_validation_noise_never_meets_the_benchmark_noise():
    from zoo.testbed.prompts import VALIDATION_SEED, benchmark_jobs

    most = benchmark_jobs(noise_sets=40)
    validation = benchmark_jobs(noise_sets=40, validation=True)
    assert validation[0] == (BENCHMARK_PROMPTS[0], VALIDATION_SEED)
    assert not {s for _, s in most} & {s for _, s in validation}
    with pytest.raises(ValueError, match="would reach the validation seeds"):
        benchmark_jobs(noise_sets=41)


# ----------------------------------------------------------------------------------------------------------------------
# Issue #21 §5: the evaluator on degraded ground truth (scripts/stress_evaluator.py; docs/TESTBED.md, "How far the
# evaluator can be trusted"). Thresholds: the accuracy measured on 300 images per condition with the committed
# classifier, less a margin for 96 images; the classifier before the fix is given for comparison.
# ----------------------------------------------------------------------------------------------------------------------
@pytest.fixture
def stress(load_script):
    return load_script("stress_evaluator")


def test_clean_ground_truth_is_classified_at_least_995_percent_right(evaluator):
    images, prompts, _ = real_batch(1000, seed=2024)
    report = evaluator.evaluate(images, prompts)
    assert report.shape_acc >= 0.995 and report.color_acc >= 0.995 and report.no_shape == 0.0


@pytest.mark.parametrize("condition,strength,threshold", [
    # measured at 300 images (before the fix -> after): one-step-like = soft edges + low contrast + noise
    ("one_step", "medium", 0.93),   # 0.687 -> 1.000
    ("one_step", "strong", 0.85),   # 0.390 -> 0.957
    ("soft_edges", 2.0, 0.95),      # 0.947 -> 1.000
    ("noise", 0.2, 0.93),           # 0.463 -> 0.997
    ("blur", 2.0, 0.93),            # 0.853 -> 1.000
    ("salt_pepper", 0.2, 0.9),      # 0.340 -> 0.987
    ("contrast", 0.4, 0.93),        # 0.433 (a quarter without foreground) -> 1.000
    ("warp", 2.0, 0.95),            # 0.987 -> 1.000
    ("small", "3-4", 0.9),          # 0.697 -> 0.983
])
def test_degraded_ground_truth_keeps_its_shape(evaluator, stress, condition, strength, threshold):
    images, truth = next((x, t) for c, s, x, t in stress.degraded_sets(96, seed=11, conditions=[condition])
                         if s == strength)
    report = evaluator.evaluate(images, truth.prompts)
    assert report.shape_acc >= threshold, (condition, strength, report.shape_acc)
    assert report.no_shape == 0.0


def test_washed_out_images_still_have_a_foreground_of_their_own_colour():
    from zoo.testbed.evaluator import FOREGROUND_SATURATION, foreground_thresholds

    images, prompts, attributes = real_batch(48, seed=12)
    assert (foreground_thresholds(images) == FOREGROUND_SATURATION).all()  # clean images: the fixed threshold
    for contrast in (0.4, 0.3):  # green's saturation 0.62 -> 0.25 and 0.19: no foreground at the fixed threshold
        washed = (0.5 + (images - 0.5) * contrast).astype(np.float32)
        assert dominant_colors(washed) == [a.color for a in attributes]
    size_ratio = geometry(washed)[:, 2] / geometry(images)[:, 2]
    assert np.abs(size_ratio - 1).max() < 0.2  # about the half-coverage outline (0.12 floor: 0.65 for green at 0.3)
    assert np.isnan(geometry(np.full((1, 32, 32, 3), 0.5, dtype=np.float32) + 0.04 * np.eye(3)[0])).all()


def test_the_independent_geometric_scorer_is_right_on_clean_images(stress):
    truth = stress.Truth(60, seed=13)
    verdicts = stress.geometric_shapes(truth.images())
    assert np.mean([v == a.shape for v, a in zip(verdicts, truth.attributes)]) >= 0.98
