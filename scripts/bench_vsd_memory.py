"""Training memory of one SwiftBrush VSD step versus one plain fine-tuning step of the same UNet.

Runs each in a fresh child process (so peak RSS is not shared) on the same teacher and batch, and reports:

* parameters held in memory by all UNet weights, counted by unique storage (the teacher's base weights must exist
  once: VSD holds student + base + LoRA, fine-tuning holds one UNet);
* peak RSS (``ru_maxrss``) after one full step (forward, backward, optimizer step) and its growth over the
  loaded-models baseline;
* the ratios VSD / fine-tuning.

    python scripts/bench_vsd_memory.py [--model pkg:zoo.testbed/weights/teacher] [--batch 16] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _unique_parameters(modules) -> int:
    seen, total = set(), 0
    for module in modules:
        for param in module.parameters():
            key = param.untyped_storage().data_ptr()
            if key not in seen:
                seen.add(key)
                total += param.numel()
    return total


def child(kind: str, model: str, batch: int) -> dict:
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    from zoo.config import load_config
    from zoo.diffusion import schedule
    from zoo.diffusion.distill_data import load_components

    if kind == "vsd":
        from zoo_plugins.swiftbrush.config import SwiftBrushConfig
        from zoo_plugins.swiftbrush.trainer import SwiftBrushTrainer

        config = load_config(SwiftBrushConfig, overrides=[f"teacher={model}", f"train.batch_size={batch}",
                                                          "lora_rank=16", "lora_alpha=16"])
        trainer = SwiftBrushTrainer(config)
        trainer.build()
        groups = {g.name: torch.optim.Adam([p for p in g.params if p.requires_grad], lr=1e-6)
                  for g in trainer.optimizer_groups()}
        unets = [trainer.student, trainer.components.unet]
        counts = {"unet_parameters_held": _unique_parameters(unets),
                  "lora_parameters": sum(p.numel() for p in trainer.scores.fake_parameters()),
                  "base_parameters": trainer.scores.parameter_counts()["base"]}
        baseline = _rss_mb()
        prompts = {"prompts": ["a red circle"] * batch}
        for name in ("student", "lora_teacher"):
            loss = trainer.loss(name, 0, prompts)["loss"]
            loss.backward()
            groups[name].step()
            for g in groups.values():
                g.zero_grad(set_to_none=True)
    else:
        components = load_components(model, "cpu")
        unet = components.unet.requires_grad_(True).train()
        optimizer = torch.optim.Adam(unet.parameters(), lr=1e-6)
        counts = {"unet_parameters_held": _unique_parameters([unet]), "lora_parameters": 0,
                  "base_parameters": sum(p.numel() for p in unet.parameters())}
        baseline = _rss_mb()
        cond = components.encode_prompt(["a red circle"] * batch)
        config = unet.config
        x0 = torch.randn(batch, config.in_channels, config.sample_size, config.sample_size)
        noise = torch.randn_like(x0)
        t = torch.randint(0, 1000, (batch,))
        x_t = schedule.add_noise(x0, noise, t, components.alphas_cumprod)
        loss = (unet(x_t, t, encoder_hidden_states=cond).sample - noise).pow(2).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    peak = _rss_mb()
    return {**counts, "baseline_rss_mb": round(baseline, 1), "peak_rss_mb": round(peak, 1),
            "step_growth_mb": round(peak - baseline, 1)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="pkg:zoo.testbed/weights/teacher")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--json", dest="json_path")
    parser.add_argument("--child", choices=["vsd", "finetune"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.model, args.batch)))
        return 0
    results = {}
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for kind in ("finetune", "vsd"):
        out = subprocess.run([sys.executable, __file__, "--child", kind, "--model", args.model, "--batch",
                              str(args.batch)], capture_output=True, text=True, env=env, check=False)
        if out.returncode != 0:
            print(out.stderr[-3000:], file=sys.stderr)
            return out.returncode
        results[kind] = json.loads(out.stdout.strip().splitlines()[-1])
    ft, vsd = results["finetune"], results["vsd"]
    figures = {"model": args.model, "batch": args.batch, **results,
               "ratio_parameters_held": round(vsd["unet_parameters_held"] / ft["unet_parameters_held"], 4),
               "ratio_peak_rss": round(vsd["peak_rss_mb"] / ft["peak_rss_mb"], 4),
               "ratio_step_growth": round(vsd["step_growth_mb"] / max(ft["step_growth_mb"], 1e-9), 4),
               "base_weights_once": vsd["unet_parameters_held"] == 2 * ft["unet_parameters_held"] +
               vsd["lora_parameters"]}
    print(f"One training step, batch {args.batch}, model {args.model}")
    print(f"{'':12}{'UNet params held':>18}{'LoRA params':>13}{'baseline MB':>13}{'peak MB':>10}{'step +MB':>10}")
    for kind in ("finetune", "vsd"):
        r = results[kind]
        print(f"{kind:<12}{r['unet_parameters_held']:>18,}{r['lora_parameters']:>13,}{r['baseline_rss_mb']:>13.1f}"
              f"{r['peak_rss_mb']:>10.1f}{r['step_growth_mb']:>10.1f}")
    print(f"VSD / fine-tune: parameters {figures['ratio_parameters_held']:.3f}, peak RSS "
          f"{figures['ratio_peak_rss']:.3f}, step growth {figures['ratio_step_growth']:.3f}; teacher base weights "
          f"held once: {figures['base_weights_once']}")
    if args.json_path:
        with open(args.json_path, "w") as handle:
            json.dump(figures, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
