"""The zoo's few-step sampling rules in the k-diffusion convention, the one ComfyUI's ``SAMPLER`` objects use.

ComfyUI (and k-diffusion) sample in the variance-exploding parametrisation: ``x = x0 + sigma * eps`` with
``sigma_t = sqrt((1 - ᾱ_t) / ᾱ_t)``, and the model wrapper ``model(x, sigma)`` returns the denoised ``x0`` (CFG already
applied). The zoo's samplers work in the variance-preserving form ``z = sqrt(ᾱ_t) x0 + sqrt(1 - ᾱ_t) eps`` at integer
timesteps (:mod:`zoo.diffusion.schedule`); the two are the same state up to the factor ``sqrt(ᾱ_t)``
(``x = z / sqrt(ᾱ_t)``). In VE terms the rules of the methods are:

========  ===========================================================================================================
rule      one step from ``sigma`` to ``sigma_next`` (``d = (x - x0) / sigma`` is the predicted noise)
========  ===========================================================================================================
ddim      ``x0 + sigma_next * d`` -- deterministic DDIM (η = 0): Hyper-SD's N-step LoRAs on trailing timesteps,
          Phased DMD's default, and with one step from t = 999 the one-step x0 rule of SwiftBrush / SNOOPI
tcd       TCD (Zheng et al., arXiv 2402.19159) with ``gamma`` (diffusers' ``eta``): DDIM down to
          ``s = floor((1 - gamma) t_next)``, then forward noise ``sqrt(sigma_next² - sigma_s²) * fresh``
          (Hyper-SD's unified LoRA)
renoise   ``x0 + sigma_next * fresh`` -- LCM / DMD2 multi-step, Phased DMD ``stochastic``: predict x0, re-noise
========  ===========================================================================================================

Details that make the result equal to ``zoo run`` step for step:

* *Start*: diffusers pipelines start from unit-variance noise at the first timestep, whatever it is
  (``z = noise``), i.e. ``x = noise * sqrt(1 + sigma_0²)``. ComfyUI scales the noise that way only when
  ``sigma_0`` is the schedule's largest sigma; for a later start (LCM at t = 800) ``unit_start`` rescales.
* *Fresh noise*: drawn from a CPU generator seeded with ``seed + 1`` in the latent's shape, as the zoo's samplers do
  (:meth:`zoo.t2i.TextToImageSampler.__call__`); the initial noise of ComfyUI's ``prepare_noise`` (seed ``seed``)
  already equals the zoo's initial latents.
* *DDIM's jump*: diffusers' ``DDIMScheduler`` steps from ``t`` to ``t - T // N`` (N = number of steps), which is
  not always the next listed timestep (with 6 trailing steps 999 lands on 833, then is evaluated as 832).
  ``jump="diffusers"`` lands where diffusers does and carries the sample over to the next sigma as diffusers does
  (same VP sample), ``jump="next"`` lands on the next sigma.
* *End*: diffusers' DDIM and TCD schedulers of SD models (``set_alpha_to_one=False``) end at the noise level of
  t = 0, not at x0. ``final="timestep0"`` returns that sample, in the clean-latent scale ComfyUI expects
  (``sqrt(ᾱ_0) (x0 + sigma_0 d)``); ``final="clean"`` returns x0.

This module imports torch only; the ComfyUI node pack wraps :func:`sample_few_step` in ``comfy.samplers.KSAMPLER``.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch

RULES = ("ddim", "tcd", "renoise")
FINALS = ("clean", "timestep0")


def sigma_table(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """``sigma_t = sqrt((1 - ᾱ_t) / ᾱ_t)`` for every training timestep (float32, like ComfyUI's ``sigmas`` buffer)."""
    abar = alphas_cumprod.to(torch.float64)
    return ((1 - abar) / abar).sqrt().float()


def timestep_sigmas(table: torch.Tensor, timesteps: Sequence[int]) -> torch.Tensor:
    """The SIGMAS of integer ``timesteps`` (descending) followed by the final 0."""
    values = [float(table[int(t)]) for t in timesteps]
    if any(b >= a for a, b in zip(values, values[1:])):
        raise ValueError(f"timesteps must be strictly decreasing, got {list(timesteps)}")
    return torch.tensor(values + [0.0], dtype=torch.float32)


def timestep_of(sigma: float, table: torch.Tensor) -> int:
    """The training timestep whose sigma is nearest to ``sigma`` in log space (ComfyUI's ``ModelSamplingDiscrete``)."""
    if sigma <= 0:
        return 0
    return int((table.double().log() - math.log(float(sigma))).abs().argmin())


def fresh_noise_generator(seed: int | None) -> torch.Generator:
    """The generator of the zoo samplers' fresh noise: CPU, seeded with ``seed + 1``."""
    return torch.Generator("cpu").manual_seed(int(seed or 0) + 1)


@torch.no_grad()
def sample_few_step(model: Callable[..., torch.Tensor], x: torch.Tensor, sigmas: torch.Tensor,
                    extra_args: dict[str, Any] | None = None, callback: Callable | None = None,
                    disable: bool | None = None, *, table: torch.Tensor, rule: str = "ddim", gamma: float = 0.3,
                    final: str = "clean", jump: str = "next", unit_start: bool = False,
                    interrupt: Callable[[], None] | None = None) -> torch.Tensor:
    """Run ``rule`` over ``sigmas`` (k-diffusion sampler signature; see the module docstring).

    Args:
        model: ``model(x, sigma * ones[B], **extra_args) -> x0``.
        x: the starting sample in VE scale (ComfyUI: noise already scaled by ``noise_scaling``).
        sigmas: descending, usually ending in 0.
        table: the model's sigma for every training timestep (for TCD's intermediate timestep and ``final``).
        rule: ``ddim``, ``tcd`` or ``renoise``.
        gamma: TCD's gamma (diffusers ``eta``) in [0, 1].
        final: what the last step returns when it ends at sigma 0: ``clean`` (x0) or ``timestep0`` (diffusers'
            DDIM / TCD end, at the noise level of t = 0).
        jump: where a DDIM step lands: ``next`` (the next sigma) or ``diffusers`` (``t - T // N``, see above).
        unit_start: rescale ``x`` from ``noise * sigma_0`` to ``noise * sqrt(1 + sigma_0²)`` (see "Start").
        interrupt: called before every model evaluation (ComfyUI's Cancel check).
    """
    if rule not in RULES:
        raise ValueError(f"Unknown rule {rule!r}; use one of {', '.join(RULES)}")
    if final not in FINALS:
        raise ValueError(f"Unknown final {final!r}; use one of {', '.join(FINALS)}")
    if jump not in ("next", "diffusers"):
        raise ValueError(f"Unknown jump {jump!r}; use next or diffusers")
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma={gamma} is out of range for TCD: use a value in [0, 1]")
    extra_args = {} if extra_args is None else extra_args
    generator = fresh_noise_generator(extra_args.get("seed"))
    steps = len(sigmas) - 1
    if unit_start and steps > 0 and float(sigmas[0]) > 0:
        s0 = float(sigmas[0])
        x = x * (math.sqrt(1.0 + s0 * s0) / s0)
    s_in = x.new_ones([x.shape[0]])

    def fresh() -> torch.Tensor:
        return torch.randn(x.shape, generator=generator, dtype=torch.float32).to(x)

    for i in range(steps):
        if interrupt is not None:
            interrupt()
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        d = (x - denoised) / sigma
        if rule == "renoise":
            x = denoised + sigma_next * fresh() if sigma_next > 0 else denoised
        elif rule == "tcd":
            s = math.floor((1.0 - gamma) * timestep_of(sigma_next, table))
            sigma_s = float(table[s])
            x_s = denoised + sigma_s * d
            if sigma_next > 0:
                x = x_s + math.sqrt(max(sigma_next ** 2 - sigma_s ** 2, 0.0)) * fresh() if gamma > 0 else x_s
            else:  # diffusers' TCD ends at timestep s = 0, in VP scale
                x = x_s / math.sqrt(1.0 + sigma_s ** 2)
        elif sigma_next > 0 and jump == "diffusers":
            landing = float(table[max(timestep_of(sigma, table) - len(table) // steps, 0)])
            x = (denoised + landing * d) * math.sqrt((1.0 + sigma_next ** 2) / (1.0 + landing ** 2))
        elif sigma_next > 0 or final == "clean":
            x = denoised + sigma_next * d
        else:
            sigma_0 = float(table[0])
            x = (denoised + sigma_0 * d) / math.sqrt(1.0 + sigma_0 ** 2)
    return x


# -- the methods' schedules, by name (what the ComfyUI schedule node offers) ------------------------------------------
SCHEDULES: dict[str, dict[str, Any]] = {
    "ddim trailing (Hyper-SD N-step, AGD, LoRA-distill)":
        {"rule": "ddim", "final": "timestep0", "jump": "diffusers", "timesteps": "ddim_trailing"},
    "tcd (Hyper-SD unified LoRA)": {"rule": "tcd", "final": "timestep0", "timesteps": "tcd"},
    "lcm at t=800 (Hyper-SDXL 1-step UNet)": {"rule": "renoise", "final": "clean", "timesteps": "lcm800"},
    "one-step x0 at t=999 (SwiftBrush, SNOOPI)": {"rule": "ddim", "final": "clean", "timesteps": "last"},
    "re-noise (DMD2, Phased DMD)": {"rule": "renoise", "final": "clean", "timesteps": "trailing"},
    "ddim to x0 (Phased DMD deterministic)": {"rule": "ddim", "final": "clean", "timesteps": "trailing"},
}
"""Each method's few-step rule (see the module docstring) and where its timesteps come from, as ``zoo run`` uses
them: ``ddim_trailing``/``tcd`` = the timesteps of diffusers' ``DDIMScheduler(timestep_spacing="trailing")`` /
``TCDScheduler`` for that many steps (what :class:`zoo_plugins.hyper_sd.sampler.HyperSDSampler` sets),
``lcm800`` = t = 800 (``LCMScheduler(timesteps=[800])``), ``last`` = T - 1, ``trailing`` =
:func:`zoo.diffusion.schedule.trailing_timesteps` (Phased DMD)."""


def schedule_timesteps(name: str, steps: int, num_train_timesteps: int = 1000,
                       timesteps: Sequence[int] | None = None) -> list[int]:
    """The integer timesteps of schedule ``name`` for ``steps`` steps (``timesteps`` overrides them)."""
    from zoo.diffusion import schedule as vp

    if name not in SCHEDULES:
        raise ValueError(f"Unknown schedule {name!r}; use one of: {'; '.join(SCHEDULES)}")
    if timesteps:
        return [int(t) for t in timesteps]
    source = SCHEDULES[name]["timesteps"]
    if source == "last":
        return [num_train_timesteps - 1]
    if source == "lcm800":
        return [800]
    if source == "trailing":
        return [int(t) for t in vp.trailing_timesteps(steps, num_train_timesteps)]
    import diffusers

    config = {"num_train_timesteps": num_train_timesteps, "beta_schedule": "scaled_linear",
              "beta_start": 0.00085, "beta_end": 0.012, "set_alpha_to_one": False, "steps_offset": 1}
    if source == "ddim_trailing":
        scheduler = diffusers.DDIMScheduler.from_config({**config, "timestep_spacing": "trailing"})
        scheduler.set_timesteps(steps)
    else:
        scheduler = diffusers.TCDScheduler.from_config(config)
        scheduler.set_timesteps(steps)
    return [int(t) for t in scheduler.timesteps]
