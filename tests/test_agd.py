"""AGD (methods.md §4(h), §8 A1-A5) on tiny random SD models: identity at init, frozen base, trajectory replay,
one UNet call per step, toy distillation, and a tiny run through the training runtime."""

import pytest
import torch

from zoo.t2i import SDComponents
from zoo.tiny import build_tiny_sd
from zoo_plugins.agd.adapters import AGDAdapters, cross_attention_modules
from zoo_plugins.agd.sampler import AGDSampler, build_sampler
from zoo_plugins.agd.trajectories import TrajectorySet, collect_trajectories


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_sd(tmp_path_factory.mktemp("agd_tiny"))


@pytest.fixture(scope="module")
def components(tiny_dir):
    return SDComponents.from_folder(tiny_dir)


def _inputs(seed=0, batch=3):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, 4, 8, 8, generator=g), torch.randint(0, 1000, (batch,), generator=g),
            torch.randn(batch, 77, 32, generator=g))


def test_adapters_are_the_identity_at_init_for_any_guidance_timestep_and_prompt(components):
    unet = components.unet
    x, t, c = _inputs()
    with torch.no_grad():
        base = unet(x, t, encoder_hidden_states=c).sample
        adapters = AGDAdapters.for_unet(unet, hidden_dim=16).attach(unet)
        try:
            for w in (1.0, 5.0, torch.tensor([2.0, 7.5, 12.0])):
                adapters.set_guidance(w)
                assert torch.equal(unet(x, t, encoder_hidden_states=c).sample, base)
        finally:
            adapters.detach()
    assert len(adapters.layers) == len(cross_attention_modules(unet)) >= 3  # down, mid and up blocks
    assert 0 < adapters.parameter_count() < sum(p.numel() for p in unet.parameters())


def test_only_adapters_train_and_the_base_stays_bit_identical(tiny_dir):
    comps = SDComponents.from_folder(tiny_dir)
    unet = comps.unet
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    adapters = AGDAdapters.for_unet(unet, hidden_dim=16).attach(unet)
    optimizer = torch.optim.AdamW(adapters.parameters(), lr=1e-2)
    x, t, c = _inputs(1)
    target = torch.randn_like(x)
    outputs = []
    for _ in range(3):
        adapters.set_guidance(torch.tensor([3.0, 4.0, 5.0]))
        out = unet(x, t, encoder_hidden_states=c).sample
        loss = torch.nn.functional.mse_loss(out, target)
        optimizer.zero_grad()
        loss.backward()
        assert all(p.grad is None for p in unet.parameters())
        optimizer.step()
        outputs.append(out.detach())
    adapters.detach()
    assert not torch.equal(outputs[0], outputs[-1])  # the adapters did learn something
    assert all(torch.equal(before[k], v) for k, v in unet.state_dict().items())


def test_trajectories_replay_exactly_and_round_trip_through_the_file(components, tmp_path):
    prompts = ["a red circle", "a blue square", "something green"]
    data = collect_trajectories(components, prompts, 1.0, 6.0, steps=6, seed=3, storage_dtype=torch.float32)
    assert data.x_t.shape == (3, 6, 4, 8, 8) and data.eps_cfg.shape == data.x_t.shape
    assert data.timesteps.tolist() == [999, 832, 666, 499, 332, 166]
    assert torch.all((data.guidance >= 1.0) & (data.guidance <= 6.0)) and len(set(data.guidance.tolist())) == 3
    for i in range(3):
        assert data.replay_error(i) < 1e-5
    # the stored eps is the CFG prediction at that trajectory's ω
    with torch.no_grad():
        i, s = 1, 2
        x, t = data.x_t[i, s][None], data.timesteps[s]
        eps_c = components.unet(x, t, encoder_hidden_states=components.encode_prompt([prompts[i]])).sample
        eps_u = components.unet(x, t, encoder_hidden_states=components.encode_prompt([""])).sample
    torch.testing.assert_close(data.eps_cfg[i, s][None], eps_u + data.guidance[i] * (eps_c - eps_u))
    # not forward-noised data: a different ω gives a different trajectory from the same noise
    other = collect_trajectories(components, prompts, 9.0, 9.0, steps=6, seed=3, storage_dtype=torch.float32)
    assert torch.equal(other.x_t[:, 0], data.x_t[:, 0]) and not torch.allclose(other.x_t[:, 3], data.x_t[:, 3])
    compact = collect_trajectories(components, prompts, 1.0, 6.0, steps=6, seed=3)  # float16 storage
    loaded = TrajectorySet.load(compact.save(tmp_path / "traj.safetensors"))
    assert loaded.x_t.dtype == torch.float16 and loaded.prompts == prompts
    assert torch.equal(loaded.eps_cfg, compact.eps_cfg) and loaded.scheduler["steps"] == 6
    assert loaded.replay_error(0) < 0.05  # float16 rounding, amplified by 1/alpha_999 ≈ 15 in the first step


def test_sampler_uses_one_unet_call_per_step_and_cfg_when_disabled(components):
    adapters = AGDAdapters.for_unet(components.unet, hidden_dim=16)
    sampler = AGDSampler(components, adapters, None)
    try:
        result = sampler("a red circle", steps=5, guidance_scale=5.0, batch_size=2, output_type="pt")
        cfg_result = sampler("a red circle", steps=5, guidance_scale=5.0, batch_size=2, output_type="pt",
                             disable_adapter=True)
        euler = sampler("a red circle", steps=3, guidance_scale=5.0, scheduler="EulerDiscreteScheduler")
    finally:
        adapters.detach()
    assert result.nfe == 5 and cfg_result.nfe == 10 and euler.nfe == 3
    assert result.metadata["adapters"] is True and cfg_result.metadata["adapters"] is False
    # identity adapters = the conditional model, not CFG
    assert not torch.allclose(result.latents, cfg_result.latents)


def test_toy_distillation_reduces_the_error_to_the_cfg_output(components):
    """A3 in miniature (a random tiny UNet, so only the training error is meaningful): one forward pass with trained
    adapters gets much closer to the stored CFG predictions than the base model's single pass."""
    torch.manual_seed(0)
    data = collect_trajectories(components, ["a red circle", "a blue square", "something green"], 3.0, 6.0, steps=4,
                                seed=1, storage_dtype=torch.float32)
    unet = components.unet
    adapters = AGDAdapters.for_unet(unet, hidden_dim=32).attach(unet)
    optimizer = torch.optim.Adam(adapters.parameters(), lr=1e-2)
    points = data.points(torch.arange(len(data)))

    def step(train: bool) -> float:
        adapters.set_guidance(points["guidance"])
        with torch.set_grad_enabled(train):
            out = unet(points["x_t"], points["timesteps"], encoder_hidden_states=points["prompt_embeds"]).sample
            loss = torch.nn.functional.mse_loss(out, points["eps_cfg"])
        if train:
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return loss.item()

    try:
        start = step(False)
        for _ in range(60):
            step(True)
        end = step(False)
    finally:
        adapters.detach()
    assert end < start / 3, (start, end)


def test_trainer_runs_on_the_runtime_and_exports_a_loadable_model(tiny_dir, tmp_path):
    from zoo.config import load_config
    from zoo.train.runtime import train
    from zoo_plugins.agd.config import AGDConfig

    config = load_config(AGDConfig, overrides=[
        f"teacher={tiny_dir}", "hidden_dim=16", "num_prompts=4", "collect_steps=4", "train.steps=3",
        "train.batch_size=4", "train.checkpoint_every=0", "train.log_every=1", "optim.adapters.warmup_steps=0",
        "train.tensorboard=false"])
    result = train("agd", config, output_dir=tmp_path / "run", progress=False)
    assert result.status == "finished" and result.export_dir is not None
    assert (tmp_path / "run" / "trajectories.safetensors").is_file()
    sampler = build_sampler(str(result.export_dir))
    image = sampler("a red circle", seed=0)
    assert image.nfe == 4 and image.metadata["guidance_scale"] == 5.0 and image.metadata["method"] == "agd"


def test_cached_prompt_keys_give_the_same_output_and_follow_a_new_prompt(components):
    unet = components.unet
    adapters = AGDAdapters.for_unet(unet, hidden_dim=16)
    for layer in adapters.layers.values():  # non-zero output so the adapters matter
        torch.nn.init.normal_(layer.out_proj.weight, std=0.1)
    adapters.attach(unet)
    x, t, c = _inputs(3)
    other = torch.randn_like(c)
    try:
        adapters.set_guidance(4.0)
        with torch.no_grad():
            first = unet(x, t, encoder_hidden_states=c).sample
            cached = unet(x, t, encoder_hidden_states=c).sample
            changed = unet(x, t, encoder_hidden_states=other).sample
        with torch.enable_grad():
            fresh = unet(x, t, encoder_hidden_states=c).sample.detach()
    finally:
        adapters.detach()
    torch.testing.assert_close(cached, first, rtol=0, atol=0)
    torch.testing.assert_close(fresh, first, rtol=1e-5, atol=1e-6)
    assert (changed - first).abs().max() > 1e-4


def test_caches_are_recomputed_after_the_adapter_weights_change(components):
    unet = components.unet
    adapters = AGDAdapters.for_unet(unet, hidden_dim=16)
    for layer in adapters.layers.values():
        torch.nn.init.normal_(layer.out_proj.weight, std=0.1)
    adapters.attach(unet)
    x, t, c = _inputs(4)
    try:
        adapters.set_guidance(3.0)
        with torch.no_grad():
            before = unet(x, t, encoder_hidden_states=c).sample
            for layer in adapters.layers.values():  # in place, like an optimizer step
                layer.prompt_proj.weight.add_(0.5)
                layer.guidance_encoder.mlp[0].weight.add_(0.5)
            after = unet(x, t, encoder_hidden_states=c).sample
        with torch.enable_grad():
            reference = unet(x, t, encoder_hidden_states=c).sample.detach()
    finally:
        adapters.detach()
    assert (after - before).abs().max() > 1e-4
    torch.testing.assert_close(after, reference, rtol=1e-5, atol=1e-6)


def test_inference_path_with_folded_projections_equals_the_training_path(components):
    """Without gradients the adapters fold q_proj into the keys and out_proj into the values (and reuse the prompt's
    folded rows across calls); the UNet output equals the plain attention of the training path."""
    unet = components.unet
    adapters = AGDAdapters.for_unet(unet, hidden_dim=16).attach(unet)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in adapters.parameters():  # non-trivial adapters (out_proj is zero at init)
            p.copy_(torch.randn(p.shape, generator=generator) * 0.3)
    try:
        x, t, c = _inputs(2)
        adapters.set_guidance(torch.tensor([2.0, 5.0, 9.0]))
        with torch.enable_grad():
            reference = unet(x, t, encoder_hidden_states=c).sample.detach()
        with torch.no_grad():
            with adapters.disabled():
                base = unet(x, t, encoder_hidden_states=c).sample
            first = unet(x, t, encoder_hidden_states=c).sample
            again = unet(x, t, encoder_hidden_states=c).sample  # folded prompt rows from the cache
            other_t = unet(x, t - 100, encoder_hidden_states=c).sample
    finally:
        adapters.detach()
    assert (reference - base).abs().max() > 1e-2  # the adapters change the output
    torch.testing.assert_close(first, reference, rtol=1e-5, atol=1e-5)
    assert torch.equal(again, first)
    with torch.enable_grad():
        adapters.attach(unet)
        try:
            adapters.set_guidance(torch.tensor([2.0, 5.0, 9.0]))
            expected_other_t = unet(x, t - 100, encoder_hidden_states=c).sample.detach()
        finally:
            adapters.detach()
    torch.testing.assert_close(other_t, expected_other_t, rtol=1e-5, atol=1e-5)  # new (ω, t) rows each call


def test_shared_guidance_and_timestep_give_the_per_image_result(components):
    """In a sampling loop every image has the same ω and t: the adapters then compute their (ω, t) rows once and
    broadcast them. The output equals that of per-image ω and t tensors with the same values, with and without
    gradients."""
    unet = components.unet
    adapters = AGDAdapters.for_unet(unet, hidden_dim=16).attach(unet)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in adapters.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.3)
    x, _, c = _inputs(3)
    try:
        for grad in (False, True):
            with torch.set_grad_enabled(grad):
                adapters.set_guidance(torch.full((3,), 6.0))
                per_image = unet(x, torch.full((3,), 420), encoder_hidden_states=c).sample.detach()
                adapters.set_guidance(6.0)
                shared = unet(x, torch.tensor(420), encoder_hidden_states=c).sample.detach()
                mixed = unet(x, torch.full((3,), 420), encoder_hidden_states=c).sample.detach()
            assert adapters._temb.shape[0] == 3 and adapters._guidance_now.shape == (1,)
            torch.testing.assert_close(shared, per_image, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(mixed, per_image, rtol=1e-5, atol=1e-5)
            with torch.no_grad():
                unet(x, 420, encoder_hidden_states=c)
            assert adapters._temb.shape[0] == 1  # a plain-number timestep is shared too
    finally:
        adapters.detach()


@pytest.mark.parametrize("scheduler", ["DDIMScheduler", "EulerDiscreteScheduler"])
def test_loop_folded_condition_rows_give_the_per_call_result(components, monkeypatch, scheduler):
    """The sampler folds every adapter's (ω, t) rows for all timesteps before the loop; the images equal those of
    a loop in which each call computes its own rows (int DDIM and float Euler timesteps)."""
    adapters = AGDAdapters.for_unet(components.unet, hidden_dim=16)
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in adapters.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.3)
    sampler = AGDSampler(components, adapters, None)
    calls = []
    real_at_step = adapters.at_step

    def recording_at_step(index):
        real_at_step(index)
        calls.append(adapters._step_tokens is not None)

    try:
        options = dict(steps=4, guidance_scale=6.0, batch_size=2, output_type="pt", scheduler=scheduler, seed=3)
        monkeypatch.setattr(adapters, "at_step", recording_at_step)
        ahead = sampler("a red circle", **options).latents
        monkeypatch.setattr(adapters, "at_step", lambda index: None)  # no rows: each call folds its own
        per_call = sampler("a red circle", **options).latents
        monkeypatch.setattr(adapters, "at_step", lambda index: real_at_step(0))  # the first step's rows throughout
        stale = sampler("a red circle", **options).latents
    finally:
        adapters.detach()
    assert calls == [True] * 4 and adapters._loop is None  # used at every step, dropped after the loop
    torch.testing.assert_close(ahead, per_call, rtol=1e-5, atol=1e-5)
    assert (ahead - stale).abs().max() > 1e-2  # the rows of each step matter in this comparison


def test_cfg_steps_swap_in_the_teachers_cfg_prediction_at_the_chosen_steps(components):
    """``cfg_steps=(start, stop)`` (scripts/analyze_agd.py): true CFG at ω at those step indices, the adapters
    elsewhere. Over all steps it is the CFG teacher's sampling; over none, plain AGD; in between, a mix."""
    from zoo.errors import InputError
    from zoo.t2i import DDIMSampler

    adapters = AGDAdapters.for_unet(components.unet, hidden_dim=16)
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():  # trained-looking adapters: their prediction differs from both the base and CFG
        for p in adapters.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.3)
    sampler = AGDSampler(components, adapters, None)
    options = dict(steps=5, guidance_scale=4.0, batch_size=2, output_type="pt", seed=7)
    try:
        plain = sampler("a red circle", **options)
        none = sampler("a red circle", cfg_steps=(0, 0), **options)
        every = sampler("a red circle", cfg_steps=(0, 5), **options)
        early = sampler("a red circle", cfg_steps=(0, 2), **options)
        with adapters.disabled():
            teacher = DDIMSampler(components, None)("a red circle", **options)
        for bad in ((3, 9), (4, 2), "early"):
            with pytest.raises(InputError, match="cfg_steps"):
                sampler("a red circle", cfg_steps=bad, **options)
    finally:
        adapters.detach()
    assert adapters.enabled  # restored after the swapped steps
    assert torch.equal(none.latents, plain.latents) and none.nfe == 5
    assert torch.equal(every.latents, teacher.latents) and every.nfe == teacher.nfe == 10
    assert early.nfe == 7 and early.metadata["cfg_steps"] == [0, 2]
    for other in (plain, teacher):
        assert (early.latents - other.latents).abs().max() > 1e-3


def test_early_steps_are_drawn_early_step_weight_times_as_often_and_uniform_stays_the_reference_stream():
    """``early_steps`` / ``early_step_weight`` (docs/AGD-COLOUR.md): the first steps of every trajectory are drawn
    that many times as often; the default keeps the uniform draw, point for point."""
    from types import SimpleNamespace

    from zoo.errors import ConfigError
    from zoo_plugins.agd.trainer import AGDTrainer, step_weights

    n, steps = 6, 5
    data = TrajectorySet(torch.zeros(n, steps, 1, 1, 1), torch.zeros(n, steps, 1, 1, 1), torch.arange(steps),
                         torch.ones(n), torch.zeros(n, 1, 1), torch.zeros(n, 1, 1, 1), ["a"] * n, {})
    data.x_t += (torch.arange(n)[:, None] * steps + torch.arange(steps)).view(n, steps, 1, 1, 1)  # x_t = flat index

    def drawn(early_steps, weight, batches=200):
        config = SimpleNamespace(train=SimpleNamespace(batch_size=64), early_steps=early_steps,
                                 early_step_weight=weight)
        stream = AGDTrainer.batches(SimpleNamespace(config=config, trajectories=data), seed=3)
        return torch.cat([next(stream)["x_t"].flatten() for _ in range(batches)]).long()

    generator = torch.Generator().manual_seed(3)
    reference = torch.cat([torch.randint(n * steps, (64,), generator=generator) for _ in range(3)])
    assert torch.equal(drawn(0, 1.0, 3), reference) and torch.equal(drawn(2, 1.0, 3), reference)
    weighted = drawn(2, 4.0)
    share = torch.bincount(weighted % steps, minlength=steps).double() / len(weighted)
    torch.testing.assert_close(share, torch.tensor([4, 4, 1, 1, 1], dtype=torch.float64) / 11, atol=0.01, rtol=0)
    assert len(set((weighted // steps).tolist())) == n  # every trajectory drawn
    assert step_weights(steps, 0, 4.0) is None and step_weights(steps, 3, 1.0) is None
    for bad in ((-1, 2.0), (2, 0.0)):
        with pytest.raises(ConfigError, match="early_step"):
            step_weights(steps, *bad)


def test_analysis_script_finds_the_wrong_batches_and_measures_the_missing_guidance(components):
    """scripts/analyze_agd.py: colour errors map back to (prompt, seed, index); with identity adapters the adapter
    prediction is the conditional one, so it misses the whole guidance term (error = ||eps_c - eps_CFG||²)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "analyze_agd.py"
    spec = importlib.util.spec_from_file_location("analyze_agd", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    hits = [True] * 32
    hits[3] = hits[17] = hits[20] = False
    row = {"jobs": [["a red circle", 5000], ["a blue square", 5001]], "row": {"hits": {"color": hits}}}
    assert script.wrong_batches(row) == {("a red circle", 5000): [3], ("a blue square", 5001): [1, 4]}
    assert script.errors(row) == 3 and script.scored(row) == 32

    adapters = AGDAdapters.for_unet(components.unet, hidden_dim=16)
    sampler = AGDSampler(components, adapters, None)
    try:
        err, base, timesteps = script.eps_errors(sampler, "a red circle", 3, omega=4.0, steps=3, batch=2)
    finally:
        adapters.detach()
    assert err.shape == base.shape == (3, 2) and len(timesteps) == 3 and (base > 0).all()
    np_testing = pytest.importorskip("numpy.testing")
    np_testing.assert_allclose(err, base, rtol=1e-5)
