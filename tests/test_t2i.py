"""The shared text-to-image sampler base and the DDIM baseline, on a tiny random SD pipeline."""

import pytest
import torch

from zoo.errors import FileMissingError, InputError
from zoo.sampling import read_metadata, save_image
from zoo.spec import ResolvedModel
from zoo.t2i import DDIMSampler, SDComponents
from zoo.tiny import build_tiny_sd


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_sd(tmp_path_factory.mktemp("tiny_sd"))


@pytest.fixture(scope="module")
def sampler(tiny_dir):
    model = ResolvedModel(path=tiny_dir, ref=str(tiny_dir), manifest={"sampler": {"steps": 4, "guidance_scale": 3.0}})
    return DDIMSampler(SDComponents.from_folder(tiny_dir), model)


def test_matches_diffusers_pipeline_bit_for_bit(tiny_dir, sampler):
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tiny_dir, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config, timestep_spacing="trailing")
    latents = sampler.components.initial_latents(2, 16, 16, seed=3)
    expected = pipe(["a red circle"] * 2, num_inference_steps=4, guidance_scale=3.0, latents=latents,
                    height=16, width=16, output_type="pt").images
    ours = sampler("a red circle", seed=3, batch_size=2, output_type="pt").images
    assert torch.equal(ours, expected)


@pytest.mark.parametrize("guidance,steps,nfe", [(3.0, 4, 8), (1.0, 4, 4), (0.0, 2, 2)])
def test_nfe_counts_unet_evaluations_per_image(sampler, guidance, steps, nfe):
    result = sampler("a circle", steps=steps, guidance_scale=guidance, batch_size=3)
    assert result.nfe == nfe and result.metadata["nfe"] == nfe
    assert len(result.images) == 3 and result.images[0].size == (16, 16)


def test_manifest_settings_are_defaults_and_same_seed_same_image(sampler):
    a = sampler("a red circle", seed=11, output_type="pt")
    b = sampler("a red circle", seed=11, output_type="pt")
    c = sampler("a red circle", seed=12, output_type="pt")
    assert a.metadata["steps"] == 4 and a.metadata["guidance_scale"] == 3.0
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)


def test_given_latents_replace_the_seeded_noise(sampler):
    seeded = sampler("a red circle", seed=5, batch_size=2, output_type="pt")
    given = sampler("a red circle", seed=99, batch_size=2, output_type="pt",
                    latents=sampler.components.initial_latents(2, 16, 16, seed=5))
    assert torch.equal(given.images, seeded.images) and given.nfe == seeded.nfe
    other = sampler("a red circle", seed=5, batch_size=2, output_type="pt", latents=torch.zeros(2, 4, 8, 8))
    assert not torch.equal(other.images, seeded.images)


def test_negative_prompt_replaces_the_unconditional_branch(sampler):
    plain = sampler("a circle", seed=1, output_type="pt").images
    negative = sampler("a circle", negative_prompt="red", seed=1, output_type="pt").images
    assert not torch.equal(plain, negative)


@pytest.mark.parametrize("kwargs,match", [({"steps": 0}, "steps=0 is out of range"),
                                          ({"height": 18}, "not a positive multiple of 4"),
                                          ({"batch_size": 0}, "batch_size=0"),
                                          ({"negative_prompt": ["a", "b"]}, "2 negative prompts for 1 prompts"),
                                          ({"num_inference_steps": 4}, "Unknown option 'num_inference_steps'"),
                                          ({"scheduler": "EulerDiscreteScheduler"}, "Unknown option 'scheduler'"),
                                          ({"latents": torch.zeros(1, 4, 4, 4)}, r"give shape \(1, 4, 8, 8\)")])
def test_bad_arguments_are_one_line_errors(sampler, kwargs, match):
    with pytest.raises(InputError, match=match) as info:
        sampler("a circle", **kwargs)
    assert "\n" not in str(info.value)


def test_not_a_pipeline_folder(tmp_path):
    with pytest.raises(FileMissingError, match="missing vae/, text_encoder/, tokenizer/, scheduler/, unet/"):
        SDComponents.from_folder(tmp_path)


def test_png_metadata_round_trip(sampler, tmp_path):
    result = sampler("a red circle", seed=5)
    path = save_image(result.images[0], tmp_path / "x.png", result.metadata)
    stored = read_metadata(path)
    assert stored["seed"] == 5 and stored["steps"] == 4 and stored["method"] == "base" and stored["nfe"] == 8
    assert stored["prompt"] == "a red circle"


def test_a_calibrated_nasa_strength_applies_to_negative_prompts_without_cfg(tiny_dir):
    """A model's zoo.json ``sampler.nasa_alpha`` is the strength NASA uses when a negative prompt is given without
    CFG; with CFG the negative prompt is CFG's, and an explicit ``nasa_alpha`` wins."""
    from zoo.t2i import DDIMSampler

    calibrated = DDIMSampler.from_model(tiny_dir, nasa_alpha=0.7)
    plain = calibrated("a red circle", steps=1, guidance_scale=0.0, seed=1, output_type="pt")
    steered = calibrated("a red circle", negative_prompt="blue", steps=1, guidance_scale=0.0, seed=1, output_type="pt")
    explicit = calibrated("a red circle", negative_prompt="blue", steps=1, guidance_scale=0.0, seed=1, nasa_alpha=0.7,
                          output_type="pt")
    guided = calibrated("a red circle", negative_prompt="blue", steps=1, guidance_scale=3.0, seed=1, output_type="pt")
    assert steered.metadata["nasa_alpha"] == 0.7 and "nasa_alpha" not in guided.metadata
    assert torch.equal(steered.images, explicit.images) and not torch.equal(steered.images, plain.images)
    off = calibrated("a red circle", negative_prompt="blue", steps=1, guidance_scale=0.0, seed=1, nasa_alpha=0.0,
                     output_type="pt")
    assert off.metadata["nasa_alpha"] == 0.0
