"""Images per second of the guidance-distilled samplers (AGD, LoRA-distill) against the CFG teacher, same steps.

Measures, in one run, on the same base weights, prompts, batch and number of steps (default 25, DDIM trailing):

* ``cfg``: the teacher with classifier-free guidance (:class:`zoo.t2i.DDIMSampler`, 2 UNet evaluations per step,
  batched into one call) at ``--guidance`` (default 5);
* ``agd``: the AGD adapters at ω = ``--guidance``, one UNet evaluation per step (``--agd`` model);
* ``lora_distill``: the fused LoRA-distill student at w = ``--guidance``, one evaluation per step (``--lora-distill``).

The three are warmed up, then timed round-robin for ``--repeats`` rounds; the median seconds per image are reported
with images/second and the ratios ``agd/cfg`` and ``lora_distill/cfg`` in images/second (goal >= 1.8), plus the
median, min and max of the ratios paired within each round (steadier on a shared machine).
``--untrained`` builds freshly initialised adapters / LoRA on the teacher instead of loading trained models (speed does
not depend on the weights' values; useful before the testbed students exist).

``--sd15-step`` measures instead one denoising step on a UNet with Stable Diffusion 1.5's shape (860M parameters,
random weights: speed does not depend on the values) at ``--latent-size`` (default 32 = 256 px): the CFG step (one
UNet call on the doubled batch) against the AGD step (one call on the batch, adapters of width 320 on every attn2)
and the plain conditional call (= a fused LoRA-distill step). On the tiny testbed UNet the adapters cost about 10 % of
a call; this shows what they cost at the scale the method is used at.

    python scripts/bench_guidance.py [--teacher REF] [--agd REF] [--lora-distill REF] [--untrained]
                                     [--steps 25] [--batch 64] [--repeats 9] [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time


def _untrained(teacher_ref: str, device: str, agd_hidden: int, lora_rank: int):
    from zoo.diffusion.lora_io import fuse_lora, parse_lora, peft_to_kohya
    from zoo.hub import resolve_model
    from zoo.t2i import SDComponents
    from zoo_plugins.agd.adapters import AGDAdapters
    from zoo_plugins.agd.sampler import AGDSampler
    from zoo_plugins.lora_distill.guidance_embedding import GuidanceEmbedding
    from zoo_plugins.lora_distill.sampler import LoRADistillSampler

    path = resolve_model(teacher_ref).path
    agd_components = SDComponents.from_folder(path, device=device)
    agd = AGDSampler(agd_components, AGDAdapters.for_unet(agd_components.unet, hidden_dim=agd_hidden))
    ld_components = SDComponents.from_folder(path, device=device)
    unet = ld_components.unet
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    unet.add_adapter(LoraConfig(r=lora_rank, lora_alpha=lora_rank, target_modules=["to_q", "to_k", "to_v", "to_out.0"],
                                init_lora_weights=False), adapter_name="bench")
    state = peft_to_kohya(get_peft_model_state_dict(unet, adapter_name="bench"), float(lora_rank))
    unet.delete_adapters("bench")
    fuse_lora(parse_lora(state), {"unet": unet})
    lora_distill = LoRADistillSampler(ld_components, GuidanceEmbedding.for_unet(unet))
    return agd, lora_distill


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default="pkg:zoo.testbed/weights/teacher")
    parser.add_argument("--agd", default="pkg:zoo_plugins.agd/testbed")
    parser.add_argument("--lora-distill", dest="lora_distill", default="pkg:zoo_plugins.lora_distill/testbed")
    parser.add_argument("--untrained", action="store_true", help="fresh adapters/LoRA instead of trained models")
    parser.add_argument("--agd-hidden", type=int, default=64, help="adapter width with --untrained")
    parser.add_argument("--lora-rank", type=int, default=16, help="LoRA rank with --untrained")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument("--batch", type=int, default=None,
                        help="images per sampler call (default 64, a throughput measure: at 16-32 the per-call fixed "
                             "costs weigh more, see docs/METHODS.md; 1 with --sd15-step)")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the machine is shared: keep it small)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", dest="json_path", help="write the figures to this file")
    parser.add_argument("--sd15-step", action="store_true", help="time one step on an SD1.5-shaped UNet instead")
    parser.add_argument("--latent-size", type=int, default=32, help="with --sd15-step: latent height/width")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    if args.batch is None:
        args.batch = 1 if args.sd15_step else 64
    if args.sd15_step:
        return sd15_step(args)
    from zoo.t2i import DDIMSampler

    teacher = DDIMSampler.from_model(args.teacher, device=args.device)
    if args.untrained:
        agd, lora_distill = _untrained(args.teacher, args.device, args.agd_hidden, args.lora_rank)
    else:
        from zoo_plugins.agd.sampler import build_sampler as build_agd
        from zoo_plugins.lora_distill.sampler import build_sampler as build_lora_distill

        agd = build_agd(args.agd, device=args.device)
        lora_distill = build_lora_distill(args.lora_distill, device=args.device)

    prompts = (["a red circle", "a blue square", "a green triangle", "something yellow"] * args.batch)[: args.batch]
    variants = {"cfg": teacher, "agd": agd, "lora_distill": lora_distill}
    nfe = {}

    def run(name):
        result = variants[name](prompts, steps=args.steps, guidance_scale=args.guidance, seed=0)
        nfe[name] = result.nfe

    for _ in range(args.warmup):
        for name in variants:
            run(name)
    times = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name in variants:
            start = time.perf_counter()
            run(name)
            times[name].append((time.perf_counter() - start) / args.batch)
    seconds = {name: statistics.median(values) for name, values in times.items()}
    report = {
        "steps": args.steps, "guidance_scale": args.guidance, "batch": args.batch, "repeats": args.repeats,
        "threads": args.threads, "device": args.device, "untrained": args.untrained,
        "nfe_per_image": nfe,
        "seconds_per_image": {k: round(v, 5) for k, v in seconds.items()},
        "images_per_second": {k: round(1.0 / v, 3) for k, v in seconds.items()},
        "speedup_vs_cfg": {k: round(seconds["cfg"] / seconds[k], 3) for k in ("agd", "lora_distill")},
        "paired_speedup_vs_cfg": paired_ratios(times, ("agd", "lora_distill")),
    }
    print(f"{'sampler':<14}{'NFE':>6}{'s/image':>12}{'images/s':>11}{'x vs CFG':>10}")
    for name in variants:
        ratio = seconds["cfg"] / seconds[name]
        print(f"{name:<14}{nfe[name]:>6}{seconds[name]:>12.4f}{1 / seconds[name]:>11.2f}{ratio:>10.2f}")
    if args.json_path:
        with open(args.json_path, "w") as handle:
            json.dump(report, handle, indent=2)
    print_paired(report)
    return 0


def paired_ratios(times: dict[str, list[float]], names) -> dict[str, dict[str, float]]:
    """Median, min and max over the rounds of ``cfg time / sampler time`` within a round. Each round times the
    samplers back to back, so a slow spell of the (shared, virtual) machine affects both sides of a ratio; the
    median of these paired ratios is steadier than the ratio of the medians."""
    result = {}
    for name in names:
        ratios = sorted(cfg / other for cfg, other in zip(times["cfg"], times[name]))
        result[name] = {"median": round(statistics.median(ratios), 3), "min": round(ratios[0], 3),
                        "max": round(ratios[-1], 3)}
    return result


def print_paired(report: dict) -> None:
    print("per-round ratios (the three samplers timed back to back in each round):")
    for name, figures in report["paired_speedup_vs_cfg"].items():
        print(f"  {name:<12} median {figures['median']:.3f}  min {figures['min']:.3f}  max {figures['max']:.3f}")
    print(json.dumps(report["speedup_vs_cfg"]))


def sd15_step(args) -> int:
    """Seconds per denoising step of CFG, AGD and a plain call on an SD1.5-shaped UNet (see the module docstring)."""
    import torch
    from diffusers import UNet2DConditionModel

    from zoo_plugins.agd.adapters import AGDAdapters

    torch.manual_seed(0)
    unet = UNet2DConditionModel(cross_attention_dim=768).eval().requires_grad_(False)  # SD1.5's block layout
    adapters = AGDAdapters.for_unet(unet, hidden_dim=320)
    with torch.no_grad():  # non-zero output projections, so the adapters do their full work
        for adapter in adapters.layers.values():
            adapter.out_proj.weight.normal_(0, 0.01)
    adapters.attach(unet).set_guidance(args.guidance)
    b, size = args.batch, args.latent_size
    latents, text = torch.randn(b, 4, size, size), torch.randn(b, 77, 768)
    doubled = (torch.cat([latents, latents]), torch.cat([text, torch.randn(b, 77, 768)]))

    def cfg():
        with adapters.disabled():
            unet(doubled[0], 500, encoder_hidden_states=doubled[1])

    def agd():
        unet(latents, 500, encoder_hidden_states=text)

    def plain():
        with adapters.disabled():
            unet(latents, 500, encoder_hidden_states=text)

    variants = {"cfg": cfg, "agd": agd, "lora_distill": plain}
    times = {name: [] for name in variants}
    with torch.no_grad():
        for name, call in variants.items():
            call()  # warm-up
        for _ in range(args.repeats):
            for name, call in variants.items():
                start = time.perf_counter()
                call()
                times[name].append(time.perf_counter() - start)
    seconds = {name: statistics.median(values) for name, values in times.items()}
    params = sum(p.numel() for p in unet.parameters())
    print(f"SD1.5-shaped UNet ({params / 1e6:.0f}M parameters, random weights), latent {size}x{size}, batch {b}; "
          f"AGD adapters {adapters.parameter_count() / 1e6:.1f}M parameters")
    print(f"{'step':<14}{'s/step':>10}{'x vs CFG':>10}")
    for name in variants:
        print(f"{name:<14}{seconds[name]:>10.3f}{seconds['cfg'] / seconds[name]:>10.2f}")
    report = {"sd15_step": True, "latent_size": size, "batch": b, "repeats": args.repeats, "threads": args.threads,
              "seconds_per_step": {k: round(v, 4) for k, v in seconds.items()},
              "speedup_vs_cfg": {k: round(seconds["cfg"] / seconds[k], 3) for k in ("agd", "lora_distill")},
              "paired_speedup_vs_cfg": paired_ratios(times, ("agd", "lora_distill"))}
    if args.json_path:
        with open(args.json_path, "w") as handle:
            json.dump(report, handle, indent=2)
    print_paired(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
