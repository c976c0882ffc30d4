"""Where and when AGD loses colour against its CFG teacher (issue #21 §3; findings in docs/AGD-COLOUR.md).

Parts (each prints markdown tables; scored rows are cached under ``--cache``, default ``runs/agd_colour``, with their
images, so a part that needs a row computed by another reuses it):

- ``accept``: the issue's acceptance measurement. AGD at its recommended settings (zoo.json: ω, steps) against the
  teacher, 25 DDIM steps with CFG 3, on the BENCHMARK noise: all 19 benchmark prompts x 16 seeds x ``--noise-sets``
  (8: 2,048 colour-scored images). Colour and shape errors of each, paired wins/losses, exact McNemar p.
- ``where``: the same rows on the VALIDATION noise (plus the teacher at CFG ω = AGD's ω, the guidance the adapters
  imitate): AGD's colour errors by prompt, by noise set, and the colour produced instead.
- ``when``: for every validation batch holding an AGD colour error, AGD again with the teacher's true CFG prediction
  at ω (adapters off, two UNet calls: the sampler's ``cfg_steps`` option) at the steps of one range (early / middle /
  late third, all steps, growing prefixes): which range repairs the wrong images. And the adapters' eps error against
  the true CFG eps along AGD's own trajectory, per timestep, wrong images against the right ones of the same batches.
- rows are cached with the evaluator's hash; when the evaluator changes (code or classifier), a cached row is
  scored again from its saved images, so that every comparison uses one evaluator.
- ``row``: score and cache rows only (``--rows teacher@3 agd``; ``--benchmark`` for the benchmark noise).
- ``fit``: the adapters' eps error per timestep on the recipe's own training trajectories (regenerated) and on
  held-out ones: does the error at the first steps come from fitting or from generalising?
- ``compare``: a candidate model (``--candidate DIR``) against ``--model`` and the teacher on the validation noise.

Usage (one part per process keeps each job short)::

    OMP_NUM_THREADS=1 python scripts/analyze_agd.py where
    OMP_NUM_THREADS=1 python scripts/analyze_agd.py when
    OMP_NUM_THREADS=1 python scripts/analyze_agd.py accept
    OMP_NUM_THREADS=1 python scripts/analyze_agd.py compare --candidate runs/agd_x/export
    OMP_NUM_THREADS=1 python scripts/analyze_agd.py accept --model runs/agd_x/export
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import numpy as np  # noqa: E402

DEFAULT_MODEL = "pkg:zoo_plugins.agd/testbed"
TEACHER_STEPS, TEACHER_GUIDANCE = 25, 3.0
RANGES = {"early (0-8)": (0, 8), "middle (8-17)": (8, 17), "late (17-25)": (17, 25), "all (0-25)": (0, 25)}


# -- sampling and scoring -------------------------------------------------------------------------------------------
class Recording:
    """A sampler that keeps the images ``score_sampler`` asks it for, by ``(prompt, seed)``."""

    def __init__(self, sampler) -> None:
        self.sampler, self.method, self.images = sampler, getattr(sampler, "method", None), {}

    def __call__(self, prompt, seed, batch_size, **options):
        result = self.sampler(prompt, seed=seed, batch_size=batch_size, **options)
        self.images[(prompt, int(seed))] = np.stack([np.asarray(image.convert("RGB")) for image in result.images])
        return result


def evaluator_stamp() -> str:
    """A short hash of the testbed evaluator (its code and classifier weights): a cached row scored with another
    evaluator is scored again from its saved images."""
    from zoo.testbed import evaluator

    digest = hashlib.sha256(Path(evaluator.__file__).read_bytes())
    digest.update(Path(evaluator.CLASSIFIER_WEIGHTS).read_bytes())
    return digest.hexdigest()[:10]


def model_tag(model: str) -> str:
    """A short name of an AGD model that changes with its adapter weights (the cache key)."""
    from zoo.hub import resolve_model

    resolved = resolve_model(model)
    digest = hashlib.sha256((Path(resolved.path) / "agd_adapters.safetensors").read_bytes()).hexdigest()[:10]
    return f"agd-{digest}"


class Rows:
    """Scored rows, cached with their images: ``get("teacher@3")``, ``get("agd")`` (model default ω),
    ``get("agd@3")``, ``get("agd", model=DIR)``."""

    def __init__(self, cache: Path, noise_sets: int, validation: bool, model: str) -> None:
        self.cache, self.noise_sets, self.validation, self.model = cache, noise_sets, validation, model
        self.cache.mkdir(parents=True, exist_ok=True)
        self._samplers: dict[str, object] = {}
        self._evaluator = None

    @property
    def evaluator(self):
        if self._evaluator is None:
            from zoo.sdk import Evaluator

            self._evaluator = Evaluator()
        return self._evaluator

    def sampler(self, kind: str, model: str | None = None):
        key = kind if kind == "teacher" else f"agd:{model or self.model}"
        if key not in self._samplers:
            from zoo.sdk import DDIMSampler, load_sampler

            self._samplers[key] = (DDIMSampler.from_model() if kind == "teacher"
                                   else load_sampler("agd", model or self.model, device="cpu")[1])
        return self._samplers[key]

    def get(self, spec: str, model: str | None = None) -> dict:
        """One row: ``{"name", "row" (QualityRow.to_dict()), "jobs", "colors", "shapes"}`` (+ ``images`` npz)."""
        from zoo.sdk import BENCHMARK_PROMPTS, score_sampler

        kind, _, scale = spec.partition("@")
        model = model or self.model
        split = "val" if self.validation else "bench"
        tag = "teacher" if kind == "teacher" else model_tag(model)
        name = f"{tag}@{scale or 'default'}_{split}{self.noise_sets}"
        path = self.cache / f"{name}.json"
        if path.is_file():
            cached = json.loads(path.read_text())
            if cached.get("evaluator") == evaluator_stamp():
                return cached
            if (self.cache / f"{name}.npz").is_file():  # the evaluator changed: score the same images again
                return self.rescore(cached, path)
        sampler = self.sampler(kind, model)
        options = {"steps": TEACHER_STEPS, "guidance_scale": float(scale or TEACHER_GUIDANCE)} if kind == "teacher" \
            else ({"guidance_scale": float(scale)} if scale else {})
        recording = Recording(sampler)
        started = time.perf_counter()
        row = score_sampler(recording, name, prompts=BENCHMARK_PROMPTS, noise_sets=self.noise_sets,
                            validation=self.validation, progress=False, **options)
        from zoo.testbed.prompts import benchmark_jobs

        jobs = benchmark_jobs(BENCHMARK_PROMPTS, self.noise_sets, validation=self.validation)
        images = np.concatenate([recording.images[job] for job in jobs])
        analysis = self.evaluator.analyze(images)
        out = {"name": name, "spec": spec, "model": None if kind == "teacher" else model, "options": options,
               "row": row.to_dict(), "jobs": jobs, "colors": [a["color"] for a in analysis],
               "shapes": [a["shape"] for a in analysis], "seconds": round(time.perf_counter() - started, 1),
               "evaluator": evaluator_stamp()}
        np.savez_compressed(self.cache / f"{name}.npz", images=images)
        path.write_text(json.dumps(out))
        print(f"scored {name}: {row} in {out['seconds']:.0f} s", file=sys.stderr)
        return out

    def rescore(self, cached: dict, path: Path) -> dict:
        """A cached row scored again from its saved images with the current evaluator (same images, same order)."""
        from zoo.testbed.quality import QualityRow

        images = np.load(path.with_suffix(".npz"))["images"]
        prompts = [prompt for prompt, _, _ in image_prompts(cached)]
        report = self.evaluator.evaluate(images, prompts)
        old = cached["row"]
        row = QualityRow(method=old["method"], steps=old["steps"], nfe=old["nfe"], color_acc=report.color_acc,
                         shape_acc=report.shape_acc, diversity=report.diversity, fd=report.fd,
                         ms_per_image=old["ms_per_image"], n_images=report.n_images, color_hits=report.color_hits,
                         shape_hits=report.shape_hits)
        analysis = self.evaluator.analyze(images)
        out = {**cached, "row": row.to_dict(), "colors": [a["color"] for a in analysis],
               "shapes": [a["shape"] for a in analysis], "evaluator": evaluator_stamp()}
        path.write_text(json.dumps(out))
        print(f"re-scored {cached['name']} with the current evaluator: {row}", file=sys.stderr)
        return out


def image_prompts(row: dict, batch: int = 16) -> list[tuple[str, int, int]]:
    """``(prompt, seed, index in the batch)`` of every image of a row, in order."""
    return [(prompt, seed, i) for prompt, seed in row["jobs"] for i in range(batch)]


def errors(row: dict, attribute: str = "color") -> int:
    return sum(1 for hit in row["row"]["hits"][attribute] if hit is False)


def scored(row: dict, attribute: str = "color") -> int:
    return sum(1 for hit in row["row"]["hits"][attribute] if hit is not None)


def paired(a: dict, b: dict) -> dict:
    from zoo.testbed.quality import compare_rows

    comparison = compare_rows(a["row"], b["row"])
    return {"color": comparison.color_pairs, "shape": comparison.shape_pairs, "d_fd": comparison.d_fd}


def print_pair_table(rows: list[dict], reference: dict, labels: dict[str, str]) -> list[dict]:
    """Errors of each row and its paired comparison with ``reference`` (markdown)."""
    print("| row | colour errors / scored | shape errors / scored | colour +wins/-losses vs ref (p) | "
          "shape +wins/-losses vs ref (p) | FD |")
    print("|---|---|---|---|---|---|")
    out = []
    for row in rows:
        pairs = paired(row, reference) if row is not reference else None
        cell = (lambda p: "-" if p is None else f"+{p[0]}/-{p[1]} (p = {p[2]:.3g})")
        print(f"| {labels.get(row['name'], row['name'])} | {errors(row)} / {scored(row)} | "
              f"{errors(row, 'shape')} / {scored(row, 'shape')} | {cell(pairs and pairs['color'])} | "
              f"{cell(pairs and pairs['shape'])} | {row['row']['fd']:.3f} |")
        out.append({"row": row["name"], "color_errors": errors(row), "color_scored": scored(row),
                    "shape_errors": errors(row, "shape"), "shape_scored": scored(row, "shape"),
                    "vs_reference": pairs, "fd": row["row"]["fd"]})
    return out


# -- parts ----------------------------------------------------------------------------------------------------------
def part_accept(args) -> dict:
    rows = Rows(args.cache, args.noise_sets, validation=False, model=args.model)
    teacher, agd = rows.get(f"teacher@{TEACHER_GUIDANCE:g}"), rows.get("agd")
    print(f"\n### Acceptance: AGD ({args.model}) vs teacher 25 steps CFG 3, benchmark noise, "
          f"{args.noise_sets} noise sets\n")
    table = print_pair_table([teacher, agd], teacher, {teacher["name"]: "teacher 25 steps CFG 3",
                                                        agd["name"]: f"AGD {agd['name']}"})
    p_color, p_shape = table[1]["vs_reference"]["color"][2], table[1]["vs_reference"]["shape"][2]
    goal = (table[1]["color_errors"] <= table[0]["color_errors"] or p_color > 0.05) and \
           (table[1]["shape_errors"] <= table[0]["shape_errors"] or p_shape > 0.05)
    print(f"\ngoal (errors not above the teacher's, or p > 0.05 on both): {'MET' if goal else 'NOT met'}")
    return {"table": table, "goal_met": goal}


def part_where(args) -> dict:
    from zoo.testbed.data import parse_caption

    rows = Rows(args.cache, args.noise_sets, validation=True, model=args.model)
    agd = rows.get("agd")
    omega = rows.sampler("agd").default_guidance_scale
    specs = [f"teacher@{TEACHER_GUIDANCE:g}", f"teacher@{omega:g}"] + [f"agd@{s:g}" for s in args.extra_omegas]
    others = [rows.get(spec) for spec in specs]
    teacher = others[0]
    labels = {teacher["name"]: "teacher 25 steps CFG 3", others[1]["name"]: f"teacher 25 steps CFG {omega:g} (= ω)",
              agd["name"]: f"AGD ω = {omega:g} (recommended)"}
    labels.update({row["name"]: f"AGD ω = {s:g}" for row, s in zip(others[2:], args.extra_omegas)})
    print(f"\n### Validation noise, {args.noise_sets} noise sets: errors and paired comparison with the teacher "
          f"(CFG 3)\n")
    table = print_pair_table([teacher, others[1], agd, *others[2:]], teacher, labels)

    # where: by prompt, by noise set, produced colour
    meta = image_prompts(agd)
    by_prompt, by_set, confusion = Counter(), Counter(), Counter()
    teacher_by_prompt, teacher5_by_prompt = Counter(), Counter()
    n_prompts = len(agd["jobs"]) // args.noise_sets
    for k, ((prompt, seed, _), hit) in enumerate(zip(meta, agd["row"]["hits"]["color"])):
        if teacher["row"]["hits"]["color"][k] is False:
            teacher_by_prompt[prompt] += 1
        if others[1]["row"]["hits"]["color"][k] is False:
            teacher5_by_prompt[prompt] += 1
        if hit is not False:
            continue
        by_prompt[prompt] += 1
        by_set[(k // 16) // n_prompts] += 1
        confusion[(parse_caption(prompt)[1], agd["colors"][k])] += 1
    per_prompt = (len(agd["jobs"]) // n_prompts) * 16
    print(f"\n#### AGD colour errors by prompt ({per_prompt} images each; teacher CFG 3 / CFG {omega:g} errors)\n")
    print(f"| prompt | AGD errors | teacher CFG 3 | teacher CFG {omega:g} | AGD produced instead |")
    print("|---|---|---|---|---|")
    instead = defaultdict(Counter)
    for k, (prompt, _, _) in enumerate(meta):
        if agd["row"]["hits"]["color"][k] is False:
            instead[prompt][agd["colors"][k] or "no shape"] += 1
    for prompt in dict.fromkeys(p for p, _, _ in meta):
        if parse_caption(prompt)[1] is None:
            continue
        produced = ", ".join(f"{c} {n}" for c, n in instead[prompt].most_common()) or "-"
        print(f"| {prompt} | {by_prompt[prompt]} | {teacher_by_prompt[prompt]} | {teacher5_by_prompt[prompt]} | "
              f"{produced} |")
    print(f"\n#### AGD colour errors by noise set (of {scored(agd) // args.noise_sets} colour-scored images each)\n")
    print("| noise set | " + " | ".join(str(k) for k in range(args.noise_sets)) + " |")
    print("|---|" + "---|" * args.noise_sets)
    print("| errors | " + " | ".join(str(by_set[k]) for k in range(args.noise_sets)) + " |")
    print("\n#### Wanted -> produced (AGD's colour errors)\n")
    print("| wanted | produced | images |")
    print("|---|---|---|")
    for (wanted, got), n in confusion.most_common():
        print(f"| {wanted} | {got or 'no shape'} | {n} |")
    return {"table": table, "by_prompt": dict(by_prompt), "by_noise_set": {str(k): v for k, v in by_set.items()},
            "confusion": [[w, g, n] for (w, g), n in confusion.most_common()],
            "teacher_by_prompt": dict(teacher_by_prompt), "teacher_omega_by_prompt": dict(teacher5_by_prompt)}


def wrong_batches(row: dict) -> dict[tuple[str, int], list[int]]:
    """``(prompt, seed) -> indices in the batch`` of a row's colour errors."""
    out: dict[tuple[str, int], list[int]] = defaultdict(list)
    for (prompt, seed, i), hit in zip(image_prompts(row), row["row"]["hits"]["color"]):
        if hit is False:
            out[(prompt, seed)].append(i)
    return dict(out)


def colour_hits(evaluator, images, prompt: str) -> list[bool]:
    from zoo.testbed.data import parse_caption

    wanted = parse_caption(prompt)[1]
    return [a["color"] == wanted for a in evaluator.analyze(images)]


def part_when(args) -> dict:
    rows = Rows(args.cache, args.noise_sets, validation=True, model=args.model)
    agd = rows.get("agd")
    sampler = rows.sampler("agd")
    steps = sampler.default_steps
    batches = wrong_batches(agd)
    n_wrong = sum(len(v) for v in batches.values())
    print(f"\n### When: {n_wrong} AGD colour errors in {len(batches)} validation batches of 16 "
          f"(AGD ω = {sampler.default_guidance_scale:g}, {steps} steps)\n")
    if not batches:
        return {"swap": [], "eps_error": [], "n_wrong": 0, "batches": 0}
    ranges = dict(RANGES)
    ranges.update({f"first {k}": (0, k) for k in args.prefixes})
    ranges.update({f"last {k}": (steps - k, steps) for k in args.suffixes})
    fixed: Counter = Counter()
    broke: Counter = Counter()
    started = time.perf_counter()
    for (prompt, seed), wrong in batches.items():
        for label, span in ranges.items():
            images = sampler(prompt, seed=seed, batch_size=16, cfg_steps=span).images
            hits = colour_hits(rows.evaluator, images, prompt)
            fixed[label] += sum(hits[i] for i in wrong)
            broke[label] += sum(not hits[i] for i in range(16) if i not in wrong)
    print("| CFG at steps (adapters elsewhere) | UNet calls / image | errors repaired | "
          "right images made wrong |")
    print("|---|---|---|---|")
    table = []
    for label, (a, b) in ranges.items():
        print(f"| {label} | {steps + (b - a)} | {fixed[label]} / {n_wrong} | {broke[label]} / "
              f"{16 * len(batches) - n_wrong} |")
        table.append({"range": label, "span": [a, b], "repaired": fixed[label], "wrong": n_wrong,
                      "broken": broke[label], "right": 16 * len(batches) - n_wrong})
    print(f"\n({time.perf_counter() - started:.0f} s)")

    # eps error of the adapters against the true CFG prediction along AGD's own trajectory
    omega = sampler.default_guidance_scale
    sums = {key: np.zeros(steps) for key in ("wrong_err", "wrong_base", "right_err", "right_base")}
    counts = {"wrong": 0, "right": 0}
    timesteps = None
    for (prompt, seed), wrong in batches.items():
        err, base, timesteps = eps_errors(sampler, prompt, seed, omega, steps)
        mask = np.zeros(16, dtype=bool)
        mask[wrong] = True
        for key, m in (("wrong", mask), ("right", ~mask)):
            sums[f"{key}_err"] += err[:, m].sum(axis=1)
            sums[f"{key}_base"] += base[:, m].sum(axis=1)
            counts[key] += int(m.sum())
    print("\n#### Adapter eps error along AGD's trajectory: mean ||eps_AGD - eps_CFG||² per element, and as a share "
          "of the guidance term ||eps_c - eps_CFG||² (1 = no guidance at all)\n")
    print("| step | t | wrong: MSE | wrong: share | right: MSE | right: share |")
    print("|---|---|---|---|---|---|")
    per_step = []
    for i in range(steps):
        we, wb = sums["wrong_err"][i] / counts["wrong"], sums["wrong_base"][i] / counts["wrong"]
        re, rb = sums["right_err"][i] / counts["right"], sums["right_base"][i] / counts["right"]
        print(f"| {i} | {int(timesteps[i])} | {we:.5f} | {we / wb:.3f} | {re:.5f} | {re / rb:.3f} |")
        per_step.append({"step": i, "t": int(timesteps[i]), "wrong_mse": we, "wrong_share": we / wb,
                         "right_mse": re, "right_share": re / rb})
    return {"swap": table, "eps_error": per_step, "n_wrong": n_wrong, "batches": len(batches)}


def eps_errors(sampler, prompt: str, seed: int, omega: float, steps: int, batch: int = 16):
    """Per step and image: ``||eps_AGD - eps_CFG||²`` and ``||eps_c - eps_CFG||²`` (means over elements) along the
    trajectory AGD samples from ``seed`` (the same initial noise as ``sampler(prompt, seed=seed, batch_size=16)``)."""
    import torch

    from zoo.sdk import cfg

    c, adapters = sampler.components, sampler.adapters
    size = c.default_size
    latents = c.initial_latents(batch, size, size, seed, generator=torch.Generator("cpu").manual_seed(int(seed)))
    cond, uncond = c.encode_prompt([prompt] * batch), c.encode_prompt([""] * batch)
    scheduler = sampler.make_scheduler(steps, {})
    adapters.set_guidance(float(omega))
    err, base = np.zeros((steps, batch)), np.zeros((steps, batch))
    with torch.no_grad():
        for i, t in enumerate(scheduler.timesteps):
            x = scheduler.scale_model_input(latents, t)
            eps = c.unet(x, t, encoder_hidden_states=cond).sample
            with adapters.disabled():
                eps_c, eps_u = c.unet(torch.cat([x, x]), t, encoder_hidden_states=torch.cat([cond, uncond])
                                      ).sample.chunk(2)
            target = cfg(eps_c, eps_u, omega)
            err[i] = (eps - target).float().pow(2).mean(dim=(1, 2, 3)).numpy()
            base[i] = (eps_c - target).float().pow(2).mean(dim=(1, 2, 3)).numpy()
            latents = scheduler.step(eps, t, latents).prev_sample
    return err, base, scheduler.timesteps.cpu().numpy()


def part_fit(args) -> dict:
    """The adapters' regression error per timestep on the teacher's CFG trajectories: the training trajectories
    (regenerated exactly from the recipe: prompts, ω ~ U[guidance_min, guidance_max], noise seed) against held-out
    ones (another seed: other noise and ω), and as a share of the guidance term ``||eps_c - eps_CFG||²``."""
    import torch

    from zoo.sdk import load_config
    from zoo_plugins.agd.config import AGDConfig
    from zoo_plugins.agd.trainer import testbed_prompts
    from zoo_plugins.agd.trajectories import collect_trajectories

    sampler = Rows(args.cache, 1, True, args.model).sampler("agd")
    c, adapters = sampler.components, sampler.adapters
    config = load_config(AGDConfig, args.recipe)
    results = {}
    for label, seed in (("train", int(config.prompt_seed)), ("held-out", int(config.prompt_seed) + 1)):
        prompts = testbed_prompts(args.fit_prompts or int(config.num_prompts), seed)
        adapters.set_guidance(1.0)  # (the hooks check ω's batch even with the adapters off)
        with adapters.disabled():
            data = collect_trajectories(c, prompts, float(config.guidance_min), float(config.guidance_max),
                                        int(config.collect_steps), seed=seed, scheduler=config.scheduler,
                                        timestep_spacing=config.timestep_spacing)
        err, base = np.zeros(data.num_steps), np.zeros(data.num_steps)
        with torch.no_grad():
            for step in range(data.num_steps):
                for start in range(0, data.num_trajectories, 64):
                    sl = slice(start, start + 64)
                    x, target = data.x_t[sl, step].float(), data.eps_cfg[sl, step].float()
                    cond, t = data.prompt_embeds[sl].float(), data.timesteps[step]
                    adapters.set_guidance(data.guidance[sl].float())
                    eps = c.unet(x, t, encoder_hidden_states=cond).sample
                    with adapters.disabled():
                        eps_c = c.unet(x, t, encoder_hidden_states=cond).sample
                    err[step] += float((eps - target).pow(2).mean(dim=(1, 2, 3)).sum())
                    base[step] += float((eps_c - target).pow(2).mean(dim=(1, 2, 3)).sum())
        results[label] = {"mse": (err / data.num_trajectories).tolist(), "share": (err / base).tolist(),
                          "timesteps": data.timesteps.tolist()}
    train, held = results["train"], results["held-out"]
    print(f"\n### Adapter fit per timestep on CFG trajectories ({args.fit_prompts or config.num_prompts} trajectories "
          f"each; ω ~ U[{config.guidance_min:g}, {config.guidance_max:g}])\n")
    print("| step | t | train MSE | train share | held-out MSE | held-out share |")
    print("|---|---|---|---|---|---|")
    for i, t in enumerate(train["timesteps"]):
        print(f"| {i} | {t} | {train['mse'][i]:.5f} | {train['share'][i]:.3f} | {held['mse'][i]:.5f} | "
              f"{held['share'][i]:.3f} |")
    print(f"| mean | | {np.mean(train['mse']):.5f} | | {np.mean(held['mse']):.5f} | |")
    return results


def part_compare(args) -> dict:
    rows = Rows(args.cache, args.noise_sets, validation=not args.benchmark, model=args.model)
    teacher, committed = rows.get(f"teacher@{TEACHER_GUIDANCE:g}"), rows.get("agd")
    candidates = [rows.get(spec, model=model) for model in args.candidate for spec in ("agd",)]
    split = "benchmark" if args.benchmark else "validation"
    print(f"\n### Candidates on the {split} noise ({args.noise_sets} noise sets), against the teacher (CFG 3)\n")
    labels = {teacher["name"]: "teacher 25 steps CFG 3", committed["name"]: f"committed {committed['name']}"}
    labels.update({row["name"]: f"{model} ({row['name']})" for row, model in zip(candidates, args.candidate)})
    table = print_pair_table([teacher, committed, *candidates], teacher, labels)
    print("\n| candidate vs committed | colour +wins/-losses (p) | shape +wins/-losses (p) |")
    print("|---|---|---|")
    versus = []
    for row, model in zip(candidates, args.candidate):
        pairs = paired(row, committed)
        print(f"| {model} | +{pairs['color'][0]}/-{pairs['color'][1]} (p = {pairs['color'][2]:.3g}) | "
              f"+{pairs['shape'][0]}/-{pairs['shape'][1]} (p = {pairs['shape'][2]:.3g}) |")
        versus.append({"candidate": model, **pairs})
    return {"table": table, "vs_committed": versus}


def part_row(args) -> dict:
    """Score and cache rows only (``--rows teacher@3 agd agd@3``), one process per row keeps jobs short."""
    rows = Rows(args.cache, args.noise_sets, validation=not args.benchmark, model=args.model)
    return {"rows": [rows.get(spec)["name"] for spec in args.rows]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=("accept", "where", "when", "fit", "compare", "row"))
    parser.add_argument("--model", default=DEFAULT_MODEL, help="the AGD model analysed (default: the committed one)")
    parser.add_argument("--candidate", nargs="*", default=[], help="compare: AGD model folders to compare")
    parser.add_argument("--benchmark", action="store_true",
                        help="compare, row: on the benchmark noise (default: validation)")
    parser.add_argument("--rows", nargs="*", default=[], help="row: specs to score (teacher@3, agd, agd@3)")
    parser.add_argument("--noise-sets", type=int, default=8, help="x 19 prompts x 16 seeds (8: 2,048 colour-scored)")
    parser.add_argument("--extra-omegas", type=float, nargs="*", default=[], help="where: AGD rows at other ω")
    parser.add_argument("--prefixes", type=int, nargs="*", default=[], help="when: also CFG at the first k steps")
    parser.add_argument("--suffixes", type=int, nargs="*", default=[], help="when: also CFG at the last k steps")
    parser.add_argument("--recipe", type=Path, default=ROOT / "plugins" / "agd" / "testbed.yaml",
                        help="fit: the recipe whose training trajectories are regenerated")
    parser.add_argument("--fit-prompts", type=int, default=0, help="fit: trajectories per set (0: the recipe's)")
    parser.add_argument("--cache", type=Path, default=ROOT / "runs" / "agd_colour")
    parser.add_argument("--json", dest="json_path", type=Path, help="write the part's numbers here")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    result = {"accept": part_accept, "where": part_where, "when": part_when, "compare": part_compare,
              "row": part_row, "fit": part_fit}[args.part](args)
    result["seconds"] = round(time.perf_counter() - started, 1)
    print(f"\n({args.part}: {result['seconds']:.0f} s)")
    if args.json_path:
        args.json_path.parent.mkdir(parents=True, exist_ok=True)
        args.json_path.write_text(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
